"""2-D images end to end in the data layer (issue 13): every picture and volume format read as
SimpleITK reads it, units "px" where a format stores no spacing, colour and JPEG masks, 0/255
masks, the BU-BIL catalogue, and 2-D grids checked across the candidates of a case."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk

import qe_nb
from qe_nb.data.ensemble import open_ensemble
from qe_nb.data.images import Geometry, check_geometry, read_image, write_image
from qe_nb.data.images_2d import one_channel, picture_units
from qe_nb.data.loading import (
    load_case,
    load_images,
    load_label_maps,
    load_reference,
    read_label_maps,
)
from qe_nb.exceptions import GeometryError, ImageReadError, InputError

from .conftest import SHARED

BU_BIL = SHARED / "data" / "bu-bil-fibroblasts"
SHAPE = (30, 40)


def _require_bu_bil() -> None:
    if not (BU_BIL / "m01" / "gold.png").is_file():
        pytest.skip(f"the BU-BIL cohort is not at {BU_BIL} (../shared is absent in a fresh clone "
                    "elsewhere; set QE_NB_SHARED to point at it)")


def _mask(shape=SHAPE, value=255) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[5:12, 6:20] = value
    m[20:26, 25:33] = value
    return m


def _sitk(array, path, *, spacing=None, vector=False):
    image = sitk.GetImageFromArray(array, isVector=vector)
    if spacing is not None:
        image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    sitk.WriteImage(image, str(path))
    return path


# --------------------------------------------------------------------------- Geometry


def test_geometry_2d_defaults_units_and_attrs():
    g = Geometry((1030, 1300), units="px")
    assert (g.ndim, g.spacing, g.origin, g.direction) == (2, (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    assert g.as_attrs() == {"spacing": (1.0, 1.0), "origin": (0.0, 0.0), "direction": (1.0, 0.0, 0.0, 1.0),
                            "units": "px"}
    assert Geometry.from_attrs(g.as_attrs(), (7, 1030, 1300)) == g
    assert "units" not in Geometry((2, 3, 4)).as_attrs()  # mm, the default, stays implicit
    assert Geometry.from_attrs(Geometry((5, 6), spacing=(0.5, 0.25)).as_attrs(), (5, 6)).units == "mm"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (5, 6), "spacing": (1.0, 1.0, 1.0)}, r"Geometry `spacing` must hold 2 numbers in \(y, x\) order"),
        ({"shape": (5, 6), "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)},
         r"Geometry `direction` must hold 4 numbers in \(y, x\) order"),
        ({"shape": (5, 6), "units": "cm"}, r"Geometry `units` must be one of \['mm', 'px'\]; got 'cm'"),
        ({"shape": (1, 2, 3, 4)}, r"Geometry `shape` must hold 3 numbers .*or 2 in \(y, x\) order.*got \(1, 2, 3, 4\)"),
    ],
)
def test_geometry_2d_rejects_bad_fields(kwargs, match):
    with pytest.raises(InputError, match=match):
        Geometry(**kwargs)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("suffix", "units", "spacing"),
    [
        (".png", "px", (1.0, 1.0)),
        (".bmp", "px", (1.0, 1.0)),
        (".tif", "mm", (0.5, 0.25)),  # SimpleITK writes the spacing as resolution tags (inch)
        (".nii.gz", "mm", (0.5, 0.25)),
        (".nii", "mm", (0.5, 0.25)),
        (".mha", "mm", (0.5, 0.25)),
        (".nrrd", "mm", (0.5, 0.25)),
    ],
)
def test_every_2d_format_reads_as_simpleitk_reads_it(tmp_path, suffix, units, spacing):
    path = _sitk(_mask(), tmp_path / f"m{suffix}", spacing=(0.5, 0.25))
    array, geometry = read_image(path, mask=True)
    theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    if theirs.ndim == 3:  # SimpleITK reads a gray BMP as three equal channels
        assert suffix == ".bmp" and (theirs == theirs[..., :1]).all()
        theirs = theirs[..., 0]
    np.testing.assert_array_equal(array, theirs)
    assert array.shape == SHAPE and geometry.shape == SHAPE and geometry.ndim == 2
    assert geometry.units == units
    assert geometry.spacing == pytest.approx(spacing)
    if units == "mm":  # and the spacing is SimpleITK's, reversed into (y, x)
        assert geometry.spacing == pytest.approx(sitk.ReadImage(str(path)).GetSpacing()[::-1], rel=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".nii.gz", ".mha", ".nrrd"])
def test_write_image_2d_round_trip(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    geometry = Geometry(SHAPE, spacing=(0.5, 0.25), origin=(3.0, -2.0))
    write_image(_mask(), path, geometry=geometry)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), _mask())
    array, got = read_image(path)
    np.testing.assert_array_equal(array, _mask())
    if suffix in (".nii.gz", ".mha", ".nrrd"):
        assert got.spacing == pytest.approx(geometry.spacing) and got.origin == pytest.approx(geometry.origin)
    if suffix == ".png":
        assert got.units == "px" and got.spacing == (1.0, 1.0)  # PNG keeps no physical spacing


def test_tiff_without_resolution_is_pixels_and_with_resolution_mm():
    assert picture_units("tiff", (1.0, 1.0)) == ("px", (1.0, 1.0))
    # SimpleITK's own TIFF of spacing 1 holds 25.4 dpi as float32: 1.0000000150 mm -> pixels
    assert picture_units("tiff", (1.000000015, 1.000000015)) == ("px", (1.0, 1.0))
    assert picture_units("tiff", (0.3527777777777778,) * 2) == ("mm", (0.3527778, 0.3527778))
    assert picture_units("png", (0.0847, 0.0847)) == ("px", (1.0, 1.0))  # pHYs is a print density
    assert picture_units(None, (0.5, 0.25)) == ("mm", None)


def test_png_with_print_density_is_still_pixels(tmp_path):
    path = _sitk(_mask(), tmp_path / "dpi.png", spacing=(0.3, 0.3))  # ITK writes pHYs
    assert sitk.ReadImage(str(path)).GetSpacing() == pytest.approx((0.3, 0.3))
    _, geometry = read_image(path)
    assert geometry.units == "px" and geometry.spacing == (1.0, 1.0)


def test_one_slice_volume_stays_3d(tmp_path):
    for suffix in (".nii.gz", ".mha", ".nrrd"):
        path = _sitk(_mask()[None], tmp_path / f"one{suffix}")
        array, geometry = read_image(path)
        assert array.shape == (1, *SHAPE) and geometry.ndim == 3 and geometry.units == "mm"


def test_16_bit_png_image(tmp_path):
    image = (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 37 % 4096).astype(np.uint16)
    path = _sitk(image, tmp_path / "raw.png")
    array, geometry = read_image(path)
    assert array.dtype == np.uint16 and geometry.units == "px"
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(sitk.ReadImage(str(path))))


def test_read_image_ndim_is_checked(tmp_path):
    path = _sitk(_mask(), tmp_path / "m.png")
    assert read_image(path, ndim=2)[0].shape == SHAPE
    with pytest.raises(ImageReadError, match=r"case 'c1', reference: cannot read '.*m\.png': it is 2-D "
                       r"\(size 30 x 40\); expected a 3-D image\.$"):
        read_image(path, case="c1", role="reference", ndim=3)
    with pytest.raises(InputError, match=r"`ndim` must be None, 2 or 3; got 4"):
        read_image(path, ndim=4)


# --------------------------------------------------------------------------- colour and JPEG


def test_rgb_and_rgba_masks_with_equal_channels_are_one_channel(tmp_path):
    m = _mask()
    rgb = _sitk(np.stack([m] * 3, -1), tmp_path / "rgb.png", vector=True)
    rgba = _sitk(np.stack([m] * 3 + [np.full_like(m, 255)], -1), tmp_path / "rgba.png", vector=True)
    assert sitk.ReadImage(str(rgb)).GetNumberOfComponentsPerPixel() == 3
    for path in (rgb, rgba):
        array, geometry = read_image(path, mask=True)
        np.testing.assert_array_equal(array, m)
        assert array.dtype == np.uint8 and geometry.shape == SHAPE


def test_rgb_mask_with_differing_channels_is_refused(tmp_path):
    m = _mask()
    path = _sitk(np.stack([m, np.zeros_like(m), np.zeros_like(m)], -1), tmp_path / "red.png", vector=True)
    with pytest.raises(ImageReadError, match=r"^case 'c1', algorithm 'w3': cannot read '.*red\.png': it is a "
                       r"colour \(RGB\) image whose channels differ \(pixel \(y=5, x=6\) is RGB \(255, 0, 0\)\); "
                       r"a mask must hold label values .*save it as a grayscale"):
        read_image(path, case="c1", role="algorithm 'w3'", mask=True)
    # as an image (for overlays) it becomes its luminance
    array, _ = read_image(path)
    assert array.dtype == np.float32 and array[5, 6] == pytest.approx(0.299 * 255)


def test_rgba_mask_with_varying_alpha_is_refused(tmp_path):
    m = _mask()
    path = _sitk(np.stack([m] * 3 + [m], -1), tmp_path / "alpha.png", vector=True)
    with pytest.raises(ImageReadError, match=r"^case 'c1', reference: cannot read '.*alpha\.png': its alpha "
                       r"\(transparency\) channel varies \(0 to 255\); a mask's alpha must be constant"):
        read_image(path, case="c1", role="reference", mask=True)


def test_colour_volume_stays_refused(tmp_path):
    path = _sitk(np.zeros((3, *SHAPE, 3), np.uint8), tmp_path / "v.nrrd", vector=True)
    with pytest.raises(ImageReadError, match=r"it has 3 components per voxel .*expected a scalar 3-D image"):
        read_image(path, mask=True)


def test_two_component_picture_is_refused():
    with pytest.raises(ImageReadError, match=r"it has 2 components per pixel .*expected one channel"):
        one_channel(np.zeros((2, 3, 2), np.uint8), mask=True, fail=ImageReadError)


def test_jpeg_mask_refused_jpeg_image_read(tmp_path):
    path = _sitk(_mask(), tmp_path / "mask.jpg")
    noisy = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert len(np.unique(noisy)) > 2  # why: JPEG alters the values near edges
    with pytest.raises(ImageReadError, match=r"^case 'c1', algorithm 'a': cannot use '.*mask\.jpg' as a mask: "
                       r"it is a JPEG file, and JPEG compression is lossy .*save the masks as PNG"):
        read_image(path, case="c1", role="algorithm 'a'", mask=True)
    array, geometry = read_image(path)  # fine as an image
    np.testing.assert_array_equal(array, noisy)
    assert geometry.units == "px"


def test_jpeg_mask_refused_in_a_catalogue(tmp_path):
    for algorithm in ("a", "b"):
        (tmp_path / "c1").mkdir(exist_ok=True)
        _sitk(_mask(), tmp_path / "c1" / f"{algorithm}.png")
    _sitk(_mask(), tmp_path / "c1" / "c.jpg")
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}", labels="binary")
    assert list(ens.algorithm.values) == ["a", "b", "c"]
    with pytest.raises(ImageReadError, match=r"^case 'c1', algorithm 'c': cannot use '.*c\.jpg' as a mask"):
        load_case(ens, "c1")


def test_gray_alpha_png_explained(tmp_path):
    """SimpleITK cannot read a gray + alpha PNG at all; we say so and how to fix it."""
    import zlib

    raw = b"".join(b"\x00" + bytes([255, 255] * 4) for _ in range(3))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (4).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([8, 4, 0, 0, 0]))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path = tmp_path / "la.png"
    path.write_bytes(png)
    with pytest.raises(ImageReadError, match=r"cannot read '.*la\.png': it is a gray \+ alpha PNG, which "
                       r"SimpleITK cannot read; save it without the alpha channel"):
        read_image(path, mask=True)


# --------------------------------------------------------------------------- catalogues


def _png_cohort(root, cases=("c1", "c2"), algorithms=("w1", "w2", "w3"), value=255):
    rng = np.random.default_rng(0)
    for case in cases:
        (root / case).mkdir(parents=True, exist_ok=True)
        _sitk(_mask(value=value), root / case / "gold.png")
        for algorithm in algorithms:
            m = _mask(value=value)
            m[rng.integers(0, 30), rng.integers(0, 40)] = value
            _sitk(m, root / case / f"{algorithm}.png")
    return root


def test_0_255_masks_infer_the_binary_scheme(tmp_path):
    ens = open_ensemble(_png_cohort(tmp_path), masks="{case}/{algorithm}.png", reference="{case}/gold.png")
    assert ens.attrs["label_scheme"] == "binary" and list(ens.label.values) == ["foreground"]
    masks = load_case(ens, "c1")
    assert masks.dims == ("algorithm", "label", "y", "x") and masks.attrs["units"] == "px"
    assert int(masks.sel(algorithm="w1").sum()) >= int((_mask() > 0).sum())
    reference = load_reference(ens, "c1", geometry=masks)
    assert reference.dims == ("label", "y", "x")
    np.testing.assert_array_equal(reference.values[0], _mask() > 0)


def test_read_label_maps_gives_2d_arrays_and_their_grid(tmp_path):
    ens = open_ensemble(_png_cohort(tmp_path), masks="{case}/{algorithm}.png", reference="{case}/gold.png",
                        labels="binary")
    arrays, grid = read_label_maps(ens, "c2")
    assert list(arrays) == ["w1", "w2", "w3"]
    assert all(a.shape == SHAPE and a.dtype == np.uint8 for a in arrays.values())
    assert grid == Geometry(SHAPE, units="px")
    maps = load_label_maps(ens, "c2")
    assert maps.dims == ("algorithm", "y", "x")
    assert maps.attrs == {"spacing": (1.0, 1.0), "origin": (0.0, 0.0), "direction": (1.0, 0.0, 0.0, 1.0),
                          "units": "px", "case": "c2"}


def test_geometry_mismatch_between_2d_candidates(tmp_path):
    root = _png_cohort(tmp_path)
    _sitk(np.zeros((31, 40), np.uint8), root / "c1" / "w2.png")
    ens = open_ensemble(root, masks="{case}/{algorithm}.png", reference="{case}/gold.png", labels="binary")
    with pytest.raises(GeometryError, match=r"^case 'c1', algorithm 'w2': shape \(31, 40\) differs from the "
                       r"first candidate's \(30, 40\) \(algorithm 'w1'\); resample it"):
        load_case(ens, "c1")
    # 2-D NIfTI beside NIfTI: the spacing is compared too
    for algorithm, spacing in (("a", (0.5, 0.5)), ("b", (0.5, 0.7))):
        (tmp_path / "n" / "c1").mkdir(parents=True, exist_ok=True)
        _sitk(_mask(), tmp_path / "n" / "c1" / f"{algorithm}.nii.gz", spacing=spacing)
    ens = open_ensemble(tmp_path / "n", labels="binary")
    with pytest.raises(GeometryError, match=r"^case 'c1', algorithm 'b': spacing \(0\.5, 0\.7\) differs from "
                       r"the first candidate's \(0\.5, 0\.5\)"):
        read_label_maps(ens, "c1")
    assert read_label_maps(ens, "c1", resample=True)[1].spacing == (0.5, 0.5)


def test_px_candidate_beside_mm_candidate(tmp_path):
    (tmp_path / "c1").mkdir()
    _sitk(_mask(), tmp_path / "c1" / "a.nii.gz")
    _sitk(_mask(), tmp_path / "c1" / "b.png")
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}", labels="binary")
    with pytest.raises(GeometryError, match=r"^case 'c1', algorithm 'b': units 'px' differs from the first "
                       r"candidate's 'mm' \(algorithm 'a'\); one file stores a physical pixel size"):
        read_label_maps(ens, "c1")


def test_2d_candidate_beside_3d_ones_is_a_clear_error(tmp_path):
    (tmp_path / "c1").mkdir()
    _sitk(np.stack([_mask()] * 4), tmp_path / "c1" / "a.nii.gz")
    _sitk(_mask(), tmp_path / "c1" / "b.png")
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}", labels="binary")
    with pytest.raises(ImageReadError, match=r"^case 'c1', algorithm 'b': cannot read '.*b\.png': it is 2-D "
                       r"\(size 30 x 40\); expected a 3-D image like the case's first candidate \(algorithm 'a', "
                       r"size 4 x 30 x 40\): the masks of a case must all be 2-D or all 3-D"):
        read_label_maps(ens, "c1")


def test_2d_reference_beside_3d_candidates_is_a_clear_error(tmp_path):
    (tmp_path / "c1").mkdir()
    _sitk(np.stack([_mask()] * 4), tmp_path / "c1" / "a.nii.gz")
    _sitk(_mask(), tmp_path / "c1" / "gt.png")
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}.nii.gz", reference="{case}/gt.png", labels="binary")
    with pytest.raises(ImageReadError, match=r"^case 'c1', reference: cannot read '.*gt\.png': it is 2-D .*"
                       r"expected a 3-D image like the case's candidates"):
        load_reference(ens, "c1", geometry=load_label_maps(ens, "c1"))


def test_images_pattern_without_modality_and_cases_without_images(tmp_path):
    root = _png_cohort(tmp_path, cases=("c1", "c2", "c3"))
    _sitk((np.arange(1200).reshape(SHAPE) % 4096).astype(np.uint16), root / "c2" / "image.png")
    ens = open_ensemble(root, masks="{case}/{algorithm}.png", reference="{case}/gold.png",
                        images="{case}/image.png")
    assert list(ens.case.values) == ["c1", "c2", "c3"] and list(ens.modality.values) == ["image"]
    assert [bool(p) for p in ens["image"].sel(modality="image").values] == [False, True, False]
    image = load_images(ens, "c2", geometry=load_label_maps(ens, "c2"))
    assert image.dims == ("modality", "y", "x") and image.dtype == np.float32
    assert load_images(ens, "c1", missing="skip") is None
    with pytest.raises(ImageReadError, match=r"case 'c1', image 'image': no file matched the `images` pattern "
                       r"'\{case\}/image\.png'"):
        load_images(ens, "c1")
    with pytest.raises(InputError, match=r"`missing` must be 'raise' or 'skip'; got 'ignore'"):
        load_images(ens, "c1", missing="ignore")
    # (a one-modality pattern of a volume is named after its file)
    assert open_ensemble(root, masks="{case}/{algorithm}.png", images="{case}/gold.png").modality.values.tolist() == ["gold"]


def test_check_geometry_2d_against_3d_names_both():
    with pytest.raises(GeometryError, match=r"case 'c1', image 'b': shape \(30, 40\) differs from the first image's "
                       r"\(4, 30, 40\) \(image 'a'\); it is 2-D and the other is 3-D"):
        check_geometry({"a": Geometry((4, 30, 40)), "b": Geometry(SHAPE)}, case="c1", role="image")


# --------------------------------------------------------------------------- BU-BIL


def test_bu_bil_catalogues_as_a_user_writes_them():
    _require_bu_bil()
    crowd = qe_nb.open_ensemble(str(BU_BIL), masks="{case}/crowd_mturk_annotation3-{algorithm}.png",
                                reference="{case}/gold.png", images="{case}/image.png")
    assert dict(crowd.sizes) == {"case": 47, "algorithm": 7, "modality": 1, "label": 1}
    assert crowd.attrs["label_scheme"] == "binary"
    assert all(crowd["mask"].values.ravel()) and all(crowd["reference"].values)
    assert int((crowd["image"] != "").sum()) == 8
    experts = qe_nb.open_ensemble(str(BU_BIL), masks="{case}/expert_{algorithm}.png", reference="{case}/gold.png")
    assert dict(experts.sizes) == {"case": 47, "algorithm": 10, "label": 1}
    assert experts.algorithm.values[0] == "Person1_Amira"
    arrays, grid = read_label_maps(crowd, "m01")
    assert grid.shape == (1030, 1300) and grid.units == "px"
    assert set(np.unique(arrays["1"])) == {0, 255}
    assert load_images(crowd, "m01", geometry=grid).shape == (1, 1030, 1300)
    assert load_images(crowd, "m20", missing="skip") is None


def test_bu_bil_manifest_entries_open():
    _require_bu_bil()
    crowd = qe_nb.open_dataset("bu-bil-fibroblasts-crowd")
    experts = qe_nb.open_dataset("bu-bil-fibroblasts-experts")
    assert (crowd.sizes["case"], crowd.sizes["algorithm"]) == (47, 7)
    assert (experts.sizes["case"], experts.sizes["algorithm"]) == (47, 10)
    assert list(crowd.modality.values) == ["image"]


def test_bu_bil_masks_of_one_image_read_fast():
    """The 17 masks of one 1030 x 1300 image (7 crowd + 10 expert) read in well under a second."""
    _require_bu_bil()
    both = qe_nb.open_ensemble(str(BU_BIL), masks="{case}/{algorithm}.png", labels="binary")
    members = [a for a in both.algorithm.values if a.startswith(("crowd_", "expert_"))]
    assert len(members) == 17
    read_label_maps(both.sel(algorithm=members), "m01")  # warm
    start = time.perf_counter()
    arrays, grid = read_label_maps(both.sel(algorithm=members), "m01")
    elapsed = time.perf_counter() - start
    assert len(arrays) == 17 and grid.shape == (1030, 1300)
    assert elapsed < 1.0, f"{elapsed * 1000:.0f} ms"

"""Tests of qe_nb.data.ensemble (the catalogue of files) and qe_nb.data.loading (loading one case)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import qe_nb
from qe_nb.core.labels import BRATS, BRATS_REGIONS, LabelScheme, structure_masks
from qe_nb.data.ensemble import open_ensemble
from qe_nb.data.images import Geometry, write_image
from qe_nb.data.loading import (
    ensemble_labels,
    load_case,
    load_images,
    load_label_maps,
    load_reference,
)
from qe_nb.exceptions import (
    EnsembleError,
    GeometryError,
    ImageReadError,
    InputError,
    LabelError,
    QeNbWarning,
)

SHAPE = (8, 10, 12)
CASES = ("BraTS-001", "BraTS-002", "BraTS-003")
ALGORITHMS = ("isen-20", "sanet", "scan")


def _write(array, path, *, spacing_zyx=(1.0, 1.0, 1.0), origin_zyx=(0.0, 0.0, 0.0), direction=None):
    """Write with SimpleITK directly (not with qe_nb.io), so the tests do not trust our writer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image.SetOrigin(tuple(float(s) for s in origin_zyx[::-1]))
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), True)
    return path


def _label_map(seed: int) -> np.ndarray:
    """A small BraTS-like map: edema around a core of necrosis and enhancing tumour."""
    rng = np.random.default_rng(seed)
    m = np.zeros(SHAPE, np.uint8)
    m[2:7, 2:8, 2:10] = 2
    m[3:6, 3:7, 3:9] = 4
    m[4, 4:6, 4:8] = 1
    flip = rng.random(SHAPE) < 0.05
    m[flip] = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=int(flip.sum()))
    return m


@pytest.fixture
def maps() -> dict[tuple[str, str], np.ndarray]:
    return {(c, a): _label_map(10 * i + j) for i, c in enumerate(CASES) for j, a in enumerate(ALGORITHMS)}


def _cohort(root: Path, maps, layout: str) -> Path:
    for (case, algorithm), m in maps.items():
        _write(m, root / layout.format(case=case, algorithm=algorithm))
    return root


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "layout",
    [
        "{case}/{algorithm}.nii.gz",  # case folders
        "{algorithm}/{case}.nii.gz",  # nnU-Net style prediction folders
        "preds/{algorithm}/seg/{case}.nii.gz",  # deeper
        "{case}__{algorithm}.nii.gz",  # flat
    ],
)
def test_layouts_give_the_same_catalogue(tmp_path, maps, layout):
    root = _cohort(tmp_path, maps, layout)
    ens = open_ensemble(root, masks=layout, labels="brats")
    assert list(ens.case.values) == list(CASES)
    assert list(ens.algorithm.values) == list(ALGORITHMS)
    assert ens["mask"].dims == ("case", "algorithm")
    for (case, algorithm), _ in maps.items():
        path = str(ens["mask"].sel(case=case, algorithm=algorithm).values)
        assert os.path.isabs(path) and path == str(root / layout.format(case=case, algorithm=algorithm))
    assert ens.attrs == {
        "root": str(root), "masks": layout, "reference": "", "images": "",
        "label_scheme": "brats", "label_scheme_text": BRATS.describe(), "labels_inferred": 0,
    }
    assert list(ens.label.values) == ["necrosis", "edema", "enhancing"]
    assert list(ens.label_values.values) == ["1", "2", "4"]
    np.testing.assert_array_equal(load_label_maps(ens, "BraTS-002").sel(algorithm="sanet"),
                                  maps[("BraTS-002", "sanet")])


def test_flat_pattern_ambiguity_first_placeholder_is_shortest(tmp_path):
    """Documented rule: placeholders match `[^/]+?`, so the first one stops at the first separator."""
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "BraTS_001_isen-20.nii.gz")
    ens = open_ensemble(tmp_path, masks="{case}_{algorithm}.nii.gz", labels="binary")
    assert list(ens.case.values) == ["BraTS"] and list(ens.algorithm.values) == ["001_isen-20"]


def test_repeated_placeholder_must_agree(tmp_path):
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "c1" / "c1_unet.nii.gz")
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "c1" / "c2_unet.nii.gz")  # ignored: c2 != c1
    ens = open_ensemble(tmp_path, masks="{case}/{case}_{algorithm}.nii.gz", labels="binary")
    assert list(ens.case.values) == ["c1"] and list(ens.algorithm.values) == ["unet"]


def test_pattern_without_suffix_accepts_every_format(tmp_path, maps):
    m = maps[("BraTS-001", "isen-20")]
    for i, suffix in enumerate([".nii", ".nii.gz", ".nrrd", ".mha"]):
        _write(m + 0, tmp_path / "c1" / f"alg{i}{suffix}")
    (tmp_path / "c1" / "notes.txt").write_text("not a candidate")
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}", labels="brats-regions")
    assert list(ens.algorithm.values) == ["alg0", "alg1", "alg2", "alg3"]
    loaded = load_label_maps(ens, "c1")
    for i in range(4):
        np.testing.assert_array_equal(loaded.values[i], m)


def test_same_candidate_twice_is_an_error_naming_both_files(tmp_path):
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "c1" / "a.nii")
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "c1" / "a.nii.gz")
    with pytest.raises(EnsembleError, match=r"two files map to case 'c1', algorithm 'a' under the `masks` "
                       r"pattern '\{case\}/\{algorithm\}': '.*c1/a\.nii' and '.*c1/a\.nii\.gz'"):
        open_ensemble(tmp_path, masks="{case}/{algorithm}", labels="binary")


def test_duplicate_reference_and_image_are_errors(tmp_path):
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "c1" / "a.nii.gz")
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "c1" / "ref" / "gt.nii")
    _write(np.ones((2, 2, 2), np.uint8), tmp_path / "c1" / "ref" / "gt.nrrd")
    with pytest.raises(EnsembleError, match=r"two files map to case 'c1' under the `reference` pattern"):
        open_ensemble(tmp_path, reference="{case}/ref/gt", labels="binary")
    _write(np.ones((2, 2, 2), np.int16), tmp_path / "c1" / "img" / "t1.nii")
    _write(np.ones((2, 2, 2), np.int16), tmp_path / "c1" / "img" / "t1.mha")
    with pytest.raises(EnsembleError, match=r"two files map to case 'c1', modality 't1' under the `images`"):
        open_ensemble(tmp_path, images="{case}/img/{modality}", labels="binary")


def test_reference_beside_candidates_is_not_an_algorithm(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    for case in CASES[:2]:  # the third case has no reference
        _write(maps[(case, "sanet")], root / case / "reference.nii.gz")
    ens = open_ensemble(root, reference="{case}/reference.nii.gz", labels="brats-regions")
    assert "reference" not in ens.algorithm.values
    assert list(ens.algorithm.values) == list(ALGORITHMS)
    assert ens["reference"].dims == ("case",)
    assert str(ens["reference"].sel(case="BraTS-001").values) == str(root / "BraTS-001" / "reference.nii.gz")
    assert str(ens["reference"].sel(case="BraTS-003").values) == ""
    assert ens.attrs["reference"] == "{case}/reference.nii.gz"

    ref = load_reference(ens, "BraTS-001")
    assert ref.dims == ("label", "z", "y", "x") and ref.dtype == bool and ref.name == "reference"
    np.testing.assert_array_equal(ref.values, structure_masks(maps[("BraTS-001", "sanet")], BRATS_REGIONS))
    assert ref.attrs["case"] == "BraTS-001" and ref.attrs["spacing"] == (1.0, 1.0, 1.0)
    assert load_reference(ens, "BraTS-003") is None
    with pytest.warns(QeNbWarning, match="takes \\['reference'\\] for algorithms"):
        no_reference = open_ensemble(root, labels="brats")
    assert load_reference(no_reference, "BraTS-001") is None


def test_case_with_reference_but_no_candidates_is_kept(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    _write(maps[("BraTS-001", "sanet")], root / "BraTS-999" / "reference.nii.gz")
    ens = open_ensemble(root, reference="{case}/reference.nii.gz", labels="brats")
    assert "BraTS-999" in ens.case.values
    assert list(ens["mask"].sel(case="BraTS-999").values) == ["", "", ""]
    with pytest.raises(ImageReadError, match=r"case 'BraTS-999', algorithm 'isen-20': no file matched the "
                       r"`masks` pattern '\{case\}/\{algorithm\}\.nii\.gz' \(expected e\.g\. "
                       r"'.*BraTS-999/isen-20\.nii\.gz'\)"):
        load_label_maps(ens, "BraTS-999")


def test_images_with_modalities(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    rng = np.random.default_rng(0)
    images = {}
    for case in CASES:
        for modality in ("t2", "t1", "flair"):
            images[case, modality] = rng.integers(-100, 1000, SHAPE).astype(np.int16)
            _write(images[case, modality], root / case / "images" / f"{modality}.nii.gz")
    ens = open_ensemble(root, images="{case}/images/{modality}.nii.gz", labels="brats")
    assert list(ens.modality.values) == ["flair", "t1", "t2"]
    assert ens["image"].dims == ("case", "modality")
    assert list(ens.algorithm.values) == list(ALGORITHMS)  # images are not candidates
    im = load_images(ens, "BraTS-002", geometry=load_case(ens, "BraTS-002"))
    assert im.dims == ("modality", "z", "y", "x") and im.dtype == np.float32 and im.name == "image"
    np.testing.assert_array_equal(im.sel(modality="t1").values, images["BraTS-002", "t1"].astype(np.float32))
    assert im.attrs["case"] == "BraTS-002"


def test_stray_files_are_ignored(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    (root / "README.md").write_text("a cohort")
    (root / "BraTS-001" / "notes.txt").write_text("x")
    (root / "BraTS-001" / ".qe_nb-tmp-123.nii.gz").write_bytes(b"half a file")
    (root / "BraTS-001" / "._isen-20.nii.gz").write_bytes(b"macOS resource fork")
    _write(maps[("BraTS-001", "sanet")], root / "BraTS-001" / "deeper" / "extra.nii.gz")
    _write(maps[("BraTS-001", "sanet")], root / ".ipynb_checkpoints" / "x.nii.gz")
    _write(maps[("BraTS-001", "sanet")], root / "top-level.nii.gz")
    ens = open_ensemble(root, labels="brats")
    assert list(ens.case.values) == list(CASES)
    assert list(ens.algorithm.values) == list(ALGORITHMS)


def test_missing_candidate_is_empty_and_loading_it_names_it(tmp_path, maps):
    del maps[("BraTS-002", "scan")]
    root = _cohort(tmp_path, maps, "{algorithm}/{case}.nii.gz")
    ens = open_ensemble(root, masks="{algorithm}/{case}.nii.gz", labels="brats")
    assert str(ens["mask"].sel(case="BraTS-002", algorithm="scan").values) == ""
    with pytest.raises(ImageReadError, match=r"^case 'BraTS-002', algorithm 'scan': no file matched the `masks` "
                       r"pattern '\{algorithm\}/\{case\}\.nii\.gz' \(expected e\.g\. '.*scan/BraTS-002\.nii\.gz'\)\.$"):
        load_label_maps(ens, "BraTS-002")
    # the scoring step selects the candidates that exist
    present = load_label_maps(ens.sel(case=["BraTS-002"], algorithm=["isen-20", "sanet"]), "BraTS-002")
    assert list(present.algorithm.values) == ["isen-20", "sanet"]


def test_catalogue_round_trips_through_netcdf(tmp_path, maps):
    root = _cohort(tmp_path / "data", maps, "{case}/{algorithm}.nii.gz")
    ens = open_ensemble(root, labels="brats-regions")
    ens.to_netcdf(tmp_path / "catalogue.nc")
    with xr.open_dataset(tmp_path / "catalogue.nc") as back:
        back = back.load()
    assert ensemble_labels(back) is BRATS_REGIONS
    np.testing.assert_array_equal(load_case(back, "BraTS-003").values, load_case(ens, "BraTS-003").values)


# --------------------------------------------------------------------------- labels


def test_labels_inferred_and_logged(tmp_path, maps, caplog):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    with caplog.at_level(logging.INFO, logger="qe_nb"):
        ens = open_ensemble(root)
    assert ens.attrs["label_scheme"] == "brats-regions" and ens.attrs["labels_inferred"] == 1
    assert ens.attrs["label_scheme_text"] == BRATS_REGIONS.describe()
    assert list(ens.label_values.values) == ["1,2,4", "1,4", "4"]
    assert "labels inferred from 3 file(s) of case 'BraTS-001'" in caplog.text
    assert "brats-regions" in caplog.text


def test_labels_inference_skips_unreadable_files(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    (root / "BraTS-001" / "isen-20.nii.gz").write_bytes(b"")
    assert open_ensemble(root).attrs["label_scheme"] == "brats-regions"


def test_labels_inference_fails_when_nothing_is_readable(tmp_path):
    for algorithm in ("a", "b"):
        (tmp_path / "c1").mkdir(exist_ok=True)
        (tmp_path / "c1" / f"{algorithm}.nii.gz").write_bytes(b"")
    with pytest.raises(EnsembleError, match=r"cannot infer the label scheme: none of the 2 candidate file\(s\) "
                       r"tried could be read as a label map\. The first problem: case 'c1', algorithm 'a': "
                       r".*empty.* Pass `labels=`"):
        open_ensemble(tmp_path)


@pytest.mark.parametrize(
    ("labels", "names", "values", "name"),
    [
        ("brats", ["necrosis", "edema", "enhancing"], ["1", "2", "4"], "brats"),
        ("binary", ["foreground"], ["nonzero"], "binary"),
        ({"core": [1, 4], "all": [1, 2, 4]}, ["core", "all"], ["1,4", "1,2,4"], "custom"),
        (LabelScheme("mine", {"x": (2,)}), ["x"], ["2"], "mine"),
    ],
)
def test_labels_given(tmp_path, maps, labels, names, values, name):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    ens = open_ensemble(root, labels=labels)
    assert list(ens.label.values) == names and list(ens.label_values.values) == values
    assert ens.attrs["label_scheme"] == name and ens.attrs["labels_inferred"] == 0
    masks = load_case(ens, "BraTS-001")
    assert list(masks.label.values) == names
    np.testing.assert_array_equal(masks.sel(algorithm="scan").values,
                                  structure_masks(maps[("BraTS-001", "scan")], ensemble_labels(ens)))


def test_unknown_label_scheme(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    with pytest.raises(InputError, match=r"Unknown label scheme 'bratz'"):
        open_ensemble(root, labels="bratz")


def test_ensemble_labels_needs_label_coords():
    with pytest.raises(InputError, match=r"must carry the `label` and `label_values` coords"):
        ensemble_labels(xr.Dataset())


# --------------------------------------------------------------------------- open_ensemble errors


def test_root_missing_or_a_file(tmp_path):
    with pytest.raises(EnsembleError, match=r"`root` '.*nowhere' does not exist; expected the folder"):
        open_ensemble(tmp_path / "nowhere")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(EnsembleError, match=r"`root` '.*f\.txt' is a file, not a folder"):
        open_ensemble(tmp_path / "f.txt")
    with pytest.raises(EnsembleError, match=r"`root` must be a folder path; got int"):
        open_ensemble(3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"masks": "{algorithm}.nii.gz"}, r"`masks` pattern '\{algorithm\}\.nii\.gz' has no \{case\}; it needs "
         r"\{case\} and \{algorithm\}, e\.g\. '\{case\}/\{algorithm\}\.nii\.gz'"),
        ({"masks": "{case}/seg.nii.gz"}, r"`masks` pattern '\{case\}/seg\.nii\.gz' has no \{algorithm\}"),
        ({"masks": "{case}/{algorithm}_{modality}.nii.gz"}, r"`masks` pattern .* must not use \{modality\}"),
        ({"reference": "gt/ref.nii.gz"}, r"`reference` pattern 'gt/ref\.nii\.gz' has no \{case\}; it needs \{case\}"),
        ({"reference": "{case}/{algorithm}_gt.nii.gz"}, r"`reference` pattern .* must not use \{algorithm\}"),
        # (an `images` pattern without {modality} is one modality since issue 13: test_images_2d.py)
        ({"images": "{modality}.nii.gz"}, r"`images` pattern '\{modality\}\.nii\.gz' has no \{case\}"),
        ({"masks": "{case}/{alg}.nii.gz"}, r"uses unknown placeholder\(s\) \['\{alg\}'\]; expected only"),
        ({"masks": "{case}/{algorithm.nii.gz"}, r"has an unbalanced '\{' or '\}'"),
        ({"masks": "/abs/{case}/{algorithm}.nii.gz"}, r"must be a relative path below `root`"),
        ({"masks": "../{case}/{algorithm}.nii.gz"}, r"must be a relative path below `root` without empty, '\.' or '\.\.'"),
        ({"masks": ""}, r"`masks` must be a non-empty pattern string such as '\{case\}/\{algorithm\}\.nii\.gz'; got ''"),
        ({"masks": 3}, r"`masks` must be a non-empty pattern string .*; got 3"),
    ],
)
def test_bad_patterns_fail_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(EnsembleError, match=match):
        open_ensemble(tmp_path, **kwargs)


def test_no_matching_files_shows_what_exists(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii")
    with pytest.raises(EnsembleError, match=r"no file under '.*' matches the `masks` pattern "
                       r"'\{case\}/\{algorithm\}\.nii\.gz'; files found there include 'BraTS-001/isen-20\.nii', "
                       r"'BraTS-001/sanet\.nii', .* \(9 files in all\)"):
        open_ensemble(root)
    with pytest.raises(EnsembleError, match=r"the `reference` pattern '\{case\}/gt\.nii\.gz'"):
        open_ensemble(root, masks="{case}/{algorithm}.nii", reference="{case}/gt.nii.gz")
    with pytest.raises(EnsembleError, match=r"the `images` pattern '\{case\}/img/\{modality\}\.nii'"):
        open_ensemble(root, masks="{case}/{algorithm}.nii", images="{case}/img/{modality}.nii")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EnsembleError, match=r"the folder holds no files at that depth"):
        open_ensemble(empty)


def test_no_candidates_left_after_images_took_them(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    with pytest.raises(EnsembleError, match=r"matches the `masks` pattern .*; 9 file\(s\) were taken by the "
                       r"reference/images patterns first"):
        open_ensemble(root, images="{case}/{modality}.nii.gz")


# --------------------------------------------------------------------------- loading


@pytest.fixture
def cohort(tmp_path, maps):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    return root, open_ensemble(root, labels="brats-regions")


def test_load_label_maps_and_case_match_simpleitk(cohort, maps):
    root, ens = cohort
    lm = load_label_maps(ens, "BraTS-003")
    assert lm.dims == ("algorithm", "z", "y", "x") and lm.name == "label_map"
    assert lm.dtype == np.uint8
    assert lm.attrs == {"spacing": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0),
                        "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), "case": "BraTS-003"}
    masks = load_case(ens, "BraTS-003")
    assert masks.dims == ("algorithm", "label", "z", "y", "x") and masks.dtype == bool
    assert masks.name == "masks" and masks.attrs == lm.attrs
    assert list(masks.label.values) == ["whole_tumor", "tumor_core", "enhancing_tumor"]
    assert list(masks.label_values.values) == ["1,2,4", "1,4", "4"]
    for algorithm in ALGORITHMS:
        raw = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "BraTS-003" / f"{algorithm}.nii.gz")))
        m = masks.sel(algorithm=algorithm).values
        np.testing.assert_array_equal(m[0], np.isin(raw, [1, 2, 4]))
        np.testing.assert_array_equal(m[1], np.isin(raw, [1, 4]))
        np.testing.assert_array_equal(m[2], raw == 4)


def test_public_names_resolve_through_the_package(cohort):
    _, ens = cohort
    assert qe_nb.open_ensemble is open_ensemble and qe_nb.load_case is load_case
    assert qe_nb.load_case(ens, "BraTS-001").shape == (3, 3, *SHAPE)


def test_anisotropic_geometry_in_attrs(tmp_path):
    for algorithm in ("a", "b"):
        _write(np.ones((2, 3, 4), np.uint8), tmp_path / "c1" / f"{algorithm}.nii.gz",
               spacing_zyx=(3.0, 0.7, 0.7), origin_zyx=(5.0, -2.0, 1.0))
    lm = load_label_maps(open_ensemble(tmp_path, labels="binary"), "c1")
    assert lm.attrs["spacing"] == pytest.approx((3.0, 0.7, 0.7))
    assert lm.attrs["origin"] == pytest.approx((5.0, -2.0, 1.0))


@pytest.mark.parametrize(
    ("write_kwargs", "match"),
    [
        ({"spacing_zyx": (3.0, 1.0, 1.0)},
         r"^case 'c1', algorithm 'b': spacing \(3\.0, 1\.0, 1\.0\) differs from the first candidate's "
         r"\(1\.0, 1\.0, 1\.0\) \(algorithm 'a'\); resample it, pass `resample=True`, or pass "
         r"`check_geometry=False` to ignore the difference\.$"),
        ({"origin_zyx": (0.0, 4.0, 0.0)},
         r"^case 'c1', algorithm 'b': origin \(0\.0, 4\.0, 0\.0\) differs from the first candidate's \(0\.0, 0\.0, 0\.0\)"),
        ({"direction": (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)},
         r"^case 'c1', algorithm 'b': direction \(1\.0, 0\.0, 0\.0, 0\.0, 0\.0, 1\.0, 0\.0, 1\.0, 0\.0\) differs"),
    ],
)
def test_geometry_mismatch_messages_and_escapes(tmp_path, write_kwargs, match):
    a = np.zeros(SHAPE, np.uint8)
    a[2:6, 3:7, 4:9] = 1
    _write(a, tmp_path / "c1" / "a.nii.gz")
    _write(a, tmp_path / "c1" / "b.nii.gz", **write_kwargs)
    ens = open_ensemble(tmp_path, labels="binary")
    with pytest.raises(GeometryError, match=match):
        load_label_maps(ens, "c1")
    with pytest.raises(GeometryError, match=match):
        load_case(ens, "c1")
    # check_geometry=False uses the voxels as they are (the first candidate's grid)
    unchecked = load_label_maps(ens, "c1", check_geometry=False)
    np.testing.assert_array_equal(unchecked.values[1], a)
    # resample=True brings b onto a's grid with nearest neighbour (SimpleITK)
    resampled = load_label_maps(ens, "c1", resample=True)
    image_b = sitk.ReadImage(str(tmp_path / "c1" / "b.nii.gz"))
    image_a = sitk.ReadImage(str(tmp_path / "c1" / "a.nii.gz"))
    expected = sitk.GetArrayFromImage(sitk.Resample(image_b, image_a, sitk.Transform(),
                                                    sitk.sitkNearestNeighbor, 0.0))
    np.testing.assert_array_equal(resampled.values[1], expected)
    np.testing.assert_array_equal(resampled.values[0], a)
    assert resampled.attrs["spacing"] == (1.0, 1.0, 1.0)


def test_shape_mismatch_not_fixed_by_check_geometry_false(tmp_path):
    _write(np.ones(SHAPE, np.uint8), tmp_path / "c1" / "a.nii.gz")
    _write(np.ones((8, 10, 13), np.uint8), tmp_path / "c1" / "b.nii.gz")
    ens = open_ensemble(tmp_path, labels="binary")
    match = (r"case 'c1', algorithm 'b': shape \(8, 10, 13\) differs from the first candidate's \(8, 10, 12\) "
             r"\(algorithm 'a'\); resample it or pass `resample=True` \(`check_geometry=False` cannot help")
    with pytest.raises(GeometryError, match=match):
        load_label_maps(ens, "c1")
    with pytest.raises(GeometryError, match=match):
        load_label_maps(ens, "c1", check_geometry=False)
    out = load_label_maps(ens, "c1", resample=True)
    assert out.shape == (2, *SHAPE) and out.values.all()


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.full(SHAPE, 1.5, np.float32), r"holds non-integral values \(e\.g\. 1\.5\)"),
        (np.full(SHAPE, -1, np.int16), r"holds negative labels \(e\.g\. -1\)"),
        (np.full(SHAPE, -2.0, np.float32), r"holds negative labels \(e\.g\. -2\)"),
        (np.where(np.arange(np.prod(SHAPE)).reshape(SHAPE) == 5, np.nan, 1.0).astype(np.float32),
         r"holds NaN or infinite voxels"),
    ],
)
def test_bad_label_maps_name_case_algorithm_and_file(tmp_path, array, match):
    # NRRD, because SimpleITK's NIfTI reader turns NaN voxels into 0
    _write(np.ones(SHAPE, np.uint8), tmp_path / "c1" / "a.nrrd")
    _write(array, tmp_path / "c1" / "b.nrrd")
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}.nrrd", labels="binary")
    with pytest.raises(LabelError, match=r"^case 'c1', algorithm 'b', file '.*c1/b\.nrrd': .*" + match):
        load_label_maps(ens, "c1")


def test_integral_float_maps_become_integers(tmp_path):
    m = _label_map(3)
    _write(m.astype(np.float32), tmp_path / "c1" / "a.nii.gz")
    _write(m.astype(np.int32), tmp_path / "c1" / "b.nii.gz")
    out = load_label_maps(open_ensemble(tmp_path, labels="brats"), "c1")
    assert out.dtype.kind in "iu"
    np.testing.assert_array_equal(out.values[0], m)
    np.testing.assert_array_equal(out.values[1], m)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("truncate", r"truncated or corrupt gzip file"),
        ("empty", r"the file is empty \(0 bytes\)"),
        ("text", r"not an image SimpleITK can read"),
        ("2d", r"it is 2-D \(size 10 x 12\); expected a 3-D image"),
        ("broken-link", r"broken symbolic link"),
    ],
)
def test_unreadable_candidate_names_case_and_algorithm(tmp_path, maps, damage, match):
    root = _cohort(tmp_path, maps, "{case}/{algorithm}.nii.gz")
    path = root / "BraTS-002" / "sanet.nii.gz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-20])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("no image here")
    elif damage == "2d":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 12), np.uint8)), str(path))
    else:
        path.unlink()
        path.symlink_to(root / "gone.nii.gz")
    ens = open_ensemble(root, labels="brats")
    assert str(ens["mask"].sel(case="BraTS-002", algorithm="sanet").values) == str(path)
    with pytest.raises(ImageReadError, match=r"^case 'BraTS-002', algorithm 'sanet': cannot read '.*sanet\.nii\.gz': .*"
                       + match):
        load_case(ens, "BraTS-002")
    assert load_case(ens, "BraTS-001").shape == (3, 3, *SHAPE)


def test_non_utf8_and_long_names(tmp_path, maps):
    root = os.fsdecode(bytes(tmp_path))
    odd_case = os.fsdecode(b"patient-\xe9\xff")
    long_algorithm = "model-" + "x" * 200
    m = maps[("BraTS-001", "sanet")]
    for case in (odd_case, "plain"):
        os.mkdir(os.path.join(root, case))
        for algorithm in (long_algorithm, "b"):
            # SimpleITK aborts on non-UTF-8 names, so write through qe_nb.io (tested in test_io)
            write_image(m, os.path.join(root, case, f"{algorithm}.nii.gz"))
    ens = open_ensemble(root, labels="brats")
    assert set(ens.case.values) == {odd_case, "plain"}
    assert set(ens.algorithm.values) == {long_algorithm, "b"}
    out = load_label_maps(ens, odd_case)
    np.testing.assert_array_equal(out.sel(algorithm=long_algorithm).values, m)


def test_load_errors_for_bad_arguments(cohort):
    _, ens = cohort
    with pytest.raises(InputError, match=r"Unknown case 'nope'; the ensemble holds 3 case\(s\), e\.g\. \['BraTS-001'"):
        load_case(ens, "nope")
    with pytest.raises(InputError, match=r"`case` must be a case id \(str\); got 0"):
        load_label_maps(ens, 0)
    with pytest.raises(InputError, match=r"`ensemble` must be the catalogue from qe_nb\.open_ensemble .*got dict"):
        load_case({}, "BraTS-001")
    with pytest.raises(InputError, match=r"`ensemble` has no images; open it with `images=`"):
        load_images(ens, "BraTS-001")
    with pytest.raises(InputError, match=r"`geometry` must be a Geometry or a DataArray .*got str"):
        load_reference(ens.assign(reference=("case", np.array([str(p) for p in ens["mask"].values[:, 0]],
                                                                dtype=object))),
                       "BraTS-001", geometry="1 mm")


def test_reference_geometry_checked_against_candidates(tmp_path):
    a = np.zeros(SHAPE, np.uint8)
    a[2:6, 3:7, 4:9] = 1
    _write(a, tmp_path / "c1" / "a.nii.gz")
    _write(a, tmp_path / "c1" / "gt" / "ref.nii.gz", spacing_zyx=(2.0, 1.0, 1.0))
    ens = open_ensemble(tmp_path, reference="{case}/gt/ref.nii.gz", labels="binary")
    masks = load_case(ens, "c1")
    assert load_reference(ens, "c1").attrs["spacing"] == (2.0, 1.0, 1.0)  # unchecked without geometry
    with pytest.raises(GeometryError, match=r"^case 'c1', reference: spacing \(2\.0, 1\.0, 1\.0\) differs from the "
                       r"candidates' \(1\.0, 1\.0, 1\.0\); resample it or pass `resample=True`\.$"):
        load_reference(ens, "c1", geometry=masks)
    ref = load_reference(ens, "c1", geometry=Geometry.from_attrs(masks.attrs, masks.shape), resample=True)
    assert ref.shape == (1, *SHAPE) and ref.attrs["spacing"] == (1.0, 1.0, 1.0)
    expected = sitk.GetArrayFromImage(sitk.Resample(
        sitk.ReadImage(str(tmp_path / "c1" / "gt" / "ref.nii.gz")), sitk.ReadImage(str(tmp_path / "c1" / "a.nii.gz")),
        sitk.Transform(), sitk.sitkNearestNeighbor, 0.0))
    np.testing.assert_array_equal(ref.values[0], expected > 0)


def test_images_errors(tmp_path):
    _write(np.ones(SHAPE, np.uint8), tmp_path / "c1" / "a.nii.gz")
    _write(np.ones(SHAPE, np.uint8), tmp_path / "c2" / "a.nii.gz")
    _write(np.ones(SHAPE, np.int16), tmp_path / "c1" / "t1.nrrd")
    _write(np.ones(SHAPE, np.int16), tmp_path / "c1" / "t2.nrrd", spacing_zyx=(2.0, 1.0, 1.0))
    _write(np.ones(SHAPE, np.int16), tmp_path / "c2" / "t1.nrrd")
    ens = open_ensemble(tmp_path, images="{case}/{modality}.nrrd", labels="binary")
    with pytest.raises(GeometryError, match=r"^case 'c1', image 't2': spacing \(2\.0, 1\.0, 1\.0\) differs from "
                       r"the first image's \(1\.0, 1\.0, 1\.0\) \(image 't1'\); resample it or pass `resample=True`\.$"):
        load_images(ens, "c1")
    assert load_images(ens, "c1", resample=True).shape == (2, *SHAPE)
    with pytest.raises(GeometryError, match=r"^case 'c1', image 't2': spacing .* differs from the candidates'"):
        load_images(ens, "c1", geometry=load_case(ens, "c1"))
    with pytest.raises(ImageReadError, match=r"^case 'c2', image 't2': no file matched the `images` pattern "
                       r"'\{case\}/\{modality\}\.nrrd' \(expected e\.g\. '.*c2/t2\.nrrd'\)"):
        load_images(ens, "c2")


# --------------------------------------------------------------------------- the real case


@pytest.fixture(scope="module")
def brats_ensemble(brats_case_dir):
    return open_ensemble(
        brats_case_dir.parent,
        masks="{case}/segmentation/{algorithm}.nii.gz",
        images="{case}/images/{modality}.nii.gz",
    )


def test_real_case_catalogue(brats_ensemble, brats_case_dir):
    ens = brats_ensemble
    assert list(ens.case.values) == ["TCGA-DU-7294"]
    assert list(ens.algorithm.values) == ["hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20"]
    assert list(ens.modality.values) == ["flair", "t1", "t1c", "t2"]
    assert ens.attrs["label_scheme"] == "brats-regions" and ens.attrs["labels_inferred"] == 1
    assert list(ens.label.values) == ["whole_tumor", "tumor_core", "enhancing_tumor"]
    # BraTS Toolkit's fusion outputs sit beside the candidates and are not candidates
    assert "mav" not in ens.algorithm.values and "simple" not in ens.algorithm.values
    assert str(ens["mask"].sel(case="TCGA-DU-7294", algorithm="isen-20").values) == str(
        brats_case_dir / "segmentation" / "isen-20.nii.gz")


def test_real_case_masks_match_simpleitk(brats_ensemble, brats_candidates):
    masks = load_case(brats_ensemble, "TCGA-DU-7294")
    assert masks.shape == (5, 3, 155, 240, 240) and masks.dtype == bool
    assert masks.attrs["spacing"] == (1.0, 1.0, 1.0)
    for algorithm, raw in brats_candidates.items():
        m = masks.sel(algorithm=algorithm)
        assert int(m.sel(label="whole_tumor").sum()) == int((raw > 0).sum())
        assert int(m.sel(label="tumor_core").sum()) == int(np.isin(raw, [1, 4]).sum())
        assert int(m.sel(label="enhancing_tumor").sum()) == int((raw == 4).sum())
    # enhancing tumour is absent in three of the five candidates (README of the example)
    assert int((masks.sel(label="enhancing_tumor").sum(("z", "y", "x")) == 0).sum()) == 3
    del masks
    images = load_images(brats_ensemble, "TCGA-DU-7294")
    assert images.shape == (4, 155, 240, 240) and images.dtype == np.float32


# --------------------------------------------------------------------------- properties

_ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12).filter(
    lambda s: not s.startswith(".") and not s.endswith(".")
)


@settings(max_examples=15, deadline=None)
@given(
    cases=st.lists(_ID, min_size=1, max_size=4, unique=True),
    algorithms=st.lists(_ID, min_size=1, max_size=3, unique=True),
    layout=st.sampled_from(["{case}/{algorithm}.nii.gz", "{algorithm}/{case}.nii.gz",
                            "{case}__{algorithm}.nii.gz", "{case}/{algorithm}"]),
)
def test_catalogue_recovers_every_id(cases, algorithms, layout):
    """Ids without the separator come back exactly, whatever the layout; order does not matter."""
    import tempfile

    if "__" in layout and any("_" in c for c in cases):
        return
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        tiny = np.ones((1, 1, 2), np.uint8)
        for case in cases:
            for algorithm in algorithms:
                name = layout.format(case=case, algorithm=algorithm)
                _write(tiny, root / (name + ".nrrd" if layout.endswith("}") else name))
        ens = open_ensemble(root, masks=layout, labels="binary")
        assert list(ens.case.values) == sorted(cases)
        assert list(ens.algorithm.values) == sorted(algorithms)
        assert (ens["mask"].values != "").all()


def test_reference_caught_by_the_masks_pattern_warns(tmp_path):
    """Without `reference=`, a `reference.nii.gz` beside the candidates would be fused as one."""
    import warnings as _warnings

    arr = np.zeros((4, 5, 6), np.uint8)
    arr[1:3, 1:3, 1:3] = 1
    for name in ("alg-a", "alg-b", "reference"):
        path = tmp_path / "c1" / f"{name}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.warns(QeNbWarning, match=r"takes \['reference'\] for algorithms; .*reference='\{case\}/reference\.nii\.gz'"):
        open_ensemble(tmp_path, masks="{case}/{algorithm}.nii.gz", labels="binary")
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        ens = open_ensemble(tmp_path, masks="{case}/{algorithm}.nii.gz",
                            reference="{case}/reference.nii.gz", labels="binary")
    assert list(ens.algorithm.values) == ["alg-a", "alg-b"]

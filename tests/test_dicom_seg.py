"""DICOM SEG masks: read with highdicom on the source series' grid, scored as their NIfTI twins.

Every test builds its own small synthetic CT series with pydicom (12 slices of 32 x 40) and
segmentations of it with ``highdicom.seg.Segmentation``; the grid SimpleITK gives the series
(``ImageSeriesReader``) is the one the SEGs must land on.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
import SimpleITK as sitk

import qe_nb
from qe_nb.data.dicom_seg import embed_slices, is_dicom, place_segmentations, read_segmentation
from qe_nb.data.geometry import Geometry, first_difference, geometry_of
from qe_nb.data.images import write_image
from qe_nb.data.loading import load_label_maps, read_label_map
from qe_nb.exceptions import GeometryError, ImageReadError

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

SHAPE = (12, 32, 40)
SPACING = (2.5, 0.8, 0.7)  # slice, row, column (mm)
LABELS = {"liver": 1, "kidney": 2, "spleen": 3}
AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
OBLIQUE_ROW = np.array([np.cos(0.3), np.sin(0.3), 0.0])
OBLIQUE_COL = np.array([-np.sin(0.3) * np.cos(0.2), np.cos(0.3) * np.cos(0.2), np.sin(0.2)])
OBLIQUE = (tuple(OBLIQUE_ROW), tuple(OBLIQUE_COL))


# --------------------------------------------------------------------------------------
# A synthetic CT series and segmentations of it
# --------------------------------------------------------------------------------------


def ct_series(folder, *, orientation=AXIAL, origin=(-10.0, 20.0, 5.0), reverse_files=False, spacing=SPACING):
    """Write a CT series (one file per slice) and return its datasets in slice order."""
    os.makedirs(folder, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    row, col = (np.asarray(v, float) for v in orientation)
    normal = np.cross(row, col)
    slices = []
    for k in range(SHAPE[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "qe-nb-1", "Synthetic^Patient"
        ds.PatientBirthDate, ds.PatientSex, ds.AccessionNumber, ds.ReferringPhysicianName = "", "O", "", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20240101", "000000", "1", 1
        ds.InstanceNumber, ds.Manufacturer = k + 1, "qe_nb tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + normal * spacing[0] * k]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[2]], spacing[0]
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        noise = np.random.default_rng(k).integers(-100, 100, SHAPE[1:]).astype(np.int16)
        ds.PixelData = noise.tobytes()
        name = f"ct{SHAPE[0] - k:03d}.dcm" if reverse_files else f"ct{k:03d}.dcm"
        ds.save_as(os.path.join(folder, name), enforce_file_format=True)
        slices.append(pydicom.dcmread(os.path.join(folder, name)))
    return slices


def series_geometry(folder) -> Geometry:
    """The grid SimpleITK gives a DICOM series folder."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return geometry_of(reader.Execute())


def _description(number: int, algorithm: str):
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=f"structure {number}",
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("10200004", "SCT", "Liver"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm, version="1", family=hd.sr.CodedConcept("123109", "DCM", "Manual Processing")
        ),
    )


def write_seg(path, source, pixels, *, n_segments=3, kind="BINARY", sparse=True, algorithm="net"):
    """A SEG of ``source`` (slice order) from a label map (z, y, x) or a (z, y, x, segment) stack."""
    seg = hd.seg.Segmentation(
        source_images=source,
        pixel_array=pixels,
        segmentation_type=kind,
        segment_descriptions=[_description(i, algorithm) for i in range(1, n_segments + 1)],
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="qe_nb tests",
        manufacturer_model_name=algorithm,
        software_versions="1",
        device_serial_number="1",
        omit_empty_frames=sparse,
    )
    seg.save_as(str(path))
    return path


def label_map(rng, *, empty_label=None) -> np.ndarray:
    """Three boxes with labels 1, 2, 3 (a later box overwrites an earlier one), jittered."""
    out = np.zeros(SHAPE, np.uint8)
    for label, (z, y, x) in zip((1, 2, 3), ((3, 6, 6), (5, 16, 12), (8, 8, 26))):
        if label == empty_label:
            continue
        dz, dy, dx = rng.integers(-1, 2, 3)
        sz, sy, sx = rng.integers(2, 4), rng.integers(5, 9), rng.integers(5, 10)
        out[z + dz : z + dz + sz, y + dy : y + dy + sy, x + dx : x + dx + sx] = label
    return out


@pytest.fixture(scope="module")
def axial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("axial")
    source = ct_series(folder / "ct", reverse_files=True)
    return source, series_geometry(folder / "ct"), folder


# --------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [AXIAL, OBLIQUE], ids=["axial", "oblique"])
def test_dense_seg_lands_on_the_series_grid(tmp_path, orientation):
    source = ct_series(tmp_path / "ct", orientation=orientation)
    expected_grid = series_geometry(tmp_path / "ct")
    labels = label_map(np.random.default_rng(1))
    path = write_seg(tmp_path / "a.dcm", source, labels, sparse=False)
    array, grid = read_segmentation(path, case="c1", role="algorithm 'a'")
    assert first_difference(grid, expected_grid, rtol=1e-6, shape_only=False) is None, (grid, expected_grid)
    np.testing.assert_array_equal(array, labels)
    assert array.dtype == np.uint8
    if orientation is OBLIQUE:
        assert not np.allclose(grid.direction, np.eye(3).ravel())


def test_reversed_source_order_and_sparse_frames(axial, tmp_path):
    source, grid, _ = axial
    labels = label_map(np.random.default_rng(2))
    # the SEG is built from the source in reverse order; the label map follows it
    write_seg(tmp_path / "rev.dcm", source[::-1], labels[::-1], sparse=False)
    array, own = read_segmentation(tmp_path / "rev.dcm")
    np.testing.assert_array_equal(array, labels)
    assert first_difference(own, grid, rtol=1e-6, shape_only=False) is None
    # sparse: only the slices holding foreground are stored
    write_seg(tmp_path / "sparse.dcm", source, labels, sparse=True)
    array, own = read_segmentation(tmp_path / "sparse.dcm")
    rows = np.flatnonzero(labels.any(axis=(1, 2)))
    assert own.shape == (rows[-1] - rows[0] + 1, *SHAPE[1:])
    placed = embed_slices(array, own, grid)
    np.testing.assert_array_equal(placed, labels)


def test_segment_without_frames_is_absent(axial, tmp_path):
    source, grid, _ = axial
    labels = label_map(np.random.default_rng(3), empty_label=2)
    write_seg(tmp_path / "a.dcm", source, labels, sparse=True)
    array, own = read_segmentation(tmp_path / "a.dcm")
    assert set(np.unique(array).tolist()) == {0, 1, 3}
    np.testing.assert_array_equal(embed_slices(array, own, grid), labels)


def test_labelmap_seg_reads_as_binary(axial, tmp_path):
    source, grid, _ = axial
    labels = label_map(np.random.default_rng(10))
    write_seg(tmp_path / "lm.dcm", source, labels, kind="LABELMAP", sparse=True)
    array, own = read_segmentation(tmp_path / "lm.dcm")
    np.testing.assert_array_equal(embed_slices(array, own, grid), labels)


def test_fractional_seg_with_only_zero_and_maximum_reads(axial, tmp_path):
    source, grid, _ = axial
    labels = label_map(np.random.default_rng(4))
    stack = np.stack([labels == i for i in (1, 2, 3)], axis=-1).astype(np.float32)
    write_seg(tmp_path / "f.dcm", source, stack, kind="FRACTIONAL", sparse=False)
    array, own = read_segmentation(tmp_path / "f.dcm")
    np.testing.assert_array_equal(array, labels)


def test_extensionless_dicom_is_detected(axial, tmp_path):
    source, grid, _ = axial
    labels = label_map(np.random.default_rng(5))
    write_seg(tmp_path / "SEG0001", source, labels, sparse=False)
    assert is_dicom(tmp_path / "SEG0001") and not is_dicom(tmp_path / "missing.nii.gz")
    array, own = read_label_map(str(tmp_path / "SEG0001"), case="c1", role="algorithm 'a'")
    np.testing.assert_array_equal(array, labels)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def _message(path, **kw) -> str:
    with pytest.raises(ImageReadError) as info:
        read_label_map(str(path), case="c7", role="algorithm 'net'", **kw)
    text = str(info.value)
    assert "c7" in text and "'net'" in text and str(path) in text
    return text


def test_overlapping_segments_are_refused(axial, tmp_path):
    source, _, _ = axial
    stack = np.zeros((*SHAPE, 2), bool)
    stack[2:5, 3:9, 3:9, 0] = True
    stack[4:6, 5:10, 5:10, 1] = True
    write_seg(tmp_path / "ov.dcm", source, stack, n_segments=2)
    assert "overlap" in _message(tmp_path / "ov.dcm")


def test_probabilistic_fractional_seg_is_refused(axial, tmp_path):
    source, _, _ = axial
    stack = np.zeros((*SHAPE, 2), np.float32)
    stack[2:5, 3:9, 3:9, 0] = 1.0
    stack[7:9, 5:10, 5:10, 1] = 0.5
    write_seg(tmp_path / "fr.dcm", source, stack, n_segments=2, kind="FRACTIONAL")
    text = _message(tmp_path / "fr.dcm")
    assert "FRACTIONAL" in text and "threshold" in text


def test_ct_slice_truncated_junk_and_missing_files(axial, tmp_path):
    _, _, folder = axial
    ct = sorted((folder / "ct").iterdir())[0]
    assert "not a segmentation" in _message(ct) and "CT Image Storage" in _message(ct)
    good = write_seg(tmp_path / "good.dcm", axial[0], label_map(np.random.default_rng(6)), sparse=False)
    data = good.read_bytes()
    for n, cut in enumerate((len(data) // 2, 400, len(data) - 50)):
        (tmp_path / f"cut{n}.dcm").write_bytes(data[:cut])
        assert "truncated" in _message(tmp_path / f"cut{n}.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all " * 20)
    assert "not a DICOM file" in _message(tmp_path / "junk.dcm")
    assert "does not exist" in _message(tmp_path / "absent.dcm")


def test_missing_extra_names_the_install_command(axial, tmp_path, monkeypatch):
    path = write_seg(tmp_path / "a.dcm", axial[0], label_map(np.random.default_rng(7)), sparse=False)
    monkeypatch.setitem(sys.modules, "highdicom", None)
    assert 'pip install "qe-nb[dicom]"' in _message(path)


# --------------------------------------------------------------------------------------
# A case of SEGs, and a cohort scored as its NIfTI twin
# --------------------------------------------------------------------------------------


def test_sparse_segs_share_a_grid_with_nifti_and_each_other(axial, tmp_path):
    source, grid, _ = axial
    rng = np.random.default_rng(8)
    maps = {"a": label_map(rng), "b": label_map(rng, empty_label=3)}
    maps["b"][:, :, :] = 0
    maps["b"][10, 4:8, 4:8] = 2  # one slice, far from a's slices
    (tmp_path / "c1").mkdir()
    for name, labels in maps.items():
        write_seg(tmp_path / "c1" / f"{name}.dcm", source, labels, sparse=True)
    loaded = load_label_maps(qe_nb.open_ensemble(tmp_path, masks="{case}/{algorithm}.dcm", labels=LABELS), "c1")
    first = int(np.flatnonzero(maps["a"].any(axis=(1, 2)))[0])
    np.testing.assert_array_equal(loaded.sel(algorithm="a").values, maps["a"][first:11])
    np.testing.assert_array_equal(loaded.sel(algorithm="b").values, maps["b"][first:11])
    assert loaded.attrs["origin"][0] == pytest.approx(grid.origin[0] + first * SPACING[0])
    # beside a NIfTI mask (or a NIfTI reference) the SEGs take the NIfTI grid, the whole series
    write_image(maps["a"], tmp_path / "c1" / "reference.nii.gz", geometry=grid)
    ens = qe_nb.open_ensemble(tmp_path, masks="{case}/{algorithm}.dcm", reference="{case}/reference.nii.gz",
                              labels=LABELS)
    loaded = load_label_maps(ens, "c1")
    assert loaded.shape[1:] == SHAPE
    np.testing.assert_array_equal(loaded.sel(algorithm="b").values, maps["b"])
    # a SEG whose slices are not the grid's is reported, not shifted
    arrays = {"n": maps["a"], "s": maps["a"][2:4]}
    off = Geometry((2, *SHAPE[1:]), spacing=SPACING, origin=(grid.origin[0] + 1.0, *grid.origin[1:]))
    geometries = {"n": grid, "s": off}
    place_segmentations(arrays, geometries, ["s"])
    assert geometries["s"] is off
    with pytest.raises(GeometryError):
        from qe_nb.data.geometry import check_geometry

        check_geometry(geometries, case="c1")


def _cohort(root, orientation, spacing, *, all_sparse=False, n_cases=3, algorithms=("netA", "netB", "netC", "netD")):
    """The same label maps as DICOM SEG (root/seg) and NIfTI (root/nifti), with references."""
    rng = np.random.default_rng(11)
    for i in range(n_cases):
        case = f"case{i}"
        source = ct_series(root / "ct" / case, orientation=orientation, origin=(-10.0 + i, 20.0, 5.0 - 3 * i),
                           spacing=spacing)
        grid = series_geometry(root / "ct" / case)
        for kind in ("seg", "nifti", "nrrd"):
            (root / kind / case).mkdir(parents=True)
        truth = label_map(rng)
        for j, algorithm in enumerate((*algorithms, "reference")):
            labels = truth if algorithm == "reference" else label_map(rng, empty_label=3 if j == 1 else None)
            write_seg(root / "seg" / case / f"{algorithm}.dcm", source, labels, sparse=all_sparse or j % 2 == 0,
                      algorithm=algorithm)
            write_image(labels, root / "nifti" / case / f"{algorithm}.nii.gz", geometry=grid)
            write_image(labels, root / "nrrd" / case / f"{algorithm}.nrrd", geometry=grid)


@pytest.mark.parametrize(
    ("orientation", "spacing", "rtol", "all_sparse"),
    [(AXIAL, (2.5, 0.75, 0.625), 0.0, False), (AXIAL, (2.5, 0.75, 0.625), 0.0, True), (OBLIQUE, SPACING, 1e-6, False)],
    ids=["axial-exact-spacing", "axial-all-sparse", "oblique"],
)
def test_seg_cohort_scores_as_its_nifti_twin(tmp_path, orientation, spacing, rtol, all_sparse):
    """The SEG cohort scores as the same masks in NIfTI and in NRRD.

    To the last bit when the voxel size is exact in float32 (the NIfTI header's type) and the
    grid axial. Otherwise NIfTI rounds the voxel size (0.8 mm is 0.800000011920929 there) and
    distances follow to about 1e-7; NRRD keeps double precision, as DICOM does, and only its
    oblique ``space directions`` (spacing x direction) cost a few ulps. Dice, which does not
    depend on the voxel size, is equal to the last bit in every case. With only sparse SEGs
    (no file of a case covers the whole series) the grid is cut to their slices; the scores
    do not change.
    """
    _cohort(tmp_path, orientation, spacing, all_sparse=all_sparse)
    kwargs = dict(metrics=("dice", "hd95", "nsd", "assd"), n_jobs=1, progress=False, on_error="raise")
    scores = {}
    for kind, suffix in (("seg", "dcm"), ("nifti", "nii.gz"), ("nrrd", "nrrd")):
        ens = qe_nb.open_ensemble(tmp_path / kind, masks="{case}/{algorithm}." + suffix,
                                  reference="{case}/reference." + suffix, labels=LABELS)
        assert ens.sizes["algorithm"] == 4 and ens.sizes["case"] == 3
        scores[kind] = qe_nb.score(ens, **kwargs)
    for variable in ("similarity", "quality"):
        seg = scores["seg"][variable]
        assert np.isfinite(seg.sel(metric="dice").values).all()
        for twin, tolerance in (("nrrd", min(rtol, 1e-12)), ("nifti", rtol)):
            other = scores[twin][variable]
            assert seg.dims == other.dims and seg.shape == other.shape
            assert (np.isnan(seg.values) == np.isnan(other.values)).all()
            difference = np.abs(np.nan_to_num(seg.values) - np.nan_to_num(other.values))
            print(f"{'axial' if orientation is AXIAL else 'oblique'} {variable} vs {twin}: {seg.size} cells, "
                  f"{int(np.isnan(seg.values).sum())} NaN in both, max |difference| {difference.max():.3g}")
            np.testing.assert_allclose(seg.values, other.values, rtol=tolerance, atol=0)
            np.testing.assert_array_equal(seg.sel(metric="dice").values, other.sel(metric="dice").values)
    # the scores are not trivial: the candidates differ
    assert np.nanmin(scores["seg"]["similarity"].sel(metric="dice").values) < 0.95


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-cohort")
    _cohort(root, AXIAL, (2.5, 0.75, 0.625), n_cases=2, algorithms=("netA", "netB", "netC"))
    return root


def test_cli_scores_a_seg_cohort(small_cohort, tmp_path, capsys):
    from qe_nb.cli import main

    cubes = {}
    for kind, suffix in (("seg", "dcm"), ("nifti", "nii.gz")):
        out = tmp_path / f"{kind}.nc"
        status = main(["score", str(small_cohort / kind), "--masks", "{case}/{algorithm}." + suffix,
                       "--reference", "{case}/reference." + suffix, "--labels", "brats2023",
                       "--metrics", "dice,hd95,nsd", "--out", str(out), "--quiet", "--jobs", "1"])
        assert status == 0, capsys.readouterr().err
        cubes[kind] = qe_nb.load_scores(out)["similarity"]
    assert cubes["seg"].shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(cubes["seg"].values, cubes["nifti"].values)


def test_labels_are_inferred_from_segment_numbers(small_cohort):
    schemes = {}
    for kind, suffix in (("seg", "dcm"), ("nifti", "nii.gz")):
        with pytest.warns(qe_nb.exceptions.QeNbWarning):
            ens = qe_nb.open_ensemble(small_cohort / kind, masks="{case}/{algorithm}." + suffix,
                                      reference="{case}/reference." + suffix)
        schemes[kind] = (ens.attrs["label_scheme"], list(ens["label_values"].values))
    assert schemes["seg"] == schemes["nifti"]
    assert "1,2,3" in schemes["seg"][1]


def test_a_bad_seg_fails_its_case_only(small_cohort, tmp_path):
    shutil.copytree(small_cohort / "seg", tmp_path / "seg")
    ct = sorted((small_cohort / "ct" / "case1").iterdir())[0]
    shutil.copy(ct, tmp_path / "seg" / "case1" / "netB.dcm")
    kwargs = dict(metrics=("dice", "hd95"), n_jobs=1, progress=False)
    ens = qe_nb.open_ensemble(tmp_path / "seg", masks="{case}/{algorithm}.dcm", reference="{case}/reference.dcm",
                              labels=LABELS)
    scores = qe_nb.score(ens, **kwargs)
    error = str(scores["error"].sel(case="case1").values)
    assert "not a segmentation" in error and "netB" in error and "case1" in error
    assert not str(scores["error"].sel(case="case0").values)
    twin = qe_nb.score(qe_nb.open_ensemble(small_cohort / "nifti", masks="{case}/{algorithm}.nii.gz",
                                           reference="{case}/reference.nii.gz", labels=LABELS), **kwargs)
    np.testing.assert_array_equal(scores["similarity"].sel(case="case0").values,
                                  twin["similarity"].sel(case="case0").values)
    assert np.isnan(scores["similarity"].sel(case="case1").values).all()


def test_voxel_limit_applies_before_decoding(axial, tmp_path):
    from qe_nb.data.limits import voxel_limit

    path = write_seg(tmp_path / "a.dcm", axial[0], label_map(np.random.default_rng(9)), sparse=True)
    with voxel_limit(1000):
        text = _message(path)
    assert "voxels" in text and "QE_NB_MAX_VOXELS" in text

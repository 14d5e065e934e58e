"""One case in memory: score_arrays equals score() on the same arrays written as files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import xarray as xr

import qe_nb
from qe_nb.core.case import check_metrics, score_arrays
from qe_nb.exceptions import GeometryError, InputError, LabelError, LabelValueWarning, QeNbError

from .conftest import BRATS_ALGORITHMS
from .test_scoring import _blob, _write

SPACING = (2.0, 1.0, 0.75)  # exact in the float32 of a NIfTI header, so files and arrays agree
METRICS = ("dice", "hd95", "hd", "assd", "nsd")


def _glioma(shape, center, rng):
    out = np.zeros(shape, np.uint8)
    center = np.asarray(center) + rng.integers(-1, 2, 3)
    out[_blob(shape, center, 5)] = 2
    out[_blob(shape, center, 3)] = 4
    out[_blob(shape, center + 1, 1)] = 1
    return out


@pytest.fixture
def case(rng):
    """A glioma-like case: three candidates and a reference, BraTS labels."""
    shape = (18, 22, 24)
    maps = {name: _glioma(shape, (9, 11, 12), rng) for name in ("alg-a", "alg-b", "alg-c")}
    maps["alg-c"][1:3, 2:4, 18:21] = 4  # a far false positive
    return maps, _glioma(shape, (9, 11, 12), rng)


def _score_files(maps, reference, tmp_path, *, fusion="mav", labels="brats-regions"):
    root = tmp_path / "cohort"
    for name, m in maps.items():
        _write(m, root / "c0" / f"{name}.nii.gz", SPACING)
    if reference is not None:
        _write(reference, root / "c0" / "reference.nii.gz", SPACING)
    ens = qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii.gz", labels=labels,
                              reference=None if reference is None else "{case}/reference.nii.gz")
    return qe_nb.score(ens, fusion=fusion, metrics=METRICS, progress=False, n_jobs=1).sel(case="c0")


@pytest.mark.parametrize("fusion", ["mav", "simple", "brats-simple", "staple"])
def test_equals_score_on_the_same_arrays_written_as_files(case, tmp_path, fusion):
    maps, reference = case
    got = score_arrays(maps, spacing=SPACING, reference=reference, labels="brats-regions", fusion=fusion,
                       metrics=METRICS)
    expected = _score_files(maps, reference, tmp_path, fusion=fusion)
    for name in ("similarity", "quality", "candidate_quality"):
        np.testing.assert_array_equal(got[name].values, expected[name].values)
        assert got[name].dims == expected[name].dims[-got[name].ndim:]
    for coord in ("algorithm", "label", "label_values", "metric", "higher_is_better", "units"):
        assert got[coord].values.tolist() == expected[coord].values.tolist()
    assert got.attrs["fusion"] == fusion
    assert got.attrs["label_scheme"] == "brats-regions"


def test_without_reference_and_with_the_fusion(case, tmp_path):
    maps, _ = case
    got = score_arrays(maps, spacing=SPACING, labels="brats-regions", metrics=METRICS, keep_fusion=True)
    assert "quality" not in got and "candidate_quality" not in got
    expected = _score_files(maps, None, tmp_path)
    np.testing.assert_array_equal(got["similarity"].values, expected["similarity"].values)
    assert got["fused"].dims == ("z", "y", "x")
    np.testing.assert_array_equal(got["fused"].values, qe_nb.fuse(list(maps.values()), method="mav"))


def test_staple_keeps_the_whole_grid_fusion(case):
    maps, _ = case
    got = score_arrays(maps, spacing=SPACING, labels="brats", fusion="staple", keep_fusion=True)
    np.testing.assert_array_equal(got["fused"].values, qe_nb.fuse(list(maps.values()), method="staple"))


def test_forms_of_label_maps_agree(case):
    maps, reference = case
    names = list(maps)
    by_name = score_arrays(maps, spacing=SPACING, reference=reference, labels="brats-regions")
    stacked = np.stack(list(maps.values()))
    for form in (list(maps.values()), stacked,
                 xr.DataArray(stacked, dims=("algorithm", "z", "y", "x"), coords={"algorithm": names})):
        kwargs = {} if isinstance(form, xr.DataArray) else {"algorithms": names}
        other = score_arrays(form, spacing=SPACING, reference=reference, labels="brats-regions", **kwargs)
        xr.testing.assert_identical(other, by_name)
    default = score_arrays(list(maps.values()), spacing=SPACING, labels="brats-regions")
    assert default["algorithm"].values.tolist() == ["candidate-0", "candidate-1", "candidate-2"]


def test_labels_are_inferred_like_open_ensemble(case, tmp_path):
    maps, _ = case
    got = score_arrays(maps, spacing=SPACING, metrics=METRICS)
    assert got.attrs["label_scheme"] == "brats-regions"
    expected = _score_files(maps, None, tmp_path, labels=None)
    np.testing.assert_array_equal(got["similarity"].values, expected["similarity"].values)


def test_missing_candidate_gives_nan_row(case, tmp_path):
    maps, reference = case
    maps = dict(maps, **{"alg-b": None})
    got = score_arrays(maps, spacing=SPACING, reference=reference, labels="brats-regions", metrics=METRICS)
    assert got["similarity"].sel(algorithm="alg-b").isnull().all()
    assert got["similarity"].sel(algorithm="alg-a").notnull().all()
    present = {k: v for k, v in maps.items() if v is not None}
    alone = score_arrays(present, spacing=SPACING, reference=reference, labels="brats-regions", metrics=METRICS)
    xr.testing.assert_identical(got["similarity"].sel(algorithm=list(present)), alone["similarity"])


def test_2d_maps():
    a = np.zeros((6, 8), np.uint8)
    a[1:4, 2:5] = 1
    b = np.roll(a, 1, axis=1)
    got = score_arrays([a, b, a], spacing=(1.0, 1.0), metrics=("dice", "hd"), keep_fusion=True)
    assert got["fused"].dims == ("y", "x")
    assert got["similarity"].sel(algorithm="candidate-1", metric="hd").item() == 1.0


def test_real_case_equals_score(brats_case_dir, brats_candidates):
    ens = qe_nb.open_ensemble(brats_case_dir.parent, masks="{case}/segmentation/{algorithm}.nii.gz",
                              labels="brats-regions")
    expected = qe_nb.score(ens, metrics=("dice", "hd95"), progress=False, n_jobs=1)
    spacing = sitk.ReadImage(str(brats_case_dir / "segmentation" / f"{BRATS_ALGORITHMS[0]}.nii.gz")).GetSpacing()
    got = score_arrays(brats_candidates, spacing=spacing[::-1], labels="brats-regions")
    np.testing.assert_array_equal(got["similarity"].values, expected["similarity"].sel(case="TCGA-DU-7294").values)


# ------------------------------------------------------------------------ what score also checks


def test_unexpected_label_values_warn_like_score(case, tmp_path):
    maps, _ = case
    maps = dict(maps)
    maps["alg-a"] = maps["alg-a"].copy()
    maps["alg-a"][0, 0, 0] = 7
    with pytest.warns(LabelValueWarning, match=r"algorithm 'alg-a': label values \[7\] are outside the label "
                                               r"scheme \(whole_tumor=\[1, 2, 4\].*\) and are ignored\."):
        got = score_arrays(maps, spacing=SPACING, labels="brats-regions", metrics=METRICS)
    with pytest.warns(LabelValueWarning, match=r"case 'c0', algorithm 'alg-a': label values \[7\]"):
        expected = _score_files(maps, None, tmp_path)
    np.testing.assert_array_equal(got["similarity"].values, expected["similarity"].values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score_arrays(maps, spacing=SPACING, labels="binary")  # every non-zero value counts


def test_shape_mismatch_is_a_geometry_error(case):
    maps, reference = case
    odd = dict(maps, **{"alg-b": maps["alg-b"][:, :, :-1]})
    with pytest.raises(GeometryError, match=r"algorithm 'alg-b': shape \(18, 22, 23\) differs from the first "
                                            r"candidate's \('alg-a'\) \(18, 22, 24\); resample"):
        score_arrays(odd, spacing=SPACING)
    with pytest.raises(GeometryError, match=r"`reference`: shape \(18, 22, 23\) differs from the candidates' "
                                            r"\(18, 22, 24\); resample it"):
        score_arrays(maps, spacing=SPACING, reference=reference[:, :, :-1])


def test_label_map_errors(case):
    maps, _ = case
    bad = dict(maps, **{"alg-c": maps["alg-c"].astype(float) + 0.5})
    with pytest.raises(LabelError, match=r"`label_maps\['alg-c'\]` holds non-integral values"):
        score_arrays(bad, spacing=SPACING)
    with pytest.raises(LabelError, match=r"`reference` holds negative labels"):
        score_arrays(maps, spacing=SPACING, reference=-np.ones((18, 22, 24), np.int16))
    with pytest.raises(QeNbError, match="no candidate segmentation was found"):
        score_arrays({"a": None, "b": None}, spacing=SPACING)


def test_argument_errors(case):
    maps, _ = case
    with pytest.raises(InputError, match=r"Unknown fusion method 'vote'; expected one of \['mav', "):
        score_arrays(maps, spacing=SPACING, fusion="vote")
    with pytest.raises(InputError, match="Unknown metric 'hd99'"):
        score_arrays(maps, spacing=SPACING, metrics=("hd99",))
    with pytest.raises(InputError, match=r"`metrics` names a metric twice: \['dice', 'dice'\]"):
        score_arrays(maps, spacing=SPACING, metrics="dice,dice")
    with pytest.raises(InputError, match="`metrics` names no metric"):
        check_metrics("")
    with pytest.raises(InputError, match=r"`spacing` must hold one value per mask axis \(3"):
        score_arrays(maps, spacing=(1.0, 1.0))
    with pytest.raises(InputError, match="a mapping already names them by its keys"):
        score_arrays(maps, spacing=SPACING, algorithms=["x", "y", "z"])
    with pytest.raises(InputError, match=r"`algorithms` must name each of the 3 label maps once; got 2"):
        score_arrays(list(maps.values()), spacing=SPACING, algorithms=["x", "y"])
    with pytest.raises(InputError, match=r"`algorithms` names a candidate twice: \['x', 'x', 'y'\]"):
        score_arrays(list(maps.values()), spacing=SPACING, algorithms=["x", "x", "y"])
    with pytest.raises(InputError, match="`label_maps` is empty"):
        score_arrays([], spacing=SPACING)
    with pytest.raises(InputError, match=r"`label_maps` must be a mapping algorithm -> label map.*got int"):
        score_arrays(3, spacing=SPACING)
    with pytest.raises(InputError, match=r"`label_maps` given as one array must have a leading algorithm axis"):
        score_arrays(np.zeros((4, 5)), spacing=SPACING)
    with pytest.raises(InputError, match=r"`label_maps\['a'\]` must be a 2-D or 3-D label map; got shape \(3,\)"):
        score_arrays({"a": np.zeros(3, np.uint8)}, spacing=(1.0,))
    with pytest.raises(InputError, match="Unknown label scheme 'brains'"):
        score_arrays(maps, spacing=SPACING, labels="brains")

"""The shared input checks: every error path with its message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from qe_nb.core import checks as v
from qe_nb.core.metrics import METRICS
from qe_nb.exceptions import InputError, QeNbError, UnreliableThresholdWarning

DIMS = ("case", "algorithm", "label", "metric")


def cube(values=None, *, shape=(4, 2, 1, 2), metrics=("dice", "hd95"), dims=DIMS):
    if values is None:
        values = np.arange(np.prod(shape), dtype=float).reshape(shape)
    coords = {
        "case": [f"c{i}" for i in range(shape[0])],
        "algorithm": [f"a{i}" for i in range(shape[1])],
        "label": [f"l{i}" for i in range(shape[2])],
        "metric": list(metrics),
    }
    return xr.DataArray(values, dims=DIMS, coords=coords).transpose(*dims)


# --- similarity ----------------------------------------------------------------------------


def test_similarity_any_dim_order_is_transposed_to_canonical():
    da = cube(dims=("metric", "label", "case", "algorithm"))
    out = v.check_similarity(da)
    assert out.dims == DIMS
    assert out.dtype == np.float64
    xr.testing.assert_equal(out, cube().astype(float))


def test_similarity_int_data_becomes_float_and_input_is_not_mutated():
    da = cube(np.ones((4, 2, 1, 2), dtype=np.int32))
    out = v.check_similarity(da)
    assert out.dtype == np.float64 and da.dtype == np.int32


def test_similarity_missing_dims_named():
    da = xr.DataArray(np.ones((2, 2)), dims=("case", "metric"), coords={"metric": ["dice", "hd"]})
    with pytest.raises(InputError, match=r"`similarity` must have dims \(case, algorithm, label, metric\); got \('case', 'metric'\)\."):
        v.check_similarity(da)


def test_similarity_extra_dim_named():
    da = cube().expand_dims(alpha=[0.0])
    with pytest.raises(InputError, match=r"got \('alpha', 'case', 'algorithm', 'label', 'metric'\)"):
        v.check_similarity(da)


@pytest.mark.parametrize("data, dtype", [(np.array([["x"]]), "<U1"), (np.array([[True]]), "bool")])
def test_similarity_non_numeric(data, dtype):
    da = xr.DataArray(data.reshape(1, 1, 1, 1), dims=DIMS, coords={"metric": ["dice"]})
    with pytest.raises(InputError, match=rf"`similarity` must hold numbers \(float or int\); got dtype {dtype}\."):
        v.check_similarity(da)


def test_similarity_not_a_dataarray():
    with pytest.raises(InputError, match=r"must be a DataArray with dims .*; got ndarray\."):
        v.check_similarity(np.ones((1, 1, 1, 1)))
    with pytest.raises(InputError, match=r"got a Dataset with variables \['similarity'\] \(pass scores\['similarity'\]\)"):
        v.check_similarity(xr.Dataset({"similarity": cube()}))


def test_similarity_metric_without_ids():
    da = xr.DataArray(np.ones((1, 1, 1, 1)), dims=DIMS)
    with pytest.raises(InputError, match=r"the 'metric' dim lacking ids"):
        v.check_similarity(da)


def test_similarity_without_other_coords_gets_positions():
    da = xr.DataArray(np.ones((2, 1, 1, 1)), dims=DIMS, coords={"metric": ["dice"]})
    out = v.check_similarity(da)
    assert out.case.values.tolist() == ["0", "1"]


def test_similarity_duplicate_cases():
    da = cube().assign_coords(case=["c0", "c0", "c1", "c2"])
    with pytest.raises(InputError, match=r"duplicate case coordinates \['c0'\]"):
        v.check_similarity(da)


def test_similarity_without_cases():
    da = cube(np.ones((0, 1, 1, 1)), shape=(0, 1, 1, 1), metrics=("dice",))
    with pytest.raises(InputError, match=r"holds no case"):
        v.check_similarity(da)


def test_scores_dataset_and_dataarray():
    da = cube()
    xr.testing.assert_equal(v.check_scores(xr.Dataset({"similarity": da})), v.check_scores(da))
    with pytest.raises(InputError, match=r"scores Dataset holding one as 'similarity'; got a Dataset with variables \['quality'\]"):
        v.check_scores(xr.Dataset({"quality": ("case", [1.0])}))


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        v.check_alpha("x")
    assert issubclass(InputError, QeNbError)


# --- metric directions ---------------------------------------------------------------------


def test_directions_from_the_registry():
    da = cube(metrics=("nsd", "assd"))
    assert v.metric_directions(da).tolist() == [True, False]
    for metric, spec in METRICS.items():
        direction = spec.higher_is_better
        one = cube(np.zeros((1, 1, 1, 1)), shape=(1, 1, 1, 1), metrics=(metric,))
        assert v.metric_directions(one).tolist() == [direction]


def test_directions_prefer_the_coordinate():
    da = cube(metrics=("dice", "custom")).assign_coords(higher_is_better=("metric", [False, True]))
    assert v.metric_directions(da).tolist() == [False, True]


def test_directions_unknown_metric():
    da = cube(metrics=("dice", "hd99"))
    with pytest.raises(InputError, match=r"Unknown metric 'hd99': cannot tell whether higher is better; expected one of \['abs_volume_diff', 'assd', "):
        v.metric_directions(da)


def test_directions_bad_coordinate():
    da = cube().assign_coords(higher_is_better=("metric", ["yes", "no"]))
    with pytest.raises(InputError, match=r"`higher_is_better` coordinate must hold booleans; got \['yes', 'no'\]"):
        v.metric_directions(da)
    da = cube().assign_coords(higher_is_better=("case", [True] * 4))
    with pytest.raises(InputError, match=r"must lie on the 'metric' dim; got dims \('case',\)"):
        v.metric_directions(da)


# --- alpha ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, 0.1, -2, np.float32(1.5), np.int64(3)])
def test_alpha_numbers(alpha):
    out = v.check_alpha(alpha)
    assert isinstance(out, float) and out == float(alpha)


@pytest.mark.parametrize(
    "alpha, shown",
    [
        ("high", "'high'"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (True, "True"),
        (np.bool_(False), "False"),
        (None, "None"),
        ([0.1], r"\[0.1\]"),
        (np.array([0.1, 0.2]), r"an array of shape \(2,\)"),
    ],
)
def test_alpha_rejected(alpha, shown):
    with pytest.raises(InputError, match=rf"^`alpha` must be a finite number or a DataArray over \(algorithm, label, metric\); got {shown}\.$"):
        v.check_alpha(alpha)


def test_alpha_message_of_the_style_guide():
    with pytest.raises(InputError) as info:
        v.check_alpha("high")
    assert str(info.value) == "`alpha` must be a finite number or a DataArray over (algorithm, label, metric); got 'high'."


def test_alpha_dataarray_other_dims():
    with pytest.raises(InputError, match=r"got a DataArray with dims \('case',\)\."):
        v.check_alpha(xr.DataArray([0.1], dims="case"))


def test_alpha_dataarray_non_finite():
    alpha = xr.DataArray([0.1, np.nan], dims="label", coords={"label": ["a", "b"]})
    with pytest.raises(InputError, match=r"got a DataArray holding 1 non-finite value\(s\) \(e.g. nan\)"):
        v.check_alpha(alpha)


def test_alpha_dataarray_strings():
    with pytest.raises(InputError, match=r"got a DataArray of dtype <U1"):
        v.check_alpha(xr.DataArray(["a"], dims="label"))


def test_alpha_dataarray_zero_dim_is_a_float():
    assert v.check_alpha(xr.DataArray(0.25)) == 0.25


def test_alpha_dataarray_reindexed_to_the_cube():
    sim = v.check_similarity(cube())
    alpha = xr.DataArray([2.0, 1.0, 9.0], dims="algorithm", coords={"algorithm": ["a1", "a0", "zz"]})
    out = v.check_alpha(alpha, sim)
    assert out.algorithm.values.tolist() == ["a0", "a1"]
    assert out.values.tolist() == [1.0, 2.0]


def test_alpha_dataarray_missing_group():
    sim = v.check_similarity(cube())
    alpha = xr.DataArray([1.0], dims="algorithm", coords={"algorithm": ["a0"]})
    with pytest.raises(InputError, match=r"`alpha` has no value for algorithm \['a1'\]; it must cover every algorithm of `similarity`"):
        v.check_alpha(alpha, sim)


def test_alpha_dataarray_without_coords():
    sim = v.check_similarity(cube())
    out = v.check_alpha(xr.DataArray([1.0, 2.0], dims="metric"), sim)
    assert out.metric.values.tolist() == ["dice", "hd95"]
    with pytest.raises(InputError, match=r"`alpha` has 3 entries along 'metric' without coordinates; `similarity` has 2"):
        v.check_alpha(xr.DataArray([1.0, 2.0, 3.0], dims="metric"), sim)


def test_alpha_dataarray_duplicates():
    sim = v.check_similarity(cube())
    alpha = xr.DataArray([1.0, 2.0], dims="metric", coords={"metric": ["dice", "dice"]})
    with pytest.raises(InputError, match=r"`alpha` has duplicate metric coordinates \['dice'\]"):
        v.check_alpha(alpha, sim)


# --- alphas, mad_scale, objective, by -----------------------------------------------------


def test_alphas():
    assert v.check_alphas(np.array([1, -1])).tolist() == [1.0, -1.0]
    with pytest.raises(InputError, match=r"`alphas` must be a non-empty sequence of finite numbers; got an empty sequence"):
        v.check_alphas([])
    with pytest.raises(InputError, match=r"got 'abc'\."):
        v.check_alphas("abc")
    with pytest.raises(InputError, match=r"got 0.5\."):
        v.check_alphas(0.5)
    with pytest.raises(InputError, match=r"got nan among them"):
        v.check_alphas([0.0, float("nan")])
    with pytest.raises(InputError, match=r"got True among them"):
        v.check_alphas([True])
    with pytest.raises(InputError, match=r"`alphas` must hold distinct values; got 1.0 more than once"):
        v.check_alphas([1, 1.0])
    with pytest.raises(InputError, match=r"got object\."):
        v.check_alphas(object())


@pytest.mark.parametrize("value, expected", [(1.0, 1.0), (2, 2.0), ("normal", 1.4826), ("Normal", 1.4826)])
def test_mad_scale(value, expected):
    assert v.check_mad_scale(value) == expected


@pytest.mark.parametrize("value, shown", [(0, "0"), (-1.0, "-1.0"), ("gauss", "'gauss'"), (float("inf"), "inf"), (True, "True")])
def test_mad_scale_invalid(value, shown):
    with pytest.raises(InputError, match=rf"`mad_scale` must be a positive finite number or 'normal' \(1.4826, R's mad\(\)\); got {shown}\."):
        v.check_mad_scale(value)


def test_objective():
    assert v.check_objective("pearson") == "pearson"
    with pytest.raises(InputError, match=r"Unknown `objective` 'dice'; expected one of \['entropy', 'pearson', 'combined'\]\."):
        v.check_objective("dice")
    with pytest.raises(InputError, match=r"Unknown `objective` None"):
        v.check_objective(None)


def test_by():
    assert v.check_by(None) == ()
    assert v.check_by("metric") == ("metric",)
    assert v.check_by(["label", "algorithm"]) == ("label", "algorithm")
    with pytest.raises(InputError, match=r"`by` must be None or a subset of \('algorithm', 'label', 'metric'\); got \('label', 'label'\)"):
        v.check_by(("label", "label"))
    with pytest.raises(InputError, match=r"got \('case',\)"):
        v.check_by(["case"])
    with pytest.raises(InputError, match=r"got 3\."):
        v.check_by(3)


# --- quality and other per-case scores ----------------------------------------------------


def test_quality_aligned_to_cases():
    cases = pd.Index(["a", "b", "c"])
    q = xr.DataArray([3.0, 1.0, 2.0], dims="case", coords={"case": ["c", "a", "b"]})
    assert v.check_quality(q, cases).values.tolist() == [1.0, 2.0, 3.0]
    series = pd.Series([1.0, 2.0, 3.0], index=["a", "b", "c"])
    assert v.check_quality(series, cases).values.tolist() == [1.0, 2.0, 3.0]


def test_quality_not_over_case():
    with pytest.raises(InputError, match=r"`quality` must be a DataArray over \(case,\) holding numbers; got dims \('case', 'label'\)\. Select or reduce"):
        v.check_quality(xr.DataArray([[1.0]], dims=("case", "label")))
    with pytest.raises(InputError, match=r"got dims \('subject',\)\.$"):
        v.check_quality(xr.DataArray([1.0], dims="subject"))
    with pytest.raises(InputError, match=r"holding numbers; got list\."):
        v.check_quality([1.0, 2.0])
    with pytest.raises(InputError, match=r"got dtype <U1"):
        v.check_quality(xr.DataArray(["x"], dims="case"))


def test_quality_cases_do_not_match():
    cases = pd.Index(["a", "b", "c"])
    q = xr.DataArray([1.0, 2.0, 3.0], dims="case", coords={"case": ["a", "b", "x"]})
    with pytest.raises(InputError, match=r"`quality` must cover the same cases as `similarity`; it lacks 1 case\(s\) of `similarity`: \['c'\] and has 1 case\(s\) not in `similarity`: \['x'\]\."):
        v.check_quality(q, cases)
    q = xr.DataArray([1.0, 2.0], dims="case", coords={"case": ["a", "a"]})
    with pytest.raises(InputError, match=r"`quality` has duplicate case coordinates \['a'\]"):
        v.check_quality(q, cases)


def test_long_lists_are_shortened():
    cases = pd.Index([f"c{i}" for i in range(20)])
    q = xr.DataArray([1.0], dims="case", coords={"case": ["c0"]})
    with pytest.raises(InputError, match=r"lacks 19 case\(s\) of `similarity`: \['c1', 'c2', 'c3', 'c4', 'c5', \.\.\. \(19 in all\)\]"):
        v.check_quality(q, cases)


# --- alarms and risk -----------------------------------------------------------------------


def test_alarms_check():
    flags = xr.DataArray([True], dims="case")
    assert v.check_alarms(flags) is flags
    with pytest.raises(InputError, match=r"must be a boolean DataArray with a 'case' dim \(the output of alarms\(\)\); got ndarray"):
        v.check_alarms(np.array([True]))
    with pytest.raises(InputError, match=r"got dims \('metric',\)\.$"):
        v.check_alarms(xr.DataArray([True], dims="metric"))
    with pytest.raises(InputError, match=r"unexpected \['voxel'\]"):
        v.check_alarms(xr.DataArray([[True]], dims=("case", "voxel")))
    with pytest.raises(InputError, match=r"got dtype int64"):
        v.check_alarms(xr.DataArray(np.array([1], dtype=np.int64), dims="case"))


def test_risk_check():
    assert v.check_risk(xr.DataArray([1, 2], dims="case")).tolist() == [1, 2]
    assert v.check_risk(np.array([1.0, 0.0])).dtype == np.int64
    expected = r"`risk` must hold alarm counts \(non-negative whole numbers\) over cases"
    with pytest.raises(InputError, match=expected + r"; got -1 among them"):
        v.check_risk([0, -1])
    with pytest.raises(InputError, match=expected + r"; got nan among them"):
        v.check_risk([0, float("nan")])
    with pytest.raises(InputError, match=expected + r"; got no case"):
        v.check_risk([])
    with pytest.raises(InputError, match=expected + r"; got 3\."):
        v.check_risk(3)
    with pytest.raises(InputError, match=expected + r"; got an array of shape \(1, 1\)"):
        v.check_risk([[1]])
    with pytest.raises(InputError, match=expected + r"; got a DataArray with dims \('case', 'alpha'\)"):
        v.check_risk(xr.DataArray([[1]], dims=("case", "alpha")))
    with pytest.raises(InputError, match=expected + r"; got dtype <U1"):
        v.check_risk(["a"])


# --- warnings ------------------------------------------------------------------------------


def test_warn_few_cases_and_flat_groups():
    coords = {"algorithm": ["a"], "label": ["l"], "metric": ["dice", "hd"]}
    with pytest.warns(UnreliableThresholdWarning, match=r"`similarity` holds 2 case\(s\); median and MAD over fewer than three cases"):
        v.warn_unreliable_thresholds(2, np.array([[[0.1, 0.2]]]), coords, stacklevel=2)
    with pytest.warns(UnreliableThresholdWarning, match=r"1 group\(s\) have a MAD of 0 .*: \(algorithm='a', label='l', metric='hd'\)\."):
        v.warn_unreliable_thresholds(5, np.array([[[0.1, 0.0]]]), coords, stacklevel=2)
    with pytest.warns(UnreliableThresholdWarning, match=r"no finite value, so every case raises an alarm: \(algorithm='a', label='l', metric='dice'\)"):
        v.warn_unreliable_thresholds(5, np.array([[[np.nan, 0.1]]]), coords, stacklevel=2)


def test_warn_names_at_most_five_groups():
    coords = {"algorithm": list("abcdefg"), "label": ["l"], "metric": ["dice"]}
    with pytest.warns(UnreliableThresholdWarning, match=r"7 group\(s\) .* and 2 more\."):
        v.warn_unreliable_thresholds(5, np.zeros((7, 1, 1)), coords, stacklevel=2)

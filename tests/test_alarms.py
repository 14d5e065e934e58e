"""Thresholds, alarms, risk and the threshold table: by hand, against scipy, and as properties."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qe_nb.core.alarms import alarms, risk, threshold_table, thresholds
from qe_nb.exceptions import InputError, UnreliableThresholdWarning

DIMS = ("case", "algorithm", "label", "metric")

# one algorithm, one label: Dice median 0.75, MAD 0.125; hd median 3, MAD 1 (binary-exact
# numbers, so that "strictly below" is tested without rounding)
DICE = [0.875, 0.75, 0.625, 0.8125, 0.5]
HD = [2.0, 3.0, 4.0, 10.0, 3.0]


def hand_cube() -> xr.DataArray:
    return xr.DataArray(
        np.array([DICE, HD]).T.reshape(5, 1, 1, 2),
        dims=DIMS,
        coords={"case": list("abcde"), "algorithm": ["x"], "label": ["tumor"], "metric": ["dice", "hd"]},
    )


def random_cube(rng, n_cases=30, algorithms=("a", "b", "c"), labels=("wt", "tc"), metrics=("dice", "hd95")):
    shape = (n_cases, len(algorithms), len(labels), len(metrics))
    values = rng.random(shape)
    for m, metric in enumerate(metrics):
        if metric != "dice":
            values[..., m] = rng.gamma(2.0, 3.0, shape[:3])
    return xr.DataArray(
        values,
        dims=DIMS,
        coords={
            "case": [f"case-{i:03d}" for i in range(n_cases)],
            "algorithm": list(algorithms),
            "label": list(labels),
            "metric": list(metrics),
        },
    )


def flat(da: xr.DataArray) -> list:
    return da.values.ravel().tolist()


# --- thresholds by hand --------------------------------------------------------------------


@pytest.mark.parametrize(
    "alpha, dice, hd",
    [(0.0, 0.75, 3.0), (1.0, 0.625, 4.0), (-1.0, 0.875, 2.0), (2.5, 0.4375, 5.5)],
)
def test_thresholds_by_hand(alpha, dice, hd):
    out = thresholds(hand_cube(), alpha)
    assert out.dims == ("algorithm", "label", "metric")
    assert out.name == "threshold"
    assert flat(out) == pytest.approx([dice, hd], abs=1e-12)
    assert out.higher_is_better.values.tolist() == [True, False]


def test_thresholds_normal_mad_scale():
    out = thresholds(hand_cube(), 1.0, mad_scale="normal")
    assert flat(out) == pytest.approx([0.75 - 0.125 * 1.4826, 3.0 + 1.4826], abs=1e-12)
    assert out.attrs["mad_scale"] == 1.4826


def test_thresholds_use_finite_values_only():
    sim = hand_cube().copy()
    sim.loc[{"case": "b", "metric": "dice"}] = np.nan
    sim.loc[{"case": "d", "metric": "hd"}] = np.inf
    out = thresholds(sim, 1.0)
    # dice over .875, .625, .8125, .5: median .71875, MAD median(.15625, .09375, .09375,
    # .21875) = .125; hd over 2, 3, 4, 3: median 3, MAD median(1, 0, 1, 0) = 0.5
    assert flat(out) == pytest.approx([0.59375, 3.5], abs=1e-12)


def test_thresholds_match_scipy_median_abs_deviation(rng):
    sim = random_cube(rng, n_cases=41)
    sim[3, 0, 0, 1] = np.inf
    sim[4, 1, 1, 0] = np.nan
    for mad_scale, scipy_scale in ((1.0, 1.0), ("normal", 1 / 1.4826), (2.0, 0.5)):
        out = thresholds(sim, 0.7, mad_scale=mad_scale)
        for a in sim.algorithm.values:
            for lab in sim.label.values:
                for metric, sign in (("dice", 1.0), ("hd95", -1.0)):
                    x = sim.sel(algorithm=a, label=lab, metric=metric).values
                    x = sign * x[np.isfinite(x)]
                    mad = scipy.stats.median_abs_deviation(x, scale=scipy_scale)
                    expected = sign * (np.median(x) - 0.7 * mad)
                    got = float(out.sel(algorithm=a, label=lab, metric=metric))
                    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_thresholds_per_label_alpha():
    sim = random_cube(np.random.default_rng(1))
    alpha = xr.DataArray([0.5, -1.0], dims="label", coords={"label": ["wt", "tc"]})
    out = thresholds(sim, alpha)
    xr.testing.assert_allclose(out.sel(label="wt"), thresholds(sim, 0.5).sel(label="wt"))
    xr.testing.assert_allclose(out.sel(label="tc"), thresholds(sim, -1.0).sel(label="tc"))


def test_thresholds_of_a_group_without_finite_value_are_nan():
    sim = hand_cube().copy()
    sim.loc[{"metric": "hd"}] = np.inf
    with pytest.warns(UnreliableThresholdWarning, match=r"no finite value"):
        out = thresholds(sim, 1.0)
    assert np.isnan(out.sel(metric="hd")).all()
    with pytest.warns(UnreliableThresholdWarning):
        assert alarms(sim, 1.0).sel(metric="hd").all()


def test_scores_dataset_accepted():
    sim = hand_cube()
    xr.testing.assert_equal(thresholds(xr.Dataset({"similarity": sim}), 1.0), thresholds(sim, 1.0))


# --- alarms by hand ------------------------------------------------------------------------


def test_alarms_strictly_below_the_threshold():
    sim = hand_cube()
    out = alarms(sim, 1.0)
    # dice threshold .625: case c (.625) is not strictly below; hd threshold 4: c (4.0) neither
    assert out.sel(metric="dice").values.ravel().tolist() == [False, False, False, False, True]
    assert out.sel(metric="hd").values.ravel().tolist() == [False, False, False, True, False]
    assert out.dtype == bool and out.name == "alarms"


def test_alarms_at_median_and_below():
    out = alarms(hand_cube(), 0.0)
    assert out.sel(metric="dice").values.ravel().tolist() == [False, False, True, False, True]
    assert out.sel(metric="hd").values.ravel().tolist() == [False, False, True, True, False]
    out = alarms(hand_cube(), -1.0)  # dice < .875, hd > 2
    assert out.sel(metric="dice").values.ravel().tolist() == [False, True, True, True, True]
    assert out.sel(metric="hd").values.ravel().tolist() == [False, True, True, True, True]


def test_alarms_on_inf_and_nan_for_any_alpha():
    sim = hand_cube().copy()
    sim.loc[{"case": "a", "metric": "hd"}] = np.inf
    sim.loc[{"case": "a", "metric": "dice"}] = np.nan
    sim.loc[{"case": "b", "metric": "dice"}] = -np.inf
    for alpha in (-3.0, 0.0, 100.0):
        out = alarms(sim, alpha)
        assert out.sel(case="a").all()
        assert bool(out.sel(case="b", metric="dice"))


def test_alarms_keep_the_input_dim_order_and_coords():
    sim = hand_cube().assign_coords(units=("metric", ["1", "mm"])).transpose("metric", "case", "label", "algorithm")
    out = alarms(sim, 0.0)
    assert out.dims == sim.dims
    assert out.units.values.tolist() == ["1", "mm"]
    assert out.higher_is_better.values.tolist() == [True, False]
    xr.testing.assert_equal(out.transpose(*DIMS).drop_vars(["units"]), alarms(hand_cube(), 0.0))


def test_alarms_do_not_mutate_the_input():
    sim = hand_cube()
    before = sim.copy(deep=True)
    alarms(sim, 1.0)
    xr.testing.assert_identical(sim, before)


def test_alarms_with_per_algorithm_and_metric_alpha():
    sim = random_cube(np.random.default_rng(2))
    alpha = xr.DataArray(
        [[0.0, 1.0], [-0.5, 2.0], [0.3, 0.3]],
        dims=("algorithm", "metric"),
        coords={"algorithm": ["a", "b", "c"], "metric": ["dice", "hd95"]},
    )
    out = alarms(sim, alpha)
    for a in "abc":
        for metric in ("dice", "hd95"):
            scalar = float(alpha.sel(algorithm=a, metric=metric))
            expected = alarms(sim, scalar).sel(algorithm=a, metric=metric)
            xr.testing.assert_equal(out.sel(algorithm=a, metric=metric), expected)


def test_alarms_higher_is_better_coordinate_wins():
    sim = hand_cube().assign_coords(metric=["score", "penalty"], higher_is_better=("metric", [True, False]))
    xr.testing.assert_equal(
        alarms(sim, 1.0).drop_vars(["metric", "higher_is_better"]),
        alarms(hand_cube(), 1.0).drop_vars(["metric", "higher_is_better"]),
    )


def test_alarms_errors():
    sim = hand_cube()
    with pytest.raises(InputError, match=r"`alpha` must be a finite number or a DataArray over \(algorithm, label, metric\); got 'high'\."):
        alarms(sim, "high")
    with pytest.raises(InputError, match=r"`mad_scale` must be a positive finite number or 'normal'"):
        alarms(sim, 0.0, mad_scale="robust")
    with pytest.raises(InputError, match=r"`similarity` must have dims \(case, algorithm, label, metric\); got \('case', 'metric'\)"):
        alarms(sim.isel(algorithm=0, label=0), 0.0)
    with pytest.raises(InputError, match=r"`alpha` has no value for label \['tumor'\]"):
        alarms(sim, xr.DataArray([1.0], dims="label", coords={"label": ["edema"]}))


# --- warnings ------------------------------------------------------------------------------


def test_warns_with_fewer_than_three_cases_at_the_callers_line():
    sim = hand_cube().isel(case=[0, 1])
    for func in (thresholds, alarms, threshold_table):
        with pytest.warns(UnreliableThresholdWarning, match=r"`similarity` holds 2 case\(s\); median and MAD over fewer than three cases") as record:
            func(sim, 0.0)
        assert record[0].filename == __file__


def test_warns_on_a_group_with_mad_zero_and_names_it():
    sim = hand_cube().copy()
    sim.loc[{"metric": "dice"}] = [[[1.0]], [[1.0]], [[1.0]], [[0.5]], [[1.0]]]
    with pytest.warns(UnreliableThresholdWarning, match=r"1 group\(s\) have a MAD of 0 .*: \(algorithm='x', label='tumor', metric='dice'\)\.") as record:
        out = alarms(sim, 2.0)
    assert record[0].filename == __file__
    # threshold = median 1.0 for every alpha: only the 0.5 alarms
    assert out.sel(metric="dice").values.ravel().tolist() == [False, False, False, True, False]


def test_no_warning_on_a_healthy_cube():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alarms(hand_cube(), 0.1)


# --- risk ----------------------------------------------------------------------------------


def test_risk_counts_alarms_per_case():
    out = risk(alarms(hand_cube(), 0.0))
    assert out.name == "risk" and out.dims == ("case",)
    assert out.dtype == np.int64
    assert out.values.tolist() == [0, 0, 2, 1, 1]
    assert out.case.values.tolist() == list("abcde")


def test_risk_keeps_other_dims():
    flags = alarms(hand_cube(), 0.0)
    stacked = xr.concat([flags, ~flags], dim=pd.Index([0.0, 1.0], name="alpha"))
    out = risk(stacked)
    assert out.dims == ("alpha", "case")
    assert out.sel(alpha=1.0).values.tolist() == [2, 2, 0, 1, 1]


def test_risk_errors():
    with pytest.raises(InputError, match=r"`alarms` must be a boolean DataArray with a 'case' dim \(the output of alarms\(\)\); got dtype float64"):
        risk(hand_cube())
    with pytest.raises(InputError, match=r"got ndarray"):
        risk(np.ones(3, dtype=bool))


# --- threshold table -----------------------------------------------------------------------


def test_threshold_table_layout():
    sim = random_cube(np.random.default_rng(3))
    table = threshold_table(sim, 0.1)
    assert table.index.names == ["label", "algorithm"]
    assert list(table.columns) == ["dice", "hd95"]
    assert table.columns.name == "metric"
    assert len(table) == 6
    th = thresholds(sim, 0.1)
    assert table.loc[("tc", "b"), "hd95"] == pytest.approx(float(th.sel(label="tc", algorithm="b", metric="hd95")))
    one = threshold_table(sim, 0.1, label="wt")
    assert one.index.name == "algorithm" and one.index.tolist() == ["a", "b", "c"]
    pd.testing.assert_frame_equal(one, table.xs("wt", level="label"))


def test_threshold_table_unknown_label():
    with pytest.raises(InputError, match=r"Unknown `label` 'edema'; expected one of \['tumor'\]\."):
        threshold_table(hand_cube(), label="edema")


# --- the package attribute -----------------------------------------------------------------


def test_package_attribute_is_the_function_after_submodule_import():
    """``qe_nb.alarms`` names a module and its function; the package binds the function."""
    import qe_nb.core.calibration  # noqa: F401  (imports the submodule too)

    sim = hand_cube()
    assert callable(qe_nb.alarms) and qe_nb.alarms is alarms
    xr.testing.assert_equal(qe_nb.alarms(sim, 0.0), alarms(sim, 0.0))


# --- properties ----------------------------------------------------------------------------

_VALUES = st.one_of(
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.sampled_from([0.0, 0.5, 1.0, np.inf, np.nan]),
)


@st.composite
def cubes(draw):
    shape = (
        draw(st.integers(1, 8)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 2)),
        draw(st.integers(1, 2)),
    )
    values = draw(hnp.arrays(np.float64, shape, elements=_VALUES))
    return xr.DataArray(
        values,
        dims=DIMS,
        coords={
            "case": [f"c{i}" for i in range(shape[0])],
            "algorithm": [f"a{i}" for i in range(shape[1])],
            "label": [f"l{i}" for i in range(shape[2])],
            "metric": ["dice", "hd95"][: shape[3]],
        },
    )


_ALPHA = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False)
_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableThresholdWarning)
        return func(*args, **kwargs)


@_SETTINGS
@given(cubes(), _ALPHA, _ALPHA, st.sampled_from([1.0, "normal"]))
def test_property_alarm_count_never_rises_with_alpha(sim, a1, a2, mad_scale):
    low, high = sorted((a1, a2))
    at_low = _quiet(alarms, sim, low, mad_scale=mad_scale)
    at_high = _quiet(alarms, sim, high, mad_scale=mad_scale)
    assert not (at_high & ~at_low).any()
    assert (risk(at_high) <= risk(at_low)).all()


@_SETTINGS
@given(cubes(), _ALPHA, st.randoms(use_true_random=False))
def test_property_alarms_do_not_depend_on_case_order(sim, alpha, random):
    order = list(range(sim.sizes["case"]))
    random.shuffle(order)
    permuted = _quiet(alarms, sim.isel(case=order), alpha)
    xr.testing.assert_equal(permuted, _quiet(alarms, sim, alpha).isel(case=order))


@_SETTINGS
@given(cubes(), _ALPHA, st.sampled_from([("algorithm",), ("label", "metric"), ("algorithm", "label", "metric")]))
def test_property_uniform_group_alpha_equals_scalar(sim, alpha, dims):
    per_group = xr.DataArray(
        np.full([sim.sizes[d] for d in dims], alpha), dims=dims, coords={d: sim.coords[d].values for d in dims}
    )
    xr.testing.assert_equal(_quiet(alarms, sim, per_group), _quiet(alarms, sim, alpha))


@_SETTINGS
@given(cubes(), _ALPHA)
def test_property_non_finite_always_alarms(sim, alpha):
    out = _quiet(alarms, sim, alpha)
    assert out.values[~np.isfinite(sim.values)].all()
    # and the threshold logic, written out once more in the metric's own units
    th = _quiet(thresholds, sim, alpha)
    hib = th.higher_is_better
    expected = xr.where(hib, sim < th, sim > th) | ~np.isfinite(sim)
    assert (out == expected.transpose(*out.dims)).all()

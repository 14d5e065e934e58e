"""Entropy (against the paper's Tables 1 and 2), sweeps (against scipy) and calibration."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from qe_nb.core.alarms import alarms, risk
from qe_nb.core.calibration import DEFAULT_ALPHAS, alarm_entropy, calibrate, sweep, sweep_table
from qe_nb.exceptions import InputError, UndefinedValueWarning, UnreliableThresholdWarning

DIMS = ("case", "algorithm", "label", "metric")

# Kofler et al. 2021, Table 1 (MR, 68 cases, counts 0a..10a): alpha, entropy, histogram.
# Rows printed with entropy "-0.00" are 0.
TABLE_1 = [
    (-3.00, 0.00, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 68]),
    (-2.00, 0.22, [0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 64]),
    (-1.00, 1.28, [0, 0, 0, 1, 0, 2, 2, 5, 5, 13, 40]),
    (-0.75, 1.80, [0, 0, 1, 3, 4, 2, 10, 5, 4, 14, 25]),
    (-0.50, 2.02, [0, 6, 1, 3, 5, 4, 11, 1, 10, 8, 19]),
    (-0.25, 2.33, [3, 5, 4, 5, 7, 4, 6, 7, 8, 7, 12]),
    (-0.10, 2.37, [7, 4, 4, 6, 4, 7, 7, 8, 7, 6, 8]),
    (0.00, 2.35, [9, 5, 7, 4, 4, 6, 6, 8, 8, 3, 8]),
    (0.10, 2.30, [9, 6, 10, 3, 6, 7, 2, 9, 5, 3, 8]),
    (0.25, 2.28, [11, 7, 12, 3, 2, 7, 3, 8, 5, 5, 5]),
    (0.50, 2.23, [15, 11, 8, 3, 2, 4, 5, 8, 4, 4, 4]),
    (0.75, 2.06, [18, 13, 7, 3, 1, 5, 6, 7, 2, 6, 0]),
    (1.00, 1.97, [23, 12, 3, 3, 2, 6, 8, 6, 3, 2, 0]),
    (2.00, 1.71, [30, 10, 6, 4, 3, 8, 2, 5, 0, 0, 0]),
    (3.00, 1.40, [37, 11, 4, 1, 3, 10, 1, 1, 0, 0, 0]),
]

# Table 2 (CT, 46 cases, counts 0a..3a)
TABLE_2 = [
    (-3.00, 0.00, [0, 0, 0, 46]),
    (-2.00, 0.00, [0, 0, 0, 46]),
    (-1.00, 0.58, [0, 3, 5, 38]),
    (-0.75, 0.88, [5, 2, 6, 33]),
    (-0.50, 1.19, [6, 7, 8, 25]),
    (-0.25, 1.32, [10, 7, 10, 19]),
    (-0.10, 1.36, [12, 8, 11, 15]),
    (0.00, 1.37, [13, 8, 14, 11]),
    (0.10, 1.37, [15, 10, 11, 10]),
    (0.25, 1.33, [18, 9, 11, 8]),
    (0.50, 1.20, [23, 6, 12, 5]),
    (0.75, 1.17, [25, 9, 8, 4]),
    (1.00, 1.13, [26, 10, 6, 4]),
    (2.00, 0.86, [33, 8, 2, 3]),
    (3.00, 0.66, [37, 6, 1, 2]),
]


def cohort(rng, n_cases=60, algorithms=("a", "b", "c", "d"), labels=("wt", "tc", "et")):
    """A cube whose candidates disagree more with the fusion in worse cases, plus the quality."""
    quality = rng.beta(5.0, 2.0, n_cases)
    shape = (n_cases, len(algorithms), len(labels))
    dice = np.clip(quality[:, None, None] + rng.normal(0.0, 0.12, shape), 0.0, 1.0)
    hd = rng.gamma(2.0, 2.0, shape) * (1.6 - quality[:, None, None])
    hd[rng.random(shape) < 0.02] = np.inf
    sim = xr.DataArray(
        np.stack([dice, hd], axis=-1),
        dims=DIMS,
        coords={
            "case": [f"case-{i:04d}" for i in range(n_cases)],
            "algorithm": list(algorithms),
            "label": list(labels),
            "metric": ["dice", "hd95"],
        },
    )
    return sim, xr.DataArray(quality, dims="case", coords={"case": sim.case.values}, name="dice")


def objective_of(sim, alpha, objective, quality=None):
    """The objective recomputed from scratch through the public functions."""
    counts = risk(alarms(sim, alpha))
    top = sim.sizes["algorithm"] * sim.sizes["label"] * sim.sizes["metric"]
    h = alarm_entropy(counts, max_count=top)
    if objective == "entropy":
        return h
    r = scipy.stats.pearsonr(counts.values, quality.sel(case=counts.case).values).statistic
    return -r if objective == "pearson" else h / math.log(top + 1) - r


# --- entropy: the paper's Tables 1 and 2, all 30 rows --------------------------------------


@pytest.mark.parametrize("alpha, entropy, hist", TABLE_1, ids=[f"table1-alpha{r[0]:+.2f}" for r in TABLE_1])
def test_entropy_reproduces_table_1(alpha, entropy, hist):
    assert sum(hist) == 68
    counts = np.repeat(np.arange(11), hist)
    assert round(alarm_entropy(counts, max_count=10), 2) == entropy


@pytest.mark.parametrize("alpha, entropy, hist", TABLE_2, ids=[f"table2-alpha{r[0]:+.2f}" for r in TABLE_2])
def test_entropy_reproduces_table_2(alpha, entropy, hist):
    assert sum(hist) == 46
    counts = np.repeat(np.arange(4), hist)
    assert round(alarm_entropy(xr.DataArray(counts, dims="case"), max_count=3), 2) == entropy


def test_entropy_of_a_single_bin_is_plus_zero():
    value = alarm_entropy(np.full(68, 10), max_count=10)
    assert value == 0.0 and math.copysign(1.0, value) == 1.0


def test_entropy_matches_scipy():
    counts = np.random.default_rng(0).integers(0, 7, 200)
    assert alarm_entropy(counts) == pytest.approx(scipy.stats.entropy(np.bincount(counts)), abs=1e-12)


def test_entropy_errors():
    with pytest.raises(InputError, match=r"`risk` holds a count of 5, above `max_count` = 3"):
        alarm_entropy([0, 5], max_count=3)
    with pytest.raises(InputError, match=r"`max_count` must be a non-negative int or None; got 2.5"):
        alarm_entropy([0, 1], max_count=2.5)
    with pytest.raises(InputError, match=r"`risk` must hold alarm counts \(non-negative whole numbers\) over cases; got -1 among them"):
        alarm_entropy([0, -1])


# --- sweep ---------------------------------------------------------------------------------


def test_sweep_by_hand():
    sim = xr.DataArray(
        np.array([0.9, 0.8, 0.7, 0.6]).reshape(4, 1, 1, 1),
        dims=DIMS,
        coords={"case": list("abcd"), "algorithm": ["x"], "label": ["t"], "metric": ["dice"]},
    )
    ds = sweep(sim, [0.0, 10.0, -10.0])
    assert ds.alpha.values.tolist() == [0.0, 10.0, -10.0]
    assert ds.histogram.values.tolist() == [[2, 2], [4, 0], [0, 4]]
    assert ds.entropy.values.tolist() == pytest.approx([math.log(2), 0.0, 0.0])
    assert ds.risk.sel(alpha=0.0).values.tolist() == [0, 0, 1, 1]
    assert ds.attrs["max_count"] == 1
    assert "r" not in ds


def test_sweep_default_grid_is_the_papers():
    assert DEFAULT_ALPHAS == (-3, -2, -1, -0.75, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 0.75, 1, 2, 3)
    sim, _ = cohort(np.random.default_rng(0), n_cases=20)
    assert sweep(sim).alpha.values.tolist() == list(DEFAULT_ALPHAS)


@pytest.mark.filterwarnings("ignore::qe_nb.exceptions.UndefinedValueWarning")
@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_sweep_agrees_with_alarms_and_scipy():
    sim, quality = cohort(np.random.default_rng(1))
    ds = sweep(sim, DEFAULT_ALPHAS, quality=quality)
    assert ds.histogram.sum("count").values.tolist() == [60] * 15
    for alpha in DEFAULT_ALPHAS:
        flags = alarms(sim, alpha)
        counts = risk(flags)
        assert ds.risk.sel(alpha=alpha).values.tolist() == counts.values.tolist()
        assert float(ds.entropy.sel(alpha=alpha)) == pytest.approx(alarm_entropy(counts, max_count=24))
        ref = scipy.stats.pearsonr(counts.values, quality.values)
        assert float(ds.r_all.sel(alpha=alpha)) == pytest.approx(ref.statistic, abs=1e-12, nan_ok=True)
        assert float(ds.p_value_all.sel(alpha=alpha)) == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300, nan_ok=True)
        for metric in ("dice", "hd95"):
            per_metric = flags.sel(metric=metric).sum(("algorithm", "label")).values
            ref = scipy.stats.pearsonr(per_metric, quality.values)
            assert float(ds.r.sel(alpha=alpha, metric=metric)) == pytest.approx(ref.statistic, abs=1e-12, nan_ok=True)
            assert float(ds.p_value.sel(alpha=alpha, metric=metric)) == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300, nan_ok=True)
    # the method works on this cohort: more alarms, worse quality
    assert float(ds.r_all.sel(alpha=0.0)) < -0.5


@pytest.mark.filterwarnings("ignore::qe_nb.exceptions.UndefinedValueWarning")
def test_sweep_quality_in_another_case_order():
    sim, quality = cohort(np.random.default_rng(2), n_cases=30)
    shuffled = quality.isel(case=np.random.default_rng(3).permutation(30))
    xr.testing.assert_allclose(sweep(sim, quality=shuffled).r, sweep(sim, quality=quality).r)


def test_sweep_non_finite_quality_left_out():
    sim, quality = cohort(np.random.default_rng(4), n_cases=30)
    holed = quality.copy()
    holed[0] = np.nan
    ds = sweep(sim, [0.0], quality=holed)
    counts = risk(alarms(sim, 0.0)).values
    expected = scipy.stats.pearsonr(counts[1:], quality.values[1:]).statistic
    assert float(ds.r_all[0]) == pytest.approx(expected, abs=1e-12)


def test_sweep_constant_count_gives_nan_and_warns_once():
    sim, quality = cohort(np.random.default_rng(5), n_cases=30)
    with pytest.warns(UndefinedValueWarning, match=r"Pearson r of the alarm count with `quality` is undefined \(a constant count or a constant quality\) at 1 alpha value\(s\) \(-1000\); reported as NaN\.") as record:
        ds = sweep(sim, [-1000.0, 0.0], quality=quality)
    assert len([w for w in record if w.category is UndefinedValueWarning]) == 1
    assert record[0].filename == __file__
    assert np.isnan(ds.r.sel(alpha=-1000.0)).all() and np.isnan(ds.r_all.sel(alpha=-1000.0))
    assert np.isfinite(ds.r.sel(alpha=0.0)).all()
    assert float(ds.entropy.sel(alpha=-1000.0)) == 0.0


def test_sweep_table_warns_at_the_callers_line():
    sim, quality = cohort(np.random.default_rng(9), n_cases=2)
    with pytest.warns((UndefinedValueWarning, UnreliableThresholdWarning)) as record:
        sweep_table(sim, [-1000.0, 0.0], quality=quality)
    assert {w.category for w in record} == {UndefinedValueWarning, UnreliableThresholdWarning}
    assert all(w.filename == __file__ for w in record)


def test_sweep_constant_quality_gives_nan():
    sim, quality = cohort(np.random.default_rng(6), n_cases=20)
    with pytest.warns(UndefinedValueWarning, match=r"at 15 alpha value\(s\) \(-3, -2, -1, -0.75, -0.5, -0.25, \.\.\.\)"):
        ds = sweep(sim, quality=quality * 0 + 0.5)
    assert np.isnan(ds.r_all).all()


def test_sweep_errors():
    sim, quality = cohort(np.random.default_rng(7), n_cases=10)
    with pytest.raises(InputError, match=r"`alphas` must hold distinct values; got 0.1 more than once"):
        sweep(sim, [0.1, 0.1])
    with pytest.raises(InputError, match=r"`quality` must cover the same cases as `similarity`; it lacks 1 case\(s\) of `similarity`: \['case-0009'\]"):
        sweep(sim, quality=quality.isel(case=slice(0, 9)))
    with pytest.raises(InputError, match=r"`quality` must be a DataArray over \(case,\) holding numbers; got dims \('case', 'label'\)"):
        sweep(sim, quality=quality.expand_dims(label=["wt"], axis=1))


@pytest.mark.filterwarnings("ignore::qe_nb.exceptions.UndefinedValueWarning")
def test_sweep_table_layout_of_the_paper():
    sim, quality = cohort(np.random.default_rng(8), algorithms=("a", "b", "c", "d", "e"), labels=("mean",))
    table = sweep_table(sim, quality=quality)
    assert list(table.columns) == ["alpha", "entropy", "r:dice", "r:hd95"] + [f"{k}a" for k in range(11)]
    assert table["alpha"].tolist() == list(DEFAULT_ALPHAS)
    assert (table[[f"{k}a" for k in range(11)]].sum(axis=1) == 60).all()
    ds = sweep(sim, quality=quality)
    assert table["r:hd95"].tolist() == pytest.approx(ds.r.sel(metric="hd95").values.tolist(), nan_ok=True)
    without = sweep_table(sim, [0.0, 0.1])
    assert list(without.columns) == ["alpha", "entropy"] + [f"{k}a" for k in range(11)]


# --- calibrate -----------------------------------------------------------------------------

GRID = np.round(np.arange(-300, 301) / 100.0, 2)


@pytest.mark.parametrize("objective", ["entropy", "pearson", "combined"])
def test_calibrate_matches_or_beats_a_fine_grid(objective):
    sim, quality = cohort(np.random.default_rng(10), n_cases=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedValueWarning)
        ds = sweep(sim, GRID, quality=quality)
    top = 24
    grid_values = {
        "entropy": ds.entropy.values,
        "pearson": -ds.r_all.values,
        "combined": ds.entropy.values / math.log(top + 1) - ds.r_all.values,
    }[objective]
    alpha = calibrate(sim, objective=objective, quality=quality)
    assert isinstance(alpha, float) and -3.0 <= alpha <= 3.0
    assert objective_of(sim, alpha, objective, quality) >= np.nanmax(grid_values) - 1e-9


def test_calibrate_on_an_explicit_grid_picks_its_best():
    sim, quality = cohort(np.random.default_rng(11), n_cases=50)
    grid = [-1.0, -0.5, 0.0, 0.5, 1.0]
    alpha = calibrate(sim, objective="pearson", quality=quality, alphas=grid)
    ds = sweep(sim, grid, quality=quality)
    assert alpha == grid[int(np.nanargmin(ds.r_all.values))]


def test_calibrate_prefers_the_smallest_abs_alpha_on_ties():
    # four cases, one group: median 0.65, MAD 0.1; every alpha in (-0.5, 0.5) alarms the two
    # lowest cases (entropy ln 2, the best), so alpha 0 must win among the grid ties
    sim = xr.DataArray(
        np.array([0.9, 0.7, 0.6, 0.4]).reshape(4, 1, 1, 1),
        dims=DIMS,
        coords={"case": list("abcd"), "algorithm": ["x"], "label": ["t"], "metric": ["dice"]},
    )
    assert calibrate(sim) == 0.0
    assert calibrate(sim, alphas=[-0.4, 0.3, 0.45]) == 0.3


def test_calibrate_by_label_is_usable_in_alarms_and_no_worse():
    sim, quality = cohort(np.random.default_rng(12), n_cases=70)
    for objective in ("entropy", "pearson"):
        global_alpha = calibrate(sim, objective=objective, quality=quality)
        per_label = calibrate(sim, objective=objective, quality=quality, by=("label",))
        assert isinstance(per_label, xr.DataArray)
        assert per_label.dims == ("label",) and per_label.name == "alpha"
        assert per_label.label.values.tolist() == ["wt", "tc", "et"]
        assert per_label.attrs["objective"] == objective
        value = objective_of(sim, per_label, objective, quality)
        assert value == pytest.approx(per_label.attrs["objective_value"], abs=1e-9)
        assert value >= objective_of(sim, global_alpha, objective, quality) - 1e-9


def test_calibrate_by_every_group():
    sim, quality = cohort(np.random.default_rng(13), n_cases=40, algorithms=("a", "b"), labels=("wt", "et"))
    alpha = calibrate(sim, by=("metric", "algorithm", "label"))
    assert alpha.dims == ("metric", "algorithm", "label") and alpha.shape == (2, 2, 2)
    assert objective_of(sim, alpha, "entropy") >= objective_of(sim, calibrate(sim), "entropy") - 1e-9


def test_calibrate_is_deterministic_and_order_free():
    sim, quality = cohort(np.random.default_rng(14), n_cases=40)
    first = calibrate(sim, objective="combined", quality=quality, by="algorithm")
    again = calibrate(sim, objective="combined", quality=quality, by="algorithm")
    xr.testing.assert_identical(first, again)
    order = np.random.default_rng(15).permutation(40)
    permuted = calibrate(sim.isel(case=order), objective="combined", quality=quality, by="algorithm")
    xr.testing.assert_allclose(first, permuted)


def test_calibrate_a_thousand_cases():
    # the paper's scale x 15; must stay interactive (no timing assertion, see the brief)
    sim, quality = cohort(np.random.default_rng(16), n_cases=1000, algorithms=tuple("abcde"))
    alpha = calibrate(sim, objective="pearson", quality=quality)
    assert objective_of(sim, alpha, "pearson", quality) > 0.5


def test_calibrate_errors():
    sim, quality = cohort(np.random.default_rng(17), n_cases=10)
    with pytest.raises(InputError, match=r"`objective='pearson'` needs `quality` \(a DataArray over case, e.g. the fusion's true Dice\); got None"):
        calibrate(sim, objective="pearson")
    with pytest.raises(InputError, match=r"`objective='combined'` needs `quality`"):
        calibrate(sim, objective="combined")
    with pytest.raises(InputError, match=r"Unknown `objective` 'auc'; expected one of \['entropy', 'pearson', 'combined'\]"):
        calibrate(sim, objective="auc")
    with pytest.raises(InputError, match=r"`by` must be None or a subset of \('algorithm', 'label', 'metric'\); got \('case',\)"):
        calibrate(sim, by=("case",))
    with pytest.raises(InputError, match=r"`alphas` must be a non-empty sequence of finite numbers; got an empty sequence"):
        calibrate(sim, alphas=[])


def test_calibrate_undefined_pearson_warns_and_returns_zero():
    sim, quality = cohort(np.random.default_rng(18), n_cases=10)
    with pytest.warns(UndefinedValueWarning, match=r"undefined for every alpha searched .*; returning alpha = 0.0\.") as record:
        alpha = calibrate(sim, objective="pearson", quality=quality * 0 + 1)
    assert alpha == 0.0
    assert record[0].filename == __file__


def test_calibrate_warns_on_few_cases():
    sim, quality = cohort(np.random.default_rng(19), n_cases=2)
    with pytest.warns(UnreliableThresholdWarning) as record:
        calibrate(sim)
    assert "`similarity` holds 2 case(s)" in str(record[0].message)
    assert all(w.filename == __file__ for w in record)

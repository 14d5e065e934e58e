"""The worklist and triage performance (AUROC, precision at top k, Spearman, bootstrap)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

from qe_nb.core.alarms import alarms, risk
from qe_nb.core.statistics import auroc_rows, spearman_rows
from qe_nb.core.triage import _top_rows, triage_performance, worklist
from qe_nb.exceptions import InputError, UnreliableThresholdWarning

DIMS = ("case", "algorithm", "label", "metric")


def small_cube() -> xr.DataArray:
    # algorithm isen-20, label enhancing_tumor; Dice median .75, hd95 median 3.5 (finite only)
    dice = [0.875, 0.75, 0.41, 0.8125, 0.5, 0.75]
    hd95 = [2.0, 4.0, np.inf, 10.0, 3.0, 3.5]
    return xr.DataArray(
        np.array([dice, hd95]).T.reshape(6, 1, 1, 2),
        dims=DIMS,
        coords={
            "case": ["p6", "p5", "p4", "p3", "p2", "p1"],
            "algorithm": ["isen-20"],
            "label": ["enhancing_tumor"],
            "metric": ["dice", "hd95"],
        },
    )


# --- worklist ------------------------------------------------------------------------------


def test_worklist_order_columns_and_reasons():
    table = worklist(small_cube(), 0.0)
    assert list(table.columns) == ["case", "risk", "n_alarms:dice", "n_alarms:hd95", "reasons"]
    assert table.index.name == "rank" and table.index.tolist() == [1, 2, 3, 4, 5, 6]
    # p4 two alarms; p2, p3, p5 one each (ties by case id); then p1, p6 without alarms;
    # p5's Dice .75 and p1's hd95 3.5 equal their thresholds: not strictly beyond, no alarm
    assert table["case"].tolist() == ["p4", "p2", "p3", "p5", "p1", "p6"]
    assert table["risk"].tolist() == [2, 1, 1, 1, 0, 0]
    assert table["n_alarms:hd95"].tolist() == [1, 0, 1, 1, 0, 0]
    assert table["reasons"].tolist() == [
        "isen-20: enhancing_tumor Dice 0.41 < 0.75, enhancing_tumor hd95 inf (empty)",
        "isen-20: enhancing_tumor Dice 0.5 < 0.75",
        "isen-20: enhancing_tumor hd95 10 > 3.5",
        "isen-20: enhancing_tumor hd95 4 > 3.5",
        "",
        "",
    ]


def test_worklist_risk_equals_risk_of_alarms():
    rng = np.random.default_rng(0)
    sim = xr.DataArray(
        rng.random((25, 3, 2, 2)),
        dims=DIMS,
        coords={"case": [f"c{i:02d}" for i in range(25)], "algorithm": list("abc"), "label": ["wt", "et"], "metric": ["dice", "nsd"]},
    )
    alpha = xr.DataArray([0.2, -0.3], dims="label", coords={"label": ["wt", "et"]})
    table = worklist(sim, alpha, mad_scale="normal")
    counts = risk(alarms(sim, alpha, mad_scale="normal")).to_series()
    assert table.set_index("case")["risk"].to_dict() == counts.to_dict()
    assert (np.diff(table["risk"].to_numpy()) <= 0).all()
    for _, row in table.iterrows():
        assert row["reasons"].count(" < ") == row["risk"]  # every alarm is named


def test_worklist_reasons_of_several_algorithms_and_nan():
    sim = xr.concat(
        [small_cube(), small_cube().assign_coords(algorithm=["scan-20"])], dim="algorithm"
    ).copy()
    sim.loc[{"case": "p4", "algorithm": "scan-20", "metric": "dice"}] = np.nan
    table = worklist(sim, 0.0).set_index("case")
    assert table.loc["p4", "reasons"] == (
        "isen-20: enhancing_tumor Dice 0.41 < 0.75, enhancing_tumor hd95 inf (empty); "
        "scan-20: enhancing_tumor Dice missing (NaN), enhancing_tumor hd95 inf (empty)"
    )


def test_worklist_shows_enough_digits_to_tell_value_and_threshold_apart():
    sim = xr.DataArray(
        np.array([0.9991, 0.9989, 0.9995, 0.9993, 0.9990]).reshape(5, 1, 1, 1),
        dims=DIMS,
        coords={"case": list("abcde"), "algorithm": ["x"], "label": ["t"], "metric": ["dice"]},
    )
    table = worklist(sim, 0.0).set_index("case")
    assert table.loc["b", "reasons"] == "x: t Dice 0.9989 < 0.9991"


def test_worklist_with_quality():
    sim = small_cube()
    quality = xr.DataArray([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dims="case", coords={"case": ["p1", "p2", "p3", "p4", "p5", "p6"]})
    table = worklist(sim, 0.0, quality=quality)
    assert list(table.columns[:3]) == ["case", "risk", "quality"]
    assert table.set_index("case")["quality"].to_dict() == {"p1": 0.1, "p2": 0.2, "p3": 0.3, "p4": 0.4, "p5": 0.5, "p6": 0.6}


def test_worklist_errors_and_warnings():
    sim = small_cube()
    with pytest.raises(InputError, match=r"`quality` must cover the same cases as `similarity`; it lacks 5 case\(s\)"):
        worklist(sim, 0.0, quality=xr.DataArray([0.5], dims="case", coords={"case": ["p1"]}))
    with pytest.raises(InputError, match=r"`alpha` must be a finite number or a DataArray over \(algorithm, label, metric\); got 'high'\."):
        worklist(sim, "high")
    with pytest.warns(UnreliableThresholdWarning, match=r"holds 2 case\(s\)") as record:
        worklist(sim.isel(case=[0, 1]))
    assert record[0].filename == __file__


# --- the statistics against brute force and scipy ------------------------------------------


def brute_auroc(score, failed):
    pos, neg = score[failed], score[~failed]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_against_pairs_and_scipy():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(20, 40)).astype(float)  # many ties
    failed = rng.random((20, 40)) < 0.3
    got = auroc_rows(scores, failed)
    for row in range(20):
        assert got[row] == pytest.approx(brute_auroc(scores[row], failed[row]), abs=1e-12)
        u = scipy.stats.mannwhitneyu(scores[row][failed[row]], scores[row][~failed[row]]).statistic
        assert got[row] == pytest.approx(u / (failed[row].sum() * (~failed[row]).sum()), abs=1e-12)
    assert np.isnan(auroc_rows(np.ones((1, 4)), np.zeros((1, 4), dtype=bool))).all()


def test_spearman_rows_against_scipy():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 6, size=(10, 30)).astype(float)
    b = rng.random((10, 30))
    got = spearman_rows(a, b)
    for row in range(10):
        assert got[row] == pytest.approx(scipy.stats.spearmanr(a[row], b[row]).statistic, abs=1e-12)


def test_top_fraction_counts_ties_by_their_expected_share():
    # 5 cases, review ceil(0.4 * 5) = 2; scores 3, 2, 2, 2, 0: one sure, one of three tied
    score = np.array([[3.0, 2.0, 2.0, 2.0, 0.0]])
    failed = np.array([[False, True, True, False, True]])
    precision, caught = _top_rows(score, failed, 0.4)
    # brute force: average over every order of the tied cases
    outcomes = []
    for perm in itertools.permutations([1, 2, 3]):
        reviewed = [0, perm[0]]
        outcomes.append(failed[0, reviewed].sum())
    expected = np.mean(outcomes)
    assert precision[0] == pytest.approx(expected / 2)
    assert caught[0] == pytest.approx(expected / 3)


# --- triage_performance --------------------------------------------------------------------


def cohort(rng, n=80):
    cases = [f"case-{i:03d}" for i in range(n)]
    quality = np.clip(rng.beta(4.0, 2.0, n), 0, 1)
    counts = np.clip(np.round((1 - quality) * 10 + rng.normal(0, 1.5, n)), 0, 10).astype(int)
    noise = rng.random(n)
    as_da = lambda v: xr.DataArray(v, dims="case", coords={"case": cases})  # noqa: E731
    return as_da(counts), as_da(quality), as_da(noise)


def test_triage_performance_table():
    counts, quality, noise = cohort(np.random.default_rng(3))
    table = triage_performance(counts, quality, failure_below=0.5, n_bootstrap=200, seed=1, baselines={"noise": noise})
    assert table.index.names == ["score", "statistic"]
    assert list(table.columns) == ["value", "ci_low", "ci_high"]
    assert table.index.get_level_values("score").unique().tolist() == ["risk", "noise"]
    statistics = table.loc["risk"].index.tolist()
    assert statistics == [
        "auroc", "spearman_rho",
        "precision_top_10%", "failures_caught_top_10%",
        "precision_top_20%", "failures_caught_top_20%",
        "precision_top_30%", "failures_caught_top_30%",
    ]
    failed = quality.values < 0.5
    assert table.attrs["n_cases"] == 80 and table.attrs["n_failures"] == int(failed.sum())
    assert table.loc[("risk", "auroc"), "value"] == pytest.approx(brute_auroc(counts.values, failed))
    assert table.loc[("risk", "spearman_rho"), "value"] == pytest.approx(
        scipy.stats.spearmanr(counts.values, quality.values).statistic
    )
    # the risk works, the noise does not
    assert table.loc[("risk", "auroc"), "value"] > 0.8
    assert table.loc[("risk", "spearman_rho"), "value"] < -0.5
    assert table.loc[("noise", "auroc"), "ci_low"] < 0.5 < table.loc[("noise", "auroc"), "ci_high"]
    lo, hi = table["ci_low"], table["ci_high"]
    assert ((lo <= table["value"] + 1e-9) & (table["value"] <= hi + 1e-9)).all()
    # review budget by hand: k = ceil(0.1 * 80) = 8 cases
    precision, caught = _top_rows(counts.values[None].astype(float), failed[None], 0.1)
    assert table.loc[("risk", "precision_top_10%"), "value"] == pytest.approx(precision[0])
    assert table.loc[("risk", "failures_caught_top_10%"), "value"] == pytest.approx(caught[0])


def test_triage_performance_is_deterministic_and_seeded():
    counts, quality, _ = cohort(np.random.default_rng(4), n=40)
    a = triage_performance(counts, quality, n_bootstrap=100, seed=7)
    b = triage_performance(counts, quality, n_bootstrap=100, seed=7)
    c = triage_performance(counts, quality, n_bootstrap=100, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a["ci_low"].equals(c["ci_low"])
    pd.testing.assert_series_equal(a["value"], c["value"])


def test_triage_performance_without_bootstrap_and_case_order():
    counts, quality, _ = cohort(np.random.default_rng(5), n=30)
    table = triage_performance(counts, quality.isel(case=slice(None, None, -1)), n_bootstrap=0, top_fractions=[0.5])
    assert table["ci_low"].isna().all()
    same = triage_performance(counts, quality, n_bootstrap=0, top_fractions=[0.5])
    pd.testing.assert_frame_equal(table, same)


def test_triage_performance_without_failures_gives_nan_auroc():
    counts, quality, _ = cohort(np.random.default_rng(6), n=20)
    table = triage_performance(counts, quality, failure_below=-1.0, n_bootstrap=10)
    assert math.isnan(table.loc[("risk", "auroc"), "value"])
    assert math.isnan(table.loc[("risk", "failures_caught_top_10%"), "value"])
    assert table.loc[("risk", "precision_top_10%"), "value"] == 0.0


def test_triage_performance_skips_non_finite_quality():
    counts, quality, _ = cohort(np.random.default_rng(7), n=30)
    holed = quality.copy()
    holed[:5] = np.nan
    table = triage_performance(counts, holed, n_bootstrap=0)
    assert table.attrs["n_cases"] == 25
    expected = scipy.stats.spearmanr(counts.values[5:], quality.values[5:]).statistic
    assert table.loc[("risk", "spearman_rho"), "value"] == pytest.approx(expected)


def test_triage_performance_errors():
    counts, quality, noise = cohort(np.random.default_rng(8), n=20)
    with pytest.raises(InputError, match=r"`failure_below` must be a finite number; got 'low'"):
        triage_performance(counts, quality, failure_below="low")
    with pytest.raises(InputError, match=r"`top_fractions` must be a non-empty sequence of numbers in \(0, 1\]; got \(0.0,\)"):
        triage_performance(counts, quality, top_fractions=(0.0,))
    with pytest.raises(InputError, match=r"got 0.1\."):
        triage_performance(counts, quality, top_fractions=0.1)
    with pytest.raises(InputError, match=r"`n_bootstrap` must be a non-negative int; got -5"):
        triage_performance(counts, quality, n_bootstrap=-5)
    with pytest.raises(InputError, match=r"`baselines` keys must be distinct names other than 'risk'; got 'risk'"):
        triage_performance(counts, quality, baselines={"risk": noise})
    with pytest.raises(InputError, match=r"`baselines\['cv'\]` must be a DataArray over \(case,\) holding numbers; got dims \('subject',\)"):
        triage_performance(counts, quality, baselines={"cv": xr.DataArray(noise.values, dims="subject")})
    with pytest.raises(InputError, match=r"`baselines\['noise'\]` holds non-finite values; every case needs a finite score"):
        triage_performance(counts, quality, baselines={"noise": noise.where(noise > 0.1)})
    with pytest.raises(InputError, match=r"`quality` must cover the same cases as `similarity`; it lacks 1 case\(s\)"):
        triage_performance(counts, quality.isel(case=slice(1, None)))
    with pytest.raises(InputError, match=r"`risk` must be a DataArray over \(case,\) holding numbers; got ndarray"):
        triage_performance(counts.values, quality)
    with pytest.raises(InputError, match=r"`quality` has 1 finite value\(s\); triage needs at least two cases"):
        triage_performance(counts, quality.where(quality.case == quality.case[0]))


# -- the fast paths an app uses: only the shown rows worded, precomputed alarms/thresholds ---


def _app_cube(n_cases=1000, seed=5):
    from qe_nb.core.metrics import METRICS

    rng = np.random.default_rng(seed)
    dims = ("case", "algorithm", "label", "metric")
    values = np.stack([rng.beta(8, 2, (n_cases, 5, 3)), rng.gamma(2.0, 2.0, (n_cases, 5, 3))], axis=-1)
    values[rng.random(values.shape) < 0.01] = np.inf
    values[rng.random(values.shape) < 0.005] = np.nan
    metrics = ["dice", "hd95"]
    return xr.DataArray(
        values, dims=dims,
        coords={"case": [f"c{i:04d}" for i in range(n_cases)], "algorithm": [f"a{i}" for i in range(5)],
                "label": ["wt", "tc", "et"], "metric": metrics,
                "higher_is_better": ("metric", [METRICS[m].higher_is_better for m in metrics])},
    )


@pytest.mark.parametrize("top", [0, 1, 25, 5000])
def test_worklist_top_equals_the_head_of_the_full_worklist(top):
    from qe_nb.core.alarms import alarms, thresholds

    sim = _app_cube()
    quality = xr.DataArray(np.linspace(0, 1, 1000), dims="case", coords={"case": sim.case.values})
    alpha = xr.DataArray([0.5, -0.25], dims="metric", coords={"metric": ["dice", "hd95"]})
    full = worklist(sim, alpha, quality=quality)
    pd.testing.assert_frame_equal(worklist(sim, alpha, quality=quality, top=top), full.head(top))
    given = worklist(sim, quality=quality, top=top,
                     alarms=alarms(sim, alpha), thresholds=thresholds(sim, alpha))
    pd.testing.assert_frame_equal(given, full.head(top))


def test_worklist_accepts_alarms_in_any_dim_order():
    from qe_nb.core.alarms import alarms, thresholds

    sim = _app_cube(60)
    flags = alarms(sim, 0.1).transpose("metric", "case", "label", "algorithm")
    limits = thresholds(sim, 0.1).transpose("label", "metric", "algorithm")
    pd.testing.assert_frame_equal(worklist(sim, alarms=flags, thresholds=limits), worklist(sim, 0.1))


def test_worklist_top_is_fast_at_app_size():
    import time

    from qe_nb.core.alarms import alarms, thresholds

    sim = _app_cube()
    flags, limits = alarms(sim, 0.0), thresholds(sim, 0.0)
    worklist(sim, alarms=flags, thresholds=limits, top=20)
    start = time.perf_counter()
    worklist(sim, alarms=flags, thresholds=limits, top=20)
    assert time.perf_counter() - start < 0.1  # the explorer redraws in < 150 ms in all


def test_worklist_fast_path_errors():
    from qe_nb.core.alarms import alarms, thresholds

    sim = _app_cube(10)
    with pytest.raises(InputError, match=r"`alarms` and `thresholds` go together .*; got only `alarms`"):
        worklist(sim, alarms=alarms(sim, 0.0))
    with pytest.raises(InputError, match=r"`alarms` and `thresholds` go together .*; got only `thresholds`"):
        worklist(sim, thresholds=thresholds(sim, 0.0))
    with pytest.raises(InputError, match=r"`top` must be a non-negative int or None; got -1"):
        worklist(sim, top=-1)
    with pytest.raises(InputError, match=r"`alarms` must have the dims and sizes of `similarity`"):
        worklist(sim, alarms=alarms(sim.isel(case=slice(5)), 0.0), thresholds=thresholds(sim, 0.0))


def test_threshold_table_from_given_thresholds():
    from qe_nb.core.alarms import threshold_table, thresholds

    sim = _app_cube(50)
    limits = thresholds(sim, 0.3)
    pd.testing.assert_frame_equal(threshold_table(None, thresholds=limits), threshold_table(sim, 0.3))
    pd.testing.assert_frame_equal(threshold_table(None, label="tc", thresholds=limits.transpose("metric", "label", "algorithm")),
                                  threshold_table(sim, 0.3, label="tc"))
    with pytest.raises(InputError, match=r"`thresholds` must be the DataArray over \(algorithm, label, metric\) that qe_nb.thresholds returns; got \('case', 'algorithm', 'label', 'metric'\)"):
        threshold_table(None, thresholds=sim)
    with pytest.raises(InputError, match=r"Unknown `label` 'x'; expected one of \['wt', 'tc', 'et'\]"):
        threshold_table(None, label="x", thresholds=limits)
    with pytest.raises(InputError, match=r"`similarity` is needed unless `thresholds` is given; got None for both"):
        threshold_table(None)

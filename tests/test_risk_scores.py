"""qe_nb.core.risk: every risk score by hand on tiny cubes; evaluate_risk against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from qe_nb.core.alarms import alarms, risk
from qe_nb.core.risk import RISK_SCORES, SOFT_CAP, evaluate_risk, risk_scores
from qe_nb.core.statistics import auroc_rows, percentile_interval, spearman_rows
from qe_nb.exceptions import InputError

DIMS = ("case", "algorithm", "label", "metric")


def one_member(values, metric="dice") -> xr.DataArray:
    return xr.DataArray(
        np.asarray(values, float).reshape(-1, 1, 1, 1),
        dims=DIMS,
        coords={"case": [f"c{i}" for i in range(len(values))], "algorithm": ["x"], "label": ["t"], "metric": [metric]},
    )


def cohort(seed=0, n_cases=12, members=("a", "b", "c")) -> xr.Dataset:
    """A scores Dataset with every optional variable, values drawn at random."""
    rng = np.random.default_rng(seed)
    labels = ["wt", "et"]
    n_alg, n_lab = len(members), len(labels)
    dice = rng.uniform(0.3, 1.0, (n_cases, n_alg, n_lab))
    hd = rng.gamma(2.0, 2.0, (n_cases, n_alg, n_lab))
    hd[0, 1, 0] = np.inf
    sim = xr.DataArray(
        np.stack([dice, hd], -1), dims=DIMS,
        coords={"case": [f"c{i:02d}" for i in range(n_cases)], "algorithm": list(members), "label": labels,
                "metric": ["dice", "hd95"]},
    )
    pair = rng.uniform(0.2, 1.0, (n_cases, n_alg, n_alg, n_lab))
    pair = (pair + pair.transpose(0, 2, 1, 3)) / 2
    pair[:, np.arange(n_alg), np.arange(n_alg)] = 1.0
    pairwise = xr.DataArray(
        pair[..., None], dims=("case", "algorithm", "algorithm_b", "label", "metric"),
        coords={"case": sim.case.values, "algorithm": list(members), "algorithm_b": list(members),
                "label": labels, "metric": ["dice"]},
    )
    volume = rng.integers(0, 50, (n_cases, n_alg, n_lab)).astype(float)
    volume[1] = 0.0  # every member empty in case 1: they agree
    perf = rng.uniform(0.5, 1.0, (n_cases, n_alg, n_lab, 2))
    staple = xr.DataArray(
        perf, dims=("case", "algorithm", "label", "performance"),
        coords={"case": sim.case.values, "algorithm": list(members), "label": labels,
                "performance": ["sensitivity", "specificity"]},
    )
    return xr.Dataset({
        "similarity": sim,
        "pairwise": pairwise,
        "volume": (("case", "algorithm", "label"), volume),
        "staple_performance": staple,
    })


# -- the scores by hand ---------------------------------------------------------------------


def test_soft_count_by_hand():
    # median 0.7, MAD 0.1
    sim = one_member([0.9, 0.8, 0.7, 0.6, 0.1])
    ds = risk_scores(sim, alpha=0.0)
    np.testing.assert_allclose(ds.soft_count.values, [0, 0, 0, 1.0, SOFT_CAP], atol=1e-12)
    ds = risk_scores(sim, alpha=0.5)  # threshold 0.65: 0.6 is half a MAD beyond it
    np.testing.assert_allclose(ds.soft_count.values, [0, 0, 0, 0.5, SOFT_CAP], atol=1e-12)
    # distances are sign-adjusted: hd median 3, MAD 1, threshold 3 + alpha
    ds = risk_scores(one_member([2.0, 3.0, 4.0, 3.0, 4.5], "hd"), alpha=0.0)
    np.testing.assert_allclose(ds.soft_count.values, [0, 0, 1.0, 0, 1.5], atol=1e-12)


def test_soft_count_mad_zero_and_non_finite_cells_count_the_cap():
    with pytest.warns(UserWarning, match="MAD of 0"):
        ds = risk_scores(one_member([1.0, 1.0, 1.0, 0.5, np.nan]), alpha=0.0)
    np.testing.assert_array_equal(ds.soft_count.values, [0, 0, 0, SOFT_CAP, SOFT_CAP])
    np.testing.assert_array_equal(ds.alarm_count.values, [0, 0, 0, 1, 1])


@pytest.mark.parametrize("pool", ["algorithm", "all"])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0])
def test_alarm_count_is_the_papers_risk(pool, alpha):
    scores = cohort()
    case = risk_scores(scores, alpha=alpha, pool=pool)
    expected = risk(alarms(scores.similarity, alpha, pool=pool))
    np.testing.assert_array_equal(case.alarm_count.values, expected.values)
    cand = risk_scores(scores, alpha=alpha, pool=pool, level="candidate")
    flags = alarms(scores.similarity, alpha, pool=pool).sum(("label", "metric"))
    np.testing.assert_array_equal(cand.alarm_count.transpose("case", "algorithm").values, flags.values)
    # the soft count is positive exactly where an alarm is, and at most the cap per alarm
    assert ((cand.soft_count > 0) == (cand.alarm_count > 0)).all()
    assert (cand.soft_count <= SOFT_CAP * cand.alarm_count + 1e-12).all()
    assert case.attrs["pool"] == pool and case.attrs["level"] == "case"


def test_mean_similarity_pairwise_volume_staple_by_numpy():
    scores = cohort()
    dice = scores.similarity.sel(metric="dice").values
    case = risk_scores(scores)
    cand = risk_scores(scores, level="candidate")
    assert list(case.data_vars) == list(RISK_SCORES) and case.attrs["skipped"] == []
    np.testing.assert_allclose(case.mean_similarity.values, -dice.mean(axis=(1, 2)))
    np.testing.assert_allclose(cand.mean_similarity.values, -dice.mean(axis=2))

    pair = scores.pairwise.sel(metric="dice").values
    n = pair.shape[1]
    off = ~np.eye(n, dtype=bool)
    by_case = [1 - pair[c][off].mean() for c in range(pair.shape[0])]
    np.testing.assert_allclose(case.pairwise_disagreement.values, by_case)
    by_cand = [[1 - pair[c, a][np.arange(n) != a].mean() for a in range(n)] for c in range(pair.shape[0])]
    np.testing.assert_allclose(cand.pairwise_disagreement.values, by_cand)

    v = scores.volume.values
    cv = np.array([[np.std(v[c, :, lab]) / np.mean(v[c, :, lab]) if v[c, :, lab].mean() else 0.0
                    for lab in range(v.shape[2])] for c in range(v.shape[0])])
    np.testing.assert_allclose(case.volume_cv.values, cv.mean(axis=1))
    assert case.volume_cv.values[1] == 0.0  # every member empty
    dev = cand.volume_cv.values
    # the candidate deviations' root mean square over members is the CV (one label here)
    single = risk_scores(scores.isel(label=[0]), level="candidate").volume_cv.values
    np.testing.assert_allclose(np.sqrt((single**2).mean(axis=1)), cv[:, 0])
    assert dev.shape == (v.shape[0], v.shape[1])

    perf = scores.staple_performance.values
    np.testing.assert_allclose(case.staple_disagreement.values, 1 - perf.mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(cand.staple_disagreement.values, 1 - perf.mean(axis=(2, 3)))


def test_absent_variables_are_skipped_with_a_note():
    scores = cohort()[["similarity"]]
    ds = risk_scores(scores)
    assert list(ds.data_vars) == ["alarm_count", "soft_count", "mean_similarity"]
    assert ds.attrs["skipped"] == ["pairwise_disagreement", "volume_cv", "staple_disagreement"]
    assert "score(..., pairwise=True)" in ds.attrs["skipped_reasons"][0]
    ds = risk_scores(scores.similarity.sel(metric=["hd95"]))
    assert "mean_similarity" in ds.attrs["skipped"]


def test_risk_scores_errors():
    scores = cohort()
    with pytest.raises(InputError, match=r"`level` must be one of \['case', 'candidate'\]; got 'reader'"):
        risk_scores(scores, level="reader")
    with pytest.raises(InputError, match=r"`pool` must be one of"):
        risk_scores(scores, pool="members")
    bad = scores.assign(volume=scores.volume.sum("label"))
    with pytest.raises(InputError, match=r"`scores\['volume'\]` must have dims \(case, algorithm, label\)"):
        risk_scores(bad)
    bad = scores.assign(pairwise=scores.pairwise.sel(metric="dice", drop=True))
    with pytest.raises(InputError, match=r"`scores\['pairwise'\]` needs a 'dice' entry"):
        risk_scores(bad)


# -- the statistics, against scipy ---------------------------------------------------------


def test_auroc_and_spearman_rows_match_scipy_with_nan():
    rng = np.random.default_rng(4)
    for _ in range(20):
        s = rng.integers(0, 5, 30).astype(float)
        q = rng.random(30)
        s[rng.random(30) < 0.2] = np.nan
        pos = q < 0.3
        keep = ~np.isnan(s)
        u = scipy.stats.mannwhitneyu(s[keep & pos], s[keep & ~pos]).statistic
        assert auroc_rows(s, pos) == pytest.approx(u / ((keep & pos).sum() * (keep & ~pos).sum()))
        assert spearman_rows(s, q) == pytest.approx(scipy.stats.spearmanr(s[keep], q[keep]).statistic)


def truth_for(n=40, seed=1):
    rng = np.random.default_rng(seed)
    cases = [f"c{i:02d}" for i in range(n)]
    dice = xr.DataArray(rng.uniform(0.2, 1.0, n), dims="case", coords={"case": cases})
    return cases, dice


def test_perfect_ranking_gives_auroc_one_and_rho_minus_one():
    cases, dice = truth_for()
    rs = xr.Dataset({"perfect": -dice, "ties": xr.zeros_like(dice), "inverse": dice}, attrs={"level": "case"})
    table = evaluate_risk(rs, dice, n_boot=200)
    assert table.loc[("perfect", "auroc"), "value"] == 1.0
    assert table.loc[("perfect", "spearman_rho"), "value"] == -1.0
    assert table.loc[("ties", "auroc"), "value"] == 0.5
    assert np.isnan(table.loc[("ties", "spearman_rho"), "value"])
    assert table.loc[("inverse", "auroc"), "value"] == 0.0
    assert table.loc[("perfect", "auroc"), ["ci_low", "ci_high"]].tolist() == [1.0, 1.0]
    assert table.attrs["n_worst"] == 10 and table.attrs["n_cases"] == 40  # the worst quarter of 40


def test_bootstrap_interval_contains_estimate_and_is_deterministic():
    cases, dice = truth_for(60, seed=2)
    rng = np.random.default_rng(0)
    noisy = xr.DataArray(-dice.values + rng.normal(0, 0.2, 60), dims="case", coords={"case": cases})
    rs = xr.Dataset({"noisy": noisy})
    a = evaluate_risk(rs, dice, n_boot=500, seed=7)
    b = evaluate_risk(rs, dice, n_boot=500, seed=7)
    c = evaluate_risk(rs, dice, n_boot=500, seed=8)
    assert a.equals(b) and not a.equals(c)
    for stat in ("auroc", "spearman_rho"):
        row = a.loc[("noisy", stat)]
        assert row.ci_low <= row.value <= row.ci_high and row.ci_low < row.ci_high
    # the point estimates are scipy's
    worst = dice.values <= np.quantile(dice.values, 0.25, method="inverted_cdf")
    u = scipy.stats.mannwhitneyu(noisy.values[worst], noisy.values[~worst]).statistic
    assert a.loc[("noisy", "auroc"), "value"] == pytest.approx(u / (worst.sum() * (~worst).sum()))
    assert a.loc[("noisy", "spearman_rho"), "value"] == pytest.approx(scipy.stats.spearmanr(noisy, dice).statistic)
    # the interval is the percentile bootstrap over resampled cases, recomputed by hand
    draws = np.random.default_rng(7).integers(0, 60, size=(500, 60))
    rhos = [scipy.stats.spearmanr(noisy.values[d], dice.values[d]).statistic for d in draws]
    lo, hi = percentile_interval(np.array(rhos))
    assert a.loc[("noisy", "spearman_rho"), "ci_low"] == pytest.approx(lo)
    assert a.loc[("noisy", "spearman_rho"), "ci_high"] == pytest.approx(hi)


def test_candidate_level_from_a_scores_dataset():
    scores = cohort(n_cases=20)
    rng = np.random.default_rng(3)
    cq = scores.similarity.sel(metric=["dice"]).copy(data=rng.uniform(0, 1, (20, 3, 2, 1)))
    scores = scores.assign(candidate_quality=cq, quality=cq.isel(algorithm=0, drop=True))
    rs = risk_scores(scores, level="candidate")
    table = evaluate_risk(rs, scores, n_boot=50)
    assert table.attrs["level"] == "candidate" and table.attrs["n_units"] == 60
    truth = cq.sel(metric="dice").mean("label").transpose("case", "algorithm").values.ravel()
    s = rs.mean_similarity.transpose("case", "algorithm").values.ravel()
    assert table.loc[("mean_similarity", "spearman_rho"), "value"] == pytest.approx(
        scipy.stats.spearmanr(s, truth).statistic
    )
    assert set(table.index.get_level_values("score")) == set(RISK_SCORES)
    case_table = evaluate_risk(risk_scores(scores), scores, n_boot=0)
    assert case_table.attrs["level"] == "case" and np.isnan(case_table["ci_low"]).all()


def test_evaluate_risk_errors():
    cases, dice = truth_for()
    rs = xr.Dataset({"s": -dice})
    with pytest.raises(InputError, match=r"`worst_fraction` must be a number in \(0, 1\); got 1.5"):
        evaluate_risk(rs, dice, worst_fraction=1.5)
    with pytest.raises(InputError, match=r"`n_boot` must be a non-negative int; got -1"):
        evaluate_risk(rs, dice, n_boot=-1)
    with pytest.raises(InputError, match=r"`truth` lacks 1 case\(s\) of the risk scores, e.g. 'c39'"):
        evaluate_risk(rs, dice.isel(case=slice(0, 39)))
    with pytest.raises(InputError, match=r"`truth` must be a DataArray over \('case', 'algorithm'\)"):
        evaluate_risk(rs.expand_dims(algorithm=["a"]), dice, level="candidate")
    with pytest.raises(InputError, match=r"`risk_scores` variables \['s'\] are not over \('case', 'algorithm'\)"):
        evaluate_risk(rs, dice, level="candidate")
    with pytest.raises(InputError, match=r"`truth` as a scores Dataset needs a `quality` variable"):
        evaluate_risk(rs, xr.Dataset())

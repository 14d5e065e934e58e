"""Learning from verdicts: verdict_performance and calibrate(objective="verdicts").

The figures are checked against independent computations: scipy's Mann-Whitney U for the
AUROC, a per-case loop for the precision at the reviewed share, a grid scan for the α that
calibrate picks, and a synthetic cohort whose "reviewer" rejects the cases with true Dice < 0.5.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

import qe_nb
from qe_nb.core.alarms import alarms, risk
from qe_nb.core.calibration import alarm_entropy, calibrate
from qe_nb.core.statistics import case_quality, label_mean
from qe_nb.core.verdict_performance import (
    VerdictPerformance,
    check_calibration_objective,
    verdict_performance,
)
from qe_nb.core.verdicts import POSITIVE_VERDICTS, VERDICTS, check_positive, verdict_frame
from qe_nb.exceptions import InputError, QeNbWarning, UndefinedValueWarning
from tests.test_calibration import cohort

# ------------------------------------------------------------------ independent references


def mw_auroc(scores, positive) -> float:
    """U / (n1 n0) from scipy.stats.mannwhitneyu; NaN without both classes."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return math.nan
    u = scipy.stats.mannwhitneyu(scores[positive], scores[~positive], alternative="two-sided").statistic
    return float(u) / (positive.sum() * (~positive).sum())


def loop_precision(risk_values, reviewed, positive) -> float:
    """Precision among the top k = #reviewed by risk, one case at a time; the cases tied with the
    k-th place share the places left."""
    risk_values = np.asarray(risk_values, float)
    k = int(np.sum(reviewed))
    if k == 0:
        return math.nan
    cut = sorted(risk_values, reverse=True)[k - 1]
    above = sum(1 for v in risk_values if v > cut)
    tied = sum(1 for v in risk_values if v == cut)
    hits = seen = 0.0
    for v, rev, pos in zip(risk_values, reviewed, positive, strict=True):
        weight = 1.0 if v > cut else (k - above) / tied if v == cut else 0.0
        seen += weight * rev
        hits += weight * (rev and pos)
    return hits / seen if seen > 0 else math.nan


def random_case(rng, n=40, reviewed_share=0.6, levels=6):
    cases = [f"c{i:03d}" for i in range(n)]
    values = rng.integers(0, levels, n).astype(float)  # alarm counts: many ties
    reviewed = rng.random(n) < reviewed_share
    labels = rng.choice(VERDICTS, n, p=[0.5, 0.2, 0.3])
    frame = pd.DataFrame({"case": np.array(cases)[reviewed], "verdict": labels[reviewed]})
    r = xr.DataArray(values, dims="case", coords={"case": cases}, name="risk")
    return r, frame, reviewed, np.isin(labels, POSITIVE_VERDICTS) & reviewed


class FakeStore:
    """The part of qe_nb.ReviewStore that verdict_performance uses."""

    def __init__(self, frame):
        self.frame = frame

    def current(self):
        return self.frame.assign(note="", reviewer="ann")


# ------------------------------------------------------------------ verdict_performance


@pytest.mark.parametrize("seed", range(6))
def test_auroc_is_mann_whitney_u_over_the_reviewed_cases(seed):
    r, frame, reviewed, positive = random_case(np.random.default_rng(seed))
    result = verdict_performance(r, frame, n_boot=0)
    assert result.auroc == pytest.approx(mw_auroc(r.values[reviewed], positive[reviewed]), abs=1e-12)
    assert result.n_reviewed == reviewed.sum() and result.n_positive == positive.sum() and result.n_cases == 40
    assert result.prevalence == pytest.approx(positive.sum() / reviewed.sum())
    assert result.precision == pytest.approx(loop_precision(r.values, reviewed, positive), abs=1e-12)
    assert result.selection_auroc == pytest.approx(mw_auroc(r.values, reviewed), abs=1e-12)
    assert math.isnan(result.auroc_ci[0]) and math.isnan(result.precision_ci[1])  # n_boot=0


def test_positive_verdicts_can_be_chosen():
    r, frame, reviewed, _ = random_case(np.random.default_rng(7))
    only_reject = reviewed & np.isin(
        frame.set_index("case")["verdict"].reindex(r.case.values).fillna("").values, ["reject"]
    )
    result = verdict_performance(r, frame, positive="reject", n_boot=0)
    assert result.positive == ("reject",)
    assert result.auroc == pytest.approx(mw_auroc(r.values[reviewed], only_reject[reviewed]))
    assert "rejected over" not in str(result) and str(result).endswith("rejected")


def test_precision_by_hand():
    cases = list("abcdef")
    r = pd.Series([9, 8, 7, 6, 5, 4], index=cases)
    # reviewed b, c, f; positives b, f. k = 3: top 3 = a, b, c; reviewed among them b, c; positive b.
    frame = pd.DataFrame({"case": ["b", "c", "f"], "verdict": ["reject", "accept", "needs correction"]})
    assert verdict_performance(r, frame, n_boot=0).precision == pytest.approx(1 / 2)
    # ties at the cut: risks 9, 5, 5, 5, 1, 0 and k = 2: a counts whole, b, c, d one third each.
    r = pd.Series([9, 5, 5, 5, 1, 0], index=cases)
    frame = pd.DataFrame({"case": ["b", "c"], "verdict": ["reject", "accept"]})
    result = verdict_performance(r, frame, n_boot=0)
    assert result.precision == pytest.approx((1 / 3) / (2 / 3))
    # no reviewed case in the top k -> NaN
    frame = pd.DataFrame({"case": ["e", "f"], "verdict": ["reject", "accept"]})
    assert math.isnan(verdict_performance(r, frame, n_boot=0).precision)
    # every case reviewed: precision = prevalence
    frame = pd.DataFrame({"case": cases, "verdict": ["reject", "accept", "accept", "reject", "accept", "accept"]})
    result = verdict_performance(r, frame, n_boot=0)
    assert result.precision == pytest.approx(2 / 6) == result.prevalence


def test_bootstrap_intervals_reproduce_the_same_draws_by_hand():
    """The stratified resamples rebuilt from the same draws, case by case: checks the bookkeeping."""
    rng = np.random.default_rng(5)
    r, frame, reviewed, positive = random_case(rng, n=30, reviewed_share=0.25, levels=20)  # runs of levels
    result = verdict_performance(r, frame, n_boot=300, seed=11)
    draws = np.random.default_rng(11)
    rev_risk, rev_pos = r.values[reviewed], positive[reviewed]
    # the unreviewed cases are drawn as counts per risk level, where runs of levels without a
    # reviewed case count as one level (any of their risks stands for the run: the reviewed
    # cases above a cut are the same for each)
    groups = []  # lists of risk levels, ascending
    for v in np.unique(r.values):
        if v in rev_risk or not groups or groups[-1][-1] in rev_risk:
            groups.append([v])
        else:
            groups[-1].append(v)
    stand_in = np.array([g[0] for g in groups])
    counts = np.array([np.isin(r.values[~reviewed], g).sum() for g in groups])
    idx = draws.integers(0, rev_risk.size, size=(300, rev_risk.size))
    other = draws.multinomial(int((~reviewed).sum()), counts / counts.sum(), size=300)
    aucs, precs = [], []
    assert any(len(g) > 1 for g in groups)
    for b in range(300):
        s_rev, s_pos = rev_risk[idx[b]], rev_pos[idx[b]]
        s_unrev = np.repeat(stand_in, other[b])
        aucs.append(mw_auroc(s_rev, s_pos))
        values = np.concatenate([s_rev, s_unrev])
        precs.append(loop_precision(values, np.r_[np.ones(s_rev.size, bool), np.zeros(s_unrev.size, bool)],
                                    np.r_[s_pos, np.zeros(s_unrev.size, bool)]))
    aucs, precs = np.array(aucs), np.array(precs)
    expect_auc = np.percentile(aucs[np.isfinite(aucs)], [2.5, 97.5])
    expect_prec = np.percentile(precs[np.isfinite(precs)], [2.5, 97.5])
    assert result.auroc_ci == pytest.approx(tuple(expect_auc), abs=1e-12)
    assert result.precision_ci == pytest.approx(tuple(expect_prec), abs=1e-12)
    assert result.auroc_ci[0] <= result.auroc <= result.auroc_ci[1]
    # deterministic for a seed, different for another
    assert verdict_performance(r, frame, n_boot=300, seed=11) == result
    assert verdict_performance(r, frame, n_boot=300, seed=12) != result


def test_wider_level_gives_a_wider_interval():
    r, frame, *_ = random_case(np.random.default_rng(5), n=80)
    narrow = verdict_performance(r, frame, level=0.5)
    wide = verdict_performance(r, frame, level=0.99)
    assert wide.auroc_ci[0] <= narrow.auroc_ci[0] < narrow.auroc_ci[1] <= wide.auroc_ci[1]
    assert "99% CI" in str(wide)


def test_one_class_gives_nan_and_a_note_not_a_crash():
    r = pd.Series([3, 2, 1, 0], index=list("abcd"))
    result = verdict_performance(r, pd.DataFrame({"case": ["a", "b"], "verdict": ["accept", "accept"]}))
    assert math.isnan(result.auroc) and all(math.isnan(v) for v in result.auroc_ci)
    assert "AUROC undefined" in result.note and "0 positive and 2 negative" in result.note
    assert str(result) == (
        "your verdicts so far: risk AUROC not yet defined (needs both classes) over 2 reviewed cases, "
        "0 rejected or needing correction"
    )
    empty = verdict_performance(r, pd.DataFrame({"case": [], "verdict": []}))
    assert empty.n_reviewed == 0 and math.isnan(empty.auroc) and math.isnan(empty.precision)
    assert str(empty) == "your verdicts so far: no reviewed case with a risk yet"


def test_verdicts_on_unknown_cases_are_listed_not_dropped_silently():
    r = pd.Series([3.0, 2.0, np.nan, 0.0], index=list("abcd"))
    frame = pd.DataFrame({"case": ["a", "b", "x", "y", "c"], "verdict": ["reject", "accept", "reject", "accept", "reject"]})
    result = verdict_performance(r, frame, n_boot=50)
    assert result.not_in_risk == ("x", "y") and result.unscored == ("c",)
    assert result.n_reviewed == 2 and result.n_cases == 3 and result.auroc == 1.0
    assert "'x', 'y'" in result.note and "NaN risk" in result.note
    assert str(result).endswith("(2 verdict(s) on cases without a risk left out)")


def test_summary_is_the_apps_line():
    r = pd.Series(np.arange(10.0), index=[f"c{i}" for i in range(10)])
    frame = pd.DataFrame({"case": r.index, "verdict": ["accept"] * 6 + ["reject", "accept", "needs correction", "reject"]})
    result = verdict_performance(r, frame)
    low, high = result.auroc_ci
    assert str(result) == result.summary() == (
        f"your verdicts so far: risk AUROC {result.auroc:.2f} (95% CI {low:.2f}–{high:.2f}) over 10 reviewed "
        "cases, 3 rejected or needing correction"
    )
    assert isinstance(result, VerdictPerformance)
    with pytest.raises(AttributeError):
        result.auroc = 0.5  # frozen


def test_series_dataarray_and_store_give_the_same_result():
    r, frame, *_ = random_case(np.random.default_rng(9))
    a = verdict_performance(r, frame, n_boot=100)
    b = verdict_performance(r.to_series(), FakeStore(frame), n_boot=100)
    assert a == b


def test_real_review_store_when_present(tmp_path):
    review = pytest.importorskip("qe_nb.store.review")
    with review.ReviewStore(tmp_path / "v.db") as store:
        store.record("c1", "accept", reviewer="ann")
        store.record("c2", "reject", reviewer="bob")
        store.record("c1", "needs correction", reviewer="bob")  # the latest verdict counts
        result = verdict_performance(pd.Series([2.0, 1.0, 0.0], index=["c1", "c2", "c3"]), store, n_boot=0)
    assert result.n_reviewed == 2 and result.n_positive == 2


def test_errors():
    r = pd.Series([1.0, 0.0], index=["a", "b"])
    ok = pd.DataFrame({"case": ["a"], "verdict": ["reject"]})
    with pytest.raises(InputError, match=r"row 2 \(case 'b'\): unknown verdict 'fine'"):
        verdict_performance(r, pd.DataFrame({"case": ["a", "b"], "verdict": ["reject", "fine"]}))
    with pytest.raises(InputError, match=r"lists case\(s\) \['a'\] more than once.*store.current\(\)"):
        verdict_performance(r, pd.DataFrame({"case": ["a", "a"], "verdict": ["reject", "accept"]}))
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['verdict'\]"):
        verdict_performance(r, pd.DataFrame({"case": ["a"]}))
    with pytest.raises(InputError, match="review store"):
        verdict_performance(r, [("a", "reject")])
    with pytest.raises(InputError, match=r"over `case` alone.*Select one alpha"):
        verdict_performance(xr.DataArray(np.zeros((2, 2)), dims=("alpha", "case")), ok)
    with pytest.raises(InputError, match="more than once"):
        verdict_performance(pd.Series([1.0, 2.0], index=["a", "a"]), ok)
    with pytest.raises(InputError, match="numeric"):
        verdict_performance(pd.Series(["x", "y"], index=["a", "b"]), ok)
    with pytest.raises(InputError, match=r"unknown verdict\(s\) \['rejected'\]"):
        verdict_performance(r, ok, positive="rejected")
    with pytest.raises(InputError, match="not every verdict"):
        verdict_performance(r, ok, positive=VERDICTS)
    for bad in ({"n_boot": -1}, {"n_boot": 1.5}, {"level": 1.0}, {"level": 0}, {"seed": "x"}):
        with pytest.raises(InputError):
            verdict_performance(r, ok, **bad)


def test_verdict_frame_and_check_positive():
    store = FakeStore(pd.DataFrame({"case": [1, 2], "verdict": ["accept", "reject"]}))
    assert verdict_frame(store).values.tolist() == [["1", "accept"], ["2", "reject"]]  # ids as str
    with pytest.raises(InputError, match="FakeStore.current"):
        verdict_frame(FakeStore(pd.DataFrame({"case": [None], "verdict": ["accept"]})))
    assert check_positive(["needs correction", "reject", "reject"]) == ("needs correction", "reject")
    with pytest.raises(InputError):
        check_positive([])


# ------------------------------------------------------------------ calibrate(objective="verdicts")


def verdicts_for(quality, rng, share=0.7):
    """A reviewer who rejects quality < 0.6, asks for a correction below 0.7, accepts the rest,
    on a random ``share`` of the cases."""
    q = quality.values
    label = np.where(q < 0.6, "reject", np.where(q < 0.7, "needs correction", "accept"))
    seen = rng.random(q.size) < share
    return pd.DataFrame({"case": quality.case.values[seen], "verdict": label[seen]})


def auroc_at(sim, alpha, frame):
    counts = risk(alarms(sim, alpha)).to_series()
    by_case = frame.set_index("case")["verdict"]
    return mw_auroc(counts[by_case.index].values, by_case.isin(POSITIVE_VERDICTS).values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibrate_verdicts_beats_every_alpha_of_a_grid(seed):
    rng = np.random.default_rng(seed)
    sim, quality = cohort(rng, n_cases=50)
    frame = verdicts_for(quality, rng)
    alpha = calibrate(sim, objective="verdicts", verdicts=frame)
    best = auroc_at(sim, alpha, frame)
    grid = np.round(np.arange(-300, 301, 2) / 100.0, 2)
    scanned = np.array([auroc_at(sim, a, frame) for a in grid])
    assert best >= scanned.max() - 1e-12
    # ties: no grid alpha with the same AUROC has a larger entropy of the alarm counts
    entropy = alarm_entropy(risk(alarms(sim, alpha)))
    tied = grid[np.abs(scanned - best) <= 1e-12]
    assert all(alarm_entropy(risk(alarms(sim, a))) <= entropy + 1e-9 for a in tied)
    # a store-like object gives the same alpha
    assert calibrate(sim, objective="verdicts", verdicts=FakeStore(frame)) == alpha


def test_calibrate_verdicts_by_algorithm_improves_on_the_global_alpha():
    rng = np.random.default_rng(4)
    sim, quality = cohort(rng, n_cases=50)
    frame = verdicts_for(quality, rng)
    alpha0 = calibrate(sim, objective="verdicts", verdicts=frame)
    per_alg = calibrate(sim, objective="verdicts", verdicts=frame, by="algorithm")
    assert per_alg.dims == ("algorithm",) and per_alg.attrs["objective"] == "verdicts"
    value = auroc_at(sim, per_alg, frame)
    assert per_alg.attrs["objective_value"] == pytest.approx(value, abs=1e-12)
    assert value >= auroc_at(sim, alpha0, frame) - 1e-12


def test_calibrate_verdicts_on_an_explicit_grid():
    rng = np.random.default_rng(8)
    sim, quality = cohort(rng, n_cases=40)
    frame = verdicts_for(quality, rng, share=1.0)
    grid = [-1.0, 0.0, 0.5, 1.0, 2.0]
    alpha = calibrate(sim, objective="verdicts", verdicts=frame, alphas=grid)
    assert alpha in grid
    assert auroc_at(sim, alpha, frame) == pytest.approx(max(auroc_at(sim, a, frame) for a in grid))


def test_calibrate_verdicts_errors_and_warnings():
    rng = np.random.default_rng(6)
    sim, quality = cohort(rng, n_cases=20)
    frame = verdicts_for(quality, rng, share=1.0)
    with pytest.raises(InputError, match="needs it and no `quality`"):
        calibrate(sim, objective="verdicts")
    with pytest.raises(InputError, match="needs it and no `quality`"):
        calibrate(sim, objective="verdicts", verdicts=frame, quality=quality)
    with pytest.raises(InputError, match="objective='verdicts' alone"):
        calibrate(sim, objective="entropy", verdicts=frame)
    with pytest.raises(InputError, match=r"'combined'\] or 'verdicts'"):
        calibrate(sim, objective="auroc")
    assert check_calibration_objective("pearson") == "pearson"
    outside = pd.concat([frame, pd.DataFrame({"case": ["ghost"], "verdict": ["reject"]})])
    with pytest.warns(QeNbWarning, match=r"1 verdict\(s\) are on cases not in the similarity cube.*'ghost'"):
        with_ghost = calibrate(sim, objective="verdicts", verdicts=outside)
    assert with_ghost == calibrate(sim, objective="verdicts", verdicts=frame)
    accepted = frame.assign(verdict="accept")
    with pytest.warns(UndefinedValueWarning, match=r"0 positive and 20 negative.*returning alpha = 0.0"):
        assert calibrate(sim, objective="verdicts", verdicts=accepted) == 0.0


# ------------------------------------------------------------------ the "Must show"


@pytest.fixture(scope="module")
def scored_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdict-cohort")
    ensemble = qe_nb.synthetic_cohort(root / "cohort", kind="glioma", n_cases=60, n_algorithms=5,
                                      shape=(24, 32, 32), images=False, seed=0)
    return qe_nb.score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False)


@pytest.mark.slow
def test_synthetic_reviewer_who_rejects_true_dice_below_half(scored_cohort):
    """The reviewer rejects a case when the fusion's true Dice with the reference, averaged over the
    BraTS regions (case_quality(scores["quality"], "dice", skipna=True), the demo's quality), is
    below 0.5, and accepts it otherwise."""
    sim = label_mean(scores_similarity := scored_cohort["similarity"])
    assert scores_similarity.sizes["case"] == 60
    dice = case_quality(scored_cohort["quality"], "dice", skipna=True)
    truth = pd.DataFrame({"case": dice.case.values, "verdict": np.where(dice.values < 0.5, "reject", "accept")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.UnreliableThresholdWarning)
        alpha = calibrate(sim)  # entropy, no ground truth: the worklist's risk
        counts = risk(alarms(sim, alpha))
    failed = dice.values < 0.5

    everyone = verdict_performance(counts, truth)
    assert everyone.auroc == pytest.approx(mw_auroc(counts.values, failed), abs=1e-12)
    assert everyone.n_reviewed == 60 and everyone.n_positive == failed.sum()
    assert everyone.auroc_ci[0] > 0.5  # the risk ranks the real failures, beyond chance
    assert everyone.precision == pytest.approx(everyone.prevalence)

    # reviewers who only look at the top 40 % of the worklist (ties broken by case order)
    order = np.argsort(-counts.values, kind="stable")
    top = counts.case.values[order[:24]]
    top40 = verdict_performance(counts, truth[truth["case"].isin(top)])
    on_top = np.isin(counts.case.values, top)
    assert top40.auroc == pytest.approx(mw_auroc(counts.values[on_top], failed[on_top]), abs=1e-12)
    assert top40.n_reviewed == 24 and top40.selection_auroc > 0.95
    assert top40.precision == pytest.approx(loop_precision(counts.values, on_top, failed & on_top))
    assert "risk-truncated" in top40.note and "random" in top40.note
    assert top40.precision > everyone.prevalence  # the worklist's top is richer in failures than the cohort

    # learning alpha from the verdicts: at least as good as every alpha of a grid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.UnreliableThresholdWarning)
        learned = calibrate(sim, objective="verdicts", verdicts=truth)
        grid = np.round(np.arange(-300, 301) / 100.0, 2)
        scanned = [auroc_at(sim, a, truth) for a in grid]
        learned_perf = verdict_performance(risk(alarms(sim, learned)), truth)
    assert learned_perf.auroc >= max(scanned) - 1e-12 and learned_perf.auroc >= everyone.auroc

    print()
    print(f"synthetic glioma cohort, 60 cases x 5 algorithms; {failed.sum()} with true Dice < 0.5 (rejected)")
    for name, res in (("reviewed all", everyone), ("reviewed top 40% by risk", top40)):
        print(f"{name} (entropy alpha {alpha:.3f}): {res}")
        print(f"    precision at the reviewed share {res.precision:.2f} "
              f"(95% CI {res.precision_ci[0]:.2f}-{res.precision_ci[1]:.2f}); prevalence among reviewed "
              f"{res.prevalence:.2f}; selection AUROC {res.selection_auroc:.2f}")
    print(f"calibrate(objective='verdicts') alpha {learned:.3f}: {learned_perf}; best AUROC on the 0.01 grid "
          f"{max(scanned):.4f}")

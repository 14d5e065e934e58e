"""Learning from verdicts: how well the risk ranks the cases reviewers rejected.

The verdicts of a reading room are labels: a case rejected or sent back for correction is
a failed segmentation the risk should have put at the top of the worklist.

- :func:`verdict_performance` -- AUROC and precision at the reviewed share of a risk
  against the verdicts, with bootstrap intervals and a note on the selection bias;
- :class:`VerdictPerformance` -- its result; ``str()`` is the app's one-line summary;
- :class:`VerdictAUROC` -- the ``"verdicts"`` objective of :func:`qe_nb.calibrate`;
- :func:`check_calibration_objective` -- the objectives :func:`qe_nb.calibrate` accepts.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.core.checks import OBJECTIVES
from qe_nb.core.statistics import auroc_rows, percentile_interval
from qe_nb.core.verdicts import POSITIVE_VERDICTS, check_positive, verdict_frame
from qe_nb.exceptions import InputError, QeNbWarning

__all__ = [
    "VERDICT_OBJECTIVE",
    "VerdictPerformance",
    "verdict_performance",
    "VerdictAUROC",
    "verdict_objective",
    "check_calibration_objective",
]

VERDICT_OBJECTIVE = "verdicts"
"""The objective of :func:`qe_nb.calibrate` that learns alpha from reviewers' verdicts."""

_BLOCK = 2_000_000  # values per bootstrap block
_PARTICIPLE = {"reject": "rejected", "needs correction": "needing correction", "accept": "accepted"}


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _phrase(positive: Sequence[str]) -> str:
    """``("reject", "needs correction")`` -> ``"rejected or needing correction"``."""
    return " or ".join(_PARTICIPLE.get(v, v) for v in positive)


def _fmt(value: float) -> str:
    return "NaN" if not math.isfinite(value) else f"{value:.2f}"


@dataclass(frozen=True)
class VerdictPerformance:
    """How well a risk ranks the verdicts so far (the result of :func:`verdict_performance`).

    Attributes
    ----------
    auroc : float
        AUROC of the risk for a positive verdict over the reviewed cases (NaN unless both
        classes were reviewed).
    auroc_ci : (float, float)
        Its percentile bootstrap interval at ``level``.
    precision : float
        Precision at the reviewed share (see :func:`verdict_performance`, Notes).
    precision_ci : (float, float)
        Its percentile bootstrap interval.
    prevalence : float
        Positives / reviewed: the precision of a random ranking.
    selection_auroc : float
        AUROC of the risk for "was reviewed" over all cases: 0.5 when the reviewed cases were
        chosen independently of the risk, 1 when they are exactly the top of the worklist.
    n_reviewed, n_positive, n_cases : int
        Reviewed cases with a risk, positives among them, cases with a risk.
    positive : tuple of str
        The verdicts counted as positive.
    not_in_risk : tuple of str
        Cases with a verdict but not in the risk (left out of every figure).
    unscored : tuple of str
        Cases of the risk whose value is NaN (left out of every figure).
    level, n_boot, seed
        The bootstrap's settings.
    note : str
        What the figures mean and why they are biased (only reviewed cases count).
    """

    auroc: float
    auroc_ci: tuple[float, float]
    precision: float
    precision_ci: tuple[float, float]
    prevalence: float
    selection_auroc: float
    n_reviewed: int
    n_positive: int
    n_cases: int
    positive: tuple[str, ...]
    not_in_risk: tuple[str, ...]
    unscored: tuple[str, ...]
    level: float
    n_boot: int
    seed: int
    note: str

    def summary(self) -> str:
        """The app's line, e.g. ``"your verdicts so far: risk AUROC 0.84 (95% CI 0.71–0.93) over
        40 reviewed cases, 12 rejected or needing correction"``."""
        if self.n_reviewed == 0:
            text = "your verdicts so far: no reviewed case with a risk yet"
        else:
            cases = "case" if self.n_reviewed == 1 else "cases"
            tail = f"over {self.n_reviewed} reviewed {cases}, {self.n_positive} {_phrase(self.positive)}"
            if math.isfinite(self.auroc):
                low, high = self.auroc_ci
                ci = f" ({self.level:.0%} CI {low:.2f}–{high:.2f})" if math.isfinite(low) else ""
                text = f"your verdicts so far: risk AUROC {self.auroc:.2f}{ci} {tail}"
            else:
                text = f"your verdicts so far: risk AUROC not yet defined (needs both classes) {tail}"
        if self.not_in_risk:
            text += f" ({len(self.not_in_risk)} verdict(s) on cases without a risk left out)"
        return text

    def __str__(self) -> str:
        return self.summary()


def _risk_series(risk: xr.DataArray | pd.Series) -> pd.Series:
    """The risk as a float Series indexed by case id (str)."""
    if isinstance(risk, xr.DataArray):
        if risk.dims != ("case",):
            raise InputError(
                f"`risk` must be a DataArray over `case` alone (e.g. qe_nb.risk(alarms)); got dims {risk.dims}. "
                "Select one alpha first."
            )
        cases = risk["case"].values if "case" in risk.coords else np.arange(risk.size)
        values = risk.values
    elif isinstance(risk, pd.Series):
        cases, values = risk.index.values, np.asarray(risk.to_numpy())
    else:
        raise InputError(f"`risk` must be a DataArray over case or a pandas Series; got {type(risk).__name__}.")
    if not (np.issubdtype(np.asarray(values).dtype, np.number) or np.asarray(values).dtype == bool):
        raise InputError(f"`risk` must be numeric (higher = riskier); got dtype {np.asarray(values).dtype}.")
    out = pd.Series(np.asarray(values, dtype=np.float64), index=[str(c) for c in cases])
    duplicated = out.index[out.index.duplicated()].unique().tolist()
    if duplicated:
        raise InputError(f"`risk` lists case(s) {duplicated[:5]} more than once; expected one value per case.")
    if np.isinf(out.values).any():
        raise InputError(f"`risk` is infinite for case(s) {out.index[np.isinf(out.values)].tolist()[:5]}.")
    return out


def _precision_at(total: np.ndarray, reviewed: np.ndarray, positive: np.ndarray, k: int) -> np.ndarray:
    """Precision among the top ``k`` of a ranking given as counts per risk level (last axis,
    highest risk first); the level holding the k-th place counts with the fraction of its
    cases that fit in the top k."""
    total, reviewed, positive = (np.asarray(a, dtype=np.float64) for a in (total, reviewed, positive))
    if k <= 0:
        return np.full(total.shape[:-1], math.nan)
    cum = np.cumsum(total, axis=-1)
    j = np.argmax(cum >= k, axis=-1)[..., np.newaxis]
    at = np.take_along_axis(total, j, -1)
    share = (k - (np.take_along_axis(cum, j, -1) - at)) / at

    def upto(counts: np.ndarray) -> np.ndarray:
        c = np.take_along_axis(counts, j, -1)
        return (np.take_along_axis(np.cumsum(counts, axis=-1), j, -1) - c + share * c)[..., 0]

    hits, seen = upto(positive), upto(reviewed)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(seen > 0, hits / seen, math.nan)


def _bootstrap(
    level_rev: np.ndarray, pos: np.ndarray, unrev_counts: np.ndarray, n_levels: int, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and precision over ``n_boot`` stratified resamples: the reviewed cases and the
    unreviewed ones are each drawn with replacement, their numbers kept. The cases are given by
    their risk level (0 = lowest of ``n_levels``); the unreviewed ones only as counts per level."""
    rng = np.random.default_rng(seed)
    n_rev, n_unrev = level_rev.size, int(unrev_counts.sum())
    p_unrev = unrev_counts / max(n_unrev, 1)
    auc = np.empty(n_boot)
    prec = np.empty(n_boot)
    step = max(1, _BLOCK // max(n_rev, n_levels, 1))
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        idx = rng.integers(0, n_rev, size=(m, n_rev))
        lv, hit = level_rev[idx], pos[idx]
        auc[start : start + m] = auroc_rows(lv.astype(np.float64), hit)
        offsets = np.arange(m)[:, None] * n_levels
        rev = np.bincount((lv + offsets).ravel(), minlength=m * n_levels).reshape(m, n_levels)
        hits = np.bincount((lv + offsets)[hit], minlength=m * n_levels).reshape(m, n_levels)
        other = rng.multinomial(n_unrev, p_unrev, size=m) if n_unrev else np.zeros((m, n_levels), np.int64)
        # levels are numbered from the lowest risk: reverse them for the top of the ranking
        prec[start : start + m] = _precision_at(
            (rev + other)[:, ::-1], rev[:, ::-1], hits[:, ::-1], n_rev
        )
    return auc, prec


def _note(result: VerdictPerformance, n_undefined: int) -> str:
    n_rev, n, k = result.n_reviewed, result.n_cases, result.n_reviewed
    if n and n_rev == n:
        parts = [
            f"Every one of the {n} cases with a risk was reviewed: no selection bias from which cases got a "
            "verdict (the verdicts are still the reviewers' judgement, not a reference segmentation)."
        ]
    else:
        parts = [
            f"Only the {n_rev} reviewed case(s) of the {n} with a risk count: the figures say how well the risk "
            "ranks the verdicts reviewers gave, not how it does on the cases nobody reviewed. Verdicts are "
            "missing not at random. When reviewers work down the worklist from the top, the reviewed cases are the "
            "high-risk end of the cohort, a risk-truncated sample: the clearly fine low-risk cases, the easiest to "
            "rank, are missing, so the AUROC is usually lower (pessimistic) than over the whole cohort. When "
            "reviewers pick the cases that look wrong to them, the verdicts follow what the risk already shows and "
            "the AUROC can be optimistic. Reviewing a few cases drawn at random from the whole cohort measures it "
            "without this bias."
        ]
    sel = result.selection_auroc
    if math.isfinite(sel) and n_rev < n:
        parts.append(
            f"Here the risk separates reviewed from unreviewed cases with AUROC {sel:.2f} (0.5: reviewed cases "
            "chosen independently of the risk; 1.0: exactly the top of the worklist)."
        )
    if n_rev:
        parts.append(
            f"Precision at the reviewed share: of the top {k} cases by risk ({k / n:.0%} of the cohort, the share "
            f"reviewed; cases tied at the cut share the places left), the fraction of the reviewed ones with a "
            f"positive verdict, {_fmt(result.precision)}, against {_fmt(result.prevalence)} among all "
            "reviewed cases. The two are equal when every case was reviewed, and when the reviewed cases are "
            "exactly the top of the worklist (then it is the worklist's hit rate, which the cases below the cut "
            "cannot confirm)."
        )
    if not math.isfinite(result.auroc):
        parts.append(
            f"AUROC undefined: the reviewed cases hold {result.n_positive} positive and "
            f"{n_rev - result.n_positive} negative verdict(s); it needs at least one of each."
        )
    elif n_undefined:
        parts.append(
            f"{n_undefined} of {result.n_boot} bootstrap resamples held a single class and were left out of the AUROC "
            "interval."
        )
    if result.not_in_risk:
        parts.append(
            f"{len(result.not_in_risk)} verdict(s) are on cases without a risk and were left out: "
            f"{_listed(result.not_in_risk)}."
        )
    if result.unscored:
        parts.append(
            f"{len(result.unscored)} case(s) have a NaN risk and were left out: {_listed(result.unscored)}."
        )
    return " ".join(parts)


def verdict_performance(
    risk: xr.DataArray | pd.Series,
    verdicts: object,
    *,
    positive: str | Sequence[str] = POSITIVE_VERDICTS,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> VerdictPerformance:
    """How well the risk ranks the cases reviewers rejected: AUROC and precision, with CIs.

    Parameters
    ----------
    risk : xarray.DataArray or pandas.Series
        One value per case, higher = riskier: the DataArray over ``case`` of
        :func:`qe_nb.risk` / ``scores.qe.risk(...)``, or a Series indexed by case id. Case ids
        are compared as strings. Cases with a NaN risk are left out (listed in ``unscored``).
    verdicts : ReviewStore-like or pandas.DataFrame
        A :class:`qe_nb.ReviewStore` (anything with ``current()``) or a DataFrame with the
        columns ``case`` and ``verdict``, one row per case (:func:`qe_nb.core.verdicts.verdict_frame`).
    positive : str or sequence of str, default ("reject", "needs correction")
        The verdicts that mark a failed segmentation; the others are negatives.
    n_boot : int, default 2000
        Bootstrap resamples for the intervals (0: no intervals, NaN).
    seed : int, default 0
        Seed of the bootstrap: the same inputs and seed give the same intervals.
    level : float, default 0.95
        Coverage of the percentile intervals, in (0, 1).

    Returns
    -------
    VerdictPerformance
        ``str(result)`` is the one-line summary the app shows; ``result.note`` explains the
        selection bias.

    Raises
    ------
    InputError
        For a risk that is not one numeric value per case, malformed verdicts (see
        :func:`~qe_nb.core.verdicts.verdict_frame`), an unknown positive verdict or a bad
        bootstrap setting.

    Notes
    -----
    Only the reviewed cases that have a risk count; verdicts on other cases are listed in
    ``not_in_risk``, never dropped silently.

    - **AUROC**: the Mann-Whitney U of the positives' risk against the negatives', over
      ``n_positive * (n_reviewed - n_positive)``, ties counting half
      (:func:`qe_nb.core.statistics.auroc_rows`). NaN unless both classes were reviewed.
    - **Precision at the reviewed share**: rank all ``n_cases`` cases by risk and take the
      top ``k = ceil(share * n_cases)`` with ``share = n_reviewed / n_cases``, i.e. ``k =
      n_reviewed``; precision = positives among the reviewed cases in the top k / reviewed
      cases in the top k. Cases tied with the k-th place share the places left: each counts
      with weight (places left) / (cases tied), the expected value under a random order of
      the ties. When reviewers worked down the worklist, this is the hit rate of their review;
      it equals ``prevalence`` when every case was reviewed. NaN when no reviewed case is in
      the top k.
    - **Intervals**: stratified case bootstrap, ``n_boot`` resamples: the reviewed cases and,
      separately, the unreviewed cases are drawn with replacement, keeping their numbers (the
      reviewed share is a design quantity); each resample gives both figures; the interval is
      the percentile interval of the resamples where the figure is defined.

    Examples
    --------
    >>> risk = pd.Series([5, 4, 3, 1, 0], index=["a", "b", "c", "d", "e"])
    >>> verdicts = pd.DataFrame({"case": ["a", "b", "c", "d"],
    ...                          "verdict": ["reject", "accept", "needs correction", "accept"]})
    >>> result = verdict_performance(risk, verdicts, n_boot=0)
    >>> round(result.auroc, 2), result.precision
    (0.75, 0.5)
    >>> print(result)
    your verdicts so far: risk AUROC 0.75 over 4 reviewed cases, 2 rejected or needing correction
    """
    positive = check_positive(positive)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise InputError(f"`n_boot` must be an int >= 0; got {n_boot!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"`seed` must be an int; got {seed!r}.")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise InputError(f"`level` must be a number in (0, 1), e.g. 0.95; got {level!r}.")
    series = _risk_series(risk)
    frame = verdict_frame(verdicts)
    scored = series[series.notna()]
    unscored = tuple(series.index[series.isna()])
    known = set(series.index)
    not_in_risk = tuple(c for c in frame["case"] if c not in known)
    by_case = dict(zip(frame["case"], frame["verdict"], strict=True))
    verdict = np.array([by_case.get(c, "") for c in scored.index], dtype=object)
    reviewed = verdict != ""
    is_pos = np.isin(verdict, positive)
    values = scored.to_numpy(dtype=np.float64)
    n, n_rev, n_pos = values.size, int(reviewed.sum()), int(is_pos.sum())

    auroc = float(auroc_rows(values[reviewed], is_pos[reviewed])) if n_rev else math.nan
    levels, level_of = np.unique(values, return_inverse=True)
    n_levels = levels.size
    total, rev, hits = (np.bincount(level_of[m], minlength=n_levels)[::-1] for m in (np.ones(n, bool), reviewed, is_pos))
    precision = float(_precision_at(total, rev, hits, n_rev))
    auroc_ci = precision_ci = (math.nan, math.nan)
    n_undefined = 0
    if n_boot and n_rev:
        # runs of risk levels without a reviewed case merge into one: the reviewed counts above
        # any cut stay the same, and a multinomial over the merged levels is the merged multinomial
        has_rev = rev[::-1] > 0
        group = np.cumsum(np.r_[True, has_rev[1:] | has_rev[:-1]]) - 1
        n_groups = int(group[-1]) + 1
        unrev = np.bincount(group[level_of[~reviewed]], minlength=n_groups)
        auc_s, prec_s = _bootstrap(
            group[level_of[reviewed]], is_pos[reviewed], unrev, n_groups, int(n_boot), int(seed)
        )
        n_undefined = int(np.isnan(auc_s).sum())
        auroc_ci = percentile_interval(auc_s, level=level)
        precision_ci = percentile_interval(prec_s, level=level)
    result = VerdictPerformance(
        auroc=auroc,
        auroc_ci=auroc_ci,
        precision=precision,
        precision_ci=precision_ci,
        prevalence=n_pos / n_rev if n_rev else math.nan,
        selection_auroc=float(auroc_rows(values, reviewed)) if n else math.nan,
        n_reviewed=n_rev,
        n_positive=n_pos,
        n_cases=n,
        positive=positive,
        not_in_risk=not_in_risk,
        unscored=unscored,
        level=float(level),
        n_boot=int(n_boot),
        seed=int(seed),
        note="",
    )
    return dataclasses.replace(result, note=_note(result, n_undefined if math.isfinite(auroc) else 0))


# ------------------------------------------------------------------ calibrate(objective="verdicts")


def check_calibration_objective(objective: object) -> str:
    """Return an objective of :func:`qe_nb.calibrate`: one of :data:`~qe_nb.core.checks.OBJECTIVES`
    or ``"verdicts"``.

    Examples
    --------
    >>> check_calibration_objective("verdicts")
    'verdicts'
    """
    if isinstance(objective, str) and objective in (*OBJECTIVES, VERDICT_OBJECTIVE):
        return objective
    raise InputError(
        f"Unknown `objective` {objective!r}; expected one of {list(OBJECTIVES)} or {VERDICT_OBJECTIVE!r} "
        "(with `verdicts`)."
    )


class VerdictAUROC:
    """AUROC of the total alarm count for a positive verdict over the reviewed cases, as a
    function of the alarm counts, updated incrementally (the ``"verdicts"`` objective of
    :func:`qe_nb.calibrate`; larger is better, NaN where undefined).

    Parameters
    ----------
    reviewed, positive : numpy.ndarray of bool
        Over the cube's cases: has a verdict; has a positive verdict.
    max_count : int
        The largest possible alarm count.
    """

    def __init__(self, reviewed: np.ndarray, positive: np.ndarray, max_count: int) -> None:
        self.reviewed = np.asarray(reviewed, dtype=bool)
        self.positive = np.asarray(positive, dtype=bool) & self.reviewed
        self.max_count = int(max_count)
        self.n_positive = int(self.positive.sum())
        self.n_negative = int(self.reviewed.sum()) - self.n_positive

    def values(self, base: np.ndarray, ev_case: np.ndarray, ev_idx: np.ndarray, n_cand: int) -> np.ndarray:
        """The AUROC at every candidate ``k`` when event ``e`` adds one alarm to case
        ``ev_case[e]`` for the candidates ``k < ev_idx[e]``, on top of ``base`` counts.

        Twice the Mann-Whitney U is kept as an exact integer: a positive case losing an alarm
        (count x -> x - 1) lowers it by the negatives at x - 1 and at x, a negative one raises
        it by the positives at x and x - 1.
        """
        if self.n_positive == 0 or self.n_negative == 0:
            return np.full(n_cand, math.nan)
        counts0 = base + np.bincount(ev_case[ev_idx > 0], minlength=base.size)
        order = np.argsort(ev_idx, kind="stable")
        cases_sorted = ev_case[order].tolist()
        bounds = np.searchsorted(ev_idx[order], np.arange(n_cand + 1), side="left").tolist()
        counts = counts0.tolist()
        size = self.max_count + 1
        pos = np.bincount(counts0[self.positive], minlength=size)
        neg = np.bincount(counts0[self.reviewed & ~self.positive], minlength=size)
        u2 = int(pos @ (2 * (np.cumsum(neg) - neg) + neg))
        pos_l, neg_l = pos.tolist(), neg.tolist()
        is_pos, is_neg = self.positive.tolist(), (self.reviewed & ~self.positive).tolist()
        pairs = 2.0 * self.n_positive * self.n_negative
        out = np.empty(n_cand)
        for k in range(n_cand):
            if k:
                for e in range(bounds[k], bounds[k + 1]):
                    c = cases_sorted[e]
                    x = counts[c]
                    counts[c] = x - 1
                    if is_pos[c]:
                        u2 -= neg_l[x - 1] + neg_l[x]
                        pos_l[x] -= 1
                        pos_l[x - 1] += 1
                    elif is_neg[c]:
                        u2 += pos_l[x] + pos_l[x - 1]
                        neg_l[x] -= 1
                        neg_l[x - 1] += 1
            out[k] = u2 / pairs
        return out

    @property
    def undefined_reason(self) -> str:
        """Why the objective is NaN everywhere (for the warning of :func:`qe_nb.calibrate`)."""
        return (
            f"the reviewed cases of the cube hold {self.n_positive} positive and {self.n_negative} negative "
            "verdict(s); at least one of each is needed"
        )


def verdict_objective(
    cases: Sequence[object] | pd.Index,
    verdicts: object,
    max_count: int,
    *,
    positive: str | Sequence[str] = POSITIVE_VERDICTS,
    stacklevel: int = 3,
) -> VerdictAUROC:
    """The ``"verdicts"`` objective for a cube's ``cases`` (ids compared as strings).

    Verdicts on cases outside the cube are left out with a :class:`~qe_nb.exceptions.QeNbWarning`
    naming them.

    Raises
    ------
    InputError
        For malformed ``verdicts`` (see :func:`~qe_nb.core.verdicts.verdict_frame`) or ``positive``.
    """
    if verdicts is None:
        raise InputError(
            "`objective='verdicts'` needs `verdicts`: a review store (qe_nb.ReviewStore) or a DataFrame with "
            "the columns 'case' and 'verdict'; got None."
        )
    positive = check_positive(positive)
    frame = verdict_frame(verdicts)
    ids = [str(c) for c in cases]
    known = set(ids)
    outside = [c for c in frame["case"] if c not in known]
    if outside:
        warnings.warn(
            f"{len(outside)} verdict(s) are on cases not in the similarity cube and are left out of the "
            f"calibration: {_listed(outside)}.",
            QeNbWarning,
            stacklevel=stacklevel,
        )
    by_case = dict(zip(frame["case"], frame["verdict"], strict=True))
    verdict = np.array([by_case.get(c, "") for c in ids], dtype=object)
    return VerdictAUROC(verdict != "", np.isin(verdict, positive), max_count)

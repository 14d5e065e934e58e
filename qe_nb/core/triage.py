"""The radiologist's worklist, and how well a risk score finds the failed cases.

:func:`worklist` sorts the cases by their alarm count and says in words why each case alarms.
:func:`triage_performance` measures, where ground truth exists, how well the risk (or any
other score, such as a baseline) ranks the failed segmentations first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from qe_nb.core.alarms import robust_cube
from qe_nb.core.checks import (
    DIMS,
    GROUP_DIMS,
    check_alarms,
    check_alpha,
    check_case_scores,
    check_quality,
    check_scores,
    metric_directions,
)
from qe_nb.core.reasons import alarm_reason, missing_flags, reason_table, reason_texts
from qe_nb.core.statistics import auroc_rows, percentile_interval, spearman_rows
from qe_nb.exceptions import InputError

__all__ = ["worklist", "triage_performance", "alarm_reason"]

def worklist(
    similarity: xr.DataArray,
    alpha: float | xr.DataArray = 0.0,
    *,
    mad_scale: float | str = 1.0,
    quality: xr.DataArray | None = None,
    top: int | None = None,
    alarms: xr.DataArray | None = None,
    thresholds: xr.DataArray | None = None,
    pool: str = "algorithm",
    max_reasons: int | None = None,
    missing: xr.DataArray | None = None,
) -> pd.DataFrame:
    """The cases sorted by risk, highest first, each with the reasons for its alarms.

    Parameters
    ----------
    similarity : xarray.DataArray
        Fusion-vs-candidate scores, dims ``(case, algorithm, label, metric)`` in any order.
    alpha : float or xarray.DataArray, default 0.0
        See :func:`qe_nb.alarms`.
    mad_scale : float or "normal", default 1.0
        See :func:`qe_nb.thresholds`.
    quality : xarray.DataArray, optional
        A quality measure over ``case`` to show beside the risk (e.g. the fusion's true Dice
        in a study with ground truth).
    top : int, optional
        Only the first ``top`` rows (``worklist(...).head(top)``); only those cases' reasons
        are worded, which is most of the work on a large cohort (an app redrawing its
        worklist panel).
    alarms, thresholds : xarray.DataArray, optional
        Both or neither: the alarms (:func:`qe_nb.alarms`, dims of ``similarity``) and
        thresholds (:func:`qe_nb.thresholds`) of ``similarity`` at ``alpha``, when the caller
        has them already; the robust statistics are then not computed again (``alpha``,
        ``mad_scale`` and ``pool`` are not used).
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`qe_nb.thresholds`: per-member thresholds, or one per label and metric.
    max_reasons : int, optional
        Show only the case's ``max_reasons`` worst alarms (largest excess over the threshold
        in MAD units first, see :func:`qe_nb.reasons`), joined by ``"; "``, then ``"+N
        more"``: ``"isen-20: enhancing_tumor Dice 0.41 < 0.75; scan-20: whole_tumor hd95 9.1
        > 4.2; +4 more"``. None (default): every alarm, grouped by algorithm (below).
    missing : xarray.DataArray, optional
        ``scores["missing"]`` (case, algorithm): a candidate without a file is named once,
        ``"netB: no file (missing candidate, 6 alarms)"``, instead of as NaN metrics; a
        scores Dataset passed as ``similarity`` brings its own.

    Returns
    -------
    pandas.DataFrame
        One row per case, index ``rank`` (1 = review first), columns ``case``, ``risk``,
        ``quality`` (when given), ``n_alarms:<metric>`` per metric and ``reasons``: the
        alarms in words, one ``algorithm: label Metric value < threshold`` (``>`` for
        distances) per alarm, grouped by algorithm (``"; "`` between algorithms, ``", "``
        within one), e.g. ``"isen-20: enhancing_tumor Dice 0.41 < 0.83, enhancing_tumor hd95
        inf (empty)"``; empty for a case without alarms. Ties in risk are ordered by case id.
        With ``max_reasons`` or ``missing``, the reasons are those of :func:`qe_nb.reasons`,
        worst first, joined by ``"; "``.

    Raises
    ------
    InputError
        For a malformed cube, alpha, mad_scale, quality or top, or only one of ``alarms``
        and ``thresholds``.

    Warns
    -----
    UnreliableThresholdWarning
        See :func:`qe_nb.thresholds`.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([[0.9, 2.0], [0.8, 3.0], [0.4, np.inf]]).reshape(3, 1, 1, 2),
    ...                    dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": ["a", "b", "c"], "algorithm": ["isen-20"],
    ...                            "label": ["enhancing_tumor"], "metric": ["dice", "hd95"]})
    >>> table = worklist(sim, 0.0)
    >>> table[["case", "risk"]].values.tolist()
    [['c', 2], ['b', 1], ['a', 0]]
    >>> table["reasons"].tolist()  # thresholds at alpha 0: the medians (hd95: of 2 and 3)
    ['isen-20: enhancing_tumor Dice 0.4 < 0.8, enhancing_tumor hd95 inf (empty)', 'isen-20: enhancing_tumor hd95 3 > 2.5', '']
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0):
        raise InputError(f"`top` must be a non-negative int or None; got {top!r}.")
    if (alarms is None) != (thresholds is None):
        raise InputError(
            "`alarms` and `thresholds` go together (both computed at the same alpha) or not at "
            f"all; got only `{'alarms' if thresholds is None else 'thresholds'}`."
        )
    if missing is None and isinstance(similarity, xr.Dataset) and "missing" in similarity:
        missing = similarity["missing"]
    compact = max_reasons is not None or missing is not None
    if compact:
        reason_texts(pd.DataFrame({"case": [], "text": []}), [], max_reasons=max_reasons)  # checks it
    rob = None
    if alarms is None or thresholds is None:
        rob = robust_cube(similarity, mad_scale, pool=pool)
        alpha = check_alpha(alpha, rob.similarity)
        sim = rob.similarity
        rob.warn()
        alpha_values = rob.alpha_array(alpha)
        flags = rob.alarm_values(alpha_values)
        limits = rob.signed_threshold(alpha_values) * rob.sign
        better = rob.higher_is_better.tolist()
    else:
        sim = check_scores(similarity)
        flags = check_alarms(alarms).transpose(*DIMS).values
        if flags.shape != sim.shape:
            raise InputError(
                f"`alarms` must have the dims and sizes of `similarity` {dict(sim.sizes)}; got "
                f"{dict(alarms.sizes)}."
            )
        ordered = thresholds.transpose(*GROUP_DIMS)
        limits = ordered.values
        better = metric_directions(ordered if "higher_is_better" in ordered.coords else sim).tolist()
    cases = sim.indexes["case"]
    q = None if quality is None else check_quality(quality, cases).values
    risk = flags.sum(axis=(1, 2, 3)).astype(np.int64)
    order = np.lexsort((cases.astype(str).to_numpy(), -risk))[:top]
    # every column is built over all cases, so that the dtypes never depend on ``top``
    reasons = np.full(risk.size, "", dtype=object)
    if compact:
        mad = (rob if rob is not None else robust_cube(sim, mad_scale, pool=pool)).mad
        table = reason_table(sim, flags, limits, better, order, mad=mad,
                             missing=missing_flags(missing, sim))
        reasons[order] = reason_texts(table, cases.to_numpy()[order].astype(str).tolist(),
                                      max_reasons=max_reasons)
    else:
        reasons[order] = _reasons(sim, flags, limits, better, order)
    table = pd.DataFrame({"case": cases.to_numpy(), "risk": risk})
    if q is not None:
        table["quality"] = q
    per_metric = flags.sum(axis=(1, 2))
    for m, metric in enumerate(sim.coords["metric"].values.tolist()):
        table[f"n_alarms:{metric}"] = per_metric[:, m].astype(np.int64)
    table["reasons"] = reasons.tolist()
    table = table.iloc[order].reset_index(drop=True)
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    return table


def _reasons(sim: xr.DataArray, flags: np.ndarray, limits: np.ndarray, better: list[bool],
             rows: np.ndarray) -> list[str]:
    """The worded alarms of the cases ``rows`` (positions along ``case``), in that order."""
    values = sim.values
    algorithms = sim.coords["algorithm"].values.tolist()
    labels = sim.coords["label"].values.tolist()
    metrics = sim.coords["metric"].values.tolist()
    out = []
    for c in rows.tolist():
        per_algorithm: dict[int, list[str]] = {}
        for a, lab, m in zip(*np.nonzero(flags[c]), strict=True):
            text = alarm_reason(metrics[m], float(values[c, a, lab, m]), float(limits[a, lab, m]), better[m])
            per_algorithm.setdefault(int(a), []).append(f"{labels[lab]} {text}")
        out.append("; ".join(f"{algorithms[a]}: " + ", ".join(items) for a, items in per_algorithm.items()))
    return out




def _top_rows(scores: np.ndarray, failed: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Precision and share of failures caught when reviewing the top ``fraction`` of cases.

    ``k = ceil(fraction * n)`` cases are reviewed, highest score first. Cases tied at the cut
    are taken in random order: the expected number of failures among the reviewed is used,
    so the result does not depend on case order.
    """
    n = scores.shape[-1]
    k = max(1, math.ceil(fraction * n - 1e-9))
    order = np.argsort(-scores, axis=-1, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=-1)
    cut = ordered[..., k - 1 : k]
    above = scores > cut
    tied = scores == cut
    n_above = above.sum(-1)
    n_tied = tied.sum(-1)
    share = (k - n_above) / n_tied  # of the tied cases, the share that is reviewed
    caught = (failed & above).sum(-1) + share * (failed & tied).sum(-1)
    total = failed.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(total > 0, caught / total, np.nan)
    return caught / k, recall


def _statistics(scores: np.ndarray, quality: np.ndarray, failed: np.ndarray, fractions) -> dict[str, np.ndarray]:
    out = {"auroc": auroc_rows(scores, failed), "spearman_rho": spearman_rows(scores, quality)}
    for f in fractions:
        precision, recall = _top_rows(scores, failed, f)
        tag = f"{100 * f:g}%"
        out[f"precision_top_{tag}"] = precision
        out[f"failures_caught_top_{tag}"] = recall
    return out


def triage_performance(
    risk: xr.DataArray,
    quality: xr.DataArray,
    *,
    failure_below: float = 0.5,
    top_fractions: Sequence[float] = (0.1, 0.2, 0.3),
    n_bootstrap: int = 1000,
    seed: int = 0,
    baselines: Mapping[str, xr.DataArray] | None = None,
) -> pd.DataFrame:
    """How well a risk score ranks the failed segmentations first, with bootstrap CIs.

    Parameters
    ----------
    risk : xarray.DataArray
        The score over ``case`` (the alarm count from :func:`qe_nb.risk`); higher = riskier.
    quality : xarray.DataArray
        The true quality over the same cases (e.g. the fusion's Dice with the reference).
        Cases whose quality is not finite are left out.
    failure_below : float, default 0.5
        A case has *failed* when ``quality < failure_below``.
    top_fractions : sequence of float, default (0.1, 0.2, 0.3)
        Review budgets: the share of cases a reader checks, highest score first.
    n_bootstrap : int, default 1000
        Bootstrap resamples of the cases for the 95 % percentile intervals (0: no CIs).
    seed : int, default 0
        Seed of the bootstrap (``numpy.random.default_rng``); the result is deterministic.
    baselines : mapping of str to xarray.DataArray, optional
        Other scores over ``case`` to evaluate the same way, **higher = riskier**: negate a
        score where higher means better, e.g. ``{"-mean dice to fusion":
        -similarity.sel(metric="dice").mean(("algorithm", "label"))}``, ``{"-mean pairwise
        dice": -pairwise}``, ``{"cv of volumes": cv}``.

    Returns
    -------
    pandas.DataFrame
        Index ``(score, statistic)``: ``score`` is ``"risk"`` then the baselines' names;
        statistics ``auroc`` (failed vs not), ``spearman_rho`` (score vs quality; negative
        when the score works), ``precision_top_<k>%`` (share of failures among the
        reviewed) and ``failures_caught_top_<k>%`` (share of all failures among the
        reviewed). Columns ``value``, ``ci_low``, ``ci_high`` (2.5 and 97.5 bootstrap
        percentiles; NaN without resamples). ``attrs`` hold ``n_cases``, ``n_failures``.

    Raises
    ------
    InputError
        For scores or quality not over ``case`` or over other cases, a non-finite score,
        non-numeric or out-of-range options.

    Notes
    -----
    AUROC is the Mann-Whitney U statistic of the failed cases' scores against the others',
    divided by ``n_failed * n_good``: the probability that a failed case outscores a good
    one, ties counting half (NaN without failures or without good cases). With k =
    ceil(fraction * n) reviewed cases, cases tied at the cut are counted by their expected
    share under a random order, so integer alarm counts with many ties are treated fairly.

    Examples
    --------
    >>> cases = list("abcdef")
    >>> risk = xr.DataArray([5, 4, 3, 1, 0, 0], dims="case", coords={"case": cases})
    >>> dice = xr.DataArray([0.2, 0.4, 0.9, 0.8, 0.95, 0.9], dims="case", coords={"case": cases})
    >>> table = triage_performance(risk, dice, n_bootstrap=0)
    >>> float(table.loc[("risk", "auroc"), "value"])
    1.0
    >>> float(table.loc[("risk", "failures_caught_top_30%"), "value"])  # top 2 of 6 cases
    1.0
    """
    if isinstance(failure_below, (bool, np.bool_)) or not isinstance(failure_below, (int, float, np.floating, np.integer)) or not math.isfinite(failure_below):
        raise InputError(f"`failure_below` must be a finite number; got {failure_below!r}.")
    fractions = tuple(top_fractions) if isinstance(top_fractions, (list, tuple, np.ndarray)) else None
    if not fractions or not all(
        isinstance(f, (float, int, np.floating, np.integer)) and not isinstance(f, (bool, np.bool_)) and 0 < f <= 1
        for f in fractions
    ):
        raise InputError(
            f"`top_fractions` must be a non-empty sequence of numbers in (0, 1]; got {top_fractions!r}."
        )
    if isinstance(n_bootstrap, (bool, np.bool_)) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise InputError(f"`n_bootstrap` must be a non-negative int; got {n_bootstrap!r}.")
    score = check_case_scores(risk, name="risk")
    cases = score.indexes["case"]
    q = check_quality(quality, cases).values
    named = {"risk": score.values}
    for name, values in (baselines or {}).items():
        if not isinstance(name, str) or name in named:
            raise InputError(f"`baselines` keys must be distinct names other than 'risk'; got {name!r}.")
        named[name] = check_case_scores(values, cases, name=f"baselines[{name!r}]").values
    for name, values in named.items():
        if not np.isfinite(values).all():
            label = "`risk`" if name == "risk" else f"`baselines[{name!r}]`"
            raise InputError(f"{label} holds non-finite values; every case needs a finite score.")
    keep = np.isfinite(q)
    q = q[keep]
    failed = q < failure_below
    stacked = np.stack([v[keep] for v in named.values()])  # (score, case)
    n = q.size
    if n < 2:
        raise InputError(f"`quality` has {n} finite value(s); triage needs at least two cases.")

    point = _statistics(stacked, np.broadcast_to(q, stacked.shape), np.broadcast_to(failed, stacked.shape), fractions)
    # the point estimates from scipy itself (they match the vectorised versions)
    for i, values in enumerate(stacked):
        if failed.any() and not failed.all():
            u = scipy.stats.mannwhitneyu(values[failed], values[~failed], alternative="two-sided").statistic
            point["auroc"][i] = u / (failed.sum() * (~failed).sum())
        point["spearman_rho"][i] = scipy.stats.spearmanr(values, q).statistic

    low = {key: np.full(len(named), np.nan) for key in point}
    high = {key: np.full(len(named), np.nan) for key in point}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n, size=(n_bootstrap, n))
        boot_q = q[draws]
        boot_failed = failed[draws]
        for i, values in enumerate(stacked):
            stats = _statistics(values[draws], boot_q, boot_failed, fractions)
            for key, samples in stats.items():
                low[key][i], high[key][i] = percentile_interval(samples)

    rows = []
    for i, name in enumerate(named):
        for key in point:
            rows.append((name, key, float(point[key][i]), float(low[key][i]), float(high[key][i])))
    table = pd.DataFrame(rows, columns=["score", "statistic", "value", "ci_low", "ci_high"])
    table = table.set_index(["score", "statistic"])
    table.attrs = {"n_cases": int(n), "n_failures": int(failed.sum()), "failure_below": float(failure_below)}
    return table

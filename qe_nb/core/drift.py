"""Drift: do recent cases alarm more often than the reference cohort did?

:func:`drift_table` compares assessments of new cases (``QualityModel.assess``) with the
reference summary of a frozen model, per member (any alarm of the member in a case) and per
member x label x metric: the alarm rate against the reference rate with one-sided exact tests
(Fisher's, and the binomial test against the reference rate), and the shift of the median similarity in reference-MAD units.

The rule of the ``drifted`` flag (documented here once):

1. ``p`` is the one-sided Fisher exact test (``scipy.stats.fisher_exact``, alternative
   "greater") of ``k`` alarms in the ``n`` recent cases that could be scored (failed cases are
   left out and counted) against ``k_ref`` alarms in the ``n_ref`` reference cases: the reference
   rate is itself an estimate from a few dozen cases, and a test that took it as exact would
   call chance drift. ``p_binomial`` (``scipy.stats.binomtest(k, n, reference_rate,
   alternative="greater")``, the reference rate taken as exact) is shown beside it.
2. The p-values of every row of the table are adjusted with Holm's step-down method (a
   family-wise error guard over members, labels and metrics together): ``p_holm``.
3. A row is ``drifted`` when ``p_holm`` is at most ``level`` (default 0.01). A member is
   flagged when any of its rows is.

Only more alarms count as drift: a member that alarms less often than in the reference is not
flagged (its median shift still shows it).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from qe_nb.core.checks import GROUP_DIMS, metric_directions
from qe_nb.exceptions import InputError

__all__ = ["drift_table", "holm", "DRIFT_COLUMNS"]

DRIFT_COLUMNS = ("algorithm", "label", "metric", "n_cases", "n_alarms", "alarm_rate", "reference_rate",
                 "p_value", "p_binomial", "p_holm", "median_shift_mad", "drifted", "words")
"""The columns of :func:`drift_table`."""

_DISPLAY = {"dice": "Dice", "jaccard": "Jaccard", "nsd": "NSD"}


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), capped at 1, monotone.

    Examples
    --------
    >>> holm(np.array([0.01, 0.04, 0.03])).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def _test(k: int, n: int, k_ref: int, n_ref: int) -> tuple[float, float]:
    """(Fisher's one-sided p, the binomial p against the reference rate) for k of n vs k_ref of n_ref."""
    if n_ref == 0 or n == 0:
        return 1.0, 1.0
    fisher = scipy.stats.fisher_exact([[k, n - k], [k_ref, n_ref - k_ref]], alternative="greater").pvalue
    binomial = scipy.stats.binomtest(k, n, k_ref / n_ref, alternative="greater").pvalue
    return float(fisher), float(binomial)


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def drift_table(
    assessments: xr.Dataset,
    reference: xr.Dataset,
    thresholds: xr.DataArray,
    *,
    last: int | None = None,
    level: float = 0.01,
) -> pd.DataFrame:
    """The drift of recent assessments from the reference, per member and per member x label x metric.

    Parameters
    ----------
    assessments : xarray.Dataset
        ``QualityModel.assess`` output (``similarity``, ``alarms``, ``error`` over ``case``),
        cases in arrival order.
    reference : xarray.Dataset
        The model's reference summary (``alarm_rate``, ``member_alarm_rate``, ``median``,
        ``mad``; attrs ``n_cases``).
    thresholds : xarray.DataArray
        The model's thresholds (their coords fix the order of the rows).
    last : int, optional
        Only the last ``last`` cases (default: every case).
    level : float, default 0.01
        Family-wise error level of the flags (see the module's rule).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DRIFT_COLUMNS`; one row per member (``label`` and ``metric`` ``"*"``:
        a case counts when any of the member's cells alarms) followed by its cells.
        ``median_shift_mad``: (recent median - reference median) / reference MAD, signed so
        that negative is worse (for distances, larger); the member row shows its worst cell.
        ``words``: ``"netB: alarm rate 0.71 over the last 20 cases vs 0.18 in the reference, p
        < 0.001"`` (the Holm-adjusted p). attrs: ``n_cases``, ``n_failed`` (left out),
        ``level``, ``flagged_members``.

    Raises
    ------
    InputError
        For a bad ``last`` or ``level``, or no case that could be scored.

    Examples
    --------
    >>> coords = {"algorithm": ["a", "b"], "label": ["t"], "metric": ["dice"]}
    >>> ref = xr.Dataset({"alarm_rate": (GROUP_DIMS, np.full((2, 1, 1), 0.1)),
    ...                   "member_alarm_rate": ("algorithm", [0.1, 0.1]),
    ...                   "median": (GROUP_DIMS, np.full((2, 1, 1), 0.9)), "mad": (GROUP_DIMS, np.full((2, 1, 1), 0.05))},
    ...                  coords=coords, attrs={"n_cases": 40})
    >>> sim = np.full((20, 2, 1, 1), 0.9); sim[:, 1] = 0.5
    >>> new = xr.Dataset({"similarity": (("case", *GROUP_DIMS), sim), "alarms": (("case", *GROUP_DIMS), sim < 0.8),
    ...                   "error": ("case", [""] * 20)}, coords={"case": [f"n{i}" for i in range(20)], **coords})
    >>> t = xr.DataArray(np.full((2, 1, 1), 0.8), dims=GROUP_DIMS, coords=coords)
    >>> table = drift_table(new, ref, t)
    >>> table.loc[table["drifted"], "words"].tolist()[0]
    'b: alarm rate 1.00 over the last 20 cases vs 0.10 in the reference, p < 0.001'
    >>> sorted(set(table.loc[table["drifted"], "algorithm"]))
    ['b']
    """
    if last is not None and (isinstance(last, bool) or not isinstance(last, (int, np.integer)) or last < 1):
        raise InputError(f"`last` must be a positive int or None (every case); got {last!r}.")
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise InputError(f"`level` must be a number in (0, 1); got {level!r}.")
    ds = assessments.isel(case=slice(-int(last), None)) if last is not None else assessments
    failed = np.array([bool(str(e)) for e in ds["error"].values], dtype=bool)
    ds = ds.isel(case=np.flatnonzero(~failed))
    n = int(ds.sizes["case"])
    if n == 0:
        raise InputError(f"no assessed case to compare with the reference ({int(failed.sum())} failed).")
    order = {d: thresholds.indexes[d] for d in GROUP_DIMS}
    flags = ds["alarms"].sel(order).transpose("case", *GROUP_DIMS).values.astype(bool)
    sim = ds["similarity"].sel(order).transpose("case", *GROUP_DIMS)
    ref_rate = reference["alarm_rate"].sel(order).transpose(*GROUP_DIMS).values
    ref_member = reference["member_alarm_rate"].sel(algorithm=order["algorithm"]).values
    sign = np.where(metric_directions(thresholds), 1.0, -1.0)
    signed = np.where(np.isfinite(sim.values), sim.values * sign, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN group's median is NaN
        recent = np.nanmedian(signed, axis=0)
        ref_median = reference["median"].sel(order).transpose(*GROUP_DIMS).values * sign
        mad = reference["mad"].sel(order).transpose(*GROUP_DIMS).values
        gap = recent - ref_median
        shift = np.where(mad > 0, gap / mad, np.where(gap == 0, 0.0, np.sign(gap) * np.inf))
    n_ref = int(reference.attrs["n_cases"])
    algorithms, labels, metrics = ([str(v) for v in order[d]] for d in GROUP_DIMS)
    rows = []
    for i, alg in enumerate(algorithms):
        k = int(flags[:, i].any(axis=(1, 2)).sum())
        worst = shift[i][~np.isnan(shift[i])]
        rows.append((alg, "*", "*", k, float(ref_member[i]), float(worst.min()) if worst.size else math.nan, ""))
        for j, lab in enumerate(labels):
            for m, met in enumerate(metrics):
                rows.append((alg, lab, met, int(flags[:, i, j, m].sum()), float(ref_rate[i, j, m]),
                             float(shift[i, j, m]), f"{lab} {_DISPLAY.get(met, met)} "))
    tests = [_test(k, n, _round_count(rate, n_ref), n_ref) for _, _, _, k, rate, _, _ in rows]
    adjusted = holm(np.array([t[0] for t in tests]))
    drifted = adjusted <= level
    records = []
    for (alg, lab, met, k, rate, s, what), (p_value, p_binomial), p_h, flag in zip(rows, tests, adjusted, drifted):
        words = (f"{alg}: {what}alarm rate {k / n:.2f} over the last {n} cases vs {rate:.2f} in the reference, "
                 f"{_p_text(p_h)}" + ("" if math.isnan(s) or not what else f", median {s:+.1f} MAD"))
        records.append((alg, lab, met, n, k, k / n, rate, p_value, p_binomial, p_h, s, bool(flag), words))
    table = pd.DataFrame.from_records(records, columns=list(DRIFT_COLUMNS))
    table.attrs = {"n_cases": n, "n_failed": int(failed.sum()), "level": float(level),
                   "flagged_members": sorted(set(table.loc[table["drifted"], "algorithm"]))}
    return table


def _round_count(rate: float, n_ref: int) -> int:
    return 0 if math.isnan(rate) else int(round(rate * n_ref))

"""Choosing alpha: alarm-count entropy, correlation with quality, sweeps and calibration.

The paper (Kofler et al. 2021, section 2.4 and Tables 1-2) tunes alpha by looking at how the
alarm counts spread over the cases (their Shannon entropy, which needs no ground truth) and
how they correlate with a quality measure such as the fusion's true Dice (Pearson r, which
does). :func:`sweep` tabulates both over a grid of alpha; :func:`calibrate` picks alpha
automatically, globally or per group.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.core.alarms import RobustCube, robust_cube
from qe_nb.core.checks import (
    GROUP_DIMS,
    check_alphas,
    check_by,
    check_quality,
)
from qe_nb.core.statistics import count_entropy, entropy_rows, pearson_rows
from qe_nb.core.verdict_performance import (
    VERDICT_OBJECTIVE,
    VerdictAUROC,
    check_calibration_objective,
    verdict_objective,
)
from qe_nb.exceptions import InputError, UndefinedValueWarning

__all__ = [
    "DEFAULT_ALPHAS", "ALPHA_RANGE", "ALPHA_STEP", "alarm_entropy", "sweep", "sweep_table", "calibrate",
]

DEFAULT_ALPHAS: tuple[float, ...] = (
    -3.0, -2.0, -1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0,
)
"""The grid of the paper's Tables 1 and 2."""

ALPHA_RANGE: tuple[float, float] = (-3.0, 3.0)
"""The alpha range :func:`calibrate` searches and the alpha sliders span (the grid's ends)."""

ALPHA_STEP: float = 0.05
"""The step of the alpha sliders of the apps."""

# the 0.01 grid over ALPHA_RANGE that calibrate() evaluates besides the breakpoints' midpoints
_SEARCH_GRID = np.round(np.arange(round(ALPHA_RANGE[0] * 100), round(ALPHA_RANGE[1] * 100) + 1) / 100.0, 2)
_TIE = 1e-12  # objective values this close count as equal (then the smallest |alpha| wins)
_CHUNK = 20_000_000  # booleans per broadcast block in sweep()


def alarm_entropy(risk: xr.DataArray | Sequence[int] | np.ndarray, *, max_count: int | None = None) -> float:
    """Shannon entropy (natural log) of the distribution of alarm counts over cases.

    The objective of ``calibrate(..., objective="entropy")``, under the name users look for:
    the definition (``-sum(p_k ln p_k)`` over the non-empty bins of ``0..max_count``), its
    parameters and its checks are those of :func:`qe_nb.core.statistics.count_entropy`, the
    one implementation; ``risk`` may be the DataArray of :func:`qe_nb.risk`.

    Examples
    --------
    >>> alarm_entropy([2, 2, 2])
    0.0
    >>> round(alarm_entropy([0, 1]), 3)  # ln 2
    0.693
    """
    return count_entropy(risk, max_count=max_count)


def _listed(values: np.ndarray, limit: int = 6) -> str:
    text = ", ".join(f"{v:g}" for v in values[:limit])
    return text + (", ..." if values.size > limit else "")


def _quality_values(rob: RobustCube, quality) -> np.ndarray:
    """The quality per case, in the cube's case order (non-finite values stay NaN)."""
    q = check_quality(quality, rob.similarity.indexes["case"]).values
    return np.where(np.isfinite(q), q, np.nan)


def sweep(
    similarity: xr.DataArray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    quality: xr.DataArray | None = None,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
) -> xr.Dataset:
    """Alarm-count histogram, entropy and correlation with quality over a grid of alpha.

    Parameters
    ----------
    similarity : xarray.DataArray
        Fusion-vs-candidate scores, dims ``(case, algorithm, label, metric)`` in any order.
    alphas : sequence of float, default :data:`DEFAULT_ALPHAS`
        Distinct finite values; the paper's grid -3 ... 3 by default.
    quality : xarray.DataArray, optional
        A quality measure over ``case`` (e.g. the fusion's true Dice), covering exactly the
        cube's cases. Cases whose quality is not finite are left out of the correlations.
    mad_scale : float or "normal", default 1.0
        See :func:`qe_nb.thresholds`.
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`qe_nb.thresholds`: per-member thresholds, or one per label and metric.

    Returns
    -------
    xarray.Dataset
        Over ``alpha`` (in the order given):

        - ``histogram`` (alpha, count): cases with 0, 1, ... ``max_count`` alarms, where
          ``max_count = n_algorithms * n_labels * n_metrics`` (attr ``max_count``);
        - ``entropy`` (alpha): :func:`alarm_entropy` of that histogram;
        - ``risk`` (alpha, case): the alarm count of every case;
        - with ``quality``: ``r`` and ``p_value`` (alpha, metric), Pearson r of the alarm
          count *from that metric alone* with quality and its two-sided p-value, and
          ``r_all``, ``p_value_all`` (alpha) for the total count.

    Raises
    ------
    InputError
        For a malformed cube, grid, quality or mad_scale.

    Warns
    -----
    UndefinedValueWarning
        Once, when r is undefined (a constant count or constant quality) for some alpha;
        those entries are NaN.
    UnreliableThresholdWarning
        See :func:`qe_nb.thresholds`.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([0.9, 0.8, 0.7, 0.6]).reshape(4, 1, 1, 1),
    ...                    dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": list("abcd"), "algorithm": ["x"], "label": ["t"],
    ...                            "metric": ["dice"]})
    >>> ds = sweep(sim, [0.0, 10.0])
    >>> ds.histogram.values.tolist()  # median 0.75: two cases below it at alpha 0
    [[2, 2], [4, 0]]
    >>> ds.entropy.values.round(4).tolist()
    [0.6931, 0.0]
    """
    return _sweep(similarity, alphas, quality, mad_scale, pool=pool, stacklevel=3)


def _sweep(similarity, alphas, quality, mad_scale, *, pool: str = "algorithm", stacklevel: int) -> xr.Dataset:
    """sweep() itself; ``stacklevel`` makes warnings point at the public function's caller."""
    rob = robust_cube(similarity, mad_scale, pool=pool)
    grid = check_alphas(alphas)
    q = None if quality is None else _quality_values(rob, quality)
    rob.warn(stacklevel=stacklevel + 2)
    n_cases, n_alg, n_lab, n_met = rob.signed.shape
    max_count = n_alg * n_lab * n_met
    per_metric = np.empty((grid.size, n_cases, n_met), dtype=np.int64)
    step = max(1, _CHUNK // max(1, rob.signed.size))
    signed = rob.signed[np.newaxis]
    not_finite = ~rob.finite[np.newaxis]
    for start in range(0, grid.size, step):
        block = grid[start : start + step]
        thr = rob.median[np.newaxis] - block[:, None, None, None] * rob.mad[np.newaxis]
        with np.errstate(invalid="ignore"):
            flags = (signed < thr[:, np.newaxis]) | not_finite
        per_metric[start : start + step] = flags.sum(axis=(2, 3))
    total = per_metric.sum(axis=-1)
    offsets = np.arange(grid.size)[:, None] * (max_count + 1)
    hist = np.bincount((total + offsets).ravel(), minlength=grid.size * (max_count + 1))
    hist = hist.reshape(grid.size, max_count + 1)

    sim = rob.similarity
    coords = {
        "alpha": grid,
        "count": np.arange(max_count + 1),
        "case": sim.coords["case"].values,
        "metric": sim.coords["metric"].values,
        "higher_is_better": ("metric", rob.higher_is_better),
    }
    data = {
        "histogram": (("alpha", "count"), hist),
        "entropy": (("alpha",), entropy_rows(hist)),
        "risk": (("alpha", "case"), total),
    }
    if q is not None:
        keep = np.isfinite(q)
        r, p = pearson_rows(np.moveaxis(per_metric[:, keep, :], 1, -1), q[keep])
        r_all, p_all = pearson_rows(total[:, keep], q[keep])
        undefined = np.isnan(r).any(axis=1) | np.isnan(r_all)
        if undefined.any():
            warnings.warn(
                "Pearson r of the alarm count with `quality` is undefined (a constant count or a "
                f"constant quality) at {int(undefined.sum())} alpha value(s) "
                f"({_listed(grid[undefined])}); reported as NaN.",
                UndefinedValueWarning,
                stacklevel=stacklevel,
            )
        data.update(
            r=(("alpha", "metric"), r),
            p_value=(("alpha", "metric"), p),
            r_all=(("alpha",), r_all),
            p_value_all=(("alpha",), p_all),
        )
    attrs = {"max_count": max_count, "mad_scale": rob.mad_scale}
    if rob.pool != "algorithm":  # the attrs of the paper's per-member sweep stay as they were
        attrs["pool"] = rob.pool
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds["entropy"].attrs["units"] = "nat"
    return ds


def sweep_table(
    similarity: xr.DataArray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    quality: xr.DataArray | None = None,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
) -> pd.DataFrame:
    """The sweep in the layout of the paper's Tables 1 and 2.

    Parameters
    ----------
    similarity, alphas, quality, mad_scale, pool
        See :func:`sweep`.

    Returns
    -------
    pandas.DataFrame
        One row per alpha; columns ``alpha``, ``entropy``, ``r:<metric>`` per metric (only
        when ``quality`` is given; NaN where undefined, "NA" in the paper), then ``0a``,
        ``1a``, ... up to ``<max_count>a``: the number of cases with that many alarms.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([0.9, 0.8, 0.7, 0.6]).reshape(4, 1, 1, 1),
    ...                    dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": list("abcd"), "algorithm": ["x"], "label": ["t"],
    ...                            "metric": ["dice"]})
    >>> q = xr.DataArray([0.95, 0.9, 0.6, 0.5], dims="case", coords={"case": list("abcd")})
    >>> sweep_table(sim, [0.0], quality=q).round(2).to_dict("records")
    [{'alpha': 0.0, 'entropy': 0.69, 'r:dice': -0.98, '0a': 2, '1a': 2}]
    """
    ds = _sweep(similarity, alphas, quality, mad_scale, pool=pool, stacklevel=3)
    table = pd.DataFrame({"alpha": ds["alpha"].values, "entropy": ds["entropy"].values})
    if "r" in ds:
        for metric in ds["metric"].values.tolist():
            table[f"r:{metric}"] = ds["r"].sel(metric=metric).values
    for k in ds["count"].values.tolist():
        table[f"{k}a"] = ds["histogram"].sel(count=k).values
    return table


class _Objective:
    """The calibration objective as a function of the per-case alarm counts, updated incrementally.

    ``entropy``: the alarm-count entropy. ``pearson``: minus Pearson r of the total count
    with quality. ``combined``: entropy / ln(max_count + 1) minus r. Larger is better; NaN
    where undefined.
    """

    def __init__(self, objective: str, q: np.ndarray | None, max_count: int) -> None:
        self.objective = objective
        self.max_count = max_count
        self.norm = math.log(max_count + 1) if max_count > 0 else 1.0
        self.use_r = objective in ("pearson", "combined")
        if self.use_r:
            keep = np.isfinite(q)
            self.weight = keep.tolist()
            qc = np.where(keep, q - (q[keep].mean() if keep.any() else 0.0), 0.0)
            self.qc = qc.tolist()
            self.nq = int(keep.sum())
            self.qvar = float(qc @ qc)
            self.q_constant = self.nq < 2 or (np.nanmax(q) == np.nanmin(q))

    def values(self, base: np.ndarray, ev_case: np.ndarray, ev_idx: np.ndarray, n_cand: int) -> np.ndarray:
        """The objective at every candidate ``k`` when event ``e`` adds one alarm to case
        ``ev_case[e]`` for the candidates ``k < ev_idx[e]``, on top of ``base`` counts."""
        counts0 = base + np.bincount(ev_case[ev_idx > 0], minlength=base.size)
        order = np.argsort(ev_idx, kind="stable")
        cases_sorted = ev_case[order].tolist()
        bounds = np.searchsorted(ev_idx[order], np.arange(n_cand + 1), side="left").tolist()
        n = base.size
        counts = counts0.tolist()
        hist = np.bincount(counts0, minlength=self.max_count + 1).tolist()
        nlogn = [0.0] + [k * math.log(k) for k in range(1, n + 1)]
        t_sum = math.fsum(nlogn[h] for h in hist)
        log_n = math.log(n)
        use_r = self.use_r
        if use_r:
            weight, qc, nq = self.weight, self.qc, self.nq
            s1 = sum(c for c, w in zip(counts, weight, strict=True) if w)
            s2 = sum(c * c for c, w in zip(counts, weight, strict=True) if w)
            sq = math.fsum(c * v for c, v in zip(counts, qc, strict=True))
            denom_q = self.qvar
            q_ok = not self.q_constant
        entropy_only = self.objective == "entropy"
        out = np.empty(n_cand)
        for k in range(n_cand):
            if k:
                for e in range(bounds[k], bounds[k + 1]):
                    c = cases_sorted[e]
                    x = counts[c]
                    counts[c] = x - 1
                    hx, hy = hist[x], hist[x - 1]
                    t_sum += nlogn[hx - 1] - nlogn[hx] + nlogn[hy + 1] - nlogn[hy]
                    hist[x] = hx - 1
                    hist[x - 1] = hy + 1
                    if use_r and weight[c]:
                        s1 -= 1
                        s2 -= 2 * x - 1
                        sq -= qc[c]
            entropy = max(0.0, log_n - t_sum / n)
            if entropy_only:
                out[k] = entropy
                continue
            spread = nq * s2 - s1 * s1  # exact: integers
            if not q_ok or spread <= 0:
                out[k] = math.nan
                continue
            r = max(-1.0, min(1.0, sq / math.sqrt(spread / nq * denom_q)))
            out[k] = -r if self.objective == "pearson" else entropy / self.norm - r
        return out


def _best(cands: np.ndarray, values: np.ndarray, second: np.ndarray | None = None) -> tuple[float, float] | None:
    """The candidate with the largest value (ties: the largest ``second`` if given, then the
    smallest |alpha|, then the smallest alpha)."""
    clean = np.where(np.isnan(values), -np.inf, values)
    top = clean.max()
    if not np.isfinite(top):
        return None
    tied = np.flatnonzero(clean >= top - _TIE)
    if second is not None:
        tied = tied[second[tied] >= second[tied].max() - _TIE]
    pick = tied[np.lexsort((cands[tied], np.abs(cands[tied])))[0]]
    return float(cands[pick]), float(values[pick])


def _optimise_1d(
    rob: RobustCube,
    cells: np.ndarray,
    base: np.ndarray,
    grid: np.ndarray | None,
    objective: _Objective | VerdictAUROC,
    tiebreak: _Objective | None = None,
) -> tuple[float, float] | None:
    """Best single alpha for the ``cells`` (bool over algorithm, label, metric), the alarms of
    every other cell held fixed in ``base`` (counts per case); ties of the objective go to the
    largest ``tiebreak`` objective when given.

    With ``grid`` None every distinct alarm pattern over [-3, 3] is visited: the alarm of a
    finite value ``v`` flips at ``alpha = (median - v) / MAD``, so between two such
    breakpoints the counts are constant; their midpoints plus a 0.01 grid are the candidates.
    """
    signed = rob.signed[:, cells]
    finite = rob.finite[:, cells]
    median = rob.median[cells]
    mad = rob.mad[cells]
    spread = mad > 0  # False for MAD 0 and for NaN (no finite value)
    with np.errstate(invalid="ignore"):
        fixed = ~finite | (~spread[np.newaxis] & (signed < median[np.newaxis]))
    base = base + fixed.sum(axis=1)
    ev_case, ev_cell = np.nonzero(finite & spread[np.newaxis])
    v = signed[ev_case, ev_cell]
    m = median[ev_cell]
    s = mad[ev_cell]
    breaks = (m - v) / s
    if grid is None:
        lo, hi = ALPHA_RANGE
        inner = np.unique(breaks[(breaks > lo) & (breaks < hi)])
        edges = np.concatenate(([lo], inner, [hi]))
        cands = np.unique(np.concatenate((_SEARCH_GRID, (edges[:-1] + edges[1:]) / 2.0)))
    else:
        cands = grid
    n_cand = cands.size
    # alarm at candidate k  <=>  v < m - cands[k] * s, true for a prefix of the sorted
    # candidates; idx = the prefix length, found by bisection, then settled by the exact
    # comparison alarms() makes, so that rounding near a breakpoint cannot disagree.
    idx = np.searchsorted(cands, breaks, side="left")
    while True:
        down = idx > 0
        down[down] = ~(v[down] < m[down] - cands[idx[down] - 1] * s[down])
        up = idx < n_cand
        up[up] = v[up] < m[up] - cands[idx[up]] * s[up]
        if not (down.any() or up.any()):
            break
        idx = idx - down + up
    values = objective.values(base, ev_case, idx, n_cand)
    second = None if tiebreak is None else tiebreak.values(base, ev_case, idx, n_cand)
    return _best(cands, values, second)


def calibrate(
    similarity: xr.DataArray,
    *,
    objective: str = "entropy",
    quality: xr.DataArray | None = None,
    by: str | tuple[str, ...] | None = None,
    alphas: Sequence[float] | None = None,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
    verdicts: object | None = None,
) -> float | xr.DataArray:
    """Choose alpha automatically: globally, or per algorithm, label and/or metric.

    Parameters
    ----------
    similarity : xarray.DataArray
        Fusion-vs-candidate scores, dims ``(case, algorithm, label, metric)`` in any order.
    objective : {"entropy", "pearson", "combined", "verdicts"}, default "entropy"
        What to maximise (see Notes). ``"entropy"`` needs no ground truth; ``"verdicts"``
        learns from reviewers' verdicts instead.
    quality : xarray.DataArray, optional
        A quality measure over ``case`` (e.g. the fusion's true Dice); required by
        ``"pearson"`` and ``"combined"``. Cases with non-finite quality are left out of r.
    by : str or tuple of str, optional
        None for one global alpha, or any subset of ``("algorithm", "label", "metric")`` for
        one alpha per group.
    alphas : sequence of float, optional
        Candidate values to choose from. By default every distinct alarm pattern over
        ``[-3, 3]`` is examined (exact search, see Notes).
    mad_scale : float or "normal", default 1.0
        See :func:`qe_nb.thresholds`.
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`qe_nb.thresholds`; pass the same value to :func:`qe_nb.alarms` with the
        alpha found.
    verdicts : ReviewStore-like or pandas.DataFrame, optional
        Required by (and only used with) ``"verdicts"``: a :class:`qe_nb.ReviewStore` (anything
        with ``current()``) or a DataFrame with the columns ``case`` and ``verdict``. Verdicts
        on cases outside the cube are left out with a warning naming them.

    Returns
    -------
    float or xarray.DataArray
        A float when ``by`` is None; otherwise ``alpha`` over the ``by`` dims, with the
        cube's coords, directly usable as ``alarms(similarity, alpha)`` (attrs record the
        objective and its value).

    Raises
    ------
    InputError
        For an unknown objective, ``by`` outside (algorithm, label, metric), a missing
        ``quality`` or ``verdicts`` where the objective needs it (or one given where it does
        not), malformed verdicts, or any error of :func:`sweep`.

    Warns
    -----
    UndefinedValueWarning
        When r (or, for ``"verdicts"``, the AUROC: the reviewed cases must hold both classes)
        is undefined for every alpha searched; alpha 0.0 (the paper's default) is returned then.
    QeNbWarning
        For verdicts on cases outside the cube (``"verdicts"``).
    UnreliableThresholdWarning
        See :func:`qe_nb.thresholds`.

    Notes
    -----
    Objectives, all maximised:

    - ``entropy``: :func:`alarm_entropy` of the alarm counts;
    - ``pearson``: ``-r``, r the Pearson correlation of the total alarm count with quality
      (the most negative r wins);
    - ``combined``: ``H / ln(max_count + 1) - r``, the entropy normalised to [0, 1] by its
      largest possible value plus the negated r in [-1, 1], equal weights;
    - ``verdicts``: the AUROC of the total alarm count (the risk) for a positive verdict
      ("reject" or "needs correction") against "accept", over the reviewed cases of the cube
      (:func:`qe_nb.verdict_performance`); only these cases' labels count, the thresholds
      still come from every case. The AUROC takes few distinct values, so ties are common:
      among the alphas with the best AUROC the one whose alarm counts have the largest
      entropy wins (it spreads the unreviewed cases most, the ``"entropy"`` objective's
      choice within the tie), then the smallest ``|alpha|``. The AUROC at the alpha found is
      measured on the verdicts it was fitted to, hence optimistic: judge it on later verdicts.

    The alarm counts, hence every objective, are piecewise constant in alpha: the alarm of a
    finite value ``v`` of a group flips at ``alpha = (median - v) / MAD``. The default search
    evaluates one point inside every piece over [-3, 3] (the midpoints between consecutive
    breakpoints) plus a 0.01 grid, so it finds the global optimum over [-3, 3] and is at
    least as good as any grid there. Ties go to the smallest ``|alpha|`` (after the
    entropy for ``"verdicts"``), then the smaller alpha. With ``by``, coordinate ascent
    starts from the global optimum and optimises one group's alpha at a time, exactly as
    above with the others held fixed, in the order of the groups, until a pass brings no
    improvement; the objective never decreases. The result is deterministic.

    References
    ----------
    Kofler F. et al. (2021), section 2.4 "Calibration of alpha", Tables 1-2.

    Examples
    --------
    Ten cases, one algorithm: Dice spread over 0.5..0.95.

    >>> dice = np.linspace(0.5, 0.95, 10).reshape(10, 1, 1, 1)
    >>> sim = xr.DataArray(dice, dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": [f"c{i}" for i in range(10)], "algorithm": ["x"],
    ...                            "label": ["t"], "metric": ["dice"]})
    >>> calibrate(sim)  # half the cases alarm: entropy ln 2, the most two bins allow
    0.0
    """
    rob = robust_cube(similarity, mad_scale, pool=pool)
    objective = check_calibration_objective(objective)
    by = check_by(by)
    grid = None if alphas is None else np.sort(check_alphas(alphas))
    if (objective == VERDICT_OBJECTIVE) != (verdicts is not None) or (
        objective == VERDICT_OBJECTIVE and quality is not None
    ):
        raise InputError(
            "`verdicts` goes with objective='verdicts' alone, which needs it and no `quality`; got "
            f"objective={objective!r}, verdicts {'None' if verdicts is None else 'given'}, quality "
            f"{'None' if quality is None else 'given'}."
        )
    if objective not in ("entropy", VERDICT_OBJECTIVE) and quality is None:
        raise InputError(
            f"`objective={objective!r}` needs `quality` (a DataArray over case, e.g. the "
            "fusion's true Dice); got None. Use objective='entropy' when no ground truth exists."
        )
    q = None if quality is None else _quality_values(rob, quality)
    rob.warn()
    n_cases = rob.signed.shape[0]
    group_shape = rob.mad.shape
    max_count = int(np.prod(group_shape))
    target: _Objective | VerdictAUROC
    if objective == VERDICT_OBJECTIVE:
        target = verdict_objective(rob.similarity.indexes["case"], verdicts, max_count)
        tiebreak = _Objective("entropy", None, max_count)
        undefined = ("the AUROC of the alarm count for a positive verdict", target.undefined_reason)
    else:
        target, tiebreak = _Objective(objective, q, max_count), None
        undefined = ("Pearson r of the alarm count with `quality`", "a constant alarm count or a constant quality")

    zero = np.zeros(n_cases, dtype=np.int64)
    everything = np.ones(group_shape, dtype=bool)
    found = _optimise_1d(rob, everything, zero, grid, target, tiebreak)
    if found is None:
        warnings.warn(
            f"{undefined[0]} is undefined for every alpha searched ({undefined[1]}); returning alpha = 0.0.",
            UndefinedValueWarning,
            stacklevel=2,
        )
        found = (0.0, math.nan)
    alpha0, best = found
    if not by:
        return alpha0

    sizes = [rob.similarity.sizes[d] for d in by]
    n_groups = int(np.prod(sizes))
    # group number of every (algorithm, label, metric) cell
    position = np.indices(group_shape)
    group_of = np.ravel_multi_index(tuple(position[GROUP_DIMS.index(d)] for d in by), sizes)
    alpha_g = np.full(n_groups, alpha0)
    if np.isfinite(best):
        for _ in range(100):
            previous = best
            for g in range(n_groups):
                cells = group_of == g
                flags = rob.alarm_values(alpha_g[group_of])
                others = flags[:, ~cells].sum(axis=1)
                step = _optimise_1d(rob, cells, others, grid, target, tiebreak)
                if step is not None and step[1] >= best - _TIE:
                    alpha_g[g], best = step[0], max(best, step[1])
            if best <= previous + _TIE:
                break
    return xr.DataArray(
        alpha_g.reshape(sizes),
        dims=by,
        coords={d: rob.similarity.coords[d].values for d in by},
        name="alpha",
        attrs={"objective": objective, "objective_value": best},
    )

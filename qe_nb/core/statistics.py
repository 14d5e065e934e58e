"""The small statistics every layer shares: Pearson r, entropy, median/MAD, per-case means,
AUROC and Spearman's rho of risk scores, and bootstrap intervals.

Each idea has one definition here; the core (``alarms``, ``calibration``, ``triage``), the
plots, the widgets and the command line call these instead of computing their own, so a
number shown in a figure is the number the calibration optimised.

Rules (DESIGN.md section 2):

- **Pearson r** is computed over the finite pairs only. It is NaN (a result, not an error)
  when fewer than two finite pairs remain or when either side is constant over them; with
  exactly two pairs r is +-1 and its p-value 1, as :func:`scipy.stats.pearsonr` gives.
- **Entropy** of alarm counts is the Shannon entropy, natural log (nats), of the histogram
  over the possible counts ``0..max_count``; empty bins contribute nothing.
- **Median and MAD** are taken over the finite values only; MAD is the raw median absolute
  deviation times ``scale``; both are NaN for a group without any finite value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.stats
import xarray as xr

from qe_nb.core.checks import check_risk
from qe_nb.exceptions import InputError

__all__ = [
    "pearson_r",
    "pearson_test",
    "pearson_rows",
    "count_entropy",
    "entropy_rows",
    "median_mad",
    "label_mean",
    "case_quality",
    "auroc_rows",
    "spearman_rows",
    "percentile_interval",
]


def pearson_rows(x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and two-sided p of every row of ``x`` (..., n) with ``q`` (n,).

    The vectorised form behind :func:`pearson_r` and the calibration sweep. All values must
    be finite (drop non-finite cases first, as :func:`pearson_r` does).

    Parameters
    ----------
    x : numpy.ndarray
        Shape ``(..., n)``: one series per row.
    q : numpy.ndarray
        Shape ``(n,)``: the series every row is correlated with.

    Returns
    -------
    r, p : numpy.ndarray
        Shape ``x.shape[:-1]``. NaN where a row or ``q`` is constant, and everywhere when
        ``n < 2``; with ``n == 2`` r is +-1 and p is 1. Otherwise equal to
        :func:`scipy.stats.pearsonr` (p from Student's t with ``n - 2`` degrees of freedom).

    Examples
    --------
    >>> r, p = pearson_rows(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 1.0, 1.0]]),
    ...                     np.array([1.0, 2.0, 4.0]))
    >>> r.round(4).tolist()
    [0.982, -0.982, nan]
    """
    x = np.asarray(x, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    n = q.size
    shape = x.shape[:-1]
    if n < 2:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    xc = x - x.mean(axis=-1, keepdims=True)
    qc = q - q.mean()
    sxx = np.einsum("...i,...i->...", xc, xc)
    sqq = float(qc @ qc)
    sxy = xc @ qc
    constant = (x.max(axis=-1) == x.min(axis=-1)) | (q.max() == q.min())
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(sxy / np.sqrt(sxx * sqq), -1.0, 1.0)
    r = np.where(constant, np.nan, r)
    if n == 2:
        p = np.where(np.isnan(r), np.nan, 1.0)
    else:
        dof = n - 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t = r * np.sqrt(dof / ((1.0 - r) * (1.0 + r)))
        p = 2.0 * scipy.stats.t.sf(np.abs(t), dof)
        p = np.where(np.isnan(r), np.nan, p)
    return r, p


def _finite_pairs(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or ys.ndim != 1 or xs.size != ys.size:
        raise InputError(
            "`x` and `y` must be 1-D and of the same length; got shapes "
            f"{xs.shape} and {ys.shape}. Align them by case first."
        )
    keep = np.isfinite(xs) & np.isfinite(ys)
    return xs[keep], ys[keep]


def pearson_test(x: object, y: object) -> tuple[float, float, int]:
    """Pearson r, its two-sided p-value and the number of finite pairs used.

    Parameters
    ----------
    x, y : array-like of float, 1-D, same length
        Paired values (e.g. alarm count and true Dice per case, in the same case order).
        Pairs where either value is not finite are left out.

    Returns
    -------
    r : float
        NaN when fewer than two finite pairs remain or when either side is constant.
    p : float
        Two-sided p-value (NaN where r is; 1.0 with two pairs).
    n : int
        The number of finite pairs.

    Raises
    ------
    InputError
        For inputs that are not 1-D or differ in length.

    Examples
    --------
    >>> r, p, n = pearson_test([1, 2, 3, 9], [1, 2, 4, np.nan])  # r = 9 / sqrt(84)
    >>> round(r, 4), n
    (0.982, 3)
    >>> pearson_test([2, 2, 2], [0.9, 0.8, 0.7])
    (nan, nan, 3)
    """
    xs, ys = _finite_pairs(x, y)
    r, p = pearson_rows(xs, ys)
    return float(r), float(p), int(xs.size)


def pearson_r(x: object, y: object) -> float:
    """Pearson r over the finite pairs; NaN when undefined (see :func:`pearson_test`).

    Examples
    --------
    >>> round(pearson_r([1, 2, 3], [1, 2, 4]), 4)  # 9 / sqrt(84)
    0.982
    >>> pearson_r([1, 2], [5, 5])
    nan
    """
    xs, ys = _finite_pairs(x, y)
    return float(pearson_rows(xs, ys)[0])


def entropy_rows(hist: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each histogram along the last axis; empty bins add nothing.

    Parameters
    ----------
    hist : numpy.ndarray
        Shape ``(..., k)``: non-negative bin counts.

    Returns
    -------
    numpy.ndarray
        Shape ``hist.shape[:-1]``: ``-sum(p_k ln p_k)``, ``p_k = hist_k / sum(hist)``; NaN
        for an all-zero histogram.

    Examples
    --------
    >>> entropy_rows(np.array([[1, 1], [4, 0]])).round(4).tolist()
    [0.6931, 0.0]
    """
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = hist / n
        terms = np.where(hist > 0, p * np.log(np.where(hist > 0, p, 1.0)), 0.0)
    out = -terms.sum(axis=-1) + 0.0  # + 0.0 turns -0.0 into 0.0
    return np.where(n[..., 0] > 0, out, np.nan)


def count_entropy(counts: object, *, max_count: int | None = None) -> float:
    """Shannon entropy (natural log) of the distribution of alarm counts over cases.

    Parameters
    ----------
    counts : xarray.DataArray or array-like of int, 1-D
        The alarm count per case (non-negative whole numbers).
    max_count : int, optional
        The largest possible count (``n_algorithms * n_labels * n_metrics``); the histogram
        runs over ``0..max_count``. Defaults to the largest count seen. Empty bins contribute
        nothing, so it only guards against counts above it.

    Returns
    -------
    float
        ``-sum(p_k * ln p_k)`` over the non-empty bins ``k``, ``p_k`` the share of cases with
        ``k`` alarms. 0 when every case has the same count; at most ``ln(max_count + 1)``.

    Raises
    ------
    InputError
        For counts that are not non-negative whole numbers, or exceed ``max_count``.

    Examples
    --------
    The paper's Table 2, row alpha = 0: 13, 8, 14 and 11 of 46 CT cases with 0-3 alarms.

    >>> round(count_entropy(np.repeat([0, 1, 2, 3], [13, 8, 14, 11]), max_count=3), 2)
    1.37
    """
    values = check_risk(counts)
    top = int(values.max())
    if max_count is not None:
        if (
            isinstance(max_count, (bool, np.bool_))
            or not isinstance(max_count, (int, np.integer))
            or max_count < 0
        ):
            raise InputError(f"`max_count` must be a non-negative int or None; got {max_count!r}.")
        if top > max_count:
            raise InputError(
                f"`risk` holds a count of {top}, above `max_count` = {int(max_count)}; pass the "
                "largest possible count (n_algorithms * n_labels * n_metrics) or None."
            )
        top = int(max_count)
    return float(entropy_rows(np.bincount(values, minlength=top + 1)))


def median_mad(values: np.ndarray, *, scale: float = 1.0, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Median and (scaled) median absolute deviation over the finite values along ``axis``.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape; non-finite entries (``inf``, NaN) are ignored.
    scale : float, default 1.0
        Factor on the raw MAD (1.4826 for the normal-consistent MAD of R's ``mad()``).
    axis : int, default 0
        The axis reduced (the ``case`` axis for thresholds).

    Returns
    -------
    median, mad : numpy.ndarray
        ``values``'s shape without ``axis``; NaN where a slice holds no finite value (no
        warning: that is a result, reported by the callers).

    Examples
    --------
    >>> m, d = median_mad(np.array([0.9, 0.8, 0.7, 0.85, 0.6, np.inf]))
    >>> float(m), round(float(d), 6)
    (0.8, 0.1)
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = np.where(np.isfinite(arr), arr, np.nan)
    with warnings.catch_warnings():
        # a slice without any finite value has NaN median and MAD, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(arr, axis=axis)
        mad = np.nanmedian(np.abs(arr - np.expand_dims(median, axis)), axis=axis) * scale
    return median, mad


def label_mean(similarity: xr.DataArray, *, name: str = "mean", skipna: bool = False) -> xr.DataArray:
    """Average a cube over its structures, keeping a one-entry ``label`` dim.

    The paper's MR experiment raises one Dice and one Hausdorff alarm per algorithm (its
    Table 1 counts 0-10 for 5 algorithms x 2 metrics), from values averaged over the tumour
    structures; this gives that cube.

    Parameters
    ----------
    similarity : xarray.DataArray
        Any cube with a ``label`` dim (``similarity``, ``quality``, ...).
    name : str, default "mean"
        The one label of the result.
    skipna : bool, default False
        False: a non-finite value in any structure makes the mean non-finite, so it still
        raises its alarm. True: NaN values are left out (``inf`` still propagates).

    Returns
    -------
    xarray.DataArray
        Same dims (``label`` of length 1, at the same position), name and attrs; a
        ``label_values`` coord, when present, becomes ``"mean of a,b,..."``.

    Raises
    ------
    InputError
        For anything but a DataArray with a ``label`` dim.

    Examples
    --------
    >>> da = xr.DataArray([[1.0, 0.5]], dims=("case", "label"), coords={"label": ["a", "b"]})
    >>> label_mean(da).sel(label="mean").values.tolist()
    [0.75]
    """
    if not isinstance(similarity, xr.DataArray) or "label" not in similarity.dims:
        raise InputError(
            "`similarity` must be a DataArray with a 'label' dim; got "
            f"{getattr(similarity, 'dims', type(similarity).__name__)}."
        )
    out = similarity.mean("label", skipna=skipna).expand_dims(
        label=[name], axis=similarity.dims.index("label")
    )
    if "label_values" in similarity.coords:
        text = "mean of " + ",".join(map(str, similarity.label.values))
        out = out.assign_coords(label_values=("label", [text]))
    out.name = similarity.name
    out.attrs = dict(similarity.attrs)
    return out


def case_quality(
    quality: xr.DataArray,
    metric: str = "dice",
    *,
    skipna: bool = False,
    labels: Sequence[str] | str | None = None,
) -> xr.DataArray:
    """The true quality per case: one metric of ``quality``, averaged over the labels.

    Parameters
    ----------
    quality : xarray.DataArray
        Fusion-vs-reference scores, dims ``(case, label, metric)`` (``scores["quality"]``);
        a cube without ``label`` is taken as it is.
    metric : str, default "dice"
        The metric id to take.
    skipna : bool, default False
        False: a case with a NaN in any label gets NaN (it is then left out of correlations,
        never counted as good). True: the mean over the labels that have a value.
    labels : sequence of str, optional
        Only these labels are averaged (default all).

    Returns
    -------
    xarray.DataArray
        Over ``case``, float, named after ``metric``.

    Raises
    ------
    InputError
        For a cube without ``case`` or ``metric`` dims, or an unknown metric or label.

    Examples
    --------
    >>> q = xr.DataArray(np.array([[[0.9], [np.nan]], [[0.8], [0.6]]]),
    ...                  dims=("case", "label", "metric"),
    ...                  coords={"case": ["a", "b"], "label": ["wt", "et"], "metric": ["dice"]})
    >>> case_quality(q).values.round(2).tolist()
    [nan, 0.7]
    >>> case_quality(q, skipna=True).values.round(2).tolist()
    [0.9, 0.7]
    """
    if not isinstance(quality, xr.DataArray) or not {"case", "metric"} <= set(quality.dims):
        raise InputError(
            "`quality` must be a DataArray over (case, label, metric), e.g. scores['quality']; "
            f"got {getattr(quality, 'dims', type(quality).__name__)}."
        )
    known = [str(m) for m in quality["metric"].values]
    if metric not in known:
        raise InputError(f"Unknown `metric` {metric!r} in `quality`; expected one of {known}.")
    q = quality.sel(metric=metric, drop=True)
    if "label" in q.dims:
        if labels is not None:
            wanted = [labels] if isinstance(labels, str) else list(labels)
            have = [str(v) for v in q["label"].values]
            missing = [lab for lab in wanted if lab not in have]
            if missing:
                raise InputError(f"Unknown `labels` {missing}; expected some of {have}.")
            q = q.sel(label=wanted)
        q = q.mean("label", skipna=skipna)
    extra = [d for d in q.dims if d != "case"]
    if extra:
        raise InputError(
            f"`quality` has dims {tuple(quality.dims)}; expected (case, label, metric). "
            f"Select or reduce {extra} first."
        )
    return q.astype(np.float64).rename(metric)



def auroc_rows(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """AUROC of every row of ``scores`` for the matching row of ``positives``.

    Parameters
    ----------
    scores : numpy.ndarray
        Shape ``(..., n)``, higher = riskier. NaN entries are left out of their row.
    positives : numpy.ndarray of bool
        Same shape (or broadcastable): the units that should score high (failed cases).

    Returns
    -------
    numpy.ndarray
        Shape ``scores.shape[:-1]``: the Mann-Whitney U of the positives' scores against the
        others', divided by ``n1 * n0`` -- the probability that a positive outscores a
        negative, ties counting half. NaN where a row has no positive or no negative.

    Notes
    -----
    ``U = (sum of the mid-ranks of the positives) - n1 (n1 + 1) / 2``, as
    :func:`scipy.stats.mannwhitneyu` computes it.

    Examples
    --------
    >>> auroc_rows(np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]]), np.array([True, False, False]))
    array([1. , 0.5])
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.broadcast_to(np.asarray(positives, dtype=bool), scores.shape)
    valid = ~np.isnan(scores)
    ranks = scipy.stats.rankdata(scores, axis=-1, nan_policy="omit") if not valid.all() else (
        scipy.stats.rankdata(scores, axis=-1)
    )
    hits = positives & valid
    n1 = hits.sum(axis=-1)
    n0 = valid.sum(axis=-1) - n1
    u = np.where(hits, ranks, 0.0).sum(axis=-1) - n1 * (n1 + 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


def spearman_rows(scores: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Spearman's rho of every row of ``scores`` with the matching row of ``quality``.

    Parameters
    ----------
    scores, quality : numpy.ndarray
        Same shape (or broadcastable), ``(..., n)``. Pairs where either is NaN are left out.

    Returns
    -------
    numpy.ndarray
        Shape of the rows: Pearson r of the mid-ranks, equal to
        :func:`scipy.stats.spearmanr`; NaN where a row is constant or has fewer than two pairs.

    Examples
    --------
    >>> spearman_rows(np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]), np.array([0.9, 0.5, 0.1]))
    array([-1. ,  0.5])
    """
    a, b = np.broadcast_arrays(np.asarray(scores, dtype=np.float64), np.asarray(quality, dtype=np.float64))
    valid = ~(np.isnan(a) | np.isnan(b))
    if valid.all():
        ra, rb = scipy.stats.rankdata(a, axis=-1), scipy.stats.rankdata(b, axis=-1)
    else:
        ra = scipy.stats.rankdata(np.where(valid, a, np.nan), axis=-1, nan_policy="omit")
        rb = scipy.stats.rankdata(np.where(valid, b, np.nan), axis=-1, nan_policy="omit")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without a pair: NaN by design
        ra = ra - np.nanmean(ra, axis=-1, keepdims=True)
        rb = rb - np.nanmean(rb, axis=-1, keepdims=True)
        ra, rb = np.where(valid, ra, 0.0), np.where(valid, rb, 0.0)
        return (ra * rb).sum(-1) / np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))


def percentile_interval(samples: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of ``samples`` over their finite values.

    Parameters
    ----------
    samples : numpy.ndarray
        The statistic over the bootstrap resamples (NaN where a resample leaves it undefined,
        e.g. an AUROC without a positive).
    level : float, default 0.95
        Coverage; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles.

    Returns
    -------
    (float, float)
        ``(nan, nan)`` when no sample is finite.

    Examples
    --------
    >>> percentile_interval(np.arange(41.0))  # 2.5 % and 97.5 % of 0..40
    (1.0, 39.0)
    """
    values = np.asarray(samples, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = round(50.0 * (1.0 - level), 10)  # 2.5, not 2.5000000000000022, at 0.95
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)

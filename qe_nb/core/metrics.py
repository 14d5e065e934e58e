"""Similarity metrics between two binary masks, fast on cropped boxes: the public API.

One pair of masks (a fusion and a candidate, or a reference and a fusion) gives Dice,
Jaccard, Hausdorff distances (exact, robust, MedPy's), the average symmetric surface
distance, the normalised surface Dice and the absolute volume difference. The semantics are
those of DESIGN §2:

- ``hd`` is the exact symmetric Hausdorff distance between the two voxel *sets* (as
  SimpleITK's ``HausdorffDistanceImageFilter``);
- ``hd95``, ``assd`` and ``nsd`` follow DeepMind's ``surface-distance`` (surfels on the
  2x2x2 corner grid, weighted by their area), as pymia and the paper did;
- ``hd95_medpy`` follows ``medpy.metric.binary.hd95`` (pooled voxel surface distances);
- both masks empty: Dice, Jaccard and NSD 1, every distance 0; exactly one empty: Dice,
  Jaccard and NSD 0, every distance ``inf``. These are results, never errors.

Masks are 3-D ``(z, y, x)`` or 2-D ``(y, x)`` (microscopy, X-ray, dermoscopy) under the same
rules; spacing is per axis in numpy order, in millimetres, or in pixels for a 2-D format that
stores no spacing (the scores cube then says "px"). The registry of metric ids lives in
:mod:`qe_nb.core.metric_specs` (re-exported here), the per-mask features in
:mod:`qe_nb.core.masks` and the distance engine, with how it is fast, in
:mod:`qe_nb.core.distances`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np

from qe_nb.core.distances import MaskPair, pair_metrics, pairs_table
from qe_nb.core.masks import (
    check_mask,
    check_mask_pair,
    check_spacing,
    check_surfel_ndim,
    mask_features,
)
from qe_nb.core.metric_specs import (
    METRICS,
    MetricSpec,
    check_metric_ids,
    higher_is_better,
    metric_spec,
    units_of,
)
from qe_nb.exceptions import InputError

__all__ = [
    "METRICS",
    "MetricSpec",
    "metric_spec",
    "higher_is_better",
    "units_of",
    "dice",
    "jaccard",
    "hausdorff",
    "assd",
    "nsd",
    "abs_volume_diff",
    "compute_metrics",
    "compute_metrics_many",
    "metrics_of_pairs",
]

_DEFINITIONS = ("surface-distance", "medpy")


def _check_number(value: object, name: str, *, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"`{name}` must be a number; got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        upper = f" and <= {high:g}" if math.isfinite(high) else ""
        raise InputError(f"`{name}` must be a finite number >= {low:g}{upper}; got {value!r}.")
    return value


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks.

    Parameters
    ----------
    a, b : ndarray of bool, same shape
        The masks (any shape). Integer arrays holding only 0 and 1 are accepted.

    Returns
    -------
    float
        ``2 |a & b| / (|a| + |b|)`` in [0, 1].

    Raises
    ------
    InputError
        If the shapes differ or an input is not a 0/1 mask.

    Notes
    -----
    Both masks empty: 1 (they agree); exactly one empty: 0 (Kofler et al. 2021, BraTS
    convention). Equals ``medpy.metric.binary.dc`` wherever that is defined.

    Examples
    --------
    >>> a = np.zeros((4, 4, 4), bool); a[1:3, 1:3, 0:2] = True
    >>> b = np.zeros_like(a); b[1:3, 1:3, 1:3] = True
    >>> dice(a, b)
    0.5
    >>> dice(np.zeros(3, bool), np.zeros(3, bool))
    1.0
    """
    a, b = check_mask_pair(a, b)
    total = np.count_nonzero(a) + np.count_nonzero(b)
    if total == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(a & b) / total)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard index (intersection over union) of two boolean masks.

    Parameters
    ----------
    a, b : ndarray of bool, same shape
        The masks (any shape). Integer arrays holding only 0 and 1 are accepted.

    Returns
    -------
    float
        ``|a & b| / |a | b|`` in [0, 1].

    Raises
    ------
    InputError
        If the shapes differ or an input is not a 0/1 mask.

    Notes
    -----
    Both masks empty: 1; exactly one empty: 0. ``jaccard = dice / (2 - dice)``.

    Examples
    --------
    >>> a = np.zeros((4, 4, 4), bool); a[1:3, 1:3, 0:2] = True
    >>> b = np.zeros_like(a); b[1:3, 1:3, 1:3] = True
    >>> round(jaccard(a, b), 4)
    0.3333
    """
    a, b = check_mask_pair(a, b)
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def hausdorff(
    a: np.ndarray,
    b: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    percentile: float = 100.0,
    definition: str = "surface-distance",
) -> float:
    """Hausdorff distance (maximum or percentile) between two masks, in mm.

    Parameters
    ----------
    a, b : ndarray of bool, same shape
        The masks (any shape for ``percentile=100`` or ``definition="medpy"``; 2-D or 3-D
        for the surface-distance percentile). Integer arrays of 0 and 1 are accepted.
    spacing : sequence of float, optional
        Voxel size in mm per axis, numpy (z, y, x) or (y, x) order. Default 1.0 each.
    percentile : float, default 100.0
        In [0, 100].
    definition : {"surface-distance", "medpy"}, default "surface-distance"
        ``"surface-distance"``: with ``percentile=100`` the exact symmetric Hausdorff
        distance between the two voxel sets (metric ``hd``, equal to SimpleITK's
        ``HausdorffDistanceImageFilter``); below 100 the larger of the two surfel-area-weighted
        percentiles of the directed surface distances (``surface_distance.
        compute_robust_hausdorff``; ``hd95`` at 95). ``"medpy"``: ``np.percentile`` of the
        pooled distances between the 6-connected boundary voxels of both directions
        (``medpy.metric.binary.hd95`` at 95, ``medpy.metric.binary.hd`` at 100; metric
        ``hd95_medpy``).

    Returns
    -------
    float
        The distance in mm; 0 when both masks are empty, ``inf`` when exactly one is.

    Raises
    ------
    InputError
        If the shapes differ, an input is not a 0/1 mask, ``spacing`` has the wrong length or
        a non-positive or non-finite value, ``percentile`` is outside [0, 100] or
        ``definition`` is unknown.

    Notes
    -----
    For sets A and B, ``hd = max(max_{x in A} d(x, B), max_{y in B} d(y, A))``. The maximum
    over A is not always on A's surface (A may hold a point of B's medial axis), so every
    voxel of A outside B is measured, against a k-d tree of B's boundary voxels. MedPy's
    ``hd`` measures boundary to boundary and overestimates when one mask lies inside the other.

    References
    ----------
    Kofler et al. 2021, Front. Neurosci. 15:752780; Nikolov et al. 2021 (surface-distance);
    MedPy ``medpy.metric.binary``.

    Examples
    --------
    Two voxels three apart along x:

    >>> a = np.zeros((1, 1, 5), bool); a[0, 0, 0] = True
    >>> b = np.zeros_like(a); b[0, 0, 3] = True
    >>> hausdorff(a, b)
    3.0
    >>> hausdorff(a, b, spacing=(1.0, 1.0, 0.5))
    1.5
    >>> hausdorff(a, np.zeros_like(a))
    inf
    """
    a, b = check_mask_pair(a, b)
    sp = check_spacing(spacing, a.ndim)
    percentile = _check_number(percentile, "percentile", low=0.0, high=100.0)
    if definition not in _DEFINITIONS:
        raise InputError(
            f"`definition` must be one of {list(_DEFINITIONS)}; got {definition!r}."
        )
    if definition == "surface-distance" and percentile < 100.0:
        check_surfel_ndim(["hd95"], a.ndim)
    fa, fb = mask_features(a, sp), mask_features(b, sp)
    if fa is None or fb is None:
        return 0.0 if fa is None and fb is None else math.inf
    pair = MaskPair(fa, fb)
    if definition == "medpy":
        return pair.medpy_percentile(percentile)
    if percentile == 100.0:
        return pair.hd()
    return pair.robust_hd(percentile)


def assd(a: np.ndarray, b: np.ndarray, *, spacing: Sequence[float] | None = None) -> float:
    """Average symmetric surface distance, in mm, as surface-distance weighs it.

    Parameters
    ----------
    a, b : ndarray of bool, same shape, 2-D or 3-D
        The masks. Integer arrays of 0 and 1 are accepted.
    spacing : sequence of float, optional
        Voxel size in mm per axis, numpy (z, y, x) or (y, x) order. Default 1.0 each.

    Returns
    -------
    float
        0 when both masks are empty, ``inf`` when exactly one is.

    Raises
    ------
    InputError
        For mismatched shapes, non-mask inputs, a bad ``spacing`` or masks that are not 2-D
        or 3-D.

    Notes
    -----
    ``surface_distance.compute_average_surface_distance`` returns the two directed averages,
    each weighted by surfel area: ``d(A->B) = sum_s area_s d(s, B) / sum_s area_s`` over the
    surfels of A. ``assd`` is their plain mean, ``(d(A->B) + d(B->A)) / 2`` (not a pooled
    average over the surfels of both surfaces).

    Examples
    --------
    >>> a = np.zeros((3, 3, 3), bool); a[1, 1, 1] = True
    >>> assd(a, a)
    0.0
    """
    a, b = check_mask_pair(a, b)
    sp = check_spacing(spacing, a.ndim)
    check_surfel_ndim(["assd"], a.ndim)
    (value,) = pair_metrics(
        mask_features(a, sp), mask_features(b, sp), ["assd"], voxel_volume=1.0, nsd_tolerance=0.0
    )
    return value


def nsd(
    a: np.ndarray,
    b: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    tolerance: float = 1.0,
) -> float:
    """Normalised surface Dice at a tolerance in mm (surface-distance's surface Dice).

    Parameters
    ----------
    a, b : ndarray of bool, same shape, 2-D or 3-D
        The masks. Integer arrays of 0 and 1 are accepted.
    spacing : sequence of float, optional
        Voxel size in mm per axis, numpy (z, y, x) or (y, x) order. Default 1.0 each.
    tolerance : float, default 1.0
        Surface elements closer than or at this distance (mm) to the other surface count as
        overlapping; >= 0.

    Returns
    -------
    float
        In [0, 1]; 1 when both masks are empty, 0 when exactly one is.

    Raises
    ------
    InputError
        For mismatched shapes, non-mask inputs, a bad ``spacing`` or ``tolerance``, or masks
        that are not 2-D or 3-D.

    Notes
    -----
    ``(sum of A's surfel areas within tolerance of B + the same for B) / (area A + area B)``,
    as ``surface_distance.compute_surface_dice_at_tolerance`` (Nikolov et al. 2021).

    Examples
    --------
    >>> a = np.zeros((4, 4, 4), bool); a[1:3, 1:3, 1:3] = True
    >>> nsd(a, a)
    1.0
    >>> nsd(a, np.zeros_like(a))
    0.0
    """
    a, b = check_mask_pair(a, b)
    sp = check_spacing(spacing, a.ndim)
    tolerance = _check_number(tolerance, "tolerance", low=0.0)
    check_surfel_ndim(["nsd"], a.ndim)
    (value,) = pair_metrics(
        mask_features(a, sp), mask_features(b, sp), ["nsd"], voxel_volume=1.0, nsd_tolerance=tolerance
    )
    return value


def abs_volume_diff(a: np.ndarray, b: np.ndarray, *, spacing: Sequence[float] | None = None) -> float:
    """Absolute difference of the two masks' volumes, in mm^3.

    Parameters
    ----------
    a, b : ndarray of bool, same shape
        The masks (any shape). Integer arrays of 0 and 1 are accepted.
    spacing : sequence of float, optional
        Voxel size in mm per axis, numpy order. Default 1.0 each.

    Returns
    -------
    float
        ``| |a| - |b| | * prod(spacing)``. 0 when both are empty; the other mask's volume
        (finite) when exactly one is.

    Raises
    ------
    InputError
        For mismatched shapes, non-mask inputs or a bad ``spacing``.

    Examples
    --------
    >>> a = np.zeros((2, 2, 2), bool); a[0] = True
    >>> abs_volume_diff(a, np.zeros_like(a), spacing=(2.0, 1.0, 1.0))
    8.0
    """
    a, b = check_mask_pair(a, b)
    sp = check_spacing(spacing, a.ndim)
    return abs(int(np.count_nonzero(a)) - int(np.count_nonzero(b))) * math.prod(sp)


def compute_metrics(
    a: np.ndarray,
    b: np.ndarray,
    metrics: str | Sequence[str] = ("dice", "hd95"),
    *,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float = 1.0,
) -> dict[str, float]:
    """Every requested metric of one pair of masks, sharing the work between them.

    The scoring pipeline's kernel: both masks are cropped once to their bounding boxes
    (padded by one voxel), and one set of boundaries, surfels and k-d trees serves ``hd``,
    ``hd95``, ``hd95_medpy``, ``assd`` and ``nsd``.

    Parameters
    ----------
    a, b : ndarray of bool, same shape
        Typically (``fused``, ``candidate``) or (``reference``, ``fused``). Every metric is
        symmetric. Integer arrays of 0 and 1 are accepted.
    metrics : str or sequence of str, default ("dice", "hd95")
        Ids from :data:`METRICS`.
    spacing : sequence of float, optional
        Voxel size in mm per axis, numpy (z, y, x) or (y, x) order. Default 1.0 each.
    nsd_tolerance : float, default 1.0
        Tolerance of ``nsd`` in mm.

    Returns
    -------
    dict of str to float
        Metric id -> value, in the order requested.

    Raises
    ------
    InputError
        For an unknown metric id, mismatched shapes, non-mask inputs, a bad ``spacing`` or
        ``nsd_tolerance``, or surfel metrics on masks that are not 2-D or 3-D.

    Notes
    -----
    Empty-mask rules (DESIGN §2): both empty gives Dice, Jaccard, NSD 1 and every distance
    0; exactly one empty gives Dice, Jaccard, NSD 0 and every distance ``inf``. See
    :data:`METRICS` for each definition.

    Examples
    --------
    >>> a = np.zeros((1, 1, 5), bool); a[0, 0, 0] = True
    >>> b = np.zeros_like(a); b[0, 0, 3] = True
    >>> compute_metrics(a, b, ["dice", "hd", "hd95_medpy"])
    {'dice': 0.0, 'hd': 3.0, 'hd95_medpy': 3.0}

    2-D masks take a (y, x) spacing: two pixels four columns of 0.5 mm apart.

    >>> a2 = np.zeros((3, 7), bool); a2[1, 1] = True
    >>> b2 = np.zeros_like(a2); b2[1, 5] = True
    >>> compute_metrics(a2, b2, ["hd", "hd95"], spacing=(2.0, 0.5))
    {'hd': 2.0, 'hd95': 2.0}
    """
    ids = check_metric_ids(metrics)
    a, b = check_mask_pair(a, b)
    sp = check_spacing(spacing, a.ndim)
    tolerance = _check_number(nsd_tolerance, "nsd_tolerance", low=0.0)
    check_surfel_ndim(ids, a.ndim)
    values = pair_metrics(
        mask_features(a, sp),
        mask_features(b, sp),
        ids,
        voxel_volume=math.prod(sp),
        nsd_tolerance=tolerance,
    )
    return dict(zip(ids, values))


def compute_metrics_many(
    fused: np.ndarray,
    candidates: np.ndarray,
    metrics: str | Sequence[str] = ("dice", "hd95"),
    *,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float = 1.0,
) -> np.ndarray:
    """The requested metrics between one fused mask and each of several candidates.

    Same values as :func:`compute_metrics` pair by pair, but the fused mask's crop,
    boundaries, surfels and k-d trees are built once.

    Parameters
    ----------
    fused : ndarray of bool
        The fused mask (any shape; 2-D or 3-D for surfel metrics).
    candidates : ndarray of bool, shape ``(n, *fused.shape)``
        The candidates stacked on a leading axis (e.g. the ``algorithm`` dim).
    metrics : str or sequence of str, default ("dice", "hd95")
        Ids from :data:`METRICS`.
    spacing : sequence of float, optional
        Voxel size in mm per axis of ``fused``, numpy (z, y, x) or (y, x) order. Default 1.0 each.
    nsd_tolerance : float, default 1.0
        Tolerance of ``nsd`` in mm.

    Returns
    -------
    ndarray of float, shape ``(n, len(metrics))``
        Row i holds candidate i's metrics, columns in the order of ``metrics``.

    Raises
    ------
    InputError
        As :func:`compute_metrics`, and when ``candidates`` does not have shape
        ``(n, *fused.shape)``.

    Examples
    --------
    >>> fused = np.zeros((1, 1, 5), bool); fused[0, 0, 1:3] = True
    >>> candidates = np.zeros((2, 1, 1, 5), bool)
    >>> candidates[0, 0, 0, 1:3] = True; candidates[1, 0, 0, 4] = True
    >>> compute_metrics_many(fused, candidates, ["dice", "hd"])
    array([[1., 0.],
           [0., 3.]])
    """
    ids = check_metric_ids(metrics)
    fused = check_mask(fused, "fused")
    candidates = check_mask(candidates, "candidates", stacked=True)
    if candidates.shape[1:] != fused.shape:
        raise InputError(
            f"`candidates` must have shape (n, *fused.shape) = (n, {', '.join(map(str, fused.shape))}); "
            f"got {candidates.shape}."
        )
    sp = check_spacing(spacing, fused.ndim)
    tolerance = _check_number(nsd_tolerance, "nsd_tolerance", low=0.0)
    check_surfel_ndim(ids, fused.ndim)
    pairs = [(0, i + 1) for i in range(candidates.shape[0])]
    return pairs_table([fused, *candidates], pairs, ids, sp, tolerance)


def metrics_of_pairs(
    masks: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    metrics: str | Sequence[str] = ("dice", "hd95"),
    *,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float = 1.0,
) -> np.ndarray:
    """The requested metrics of chosen pairs of masks, each mask prepared once.

    Same values as :func:`compute_metrics` pair by pair. A mask in several pairs (a
    candidate compared with the fusion and with the reference) has its crop, boundaries,
    surfels and k-d trees built once.

    Parameters
    ----------
    masks : ndarray of bool, shape ``(n, *shape)``
        The masks stacked on a leading axis.
    pairs : sequence of (int, int)
        Indices into ``masks`` of each pair to measure.
    metrics : str or sequence of str, default ("dice", "hd95")
        Ids from :data:`METRICS`.
    spacing : sequence of float, optional
        Voxel size in mm per axis, numpy (z, y, x) or (y, x) order. Default 1.0 each.
    nsd_tolerance : float, default 1.0
        Tolerance of ``nsd`` in mm.

    Returns
    -------
    ndarray of float, shape ``(len(pairs), len(metrics))``

    Raises
    ------
    InputError
        As :func:`compute_metrics`, and for a pair index outside ``masks``.

    Examples
    --------
    >>> masks = np.zeros((3, 1, 1, 5), bool)
    >>> masks[0, 0, 0, 1:3] = True; masks[1, 0, 0, 1:3] = True; masks[2, 0, 0, 4] = True
    >>> metrics_of_pairs(masks, [(0, 1), (0, 2), (1, 2)], ["dice", "hd"])
    array([[1., 0.],
           [0., 3.],
           [0., 3.]])
    """
    ids = check_metric_ids(metrics)
    masks = check_mask(masks, "masks", stacked=True)
    if masks.ndim < 2:
        raise InputError(f"`masks` must stack masks on a leading axis; got shape {masks.shape}.")
    sp = check_spacing(spacing, masks.ndim - 1)
    tolerance = _check_number(nsd_tolerance, "nsd_tolerance", low=0.0)
    check_surfel_ndim(ids, masks.ndim - 1)
    checked = []
    for pair in pairs:
        try:
            i, j = (operator.index(v) for v in pair)
        except (TypeError, ValueError):
            raise InputError(f"`pairs` must hold pairs of integer indices; got {pair!r}.") from None
        if not (0 <= i < len(masks) and 0 <= j < len(masks)):
            raise InputError(f"`pairs` holds {pair!r}, outside the {len(masks)} masks.")
        checked.append((i, j))
    return pairs_table(masks, checked, ids, sp, tolerance)

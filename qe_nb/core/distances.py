"""The distance engine behind the metrics: nearest distances between two masks, fast.

The semantics (which Hausdorff, which HD95, the empty-mask rules) are those of DESIGN §2 and
are documented once, in :mod:`qe_nb.core.metrics`, whose public functions run on this engine.

Spacing is in millimetres in numpy order ``(z, y, x)``.

How it is fast: every mask is cropped to its bounding box padded by one voxel, and a pair is
measured in the union of the two boxes. Nearest distances are needed only for the points that
are not shared (the voxels of one mask outside the other, the surface corners of one mask
that are not surface corners of the other). Most lie within a few voxels of the other mask:
an exact offset scan finds them (the integer offsets within about six voxels, sorted by the
distance scipy's arithmetic gives them, tried nearest first for all points at once). The
few farther points go to a k-d tree over the other mask's boundary voxels or surface corners,
or, when they are many, to scipy's exact distance transform of the box. The exact Hausdorff
distance, a maximum, measures one voxel per block of about 4 x 4 x 4 and then only the blocks
that could still hold the maximum. Every path gives the same floats as scipy's distance
transform. A mask's surfaces and trees are built once and reused for every pair it is in
(:func:`compute_metrics_many`, :func:`metrics_of_pairs`).

The ``edt`` package was considered for distance transforms and rejected: it returns float32,
which misses the 1e-6 mm agreement with the reference implementations on distances of tens
of millimetres.
"""


from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from qe_nb.core.masks import MaskFeatures, embed, mask_features
from qe_nb.core.metric_specs import METRICS

__all__ = ["MaskPair", "pair_metrics", "pairs_table"]

# metrics that are 1 when both masks are empty and 0 when one is (the others are distances,
# 0 and inf, and the volume difference)
_OVERLAPS = tuple(m for m, spec in METRICS.items() if spec.higher_is_better)


# Above this fraction of unresolved query points per frame cell, one distance transform of
# the frame is cheaper than k-d tree queries (measured on the BraTS-size synthetic cohort).
_EDT_FRACTION = 0.02

# The offset scan looks this many integer offsets around each query point (all those within
# a physical radius, nearest first) before it hands the rest to a k-d tree.
_SCAN_OFFSETS = 600
_SCAN_BATCHES = (7, 32, 128, 256)


@dataclass(frozen=True)
class _Offsets:
    """Integer offsets within a radius, sorted by their exact distance (scipy's arithmetic)."""

    steps: np.ndarray  # (k, ndim) int64, nearest first, without the zero offset
    distances: np.ndarray  # (k,) float64 mm
    pad: tuple[int, ...]  # the largest |step| per axis: the margin a frame needs


def _exact_distance(offsets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """sqrt of the squared scaled offsets added axis by axis, as
    ``scipy.ndimage.distance_transform_edt(..., sampling=spacing)`` computes its values, so
    the floats agree to the last bit and a distance equal to an NSD tolerance falls on the
    same side as in surface-distance."""
    offsets = np.asarray(offsets, dtype=np.float64)
    squared = np.zeros(len(offsets))
    for ax in range(offsets.shape[1]):
        component = offsets[:, ax] * spacing[ax]
        squared += component * component
    return np.sqrt(squared)


@lru_cache(maxsize=16)
def _scan_offsets(spacing: tuple[float, ...]) -> _Offsets:
    sp = np.asarray(spacing)
    radius = 6.0 * float(sp.min())
    while True:
        reach = np.floor(radius / sp).astype(int)
        grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
        steps = np.stack([g.ravel() for g in grids], axis=1)
        dist = _exact_distance(steps, sp)
        keep = (dist <= radius) & (dist > 0)
        if np.count_nonzero(keep) <= _SCAN_OFFSETS or radius <= float(sp.min()):
            break
        radius *= 0.85
    steps, dist = steps[keep], dist[keep]
    order = np.argsort(dist, kind="stable")
    steps, dist = steps[order], dist[order]
    pad = tuple(int(np.abs(steps[:, ax]).max()) if len(steps) else 0 for ax in range(len(spacing)))
    return _Offsets(steps, dist, pad)


def _scan(cells: np.ndarray, target: np.ndarray, offsets: _Offsets) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each flat index ``cells`` of the frame to the nearest True cell of
    ``target`` found among ``offsets`` (nearest first), and the positions (in ``cells``) of
    those with no target within the offsets' radius, whose distance is NaN.

    ``target`` is C-contiguous and its margin holds ``offsets.pad`` cells beyond every query
    cell, so a flat step never wraps to another row. Exact: the first offset that hits is a
    nearest target cell, since offsets come sorted by distance.
    """
    out = np.full(cells.size, np.nan)
    strides = np.array(target.strides, dtype=np.int64) // target.itemsize
    flat_steps = offsets.steps @ strides
    flat_target = target.reshape(-1)
    todo = np.arange(cells.size)
    start = 0
    for size in (*_SCAN_BATCHES, len(flat_steps)):
        stop = min(start + size, len(flat_steps))
        if start >= stop or todo.size == 0:
            break
        window = flat_target[cells[todo, None] + flat_steps[None, start:stop]]
        hit = window.any(axis=1)
        if hit.any():
            out[todo[hit]] = offsets.distances[start + window[hit].argmax(axis=1)]
            todo = todo[~hit]
        start = stop
    return out, todo


def _distances(
    query: np.ndarray,
    target: np.ndarray,
    origin: np.ndarray,
    spacing: np.ndarray,
    tree_of_target=None,
    *,
    cells: np.ndarray | None = None,
) -> np.ndarray:
    """Distances (mm) from the True cells of ``query`` (or from the flat indices ``cells``)
    to the nearest True cell of ``target``, in C order. One frame holds both, all of
    ``target`` and the scan margin of :func:`_scan_offsets`.

    Most cells lie within a few voxels of the target: an offset scan, nearest first, finds
    them. The rest go to a k-d tree over the target's relevant points (``tree_of_target``
    returns it with its points, built lazily by the caller's mask), or to scipy's exact
    distance transform of the frame when they are many. All three give the same floats.
    """
    if cells is None:
        cells = np.flatnonzero(query)
    if cells.size == 0:
        return np.zeros(0)
    out, todo = _scan(cells, target, _scan_offsets(tuple(spacing.tolist())))
    if todo.size == 0:
        return out
    if tree_of_target is None or todo.size > _EDT_FRACTION * target.size:
        out[todo] = ndimage.distance_transform_edt(~target, sampling=spacing).reshape(-1)[cells[todo]]
        return out
    tree, tree_points = tree_of_target()
    points = np.column_stack(np.unravel_index(cells[todo], target.shape)) + origin
    idx = tree.query(points * spacing)[1]
    out[todo] = _exact_distance(tree_points[idx] - points, spacing)
    return out


# Directed Hausdorff distances of more query voxels than this are pruned by blocks.
_PRUNE_ABOVE = 4096


def _farthest(query: np.ndarray, target: np.ndarray, origin: np.ndarray, spacing: np.ndarray,
              tree_of_target) -> float:
    """The largest distance (mm) from a True cell of ``query`` to ``target`` (0 if none):
    a directed Hausdorff distance, exact, without measuring every cell.

    The frame is cut into blocks of about four voxels a side. One query cell per block is
    measured; a block whose measured cell plus the block's diagonal cannot exceed the
    largest measured distance cannot hold the answer (distance to a set changes no faster
    than position), and only the cells of the remaining blocks are measured.
    """
    cells = np.flatnonzero(query)
    if cells.size <= _PRUNE_ABOVE:
        dist = _distances(query, target, origin, spacing, tree_of_target, cells=cells)
        return float(dist.max()) if dist.size else 0.0
    step = np.maximum(1, np.round(4.0 * spacing.min() / spacing)).astype(int)
    diagonal = float(np.sqrt(np.sum(((step - 1) * spacing) ** 2)))
    nblocks = -(-np.asarray(query.shape) // step)
    padded = np.zeros(tuple(nblocks * step), dtype=bool)
    padded[tuple(slice(0, n) for n in query.shape)] = query
    nd = query.ndim
    split = tuple(int(v) for pair in zip(nblocks, step) for v in pair)  # (block, within) per axis
    blocks = padded.reshape(split).transpose(*range(0, 2 * nd, 2), *range(1, 2 * nd, 2))
    blocks = blocks.reshape(*nblocks, -1)
    occupied = blocks.any(axis=-1)
    first = blocks[occupied].argmax(axis=-1)
    block_index = np.argwhere(occupied)
    rep = block_index * step + np.column_stack(np.unravel_index(first, tuple(step)))
    rep_cells = np.ravel_multi_index(tuple(rep.T), query.shape)
    rep_dist = _distances(query, target, origin, spacing, tree_of_target, cells=rep_cells)
    best = float(rep_dist.max())
    open_blocks = np.zeros(occupied.shape, dtype=bool)
    # (the 1e-9 mm keeps blocks whose bound ties the best up to rounding)
    open_blocks[tuple(block_index[rep_dist + diagonal + 1e-9 > best].T)] = True
    if not open_blocks.any():
        return best
    expand = tuple(slice(None) if k % 2 == 0 else None for k in range(2 * nd))
    keep = np.broadcast_to(open_blocks[expand], split).reshape(padded.shape)
    rest = query & keep[tuple(slice(0, n) for n in query.shape)]
    dist = _distances(rest, target, origin, spacing, tree_of_target)
    return max(best, float(dist.max())) if dist.size else best


# ----------------------------------------------------------------------------------------
# One pair of non-empty masks


class MaskPair:
    """The distances between two non-empty masks, computed once and shared by all metrics.

    Both masks are embedded in one frame: the union of their padded boxes plus the margin
    the offset scan needs (:func:`_scan_offsets`).
    """

    def __init__(self, a: MaskFeatures, b: MaskFeatures):
        self.a, self.b = a, b
        self.spacing = a.spacing
        self.margin = np.asarray(_scan_offsets(tuple(a.spacing.tolist())).pad)
        self.lo = np.minimum(a.lo, b.lo)
        self.shape = tuple((np.maximum(a.hi, b.hi) - self.lo + 3 + 2 * self.margin).tolist())
        self._voxels: tuple[np.ndarray, np.ndarray] | None = None
        self._hd: float | None = None
        self._intersection: int | None = None
        self._medpy: np.ndarray | None = None
        self._surface: tuple[np.ndarray, ...] | None = None

    def _frame(self, mask: MaskFeatures, cells: np.ndarray, corners: bool = False) -> np.ndarray:
        shape = tuple(n - 1 for n in self.shape) if corners else self.shape
        return embed(cells, shape, mask.lo - self.lo + self.margin)

    def voxels(self) -> tuple[np.ndarray, np.ndarray]:
        if self._voxels is None:
            self._voxels = (self._frame(self.a, self.a.voxels), self._frame(self.b, self.b.voxels))
        return self._voxels

    def intersection(self) -> int:
        if self._intersection is None:
            self._intersection = self._count_intersection()
        return self._intersection

    def _count_intersection(self) -> int:
        if self._voxels is None:
            # Only the overlap of the two boxes can hold common voxels.
            lo = np.maximum(self.a.lo, self.b.lo)
            hi = np.minimum(self.a.hi, self.b.hi)
            if np.any(lo > hi):
                return 0
            parts = [
                m.voxels[tuple(slice(lw - o, h - o + 1) for lw, h, o in zip(lo, hi, m.origin))]
                for m in (self.a, self.b)
            ]
            return int(np.count_nonzero(parts[0] & parts[1]))
        va, vb = self._voxels
        return int(np.count_nonzero(va & vb))

    def hd(self) -> float:
        """Exact symmetric Hausdorff distance between the voxel sets."""
        if self._hd is None:
            va, vb = self.voxels()
            origin = self.lo - 1 - self.margin
            result = 0.0
            for inside, other, mask in ((va, vb, self.b), (vb, va, self.a)):
                # The voxel of B nearest to any voxel outside B is a boundary voxel of B (a
                # step towards the outside point along any axis where they differ would be
                # closer), so B's boundary tree gives exact distances to the whole set.
                result = max(result, _farthest(inside & ~other, other, origin, self.spacing,
                                               mask.boundary_tree))
            self._hd = result
        return self._hd

    def medpy_distances(self) -> np.ndarray:
        """Pooled boundary-voxel distances of both directions, as MedPy's hd95 uses them."""
        if self._medpy is None:
            ba = self._frame(self.a, self.a.boundary)
            bb = self._frame(self.b, self.b.boundary)
            origin = self.lo - 1 - self.margin
            parts = [np.zeros(2 * int(np.count_nonzero(ba & bb)))]
            for inside, other, mask in ((ba, bb, self.b), (bb, ba, self.a)):
                parts.append(_distances(inside & ~other, other, origin, self.spacing, mask.boundary_tree))
            self._medpy = np.concatenate(parts)
        return self._medpy

    def surface(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(distances a->b, areas a, distances b->a, areas b), each sorted as surface-distance."""
        if self._surface is None:
            sa = self._frame(self.a, self.a.surface, corners=True)
            sb = self._frame(self.b, self.b.surface, corners=True)
            origin = self.lo - self.margin
            out = []
            for mine, theirs, me, other in ((sa, sb, self.a, self.b), (sb, sa, self.b, self.a)):
                shared = theirs[mine]  # surface corners of mine that lie on theirs: distance 0
                dist = np.zeros(shared.shape)
                dist[~shared] = _distances(mine & ~theirs, theirs, origin, self.spacing, other.surface_tree)
                areas = me.surface_areas
                order = np.lexsort((areas, dist))
                out += [dist[order], areas[order]]
            self._surface = tuple(out)
        return self._surface

    def robust_hd(self, percentile: float) -> float:
        if self._surface is None:  # hd95 alone: the far surfels' exact distances are rarely needed
            near = self._robust_hd_near(percentile)
            if near is not None:
                return near
        da, aa, db, ab = self.surface()
        result = -math.inf
        for dist, areas in ((da, aa), (db, ab)):
            cumulative = np.cumsum(areas) / np.sum(areas)
            idx = np.searchsorted(cumulative, percentile / 100.0)
            result = max(result, float(dist[min(idx, len(dist) - 1)]))
        return result

    def _robust_hd_near(self, percentile: float) -> float | None:
        """:meth:`robust_hd` from the offset scan alone, or None when that cannot decide it.

        The scan finds every surfel whose distance is within its radius; the others lie
        farther than any of those. Sorted as :meth:`surface` sorts them, the known surfels are
        a prefix of the full order with the same cumulative areas, so when the percentile
        falls inside that prefix (clear of it by more than rounding), the answer is the same
        float without a k-d tree or a distance transform for the far surfels.
        """
        sa = self._frame(self.a, self.a.surface, corners=True)
        sb = self._frame(self.b, self.b.surface, corners=True)
        offsets = _scan_offsets(tuple(self.spacing.tolist()))
        target = percentile / 100.0
        result = -math.inf
        for mine, theirs, me in ((sa, sb, self.a), (sb, sa, self.b)):
            corners = np.flatnonzero(mine)  # C order, as me.surface_areas
            apart = ~theirs.reshape(-1)[corners]
            dist = np.zeros(corners.shape)
            if apart.any():
                dist[apart] = _scan(corners[apart], theirs, offsets)[0]  # NaN beyond the scan's radius
            areas = me.surface_areas
            total = np.sum(areas)
            # Distance 0 sorts first: its surfels are summed as one group, only the others sorted.
            zero = float(np.sum(areas[dist == 0])) / total
            if abs(zero - target) < 1e-9:
                return None
            if zero > target:
                result = max(result, 0.0)
                continue
            positive = dist > 0  # NaN (unresolved) is neither
            near, near_areas = dist[positive], areas[positive]
            order = np.lexsort((near_areas, near))
            cumulative = zero + np.cumsum(near_areas[order]) / total
            idx = int(np.searchsorted(cumulative, target))
            if idx >= cumulative.size or abs(cumulative[idx] - target) < 1e-9 or (
                    idx > 0 and abs(cumulative[idx - 1] - target) < 1e-9):
                return None
            result = max(result, float(near[order[idx]]))
        return result

    def medpy_percentile(self, percentile: float) -> float:
        return float(np.percentile(self.medpy_distances(), percentile))

    def assd(self) -> float:
        da, aa, db, ab = self.surface()
        return float((np.sum(da * aa) / np.sum(aa) + np.sum(db * ab) / np.sum(ab)) / 2.0)

    def nsd(self, tolerance: float) -> float:
        da, aa, db, ab = self.surface()
        overlap = np.sum(aa[da <= tolerance]) + np.sum(ab[db <= tolerance])
        return float(overlap / (np.sum(aa) + np.sum(ab)))


def pair_metrics(
    a: MaskFeatures | None,
    b: MaskFeatures | None,
    metrics: Sequence[str],
    *,
    voxel_volume: float,
    nsd_tolerance: float,
) -> list[float]:
    if a is None or b is None:
        both_empty = a is None and b is None
        volume = 0.0 if both_empty else (a or b).count * voxel_volume  # type: ignore[union-attr]
        out = []
        for m in metrics:
            if m == "abs_volume_diff":
                out.append(volume)
            elif m in _OVERLAPS:
                out.append(1.0 if both_empty else 0.0)
            else:
                out.append(0.0 if both_empty else math.inf)
        return out
    pair = MaskPair(a, b)
    out = []
    for m in metrics:
        if m == "dice":
            out.append(2.0 * pair.intersection() / (a.count + b.count))
        elif m == "jaccard":
            inter = pair.intersection()
            out.append(inter / (a.count + b.count - inter))
        elif m == "abs_volume_diff":
            out.append(abs(a.count - b.count) * voxel_volume)
        elif m == "hd":
            out.append(pair.hd())
        elif m == "hd95":
            out.append(pair.robust_hd(95.0))
        elif m == "hd95_medpy":
            out.append(pair.medpy_percentile(95.0))
        elif m == "assd":
            out.append(pair.assd())
        else:  # nsd
            out.append(pair.nsd(nsd_tolerance))
    return out


def pairs_table(
    masks: Sequence[np.ndarray] | np.ndarray,
    pairs: Sequence[tuple[int, int]],
    ids: Sequence[str],
    spacing: tuple[float, ...],
    tolerance: float,
) -> np.ndarray:
    """Metrics ``ids`` of the pairs ``(i, j)`` of checked, same-shape ``masks``, one row per
    pair; every mask's crop, boundaries, surfels and k-d trees are built once and shared by
    all the pairs it is in (the scoring pipeline compares each candidate with the fusion
    and with the reference)."""
    features: dict[int, MaskFeatures | None] = {}

    def feature(i: int) -> MaskFeatures | None:
        if i not in features:
            features[i] = mask_features(masks[i], spacing)
        return features[i]

    out = np.empty((len(pairs), len(ids)))
    volume = math.prod(spacing)
    for k, (i, j) in enumerate(pairs):
        out[k] = pair_metrics(feature(i), feature(j), ids, voxel_volume=volume, nsd_tolerance=tolerance)
    return out

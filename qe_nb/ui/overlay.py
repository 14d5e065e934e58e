"""One slice of a case -- or a whole 2-D image -- with the outlines of the fusion and every
candidate (the paper's Figures 2-3).

:func:`case_overlay` draws the image in grey, each candidate's outline as a thin line in its
own colour-blind-safe colour (Tol's bright scheme), the reference's (optional) as a wide
reddish-purple band under them and the fusion's as a thicker bluish-green line with a dark
halo, always on top. Where and how the slice is cut (axis, index,
structure, spacing and its units, zoom, legend) is one :class:`OverlayOptions` value. A 2-D
image (y, x) is drawn whole: there is no slice to choose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from scipy import ndimage

from qe_nb.exceptions import InputError
from qe_nb.ui.style import (
    CANDIDATE_COLORS,
    FUSION_COLOR,
    LINESTYLES,
    REFERENCE_COLOR,
    new_axes,
    plural,
)

__all__ = ["OverlayOptions", "case_overlay", "center_of_mass_index"]

OVERLAY_SIZE = (8.0, 5.6)
"""Inches of a new overlay figure (the slice plus the legend on its right)."""

IMAGE_PERCENTILES = (1.0, 99.5)
"""The grey scale spans these percentiles of the slice's non-zero voxels."""

# The fusion is drawn last, on top of everything, as a thicker line with a dark halo; the
# reference is a wide translucent band under the thin candidate lines.
_CANDIDATE_LINE = {"width": 1.4, "zorder": 4, "alpha": 1.0}
_FUSION_BAND = {"width": 2.4, "zorder": 6, "alpha": 1.0, "halo": 1.8}
_REFERENCE_BAND = {"width": 5.0, "zorder": 3, "alpha": 0.55}
_NOT_ON_SLICE = " (not on this slice)"
_AXIS_NAMES = "zyx"


@dataclass(frozen=True)
class OverlayOptions:
    """Where and how :func:`case_overlay` cuts and frames the slice.

    Parameters
    ----------
    axis : {0, 1, 2}, default 0
        The axis cut across (0: axial slices of (z, y, x) arrays). Must stay 0 for a 2-D image.
    index : int, optional
        The slice; the structure's centre of mass by default (of the fusion; of the
        reference, then of any candidate, when the fusion is empty). Must stay None for a
        2-D image.
    structure : int or iterable of int, optional
        Label values making up the structure (e.g. ``(1, 4)``, BraTS tumour core) in the
        integer label maps among the inputs; boolean masks are used as they are. By default
        every non-zero voxel.
    spacing : sequence of 3 (or, for a 2-D image, 2) floats, optional
        Voxel spacing (z, y, x), or pixel spacing (y, x), in ``units``; sets the aspect ratio
        of anisotropic slices. Default 1 per axis of the image.
    units : str, default "mm"
        The units of ``spacing`` and ``crop``, shown in the axis labels: "mm", or "px" for
        images whose format stores no spacing (the scores cube's ``distance_units``).
    fused_name : str, default "fusion"
        The fusion's name in the legend (e.g. ``"mav"``).
    crop : float, optional
        Zoom to the outlines on the slice plus this margin in ``units``; the whole slice by
        default.
    legend : bool, default True
        Draw the legend (off for a second, e.g. uncropped, view of the same case).

    Raises
    ------
    InputError
        When ``axis``, ``spacing``, ``crop`` or ``structure`` are invalid (``index`` is checked
        against the image by :func:`case_overlay`).

    Examples
    --------
    >>> OverlayOptions(structure=4).structure
    (4,)
    >>> OverlayOptions(axis=3)
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `axis` must be 0, 1 or 2; got 3.
    """

    axis: int = 0
    index: int | None = None
    structure: int | Iterable[int] | None = None
    spacing: Sequence[float] | None = None
    fused_name: str = "fusion"
    crop: float | None = None
    legend: bool = True
    units: str = "mm"
    spacing_mm: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or self.axis not in (0, 1, 2):
            raise InputError(f"`axis` must be 0, 1 or 2; got {self.axis!r}.")
        if not isinstance(self.units, str) or not self.units.strip():
            raise InputError(f"`units` must be the name of the spacing's units, e.g. 'mm' or 'px'; "
                             f"got {self.units!r}.")
        spacing = None
        if self.spacing is not None:
            spacing = np.asarray(self.spacing, dtype=float)
            if spacing.shape not in ((3,), (2,)) or not (np.isfinite(spacing).all() and (spacing > 0).all()):
                raise InputError(
                    f"`spacing` must be three positive numbers (z, y, x) in {self.units}; got "
                    f"{self.spacing!r}. (A 2-D image takes two, (y, x).)"
                )
        object.__setattr__(self, "spacing_mm", spacing)
        crop = self.crop
        if crop is not None and (
            isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 <= crop < np.inf
        ):
            raise InputError(f"`crop` must be a margin in {self.units} (a number >= 0) or None; "
                             f"got {crop!r}.")
        if self.structure is not None:
            structure = self.structure
            values = ([structure] if isinstance(structure, (int, np.integer))
                      else list(structure) if isinstance(structure, Iterable) and not isinstance(structure, str)
                      else [])
            if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                     for v in values):
                raise InputError(
                    "`structure` must be a label value or a list of label values; got "
                    f"{structure!r}."
                )
            object.__setattr__(self, "structure", tuple(values))


def center_of_mass_index(mask: np.ndarray, axis: int = 0) -> int:
    """The slice index of a mask's centre of mass along one axis (rounded to the nearest).

    Parameters
    ----------
    mask : ndarray of bool, 3-d (z, y, x)
        The structure; any non-zero voxel counts.
    axis : {0, 1, 2}, default 0
        The axis the slices are cut across (0: axial slices for (z, y, x) arrays).

    Returns
    -------
    int
        ``round(center_of_mass(mask)[axis])``, a valid index along ``axis``.

    Raises
    ------
    InputError
        When ``mask`` is not 3-d, ``axis`` is not 0, 1 or 2, or the mask is empty (it has no
        centre of mass; choose the slice with ``index=`` instead).

    Examples
    --------
    >>> m = np.zeros((5, 4, 4), bool)
    >>> m[1:4, 0, 0] = True
    >>> center_of_mass_index(m, 0), center_of_mass_index(m, 1)
    (2, 0)
    """
    arr = np.asarray(mask)
    if arr.ndim != 3:
        raise InputError(f"`mask` must be a 3-d array (z, y, x); got shape {arr.shape}.")
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise InputError(f"`axis` must be 0, 1 or 2; got {axis!r}.")
    arr = arr != 0
    if not arr.any():
        raise InputError(
            f"`mask` is empty, so it has no centre of mass along axis {axis}; pass `index=` to "
            "choose the slice."
        )
    com = ndimage.center_of_mass(arr)[axis]
    return int(min(arr.shape[axis] - 1, max(0, math.floor(com + 0.5))))


def _structure_mask(volume: np.ndarray, structure: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(volume)
    if arr.shape != shape:
        raise InputError(f"`{name}` has shape {arr.shape}; expected the image's shape {shape}.")
    # A boolean mask already is the structure; `structure` selects from label maps.
    if structure is None or arr.dtype == bool:
        return arr != 0
    return np.isin(arr, structure)


def _per_candidate(values: Any, names: list[str], name: str) -> list[Any]:
    if values is None:
        return [None] * len(names)
    if isinstance(values, xr.DataArray):
        if values.dims != ("algorithm",):
            raise InputError(f"`{name}` must be a DataArray over (algorithm,); got dims {values.dims}.")
        values = dict(zip([str(a) for a in values["algorithm"].values], values.values.tolist(),
                          strict=True))
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        if missing:
            raise InputError(f"`{name}` lacks candidate(s) {missing}; got keys {list(values)}.")
        return [values[n] for n in names]
    values = list(values)
    if len(values) != len(names):
        raise InputError(
            f"`{name}` has {len(values)} values but there are {len(names)} candidates."
        )
    return values




def _candidate_masks(
    candidates: Any, names: Sequence[str] | None, structure: Any, shape: tuple[int, ...]
) -> tuple[list[str], list[np.ndarray]]:
    """The candidates' names and structure masks, from a mapping, a list or a stacked array
    (algorithm, *shape)."""
    if isinstance(candidates, Mapping):
        cand_names = [str(k) for k in candidates]
        cand_arrays = list(candidates.values())
    elif isinstance(candidates, np.ndarray) and candidates.ndim == len(shape) + 1:
        cand_names = [f"candidate {i}" for i in range(candidates.shape[0])]
        cand_arrays = list(candidates)
    elif isinstance(candidates, np.ndarray):
        n, grid = len(shape), ", ".join("zyx"[3 - len(shape):])
        raise InputError(
            f"`candidates` must be a mapping name -> {n}-d array, a list of {n}-d arrays or a "
            f"{n + 1}-d array (algorithm, {grid}); got an array of shape {candidates.shape}."
        )
    else:
        cand_arrays = list(candidates)
        cand_names = [f"candidate {i}" for i in range(len(cand_arrays))]
    if names is not None:
        given = [str(n) for n in names]
        if len(given) != len(cand_arrays):
            raise InputError(
                f"`names` has {len(given)} entries but there are {len(cand_arrays)} candidates."
            )
        cand_names = given
    masks = [_structure_mask(a, structure, f"candidates[{n!r}]", shape)
             for n, a in zip(cand_names, cand_arrays, strict=True)]
    return cand_names, masks


def _slice_index(index: Any, axis: int, shape: tuple[int, ...], sources: list[np.ndarray | None]) -> int:
    """The given slice (checked), else the centre of mass of the first non-empty source."""
    if index is None:
        for source in sources:
            if source is not None and source.any():
                return center_of_mass_index(source, axis)
        return shape[axis] // 2
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
        -shape[axis] <= index < shape[axis]
    ):
        raise InputError(
            f"`index` must be a whole number in [0, {shape[axis]}) along axis {axis}; got {index!r}."
        )
    return int(index) % shape[axis]


def _legend_text(name: str, dice: Any, alarms: Any) -> str:
    parts = []
    if dice is not None:
        parts.append(f"Dice {float(dice):.2f}")
    if alarms is not None:
        parts.append(plural(int(alarms), "alarm"))
    return f"{name}: {', '.join(parts)}" if parts else name


class _Outliner:
    """Draws outlines of one slice into ``ax``; keeps the legend handles and the footprint."""

    def __init__(self, ax: Axes, axis: int, index: int, plane_shape: tuple[int, ...]) -> None:
        self.ax, self.axis, self.index = ax, axis, index
        self.handles: list[Line2D] = []
        self.footprint = np.zeros(plane_shape, dtype=bool)

    def outline(self, mask: np.ndarray, color: str, style: str, text: str,
                line: Mapping[str, float]) -> None:
        piece = np.take(mask, self.index, axis=self.axis)
        effects = ([patheffects.withStroke(linewidth=line["width"] + line["halo"], foreground="black")]
                   if line.get("halo") else None)
        if piece.any():
            self.footprint |= piece
            drawn = self.ax.contour(piece.astype(float), levels=[0.5], colors=[color],
                                    linewidths=line["width"], linestyles=style, zorder=line["zorder"],
                                    alpha=line["alpha"])
            if effects:
                drawn.set_path_effects(effects)
        else:
            text += _NOT_ON_SLICE
        self.handles.append(Line2D([], [], color=color, linewidth=line["width"], linestyle=style,
                                   alpha=line["alpha"], label=text, path_effects=effects))


def _zoom(ax: Axes, footprint: np.ndarray, margin: float, spacing: np.ndarray,
          axes_of_plane: tuple[int, int], upper: bool) -> None:
    """Limit ``ax`` to the footprint's bounding box plus ``margin`` (in the spacing's units)."""
    rows = np.flatnonzero(footprint.any(axis=1))
    cols = np.flatnonzero(footprint.any(axis=0))
    mr = margin / spacing[axes_of_plane[0]]
    mc = margin / spacing[axes_of_plane[1]]
    r0, r1 = max(-0.5, rows[0] - mr - 0.5), min(footprint.shape[0] - 0.5, rows[-1] + mr + 0.5)
    c0, c1 = max(-0.5, cols[0] - mc - 0.5), min(footprint.shape[1] - 0.5, cols[-1] + mc + 0.5)
    ax.set_xlim(c0, c1)
    ax.set_ylim((r1, r0) if upper else (r0, r1))


def case_overlay(
    image: np.ndarray,
    fused: np.ndarray,
    candidates: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray,
    *,
    names: Sequence[str] | None = None,
    dice: Mapping[str, float] | Sequence[float] | xr.DataArray | None = None,
    alarms: Mapping[str, int] | Sequence[int] | xr.DataArray | None = None,
    reference: np.ndarray | None = None,
    ax: Axes | None = None,
    options: OverlayOptions | None = None,
) -> Axes:
    """One slice of a case with the outlines of the fusion and every candidate (Figures 2-3).

    Parameters
    ----------
    image : ndarray, 3-d (z, y, x) or 2-d (y, x)
        The image (e.g. T1c, a microscopy frame; zeros for a blank frame); displayed between
        its 1st and 99.5th percentile on the slice. A 2-D image is drawn whole.
    fused : ndarray, on the image's grid
        The fusion: a boolean mask, or a label map with ``options.structure``.
    candidates : mapping name -> ndarray, sequence of ndarray, or ndarray (algorithm, *grid)
        The candidates, same grid as ``image``.
    names : sequence of str, optional
        Candidate names (default: the mapping's keys, else ``candidate 0, 1, ...``).
    dice, alarms : mapping name -> value, sequence, or DataArray over (algorithm,), optional
        Each candidate's Dice (e.g. with the fusion) and alarm count, shown in the legend.
    reference : ndarray, on the image's grid, optional
        The ground truth, outlined in reddish purple.
    ax : Axes, optional
        Draw into these axes; a new figure by default.
    options : OverlayOptions, optional
        Axis, slice, structure, spacing, the fusion's name, zoom and legend; the defaults of
        :class:`OverlayOptions` when not given.

    Returns
    -------
    Axes
        The slice; the legend (outside, right of the image) lists the fusion, the reference
        and each candidate with its Dice and alarm count. Outlines absent from the slice are
        marked "(not on this slice)".

    Raises
    ------
    InputError
        When the image is not 2-d or 3-d, an array is not on the image's grid, the slice index
        is not on the image (or given for a 2-D image), the spacing does not have one number
        per axis, or ``names`` / ``dice`` / ``alarms`` do not match the candidates.

    Examples
    --------
    >>> img = np.zeros((3, 8, 8))
    >>> fused = np.zeros((3, 8, 8), bool); fused[1, 2:6, 2:6] = True
    >>> cand = fused.copy(); cand[1, 2, 2:6] = False
    >>> ax = case_overlay(img, fused, {"a": cand}, dice={"a": 0.86}, alarms={"a": 1})
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['fusion', 'a: Dice 0.86, 1 alarm']
    >>> ax = case_overlay(img, fused, [cand], options=OverlayOptions(index=0, crop=1.0))
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['fusion (not on this slice)', 'candidate 0 (not on this slice)']

    A 2-D image (y, x) in pixels:

    >>> ax = case_overlay(img[1], fused[1], {"a": cand[1]}, options=OverlayOptions(units="px"))
    >>> ax.get_xlabel(), ax.get_title(loc="left")
    ('x (pixels)', '')
    """
    opts = OverlayOptions() if options is None else options
    if not isinstance(opts, OverlayOptions):
        raise InputError(f"`options` must be an OverlayOptions or None; got {type(opts).__name__}.")
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise InputError(f"`image` must be a 3-d array (z, y, x) or a 2-d image (y, x); got shape "
                         f"{img.shape}.")
    flat = img.ndim == 2
    if flat and np.ndim(fused) == 3:
        raise InputError(f"`image` must be a 3-d array (z, y, x); got shape {img.shape}, while `fused` "
                         f"has shape {np.shape(fused)}. (A 2-d image (y, x) takes 2-d masks.)")
    if flat and (opts.axis != 0 or opts.index is not None):
        raise InputError(
            f"a 2-d image (y, x) is drawn whole: leave `axis` at 0 and `index` at None; got "
            f"axis={opts.axis!r}, index={opts.index!r}."
        )
    shape = img.shape
    fused_mask = _structure_mask(fused, opts.structure, "fused", shape)
    cand_names, cand_masks = _candidate_masks(candidates, names, opts.structure, shape)
    ref_mask = None if reference is None else _structure_mask(reference, opts.structure,
                                                                "reference", shape)
    dice_values = _per_candidate(dice, cand_names, "dice")
    alarm_values = _per_candidate(alarms, cand_names, "alarms")
    spacing = _spacing(opts, img.ndim)
    if flat:  # one slice of a (1, y, x) volume: the same drawing, nothing to choose
        img, fused_mask = img[None], fused_mask[None]
        cand_masks = [m[None] for m in cand_masks]
        ref_mask = None if ref_mask is None else ref_mask[None]
        spacing = np.concatenate([[1.0], spacing])
    shape, axis = img.shape, opts.axis
    index = _slice_index(opts.index, axis, shape, [fused_mask, ref_mask, *cand_masks])

    # Rows and columns of the slice are the two remaining axes, in order.
    rows_axis, cols_axis = [a for a in (0, 1, 2) if a != axis]
    owned = ax is None
    ax = new_axes(ax, OVERLAY_SIZE)
    owned = owned or bool(getattr(ax.figure, "qe_overlay", False))
    plane = np.take(img, index, axis=axis).astype(float)
    body = plane[plane != 0]
    lo, hi = np.percentile(body if body.size else plane, IMAGE_PERCENTILES)
    # Axial slices: first row on top (anterior in BraTS/LPS); other cuts have z pointing up.
    # imshow's origin only flips the y-axis; contour then needs no origin of its own (passing
    # it would mirror the outlines), as both put row i at y = i.
    upper = axis == 0
    ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
              aspect=spacing[rows_axis] / spacing[cols_axis],
              origin="upper" if upper else "lower", interpolation="nearest")

    pen = _Outliner(ax, axis, index, plane.shape)
    for i, (n, m, d, a) in enumerate(zip(cand_names, cand_masks, dice_values, alarm_values,
                                         strict=True)):
        pen.outline(m, CANDIDATE_COLORS[i % len(CANDIDATE_COLORS)],
                    LINESTYLES[(i // len(CANDIDATE_COLORS)) % len(LINESTYLES)],
                    _legend_text(n, d, a), _CANDIDATE_LINE)
    candidate_handles = pen.handles[:]
    pen.handles.clear()
    pen.outline(fused_mask, FUSION_COLOR, "solid", opts.fused_name, _FUSION_BAND)
    if ref_mask is not None:
        pen.outline(ref_mask, REFERENCE_COLOR, "solid", "reference", _REFERENCE_BAND)
    legend = None
    if opts.legend:
        legend = ax.legend(handles=pen.handles + candidate_handles, loc="upper left",
                           bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    if opts.crop is not None and pen.footprint.any():
        _zoom(ax, pen.footprint, opts.crop, spacing, (rows_axis, cols_axis), upper)
    if owned:  # our figure: sized to the image and the legend, so that neither is clipped
        ax.figure.qe_overlay = True
        _place(ax, legend, spacing[cols_axis] / spacing[rows_axis])
    ax.set_title("" if flat else f"slice {_AXIS_NAMES[axis]} = {index}", loc="left",
                 fontsize="medium")
    ax.set_xticks([])
    ax.set_yticks([])
    cells = "pixels" if flat else "voxels"
    ax.set_xlabel(_axis_label(_AXIS_NAMES[cols_axis], spacing[cols_axis], opts.units, cells))
    ax.set_ylabel(_axis_label(_AXIS_NAMES[rows_axis], spacing[rows_axis], opts.units, cells))
    return ax


MAX_IMAGE_WIDTH = 8.0
"""Inches of the widest image in an overlay figure (a wide slice gets less height instead)."""

MIN_FIGURE_WIDTH = 6.0
"""Inches of the narrowest overlay figure (room for the title above a narrow zoomed image)."""


def _place(ax: Axes, legend: Any, pixel_ratio: float) -> None:
    """Size the overlay's figure to the shown part of the image and the legend's width, and
    place the axes in it: the legend on the right is never clipped, whatever its length.
    ``pixel_ratio`` is a column's width over a row's height in physical units."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ax.figure
    fig.set_layout_engine("none")
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    ratio = (x1 - x0) * pixel_ratio / max(y1 - y0, 1e-9)
    height, top, bottom, left, gap, pad = OVERLAY_SIZE[1], 0.35, 0.4, 0.4, 0.2, 0.15
    image_h = height - top - bottom
    image_w = min(MAX_IMAGE_WIDTH, max(1.5, image_h * ratio))
    legend_w = 0.0
    if legend is not None:
        canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
        legend_w = legend.get_window_extent(canvas.get_renderer()).width / fig.dpi
    width = max(MIN_FIGURE_WIDTH, left + image_w + gap + legend_w + pad)
    fig.set_size_inches(width, height)
    ax.set_position([left / width, bottom / height, image_w / width, image_h / height])


def _spacing(opts: OverlayOptions, ndim: int) -> np.ndarray:
    """The spacing of an ``ndim``-d image: the options' (checked against ``ndim``), else ones."""
    if opts.spacing_mm is None:
        return np.ones(ndim)
    if opts.spacing_mm.size != ndim:
        want = "three positive numbers (z, y, x)" if ndim == 3 else "two positive numbers (y, x)"
        raise InputError(
            f"`spacing` must be {want} for a {ndim}-d image; got {opts.spacing!r}."
        )
    return opts.spacing_mm


def _axis_label(name: str, step: float, units: str, cells: str) -> str:
    """``x (0.5 mm voxels)``; ``x (pixels)`` when the units are pixels of size 1."""
    if units == "px" and step == 1.0:
        return f"{name} ({cells})"
    return f"{name} ({step:g} {units} {cells})"

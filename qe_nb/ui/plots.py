"""Matplotlib figures: alarm count vs quality, α sweeps, thresholds, case overlays.

Every function takes already computed arrays (risk, quality, a sweep table, thresholds,
voxel arrays) and returns a :class:`matplotlib.figure.Figure` or
:class:`matplotlib.axes.Axes`. Nothing here calls ``show()``, touches ``pyplot`` or changes
``rcParams``: figures are built with :class:`matplotlib.figure.Figure` directly (or drawn into
the ``fig=`` / ``ax=`` the caller passes), so they display in a notebook, save with
``fig.savefig`` and leave no global state behind.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common forms
of colour blindness; as in Kofler et al. 2021 the fusion is drawn in *bluish green* and the
ground truth in *reddish purple*.

References
----------
Kofler F, Ezhov I, Fidon L, et al. (2021). Robust, Primitive, and Unsupervised Quality
Estimation for Segmentation Ensembles. Front. Neurosci. 15:752780 (Figures 2-4, Tables 1-3).

Okabe M, Ito K (2008). Color Universal Design (CUD): how to make figures and presentations
that are friendly to colorblind people. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from scipy import ndimage, stats

from qe_nb.exceptions import InputError

__all__ = [
    "OKABE_ITO",
    "FUSION_COLOR",
    "REFERENCE_COLOR",
    "CANDIDATE_COLORS",
    "alarm_count_vs_quality",
    "update_alarm_count_vs_quality",
    "figure_png",
    "alarm_histogram",
    "sweep_plot",
    "threshold_plot",
    "case_overlay",
    "center_of_mass_index",
]

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
"""The eight colours of Okabe & Ito (2008), by name."""

FUSION_COLOR = OKABE_ITO["bluish_green"]
"""The fusion's colour, as in the paper's Figures 2-3."""

REFERENCE_COLOR = OKABE_ITO["reddish_purple"]
"""The ground truth's colour, as in the paper's Figure 2."""

CANDIDATE_COLORS: tuple[str, ...] = (
    OKABE_ITO["orange"],
    OKABE_ITO["sky_blue"],
    OKABE_ITO["vermillion"],
    OKABE_ITO["blue"],
    OKABE_ITO["yellow"],
    OKABE_ITO["black"],
)
"""Colours of the candidates (and of other series), the fusion's and reference's left out."""

# Line styles cycle once the six candidate colours are used up, so a 7th+ candidate differs.
_LINESTYLES = ("solid", "dashed", "dotted", "dashdot")
_MARKERS = ("o", "s", "D", "^", "v", "P", "X")
_POINT_COLOR = OKABE_ITO["blue"]
_HIGHLIGHT = OKABE_ITO["reddish_purple"]

_LOWER_IS_BETTER = {"hd", "hd95", "hd95_medpy", "assd", "abs_volume_diff"}
_MM_METRICS = {"hd", "hd95", "hd95_medpy", "assd"}


# --------------------------------------------------------------------------- helpers


def _new_figure(fig: Figure | None, figsize: tuple[float, float]) -> Figure:
    """The caller's figure, cleared, or a new constrained-layout figure (no pyplot)."""
    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    if not isinstance(fig, Figure):
        raise InputError(f"`fig` must be a matplotlib Figure or None; got {type(fig).__name__}.")
    fig.clear()
    return fig


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        return Figure(figsize=figsize, layout="constrained").add_subplot()
    if not isinstance(ax, Axes):
        raise InputError(f"`ax` must be a matplotlib Axes or None; got {type(ax).__name__}.")
    return ax


def _case_vector(values: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A 1-d float array over cases, and the case labels when ``values`` carries them."""
    if isinstance(values, xr.Dataset):
        raise InputError(
            f"`{name}` must be a DataArray over (case,) or a 1-d array; got a Dataset with "
            f"variables {list(values.data_vars)}; select one, e.g. scores['quality'].sel(...)."
        )
    if isinstance(values, xr.DataArray):
        if values.dims != ("case",):
            raise InputError(
                f"`{name}` must be a DataArray over (case,); got dims {values.dims}. Select or "
                "average the other dims first, e.g. quality.sel(metric='dice').mean('label')."
            )
        cases = values["case"].values if "case" in values.coords else None
        return np.asarray(values.values, dtype=float), cases
    if isinstance(values, pd.Series):
        return np.asarray(values.to_numpy(), dtype=float), np.asarray(values.index)
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InputError(
            f"`{name}` must be a DataArray over (case,) or a 1-d array of numbers; got "
            f"{type(values).__name__}."
        ) from None
    if arr.ndim != 1:
        raise InputError(f"`{name}` must be 1-d over cases; got an array of shape {arr.shape}.")
    return arr, None


def _check_risk(risk: Any, name: str = "risk") -> tuple[np.ndarray, np.ndarray | None]:
    values, cases = _case_vector(risk, name)
    if values.size == 0:
        raise InputError(f"`{name}` holds no case; expected at least one alarm count.")
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        raise InputError(
            f"`{name}` must hold non-negative whole alarm counts; got {float(values[bad][0])!r}."
        )
    return values.astype(np.int64), cases


def _aligned(
    risk_cases: np.ndarray | None,
    values: np.ndarray,
    cases: np.ndarray | None,
    n: int,
    name: str,
) -> np.ndarray:
    """``values`` in the case order of ``risk`` (by label when both carry labels)."""
    if risk_cases is not None and cases is not None:
        position = {c: i for i, c in enumerate(cases.tolist())}
        missing = [c for c in risk_cases.tolist() if c not in position]
        if missing:
            raise InputError(
                f"`{name}` lacks {len(missing)} case(s) of `risk`, e.g. {missing[0]!r}; "
                "pass quality for the same cases."
            )
        return values[[position[c] for c in risk_cases.tolist()]]
    if values.size != n:
        raise InputError(
            f"`{name}` has {values.size} values but `risk` has {n} cases; expected one value per case."
        )
    return values


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Pearson r and p over the finite pairs; NaN when undefined (constant or < 3 pairs)."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan, math.nan, n
    r, p = stats.pearsonr(x[ok], y[ok])
    return float(r), float(p), n


def _pearson_text(r: float, p: float, n: int) -> str:
    if math.isnan(r):
        return f"Pearson r undefined (constant values, n = {n})"
    return f"Pearson r = {r:.2f}, p = {p:.3g} (n = {n})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy (natural log) of a histogram; empty bins contribute nothing."""
    total = counts.sum()
    if total == 0:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() + 0.0)


def _count_ticks(ax: Axes, top: int) -> None:
    """A tick at every alarm count up to 10; beyond that, at most 11 whole-number ticks.

    Every tick label is a text artist to lay out and draw, so a cohort with 30 possible
    alarms gets a tick every 5 (or 2), not 31 labels.
    """
    if top <= 10:
        ax.set_xticks(range(top + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True, steps=[1, 2, 5, 10]))


def _units_text(units: str) -> str:
    return "dimensionless" if units in {"1", ""} else units


# --------------------------------------------------------------- alarm count vs quality

# The attribute of a Figure-4 figure that holds the artists update_alarm_count_vs_quality
# rewrites (per panel: axes, points, mean bars, kind).
_FIGURE4 = "_qe_nb_figure4"
# ... and the Agg backgrounds figure_png(reuse_background=True) keeps, by axis ranges.
_BACKGROUNDS = "_qe_nb_backgrounds"
_MAX_BACKGROUNDS = 8
# Fixed legend corners, where Figure 4's points are sparse (few cases alarm often yet agree
# well with the reference, or rarely alarm yet lie far from it); loc="best" would test every
# point against every corner on each draw.
_FIGURE4_LEGEND = {"Dice": "lower left", "distance": "upper left"}


def _figure4_inputs(
    risk: Any, quality_dice: Any, quality_distance: Any, jitter: Any, quantile: Any,
    max_count: Any,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]], int]:
    """Checked alarm counts, the (kind, values) of each panel (in the case order of risk)
    and the last count on the x-axis."""
    if not (isinstance(jitter, (int, float)) and 0 <= jitter < 0.5):
        raise InputError(f"`jitter` must be a number in [0, 0.5); got {jitter!r}.")
    if not (isinstance(quantile, (int, float)) and 0 < quantile <= 1):
        raise InputError(f"`quantile` must be a number in (0, 1]; got {quantile!r}.")
    counts, risk_cases = _check_risk(risk)
    n = counts.size
    dice_values, dice_cases = _case_vector(quality_dice, "quality_dice")
    panels = [("Dice", _aligned(risk_cases, dice_values, dice_cases, n, "quality_dice"))]
    if quality_distance is not None:
        dist, dist_cases = _case_vector(quality_distance, "quality_distance")
        panels.append(("distance", _aligned(risk_cases, dist, dist_cases, n, "quality_distance")))
    seen = int(counts.max())
    if max_count is None:
        return counts, panels, seen
    if isinstance(max_count, bool) or not isinstance(max_count, (int, np.integer)) or max_count < seen:
        raise InputError(
            f"`max_count` must be a whole number >= the largest alarm count ({seen}); "
            f"got {max_count!r}."
        )
    return counts, panels, int(max_count)


def _fill_figure4(
    state: list[dict[str, Any]],
    counts: np.ndarray,
    panels: list[tuple[str, np.ndarray]],
    top_count: int,
    *,
    seed: int | None,
    jitter: float,
    quantile: float,
) -> None:
    """Put the data into Figure 4's artists: points, mean bars, titles, limits, ticks, note."""
    n = counts.size
    x = counts + np.random.default_rng(seed).uniform(-jitter, jitter, n)
    for letter, artists, (kind, y) in zip("ABCD"[: len(state)], state, panels, strict=True):
        ax = artists["ax"]
        finite = np.isfinite(y)
        artists["points"].set_offsets(np.column_stack([x[finite], y[finite]]))
        groups = np.unique(counts[finite])
        sums = np.bincount(counts[finite], weights=y[finite])
        means = sums[groups] / np.bincount(counts[finite])[groups]
        artists["means"].set_segments(
            [((k - 0.3, m), (k + 0.3, m)) for k, m in zip(groups.tolist(), means.tolist(), strict=True)]
        )
        r, p, n_ok = _pearson(counts.astype(float), y)
        title = [f"{letter}   {kind} vs alarm count", _pearson_text(r, p, n_ok)]
        n_inf = int(np.isinf(y).sum())
        n_nan = int(np.isnan(y).sum())
        note = ""
        if kind == "distance":
            if n_inf:
                title.append(f"{_plural(n_inf, 'case')} with infinite distance not shown")
            shown = y[finite]
            if shown.size:
                lo = min(0.0, float(shown.min()))
                hi = float(np.quantile(shown, quantile))
                hi = hi if hi > lo else lo + 1.0
                ax.set_ylim(lo, hi + 0.04 * (hi - lo))
                above = int((shown > hi + 0.04 * (hi - lo)).sum())
                if above:
                    note = (f"y-axis ends at the {quantile:.0%} quantile: "
                            f"{_plural(above, 'case')} above not shown")
            else:
                ax.set_ylim(0.0, 1.0)
        else:
            ax.set_ylim(min(0.0, float(y[finite].min())) - 0.02 if finite.any() else 0, 1.02)
        if n_nan:
            title.append(f"{_plural(n_nan, 'case')} with missing value not shown")
        artists["title"] = ax.set_title("\n".join(title), loc="left", fontsize="medium")
        if artists.get("note") is not None and artists["note"].get_text() != note:
            artists["note"].remove()
            artists["note"] = None
        if note and artists.get("note") is None:
            artists["note"] = ax.annotate(note, xy=(0, -0.2), xycoords="axes fraction",
                                          fontsize="small", color="dimgray")
        _count_ticks(ax, top_count)
        ax.set_xlim(-0.6, top_count + 0.6)


def alarm_count_vs_quality(
    risk: xr.DataArray | Sequence[int] | np.ndarray,
    quality_dice: xr.DataArray | Sequence[float] | np.ndarray,
    quality_distance: xr.DataArray | Sequence[float] | np.ndarray | None = None,
    *,
    fig: Figure | None = None,
    seed: int | None = 0,
    jitter: float = 0.2,
    quantile: float = 0.95,
    max_count: int | None = None,
    dice_label: str = "Dice with reference",
    distance_label: str = "HD95 to reference (mm)",
) -> Figure:
    """Quality against alarm count, one point per case: the paper's Figure 4.

    Panel A shows the fusion's Dice with the reference against the case's alarm count;
    panel B (when ``quality_distance`` is given) a distance in mm. Points are jittered
    horizontally within their alarm-count group; the group means are short black bars;
    Pearson's r and p are in each panel's title. To show other alarm counts (a new α),
    :func:`update_alarm_count_vs_quality` rewrites the same figure in place.

    Parameters
    ----------
    risk : DataArray over (case,) or 1-d array of int
        Alarm count per case (:func:`qe_nb.risk`).
    quality_dice : DataArray over (case,) or 1-d array of float
        Dice of the fusion with the reference per case, e.g.
        ``scores["quality"].sel(metric="dice").mean("label")``. Aligned with ``risk`` by the
        ``case`` coordinate when both carry one, else by position.
    quality_distance : DataArray over (case,) or 1-d array of float, optional
        A distance in mm per case (HD95 by default of ``distance_label``). Infinite values
        (an empty fusion or reference) are left out of the plot and of r, and counted in the
        panel title.
    fig : Figure, optional
        Draw into this figure (it is cleared first); a new one by default.
    seed : int or None, default 0
        Seed of the horizontal jitter, so the same call draws the same picture.
    jitter : float, default 0.2
        Half-width of the horizontal jitter, in alarm counts.
    quantile : float, default 0.95
        The distance panel's y-axis ends at this quantile of the finite distances (the paper
        shows the 0-95 % range); the number of cases above it is noted under the panel.
    max_count : int, optional
        The last alarm count on the x-axis, e.g. the number of possible alarms per case
        (algorithms x labels x metrics), which keeps the axis still while α changes; the
        largest count seen by default.
    dice_label, distance_label : str
        The y-axis labels, with units.

    Returns
    -------
    Figure
        One axes per panel (two with ``quality_distance``, else one).

    Raises
    ------
    InputError
        When an input is not 1-d over cases, ``risk`` holds non-whole or negative counts,
        the lengths or cases differ, ``jitter`` / ``quantile`` are out of range, or
        ``max_count`` is smaller than a count seen.

    Notes
    -----
    r is computed over the cases whose value is finite; with a constant alarm count (or a
    constant quality) it is undefined and shown as such, not raised. The x-axis has a tick
    at every alarm count up to 10 and at most 11 ticks beyond; the legend sits in a fixed
    corner (lower left for Dice, upper left for the distance).

    Examples
    --------
    >>> fig = alarm_count_vs_quality([0, 1, 2, 2], [0.9, 0.8, 0.5, 0.6], [2.0, 3.0, np.inf, 9.0])
    >>> len(fig.axes)
    2
    >>> fig.axes[1].get_title(loc="left").splitlines()[-1]
    '1 case with infinite distance not shown'
    """
    counts, panels, top_count = _figure4_inputs(risk, quality_dice, quality_distance, jitter,
                                                quantile, max_count)
    fig = _new_figure(fig, (5.2 * len(panels), 4.6))
    fig.__dict__.pop(_BACKGROUNDS, None)  # backgrounds of the figure's former content
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = {"Dice": dice_label, "distance": distance_label}
    state = []
    for ax, (kind, _) in zip(axes, panels, strict=True):
        # no edge (width 0) but one edge colour: Agg then stamps one rendered marker per
        # point (draw_markers) instead of filling 1,000 paths, about 4 times faster
        points = ax.scatter(
            np.empty(0), np.empty(0), s=22, color=_POINT_COLOR, alpha=0.7, edgecolors="face",
            linewidths=0, zorder=2, label="case",
        )
        means = ax.hlines([], [], [], colors="black", linewidth=2.5, zorder=3, label="group mean")
        ax.set_xlabel("alarm count")
        ax.set_ylabel(labels[kind])
        ax.grid(axis="y", color="0.9", zorder=0)
        ax.legend(loc=_FIGURE4_LEGEND[kind], fontsize="small", framealpha=0.8)
        state.append({"ax": ax, "points": points, "means": means, "kind": kind, "note": None})
    _fill_figure4(state, counts, panels, top_count, seed=seed, jitter=jitter, quantile=quantile)
    setattr(fig, _FIGURE4, state)
    return fig


def update_alarm_count_vs_quality(
    fig: Figure,
    risk: xr.DataArray | Sequence[int] | np.ndarray,
    quality_dice: xr.DataArray | Sequence[float] | np.ndarray,
    quality_distance: xr.DataArray | Sequence[float] | np.ndarray | None = None,
    *,
    seed: int | None = 0,
    jitter: float = 0.2,
    quantile: float = 0.95,
    max_count: int | None = None,
) -> Figure:
    """Show new alarm counts in a Figure 4 in place: the picture of a fresh call, faster.

    The points are moved (``PathCollection.set_offsets``), the mean bars replaced
    (``LineCollection.set_segments``), and titles, limits, ticks and the quantile note
    rewritten; the axes, labels and legend are kept. An app that redraws Figure 4 on every
    α change saves rebuilding the axes, which is most of the cost.

    Parameters
    ----------
    fig : Figure
        A figure drawn by :func:`alarm_count_vs_quality` (and not cleared since), with as
        many panels as this call has (a distance panel or not).
    risk, quality_dice, quality_distance, seed, jitter, quantile, max_count
        As for :func:`alarm_count_vs_quality`; the axis labels stay those it was drawn with.

    Returns
    -------
    Figure
        ``fig``, showing what ``alarm_count_vs_quality(risk, quality_dice, quality_distance,
        ...)`` shows.

    Raises
    ------
    InputError
        When ``fig`` was not drawn by :func:`alarm_count_vs_quality`, has another number of
        panels, or for any input error of :func:`alarm_count_vs_quality`.

    Examples
    --------
    >>> fig = alarm_count_vs_quality([0, 1, 2, 2], [0.9, 0.8, 0.5, 0.6])
    >>> fig = update_alarm_count_vs_quality(fig, [0, 0, 1, 3], [0.9, 0.8, 0.5, 0.6])
    >>> fig.axes[0].collections[1].get_segments()[-1].tolist()  # the mean bar of count 3
    [[2.7, 0.6], [3.3, 0.6]]
    """
    if not isinstance(fig, Figure):
        raise InputError(f"`fig` must be a matplotlib Figure drawn by alarm_count_vs_quality; "
                         f"got {type(fig).__name__}.")
    state = getattr(fig, _FIGURE4, None)
    if not state or any(a["ax"] not in fig.axes for a in state) or len(fig.axes) != len(state):
        raise InputError(
            "`fig` was not drawn by alarm_count_vs_quality (or was cleared since); draw it "
            "with alarm_count_vs_quality(..., fig=fig) first."
        )
    counts, panels, top_count = _figure4_inputs(risk, quality_dice, quality_distance, jitter,
                                                quantile, max_count)
    if [kind for kind, _ in panels] != [a["kind"] for a in state]:
        raise InputError(
            f"`fig` has {len(state)} panel(s) but this call has {len(panels)}; pass "
            "`quality_distance` exactly when the figure was drawn with it."
        )
    _fill_figure4(state, counts, panels, top_count, seed=seed, jitter=jitter, quantile=quantile)
    return fig


def figure_png(fig: Figure, *, dpi: float = 72.0, reuse_background: bool = False) -> bytes:
    """The figure as PNG bytes, rendered with Agg directly: for apps that redraw often.

    Cheaper than ``fig.savefig(buffer, format="png")``: one Agg draw, no bounding-box or
    face-colour handling, and unfiltered rows compressed at zlib's fastest level.

    Parameters
    ----------
    fig : Figure
        Any figure; its dpi is ``dpi`` while it is drawn and restored afterwards.
    dpi : float, default 72
        Resolution; the image is ``fig.get_size_inches() * dpi`` pixels.
    reuse_background : bool, default False
        For a figure drawn by :func:`alarm_count_vs_quality` and updated by
        :func:`update_alarm_count_vs_quality` only: render everything but the points, the
        mean bars, the legends and the titles once per x-axis and y-axis range and reuse
        that background, drawing only those artists on top (most of the cost of a full
        draw is laying out and rasterising the tick labels, which do not change while the
        largest alarm count stays the same). Only while the figure has no active layout
        engine (``fig.set_layout_engine("none")`` after a first layout), because the layout
        must not move when the titles are left out; changes made to the figure in other ways
        are not seen while a background for the same ranges is cached. Ignored otherwise.

    Returns
    -------
    bytes
        An RGB PNG.

    Raises
    ------
    InputError
        For anything but a Figure, or a ``dpi`` that is not a positive number.

    Notes
    -----
    With ``reuse_background`` the dynamic artists are drawn in the order of a full draw
    (points, spines, mean bars, legend, titles), so the two pictures agree pixel for pixel.

    Examples
    --------
    >>> fig = alarm_count_vs_quality([0, 1, 2, 2], [0.9, 0.8, 0.5, 0.6])
    >>> figure_png(fig, dpi=50)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    if not isinstance(fig, Figure):
        raise InputError(f"`fig` must be a matplotlib Figure; got {type(fig).__name__}.")
    if (isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating))
            or not np.isfinite(dpi) or dpi <= 0):
        raise InputError(f"`dpi` must be a positive number; got {dpi!r}.")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    old_dpi = fig.dpi
    if old_dpi != dpi:
        fig.set_dpi(dpi)
    try:
        state = getattr(fig, _FIGURE4, None) if reuse_background else None
        engine = fig.get_layout_engine()
        frozen = engine is None or isinstance(engine, PlaceHolderLayoutEngine)
        if (state and frozen and len(fig.axes) == len(state)
                and all(a["ax"] in fig.axes for a in state)):
            _blit_figure4(fig, canvas, state)
        else:
            canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
    finally:
        if old_dpi != dpi:
            fig.set_dpi(old_dpi)
    return _rgb_png(rgba[..., :3])


def _rgb_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of a (height, width, 3) uint8 array: no row filter, zlib level 1.

    Pillow's encoder tries a filter per row; for figures (flat colours, thin lines) the
    unfiltered rows compress as well and the file is written in about 40 % of the time.
    """
    height, width, _ = pixels.shape
    rows = np.empty((height, 3 * width + 1), np.uint8)
    rows[:, 0] = 0  # filter type "none"
    rows[:, 1:] = pixels.reshape(height, 3 * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b""))




def _blit_figure4(fig: Figure, canvas: Any, state: list[dict[str, Any]]) -> None:
    """Restore (or render once) the background for the current ranges, draw the rest on it."""
    key = (
        float(fig.dpi),
        tuple(fig.bbox.bounds),
        tuple(
            (tuple(a["ax"].get_position().bounds), a["ax"].get_xlim(), a["ax"].get_ylim(),
             tuple(a["ax"].get_xticks().tolist()),
             a["note"].get_text() if a.get("note") is not None else "")
            for a in state
        ),
    )
    cache = getattr(fig, _BACKGROUNDS, None)
    if cache is None:
        cache = {}
        setattr(fig, _BACKGROUNDS, cache)
    # in the order of a full draw (zorder): points 2, spines 2.5 (the distance axis clips
    # points at its top), mean bars 3, legend 5, then the title
    dynamic = [(a["ax"], artist) for a in state
               for artist in (a["points"], *a["ax"].spines.values(), a["means"],
                              a["ax"].get_legend(), a["title"])
               if artist is not None]
    background = cache.pop(key, None)
    if background is None:
        # Titles are emptied rather than hidden: Axes.draw would move a hidden title off
        # the figure (its empty extent seems to overlap the axes).
        visible = [artist.get_visible() for _, artist in dynamic]
        titles = [a["title"].get_text() for a in state]
        for _, artist in dynamic:
            if not any(artist is a["title"] for a in state):
                artist.set_visible(False)
        for a in state:
            a["title"].set_text("")
        try:
            canvas.draw()
        finally:
            for (_, artist), was in zip(dynamic, visible, strict=True):
                artist.set_visible(was)
            for a, text in zip(state, titles, strict=True):
                a["title"].set_text(text)
        background = canvas.copy_from_bbox(fig.bbox)
        if len(cache) >= _MAX_BACKGROUNDS:
            cache.pop(next(iter(cache)))
    else:
        canvas.restore_region(background)
    cache[key] = background  # most recently used last
    for ax, artist in dynamic:
        ax.draw_artist(artist)


# ------------------------------------------------------------------------ histogram


def alarm_histogram(
    risk: xr.DataArray | Sequence[int] | np.ndarray,
    *,
    max_count: int | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Number of cases per alarm count, for when no ground truth exists.

    Parameters
    ----------
    risk : DataArray over (case,) or 1-d array of int
        Alarm count per case.
    max_count : int, optional
        The last alarm count on the x-axis (e.g. the number of possible alarms per case);
        the largest count seen by default.
    ax : Axes, optional
        Draw into these axes; a new figure by default.

    Returns
    -------
    Axes
        The bars (one per count 0..max_count), annotated with their counts; the title gives
        the number of cases and the entropy of the distribution in nats.

    Raises
    ------
    InputError
        When ``risk`` is not 1-d over cases of whole non-negative counts, or ``max_count`` is
        smaller than a count seen.

    Examples
    --------
    >>> ax = alarm_histogram([0, 0, 1, 3])
    >>> [int(b.get_height()) for b in ax.patches]
    [2, 1, 0, 1]
    """
    counts, _ = _check_risk(risk)
    seen = int(counts.max())
    if max_count is None:
        max_count = seen
    elif (
        isinstance(max_count, bool)
        or not isinstance(max_count, (int, np.integer))
        or max_count < seen
    ):
        raise InputError(
            f"`max_count` must be a whole number >= the largest alarm count ({seen}); "
            f"got {max_count!r}."
        )
    hist = np.bincount(counts, minlength=int(max_count) + 1)
    ax = _new_axes(ax, (5.5, 3.8))
    bars = ax.bar(np.arange(hist.size), hist, color=_POINT_COLOR, width=0.8, zorder=2)
    ax.bar_label(bars, labels=[str(int(h)) for h in hist], padding=2, fontsize="small")
    _count_ticks(ax, hist.size - 1)
    ax.set_xlabel("alarm count")
    ax.set_ylabel("cases")
    ax.set_ylim(0, max(1, hist.max()) * 1.15)
    ax.grid(axis="y", color="0.9", zorder=0)
    ax.set_title(
        f"{_plural(counts.size, 'case')}, entropy {_entropy(hist):.2f} nats", fontsize="medium"
    )
    return ax


# ---------------------------------------------------------------------------- sweep

_COUNT_COLUMN = re.compile(r"^(\d+)a$")


def _sweep_frame(table: pd.DataFrame | xr.Dataset) -> pd.DataFrame:
    """The sweep in the layout of the paper's Tables 1-2: alpha, entropy, r:<metric>, <k>a."""
    if isinstance(table, xr.Dataset):
        table = _sweep_dataset_to_frame(table)
    if not isinstance(table, pd.DataFrame):
        raise InputError(
            "`sweep_ds_or_table` must be a DataFrame with columns alpha, entropy, r:<metric>..., "
            f"0a, 1a, ... (qe_nb.sweep_table) or a sweep Dataset over alpha; got {type(table).__name__}."
        )
    columns = [str(c) for c in table.columns]
    frame = table.copy()
    frame.columns = columns
    lower = {c.lower(): c for c in columns}
    missing = [c for c in ("alpha", "entropy") if c not in lower]
    if missing:
        raise InputError(
            f"`sweep_ds_or_table` lacks column(s) {missing}; expected alpha, entropy, "
            f"r:<metric>..., 0a, 1a, ...; got {columns}."
        )
    if not any(_COUNT_COLUMN.match(c) for c in columns):
        raise InputError(
            "`sweep_ds_or_table` has no alarm-count columns (0a, 1a, ...); got "
            f"{columns}."
        )
    frame = frame.rename(columns={lower["alpha"]: "alpha", lower["entropy"]: "entropy"})
    if len(frame) == 0:
        raise InputError("`sweep_ds_or_table` has no row; expected one row per alpha.")
    alpha = frame["alpha"].to_numpy(dtype=float)
    if not np.isfinite(alpha).all() or len(np.unique(alpha)) != len(alpha):
        raise InputError(
            "`sweep_ds_or_table`: alpha values must be finite and distinct; got "
            f"{alpha.tolist()}."
        )
    return frame.sort_values("alpha").reset_index(drop=True)


def _even_scale(grid: np.ndarray):
    """Forward/inverse of a scale that puts sorted ``grid`` values at 0, 1, 2, ...

    Piecewise linear between grid values, extended linearly beyond both ends.
    """
    pos = np.arange(grid.size, dtype=float)
    left = 1.0 / (grid[1] - grid[0])
    right = 1.0 / (grid[-1] - grid[-2])

    def forward(a):
        a = np.asarray(a, dtype=float)
        out = np.interp(a, grid, pos)
        out = np.where(a < grid[0], (a - grid[0]) * left, out)
        return np.where(a > grid[-1], pos[-1] + (a - grid[-1]) * right, out)

    def inverse(p):
        p = np.asarray(p, dtype=float)
        out = np.interp(p, pos, grid)
        out = np.where(p < 0, grid[0] + p / left, out)
        return np.where(p > pos[-1], grid[-1] + (p - pos[-1]) / right, out)

    return forward, inverse


def _sweep_dataset_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    """Flatten a sweep Dataset over ``alpha`` (:func:`qe_nb.sweep`) into the Tables 1-2 layout.

    Read: ``entropy`` (alpha); ``histogram`` (alpha, count); Pearson r per metric as ``r``
    over (alpha, metric) or as variables named ``r:<metric>``. Other variables (``risk``,
    ``p_value``, ``r_all``, ...) are not drawn.
    """
    if "alpha" not in ds.dims or "entropy" not in ds.data_vars:
        raise InputError(
            "a sweep Dataset must have an `alpha` dim and an `entropy` variable; got dims "
            f"{tuple(ds.dims)} and variables {list(ds.data_vars)}."
        )
    hist = ds.data_vars.get("histogram")
    if hist is None or hist.ndim != 2 or "alpha" not in hist.dims:
        raise InputError(
            "a sweep Dataset needs the alarm-count histogram as `histogram` over (alpha, count); "
            f"got variables {list(ds.data_vars)}."
        )
    out: dict[str, Any] = {
        "alpha": ds["alpha"].values.astype(float),
        "entropy": ds["entropy"].transpose("alpha").values,
    }
    for name, var in ds.data_vars.items():
        name = str(name)
        if name.startswith("r:") and var.dims == ("alpha",):
            out[name] = var.values
        elif name == "r" and set(var.dims) == {"alpha", "metric"}:
            for m in var["metric"].values:
                out[f"r:{m}"] = var.sel(metric=m).transpose("alpha").values
    other = next(d for d in hist.dims if d != "alpha")
    labels = hist[other].values if other in hist.coords else np.arange(hist.sizes[other])
    values = hist.transpose("alpha", other).values
    for j, k in enumerate(labels):
        out[f"{int(k)}a"] = values[:, j]
    return pd.DataFrame(out)


def sweep_plot(
    sweep_ds_or_table: pd.DataFrame | xr.Dataset,
    *,
    chosen_alpha: float | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Entropy and Pearson r against α, and the alarm-count histogram per α as a heatmap.

    Parameters
    ----------
    sweep_ds_or_table : DataFrame or Dataset
        The layout of the paper's Tables 1-2, as :func:`qe_nb.sweep_table` returns it:
        columns ``alpha``, ``entropy``, ``r:<metric>`` (any number, NaN allowed) and
        ``0a, 1a, ...`` (cases per alarm count). The Dataset of :func:`qe_nb.sweep`
        (``entropy`` over alpha, ``histogram`` over (alpha, count), ``r`` over (alpha, metric))
        is flattened to that layout first.
    chosen_alpha : float, optional
        Marked by a vertical line on the left panel and a frame around its heatmap row.
    fig : Figure, optional
        Draw into this figure (it is cleared first); a new one by default.

    Returns
    -------
    Figure
        ``fig.axes`` is ``[lines, heatmap]`` plus, when r columns exist, the twin axes of
        ``lines`` for r (right y-axis). Left: entropy (nats) and r per metric against α.
        Right: heatmap, α rows x alarm-count columns, each cell annotated with its number of
        cases.

    Raises
    ------
    InputError
        When the table lacks ``alpha``, ``entropy`` or count columns, or ``chosen_alpha`` is
        not a finite number.

    Notes
    -----
    On a non-uniform grid the left panel's α axis is piecewise linear, putting the grid
    values at even steps like the heatmap's rows (sweep grids are usually dense near 0 and
    sparse in the tails); data coordinates stay in α, so ``chosen_alpha`` between two grid
    values falls between them and ``ax.transData`` maps α to pixels.

    Examples
    --------
    >>> table = pd.DataFrame({"alpha": [0.0, 0.1], "entropy": [1.37, 1.37],
    ...                       "r:dice": [-0.70, -0.70], "0a": [13, 15], "1a": [8, 10],
    ...                       "2a": [14, 11], "3a": [11, 10]})
    >>> fig = sweep_plot(table, chosen_alpha=0.1)
    >>> len(fig.axes)  # line plot, heatmap, and the line plot's twin axes for r
    3
    """
    frame = _sweep_frame(sweep_ds_or_table)
    if chosen_alpha is not None and (
        isinstance(chosen_alpha, bool)
        or not isinstance(chosen_alpha, (int, float, np.floating, np.integer))
        or not np.isfinite(chosen_alpha)
    ):
        raise InputError(f"`chosen_alpha` must be a finite number or None; got {chosen_alpha!r}.")
    alpha = frame["alpha"].to_numpy(dtype=float)
    r_columns = [c for c in frame.columns if c.startswith("r:")]
    count_columns = sorted(
        (c for c in frame.columns if _COUNT_COLUMN.match(c)),
        key=lambda c: int(_COUNT_COLUMN.match(c).group(1)),
    )
    hist = frame[count_columns].to_numpy(dtype=float)

    # The heatmap widens with the number of counts; the line plot keeps its width.
    line_width, heat_width = 5.0, max(4.0, 0.24 * len(count_columns) + 1.0)
    fig = _new_figure(fig, (line_width + heat_width, max(4.5, 0.32 * len(frame) + 1.6)))
    ax, heat = fig.subplots(1, 2, width_ratios=[line_width, heat_width])

    uniform = len(alpha) < 3 or np.allclose(np.diff(alpha), alpha[1] - alpha[0])
    if not uniform:
        # Sweep grids are usually dense near 0 and sparse in the tails (the paper's -3 ... 3):
        # a piecewise-linear scale puts the grid values at even steps, like the heatmap rows,
        # while data coordinates stay in α (so callers can place markers with transData).
        ax.set_xscale("function", functions=_even_scale(alpha))
    handles = []
    handles += ax.plot(alpha, frame["entropy"].to_numpy(dtype=float), color="black",
                       marker="o", markersize=4, label="entropy")
    ax.set_xticks(alpha, [f"{a:g}" for a in alpha], rotation=90 if len(alpha) > 12 else 0)
    ax.set_xlabel("α" if uniform else "α (evenly spaced sweep values, not to scale)")
    ax.set_ylabel("entropy of the alarm-count distribution (nats)")
    ax.grid(color="0.92")
    if r_columns:
        twin = ax.twinx()
        for i, c in enumerate(r_columns):
            handles += twin.plot(
                alpha, frame[c].to_numpy(dtype=float), color=CANDIDATE_COLORS[i % 6],
                marker=_MARKERS[(i + 1) % len(_MARKERS)], markersize=4,
                linestyle=_LINESTYLES[(i // 6 + 1) % len(_LINESTYLES)], label=c,
            )
        twin.set_ylabel("Pearson r, alarm count vs quality (dimensionless)")
    if chosen_alpha is not None:
        handles.append(ax.axvline(float(chosen_alpha), color=_HIGHLIGHT, linestyle="--",
                                  linewidth=1.5, label=f"chosen α = {float(chosen_alpha):g}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=min(4, len(handles)), fontsize="small", frameon=False)
    ax.set_title("entropy and correlation against α", loc="left", fontsize="medium")

    finite = hist[np.isfinite(hist)]
    vmax = float(finite.max()) if finite.size else 1.0
    heat.imshow(hist, cmap="Blues", aspect="auto", vmin=0, vmax=max(vmax, 1.0),
                interpolation="nearest")
    for (i, j), v in np.ndenumerate(hist):
        if np.isfinite(v):
            heat.text(j, i, f"{v:g}", ha="center", va="center", fontsize="x-small",
                      color="white" if v > 0.6 * vmax else "black")
    heat.set_xticks(range(len(count_columns)),
                    [_COUNT_COLUMN.match(c).group(1) for c in count_columns])
    heat.set_yticks(range(len(frame)), [f"{a:g}" for a in alpha])
    heat.set_xlabel("alarm count")
    heat.set_ylabel("α")
    heat.set_title("cases per alarm count", loc="left", fontsize="medium")
    if chosen_alpha is not None:
        rows = np.flatnonzero(np.isclose(alpha, float(chosen_alpha)))
        for i in rows:
            heat.add_patch(Rectangle((-0.5, i - 0.5), len(count_columns), 1.0, fill=False,
                                     edgecolor=_HIGHLIGHT, linewidth=2.5))
    return fig


# ------------------------------------------------------------------------ thresholds


def threshold_plot(thresholds: xr.DataArray, *, fig: Figure | None = None) -> Figure:
    """Thresholds per algorithm (the paper's Table 3) as a grouped dot chart, one panel per metric.

    Parameters
    ----------
    thresholds : DataArray over (algorithm, label, metric)
        As :func:`qe_nb.thresholds` returns them; ``label`` and ``metric`` may be missing
        (one structure, one metric). The ``metric`` coordinate's ``units`` and
        ``higher_is_better`` are used when present (otherwise derived from the metric id).
        For lower-is-better metrics, thresholds stored on the negated metric (all <= 0) are
        shown as positive distances, as in Table 3.
    fig : Figure, optional
        Draw into this figure (it is cleared first); a new one by default.

    Returns
    -------
    Figure
        One axes per metric: algorithms on x, one marker per label, y labelled
        ``<metric> threshold (<units>)``; non-finite thresholds are listed in the panel.

    Raises
    ------
    InputError
        When ``thresholds`` is not a DataArray or has other dims than algorithm, label and metric.

    Examples
    --------
    >>> th = xr.DataArray([[0.9055], [0.9092]], dims=("algorithm", "metric"),
    ...                   coords={"algorithm": ["micdkfz", "xfeng"], "metric": ["dice"]})
    >>> threshold_plot(th).axes[0].get_ylabel()
    'dice threshold (dimensionless)'
    """
    if not isinstance(thresholds, xr.DataArray):
        raise InputError(
            "`thresholds` must be a DataArray over (algorithm, label, metric); got "
            f"{type(thresholds).__name__}."
        )
    extra = [d for d in thresholds.dims if d not in {"algorithm", "label", "metric"}]
    if extra or "algorithm" not in thresholds.dims:
        raise InputError(
            "`thresholds` must be a DataArray over (algorithm, label, metric); got dims "
            f"{thresholds.dims}. Select one value of the other dims first."
        )
    th = thresholds
    for dim, default in (("label", "all"), ("metric", "value")):
        if dim not in th.dims:
            th = th.expand_dims({dim: [default]})
    th = th.transpose("algorithm", "label", "metric")
    algorithms = [str(a) for a in th["algorithm"].values]
    labels = [str(lab) for lab in th["label"].values]
    metrics = [str(m) for m in th["metric"].values]

    fig = _new_figure(fig, (max(4.5, 0.6 * len(algorithms) + 2.2) * len(metrics), 4.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    width = 0.7
    step = width / max(1, len(labels))
    xs = np.arange(len(algorithms))
    for k, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
        values = th.isel(metric=k).values.astype(float)
        higher = _metric_coord(th, "higher_is_better", k, metric not in _LOWER_IS_BETTER)
        units = str(_metric_coord(th, "units", k, "mm" if metric in _MM_METRICS else "1"))
        finite = values[np.isfinite(values)]
        if not bool(higher) and finite.size and (finite <= 0).all() and (finite < 0).any():
            values = -values
        for j, label in enumerate(labels):
            offset = -width / 2 + step * (j + 0.5) if len(labels) > 1 else 0.0
            y = values[:, j]
            ok = np.isfinite(y)
            ax.scatter(xs[ok] + offset, y[ok], color=CANDIDATE_COLORS[j % 6],
                       marker=_MARKERS[j % len(_MARKERS)], s=36, zorder=2,
                       label=label if k == 0 else None)
        bad = [f"{algorithms[i]}/{labels[j]}" for i, j in zip(*np.nonzero(~np.isfinite(values)),
                                                              strict=True)]
        if bad:
            shown = ", ".join(bad[:4]) + (", ..." if len(bad) > 4 else "")
            ax.annotate(f"no finite threshold: {shown}", xy=(0, -0.3), xycoords="axes fraction",
                        fontsize="small", color="dimgray")
        if finite.size:
            v = values[np.isfinite(values)]
            lo, hi = float(v.min()), float(v.max())
            pad = 0.15 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(xs, algorithms, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(algorithms) - 0.4)
        ax.set_ylabel(f"{metric} threshold ({_units_text(units)})")
        direction = "alarm below" if bool(higher) else "alarm above"
        ax.set_title(f"{metric}: {direction}", loc="left", fontsize="medium")
        ax.grid(axis="y", color="0.9", zorder=0)
    if len(labels) > 1 or labels != ["all"]:
        fig.legend(title="label", loc="outside right upper", fontsize="small")
    return fig


def _metric_coord(th: xr.DataArray, name: str, k: int, default: Any) -> Any:
    if name in th.coords and "metric" in th[name].dims:
        return th[name].values[k]
    return default


# --------------------------------------------------------------------------- overlay


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


def case_overlay(
    image: np.ndarray,
    fused: np.ndarray,
    candidates: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray,
    *,
    axis: int = 0,
    index: int | None = None,
    names: Sequence[str] | None = None,
    dice: Mapping[str, float] | Sequence[float] | xr.DataArray | None = None,
    alarms: Mapping[str, int] | Sequence[int] | xr.DataArray | None = None,
    reference: np.ndarray | None = None,
    ax: Axes | None = None,
    structure: int | Iterable[int] | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    fused_name: str = "fusion",
    crop: float | None = None,
    legend: bool = True,
) -> Axes:
    """One slice of a case with the outlines of the fusion and every candidate (Figures 2-3).

    The slice is the centre of mass of the structure in the fused mask (of the reference,
    then of any candidate, when the fusion is empty); ``index`` overrides it. The image is
    drawn in grey, the fusion's outline thick in bluish green, each candidate's outline in
    its own Okabe-Ito colour, the reference's (optional) in reddish purple.

    Parameters
    ----------
    image : ndarray, 3-d (z, y, x)
        The image (e.g. T1c); displayed between its 1st and 99.5th percentile on the slice.
    fused : ndarray, 3-d (z, y, x)
        The fusion: a boolean mask, or a label map with ``structure``.
    candidates : mapping name -> ndarray, sequence of ndarray, or ndarray (algorithm, z, y, x)
        The candidates, same grid as ``image``.
    axis : {0, 1, 2}, default 0
        The axis cut across (0: axial slices of (z, y, x) arrays).
    index : int, optional
        The slice; the structure's centre of mass by default.
    names : sequence of str, optional
        Candidate names (default: the mapping's keys, else ``candidate 0, 1, ...``).
    dice, alarms : mapping name -> value, sequence, or DataArray over (algorithm,), optional
        Each candidate's Dice (e.g. with the fusion) and alarm count, shown in the legend.
    reference : ndarray, 3-d (z, y, x), optional
        The ground truth, outlined in reddish purple.
    ax : Axes, optional
        Draw into these axes; a new figure by default.
    structure : int or iterable of int, optional
        Label values making up the structure (e.g. ``(1, 4)``, BraTS tumour core) in the
        integer label maps among the inputs; boolean masks are used as they are. By default
        every non-zero voxel.
    spacing : sequence of 3 floats, default (1, 1, 1)
        Voxel spacing (z, y, x) in mm; sets the aspect ratio of anisotropic slices.
    fused_name : str, default "fusion"
        The fusion's name in the legend (e.g. ``"mav"``).
    crop : float, optional
        Zoom to the outlines on the slice plus this margin in mm; the whole slice by default.
    legend : bool, default True
        Draw the legend (off for a second, e.g. uncropped, view of the same case).

    Returns
    -------
    Axes
        The slice; the legend (outside, right of the image) lists the fusion, the reference
        and each candidate with its Dice and alarm count. Outlines absent from the slice are
        marked "(not on this slice)".

    Raises
    ------
    InputError
        When an array is not 3-d or not on the image's grid, ``axis`` / ``index`` /
        ``spacing`` / ``crop`` are invalid, or ``names`` / ``dice`` / ``alarms`` do not match the
        candidates.

    Examples
    --------
    >>> img = np.zeros((3, 8, 8))
    >>> fused = np.zeros((3, 8, 8), bool); fused[1, 2:6, 2:6] = True
    >>> cand = fused.copy(); cand[1, 2, 2:6] = False
    >>> ax = case_overlay(img, fused, {"a": cand}, dice={"a": 0.86}, alarms={"a": 1})
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['fusion', 'a: Dice 0.86, 1 alarm']
    >>> ax = case_overlay(img, fused, [cand], index=0, crop=1.0)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['fusion (not on this slice)', 'candidate 0 (not on this slice)']
    """
    img = np.asarray(image)
    if img.ndim != 3:
        raise InputError(f"`image` must be a 3-d array (z, y, x); got shape {img.shape}.")
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise InputError(f"`axis` must be 0, 1 or 2; got {axis!r}.")
    spacing_arr = np.asarray(spacing, dtype=float)
    if spacing_arr.shape != (3,) or not (np.isfinite(spacing_arr).all() and (spacing_arr > 0).all()):
        raise InputError(f"`spacing` must be three positive numbers (z, y, x) in mm; got {spacing!r}.")
    if crop is not None and (
        isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 <= crop < np.inf
    ):
        raise InputError(f"`crop` must be a margin in mm (a number >= 0) or None; got {crop!r}.")
    if structure is not None:
        values = [structure] if isinstance(structure, (int, np.integer)) else list(structure)
        if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in values):
            raise InputError(
                f"`structure` must be a label value or a list of label values; got {structure!r}."
            )
        structure = values
    shape = img.shape
    fused_mask = _structure_mask(fused, structure, "fused", shape)

    if isinstance(candidates, Mapping):
        cand_names = [str(k) for k in candidates]
        cand_arrays = list(candidates.values())
    elif isinstance(candidates, np.ndarray) and candidates.ndim == 4:
        cand_names = [f"candidate {i}" for i in range(candidates.shape[0])]
        cand_arrays = list(candidates)
    elif isinstance(candidates, np.ndarray):
        raise InputError(
            "`candidates` must be a mapping name -> 3-d array, a list of 3-d arrays or a 4-d "
            f"array (algorithm, z, y, x); got an array of shape {candidates.shape}."
        )
    else:
        cand_arrays = list(candidates)
        cand_names = [f"candidate {i}" for i in range(len(cand_arrays))]
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(cand_arrays):
            raise InputError(
                f"`names` has {len(names)} entries but there are {len(cand_arrays)} candidates."
            )
        cand_names = names
    cand_masks = [
        _structure_mask(a, structure, f"candidates[{n!r}]", shape)
        for n, a in zip(cand_names, cand_arrays, strict=True)
    ]
    ref_mask = None if reference is None else _structure_mask(reference, structure, "reference", shape)
    dice_values = _per_candidate(dice, cand_names, "dice")
    alarm_values = _per_candidate(alarms, cand_names, "alarms")

    if index is None:
        for source in [fused_mask, ref_mask, *cand_masks]:
            if source is not None and source.any():
                index = center_of_mass_index(source, axis)
                break
        else:
            index = shape[axis] // 2
    elif isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
        -shape[axis] <= index < shape[axis]
    ):
        raise InputError(
            f"`index` must be a whole number in [0, {shape[axis]}) along axis {axis}; got {index!r}."
        )
    index = int(index) % shape[axis]

    def cut(volume: np.ndarray) -> np.ndarray:
        return np.take(volume, index, axis=axis)

    # Rows and columns of the slice are the two remaining axes, in order.
    rows_axis, cols_axis = [a for a in (0, 1, 2) if a != axis]
    aspect = spacing_arr[rows_axis] / spacing_arr[cols_axis]
    ax = _new_axes(ax, (8.0, 5.6))
    plane = cut(img).astype(float)
    body = plane[plane != 0]
    lo, hi = np.percentile(body if body.size else plane, [1, 99.5])
    # Axial slices: first row on top (anterior in BraTS/LPS); other cuts have z pointing up.
    # imshow's origin only flips the y-axis; contour then needs no origin of its own (passing
    # it would mirror the outlines), as both put row i at y = i.
    origin = "upper" if axis == 0 else "lower"
    ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect,
              origin=origin, interpolation="nearest")

    handles: list[Line2D] = []
    footprint = np.zeros(plane.shape, dtype=bool)

    def outline(mask: np.ndarray, color: str, width: float, style: str, text: str,
                zorder: float, alpha: float = 1.0) -> None:
        piece = cut(mask)
        if piece.any():
            footprint[:] |= piece
            ax.contour(piece.astype(float), levels=[0.5], colors=[color], linewidths=width,
                       linestyles=style, zorder=zorder, alpha=alpha)
        else:
            text += " (not on this slice)"
        handles.append(Line2D([], [], color=color, linewidth=width, linestyle=style,
                              alpha=alpha, label=text))

    for i, (n, m, d, a) in enumerate(zip(cand_names, cand_masks, dice_values, alarm_values,
                                         strict=True)):
        parts = []
        if d is not None:
            parts.append(f"Dice {float(d):.2f}")
        if a is not None:
            parts.append(_plural(int(a), "alarm"))
        text = f"{n}: {', '.join(parts)}" if parts else n
        outline(m, CANDIDATE_COLORS[i % 6], 1.3, _LINESTYLES[(i // 6) % len(_LINESTYLES)], text,
                zorder=4)
    candidate_handles = handles[:]
    handles.clear()
    # The fusion (and reference) are wide, translucent bands under the thin candidate lines,
    # so a candidate that follows the fusion stays visible inside the band.
    outline(fused_mask, FUSION_COLOR, 5.5, "solid", fused_name, zorder=2, alpha=0.75)
    if ref_mask is not None:
        outline(ref_mask, REFERENCE_COLOR, 3.0, "solid", "reference", zorder=3, alpha=0.9)
    if legend:
        ax.legend(handles=handles + candidate_handles, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    if crop is not None and footprint.any():
        rows = np.flatnonzero(footprint.any(axis=1))
        cols = np.flatnonzero(footprint.any(axis=0))
        mr = crop / spacing_arr[rows_axis]
        mc = crop / spacing_arr[cols_axis]
        r0, r1 = max(-0.5, rows[0] - mr - 0.5), min(plane.shape[0] - 0.5, rows[-1] + mr + 0.5)
        c0, c1 = max(-0.5, cols[0] - mc - 0.5), min(plane.shape[1] - 0.5, cols[-1] + mc + 0.5)
        ax.set_xlim(c0, c1)
        ax.set_ylim((r1, r0) if origin == "upper" else (r0, r1))
    axis_name = "zyx"[axis]
    ax.set_title(f"slice {axis_name} = {index}", loc="left", fontsize="medium")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{'zyx'[cols_axis]} ({spacing_arr[cols_axis]:g} mm voxels)")
    ax.set_ylabel(f"{'zyx'[rows_axis]} ({spacing_arr[rows_axis]:g} mm voxels)")
    return ax

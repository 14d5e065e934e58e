"""The cohort figures: alarm count against quality (the paper's Figure 4), the alarm-count
histogram, and :func:`save_figures`, the demo's set written to PNG files.

Every function takes already computed arrays (risk, quality) and returns a
:class:`matplotlib.figure.Figure` or :class:`matplotlib.axes.Axes`. Nothing here calls
``show()``, touches ``pyplot`` or changes ``rcParams``: figures are built with
:class:`matplotlib.figure.Figure` directly (or drawn into the ``fig=`` / ``ax=`` the caller
passes). Pearson r and the entropy are :mod:`qe_nb.core.statistics`'s.

References
----------
Kofler F, Ezhov I, Fidon L, et al. (2021). Robust, Primitive, and Unsupervised Quality
Estimation for Segmentation Ensembles. Front. Neurosci. 15:752780 (Figure 4).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from qe_nb.core.statistics import count_entropy, pearson_test
from qe_nb.exceptions import InputError
from qe_nb.ui.render import BACKGROUNDS, FIGURE4_STATE
from qe_nb.ui.style import POINT_COLOR, count_ticks, new_axes, new_figure, plural

__all__ = [
    "alarm_count_vs_quality",
    "update_alarm_count_vs_quality",
    "alarm_histogram",
    "save_figures",
]

# Fixed legend corners, where Figure 4's points are sparse (few cases alarm often yet agree
# well with the reference, or rarely alarm yet lie far from it); loc="best" would test every
# point against every corner on each draw.
_FIGURE4_LEGEND = {"Dice": "lower left", "distance": "upper left"}
_FIGURE4_SIZE = (5.2, 4.6)  # inches per panel
_HISTOGRAM_SIZE = (5.5, 3.8)
_MEAN_BAR_HALF_WIDTH = 0.3  # alarm counts either side of the group's position
_Y_MARGIN = 0.04  # share of the distance axis's range added above its last value


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


def _pearson_text(r: float, p: float, n: int) -> str:
    if math.isnan(r):
        return f"Pearson r undefined (constant values, n = {n})"
    return f"Pearson r = {r:.2f}, p = {p:.3g} (n = {n})"



# --------------------------------------------------------------- alarm count vs quality


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
            [((k - _MEAN_BAR_HALF_WIDTH, m), (k + _MEAN_BAR_HALF_WIDTH, m)) for k, m in zip(groups.tolist(), means.tolist(), strict=True)]
        )
        r, p, n_ok = pearson_test(counts.astype(float), y)
        title = [f"{letter}   {kind} vs alarm count", _pearson_text(r, p, n_ok)]
        n_inf = int(np.isinf(y).sum())
        n_nan = int(np.isnan(y).sum())
        note = ""
        if kind == "distance":
            if n_inf:
                title.append(f"{plural(n_inf, 'case')} with infinite distance not shown")
            shown = y[finite]
            if shown.size:
                lo = min(0.0, float(shown.min()))
                hi = float(np.quantile(shown, quantile))
                hi = hi if hi > lo else lo + 1.0
                ax.set_ylim(lo, hi + _Y_MARGIN * (hi - lo))
                above = int((shown > hi + _Y_MARGIN * (hi - lo)).sum())
                if above:
                    note = (f"y-axis ends at the {quantile:.0%} quantile: "
                            f"{plural(above, 'case')} above not shown")
            else:
                ax.set_ylim(0.0, 1.0)
        else:
            ax.set_ylim(min(0.0, float(y[finite].min())) - 0.02 if finite.any() else 0, 1.02)
        if n_nan:
            title.append(f"{plural(n_nan, 'case')} with missing value not shown")
        artists["title"] = ax.set_title("\n".join(title), loc="left", fontsize="medium")
        if artists.get("note") is not None and artists["note"].get_text() != note:
            artists["note"].remove()
            artists["note"] = None
        if note and artists.get("note") is None:
            artists["note"] = ax.annotate(note, xy=(0, -0.2), xycoords="axes fraction",
                                          fontsize="small", color="dimgray")
        count_ticks(ax, top_count)
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
    panel B (when ``quality_distance`` is given) a distance (mm, or px). Points are jittered
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
        A distance per case (HD95 by default of ``distance_label``). Infinite values
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
    fig = new_figure(fig, (_FIGURE4_SIZE[0] * len(panels), _FIGURE4_SIZE[1]))
    fig.__dict__.pop(BACKGROUNDS, None)  # backgrounds of the figure's former content
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = {"Dice": dice_label, "distance": distance_label}
    state = []
    for ax, (kind, _) in zip(axes, panels, strict=True):
        # no edge (width 0) but one edge colour: Agg then stamps one rendered marker per
        # point (draw_markers) instead of filling 1,000 paths, about 4 times faster
        points = ax.scatter(
            np.empty(0), np.empty(0), s=22, color=POINT_COLOR, alpha=0.7, edgecolors="face",
            linewidths=0, zorder=2, label="case",
        )
        means = ax.hlines([], [], [], colors="black", linewidth=2.5, zorder=3, label="group mean")
        ax.set_xlabel("alarm count")
        ax.set_ylabel(labels[kind])
        ax.grid(axis="y", color="0.9", zorder=0)
        ax.legend(loc=_FIGURE4_LEGEND[kind], fontsize="small", framealpha=0.8)
        state.append({"ax": ax, "points": points, "means": means, "kind": kind, "note": None})
    _fill_figure4(state, counts, panels, top_count, seed=seed, jitter=jitter, quantile=quantile)
    setattr(fig, FIGURE4_STATE, state)
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
    state = getattr(fig, FIGURE4_STATE, None)
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
    # a quarter inch per bar, so two-digit labels in small text do not run together
    ax = new_axes(ax, (max(_HISTOGRAM_SIZE[0], 0.25 * hist.size + 1.0), _HISTOGRAM_SIZE[1]))
    bars = ax.bar(np.arange(hist.size), hist, color=POINT_COLOR, width=0.8, zorder=2)
    ax.bar_label(bars, labels=[str(int(h)) for h in hist], padding=2, fontsize="small")
    count_ticks(ax, hist.size - 1)
    ax.set_xlabel("alarm count")
    ax.set_ylabel("cases")
    ax.set_ylim(0, max(1, hist.max()) * 1.15)
    ax.grid(axis="y", color="0.9", zorder=0)
    ax.set_title(
        f"{plural(counts.size, 'case')}, entropy {count_entropy(counts, max_count=int(max_count)):.2f} nats", fontsize="medium"
    )
    return ax



def save_figures(
    scores: xr.Dataset,
    alpha: float,
    folder: str | os.PathLike,
    *,
    similarity: xr.DataArray | None = None,
    sweep: pd.DataFrame | None = None,
    dpi: float = 110,
    alpha_text: str | None = None,
) -> list[Path]:
    """Write the demo's figures as PNG files: Figure 4, the α sweep and the thresholds.

    Parameters
    ----------
    scores : xarray.Dataset
        The scores cube with ``quality`` (ground truth over ``dice`` and ``hd95``).
    alpha : float
        The α whose alarm counts Figure 4 shows, marked on the sweep.
    folder : str or path-like
        An existing folder; the files are written atomically.
    similarity : xarray.DataArray, optional
        The cube the alarms are computed on (e.g. :func:`qe_nb.core.statistics.label_mean`
        of ``scores["similarity"]``); default ``scores["similarity"]``.
    sweep : pandas.DataFrame, optional
        The sweep table to draw (:func:`qe_nb.sweep_table`); computed over the default α
        grid when not given.
    dpi : float, default 110
        Resolution of the files.
    alpha_text : str, optional
        Which α the figures show, e.g. ``"α = 0.25 (entropy)"``: Figure 4's title and the
        sweep's legend entry; default ``"α = <alpha>"``.

    Returns
    -------
    list of pathlib.Path
        ``figure4_alarms_vs_quality.png`` (its distance axis in the cube's units: mm, or px
        for images without spacing), ``alpha_sweep.png``, ``thresholds.png`` in
        ``folder``.

    Raises
    ------
    InputError
        When ``scores`` has no ``quality`` with the ``dice`` and ``hd95`` metrics.
    """
    from qe_nb.core.alarms import alarms, risk, thresholds
    from qe_nb.core.calibration import sweep_table
    from qe_nb.core.statistics import case_quality
    from qe_nb.data.images import atomic_write
    from qe_nb.ui.style import metric_units
    from qe_nb.ui.sweep_figures import sweep_plot, threshold_plot

    if not isinstance(scores, xr.Dataset) or "quality" not in scores.data_vars:
        raise InputError(
            "`scores` must be a scores Dataset with ground truth ('quality'); got "
            f"{type(scores).__name__} without it. Score a cohort with references."
        )
    sim = scores["similarity"] if similarity is None else similarity
    # a case's quality: the mean over the labels that have a value (as the demo always did)
    quality = case_quality(scores["quality"], "dice", skipna=True)
    if sweep is None:
        sweep = sweep_table(sim, quality=quality)
    counts = risk(alarms(sim, alpha))
    hd = case_quality(scores["quality"], "hd95", skipna=True)
    said = alpha_text or f"α = {float(alpha):.2f}"

    def figure4() -> Any:
        fig = alarm_count_vs_quality(
            counts, quality, hd,
            distance_label=f"HD95 to reference ({metric_units(scores['quality'], 'hd95')})")
        fig.suptitle(f"Alarm counts at {said}", fontsize="medium")
        return fig

    figures = {
        "figure4_alarms_vs_quality.png": figure4,
        "alpha_sweep.png": lambda: sweep_plot(sweep, chosen_alpha=alpha, chosen_label=said),
        "thresholds.png": lambda: threshold_plot(thresholds(sim, alpha)),
    }
    written = []
    for name, make in figures.items():
        path = Path(os.fspath(folder)) / name
        with atomic_write(path, mode="wb") as fh:
            make().savefig(fh, dpi=dpi, bbox_inches="tight", format="png")
        written.append(path)
    return written

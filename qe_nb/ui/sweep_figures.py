"""The calibration figures: the α sweep (the paper's Tables 1-2 as curves and a heatmap)
and the thresholds per algorithm (Table 3).

Both take the core's outputs (:func:`qe_nb.sweep_table` or :func:`qe_nb.sweep`,
:func:`qe_nb.thresholds`) and return a :class:`matplotlib.figure.Figure` built without
``pyplot``. A metric's direction and units come from the cube's coordinates, else from the
core's metric registry (:data:`qe_nb.core.metrics.METRICS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from qe_nb.core.metrics import METRICS
from qe_nb.exceptions import InputError
from qe_nb.ui.style import (
    CANDIDATE_COLORS,
    HIGHLIGHT_COLOR,
    LINESTYLES,
    MARKERS,
    new_figure,
    units_text,
)

__all__ = ["sweep_plot", "threshold_plot", "sweep_frame", "AlphaMarker", "COUNT_COLUMN"]

COUNT_COLUMN = re.compile(r"^(\d+)a$")
"""The alarm-count columns of a sweep table (``0a``, ``1a``, ...); group 1 is the count."""

_HEAT_ROW_INCHES = 0.32  # height of one α row of the heatmap
_HEAT_COLUMN_INCHES = 0.3  # width of one alarm-count column: fits "300" in small text
_LINE_PANEL_INCHES = 5.0


def sweep_frame(table: pd.DataFrame | xr.Dataset) -> pd.DataFrame:
    """The sweep in the layout of the paper's Tables 1-2: alpha, entropy, r:<metric>, <k>a.

    A Dataset over ``alpha`` (:func:`qe_nb.sweep`) is flattened first; rows are sorted by α.
    """
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
    if not any(COUNT_COLUMN.match(c) for c in columns):
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


def _even_scale(grid: np.ndarray) -> tuple[Callable, Callable]:
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
    chosen_label: str | None = None,
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
    chosen_label : str, optional
        The legend entry of ``chosen_alpha``, e.g. ``"α = 0.25 (entropy)"``; default
        ``"chosen α = 0.25"`` (rounded to 2 decimals).

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
    frame = sweep_frame(sweep_ds_or_table)
    if chosen_alpha is not None and (
        isinstance(chosen_alpha, bool)
        or not isinstance(chosen_alpha, (int, float, np.floating, np.integer))
        or not np.isfinite(chosen_alpha)
    ):
        raise InputError(f"`chosen_alpha` must be a finite number or None; got {chosen_alpha!r}.")
    alpha = frame["alpha"].to_numpy(dtype=float)
    r_columns = [c for c in frame.columns if c.startswith("r:")]
    count_columns = sorted(
        (c for c in frame.columns if COUNT_COLUMN.match(c)),
        key=lambda c: int(COUNT_COLUMN.match(c).group(1)),
    )
    hist = frame[count_columns].to_numpy(dtype=float)

    # The heatmap widens with the number of counts; the line plot keeps its width.
    line_width = _LINE_PANEL_INCHES
    heat_width = max(4.0, _HEAT_COLUMN_INCHES * len(count_columns) + 1.0)
    fig = new_figure(fig, (line_width + heat_width, max(4.5, _HEAT_ROW_INCHES * len(frame) + 1.6)))
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
                marker=MARKERS[(i + 1) % len(MARKERS)], markersize=4,
                linestyle=LINESTYLES[(i // 6 + 1) % len(LINESTYLES)], label=c,
            )
        twin.set_ylabel("Pearson r, alarm count vs quality (dimensionless)")
    if chosen_alpha is not None:
        handles.append(ax.axvline(float(chosen_alpha), color=HIGHLIGHT_COLOR, linestyle="--",
                                  linewidth=1.5,
                                  label=chosen_label or f"chosen α = {round(float(chosen_alpha), 2):g}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=min(4, len(handles)), fontsize="small", frameon=False)
    ax.set_title("entropy and correlation against α", loc="left", fontsize="medium")

    finite = hist[np.isfinite(hist)]
    vmax = float(finite.max()) if finite.size else 1.0
    heat.imshow(hist, cmap="Blues", aspect="auto", vmin=0, vmax=max(vmax, 1.0),
                interpolation="nearest")
    for (i, j), v in np.ndenumerate(hist):
        if np.isfinite(v):
            heat.text(j, i, f"{v:g}", ha="center", va="center", fontsize="small",
                      color="white" if v > 0.6 * vmax else "black")
    heat.set_xticks(range(len(count_columns)),
                    [COUNT_COLUMN.match(c).group(1) for c in count_columns])
    heat.set_yticks(range(len(frame)), [f"{a:g}" for a in alpha])
    heat.set_xlabel("alarm count")
    heat.set_ylabel("α")
    heat.set_title("cases per alarm count", loc="left", fontsize="medium")
    if chosen_alpha is not None:
        rows = np.flatnonzero(np.isclose(alpha, float(chosen_alpha)))
        for i in rows:
            heat.add_patch(Rectangle((-0.5, i - 0.5), len(count_columns), 1.0, fill=False,
                                     edgecolor=HIGHLIGHT_COLOR, linewidth=2.5))
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

    fig = new_figure(fig, (max(4.5, 0.6 * len(algorithms) + 2.2) * len(metrics), 4.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    width = 0.7
    step = width / max(1, len(labels))
    xs = np.arange(len(algorithms))
    for k, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
        values = th.isel(metric=k).values.astype(float)
        spec = METRICS.get(metric)
        higher = _metric_coord(th, "higher_is_better", k, True if spec is None else spec.higher_is_better)
        units = str(_metric_coord(th, "units", k, "1" if spec is None else spec.units))
        finite = values[np.isfinite(values)]
        if not bool(higher) and finite.size and (finite <= 0).all() and (finite < 0).any():
            values = -values
        for j, label in enumerate(labels):
            offset = -width / 2 + step * (j + 0.5) if len(labels) > 1 else 0.0
            y = values[:, j]
            ok = np.isfinite(y)
            ax.scatter(xs[ok] + offset, y[ok], color=CANDIDATE_COLORS[j % 6],
                       marker=MARKERS[j % len(MARKERS)], s=36, zorder=2,
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
        ax.set_ylabel(f"{metric} threshold ({units_text(units)})")
        direction = "alarm below" if bool(higher) else "alarm above"
        ax.set_title(f"{metric}: {direction}", loc="left", fontsize="medium")
        ax.grid(axis="y", color="0.9", zorder=0)
    if len(labels) > 1:
        fig.legend(title="label", loc="outside right upper", fontsize="small")
    elif labels != ["all"]:  # one structure (e.g. the mean over the labels): named, no legend
        fig.suptitle(f"thresholds of {labels[0]}", fontsize="medium")
    return fig


def _metric_coord(th: xr.DataArray, name: str, k: int, default: Any) -> Any:
    if name in th.coords and "metric" in th[name].dims:
        return th[name].values[k]
    return default


class AlphaMarker:
    """The chosen-α marker of a :func:`sweep_plot` figure, movable without redrawing it.

    A dashed line at α on the curves and a frame around α's heatmap row (when α is on the
    grid), as ``sweep_plot(..., chosen_alpha=α)`` draws them; an app renders the figure
    once without them (:class:`qe_nb.ui.render.BlitLayer`) and draws only these per α.

    Parameters
    ----------
    fig : Figure
        Drawn by :func:`sweep_plot` without ``chosen_alpha``.
    alphas : sequence of float
        The sweep's α grid, in the figure's row order (sorted).

    Attributes
    ----------
    artists : list of Artist
        The line and the row frame.

    Examples
    --------
    >>> table = pd.DataFrame({"alpha": [0.0, 0.1], "entropy": [1.0, 0.9], "0a": [3, 4],
    ...                       "1a": [2, 1]})
    >>> marker = AlphaMarker(sweep_plot(table), [0.0, 0.1])
    >>> marker.move(0.1); marker.frame.get_visible(), marker.frame.get_y()
    (True, 0.5)
    >>> marker.move(0.05); marker.frame.get_visible()
    False
    """

    def __init__(self, fig: Figure, alphas: Any) -> None:
        lines, heat = fig.axes[0], fig.axes[1]
        self._alphas = np.asarray(alphas, dtype=float)
        self._lines = lines
        self.line = lines.axvline(0.0, color=HIGHLIGHT_COLOR, linestyle="--", linewidth=1.5,
                                  visible=False)
        n_columns = heat.images[0].get_array().shape[1]
        self.frame = heat.add_patch(Rectangle((-0.5, -0.5), n_columns, 1.0, fill=False,
                                              edgecolor=HIGHLIGHT_COLOR, linewidth=2.5,
                                              visible=False))
        self.artists = [self.line, self.frame]

    def move(self, alpha: float) -> None:
        """Put the marker at ``alpha`` (hidden where α is off the axis or the grid)."""
        lo, hi = sorted(self._lines.get_xlim())
        self.line.set_xdata([alpha, alpha])
        self.line.set_visible(bool(lo <= alpha <= hi))
        rows = np.flatnonzero(np.isclose(self._alphas, alpha, atol=1e-9))
        self.frame.set_visible(bool(rows.size))
        if rows.size:
            self.frame.set_y(float(rows[0]) - 0.5)

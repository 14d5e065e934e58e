"""The panels of :class:`qe_nb.ui.explorer.CalibrationExplorer`: their Output widgets and tabs
(:class:`ExplorerPanels`) and the small views with one ``draw`` method each: Figure 4 (or the
alarm histogram), and the α sweep (figure and table).

A slider move has to feel immediate (under 150 ms for 1,000 cases x 5 algorithms x 3 labels
x 2 metrics, ``benchmarks/bench_widgets.py``), so each view does the least work that shows
the same thing: Figure 4 is drawn once per selection and then updated in place
(:func:`qe_nb.ui.figures.update_alarm_count_vs_quality`) on a kept background; the sweep
figure is rendered once per selection and only its α marker is drawn per move
(:class:`qe_nb.ui.render.BlitLayer`).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.ui.common import (
    as_frame,
    figure_png_at,
    freeze_layout,
    html_table,
    ipywidgets,
    show_html,
    show_png,
)
from qe_nb.ui.style import app_text, metric_units

__all__ = ["ExplorerPanels", "QualityView", "SweepView", "summary_html", "triage_html",
           "show_thresholds"]

MAX_CACHED_SELECTIONS = 16
"""Selections whose sweep (table, figure, PNGs) is kept: boxes are often toggled back."""

MAX_SWEEP_IMAGES = 64
"""Sweep PNGs kept per selection, by α: sliding back and forth encodes nothing again."""


class ExplorerPanels:
    """The explorer's Output widgets, one per panel, and the tabs that hold all but Figure 4.

    Parameters
    ----------
    triage : bool
        Whether there is a triage-performance panel (it needs ground truth).

    Attributes
    ----------
    quality, sweep, sweep_table, thresholds, worklist : ipywidgets.Output
        Figure 4, the α sweep's figure and table, the thresholds and the worklist; each
        carries a CSS class (``qe-quality-panel``, ...) that the browser tests find it by.
    threshold_units : ipywidgets.HTML
        Under the thresholds: the units of their metrics (CSS class ``qe-units``).
    triage : ipywidgets.Output or None
        The triage performance, None without ground truth.
    by_name : dict of str to ipywidgets.Output
        The panels by the names of the explorer's ``panel_seconds``.
    """

    def __init__(self, *, triage: bool) -> None:
        w = ipywidgets()

        def panel(css: str) -> Any:
            out = w.Output()
            out.add_class(css)
            return out

        self.quality = panel("qe-quality-panel")
        self.sweep = panel("qe-sweep-panel")
        self.sweep_table = panel("qe-sweep-table")
        self.thresholds = panel("qe-threshold-table")
        self.threshold_units = w.HTML()
        self.threshold_units.add_class("qe-units")
        self.worklist = panel("qe-worklist")
        self.triage = panel("qe-triage") if triage else None
        self.by_name: dict[str, Any] = {
            "quality": self.quality, "sweep": self.sweep, "sweep_table": self.sweep_table,
            "thresholds": self.thresholds, "worklist": self.worklist,
        }
        if self.triage is not None:
            self.by_name["triage"] = self.triage

    def tabs(self, *, top: int) -> Any:
        """The tabs: the α sweep, the thresholds, the worklist (``top`` rows) and the triage."""
        w = ipywidgets()
        children = [w.VBox([self.sweep, self.sweep_table]),
                    w.VBox([self.thresholds, self.threshold_units]), self.worklist]
        titles = ["α sweep (Tables 1-2)", "thresholds (Table 3)", f"worklist (top {top})"]
        if self.triage is not None:
            children.append(self.triage)
            titles.append("triage performance")
        tabs = w.Tab(children=children)
        for i, title in enumerate(titles):
            tabs.set_title(i, title)
        return tabs


class QualityView:
    """Figure 4 (alarm count against quality) or, without ground truth, the alarm histogram.

    Parameters
    ----------
    panel : ipywidgets.Output
        Where the PNG is shown.
    dpi : float
        Resolution.
    dice_label, distance_label : str
        Figure 4's y-axis labels.

    Attributes
    ----------
    figure : Figure or None
        The figure shown (kept and updated in place).
    """

    def __init__(self, panel: Any, *, dpi: float, dice_label: str, distance_label: str) -> None:
        self.panel = panel
        self.figure: Any = None
        self._dpi = dpi
        self._labels = {"dice_label": dice_label, "distance_label": distance_label}
        self._layouts: dict[str, list] = {}
        self._drawn: np.ndarray | None = None
        self._fresh = True

    def new_selection(self) -> None:
        """The next :meth:`draw` builds the figure afresh (new quality values, titles)."""
        self._drawn = None
        self._fresh = True

    def draw(self, counts: np.ndarray, quality: np.ndarray | None, distance: np.ndarray | None,
             *, max_count: int) -> None:
        """Show these alarm counts; nothing is drawn when they equal the ones shown."""
        if self._drawn is not None and np.array_equal(self._drawn, counts):
            return  # α moved within a step of the alarm counts: the picture is the same
        self._drawn = counts.copy()
        with app_text():  # text >= 10 px at the apps' 72 dpi
            self._draw(counts, quality, distance, max_count=max_count)

    def _draw(self, counts: np.ndarray, quality: np.ndarray | None, distance: np.ndarray | None,
              *, max_count: int) -> None:
        from qe_nb.ui import figures

        fig = self.figure
        if quality is None:
            ax = None
            if fig is not None:
                fig.clear()
                ax = fig.add_subplot()
            fig = figures.alarm_histogram(counts, max_count=max_count, ax=ax).figure
            freeze_layout(fig, self._layouts, "quality")
            png = figure_png_at(fig, self._dpi)
        else:
            if fig is not None and not self._fresh:
                figures.update_alarm_count_vs_quality(fig, counts, quality, distance,
                                                      max_count=max_count)
            else:
                fig = figures.alarm_count_vs_quality(counts, quality, distance, fig=fig,
                                                     max_count=max_count, **self._labels)
                freeze_layout(fig, self._layouts, "quality", fresh=True)
                self._fresh = False
            # only the points, mean bars, legends and titles are drawn on a kept background
            png = figure_png_at(fig, self._dpi, reuse_background=True)
        self.figure = fig
        show_png(self.panel, png)


class SweepView:
    """The α sweep of the selection: the figure with the α marker, and the table.

    Parameters
    ----------
    panel, table_panel : ipywidgets.Output
        Where the figure and the table are shown.
    dpi : float
        Resolution.

    Attributes
    ----------
    table : pandas.DataFrame or None
        The sweep of the current selection (:func:`qe_nb.sweep_table`).
    figure : Figure or None
        Its figure (one per selection, kept while the selection is cached).
    pngs : dict of float to bytes
        The PNGs shown so far for the current selection, by α.
    """

    def __init__(self, panel: Any, table_panel: Any, *, dpi: float) -> None:
        self.panel = panel
        self.table_panel = table_panel
        self._dpi = dpi
        self._entry: dict[str, Any] = {}
        self._cache: dict[Hashable, dict[str, Any]] = {}

    @property
    def table(self) -> pd.DataFrame | None:
        return self._entry.get("table")

    @property
    def figure(self) -> Any:
        return self._entry.get("figure")

    @property
    def pngs(self) -> dict[float, bytes]:
        return self._entry.setdefault("pngs", {})

    def select(self, key: Hashable, make_table: Callable[[], pd.DataFrame]) -> None:
        """Show the sweep of the selection ``key``; ``make_table()`` computes its table (the
        caller's :func:`qe_nb.sweep_table`) only the first time.

        The last :data:`MAX_CACHED_SELECTIONS` selections keep their table, figure, marker
        and PNGs.
        """
        entry = self._cache.get(key)
        if entry is None:
            entry = {"table": make_table()}
            if len(self._cache) >= MAX_CACHED_SELECTIONS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = entry
        self._entry = entry

    def draw(self, alpha: float) -> None:
        """Mark ``alpha`` on the figure and the table."""
        self.draw_figure(alpha)
        self.draw_table(alpha)

    def draw_figure(self, alpha: float) -> None:
        """Show the figure with the marker at ``alpha``."""
        from qe_nb.ui.render import BlitLayer
        from qe_nb.ui.sweep_figures import AlphaMarker, sweep_plot

        entry = self._entry
        if entry.get("layer") is None:
            with app_text():  # text >= 10 px at the apps' 72 dpi
                fig = sweep_plot(entry["table"], chosen_alpha=None)
                marker = AlphaMarker(fig, entry["table"]["alpha"].to_numpy(dtype=float))
                layer = BlitLayer(fig, marker.artists, dpi=self._dpi)
            entry.update(figure=fig, marker=marker, layer=layer)
        pngs = self.pngs
        png = pngs.pop(alpha, None)
        if png is None:
            entry["marker"].move(alpha)
            with app_text():
                png = entry["layer"].png()
            if len(pngs) >= MAX_SWEEP_IMAGES:
                pngs.pop(next(iter(pngs)))
        pngs[alpha] = png  # most recently used last
        show_png(self.panel, png)

    def draw_table(self, alpha: float) -> None:
        """Show the table with ``alpha``'s row highlighted."""
        table = self._entry["table"]
        alphas = table["alpha"].to_numpy(dtype=float)
        current = np.flatnonzero(np.isclose(alphas, alpha, atol=1e-9)).tolist()
        text = html_table(table.set_index("alpha"), css_class="qe-sweep", current_rows=current,
                          digits=2)
        note = "" if current else f"<p>α = {alpha:.2f} lies between the rows of the sweep grid.</p>"
        show_html(self.table_panel, text + note)


def summary_html(alpha: float | xr.DataArray, global_alpha: float, counts: xr.DataArray,
                 quality: np.ndarray | None) -> str:
    """The one-line summary: α (and its per-group range), alarms, cases flagged, the entropy
    and, with ground truth (``quality`` in the case order of ``counts``), Pearson r."""
    from qe_nb.core.statistics import count_entropy, pearson_r

    flagged = int((counts.values > 0).sum())
    text = f"α = {global_alpha:.2f}"
    if isinstance(alpha, xr.DataArray):
        text += f" (+ Δα per {', '.join(alpha.dims)}: {float(alpha.min()):.2f}…{float(alpha.max()):.2f})"
    parts = [text, f"{int(counts.values.sum())} alarms",
             f"{flagged} of {counts.sizes['case']} cases with ≥ 1 alarm",
             f"entropy {count_entropy(counts.values):.2f}"]
    if quality is not None:
        r = pearson_r(counts.values, quality)
        parts.append(f"r = {r:.2f}" if np.isfinite(r) else "r undefined")
    return " · ".join(html.escape(p) for p in parts)


def triage_html(counts: xr.DataArray, quality: xr.DataArray, *, n_bootstrap: int) -> str:
    """The triage performance of the alarm counts (:func:`qe_nb.triage_performance`) as a table."""
    from qe_nb.core.triage import triage_performance

    perf = triage_performance(counts, quality, n_bootstrap=n_bootstrap)
    return html_table(as_frame(perf), css_class="qe-triage-table")


def show_thresholds(panel: Any, note: Any, table: pd.DataFrame, cube: xr.DataArray) -> None:
    """The thresholds table (:func:`qe_nb.threshold_table`) in the Output ``panel``, and the
    units of its metrics, read from ``cube`` (mm, or px for images without spacing), in the
    HTML widget ``note``."""
    show_html(panel, html_table(table, css_class="qe-thresholds"))
    units = [f"{m} in {u}" for m in table.columns if (u := metric_units(cube, str(m))) not in ("1", "")]
    note.value = f"<p>{html.escape(', '.join(units))}</p>" if units else ""

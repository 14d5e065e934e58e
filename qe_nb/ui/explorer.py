"""The calibration app: set α by hand or by calibration, and watch alarms, thresholds and
the worklist follow.

:class:`CalibrationExplorer` composes small parts: :class:`AlphaControls` (the global α
slider, per-group Δα overrides, the metrics / labels / algorithms that count, the
calibration objective and button) and the views of :mod:`qe_nb.ui.explorer_views` (the
panels and their tabs, Figure 4, the α sweep with its per-selection cache, thresholds,
worklist, triage performance); its arguments are checked by
:func:`qe_nb.ui.app_inputs.check_explorer_inputs`. No science happens here: a callback
reads the widgets, calls the core (:func:`qe_nb.alarms`, :func:`qe_nb.thresholds`,
:func:`qe_nb.sweep_table`, :func:`qe_nb.calibrate`, :func:`qe_nb.triage_performance`) and
redraws.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.ui.app_inputs import check_explorer_inputs
from qe_nb.ui.common import TABLE_CSS, WidgetApp, check_number, html_table, ipywidgets, show_html
from qe_nb.ui.controls import CALIBRATE_BY, OVERRIDE_DIMS, AlphaControls, combine_alpha
from qe_nb.ui.explorer_views import (
    ExplorerPanels,
    QualityView,
    SweepView,
    show_thresholds,
    summary_html,
    triage_html,
)
from qe_nb.ui.style import metric_units

__all__ = ["CalibrationExplorer", "combine_alpha", "OVERRIDE_DIMS"]

class CalibrationExplorer(WidgetApp):
    """Calibrate α interactively and watch alarms, thresholds and the worklist follow.

    Parameters
    ----------
    scores : xarray.Dataset
        The scores cube (:func:`qe_nb.score`): ``similarity`` over (case, algorithm, label,
        metric) and, optionally, ``quality`` over (case, label, metric) -- the ground truth
        that enables the Pearson objectives, Figure 4 and the triage-performance panel.
    quality_metric : str, default "dice"
        The ``quality`` metric that is correlated with the alarm count (averaged over the
        selected labels). Ignored without ``quality``.
    alpha : float, default 0.0
        The initial global α.
    top : int, default 20
        Rows of the worklist panel.
    n_bootstrap : int, default 0
        Bootstrap resamples behind the triage panel's confidence intervals
        (:func:`qe_nb.triage_performance`); 0 shows point estimates only, because 1,000
        resamples of 1,000 cases take over a second on every redraw.
    dpi : float, default 72
        Resolution of the figure panels (lower redraws faster).

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app; a notebook displays the app object itself too.
    alpha : float or xarray.DataArray
        Exactly what is passed to :func:`qe_nb.alarms`: the global α, or (with overrides)
        a DataArray over the overridden dims, see :func:`combine_alpha`.
    similarity : xarray.DataArray
        The selected sub-cube (checked metrics, labels and algorithms).
    result : xarray.Dataset
        ``alarms`` = ``qe_nb.alarms(app.similarity, app.alpha)`` and ``risk`` = its
        :func:`qe_nb.risk`.
    sweep : pandas.DataFrame
        The sweep of the selected sub-cube (:func:`qe_nb.sweep_table`), computed once per
        selection, not per slider move.
    redraw_seconds, redraw_cpu_seconds : float
        Wall and CPU time of the last recompute-and-redraw (widget change to every panel
        filled); ``benchmarks/bench_widgets.py`` times it from the slider's side.
    panel_seconds, panel_cpu_seconds : dict of str to float
        The same split into ``result`` (alarms, risk and the thresholds) and each panel, to
        see what a redraw spends its time on.

    Raises
    ------
    InputError
        When ``scores`` is not a scores Dataset (or a similarity DataArray), when
        ``quality_metric`` is not in the ground truth, or ``alpha`` is not a finite number.
    ImportError
        Without ipywidgets.

    Notes
    -----
    Per-group α: each override slider is an offset Δα that is *added* to the global α (an
    unchecked override is ``None``: the group uses the global α); see :func:`combine_alpha`.
    Pressing *Calibrate* runs :func:`qe_nb.calibrate` on the selected sub-cube with the chosen
    objective: "global" sets the global α to its result, clearing every override (and says
    so); "per label" / "per algorithm" / "per metric" calibrates one α per group (``by=``) and
    shows it as the global α (the groups' median) plus a Δα per group.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sim = xr.DataArray(rng.random((8, 2, 1, 1)), dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": [f"c{i}" for i in range(8)], "algorithm": ["a", "b"],
    ...                            "label": ["tumor"], "metric": ["dice"]})
    >>> from qe_nb import alarms
    >>> app = CalibrationExplorer(xr.Dataset({"similarity": sim}))
    >>> app.alpha_slider.value = 0.5
    >>> app.alpha, bool((app.result["alarms"] == alarms(sim, 0.5)).all())
    (0.5, True)
    """

    def __init__(
        self,
        scores: xr.Dataset,
        *,
        quality_metric: str = "dice",
        alpha: float = 0.0,
        top: int = 20,
        n_bootstrap: int = 0,
        dpi: float = 72,
    ) -> None:
        inputs = check_explorer_inputs(scores, quality_metric=quality_metric, alpha=alpha,
                                       top=top, n_bootstrap=n_bootstrap, dpi=dpi)
        self.scores, self._all = inputs.scores, inputs.similarity
        self.quality_metric = quality_metric
        self.has_ground_truth = inputs.has_ground_truth
        self._top, self._n_bootstrap, self._dpi = inputs.top, inputs.n_bootstrap, inputs.dpi
        self._distance_metric = inputs.distance_metric
        self._hold = False
        self.redraw_seconds = float("nan")

        objectives = ["entropy"] + (["pearson", "combined"] if self.has_ground_truth else [])
        self.controls = AlphaControls(inputs.names, alpha=float(alpha), objectives=objectives)
        c = self.controls
        (self.alpha_slider, self.alpha_readout, self.summary, self.checkboxes,
         self.override_checkboxes, self.override_sliders, self.overrides_accordion,
         self.objective_dropdown, self.calibrate_button) = (
            c.alpha_slider, c.alpha_readout, c.summary, c.checkboxes, c.override_checkboxes,
            c.override_sliders, c.overrides_accordion, c.objective_dropdown, c.calibrate_button)

        p = ExplorerPanels(triage=self.has_ground_truth)
        (self.quality_panel, self.sweep_panel, self.sweep_table_panel, self.threshold_panel,
         self.worklist_panel, self.triage_panel, self.panels) = (
            p.quality, p.sweep, p.sweep_table, p.thresholds, p.worklist, p.triage, p.by_name)
        self.threshold_units = p.threshold_units
        self.quality_view = QualityView(
            self.quality_panel, dpi=self._dpi,
            dice_label=f"{quality_metric} of the fusion with the reference",
            distance_label=(f"{self._distance_metric} of the fusion to the reference "
                            f"({metric_units(self.scores['quality'], self._distance_metric)})"
                            if self._distance_metric is not None else "distance"),
        )
        self.sweep_view = SweepView(self.sweep_panel, self.sweep_table_panel, dpi=self._dpi)
        w = ipywidgets()
        self.widget = w.VBox([
            w.HTML(TABLE_CSS),
            w.HBox([self.alpha_slider, self.alpha_readout]),
            w.HBox([self.objective_dropdown, c.by_dropdown, self.calibrate_button]),
            c.calibration_note,
            self.summary,
            self.overrides_accordion,
            c.selection_box,
            self.quality_panel,
            p.tabs(top=self._top),
        ])
        self.widget.add_class("qe-calibration-explorer")
        c.observe(on_alpha=self._on_alpha, on_selection=self._on_selection,
                  on_calibrate=self._on_calibrate)
        self._select()
        self.refresh()

    # ---- state as data

    @property
    def selection(self) -> dict[str, list[str]]:
        """The checked names per dim (``metric``, ``label``, ``algorithm``)."""
        return self.controls.selection

    @property
    def overrides(self) -> dict[str, dict[str, float | None]]:
        """The Δα per dim and name; ``None`` where the override is off (use the global α)."""
        return self.controls.overrides

    @property
    def alpha(self) -> float | xr.DataArray:
        """What is passed to :func:`qe_nb.alarms` (see :func:`combine_alpha`)."""
        coords = {dim: [str(v) for v in self.similarity[dim].values] for dim in OVERRIDE_DIMS}
        return combine_alpha(float(self.alpha_slider.value), self.overrides, coords=coords)

    @property
    def quality(self) -> xr.DataArray | None:
        """The ground truth per case: ``quality_metric`` averaged over the selected labels."""
        return self._quality_of(self.quality_metric)

    @property
    def sweep(self) -> pd.DataFrame | None:
        """The sweep of the selected sub-cube (:func:`qe_nb.sweep_table`)."""
        return self.sweep_view.table

    def _quality_of(self, metric: str | None) -> xr.DataArray | None:
        from qe_nb.core.statistics import case_quality

        if not self.has_ground_truth or metric is None:
            return None
        return case_quality(self.scores["quality"], metric, labels=self.selection["label"])

    # ---- callbacks

    def _on_alpha(self, change: Any = None) -> None:
        if not self._hold:
            self.refresh()

    def _on_selection(self, change: Any) -> None:
        if self._hold:
            return
        empty = [dim for dim, names in self.selection.items() if not names]
        if empty:
            # at least one of each must count: undo the change that emptied a dim
            self._hold = True
            change["owner"].value = True
            self._hold = False
            self.summary.value = (f"<span style='color:#D55E00'>keep at least one {empty[0]} "
                                  "checked</span>")
            return
        self._select()
        self.refresh()

    def _on_calibrate(self, button: Any = None) -> None:
        from qe_nb.core.calibration import calibrate

        objective = self.objective_dropdown.value
        quality = self.quality if objective != "entropy" else None
        by = CALIBRATE_BY[self.controls.by_dropdown.value]
        alpha = calibrate(self.similarity, objective=objective, quality=quality, by=by)
        cleared = self.controls.active_offsets()
        if by is None:
            self.set_alpha(float(alpha))
            note = f"Calibrated ({objective}): α = {float(alpha):.2f}" + (
                f"; the {cleared} Δα offset(s) were cleared (choose 'per label', 'per algorithm' or "
                "'per metric' to calibrate one α per group instead)" if cleared else "")
        else:
            values = {str(k): float(v) for k, v in zip(alpha[by].values, alpha.values, strict=True)}
            centre = float(np.median(list(values.values())))
            with self.hold_redraws():
                self.controls.clear_overrides()
                self.controls.set_global(centre)
                self.controls.set_offsets(by, {k: v - centre for k, v in values.items()})
            note = (f"Calibrated ({objective}) one α per {by}: global α = {centre:.2f} (their median) "
                    "plus Δα " + ", ".join(f"{k} {v - centre:+.2f}" for k, v in values.items()))
        self.controls.calibration_note.value = f"<span style='color:#555'>{html.escape(note)}</span>"

    def set_alpha(self, alpha: float, *, clear_overrides: bool = True) -> None:
        """Set the global α (widening the slider if needed) and redraw once."""
        alpha = check_number(alpha, "alpha")
        with self.hold_redraws():
            if clear_overrides:
                self.controls.clear_overrides()
            self.controls.set_global(alpha)

    @contextlib.contextmanager
    def hold_redraws(self) -> Iterator[CalibrationExplorer]:
        """Change several widgets from code, then recompute and redraw once.

        Use it as ``with app.hold_redraws(): app.alpha_slider.value = 0.1; ...``; a
        selection left without any metric, label or algorithm gets its first one back.
        """
        if self._hold:
            yield self
            return
        before = self.selection
        self._hold = True
        try:
            yield self
        finally:
            self.controls.restore_one_of_each()
            self._hold = False
        if self.selection != before:
            self._select()
        self.refresh()

    # ---- computing

    def _select(self) -> None:
        """New selection: cut the sub-cube and run the sweep once (not per slider move)."""
        from qe_nb.core.calibration import DEFAULT_ALPHAS, sweep_table

        sel = self.selection
        self.similarity = self._all.sel(metric=sel["metric"], label=sel["label"],
                                        algorithm=sel["algorithm"])
        # the ground truth of the selection, as numpy in its case order, for every redraw
        self._quality = self._quality_of(self.quality_metric)
        cases = self.similarity["case"]
        self._quality_values, self._distance_values = (
            None if q is None else q.sel(case=cases).values.astype(float)
            for q in (self._quality, self._quality_of(self._distance_metric)))
        key = tuple(tuple(names) for names in sel.values())
        self.sweep_view.select(key, lambda: sweep_table(self.similarity, DEFAULT_ALPHAS,
                                                        quality=self._quality))
        self.quality_view.new_selection()

    def refresh(self) -> None:
        """Recompute the result for the current widgets and redraw every panel."""
        from qe_nb.core.alarms import alarms, risk, threshold_table, thresholds
        from qe_nb.core.triage import worklist

        start, start_cpu = time.perf_counter(), time.process_time()
        alpha = self.alpha
        g = float(self.alpha_slider.value)
        flags = alarms(self.similarity, alpha)
        counts = risk(flags)
        self.result = xr.Dataset(
            {"alarms": flags, "risk": counts},
            attrs={"alpha": g, "overrides": int(isinstance(alpha, xr.DataArray))},
        )
        # one thresholds() serves the thresholds table and the worklist's reasons
        limits = thresholds(self.similarity, alpha)
        seconds = {"result": time.perf_counter() - start}
        cpu_seconds = {"result": time.process_time() - start_cpu}
        possible = int(np.prod([self.similarity.sizes[d] for d in OVERRIDE_DIMS]))
        for name, draw in (
            ("summary", lambda: self._draw_summary(alpha, g, counts)),
            # the x-axis spans every possible count of the selection: it stays still
            ("quality", lambda: self.quality_view.draw(
                counts.values, self._quality_values, self._distance_values, max_count=possible)),
            ("sweep", lambda: self.sweep_view.draw_figure(g)),
            ("sweep_table", lambda: self.sweep_view.draw_table(g)),
            ("thresholds", lambda: show_thresholds(
                self.threshold_panel, self.threshold_units, threshold_table(None, thresholds=limits),
                self.similarity)),
            # only the shown rows' reasons are worded, from the alarms and thresholds above
            ("worklist", lambda: show_html(self.worklist_panel, html_table(
                worklist(self.similarity, quality=self._quality, top=self._top, alarms=flags,
                         thresholds=limits), css_class="qe-worklist-table"))),
            ("triage", lambda: self.triage_panel is not None and show_html(
                self.triage_panel, triage_html(counts, self._quality, n_bootstrap=self._n_bootstrap))),
        ):
            tick, tick_cpu = time.perf_counter(), time.process_time()
            draw()
            seconds[name] = time.perf_counter() - tick
            cpu_seconds[name] = time.process_time() - tick_cpu
        self.panel_seconds = seconds
        self.panel_cpu_seconds = cpu_seconds
        self.redraw_seconds = time.perf_counter() - start
        self.redraw_cpu_seconds = time.process_time() - start_cpu

    def _draw_summary(self, alpha: float | xr.DataArray, g: float, counts: xr.DataArray) -> None:
        self.summary.value = summary_html(alpha, g, counts, self._quality_values)
        self.alpha_readout.value = f"<code>{g:.2f}</code>"

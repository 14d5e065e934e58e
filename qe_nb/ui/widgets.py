"""ipywidgets apps over the core: calibrate α by hand or automatically, review one case.

Two apps, each a plain object that builds its widgets and exposes its state as data:

- :class:`CalibrationExplorer` -- α sliders (global and per label / algorithm / metric),
  which metrics, labels and algorithms count, the calibration objective and button, and live
  panels: alarm count against quality (the paper's Figure 4, or the alarm-count histogram
  without ground truth), the α sweep (Tables 1-2 as curves and as a table), the thresholds
  (Table 3), the worklist and the triage performance.
- :class:`CaseViewer` -- one case: the fusion's and the candidates' outlines on a slice of
  an image (Figures 2-3), with the case's scores and alarms.

No science happens here: a callback reads the widgets, calls the core (:mod:`qe_nb.alarms`,
:mod:`qe_nb.calibration`, :mod:`qe_nb.triage`, :mod:`qe_nb.plots`) and redraws. Panels are
filled with ``out.outputs = ()`` and ``out.append_display_data(...)`` (never ``with out:``
while a notebook cell runs, which can hang Voila) or by assigning ``out.outputs`` one
display-data dict (one message to the front end).

A slider move has to feel immediate (goal: under 150 ms for 1,000 cases x 5 algorithms x 3
labels x 2 metrics, ``benchmarks/bench_widgets.py``), so the panels do the least work that
shows the same thing: Figure 4 is drawn once per selection and then updated in place
(:func:`qe_nb.ui.plots.update_alarm_count_vs_quality`) on a kept background
(:func:`qe_nb.ui.plots.figure_png` with ``reuse_background=True``); the sweep figure is drawn
once per selection and only its α marker is painted per move; the worklist words the
reasons of the shown rows only; one :func:`qe_nb.thresholds` call serves the thresholds
table and the worklist.

This is the only module that imports ipywidgets; without it the apps raise an
:class:`ImportError` with the install hint ``pip install "qe-nb[notebook]"``.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError

__all__ = ["CalibrationExplorer", "CaseViewer", "combine_alpha", "OVERRIDE_DIMS"]

OVERRIDE_DIMS: tuple[str, ...] = ("label", "algorithm", "metric")
"""The dims along which α can be overridden, in the order of the Accordion's sections."""

_INSTALL_HINT = 'pip install "qe-nb[notebook]"'
_ALPHA_MIN, _ALPHA_MAX, _ALPHA_STEP = -3.0, 3.0, 0.05
_HIGHLIGHT = "#CC79A7"  # Okabe-Ito reddish purple, as plots.sweep_plot marks the chosen α
_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
_CSS = """<style>
.qe-table {border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums}
.qe-table th, .qe-table td {padding: 2px 6px; border-bottom: 1px solid #ddd; text-align: right}
.qe-table th {background: #f4f4f4}
.qe-table tr.qe-current td {background: #f6dcea; font-weight: bold}
.qe-table td.qe-alarm {background: #f9d3b8; color: #7a2e00; font-weight: bold}
</style>"""


def _ipywidgets():
    """The ipywidgets module, or an ImportError with the install hint."""
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - exercised with a monkeypatched import
        raise ImportError(
            f"qe_nb.widgets needs ipywidgets (and matplotlib); install them with {_INSTALL_HINT}"
        ) from exc
    return ipywidgets


def _display_types():
    try:
        from IPython.display import HTML, Image
    except ImportError as exc:  # pragma: no cover - IPython comes with ipywidgets
        raise ImportError(f"qe_nb.widgets needs IPython; install it with {_INSTALL_HINT}") from exc
    return HTML, Image


# ------------------------------------------------------------------------------- α state


def combine_alpha(
    global_alpha: float,
    overrides: Mapping[str, Mapping[str, float | None]] | None = None,
    *,
    coords: Mapping[str, Sequence[str]] | None = None,
) -> float | xr.DataArray:
    """The α passed to :func:`qe_nb.alarms`: the global α plus the per-group offsets.

    Parameters
    ----------
    global_alpha : float
        The global α.
    overrides : mapping dim -> (mapping name -> float or None), optional
        Per-``label``, per-``algorithm`` and per-``metric`` offsets (Δα). ``None`` (or a
        name left out) means "no override": that group uses the global α.
    coords : mapping dim -> sequence of str, optional
        The names of each dim that the result covers (the selected sub-cube's coords); by
        default the names of the overrides. Overrides of names not listed are ignored.

    Returns
    -------
    float or xarray.DataArray
        ``float(global_alpha)`` when no override is set, else a DataArray named ``alpha``
        over the overridden dims (in the order ``algorithm, label, metric``) holding
        ``global + Δ(label) + Δ(algorithm) + Δ(metric)``.

    Raises
    ------
    InputError
        For an unknown dim or a non-finite number.

    Notes
    -----
    Overrides *add up*: the α of group (a, l, m) is ``α + Δ_label[l] + Δ_algorithm[a] +
    Δ_metric[m]``, an unset override contributing 0. This is unambiguous when several
    overrides touch one group (no rule is needed for which one is "more specific"), and a
    per-group α is an ordinary DataArray that :func:`qe_nb.alarms` broadcasts.

    Examples
    --------
    >>> combine_alpha(0.1)
    0.1
    >>> a = combine_alpha(0.1, {"label": {"edema": 0.5, "necrosis": None},
    ...                         "metric": {"hd95": -0.1}},
    ...                   coords={"label": ["edema", "necrosis"], "metric": ["dice", "hd95"]})
    >>> a.dims, a.values.round(2).tolist()
    (('label', 'metric'), [[0.6, 0.5], [0.1, 0.0]])
    """
    base = _check_number(global_alpha, "global_alpha")
    alpha: float | xr.DataArray = base
    overrides = overrides or {}
    unknown = [d for d in overrides if d not in OVERRIDE_DIMS]
    if unknown:
        raise InputError(
            f"`overrides` has unknown dim(s) {unknown}; expected a subset of {list(OVERRIDE_DIMS)}."
        )
    parts = []
    for dim in ("algorithm", "label", "metric"):
        given = {str(k): v for k, v in (overrides.get(dim) or {}).items() if v is not None}
        names = [str(n) for n in (coords[dim] if coords and dim in coords else given)]
        offsets = [_check_number(given[n], f"overrides[{dim!r}][{n!r}]") if n in given else 0.0
                   for n in names]
        if any(n in given for n in names):
            parts.append(xr.DataArray(np.asarray(offsets, float), dims=dim, coords={dim: names}))
    for part in parts:
        alpha = alpha + part
    if isinstance(alpha, xr.DataArray):
        alpha.name = "alpha"
    return alpha


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"`{name}` must be a finite number; got {value!r}.")
    if not np.isfinite(value):
        raise InputError(f"`{name}` must be a finite number; got {value!r}.")
    return float(value)


# ------------------------------------------------------------------------------- HTML


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if np.isnan(v):
            return "NaN"
        if np.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.{digits}f}"
    return html.escape(str(value))


def _html_table(
    frame: pd.DataFrame,
    *,
    css_class: str = "",
    current_rows: Sequence[int] = (),
    cell_classes: np.ndarray | None = None,
    index: bool = True,
    digits: int = 3,
) -> str:
    """A small HTML table, cheaper than ``DataFrame.to_html`` and with row / cell classes."""
    names = [str(n) for n in frame.index.names] if index else []
    head = "".join(f"<th>{html.escape(n if n != 'None' else '')}</th>" for n in names)
    head += "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    current = set(current_rows)
    values = frame.to_numpy(dtype=object)
    keys = list(frame.index)
    for i in range(len(frame)):
        key = keys[i] if isinstance(keys[i], tuple) else (keys[i],)
        cells = "".join(f"<th>{_fmt(k)}</th>" for k in key) if index else ""
        for j, v in enumerate(values[i]):
            cls = cell_classes[i, j] if cell_classes is not None else ""
            cells += f'<td class="{cls}">{_fmt(v, digits)}</td>' if cls else f"<td>{_fmt(v, digits)}</td>"
        rows.append(f'<tr class="qe-current">{cells}</tr>' if i in current else f"<tr>{cells}</tr>")
    return (f'<table class="qe-table {css_class}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _as_frame(value: Any) -> pd.DataFrame:
    """A table of whatever a core function returned (DataFrame, Series, Dataset, mapping)."""
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, pd.Series):
        return value.to_frame()
    if isinstance(value, xr.Dataset):
        if not value.dims:
            return pd.DataFrame({k: [v.item()] for k, v in value.data_vars.items()})
        return value.to_dataframe()
    if isinstance(value, xr.DataArray):
        return value.to_dataframe(name=value.name or "value") if value.dims else pd.DataFrame(
            {value.name or "value": [value.item()]})
    if isinstance(value, Mapping):
        return pd.DataFrame({"value": list(value.values())}, index=pd.Index(list(value), name=""))
    if hasattr(value, "_asdict"):
        return _as_frame(value._asdict())
    if hasattr(value, "__dict__"):
        return _as_frame(vars(value))
    return pd.DataFrame({"value": [value]})


def _png(fig: Any, dpi: float, *, reuse_background: bool = False) -> bytes:
    """PNG of an app's figure, drawn by Agg directly (:func:`qe_nb.ui.plots.figure_png`).

    The figure keeps ``dpi``: switching back and forth would make Agg a new renderer, and
    matplotlib lay out every text again, on each redraw.
    """
    from qe_nb.ui.plots import figure_png

    if fig.dpi != dpi:
        fig.set_dpi(dpi)
    return figure_png(fig, dpi=dpi, reuse_background=reuse_background)


def _show_png(out: Any, png: bytes) -> None:
    """Show a PNG in an Output widget: one assignment, one message to the front end.

    The same output that ``append_display_data(IPython.display.Image(png))`` makes, without
    clearing first (a second message) or going through IPython's formatters.
    """
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"image/png": base64.b64encode(png).decode("ascii"),
                             "text/plain": "<IPython.core.display.Image object>"}},)


def _show_html(out: Any, text: str) -> None:
    """Show HTML in an Output widget, like :func:`_show_png` (one assignment)."""
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"text/html": text,
                             "text/plain": "<IPython.core.display.HTML object>"}},)


# ------------------------------------------------------------------------------- explorer


class CalibrationExplorer:
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
    objective and sets the global α to its result, clearing every override.

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
        w = _ipywidgets()
        self._html_type, self._image_type = _display_types()
        from qe_nb.core.checks import check_scores

        if isinstance(scores, xr.DataArray):
            scores = xr.Dataset({"similarity": scores})
        if not isinstance(scores, xr.Dataset):
            raise InputError(
                "`scores` must be a scores Dataset with a 'similarity' variable over (case, "
                f"algorithm, label, metric) (qe_nb.score); got {type(scores).__name__}."
            )
        self.scores = scores
        self._all = check_scores(scores, name="scores")
        alpha = _check_number(alpha, "alpha")
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
            raise InputError(f"`top` must be a whole number >= 1; got {top!r}.")
        self._top = int(top)
        if (isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer))
                or n_bootstrap < 0):
            raise InputError(f"`n_bootstrap` must be a whole number >= 0; got {n_bootstrap!r}.")
        self._n_bootstrap = int(n_bootstrap)
        self._dpi = _check_number(dpi, "dpi")
        self.quality_metric = quality_metric
        self.has_ground_truth = "quality" in scores.data_vars
        if self.has_ground_truth:
            metrics = [str(m) for m in scores["quality"]["metric"].values]
            if quality_metric not in metrics:
                raise InputError(
                    f"`quality_metric` {quality_metric!r} is not in the scores' quality; "
                    f"expected one of {metrics}."
                )
            distance = [m for m in ("hd95", "hd", "hd95_medpy", "assd") if m in metrics]
            self._distance_metric = distance[0] if distance else None

        self._names = {d: [str(v) for v in self._all[d].values] for d in OVERRIDE_DIMS}
        self._hold = False
        self._sweeps: dict[tuple, dict[str, Any]] = {}
        self._sweep_cache: dict[str, Any] = {}
        self._figs: dict[str, Any] = {}
        self._layouts: dict[str, list] = {}
        self._drawn_counts: np.ndarray | None = None
        self.redraw_seconds = float("nan")
        self.sweep: pd.DataFrame | None = None

        # --- controls
        self.alpha_slider = w.FloatSlider(
            value=alpha, min=min(_ALPHA_MIN, alpha), max=max(_ALPHA_MAX, alpha), step=_ALPHA_STEP,
            readout_format=".2f", continuous_update=False, description="α",
            layout=w.Layout(width="420px"),
        )
        self.alpha_slider.add_class("qe-alpha-slider")
        self.alpha_readout = w.HTML()
        self.alpha_readout.add_class("qe-alpha-readout")
        self.checkboxes: dict[str, dict[str, Any]] = {
            dim: {n: w.Checkbox(value=True, description=n, indent=False,
                                layout=w.Layout(width="auto")) for n in self._names[dim]}
            for dim in ("metric", "label", "algorithm")
        }
        self.override_checkboxes: dict[str, dict[str, Any]] = {}
        self.override_sliders: dict[str, dict[str, Any]] = {}
        sections = []
        for dim in OVERRIDE_DIMS:
            self.override_checkboxes[dim], self.override_sliders[dim] = {}, {}
            rows = []
            for n in self._names[dim]:
                box = w.Checkbox(value=False, description=n, indent=False,
                                 layout=w.Layout(width="160px"))
                slider = w.FloatSlider(value=0.0, min=_ALPHA_MIN, max=_ALPHA_MAX,
                                       step=_ALPHA_STEP, readout_format="+.2f",
                                       continuous_update=False, description="Δα", disabled=True)
                slider.add_class("qe-override-slider")
                self.override_checkboxes[dim][n], self.override_sliders[dim][n] = box, slider
                rows.append(w.HBox([box, slider]))
            sections.append(w.VBox(rows))
        self.overrides_accordion = w.Accordion(children=sections, selected_index=None)
        for i, dim in enumerate(OVERRIDE_DIMS):
            self.overrides_accordion.set_title(i, f"α per {dim} (Δα added to the global α)")
        options = ["entropy"] + (["pearson", "combined"] if self.has_ground_truth else [])
        self.objective_dropdown = w.Dropdown(options=options, value="entropy",
                                             description="objective")
        self.calibrate_button = w.Button(description="Calibrate", icon="magic",
                                         tooltip="set α to qe_nb.calibrate(...) of the selection")
        self.calibrate_button.add_class("qe-calibrate")
        self.summary = w.HTML()
        self.summary.add_class("qe-alarm-summary")

        # --- panels
        def panel(css: str) -> Any:
            out = w.Output()
            out.add_class(css)
            return out

        self.quality_panel = panel("qe-quality-panel")
        self.sweep_panel = panel("qe-sweep-panel")
        self.sweep_table_panel = panel("qe-sweep-table")
        self.threshold_panel = panel("qe-threshold-table")
        self.worklist_panel = panel("qe-worklist")
        self.triage_panel = panel("qe-triage") if self.has_ground_truth else None
        self.panels = {
            "quality": self.quality_panel, "sweep": self.sweep_panel,
            "sweep_table": self.sweep_table_panel, "thresholds": self.threshold_panel,
            "worklist": self.worklist_panel,
        }
        if self.triage_panel is not None:
            self.panels["triage"] = self.triage_panel

        # --- layout
        selection = w.HBox([
            w.VBox([w.HTML(f"<b>{dim}s that count</b>"),
                    *self.checkboxes[dim].values()]) for dim in ("metric", "label", "algorithm")
        ])
        tab_children = [w.VBox([self.sweep_panel, self.sweep_table_panel]),
                        self.threshold_panel, self.worklist_panel]
        titles = ["α sweep (Tables 1-2)", "thresholds (Table 3)", f"worklist (top {self._top})"]
        if self.triage_panel is not None:
            tab_children.append(self.triage_panel)
            titles.append("triage performance")
        tabs = w.Tab(children=tab_children)
        for i, t in enumerate(titles):
            tabs.set_title(i, t)
        self.widget = w.VBox([
            w.HTML(_CSS),
            w.HBox([self.alpha_slider, self.alpha_readout]),
            w.HBox([self.objective_dropdown, self.calibrate_button]),
            self.summary,
            self.overrides_accordion,
            selection,
            self.quality_panel,
            tabs,
        ])
        self.widget.add_class("qe-calibration-explorer")

        # --- callbacks: read widgets, call the core, redraw
        self.alpha_slider.observe(self._on_alpha, names="value")
        for dim in OVERRIDE_DIMS:
            for n in self._names[dim]:
                self.override_checkboxes[dim][n].observe(self._on_override_toggle, names="value")
                self.override_sliders[dim][n].observe(self._on_alpha, names="value")
        for dim in self.checkboxes:
            for box in self.checkboxes[dim].values():
                box.observe(self._on_selection, names="value")
        self.calibrate_button.on_click(self._on_calibrate)

        self._select()
        self.refresh()

    # ---- state as data

    @property
    def selection(self) -> dict[str, list[str]]:
        """The checked names per dim (``metric``, ``label``, ``algorithm``)."""
        return {dim: [n for n, box in boxes.items() if box.value]
                for dim, boxes in self.checkboxes.items()}

    @property
    def overrides(self) -> dict[str, dict[str, float | None]]:
        """The Δα per dim and name; ``None`` where the override is off (use the global α)."""
        return {
            dim: {n: (float(self.override_sliders[dim][n].value) if box.value else None)
                  for n, box in self.override_checkboxes[dim].items()}
            for dim in OVERRIDE_DIMS
        }

    @property
    def alpha(self) -> float | xr.DataArray:
        """What is passed to :func:`qe_nb.alarms` (see :func:`combine_alpha`)."""
        coords = {dim: [str(v) for v in self.similarity[dim].values] for dim in OVERRIDE_DIMS}
        return combine_alpha(float(self.alpha_slider.value), self.overrides, coords=coords)

    @property
    def quality(self) -> xr.DataArray | None:
        """The ground truth per case: ``quality_metric`` averaged over the selected labels."""
        return self._quality_of(self.quality_metric)

    def _quality_of(self, metric: str | None) -> xr.DataArray | None:
        if not self.has_ground_truth or metric is None:
            return None
        q = self.scores["quality"].sel(metric=metric, label=self.selection["label"])
        return q.mean("label", skipna=False).rename(metric)

    # ---- callbacks

    def _on_alpha(self, change: Any = None) -> None:
        if not self._hold:
            self.refresh()

    def _on_override_toggle(self, change: Any) -> None:
        for dim in OVERRIDE_DIMS:
            for n, box in self.override_checkboxes[dim].items():
                self.override_sliders[dim][n].disabled = not box.value
        self._on_alpha()

    def _on_selection(self, change: Any) -> None:
        if self._hold:
            return
        sel = self.selection
        empty = [dim for dim, names in sel.items() if not names]
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
        alpha = calibrate(self.similarity, objective=objective, quality=quality)
        self.set_alpha(float(alpha))

    def set_alpha(self, alpha: float, *, clear_overrides: bool = True) -> None:
        """Set the global α (widening the slider if needed) and redraw once."""
        alpha = _check_number(alpha, "alpha")
        with self.hold_redraws():
            if clear_overrides:
                for dim in OVERRIDE_DIMS:
                    for n, box in self.override_checkboxes[dim].items():
                        box.value = False
                        self.override_sliders[dim][n].value = 0.0
            self.alpha_slider.min = min(self.alpha_slider.min, alpha)
            self.alpha_slider.max = max(self.alpha_slider.max, alpha)
            self.alpha_slider.value = alpha

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
            for dim, names in self.selection.items():
                if not names:  # at least one of each must count
                    next(iter(self.checkboxes[dim].values())).value = True
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
        # the ground truth of the selection: read on every redraw, so computed once here
        self._quality = self._quality_of(self.quality_metric)
        self._distance = (self._quality_of(self._distance_metric)
                          if self.has_ground_truth else None)
        # ... and as numpy in the selection's case order, for the per-move panels
        cases = self.similarity["case"]
        self._quality_values, self._distance_values = (
            None if q is None else q.sel(case=cases).values.astype(float)
            for q in (self._quality, self._distance))
        # Selections are revisited when boxes are toggled back: keep their sweeps.
        key = tuple(tuple(names) for names in sel.values())
        cached = self._sweeps.get(key)
        if cached is None:
            cached = {"table": sweep_table(self.similarity, DEFAULT_ALPHAS, quality=self._quality),
                      "raster": None, "pngs": {}}
            if len(self._sweeps) >= 16:
                self._sweeps.pop(next(iter(self._sweeps)))
            self._sweeps[key] = cached
        self._sweep_cache = cached
        self.sweep = cached["table"]
        self._drawn_counts = None
        self._figure4_selection = None  # Figure 4 is drawn afresh for a new selection

    def refresh(self) -> None:
        """Recompute the result for the current widgets and redraw every panel."""
        from qe_nb.core.alarms import alarms, risk, thresholds

        start, start_cpu = time.perf_counter(), time.process_time()
        alpha = self.alpha
        flags = alarms(self.similarity, alpha)
        counts = risk(flags)
        self.result = xr.Dataset(
            {"alarms": flags, "risk": counts},
            attrs={"alpha": float(self.alpha_slider.value),
                   "overrides": int(isinstance(alpha, xr.DataArray))},
        )
        # one thresholds() serves the thresholds table and the worklist's reasons
        limits = thresholds(self.similarity, alpha)
        seconds = {"result": time.perf_counter() - start}
        cpu_seconds = {"result": time.process_time() - start_cpu}
        for name, draw in (
            ("summary", lambda: self._draw_summary(alpha, counts)),
            ("quality", lambda: self._draw_quality(counts)),
            ("sweep", self._draw_sweep),
            ("sweep_table", self._draw_sweep_table),
            ("thresholds", lambda: self._draw_thresholds(limits)),
            ("worklist", lambda: self._draw_worklist(limits)),
            ("triage", lambda: self._draw_triage(counts)),
        ):
            tick, tick_cpu = time.perf_counter(), time.process_time()
            draw()
            seconds[name] = time.perf_counter() - tick
            cpu_seconds[name] = time.process_time() - tick_cpu
        self.panel_seconds = seconds
        self.panel_cpu_seconds = cpu_seconds
        self.redraw_seconds = time.perf_counter() - start
        self.redraw_cpu_seconds = time.process_time() - start_cpu

    # ---- panels

    def _draw_summary(self, alpha: float | xr.DataArray, counts: xr.DataArray) -> None:
        from qe_nb.core.calibration import alarm_entropy

        g = float(self.alpha_slider.value)
        n_cases = counts.sizes["case"]
        flagged = int((counts.values > 0).sum())
        text = f"α = {g:.2f}"
        if isinstance(alpha, xr.DataArray):
            text += f" (+ Δα per {', '.join(alpha.dims)}: {float(alpha.min()):.2f}…{float(alpha.max()):.2f})"
        parts = [text, f"{int(counts.values.sum())} alarms",
                 f"{flagged} of {n_cases} cases with ≥ 1 alarm",
                 f"entropy {float(alarm_entropy(counts)):.2f}"]
        if self._quality_values is not None:
            r = _pearson(counts.values, self._quality_values)
            parts.append(f"r = {r:.2f}" if np.isfinite(r) else "r undefined")
        self.summary.value = " · ".join(html.escape(p) for p in parts)
        self.alpha_readout.value = f"<code>{g:.2f}</code>"

    def _draw_quality(self, counts: xr.DataArray) -> None:
        """Figure 4: drawn once per selection, then updated in place on every α change."""
        from qe_nb.ui import plots

        if self._drawn_counts is not None and np.array_equal(self._drawn_counts, counts.values):
            return  # α moved within a step of the alarm counts: the picture is the same
        self._drawn_counts = counts.values.copy()
        fig = self._figs.get("quality")
        # the x-axis spans every possible count of the selection: it stays still while α
        # moves, and so does the background that figure_png reuses
        possible = int(np.prod([self.similarity.sizes[d] for d in OVERRIDE_DIMS]))
        if self._quality is None:
            if fig is not None:
                fig.clear()
                ax = fig.add_subplot()
            else:
                ax = None
            ax = plots.alarm_histogram(counts, max_count=possible, ax=ax)
            fig = ax.figure
            _freeze_layout(fig, self._layouts, "quality")
            png = _png(fig, self._dpi)
        else:
            if fig is not None and self._figure4_selection is self._sweep_cache:
                plots.update_alarm_count_vs_quality(fig, counts.values, self._quality_values,
                                                    self._distance_values, max_count=possible)
            else:
                fig = plots.alarm_count_vs_quality(
                    counts.values, self._quality_values, self._distance_values, fig=fig,
                    max_count=possible,
                    dice_label=f"{self.quality_metric} of the fusion with the reference",
                    distance_label=(f"{self._distance_metric} of the fusion to the reference (mm)"
                                    if self._distance is not None else "distance"),
                )
                _freeze_layout(fig, self._layouts, "quality", fresh=True)
                self._figure4_selection = self._sweep_cache
            # only the points, mean bars, legends and titles are drawn on a kept background
            png = _png(fig, self._dpi, reuse_background=True)
        self._figs["quality"] = fig
        _show_png(self.quality_panel, png)

    def _draw_sweep(self) -> None:
        """The sweep figure is drawn once per selection; the α marker is painted on a copy."""
        from qe_nb.ui import plots

        if self._sweep_cache["raster"] is None:
            fig = plots.sweep_plot(self.sweep, chosen_alpha=None, fig=self._figs.get("sweep"))
            self._figs["sweep"] = fig
            self._sweep_cache["raster"] = _raster(fig, self._dpi)
        # painted images are kept per α: sliding back and forth repaints nothing
        g = float(self.alpha_slider.value)
        pngs = self._sweep_cache["pngs"]
        png = pngs.pop(g, None)
        if png is None:
            png = _paint_marker(self._sweep_cache["raster"], g)
            if len(pngs) >= 64:
                pngs.pop(next(iter(pngs)))
        pngs[g] = png
        _show_png(self.sweep_panel, png)

    def _draw_sweep_table(self) -> None:
        g = float(self.alpha_slider.value)
        alphas = self.sweep["alpha"].to_numpy(dtype=float)
        current = np.flatnonzero(np.isclose(alphas, g, atol=1e-9)).tolist()
        table = _html_table(self.sweep.set_index("alpha"), css_class="qe-sweep",
                            current_rows=current, digits=2)
        note = "" if current else f"<p>α = {g:.2f} lies between the rows of the sweep grid.</p>"
        _show_html(self.sweep_table_panel, table + note)

    def _draw_thresholds(self, limits: xr.DataArray) -> None:
        _show_html(self.threshold_panel,
                   _html_table(_threshold_frame(limits), css_class="qe-thresholds"))

    def _draw_worklist(self, limits: xr.DataArray) -> None:
        table = _worklist_top(self.similarity, self.result["alarms"], limits, self._quality,
                              self._top)
        _show_html(self.worklist_panel, _html_table(table, css_class="qe-worklist-table"))

    def _draw_triage(self, counts: xr.DataArray) -> None:
        if self.triage_panel is None:
            return
        from qe_nb.core.triage import triage_performance

        perf = triage_performance(counts, self._quality, n_bootstrap=self._n_bootstrap)
        _show_html(self.triage_panel, _html_table(_as_frame(perf), css_class="qe-triage-table"))

    # ---- display

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _pearson(counts: np.ndarray, quality: np.ndarray) -> float:
    """Pearson r of the alarm count with quality (same case order), by the core's own rule
    (over the finite quality values; NaN when constant)."""
    from qe_nb.core.calibration import _pearson_rows

    keep = np.isfinite(quality)
    return float(_pearson_rows(counts[keep], quality[keep])[0])


def _threshold_frame(limits: xr.DataArray) -> pd.DataFrame:
    """The thresholds (:func:`qe_nb.thresholds`) in the layout of :func:`qe_nb.threshold_table`.

    Rows ``(label, algorithm)``, columns the metrics: the table the thresholds panel shows,
    made from the thresholds the worklist's reasons use too (one robust-statistics pass).
    """
    limits = limits.transpose("algorithm", "label", "metric")
    labels, algorithms = limits.indexes["label"], limits.indexes["algorithm"]
    blocks = np.transpose(limits.values, (1, 0, 2)).reshape(-1, limits.sizes["metric"])
    index = pd.MultiIndex.from_product([labels, pd.Index(algorithms, name="algorithm")],
                                       names=["label", "algorithm"])
    return pd.DataFrame(blocks, index=index, columns=pd.Index(limits.indexes["metric"], name="metric"))


def _worklist_top(
    similarity: xr.DataArray,
    flags: xr.DataArray,
    limits: xr.DataArray,
    quality: xr.DataArray | None,
    top: int,
) -> pd.DataFrame:
    """``qe_nb.worklist(similarity, alpha, quality=quality).head(top)``, from known alarms.

    The worklist panel shows ``top`` rows; :func:`qe_nb.worklist` words the reasons of every
    case (most of a redraw at 1,000 cases). Here the alarms of the app's result and the
    thresholds of :func:`qe_nb.thresholds` are ordered the same way (risk descending, ties by
    case id) and only the shown cases are worded, with :mod:`qe_nb.triage`'s own wording.
    """
    from qe_nb.core.checks import check_quality
    from qe_nb.core.triage import _reason

    dims = ("case", "algorithm", "label", "metric")
    flags_np = flags.transpose(*dims).values
    values = similarity.transpose(*dims).values
    limits = limits.transpose(*dims[1:])
    limit_values = limits.values
    cases = similarity.indexes["case"]
    algorithms = [str(a) for a in similarity["algorithm"].values]
    labels = [str(lab) for lab in similarity["label"].values]
    metrics = [str(m) for m in similarity["metric"].values]
    better = [bool(b) for b in limits["higher_is_better"].values]
    risk = flags_np.sum(axis=(1, 2, 3)).astype(np.int64)
    order = np.lexsort((cases.astype(str).to_numpy(), -risk))[:top]
    reasons = []
    for c in order:
        per_algorithm: dict[int, list[str]] = {}
        for a, lab, m in zip(*np.nonzero(flags_np[c]), strict=True):
            text = _reason(metrics[m], float(values[c, a, lab, m]), float(limit_values[a, lab, m]),
                           better[m])
            per_algorithm.setdefault(int(a), []).append(f"{labels[lab]} {text}")
        reasons.append(
            "; ".join(f"{algorithms[a]}: " + ", ".join(items) for a, items in per_algorithm.items())
        )
    table = pd.DataFrame({"case": cases.to_numpy()[order], "risk": risk[order]})
    if quality is not None:
        table["quality"] = check_quality(quality, cases).values[order]
    per_metric = flags_np.sum(axis=(1, 2))
    for m, metric in enumerate(metrics):
        table[f"n_alarms:{metric}"] = per_metric[order, m].astype(np.int64)
    table["reasons"] = reasons
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    return table


def _freeze_layout(fig: Any, layouts: dict[str, list], key: str, *, fresh: bool = False) -> None:
    """Reuse the first constrained layout of a figure that is redrawn with the same axes.

    The plots are rebuilt into the same figure on every change; solving the constrained
    layout again each time costs about a third of a redraw, and the axes do not move.
    ``fresh`` solves it again (a figure rebuilt for a new selection, whose titles may differ).
    """
    positions = layouts.get(key)
    if not fresh and positions is not None and len(positions) == len(fig.axes):
        for ax, position in zip(fig.axes, positions, strict=True):
            ax.set_position(position)
        return
    fig.set_layout_engine("constrained")
    fig.draw_without_rendering()
    layouts[key] = [ax.get_position() for ax in fig.axes]
    fig.set_layout_engine("none")


def _raster(fig: Any, dpi: float) -> dict[str, Any]:
    """The figure as an RGBA array plus where its α axis and heatmap rows land in pixels."""
    from PIL import Image

    fig.set_dpi(dpi)
    with Image.open(io.BytesIO(_png(fig, dpi))) as image:
        pixels = np.array(image.convert("RGBA"))
    height = pixels.shape[0]
    line_ax = fig.axes[0]
    heat = next((a for a in fig.axes if a.images), None)
    base: dict[str, Any] = {"pixels": pixels, "height": height}
    x0, y0, x1, y1 = line_ax.bbox.extents
    base["line_box"] = (x0, y0, x1, y1)
    base["to_px"] = line_ax.transData.frozen().transform  # a snapshot: the figure is reused
    base["xlim"] = line_ax.get_xlim()
    if heat is not None:
        rows = heat.images[0].get_array().shape
        base["heat"] = (heat.transData.frozen().transform, rows, [float(t.get_text() or "nan")
                                                         for t in heat.get_yticklabels()])
    return base


def _paint_marker(base: dict[str, Any], alpha: float) -> bytes:
    """PNG of the sweep figure with the α marker painted in (a dashed line, a row frame)."""
    from qe_nb.ui.plots import _rgb_png

    pixels = base["pixels"].copy()
    height = base["height"]
    color = np.array([int(_HIGHLIGHT[i:i + 2], 16) for i in (1, 3, 5)] + [255], np.uint8)
    x0, y0, x1, y1 = base["line_box"]
    lo, hi = sorted(base["xlim"])
    if lo <= alpha <= hi:
        x = base["to_px"]((alpha, 0.0))[0]
        col = int(round(x))
        top, bottom = int(round(height - y1)), int(round(height - y0))
        rows = np.arange(top, bottom)
        rows = rows[(rows // 6) % 2 == 0]  # dashed
        pixels[rows[:, None], np.clip([col - 1, col], 0, pixels.shape[1] - 1)] = color
    if "heat" in base:
        to_px, (n_rows, n_cols), labels = base["heat"]
        match = np.flatnonzero(np.isclose(labels, alpha, atol=1e-9)) if labels else []
        for i in match:
            (xa, ya), (xb, yb) = to_px([(-0.5, i - 0.5), (n_cols - 0.5, i + 0.5)])
            c0, c1 = sorted((int(round(xa)), int(round(xb))))
            r0, r1 = sorted((int(round(height - ya)), int(round(height - yb))))
            c1, r1 = min(c1, pixels.shape[1] - 1), min(r1, pixels.shape[0] - 1)
            for t in range(2):
                pixels[r0 + t, c0:c1 + 1] = color
                pixels[r1 - t, c0:c1 + 1] = color
                pixels[r0:r1 + 1, c0 + t] = color
                pixels[r0:r1 + 1, c1 - t] = color
    return _rgb_png(pixels[..., :3])



# ------------------------------------------------------------------------------- case viewer


class CaseViewer:
    """One case on screen: the fusion's and the candidates' outlines on a slice (Figures 2-3).

    The case is read and fused once (:func:`qe_nb.data.ensemble.load_label_maps`,
    :func:`qe_nb.fuse`, :func:`qe_nb.data.ensemble.load_images`, and the reference when the
    catalogue has one); moving the slider only cuts another slice.

    Parameters
    ----------
    ensemble : xarray.Dataset
        The catalogue (:func:`qe_nb.open_ensemble`, :func:`qe_nb.synthetic_cohort`).
    case : str
        The case to show first.
    scores : xarray.Dataset, optional
        The scores cube; adds a table of the case's similarity per algorithm, label and
        metric (alarms highlighted) and each candidate's Dice and alarm count to the legend.
    alpha : float or xarray.DataArray, default 0.0
        The α of those alarms (:func:`qe_nb.alarms` over the whole cube).
    fusion : {"mav", "simple", "brats-simple", "staple"}, default "mav"
        How the candidates are fused (:func:`qe_nb.fuse`).
    dpi : float, default 72
        Resolution of the overlay.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app.
    case : str
        The case shown.
    index : int
        The slice shown (along the chosen axis).
    axis : int
        0 (axial), 1 (coronal) or 2 (sagittal), for (z, y, x) arrays.
    structure : str
        The structure (a ``label`` of the catalogue) outlined.
    label_maps, fused, images, reference
        The loaded case: candidates (algorithm, z, y, x), the fused label map (z, y, x), the
        images (modality, z, y, x) or None, the reference masks (label, z, y, x) or None.

    Raises
    ------
    InputError
        For a catalogue that is not one, an unknown case or fusion method, or ``scores``
        that are not a scores Dataset.
    ImportError
        Without ipywidgets.
    """

    def __init__(
        self,
        ensemble: xr.Dataset,
        case: str,
        *,
        scores: xr.Dataset | None = None,
        alpha: float | xr.DataArray = 0.0,
        fusion: str = "mav",
        dpi: float = 72,
    ) -> None:
        w = _ipywidgets()
        _, self._image_type = _display_types()
        self._html_type = _display_types()[0]
        from qe_nb.core.fusion import METHODS as FUSION_METHODS
        from qe_nb.data.ensemble import ensemble_labels

        if not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble.data_vars:
            raise InputError(
                "`ensemble` must be the catalogue from qe_nb.open_ensemble (an xarray.Dataset "
                f"with a 'mask' variable over (case, algorithm)); got {type(ensemble).__name__}."
            )
        if fusion not in FUSION_METHODS:
            raise InputError(f"Unknown fusion {fusion!r}; expected one of {list(FUSION_METHODS)}.")
        self.ensemble = ensemble
        self.fusion = fusion
        self._dpi = _check_number(dpi, "dpi")
        self._scheme = ensemble_labels(ensemble)
        self._cases = [str(c) for c in np.atleast_1d(ensemble["case"].values)]
        self.scores = None
        self._alarms = None
        if scores is not None:
            if isinstance(scores, xr.DataArray):
                scores = xr.Dataset({"similarity": scores})
            if not isinstance(scores, xr.Dataset) or "similarity" not in scores.data_vars:
                raise InputError(
                    "`scores` must be None or a scores Dataset with a 'similarity' variable "
                    f"(qe_nb.score); got {type(scores).__name__}."
                )
            from qe_nb.core.alarms import alarms

            self.scores = scores
            self._alarms = alarms(scores["similarity"], alpha)
        self.alpha = alpha
        self._hold = False
        self._ax = None

        algorithms = [str(a) for a in np.atleast_1d(ensemble["algorithm"].values)]
        self.axis_buttons = w.ToggleButtons(options=list(_AXES), value="axial",
                                            description="view")
        self.slice_slider = w.IntSlider(value=0, min=0, max=1, description="slice",
                                        continuous_update=False, layout=w.Layout(width="420px"))
        self.slice_slider.add_class("qe-slice-slider")
        self.structure_dropdown = w.Dropdown(options=list(self._scheme.names),
                                             description="structure")
        has_images = "image" in ensemble.data_vars and "modality" in ensemble.dims
        modalities = [str(m) for m in np.atleast_1d(ensemble["modality"].values)] if has_images else []
        preferred = [m for m in ("t1c", "t1ce", "ct") if m in modalities] + modalities
        self.modality_dropdown = w.Dropdown(options=modalities + ["(none)"],
                                            value=preferred[0] if preferred else "(none)",
                                            description="image")
        self.candidate_checkboxes = {
            a: w.Checkbox(value=True, description=a, indent=False, layout=w.Layout(width="auto"))
            for a in algorithms
        }
        self.reference_checkbox = w.Checkbox(value=True, description="reference", indent=False,
                                             layout=w.Layout(width="auto"))
        self.case_label = w.HTML()
        self.overlay_panel = w.Output()
        self.overlay_panel.add_class("qe-overlay")
        self.scores_panel = w.Output()
        self.scores_panel.add_class("qe-case-scores")
        self.widget = w.VBox([
            w.HTML(_CSS),
            self.case_label,
            w.HBox([self.axis_buttons, self.structure_dropdown, self.modality_dropdown]),
            self.slice_slider,
            w.HBox([w.HTML("<b>outlines:</b>&nbsp;"), *self.candidate_checkboxes.values(),
                    self.reference_checkbox]),
            self.overlay_panel,
            self.scores_panel,
        ])
        self.widget.add_class("qe-case-viewer")

        self.slice_slider.observe(self._on_change, names="value")
        for control in (self.modality_dropdown, self.reference_checkbox,
                        *self.candidate_checkboxes.values()):
            control.observe(self._on_change, names="value")
        self.axis_buttons.observe(self._on_view, names="value")
        self.structure_dropdown.observe(self._on_view, names="value")
        self.set_case(case)

    # ---- state

    @property
    def index(self) -> int:
        """The slice shown, along :attr:`axis`."""
        return int(self.slice_slider.value)

    @property
    def axis(self) -> int:
        """0 (axial), 1 (coronal) or 2 (sagittal)."""
        return _AXES[self.axis_buttons.value]

    @property
    def structure(self) -> str:
        """The structure outlined."""
        return str(self.structure_dropdown.value)

    @property
    def shown_candidates(self) -> list[str]:
        """The candidates whose outlines are drawn."""
        return [a for a, box in self.candidate_checkboxes.items() if box.value]

    def set_case(self, case: str) -> None:
        """Load, fuse and show another case (on its fusion's centre-of-mass slice)."""
        from qe_nb.core.fusion import fuse
        from qe_nb.core.labels import structure_masks
        from qe_nb.data.ensemble import load_images, load_label_maps, load_reference

        if not isinstance(case, str) or case not in self._cases:
            raise InputError(
                f"Unknown case {case!r}; the ensemble holds {len(self._cases)} case(s), e.g. "
                f"{self._cases[:5]}."
            )
        maps = load_label_maps(self.ensemble, case)
        fused = fuse(maps.values, method=self.fusion)
        images = None
        if self.modality_dropdown.options != ("(none)",):
            images = load_images(self.ensemble, case, geometry=maps)
        self.case = case
        self.label_maps = maps
        self.fused = fused
        self.images = images
        self.reference = load_reference(self.ensemble, case, geometry=maps)
        self.spacing = tuple(float(s) for s in maps.attrs.get("spacing", (1.0, 1.0, 1.0)))
        self._fused_masks = structure_masks(fused, self._scheme)
        present = [i for i, m in enumerate(self._fused_masks) if m.any()]
        self._hold = True
        try:
            if present:
                self.structure_dropdown.value = self._scheme.names[present[0]]
            self.reference_checkbox.disabled = self.reference is None
            self._centre_slice()
        finally:
            self._hold = False
        self.case_label.value = (f"<b>case {html.escape(case)}</b> · fusion {self.fusion} · "
                                 f"grid {' x '.join(map(str, fused.shape))}")
        self._draw_scores()
        self.redraw()

    def _centre_slice(self) -> None:
        from qe_nb.ui.plots import center_of_mass_index

        axis = self.axis
        n = self.fused.shape[axis]
        mask = self._fused_masks[self._scheme.names.index(self.structure)]
        index = center_of_mass_index(mask, axis) if mask.any() else n // 2
        self.slice_slider.max = n - 1
        self.slice_slider.value = index

    # ---- callbacks

    def _on_change(self, change: Any = None) -> None:
        if not self._hold:
            self.redraw()

    def _on_view(self, change: Any = None) -> None:
        if self._hold:
            return
        self._hold = True
        try:
            self._centre_slice()
        finally:
            self._hold = False
        self.redraw()

    def redraw(self) -> None:
        """Draw the overlay of the current slice."""
        from qe_nb.core.labels import structure_masks
        from qe_nb.ui.plots import case_overlay

        axis, index = self.axis, self.index
        k = self._scheme.names.index(self.structure)
        # Cut a one-voxel slab first: structure masks and outlines of one slice, not the volume.
        def slab(volume: np.ndarray) -> np.ndarray:
            return np.take(volume, [index], axis=axis)

        names = self.shown_candidates
        algorithms = [str(a) for a in self.label_maps["algorithm"].values]
        candidates = {a: structure_masks(slab(self.label_maps.values[algorithms.index(a)]),
                                         self._scheme)[k] for a in names}
        modality = self.modality_dropdown.value
        if self.images is not None and modality != "(none)":
            image = slab(self.images.sel(modality=modality).values)
        else:
            image = np.zeros(slab(self.fused).shape, np.float32)
        reference = None
        if self.reference is not None and self.reference_checkbox.value:
            reference = slab(self.reference.values[k])
        dice, alarm_counts = self._legend_values(names)
        if self._ax is not None:
            self._ax.clear()
        ax = case_overlay(
            image, slab(self._fused_masks[k]), candidates, axis=axis, index=0,
            dice=dice, alarms=alarm_counts, reference=reference, ax=self._ax,
            spacing=self.spacing, fused_name=self.fusion,
        )
        ax.set_title(f"{self.case} · {self.structure} · slice {'zyx'[axis]} = {index}",
                     loc="left", fontsize="medium")
        self._ax = ax
        _show_png(self.overlay_panel, _png(ax.figure, self._dpi))

    def _legend_values(self, names: list[str]) -> tuple[dict | None, dict | None]:
        if self.scores is None:
            return None, None
        sim = self.scores["similarity"]
        known = [str(a) for a in sim["algorithm"].values]
        if self.case not in [str(c) for c in sim["case"].values] or not all(n in known for n in names):
            return None, None
        dice = None
        if "dice" in sim["metric"].values and self.structure in sim["label"].values:
            d = sim.sel(case=self.case, label=self.structure, metric="dice")
            dice = {n: float(d.sel(algorithm=n)) for n in names}
        counts = self._alarms.sel(case=self.case).sum(("label", "metric"))
        return dice, {n: int(counts.sel(algorithm=n)) for n in names}

    def _draw_scores(self) -> None:
        self.scores_panel.outputs = ()
        if self.scores is None:
            return
        sim = self.scores["similarity"]
        if self.case not in [str(c) for c in sim["case"].values]:
            self.scores_panel.append_display_data(
                self._html_type(f"<p>case {html.escape(self.case)} is not in the scores.</p>"))
            return
        values = sim.sel(case=self.case).transpose("algorithm", "label", "metric")
        flags = self._alarms.sel(case=self.case).transpose("algorithm", "label", "metric")
        n_alg, n_lab, n_met = values.shape
        frame = pd.DataFrame(
            values.values.reshape(n_alg, n_lab * n_met),
            index=pd.Index([str(a) for a in values["algorithm"].values], name="algorithm"),
            columns=[f"{lab} {m}" for lab in values["label"].values for m in values["metric"].values],
        )
        frame["alarms"] = flags.values.reshape(n_alg, -1).sum(axis=1)
        cells = np.where(flags.values.reshape(n_alg, -1), "qe-alarm", "")
        cells = np.concatenate([cells, np.full((n_alg, 1), "")], axis=1)
        table = _html_table(frame, css_class="qe-case-scores-table", cell_classes=cells)
        self.scores_panel.append_display_data(self._html_type(
            f"<p>similarity to the fusion; alarms (α = {_alpha_text(self.alpha)}) "
            f"highlighted, {int(flags.values.sum())} in all</p>" + table))

    # ---- display

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _alpha_text(alpha: float | xr.DataArray) -> str:
    if isinstance(alpha, xr.DataArray):
        return f"per {', '.join(map(str, alpha.dims))}, {float(alpha.min()):.2f}…{float(alpha.max()):.2f}"
    return f"{float(alpha):.2f}"

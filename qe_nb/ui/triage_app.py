"""The triage app: a reading room over the worklist, with a verdict per case and reviewer.

A radiologist gives their name, opens the worklist (cases sorted by alarm count, coloured by
it), sets α (or takes the calibrated one), opens the top case in
:class:`qe_nb.ui.viewer.CaseViewer` to see why it alarmed, and records a verdict -- *accept*,
*needs correction* or *reject*, with an optional note. Verdicts go at once into a review database
(:class:`qe_nb.ReviewStore`: ``SCORES.reviews.db`` beside the scores by default, or PostgreSQL),
with who, when, the α, the scores file and the seconds spent on the case. Several reviewers
can work at once: each row shows the current verdict with who and when, a case another reviewer
has open is marked, the open case shows its history, and the worklist refreshes from the database
(a button, and every ``refresh`` seconds). A verdict that cannot be saved is shown in red and kept
for a retry.

:class:`TriageApp` composes the views of :mod:`qe_nb.ui.triage_views` --
:class:`~qe_nb.ui.triage_views.WorklistView`, :class:`~qe_nb.ui.triage_views.VerdictPanel`,
:class:`~qe_nb.ui.triage_views.NotesView` -- a :class:`qe_nb.ui.review_session.ReviewSession`
(the store side) and one shared :class:`qe_nb.ui.viewer.CaseViewer`, driven through its public
methods (``set_case``, ``set_alpha``); its arguments are checked and the scores read by
:func:`qe_nb.ui.app_inputs.load_triage_inputs`. No science happens here: the worklist is
:func:`qe_nb.worklist`, the preset α is :func:`qe_nb.calibrate`'s, the line on how well the risk
ranks the verdicts is :func:`qe_nb.verdict_performance`'s. ``qe-nb app`` serves it with Voila
(:mod:`qe_nb.ui.serve`).
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from qe_nb.core.alarms import alarms, risk
from qe_nb.core.calibration import calibrate
from qe_nb.core.checks import check_pool
from qe_nb.core.run_alpha import run_alpha
from qe_nb.core.statistics import count_entropy
from qe_nb.core.triage import worklist
from qe_nb.exceptions import InputError
from qe_nb.ui.app_inputs import check_alpha, load_triage_inputs
from qe_nb.ui.common import WidgetApp, ipywidgets
from qe_nb.ui.review_session import PeriodicRefresh, ReviewSession
from qe_nb.ui.serve import (
    ENVIRONMENT,
    app_from_environment,
    app_notebook,
    demo_environment,
    voila_command,
)
from qe_nb.ui.triage_desk import VerdictDesk, short_error
from qe_nb.ui.triage_views import (
    NotesView,
    WorklistView,
    alarm_colour,
    header_html,
)
from qe_nb.ui.verdicts import (
    VERDICT_COLUMNS,
    VERDICTS,
    VerdictStore,
    default_database_path,
    default_verdicts_path,
    open_review_store,
    read_verdicts,
    record_verdict,
    write_verdicts,
)

if TYPE_CHECKING:
    from qe_nb.store.review import ReviewStore

__all__ = [
    "VERDICTS",
    "VERDICT_COLUMNS",
    "ENVIRONMENT",
    "default_database_path",
    "open_review_store",
    "default_verdicts_path",
    "read_verdicts",
    "write_verdicts",
    "record_verdict",
    "VerdictStore",
    "TriageApp",
    "app_from_environment",
    "alarm_colour",
    "demo_environment",
    "app_notebook",
    "voila_command",
    "error_html",
]

_CSS = """<style>
.qe-worklist {max-height: 640px; overflow-y: auto; border: 1px solid #ddd; padding: 2px}
.qe-worklist-row {align-items: center; border-bottom: 1px solid #eee; flex: 0 0 auto !important;
  min-height: 34px; overflow: visible}
.qe-worklist-row > * {flex-shrink: 0}
.qe-worklist-info {font-size: 12px; line-height: 1.3}
.qe-worklist-info .qe-reasons {display: block; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; max-width: 330px; color: #555}
.qe-verdict-badge {padding: 0 4px; border-radius: 3px; color: white; font-size: 11px}
.qe-verdict-by, .qe-opened-by {font-size: 11px}
.qe-history td, .qe-history th {padding: 1px 6px; border-bottom: 1px solid #eee; text-align: left}
</style>"""


def error_html(exc: BaseException) -> str:
    """An error as one line of HTML for the page (the app's notebook shows it instead of a
    traceback): its type and the first line of its message, escaped."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f'<p class="qe-error" style="color:#a00"><b>qe-nb app: {html.escape(type(exc).__name__)}</b>: '
            f"{html.escape(text)}</p>")


def _alpha_controls(w: Any, alpha: float, calibrated: float, objective: str, source: str) -> dict[str, Any]:
    """The α slider, its readout, the calibrated-α button, the alarm summary and the α note."""
    from qe_nb.core.calibration import ALPHA_RANGE, ALPHA_STEP

    lo, hi = min(ALPHA_RANGE[0], alpha, calibrated), max(ALPHA_RANGE[1], alpha, calibrated)
    controls = {
        "alpha_slider": w.FloatSlider(value=alpha, min=lo, max=hi, step=ALPHA_STEP, readout=False,
                                      continuous_update=False, description="α",
                                      layout=w.Layout(width="420px")),
        "alpha_readout": w.HTML(),
        "preset_button": w.Button(description=f"calibrated α = {calibrated:.2f} ({objective})",
                                  tooltip="set α to qe_nb.calibrate(...) of these scores",
                                  layout=w.Layout(width="auto")),
        "summary": w.HTML(),
        "alpha_note": w.HTML(f"<span style='color:#555'>{html.escape(source)}</span>"),
    }
    for name, css in (("alpha_slider", "qe-alpha-slider"), ("alpha_readout", "qe-alpha-readout"),
                      ("preset_button", "qe-alpha-preset"), ("summary", "qe-alarm-summary"),
                      ("alpha_note", "qe-alpha-source")):
        controls[name].add_class(css)
    return controls


class TriageApp(WidgetApp):
    """Review the worklist case by case and record a verdict for each, as one of several reviewers.

    Parameters
    ----------
    scores : xarray.Dataset or str or path-like
        The scores cube (:func:`qe_nb.score`) or its file (:func:`qe_nb.save_scores`).
    ensemble : xarray.Dataset, optional
        The catalogue (:func:`qe_nb.open_ensemble`); enables the case viewer.
    verdicts : ReviewStore or str or path-like, optional
        The review database: a :class:`qe_nb.ReviewStore`, a SQLite file or a URL
        (``sqlite:///...``, ``postgresql://...``). Default ``SCORES.reviews.db`` beside the
        scores file (a temporary database when ``scores`` is a Dataset); see
        :func:`open_review_store`.
    import_csv : str or path-like, optional
        An old verdict CSV to import once; default ``SCORES.verdicts.csv`` beside the scores
        when it exists.
    reviewer : str, default ""
        Who reviews (e.g. from the server); else the app asks, and records nothing until a name
        is given.
    refresh : float, default 15
        Seconds between reads of the database (other reviewers' verdicts) while the app runs in a
        kernel; 0 turns it off (the refresh button still works).
    alpha : float, optional
        The initial α; default the run's α stored with the scores (:func:`qe_nb.run_alpha`),
        else the calibrated α (:attr:`calibrated_alpha`).
    label_mean : bool, default False
        Average each algorithm's values over the labels first (the paper's MR setting).
    quality_metric : str, default "dice"
        With ground truth: the metric (mean over labels) shown and used by the Pearson calibration.
    rows : int, default 30
        Worklist rows shown (the top of the list).
    fusion : str, optional
        Fusion of the case viewer; default the scores' ``fusion`` attribute, else "mav".
    pool : {"algorithm", "all"}, default "algorithm"
        The thresholds: per member, as in the paper, or pooled over all members.
    dpi : float, default 72
        Resolution of the case overlay.

    Attributes
    ----------
    widget : ipywidgets.VBox
    similarity : xarray.DataArray
        The cube the alarms are computed on.
    run_alpha : float or None
        The α stored with the scores for these ``label_mean`` and ``pool`` settings, or None.
    alpha_source : str
        Where the initial α comes from, in words (shown under the slider).
    calibrated_alpha : float
        :func:`qe_nb.calibrate` of ``similarity`` (objective :attr:`calibration_objective`).
    worklist : pandas.DataFrame
        ``qe_nb.worklist(similarity, alpha, quality=...)`` plus ``verdict`` and ``reviewer``.
    case : str or None
        The case open in the viewer (:attr:`viewer`, a CaseViewer or None).
    store : qe_nb.ReviewStore
    session, desk : ReviewSession, VerdictDesk
        The reviewer, the verdicts as last read, a verdict not saved yet; saving and reading them.
    imported : int
        Verdicts imported from an old CSV file at start.

    Raises
    ------
    InputError
        For scores that are not a scores cube, an unreadable old verdict file, a non-finite
        ``alpha``, ``rows`` < 1 or an unknown ``pool``.
    StoreError
        When the review database cannot be opened.
    ImportError
        Without ipywidgets.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sim = xr.DataArray(rng.random((6, 2, 1, 1)), dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": [f"c{i}" for i in range(6)], "algorithm": ["a", "b"],
    ...                            "label": ["tumor"], "metric": ["dice"]})
    >>> app = TriageApp(xr.Dataset({"similarity": sim}), alpha=0.0, reviewer="ana")
    >>> import qe_nb
    >>> app.worklist["case"].tolist() == qe_nb.worklist(sim, 0.0)["case"].tolist()
    True
    >>> app.record("reject", case="c3", note="shifted")
    >>> app.worklist.set_index("case").loc["c3", ["verdict", "reviewer"]].tolist()
    ['reject', 'ana']
    """

    worklist_view_type: type = WorklistView  # the stream app's view grows with the cases

    def __init__(
        self,
        scores: xr.Dataset | str | os.PathLike,
        *,
        ensemble: xr.Dataset | None = None,
        verdicts: ReviewStore | str | os.PathLike | None = None,
        import_csv: str | os.PathLike | None = None,
        reviewer: str = "",
        refresh: float = 15.0,
        alpha: float | None = None,
        label_mean: bool = False,
        quality_metric: str = "dice",
        rows: int = 30,
        fusion: str | None = None,
        pool: str = "algorithm",
        dpi: float = 72,
    ) -> None:
        self.pool = check_pool(pool)
        inputs = load_triage_inputs(scores, ensemble=ensemble, rows=rows, label_mean=label_mean,
                                    quality_metric=quality_metric)
        self.scores, self.scores_path, self.ensemble = inputs.scores, inputs.scores_path, inputs.ensemble
        self.similarity, self.quality = inputs.similarity, inputs.quality
        self.fusion = fusion or str(self.scores.attrs.get("fusion", "mav"))
        self._dpi = dpi
        self.store, self.imported = open_review_store(verdicts, scores_path=self.scores_path,
                                                      import_csv=import_csv)
        self.session = ReviewSession(self.store, reviewer=reviewer,
                                     scores_file=None if self.scores_path is None else str(self.scores_path))
        self.calibration_objective = "pearson" if self.quality is not None else "entropy"
        self.notes_view = NotesView()
        self.notes, self.notes_html = self.notes_view.notes, self.notes_view.html
        with self.notes_view.noting():
            self.calibrated_alpha = float(calibrate(self.similarity, objective=self.calibration_objective,
                                                    quality=self.quality, pool=self.pool))
        alpha = check_alpha(alpha, none_ok=True)
        self.alpha_source = self._run_alpha_text(alpha, label_mean)
        if alpha is None:
            alpha = self.calibrated_alpha if self.run_alpha is None else self.run_alpha
        self._build(float(alpha), min(rows, self.similarity.sizes["case"]), refresh)

    def _build(self, alpha: float, n_rows: int, refresh: float) -> None:
        """The controls, views and layout over the inputs set, the first drawing and the periodic refresh."""
        w = ipywidgets()
        sizes = self.similarity.sizes
        self.max_count = int(sizes["algorithm"] * sizes["label"] * sizes["metric"])
        self.case: str | None = None
        self.viewer: Any = None

        # --- controls and views: the worklist, the verdict panel and (once a case is opened) the viewer
        controls = _alpha_controls(w, alpha, self.calibrated_alpha, self.calibration_objective,
                                   self.alpha_source)
        for name, widget in controls.items():
            setattr(self, name, widget)
        self.worklist_view = self.worklist_view_type(n_rows, max_count=self.max_count, on_select=self.select)
        self.desk = VerdictDesk(self.session, alpha=lambda: self.alpha, case=lambda: self.case,
                                redraw=self._draw)
        self.verdict_panel = self.desk.panel
        self.viewer_box = w.VBox()
        self.viewer_box.add_class("qe-case-panel")
        right = w.VBox([self.verdict_panel.box, self.viewer_box],
                       layout=w.Layout(flex="1 1 auto", min_width="0", overflow="auto",
                                       margin="0 0 0 12px"))
        self.header = w.HTML(_CSS + header_html(self.similarity, self.store.url, pool=self.pool))
        self.widget = w.VBox([
            self.header,
            w.HBox([self.alpha_slider, self.alpha_readout, self.preset_button]),
            self.alpha_note, self.summary, self.desk.performance, self.worklist_view.legend, self.notes_html,
            w.HBox([w.VBox([self.worklist_view.caption, w.HBox([self.desk.refresh_button, self.desk.refresh_note]),
                            self.worklist_view.box], layout=w.Layout(flex="0 0 484px")), right]),
        ])
        self.widget.add_class("qe-triage-app")

        self.alpha_slider.observe(lambda _: self.refresh(), names="value")
        self.preset_button.on_click(lambda _: self.set_alpha(self.calibrated_alpha))
        self.desk.reload(draw=False)
        self.refresh()
        self.timer = PeriodicRefresh.start(self.reload, refresh,
                                           on_error=lambda exc: self.verdict_panel.problem(short_error(exc)))

    def _run_alpha_text(self, given: float | None, label_mean: bool) -> str:
        """Set :attr:`run_alpha` (the α stored with the scores for these settings, or None)
        and say where the initial α comes from."""
        with self.notes_view.noting():
            run = run_alpha(self.scores, label_mean=bool(label_mean), pool=self.pool)
        usable = run.stored and not isinstance(run.alpha, xr.DataArray)
        self.run_alpha = float(run.alpha) if usable else None
        if given is not None:
            return f"initial α = {given:.2f}: given (qe-nb app --alpha); the run's: {run.text}"
        if usable:
            return f"initial α: the run's, {run.text}"
        return (f"initial α = {self.calibrated_alpha:.2f}: calibrated now ({self.calibration_objective}); "
                f"no α stored with these scores for these settings")

    # ---- state as data

    @property
    def alpha(self) -> float:
        """The current α."""
        return float(self.alpha_slider.value)

    @property
    def reviewer(self) -> str:
        """Who reviews ("" until a name is given)."""
        return self.session.reviewer

    @property
    def row_buttons(self) -> list[Any]:
        """The worklist's case buttons, top first."""
        return self.worklist_view.row_buttons

    @property
    def row_infos(self) -> list[Any]:
        """The worklist's row texts, top first."""
        return self.worklist_view.row_infos

    @property
    def note_text(self) -> Any:
        return self.verdict_panel.note_text

    @property
    def verdict_buttons(self) -> dict[str, Any]:
        return self.verdict_panel.verdict_buttons

    @property
    def verdict_status(self) -> Any:
        return self.verdict_panel.verdict_status

    @property
    def verdicts(self) -> pd.DataFrame:
        """The current verdict per case, read from the database now (:meth:`qe_nb.ReviewStore.current`)."""
        return self.store.current()

    def set_alpha(self, alpha: float) -> None:
        """Set α (widening the slider if needed); the worklist and the viewer follow."""
        alpha = check_alpha(alpha)
        self.alpha_slider.min = min(self.alpha_slider.min, float(alpha))
        self.alpha_slider.max = max(self.alpha_slider.max, float(alpha))
        self.alpha_slider.value = float(alpha)

    def select(self, case: str) -> None:
        """Open ``case`` in the viewer and make it the case that verdicts are recorded for."""
        cases = [str(c) for c in self.similarity["case"].values]
        if not isinstance(case, str) or case not in cases:
            raise InputError(f"Unknown case {case!r}; the scores hold {len(cases)} case(s), e.g. {cases[:5]}.")
        self.case = case
        if self.ensemble is not None:
            if self.viewer is None:
                from qe_nb.ui.viewer import CaseViewer

                self.viewer = CaseViewer(self.ensemble, case,
                                         scores=xr.Dataset({"similarity": self.similarity}),
                                         alpha=self.alpha, fusion=self.fusion, pool=self.pool,
                                         dpi=self._dpi)
                self.viewer_box.children = (self.viewer.widget,)
            else:
                self.viewer.set_case(case)
        else:
            self.viewer_box.children = (ipywidgets().HTML(
                "<p><i>No ensemble given (qe-nb app --ensemble ROOT): the case viewer is off.</i></p>"),)
        self.desk.opened(case)
        self._draw()

    def set_reviewer(self, name: str) -> None:
        """Who reviews from now on; the verdict buttons work once a name and a case are there."""
        self.desk.set_reviewer(name)

    def record(self, verdict: str, *, note: str | None = None, case: str | None = None) -> None:
        """Record a verdict by :attr:`reviewer` for ``case`` (default: the open case) and save it at once.

        ``note`` defaults to the note field's text. A failed save is shown in red at once and the
        verdict is kept (``session.pending``) until :meth:`retry` saves it.

        Raises
        ------
        InputError
            Without a case or a reviewer, or for an unknown verdict.
        StoreError
            When the database cannot be written.
        """
        self.desk.record(verdict, note=note, case=case)

    def retry(self) -> None:
        """Save the verdict that could not be saved (see :meth:`record`)."""
        self.desk.retry()

    def reload(self) -> None:
        """Read every reviewer's verdicts (and who has which case open) from the database; redraw."""
        self.desk.reload()

    def close(self) -> None:
        """Stop the periodic refresh (the database stays open: :attr:`store`)."""
        if self.timer is not None:
            self.timer.stop()
            self.timer = None

    # ---- computing and drawing

    def refresh(self) -> None:
        """Recompute the worklist for the current α and redraw."""
        alpha = self.alpha
        with self.notes_view.noting():
            table = worklist(self.similarity, alpha, quality=self.quality, pool=self.pool)
            counts = risk(alarms(self.similarity, alpha, pool=self.pool))
        self.worklist, self._counts = table, counts
        flagged = int((counts.values > 0).sum())
        parts = [f"α = {alpha:.2f}", f"{int(counts.values.sum())} alarms",
                 f"{flagged} of {counts.sizes['case']} cases with ≥ 1 alarm",
                 f"entropy {count_entropy(counts):.2f}"]
        self.summary.value = " · ".join(html.escape(p) for p in parts)
        self.alpha_readout.value = f"<code>{alpha:.2f}</code>"
        if self.viewer is not None:
            self.viewer.set_alpha(alpha)
        self._draw()

    def _draw(self) -> None:
        """The worklist rows, the open case's header and history, with the current verdicts."""
        current = self.session.current
        table = self.worklist
        table["verdict"] = [str(current.get(str(c), {}).get("verdict", "")) for c in table["case"]]
        table["reviewer"] = [str(current.get(str(c), {}).get("reviewer", "")) for c in table["case"]]
        self.worklist_view.draw(table, current, selected=self.case, opened=self.session.opened,
                                quality_name=None if self.quality is None else str(self.quality.name))
        self.desk.draw_performance(self._counts, self.notes_view.noting)
        if self.case is not None:
            row = table[table["case"] == self.case].iloc[0]
            history = self.desk.history(self.case)
            self.verdict_panel.draw_header(self.case, row, len(table), self.alpha,
                                           current.get(self.case), history)

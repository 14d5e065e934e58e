"""The triage app: a reading session over the worklist, with a verdict per case.

A radiologist opens the worklist (cases sorted by alarm count, coloured by it), sets α (or
takes the calibrated one), opens the top case in :class:`qe_nb.ui.widgets.CaseViewer` to see why
it alarmed, and records a verdict -- *accept*, *needs correction* or *reject*, with an
optional note. Verdicts are written to a CSV file beside the scores at once and atomically
(:func:`qe_nb.data.images.atomic_write`), shown in the worklist and read back when the app starts
again, so a session can be interrupted without losing work.

- :func:`read_verdicts`, :func:`write_verdicts`, :func:`record_verdict` -- the verdict table
  (pure functions over a :class:`pandas.DataFrame`) and its CSV file;
- :class:`VerdictStore` -- that table bound to its file;
- :class:`TriageApp` -- the ipywidgets app;
- :func:`app_from_environment` -- the app as ``qe-nb app`` serves it with Voila
  (``notebooks/triage_app.ipynb``), configured through ``QE_NB_*`` environment variables.

No science happens here: the worklist is :func:`qe_nb.worklist`, the preset α is
:func:`qe_nb.calibrate`'s and the case view is :class:`qe_nb.ui.widgets.CaseViewer`.
"""

from __future__ import annotations

import contextlib
import html
import os
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError

__all__ = [
    "VERDICTS",
    "VERDICT_COLUMNS",
    "ENVIRONMENT",
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
]

VERDICTS: tuple[str, ...] = ("accept", "needs correction", "reject")
"""The verdicts a reviewer can record, in the order of the app's buttons."""

VERDICT_COLUMNS: tuple[str, ...] = ("case", "verdict", "note", "recorded_at")
"""The columns of the verdict CSV file (one row per case)."""

ENVIRONMENT: dict[str, str] = {
    "QE_NB_SCORES": "the scores file (required)",
    "QE_NB_ENSEMBLE_ROOT": "the cohort folder, for the case viewer",
    "QE_NB_MASKS": "pattern of candidate files, with {case} and {algorithm}",
    "QE_NB_REFERENCE": "pattern of reference files, with {case}",
    "QE_NB_IMAGES": "pattern of image files, with {case} and {modality}",
    "QE_NB_LABELS": "label scheme of the cohort",
    "QE_NB_VERDICTS": "the verdict CSV file (default: beside the scores)",
    "QE_NB_ALPHA": "the initial α (default: the calibrated α)",
    "QE_NB_LABEL_MEAN": "1: one value per algorithm and metric (mean over labels)",
    "QE_NB_ROWS": "worklist rows shown",
}
"""The environment variables :func:`app_from_environment` reads (``qe-nb app`` sets them)."""

_INSTALL_HINT = 'pip install "qe-nb[notebook]"'
_VERDICT_COLOURS = {"accept": "#009E73", "needs correction": "#E69F00", "reject": "#D55E00"}
_CSS = """<style>
.qe-worklist {max-height: 640px; overflow-y: auto; border: 1px solid #ddd; padding: 2px}
.qe-worklist-row {align-items: center; border-bottom: 1px solid #eee}
.qe-worklist-info {font-size: 12px; line-height: 1.3}
.qe-worklist-info .qe-reasons {display: block; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; max-width: 330px; color: #555}
.qe-verdict-badge {padding: 0 4px; border-radius: 3px; color: white; font-size: 11px}
</style>"""


# ------------------------------------------------------------------------------- verdicts


def default_verdicts_path(scores_path: str | os.PathLike) -> Path:
    """The verdict file beside a scores file: ``scores.nc`` -> ``scores.verdicts.csv``.

    Examples
    --------
    >>> default_verdicts_path("/data/run1/scores.nc").as_posix()
    '/data/run1/scores.verdicts.csv'
    """
    path = Path(os.fspath(scores_path))
    return path.with_name(f"{path.stem}.verdicts.csv")


def _empty_verdicts() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in VERDICT_COLUMNS})


def _check_verdict(verdict: Any, name: str = "verdict") -> str:
    if not isinstance(verdict, str) or verdict not in VERDICTS:
        raise InputError(f"Unknown `{name}` {verdict!r}; expected one of {list(VERDICTS)}.")
    return verdict


def read_verdicts(path: str | os.PathLike) -> pd.DataFrame:
    """Read a verdict CSV file; a missing file is an empty table.

    Parameters
    ----------
    path : str or path-like
        The CSV file written by :func:`write_verdicts`.

    Returns
    -------
    pandas.DataFrame
        Columns ``case``, ``verdict``, ``note``, ``recorded_at`` (all str), one row per case,
        in the file's order.

    Raises
    ------
    InputError
        When the file cannot be parsed as CSV, lacks a column, holds a verdict outside
        :data:`VERDICTS` or a case twice; the message names the file and the row.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.verdicts.csv")
    >>> len(read_verdicts(path))
    0
    >>> _ = write_verdicts(path, record_verdict(read_verdicts(path), "case-007", "reject",
    ...                                         note="missed the enhancing rim"))
    >>> read_verdicts(path)[["case", "verdict", "note"]].values.tolist()
    [['case-007', 'reject', 'missed the enhancing rim']]
    """
    path = Path(os.fspath(path))
    if not path.exists():
        return _empty_verdicts()
    if not path.is_file():
        raise InputError(f"verdict file {str(path)!r} is not a file; expected a CSV file path.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return _empty_verdicts()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"verdict file {str(path)!r} could not be read as CSV ({first}); fix or remove it "
            f"(expected the columns {list(VERDICT_COLUMNS)})."
        ) from exc
    missing = [c for c in VERDICT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"verdict file {str(path)!r} lacks the column(s) {missing}; got columns "
            f"{list(map(str, frame.columns))}, expected {list(VERDICT_COLUMNS)}."
        )
    frame = frame[list(VERDICT_COLUMNS)].reset_index(drop=True)
    for i, verdict in enumerate(frame["verdict"]):
        if verdict not in VERDICTS:
            raise InputError(
                f"verdict file {str(path)!r}, row {i + 1} (case {frame['case'][i]!r}): unknown "
                f"verdict {verdict!r}; expected one of {list(VERDICTS)}."
            )
    duplicated = frame["case"][frame["case"].duplicated()].tolist()
    if duplicated:
        raise InputError(
            f"verdict file {str(path)!r} lists case(s) {duplicated[:5]} more than once; expected "
            "one row per case."
        )
    return frame


def write_verdicts(path: str | os.PathLike, verdicts: pd.DataFrame) -> Path:
    """Write the verdict table to CSV atomically (complete or not at all); return the path.

    Raises
    ------
    InputError
        When ``verdicts`` lacks a column of :data:`VERDICT_COLUMNS` or holds an unknown
        verdict, or the folder does not exist.
    """
    from qe_nb.data.images import atomic_write

    if not isinstance(verdicts, pd.DataFrame) or any(c not in verdicts for c in VERDICT_COLUMNS):
        got = list(verdicts.columns) if isinstance(verdicts, pd.DataFrame) else type(verdicts).__name__
        raise InputError(
            f"`verdicts` must be a DataFrame with the columns {list(VERDICT_COLUMNS)}; got {got}."
        )
    for verdict in verdicts["verdict"]:
        _check_verdict(verdict)
    path = Path(os.fspath(path))
    with atomic_write(path, "w", newline="") as fh:
        verdicts[list(VERDICT_COLUMNS)].to_csv(fh, index=False)
    return path


def record_verdict(
    verdicts: pd.DataFrame,
    case: str,
    verdict: str,
    *,
    note: str = "",
    recorded_at: str | None = None,
) -> pd.DataFrame:
    """A new verdict table with ``case``'s verdict set (replacing an earlier one).

    Parameters
    ----------
    verdicts : pandas.DataFrame
        The table (:func:`read_verdicts`); not modified.
    case : str
        The case id.
    verdict : {"accept", "needs correction", "reject"}
        The verdict.
    note : str, default ""
        Free text.
    recorded_at : str, optional
        ISO 8601 time stamp; default now (UTC, seconds).

    Returns
    -------
    pandas.DataFrame
        The table with the case's row last.

    Raises
    ------
    InputError
        For an unknown verdict, a case that is not a non-empty str or a note that is not a str.

    Examples
    --------
    >>> table = record_verdict(read_verdicts("/nonexistent.csv"), "a", "accept", recorded_at="t0")
    >>> table = record_verdict(table, "b", "reject", recorded_at="t1")
    >>> record_verdict(table, "a", "needs correction", note="edema", recorded_at="t2").values.tolist()
    [['b', 'reject', '', 't1'], ['a', 'needs correction', 'edema', 't2']]
    >>> record_verdict(table, "a", "maybe")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: Unknown `verdict` 'maybe'; expected one of ['accept', 'needs correction', 'reject'].
    """
    verdict = _check_verdict(verdict)
    if not isinstance(case, str) or not case:
        raise InputError(f"`case` must be a non-empty str (a case id); got {case!r}.")
    if not isinstance(note, str):
        raise InputError(f"`note` must be a str; got {type(note).__name__} {note!r}.")
    if recorded_at is None:
        recorded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    kept = verdicts[verdicts["case"] != case][list(VERDICT_COLUMNS)]
    row = pd.DataFrame([[case, verdict, note, recorded_at]], columns=list(VERDICT_COLUMNS), dtype=object)
    return pd.concat([kept, row], ignore_index=True) if len(kept) else row


class VerdictStore:
    """The verdict table bound to its CSV file: every change is written at once.

    Parameters
    ----------
    path : str or path-like, optional
        The CSV file; read when it exists. ``None`` keeps the verdicts in memory only.

    Attributes
    ----------
    path : pathlib.Path or None
    verdicts : pandas.DataFrame
        See :func:`read_verdicts`.

    Raises
    ------
    InputError
        When the file exists but is not a verdict file (see :func:`read_verdicts`).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "v.csv")
    >>> VerdictStore(path).record("case-001", "needs correction", note="edema too large")
    >>> VerdictStore(path).get("case-001")["note"]
    'edema too large'
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(os.fspath(path))
        self.verdicts = read_verdicts(self.path) if self.path is not None else _empty_verdicts()

    def record(self, case: str, verdict: str, *, note: str = "") -> None:
        """Set ``case``'s verdict and write the file atomically (see :func:`record_verdict`)."""
        table = record_verdict(self.verdicts, case, verdict, note=note)
        if self.path is not None:
            write_verdicts(self.path, table)
        self.verdicts = table

    def get(self, case: str) -> dict[str, str] | None:
        """The row of ``case`` as a dict, or None when it has no verdict yet."""
        rows = self.verdicts[self.verdicts["case"] == case]
        return None if rows.empty else {k: str(v) for k, v in rows.iloc[-1].items()}

    def as_dict(self) -> dict[str, str]:
        """case -> verdict."""
        return dict(zip(self.verdicts["case"], self.verdicts["verdict"]))

    def __len__(self) -> int:
        return len(self.verdicts)


# ------------------------------------------------------------------------------- colours


def alarm_colour(count: int, max_count: int) -> tuple[str, str]:
    """Background and text colour of a worklist row with ``count`` alarms of ``max_count``.

    0 alarms is light grey; 1..max runs from light orange to dark red (ColorBrewer OrRd),
    with white text on the dark end.

    Examples
    --------
    >>> alarm_colour(0, 10)
    ('#eeeeee', '#000000')
    >>> alarm_colour(10, 10)
    ('#990000', '#ffffff')
    """
    if count <= 0:
        return "#eeeeee", "#000000"
    stops = np.array([[0xFE, 0xE8, 0xC8], [0xFD, 0xBB, 0x84], [0xFC, 0x8D, 0x59],
                      [0xE3, 0x4A, 0x33], [0x99, 0x00, 0x00]], float)
    t = 1.0 if max_count <= 1 else (min(count, max_count) - 1) / (max_count - 1)
    pos = t * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    rgb = stops[i] + (pos - i) * (stops[i + 1] - stops[i])
    text = "#ffffff" if t > 0.55 else "#000000"
    return "#" + "".join(f"{int(round(v)):02x}" for v in rgb), text


# ------------------------------------------------------------------------------- the app


def _widgets():
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - exercised with a monkeypatched import
        raise ImportError(f"qe_nb.triage_app needs ipywidgets; install them with {_INSTALL_HINT}") from exc
    return ipywidgets


def _viewer_class():
    from qe_nb.ui.widgets import CaseViewer

    class _TriageCaseViewer(CaseViewer):
        """A CaseViewer whose α can change without reloading the case."""

        def set_alpha(self, alpha: float | xr.DataArray) -> None:
            from qe_nb.core.alarms import alarms

            self.alpha = alpha
            if self.scores is not None:
                self._alarms = alarms(self.scores["similarity"], alpha)
            self._draw_scores()
            self.redraw()

    return _TriageCaseViewer


class TriageApp:
    """Review the worklist case by case and record a verdict for each.

    Parameters
    ----------
    scores : xarray.Dataset or str or path-like
        The scores cube (:func:`qe_nb.score`) or its file (:func:`qe_nb.save_scores`).
    ensemble : xarray.Dataset, optional
        The catalogue (:func:`qe_nb.open_ensemble`); enables the case viewer.
    verdicts : str or path-like or VerdictStore, optional
        Where verdicts are kept. Default: beside the scores file
        (:func:`default_verdicts_path`), or in memory when ``scores`` is a Dataset.
    alpha : float, optional
        The initial α; default the calibrated α (:attr:`calibrated_alpha`).
    label_mean : bool, default False
        Average each algorithm's values over the labels first (the paper's MR setting: one
        Dice and one distance alarm per algorithm).
    quality_metric : str, default "dice"
        With ground truth (``quality`` in the scores): the metric, averaged over labels, that
        is shown in the worklist and that the Pearson calibration uses.
    rows : int, default 30
        Worklist rows shown (the top of the list).
    fusion : str, optional
        Fusion of the case viewer; default the scores' ``fusion`` attribute, else "mav".
    dpi : float, default 72
        Resolution of the case overlay.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app.
    similarity : xarray.DataArray
        The cube the alarms are computed on.
    calibrated_alpha : float
        :func:`qe_nb.calibrate` of ``similarity``: objective ``"pearson"`` against the quality
        when the scores hold ground truth, else ``"entropy"`` (:attr:`calibration_objective`).
    alpha : float
        The current α (the slider).
    worklist : pandas.DataFrame
        ``qe_nb.worklist(similarity, alpha, quality=...)`` plus a ``verdict`` column.
    case : str or None
        The case open in the viewer.
    viewer : qe_nb.ui.widgets.CaseViewer or None
        The case viewer (None without ``ensemble`` or before a case is selected).
    store : VerdictStore

    Raises
    ------
    InputError
        For scores that are not a scores cube, an unreadable verdict file, a non-finite
        ``alpha`` or ``rows`` < 1.
    ImportError
        Without ipywidgets.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sim = xr.DataArray(rng.random((6, 2, 1, 1)), dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": [f"c{i}" for i in range(6)], "algorithm": ["a", "b"],
    ...                            "label": ["tumor"], "metric": ["dice"]})
    >>> app = TriageApp(xr.Dataset({"similarity": sim}), alpha=0.0)
    >>> import qe_nb
    >>> app.worklist["case"].tolist() == qe_nb.worklist(sim, 0.0)["case"].tolist()
    True
    >>> app.record("reject", case="c3", note="shifted")
    >>> app.worklist.set_index("case").loc["c3", "verdict"]
    'reject'
    """

    def __init__(
        self,
        scores: xr.Dataset | str | os.PathLike,
        *,
        ensemble: xr.Dataset | None = None,
        verdicts: str | os.PathLike | VerdictStore | None = None,
        alpha: float | None = None,
        label_mean: bool = False,
        quality_metric: str = "dice",
        rows: int = 30,
        fusion: str | None = None,
        dpi: float = 72,
    ) -> None:
        w = _widgets()
        from IPython.display import HTML

        from qe_nb.core.calibration import calibrate
        from qe_nb.core.checks import check_scores

        self._html = HTML
        scores_path = None
        if isinstance(scores, (str, os.PathLike)):
            from qe_nb.pipeline.scoring import load_scores

            scores_path = Path(os.fspath(scores))
            scores = load_scores(scores_path)
        if not isinstance(scores, xr.Dataset) or "similarity" not in scores.data_vars:
            raise InputError(
                "`scores` must be a scores Dataset with a 'similarity' variable (qe_nb.score) or "
                f"the path of its file; got {type(scores).__name__}."
            )
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
            raise InputError(f"`rows` must be an integer >= 1; got {rows!r}.")
        if ensemble is not None and (not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble):
            raise InputError(
                "`ensemble` must be None or the catalogue from qe_nb.open_ensemble; got "
                f"{type(ensemble).__name__}."
            )
        self.scores = scores
        self.scores_path = scores_path
        self.ensemble = ensemble
        self.fusion = fusion or str(scores.attrs.get("fusion", "mav"))
        self._dpi = dpi
        similarity = check_scores(scores, name="scores")
        if label_mean:
            from qe_nb.pipeline.scoring import label_mean as _label_mean

            similarity = _label_mean(similarity)
        self.similarity = similarity
        self.quality = None
        if "quality" in scores.data_vars and quality_metric in scores["quality"]["metric"].values:
            self.quality = scores["quality"].sel(metric=quality_metric).mean("label").rename(quality_metric)
        if isinstance(verdicts, VerdictStore):
            self.store = verdicts
        elif verdicts is not None:
            self.store = VerdictStore(verdicts)
        else:
            self.store = VerdictStore(default_verdicts_path(scores_path) if scores_path else None)
        self.calibration_objective = "pearson" if self.quality is not None else "entropy"
        self.notes: list[str] = []
        with self._noting():
            self.calibrated_alpha = float(calibrate(similarity, objective=self.calibration_objective,
                                                    quality=self.quality))
        if alpha is None:
            alpha = self.calibrated_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not np.isfinite(alpha):
            raise InputError(f"`alpha` must be a finite number or None; got {alpha!r}.")
        self._rows = int(rows)
        self._max_count = int(similarity.sizes["algorithm"] * similarity.sizes["label"]
                              * similarity.sizes["metric"])
        self.case: str | None = None
        self.viewer = None
        self._hold = False

        # --- controls
        lo, hi = min(-3.0, float(alpha), self.calibrated_alpha), max(3.0, float(alpha), self.calibrated_alpha)
        self.alpha_slider = w.FloatSlider(value=float(alpha), min=lo, max=hi, step=0.05,
                                          readout=False, continuous_update=False,
                                          description="α", layout=w.Layout(width="420px"))
        self.alpha_slider.add_class("qe-alpha-slider")
        self.alpha_readout = w.HTML()
        self.alpha_readout.add_class("qe-alpha-readout")
        self.preset_button = w.Button(
            description=f"calibrated α = {self.calibrated_alpha:.2f} ({self.calibration_objective})",
            tooltip="set α to qe_nb.calibrate(...) of these scores", layout=w.Layout(width="auto"))
        self.preset_button.add_class("qe-alpha-preset")
        self.summary = w.HTML()
        self.summary.add_class("qe-alarm-summary")
        self.legend = w.HTML(self._legend_html())
        self.notes_html = w.HTML()
        self.notes_html.add_class("qe-triage-notes")

        # --- worklist: a fixed set of rows, refilled in place when α or a verdict changes
        n_rows = min(self._rows, similarity.sizes["case"])
        self.row_buttons = []
        self.row_infos = []
        rows_box = []
        for _ in range(n_rows):
            button = w.Button(layout=w.Layout(width="130px", min_width="130px"))
            button.add_class("qe-worklist-case")
            button.on_click(self._on_row)
            info = w.HTML(layout=w.Layout(width="340px"))
            info.add_class("qe-worklist-info")
            row = w.HBox([button, info])
            row.add_class("qe-worklist-row")
            self.row_buttons.append(button)
            self.row_infos.append(info)
            rows_box.append(row)
        self.worklist_caption = w.HTML()
        self.worklist_box = w.VBox(rows_box, layout=w.Layout(width="480px"))
        self.worklist_box.add_class("qe-worklist")

        # --- verdict
        self.case_header = w.HTML("<p>Pick a case in the worklist.</p>")
        self.case_header.add_class("qe-case-header")
        self.note_text = w.Text(placeholder="optional note", description="note",
                                layout=w.Layout(width="420px"))
        self.note_text.add_class("qe-verdict-note")
        self.verdict_buttons = {}
        for verdict in VERDICTS:
            button = w.Button(description=verdict, disabled=True, layout=w.Layout(width="auto"),
                              tooltip=f"record '{verdict}' for the open case")
            button.style.button_color = _VERDICT_COLOURS[verdict]
            button.style.text_color = "white"
            button.add_class("qe-verdict-button")
            button.add_class("qe-verdict-" + verdict.replace(" ", "-"))
            button.on_click(self._on_verdict)
            self.verdict_buttons[verdict] = button
        self.verdict_status = w.HTML()
        self.verdict_status.add_class("qe-verdict-status")
        self.viewer_box = w.VBox()
        self.viewer_box.add_class("qe-case-panel")
        right = w.VBox([self.case_header, w.HBox(list(self.verdict_buttons.values())),
                        self.note_text, self.verdict_status, self.viewer_box],
                       layout=w.Layout(flex="1 1 auto", min_width="0", overflow="auto",
                                       margin="0 0 0 12px"))
        self.widget = w.VBox([
            w.HTML(_CSS + self._header_html()),
            w.HBox([self.alpha_slider, self.alpha_readout, self.preset_button]),
            self.summary,
            self.legend,
            self.notes_html,
            w.HBox([w.VBox([self.worklist_caption, self.worklist_box],
                           layout=w.Layout(flex="0 0 484px")), right]),
        ])
        self.widget.add_class("qe-triage-app")

        self.alpha_slider.observe(self._on_alpha, names="value")
        self.preset_button.on_click(lambda _: self.set_alpha(self.calibrated_alpha))
        self.refresh()

    # ---- state as data

    @property
    def alpha(self) -> float:
        """The current α."""
        return float(self.alpha_slider.value)

    def set_alpha(self, alpha: float) -> None:
        """Set α (widening the slider if needed); the worklist and the viewer follow."""
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not np.isfinite(alpha):
            raise InputError(f"`alpha` must be a finite number; got {alpha!r}.")
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
                viewer_scores = xr.Dataset({"similarity": self.similarity})
                self.viewer = _viewer_class()(self.ensemble, case, scores=viewer_scores,
                                              alpha=self.alpha, fusion=self.fusion, dpi=self._dpi)
                self.viewer_box.children = (self.viewer.widget,)
            else:
                self.viewer.set_case(case)
        else:
            self.viewer_box.children = (_widgets().HTML(
                "<p><i>No ensemble given (qe-nb app --ensemble ROOT): the case viewer is off.</i></p>"),)
        for button in self.verdict_buttons.values():
            button.disabled = False
        stored = self.store.get(case)
        self.note_text.value = stored["note"] if stored else ""
        self._draw_worklist()
        self._draw_case_header()

    def record(self, verdict: str, *, note: str | None = None, case: str | None = None) -> None:
        """Record a verdict for ``case`` (default: the open case) and save it at once.

        ``note`` defaults to the note field's text.
        """
        case = self.case if case is None else case
        if case is None:
            raise InputError("no case is open; pass `case=` or select a row of the worklist first.")
        note = self.note_text.value if note is None else note
        self.store.record(case, verdict, note=note)
        where = f" to {html.escape(str(self.store.path))}" if self.store.path else " (in memory)"
        self.verdict_status.value = (f"<span>saved: {html.escape(case)} → <b>{html.escape(verdict)}</b>"
                                     f"{where}</span>")
        self._draw_worklist()
        self._draw_case_header()

    @property
    def verdicts(self) -> pd.DataFrame:
        """The recorded verdicts (see :func:`read_verdicts`)."""
        return self.store.verdicts

    # ---- callbacks

    def _on_alpha(self, change: Any = None) -> None:
        self.refresh()

    def _on_row(self, button: Any) -> None:
        case = getattr(button, "_qe_case", None)
        if case is not None:
            self.select(case)

    def _on_verdict(self, button: Any) -> None:
        self.record(button.description)

    # ---- computing and drawing

    def refresh(self) -> None:
        """Recompute the worklist for the current α and redraw."""
        from qe_nb.core.alarms import alarms, risk
        from qe_nb.core.calibration import alarm_entropy
        from qe_nb.core.triage import worklist

        alpha = self.alpha
        with self._noting():
            table = worklist(self.similarity, alpha, quality=self.quality)
            counts = risk(alarms(self.similarity, alpha))
        self.worklist = table
        flagged = int((counts.values > 0).sum())
        parts = [f"α = {alpha:.2f}", f"{int(counts.values.sum())} alarms",
                 f"{flagged} of {counts.sizes['case']} cases with ≥ 1 alarm",
                 f"entropy {float(alarm_entropy(counts)):.2f}"]
        self.summary.value = " · ".join(html.escape(p) for p in parts)
        self.alpha_readout.value = f"<code>{alpha:.2f}</code>"
        self._draw_worklist()
        if self.viewer is not None:
            self.viewer.set_alpha(alpha)
        self._draw_case_header()

    @contextlib.contextmanager
    def _noting(self):
        """Keep qe_nb's warnings (e.g. MAD 0) as notes shown once in the app, not as stderr."""
        from qe_nb.exceptions import QeNbWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QeNbWarning)
            yield
        for item in caught:
            if not issubclass(item.category, QeNbWarning):
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
            elif str(item.message) not in self.notes:
                self.notes.append(str(item.message))
        if self.notes and hasattr(self, "notes_html"):
            self.notes_html.value = ("<details style='font-size:12px;color:#555'><summary>"
                                     f"{len(self.notes)} note(s) on the thresholds</summary>"
                                     + "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
                                     + "</details>")

    def _draw_worklist(self) -> None:
        verdicts = self.store.as_dict()
        table = self.worklist
        table["verdict"] = [verdicts.get(str(c), "") for c in table["case"]]
        shown = len(self.row_buttons)
        self.worklist_caption.value = (f"<b>worklist</b>: top {shown} of {len(table)} cases by alarm count; "
                                       f"{len(verdicts)} reviewed")
        for i, (button, info) in enumerate(zip(self.row_buttons, self.row_infos)):
            row = table.iloc[i]
            case, count = str(row["case"]), int(row["risk"])
            background, text = alarm_colour(count, self._max_count)
            button._qe_case = case
            selected = case == self.case
            button.description = ("▶ " if selected else "") + case
            button.tooltip = f"open {case} ({count} alarms)"
            button.style.button_color = background
            button.style.text_color = text
            button.style.font_weight = "bold" if selected else "normal"
            verdict = verdicts.get(case, "")
            badge = (f'<span class="qe-verdict-badge" style="background:{_VERDICT_COLOURS[verdict]}">'
                     f"{html.escape(verdict)}</span> ") if verdict else ""
            quality = (f" · {self.quality.name} {float(row['quality']):.2f}"
                       if "quality" in table and np.isfinite(row["quality"]) else "")
            reasons = str(row["reasons"])
            info.value = (f"<div title='{html.escape(reasons, quote=True)}'>#{i + 1} · "
                          f"<b class='qe-risk'>{count} alarm{'s' if count != 1 else ''}</b>{quality} "
                          f"{badge}<span class='qe-reasons'>{html.escape(reasons) or '&nbsp;'}</span></div>")

    def _draw_case_header(self) -> None:
        if self.case is None:
            return
        row = self.worklist[self.worklist["case"] == self.case].iloc[0]
        stored = self.store.get(self.case)
        verdict = (f"verdict: <b class='qe-verdict-value'>{html.escape(stored['verdict'])}</b>"
                   + (f" ({html.escape(stored['note'])})" if stored["note"] else "")
                   if stored else "verdict: <b class='qe-verdict-value'>none yet</b>")
        reasons = html.escape(str(row["reasons"])) or "no alarms"
        self.case_header.value = (
            f"<h3 class='qe-case-title' style='margin:4px 0'>{html.escape(self.case)}</h3>"
            f"<p>rank {int(row.name)} of {len(self.worklist)} · <b>{int(row['risk'])} alarms</b> at "
            f"α = {self.alpha:.2f} · {verdict}</p><p style='font-size:12px'>{reasons}</p>")

    def _legend_html(self) -> str:
        counts = sorted({0, 1, *np.linspace(1, self._max_count, 5).round().astype(int).tolist()})
        swatches = "".join(
            f"<span style='background:{alarm_colour(c, self._max_count)[0]};color:"
            f"{alarm_colour(c, self._max_count)[1]};padding:0 6px;margin-right:2px'>{c}</span>"
            for c in counts)
        return f"<div style='font-size:12px'>alarms per case: {swatches} (of {self._max_count} possible)</div>"

    def _header_html(self) -> str:
        s = self.similarity
        where = html.escape(str(self.store.path)) if self.store.path else "memory only (not saved)"
        return (f"<h2 style='margin:4px 0'>qe-nb triage</h2><p>{s.sizes['case']} cases · "
                f"{s.sizes['algorithm']} algorithms · {s.sizes['label']} label(s) · metrics "
                f"{', '.join(map(str, s['metric'].values))} · verdicts: <code>{where}</code></p>")

    # ---- display

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def app_from_environment(environ: Mapping[str, str] | None = None) -> TriageApp:
    """Build the :class:`TriageApp` that ``qe-nb app`` serves, from ``QE_NB_*`` variables.

    Parameters
    ----------
    environ : mapping, optional
        Default :data:`os.environ`. See :data:`ENVIRONMENT` for the variables.

    Raises
    ------
    InputError
        When ``QE_NB_SCORES`` is unset, or ``QE_NB_ALPHA`` / ``QE_NB_ROWS`` are not numbers.
    """
    env = os.environ if environ is None else environ
    scores = env.get("QE_NB_SCORES", "")
    if not scores:
        raise InputError("QE_NB_SCORES is not set; start the app with `qe-nb app scores.nc`.")
    ensemble = None
    root = env.get("QE_NB_ENSEMBLE_ROOT", "")
    if root:
        from qe_nb.data.ensemble import open_ensemble

        ensemble = open_ensemble(
            root, masks=env.get("QE_NB_MASKS") or "{case}/{algorithm}.nii.gz",
            reference=env.get("QE_NB_REFERENCE") or None, images=env.get("QE_NB_IMAGES") or None,
            labels=env.get("QE_NB_LABELS") or None,
        )
    numbers = {}
    for key, kind in (("QE_NB_ALPHA", float), ("QE_NB_ROWS", int)):
        text = env.get(key, "")
        if text:
            try:
                numbers[key] = kind(text)
            except ValueError:
                raise InputError(f"{key} must be a{'n integer' if kind is int else ' number'}; got {text!r}.") from None
    return TriageApp(
        scores, ensemble=ensemble, verdicts=env.get("QE_NB_VERDICTS") or None,
        alpha=numbers.get("QE_NB_ALPHA"), label_mean=_flag(env.get("QE_NB_LABEL_MEAN", "")),
        rows=numbers.get("QE_NB_ROWS", 30),
    )


# ------------------------------------------------------------------------------- serving


def demo_environment(folder: str | os.PathLike | None = None, *, n_cases: int = 12) -> dict[str, str]:
    """Write a small synthetic cohort and its scores; return the ``QE_NB_*`` variables for it.

    For trying the app notebook without ``qe-nb app`` (and for running it in CI).
    """
    import tempfile

    from qe_nb.data.synth import IMAGES, MASKS, REFERENCE, synthetic_cohort
    from qe_nb.pipeline.scoring import save_scores, score

    folder = Path(tempfile.mkdtemp(prefix="qe_nb-triage-")) if folder is None else Path(folder)
    ensemble = synthetic_cohort(folder / "cohort", kind="glioma", n_cases=n_cases, n_algorithms=3,
                                shape=(32, 40, 40), seed=0)
    save_scores(score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False),
                folder / "scores.nc")
    return {"QE_NB_SCORES": str(folder / "scores.nc"), "QE_NB_ENSEMBLE_ROOT": str(folder / "cohort"),
            "QE_NB_MASKS": MASKS, "QE_NB_REFERENCE": REFERENCE, "QE_NB_IMAGES": IMAGES}


def app_notebook() -> Path:
    """The notebook ``qe-nb app`` serves: ``notebooks/triage_app.ipynb`` of the source tree, or
    the copy shipped inside the package after a plain ``pip install``.

    Raises
    ------
    FileNotFoundError
        When neither is there (a broken installation).
    """
    in_tree = Path(__file__).resolve().parents[2] / "notebooks" / "triage_app.ipynb"
    packaged = Path(__file__).resolve().parent / "triage_app.ipynb"
    for path in (in_tree, packaged):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the app notebook is missing (looked at {str(in_tree)!r} and {str(packaged)!r}); "
        "reinstall qe-nb."
    )


def voila_command(
    scores: str | os.PathLike,
    *,
    ensemble_root: str | os.PathLike | None = None,
    masks: str | None = None,
    reference: str | None = None,
    images: str | None = None,
    labels: str | None = None,
    verdicts: str | os.PathLike | None = None,
    alpha: float | None = None,
    label_mean: bool = False,
    rows: int | None = None,
    port: int = 8866,
    open_browser: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The Voila command line and environment that serve the triage app on 127.0.0.1.

    Voila runs the notebook with the server's environment, so the app's settings travel as
    the ``QE_NB_*`` variables of :data:`ENVIRONMENT`.

    Returns
    -------
    argv : list of str
        ``python -m voila notebooks/triage_app.ipynb --Voila.ip=127.0.0.1 --port=PORT ...``
    env : dict
        ``environ`` (default :data:`os.environ`) plus the ``QE_NB_*`` variables; variables of
        settings not given are removed, so an outer environment cannot leak into the app.

    Raises
    ------
    InputError
        When ``scores`` is not a file, ``ensemble_root`` not a folder, or ``port`` not in
        1..65535.
    """
    import sys

    scores_path = Path(os.fspath(scores)).resolve()
    if not scores_path.is_file():
        raise InputError(f"scores file {str(scores_path)!r} does not exist; write it with `qe-nb score`.")
    if ensemble_root is not None and not Path(os.fspath(ensemble_root)).is_dir():
        raise InputError(f"`ensemble_root` {str(ensemble_root)!r} is not a folder; expected the cohort folder.")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InputError(f"`port` must be an integer in 1..65535; got {port!r}.")
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in ENVIRONMENT}
    settings = {
        "QE_NB_SCORES": str(scores_path),
        "QE_NB_ENSEMBLE_ROOT": None if ensemble_root is None else str(Path(os.fspath(ensemble_root)).resolve()),
        "QE_NB_MASKS": masks, "QE_NB_REFERENCE": reference, "QE_NB_IMAGES": images,
        "QE_NB_LABELS": labels,
        "QE_NB_VERDICTS": None if verdicts is None else str(Path(os.fspath(verdicts)).resolve()),
        "QE_NB_ALPHA": None if alpha is None else repr(float(alpha)),
        "QE_NB_LABEL_MEAN": "1" if label_mean else None,
        "QE_NB_ROWS": None if rows is None else str(int(rows)),
    }
    env.update({k: v for k, v in settings.items() if v is not None})
    argv = [sys.executable, "-m", "voila", str(app_notebook()), "--Voila.ip=127.0.0.1", f"--port={port}",
            "--Voila.port_retries=0", "--VoilaConfiguration.show_tracebacks=True"]
    if not open_browser:
        argv.append("--no-browser")
    return argv, env

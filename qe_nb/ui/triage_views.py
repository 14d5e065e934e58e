"""The views of the triage app: the worklist (a fixed set of rows refilled in place), the
verdict panel (the reviewer's name, the open case's header, the verdict buttons, the note, the
save status and the case's history), the notes on the thresholds (qe_nb's warnings, shown once)
and the header line.

Every string from a file or a person (case ids, algorithm, label and metric names, reasons,
notes, reviewer names, the database's name) is HTML-escaped where it is drawn.

Each view owns its widgets and draws from data it is given; :class:`qe_nb.ui.triage_app.TriageApp`
composes them with a :class:`qe_nb.ui.viewer.CaseViewer`.
"""

from __future__ import annotations

import contextlib
import html
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.ui.common import ipywidgets
from qe_nb.ui.verdicts import VERDICTS

__all__ = ["alarm_colour", "VERDICT_COLOURS", "when_text", "history_html", "WorklistView", "VerdictPanel",
           "NotesView", "header_html"]

VERDICT_COLOURS: dict[str, str] = {"accept": "#009E73", "needs correction": "#E69F00",
                                   "reject": "#D55E00"}
"""The colour of each verdict's button and badge (Okabe-Ito green, orange, vermillion)."""


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


def when_text(when: Any, *, date: bool = True) -> str:
    """A time stamp as text in UTC: ``2026-12-06 05:31 UTC`` (``12-06 05:31`` without ``date``).

    Examples
    --------
    >>> when_text(pd.Timestamp("2026-12-06 05:31:10", tz="UTC"))
    '2026-12-06 05:31 UTC'
    >>> when_text(None)
    ''
    """
    if when is None or (isinstance(when, float) and np.isnan(when)):
        return ""
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M UTC" if date else "%m-%d %H:%M")


def history_html(history: pd.DataFrame) -> str:
    """A case's verdicts, oldest first, as an HTML table: when, reviewer, verdict, note (escaped)."""
    if history is None or len(history) == 0:
        return "<p class='qe-history-empty' style='font-size:12px;color:#555'>no verdicts recorded yet</p>"
    rows = "".join(
        f"<tr><td>{html.escape(when_text(r['recorded_at']))}</td><td class='qe-history-reviewer'>"
        f"{html.escape(str(r['reviewer']))}</td><td class='qe-history-verdict'>{html.escape(str(r['verdict']))}"
        f"</td><td class='qe-history-note'>{html.escape(str(r['note'] or ''))}</td></tr>"
        for r in history.to_dict("records"))
    return ("<table class='qe-history' style='font-size:12px;border-collapse:collapse'><caption "
            "style='text-align:left'><b>history</b></caption><tr><th>when</th><th>reviewer</th>"
            f"<th>verdict</th><th>note</th></tr>{rows}</table>")


class WorklistView:
    """The top rows of the worklist: a button per case (coloured by its alarm count) and a line
    with its alarms, quality, verdict badge and reasons.

    Parameters
    ----------
    n_rows : int
        Rows shown.
    max_count : int
        The largest possible alarm count (for the colours).
    on_select : callable
        Called with a case id when its button is pressed.

    Attributes
    ----------
    row_buttons, row_infos : list of ipywidgets widgets
    caption, box, legend : ipywidgets widgets
    """

    def __init__(self, n_rows: int, *, max_count: int, on_select: Callable[[str], None]) -> None:
        w = ipywidgets()
        self.max_count = max_count
        self._on_select = on_select
        self._cases: list[str | None] = [None] * n_rows
        self.row_buttons: list[Any] = []
        self.row_infos: list[Any] = []
        rows = []
        for i in range(n_rows):
            button = w.Button(layout=w.Layout(width="130px", min_width="130px"))
            button.add_class("qe-worklist-case")
            button.on_click(lambda _, i=i: self._clicked(i))
            info = w.HTML(layout=w.Layout(width="340px"))
            info.add_class("qe-worklist-info")
            row = w.HBox([button, info])
            row.add_class("qe-worklist-row")
            self.row_buttons.append(button)
            self.row_infos.append(info)
            rows.append(row)
        self.caption = w.HTML()
        self.box = w.VBox(rows, layout=w.Layout(width="480px"))
        self.box.add_class("qe-worklist")
        self.legend = w.HTML(self._legend_html())

    def _clicked(self, i: int) -> None:
        case = self._cases[i]
        if case is not None:
            self._on_select(case)

    def draw(self, table: pd.DataFrame, current: Mapping[str, Mapping[str, Any]], *, selected: str | None,
             quality_name: str | None, opened: Mapping[str, tuple[str, Any]] | None = None) -> None:
        """Fill the rows from the top of ``table`` (:func:`qe_nb.worklist`).

        ``current``: case -> its latest verdict (``verdict``, ``reviewer``, ``recorded_at``);
        ``opened``: case -> (another reviewer, when) who has it open.
        """
        opened = opened or {}
        shown = len(self.row_buttons)
        reviewed = sum(1 for c in table["case"] if str(c) in current)
        self.caption.value = (f"<b>worklist</b>: top {shown} of {len(table)} cases by alarm count; "
                              f"{reviewed} reviewed")
        for i, (button, info) in enumerate(zip(self.row_buttons, self.row_infos, strict=True)):
            row = table.iloc[i]
            case, count = str(row["case"]), int(row["risk"])
            background, text = alarm_colour(count, self.max_count)
            self._cases[i] = case
            is_selected = case == selected
            button.description = ("▶ " if is_selected else "") + case
            button.tooltip = f"open {case} ({count} alarms)"
            button.style.button_color = background
            button.style.text_color = text
            button.style.font_weight = "bold" if is_selected else "normal"
            quality = (f" · {html.escape(str(quality_name))} {float(row['quality']):.2f}"
                       if "quality" in table and np.isfinite(row["quality"]) else "")
            reasons = str(row["reasons"])
            info.value = (f"<div title='{html.escape(reasons, quote=True)}'>#{i + 1} · "
                          f"<b class='qe-risk'>{count} alarm{'s' if count != 1 else ''}</b>{quality} "
                          f"{self._verdict_html(current.get(case))}{self._opened_html(opened.get(case))}"
                          f"<span class='qe-reasons'>{html.escape(reasons) or '&nbsp;'}</span></div>")

    @staticmethod
    def _verdict_html(stored: Mapping[str, Any] | None) -> str:
        if not stored:
            return ""
        verdict = str(stored["verdict"])
        colour = VERDICT_COLOURS.get(verdict, "#555")
        return (f'<span class="qe-verdict-badge" style="background:{colour}">{html.escape(verdict)}</span>'
                f" <span class='qe-verdict-by'>{html.escape(str(stored.get('reviewer', '')))} "
                f"{html.escape(when_text(stored.get('recorded_at'), date=False))}</span> ")

    @staticmethod
    def _opened_html(other: tuple[str, Any] | None) -> str:
        if not other:
            return ""
        who, when = other
        return (f"<span class='qe-opened-by' style='color:#0072B2' title='opened {html.escape(when_text(when))}'>"
                f"· open by {html.escape(str(who))}</span>")

    def _legend_html(self) -> str:
        top = self.max_count
        counts = sorted({0, 1, *np.linspace(1, top, 5).round().astype(int).tolist()})
        swatches = "".join(
            f"<span style='background:{alarm_colour(c, top)[0]};color:"
            f"{alarm_colour(c, top)[1]};padding:0 6px;margin-right:2px'>{c}</span>"
            for c in counts)
        return f"<div style='font-size:12px'>alarms per case: {swatches} (of {top} possible)</div>"


class VerdictPanel:
    """Who reviews, the open case's header, the verdict buttons, the note, the save status (with a
    retry button while a verdict is not saved) and the case's history.

    Parameters
    ----------
    on_verdict : callable
        Called with the verdict when its button is pressed.
    on_retry : callable
        Called when the retry button is pressed.
    on_reviewer : callable
        Called with the name when the reviewer field changes.
    reviewer : str, default ""
        The name to start with (from the server), else the field is empty and the buttons wait.
    """

    NAME_HINT = "enter your name (reviewer) to record verdicts"

    def __init__(self, *, on_verdict: Callable[[str], None], on_retry: Callable[[], None],
                 on_reviewer: Callable[[str], None], reviewer: str = "") -> None:
        w = ipywidgets()
        self.reviewer_text = w.Text(value=reviewer, placeholder="your name", description="reviewer",
                                    layout=w.Layout(width="300px"))
        self.reviewer_text.add_class("qe-reviewer")
        self.reviewer_text.observe(lambda change: on_reviewer(change["new"]), names="value")
        self.hint = w.HTML()
        self.hint.add_class("qe-reviewer-hint")
        self.case_header = w.HTML("<p>Pick a case in the worklist.</p>")
        self.case_header.add_class("qe-case-header")
        self.note_text = w.Text(placeholder="optional note", description="note",
                                layout=w.Layout(width="420px"))
        self.note_text.add_class("qe-verdict-note")
        self.verdict_buttons: dict[str, Any] = {}
        for verdict in VERDICTS:
            button = w.Button(description=verdict, disabled=True, layout=w.Layout(width="auto"),
                              tooltip=f"record '{verdict}' for the open case")
            button.style.button_color = VERDICT_COLOURS[verdict]
            button.style.text_color = "white"
            button.add_class("qe-verdict-button")
            button.add_class("qe-verdict-" + verdict.replace(" ", "-"))
            button.on_click(lambda b: on_verdict(b.description))
            self.verdict_buttons[verdict] = button
        self.verdict_status = w.HTML()
        self.verdict_status.add_class("qe-verdict-status")
        self.retry_button = w.Button(description="retry saving", icon="refresh",
                                     layout=w.Layout(width="auto", display="none"))
        self.retry_button.add_class("qe-verdict-retry")
        self.retry_button.on_click(lambda _: on_retry())
        self.history = w.HTML()
        self.history.add_class("qe-verdict-history")
        self.box = w.VBox([w.HBox([self.reviewer_text, self.hint]), self.case_header,
                           w.HBox(list(self.verdict_buttons.values())), self.note_text,
                           w.HBox([self.verdict_status, self.retry_button]), self.history])

    def enable(self, *, case_open: bool, reviewer: str) -> None:
        """The buttons work once a case is open and the reviewer has given a name."""
        for button in self.verdict_buttons.values():
            button.disabled = not (case_open and reviewer)
        self.hint.value = ("" if reviewer else
                           f"<span style='color:#a00'>{html.escape(self.NAME_HINT)}</span>")

    def open(self, stored: Mapping[str, Any] | None, *, unsaved_note: str | None = None) -> None:
        """A case was opened: show its stored note, or the note of its verdict not saved yet."""
        if unsaved_note is not None:
            self.note_text.value = unsaved_note
        else:
            self.note_text.value = str(stored.get("note") or "") if stored else ""

    def saved(self, case: str, verdict: str, reviewer: str, where: str) -> None:
        """Say that ``case``'s verdict was saved (``where``: the database)."""
        self.retry_button.layout.display = "none"
        self.verdict_status.value = (
            f"<span class='qe-saved'>saved: {html.escape(case)} → <b>{html.escape(verdict)}</b> by "
            f"{html.escape(reviewer)} to {html.escape(where)}</span>")

    def failed(self, case: str, verdict: str, error: str) -> None:
        """Say, in red, that ``case``'s verdict was NOT saved and is kept for a retry."""
        self.retry_button.layout.display = None
        self.verdict_status.value = (
            f"<span class='qe-save-failed' style='color:#b00000'><b>not saved</b>: {html.escape(case)} → "
            f"<b>{html.escape(verdict)}</b> ({html.escape(error)}). The verdict is kept here: press "
            "“retry saving”.</span>")

    def problem(self, text: str) -> None:
        """A problem that is not a lost verdict (e.g. the database could not be read), in red."""
        self.verdict_status.value = f"<span class='qe-store-problem' style='color:#b00000'>{html.escape(text)}</span>"

    def draw_header(self, case: str, row: pd.Series, n_cases: int, alpha: float,
                    stored: Mapping[str, Any] | None, history: pd.DataFrame | None = None) -> None:
        """The open case: rank, alarm count at ``alpha``, the current verdict (who, when) and reasons;
        its history below the buttons."""
        if stored:
            note = str(stored.get("note") or "")
            verdict = (f"verdict: <b class='qe-verdict-value'>{html.escape(str(stored['verdict']))}</b>"
                       + (f" ({html.escape(note)})" if note else "")
                       + f" <span class='qe-verdict-by'>by {html.escape(str(stored.get('reviewer', '')))}, "
                       f"{html.escape(when_text(stored.get('recorded_at')))}</span>")
        else:
            verdict = "verdict: <b class='qe-verdict-value'>none yet</b>"
        reasons = html.escape(str(row["reasons"])) or "no alarms"
        self.case_header.value = (
            f"<h3 class='qe-case-title' style='margin:4px 0'>{html.escape(case)}</h3>"
            f"<p>rank {int(row.name)} of {n_cases} · <b>{int(row['risk'])} alarms</b> at "
            f"α = {alpha:.2f} · {verdict}</p><p style='font-size:12px'>{reasons}</p>")
        if history is not None:
            self.history.value = history_html(history)


class NotesView:
    """qe_nb's warnings (e.g. MAD 0) kept as notes and shown once in the app, not on stderr.

    Attributes
    ----------
    notes : list of str
        The distinct messages so far, oldest first.
    html : ipywidgets.HTML
        Their collapsible list (CSS class ``qe-triage-notes``); empty while there are none.
    """

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.html = ipywidgets().HTML()
        self.html.add_class("qe-triage-notes")

    @contextlib.contextmanager
    def noting(self) -> Iterator[None]:
        """Collect the :class:`qe_nb.exceptions.QeNbWarning` raised inside as notes; other
        warnings go on as they came."""
        from qe_nb.exceptions import QeNbWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QeNbWarning)
            yield
        for item in caught:
            if not issubclass(item.category, QeNbWarning):
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
            elif str(item.message) not in self.notes:
                self.notes.append(str(item.message))
        if self.notes:
            self.html.value = ("<details style='font-size:12px;color:#555'><summary>"
                               f"{len(self.notes)} note(s) on the thresholds</summary>"
                               + "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
                               + "</details>")


def header_html(similarity: xr.DataArray, verdicts_path: str | os.PathLike | None, *,
                pool: str = "algorithm") -> str:
    """The app's title and a line with the cube's sizes, metrics (with their units: mm, or px
    for images without spacing), the pooling of the thresholds and where verdicts are kept
    (``verdicts_path``: the database's display URL, or None)."""
    from qe_nb.ui.style import metric_units

    s = similarity
    where = html.escape(str(verdicts_path)) if verdicts_path else "memory only (not saved)"
    metrics = []
    for m in map(str, s["metric"].values):
        units = metric_units(s, m)
        metrics.append(m if units in ("", "1") else f"{m} ({units})")
    pooled = " · thresholds pooled over all members" if pool == "all" else ""
    return (f"<h2 style='margin:4px 0'>qe-nb triage</h2><p>{s.sizes['case']} cases · "
            f"{s.sizes['algorithm']} algorithms · {s.sizes['label']} label(s) · metrics "
            f"{html.escape(', '.join(metrics))}{pooled} · verdicts: <code>{where}</code></p>")

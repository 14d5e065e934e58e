"""The views of the triage app: the worklist (a fixed set of rows refilled in place), the
verdict panel (the open case's header, the verdict buttons and the note), the notes on the
thresholds (qe_nb's warnings, shown once) and the header line.

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

__all__ = ["alarm_colour", "VERDICT_COLOURS", "WorklistView", "VerdictPanel", "NotesView",
           "header_html"]

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

    def draw(self, table: pd.DataFrame, verdicts: Mapping[str, str], *, selected: str | None,
             quality_name: str | None) -> None:
        """Fill the rows from the top of ``table`` (:func:`qe_nb.worklist` and ``verdict``)."""
        shown = len(self.row_buttons)
        self.caption.value = (f"<b>worklist</b>: top {shown} of {len(table)} cases by alarm count; "
                              f"{len(verdicts)} reviewed")
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
            verdict = verdicts.get(case, "")
            badge = (f'<span class="qe-verdict-badge" style="background:{VERDICT_COLOURS[verdict]}">'
                     f"{html.escape(verdict)}</span> ") if verdict else ""
            quality = (f" · {quality_name} {float(row['quality']):.2f}"
                       if "quality" in table and np.isfinite(row["quality"]) else "")
            reasons = str(row["reasons"])
            info.value = (f"<div title='{html.escape(reasons, quote=True)}'>#{i + 1} · "
                          f"<b class='qe-risk'>{count} alarm{'s' if count != 1 else ''}</b>{quality} "
                          f"{badge}<span class='qe-reasons'>{html.escape(reasons) or '&nbsp;'}</span></div>")

    def _legend_html(self) -> str:
        top = self.max_count
        counts = sorted({0, 1, *np.linspace(1, top, 5).round().astype(int).tolist()})
        swatches = "".join(
            f"<span style='background:{alarm_colour(c, top)[0]};color:"
            f"{alarm_colour(c, top)[1]};padding:0 6px;margin-right:2px'>{c}</span>"
            for c in counts)
        return f"<div style='font-size:12px'>alarms per case: {swatches} (of {top} possible)</div>"


class VerdictPanel:
    """The open case's header, the verdict buttons, the note field and the save status.

    Parameters
    ----------
    on_verdict : callable
        Called with the verdict when its button is pressed.
    """

    def __init__(self, *, on_verdict: Callable[[str], None]) -> None:
        w = ipywidgets()
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
        self.box = w.VBox([self.case_header, w.HBox(list(self.verdict_buttons.values())),
                           self.note_text, self.verdict_status])

    def open(self, stored: Mapping[str, str] | None) -> None:
        """A case was opened: enable the buttons, show its stored note."""
        for button in self.verdict_buttons.values():
            button.disabled = False
        self.note_text.value = stored["note"] if stored else ""

    def saved(self, case: str, verdict: str, where: str) -> None:
        """Say that ``case``'s verdict was saved (``where``: " to PATH" or " (in memory)")."""
        self.verdict_status.value = (f"<span>saved: {html.escape(case)} → <b>{html.escape(verdict)}</b>"
                                     f"{html.escape(where)}</span>")

    def draw_header(self, case: str, row: pd.Series, n_cases: int, alpha: float,
                    stored: Mapping[str, str] | None) -> None:
        """The open case: rank, alarm count at ``alpha``, verdict and reasons."""
        verdict = (f"verdict: <b class='qe-verdict-value'>{html.escape(stored['verdict'])}</b>"
                   + (f" ({html.escape(stored['note'])})" if stored["note"] else "")
                   if stored else "verdict: <b class='qe-verdict-value'>none yet</b>")
        reasons = html.escape(str(row["reasons"])) or "no alarms"
        self.case_header.value = (
            f"<h3 class='qe-case-title' style='margin:4px 0'>{html.escape(case)}</h3>"
            f"<p>rank {int(row.name)} of {n_cases} · <b>{int(row['risk'])} alarms</b> at "
            f"α = {alpha:.2f} · {verdict}</p><p style='font-size:12px'>{reasons}</p>")


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
    for images without spacing), the pooling of the thresholds and where verdicts are kept."""
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

"""The verdict side of the triage app: the reviewer, saving verdicts (and showing a failed save),
reading the other reviewers' verdicts back, and the line on how well the risk ranks them.

:class:`VerdictDesk` joins a :class:`qe_nb.ui.review_session.ReviewSession` (the store side) and a
:class:`qe_nb.ui.triage_views.VerdictPanel` (the widgets); :class:`qe_nb.ui.triage_app.TriageApp`
owns one and asks it to save, reload and draw.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError
from qe_nb.ui.common import ipywidgets
from qe_nb.ui.review_session import ReviewSession
from qe_nb.ui.triage_views import VerdictPanel

__all__ = ["VerdictDesk", "short_error"]


def short_error(exc: BaseException) -> str:
    """An exception's first line (or its type when it has no message).

    Examples
    --------
    >>> short_error(ValueError("disk full\\nmore")), short_error(KeyError())
    ('disk full', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class VerdictDesk:
    """Record, retry and reload verdicts for one reviewer, and show the outcome at once.

    Parameters
    ----------
    session : ReviewSession
    alpha : callable
        The app's current α (recorded with each verdict).
    case : callable
        The case open in the app, or None.
    redraw : callable
        Redraws the app's worklist and header after the verdicts changed.

    Attributes
    ----------
    panel : VerdictPanel
    refresh_button, refresh_note, performance : ipywidgets widgets
        "refresh", when the verdicts were last read, and "your verdicts so far: ...".
    """

    def __init__(self, session: ReviewSession, *, alpha: Callable[[], float],
                 case: Callable[[], str | None], redraw: Callable[[], None]) -> None:
        w = ipywidgets()
        self.session = session
        self._alpha, self._case, self._redraw = alpha, case, redraw
        self._performance_key: tuple | None = None
        self.panel = VerdictPanel(on_verdict=self._on_verdict, on_retry=self._on_retry,
                                  on_reviewer=self._typed, reviewer=session.reviewer)
        self.refresh_button = w.Button(description="refresh", icon="refresh", layout=w.Layout(width="auto"),
                                       tooltip="read the verdicts of every reviewer from the database now")
        self.refresh_button.add_class("qe-refresh")
        self.refresh_button.on_click(lambda _: self.reload())
        self.refresh_note = w.HTML()
        self.refresh_note.add_class("qe-refresh-note")
        self.performance = w.HTML()
        self.performance.add_class("qe-verdict-performance")
        self.panel.enable(case_open=False, reviewer=session.reviewer)

    @property
    def where(self) -> str:
        """The database, for display (password masked)."""
        return str(self.session.store.url)

    def set_reviewer(self, name: str) -> None:
        """Who reviews from now on (the name field shows it); the verdict buttons work once a name
        and a case are there."""
        self.panel.reviewer_text.value = name  # the field's observer calls _typed
        self._typed(name)

    def _typed(self, name: str) -> None:
        """The name field changed (a key typed): the session takes the name without its blanks; the
        field is left as typed, so a space between two words can be typed."""
        self.session.reviewer = name
        self.panel.enable(case_open=self._case() is not None, reviewer=self.session.reviewer)

    def opened(self, case: str) -> None:
        """``case`` was opened: its note (or the one not saved yet), the buttons, the presence."""
        pending = self.session.pending
        unsaved = pending["note"] if pending is not None and pending["case"] == case else None
        self.panel.open(self.session.current.get(case), unsaved_note=unsaved)
        self.panel.enable(case_open=True, reviewer=self.session.reviewer)
        try:
            self.session.open(case)
        except Exception as exc:  # presence is a courtesy: the case opens anyway
            self.panel.problem(f"could not tell the others that {case} is open: {short_error(exc)}")

    def record(self, verdict: str, *, note: str | None = None, case: str | None = None) -> None:
        """See :meth:`qe_nb.ui.triage_app.TriageApp.record`."""
        case = self._case() if case is None else case
        if case is None:
            raise InputError("no case is open; pass `case=` or select a row of the worklist first.")
        note = self.panel.note_text.value if note is None else note
        self._save(lambda: self.session.record(case, verdict, note=note, alpha=self._alpha()))

    def retry(self) -> None:
        """Save the verdict that could not be saved."""
        self._save(self.session.retry)

    def _save(self, save: Callable[[], dict[str, Any]]) -> None:
        try:
            row = save()
        except InputError as exc:
            self.panel.problem(str(exc))
            raise
        except Exception:
            pending = self.session.pending or {}
            self.panel.failed(str(pending.get("case")), str(pending.get("verdict")), str(pending.get("error", "")))
            raise
        self.panel.saved(str(row["case"]), str(row["verdict"]), str(row["reviewer"]), self.where)
        self._redraw()

    def _on_verdict(self, verdict: str) -> None:
        """A verdict button: the outcome is on the page, not raised into the kernel."""
        try:
            self.record(verdict)
        except Exception:  # shown by record()
            pass

    def _on_retry(self) -> None:
        try:
            self.retry()
        except Exception:  # shown by retry()
            pass

    def reload(self, *, draw: bool = True) -> None:
        """Read every reviewer's verdicts (and who has which case open) from the database; redraw."""
        try:
            self.session.reload(self._case())
        except Exception as exc:
            self.panel.problem(f"could not read the verdicts from {self.where}: {short_error(exc)}")
        else:
            self.refresh_note.value = (f"<span style='font-size:11px;color:#555'>read "
                                       f"{datetime.now(timezone.utc):%H:%M:%S} UTC</span>")
        if draw:
            self._redraw()

    def history(self, case: str) -> pd.DataFrame | None:
        """``case``'s verdicts, oldest first, or None (and a red line) when they cannot be read."""
        try:
            return self.session.history(case)
        except Exception as exc:
            self.panel.problem(f"could not read the history of {case}: {short_error(exc)}")
            return None

    def draw_performance(self, risk: xr.DataArray, noting: Any) -> None:
        """'your verdicts so far: risk AUROC ...' (:func:`qe_nb.verdict_performance` of ``risk``
        against the current verdicts); ``noting`` collects its warnings as the app's notes."""
        try:
            from qe_nb.core.verdict_performance import verdict_performance
        except ImportError:  # pragma: no cover - a core without it
            return
        current = self.session.current
        key = (float(risk.attrs.get("alpha", self._alpha())), self._alpha(),
               tuple(sorted((c, str(r.get("verdict"))) for c, r in current.items())))
        if key == self._performance_key:
            return
        self._performance_key = key
        cases = {str(c) for c in risk["case"].values}
        reviewed = {c: r for c, r in current.items() if c in cases}
        if not reviewed:
            self.performance.value = ""
            return
        frame = pd.DataFrame({"case": list(reviewed), "verdict": [str(r["verdict"]) for r in reviewed.values()]})
        try:
            with noting():
                text = str(verdict_performance(risk, frame, n_boot=500))
        except Exception as exc:  # too few verdicts for a number, etc.: say so, do not fail the app
            text = f"your verdicts so far: {short_error(exc)}"
        self.performance.value = f"<span style='font-size:12px'>{html.escape(text)}</span>"

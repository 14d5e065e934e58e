"""The review side of the triage app, without widgets: who reviews, the verdicts in the store, a
verdict not saved yet, who has which case open, and the periodic refresh.

- :class:`ReviewSession` -- one reviewer's session over a :class:`qe_nb.ReviewStore`;
- :class:`PeriodicRefresh` -- calls a function every few seconds on the kernel's event loop
  (in Voila and Jupyter the kernel runs an asyncio loop; widget updates from it are safe, as they
  run in the same thread as the widgets' own callbacks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pandas as pd

from qe_nb.core.verdicts import VERDICTS
from qe_nb.exceptions import InputError
from qe_nb.store.engine import file_identity

if TYPE_CHECKING:
    from qe_nb.store.review import ReviewStore

__all__ = ["PRESENCE_MINUTES", "ReviewSession", "PeriodicRefresh"]

PRESENCE_MINUTES = 5.0
"""A case another reviewer opened within this many minutes is marked as open by them."""


class ReviewSession:
    """One reviewer's session over a review store.

    Parameters
    ----------
    store : qe_nb.ReviewStore
    scores_file : str, optional
        The scores file, recorded with each verdict.
    reviewer : str, default ""
        Who reviews; verdicts cannot be recorded until it is set.

    Attributes
    ----------
    current : dict of str to dict
        case -> its latest verdict (a row of :meth:`qe_nb.ReviewStore.current`), as last read.
    opened : dict of str to (str, pandas.Timestamp)
        case -> (another reviewer, when) who opened it within :data:`PRESENCE_MINUTES`.
    pending : dict or None
        The verdict being saved, kept until a save succeeds: ``case``, ``verdict``, ``note``,
        ``alpha``, ``seconds`` and ``error`` (the last failure's message, or "").
    """

    def __init__(self, store: ReviewStore, *, scores_file: str | None = None, reviewer: str = "") -> None:
        self.store = store
        self.scores_file = scores_file
        self.reviewer = reviewer
        self.current: dict[str, dict[str, Any]] = {}
        self.opened: dict[str, tuple[str, pd.Timestamp]] = {}
        self.pending: dict[str, Any] | None = None
        self._opened_at: dict[str, float] = {}
        self._file = _sqlite_file(str(store.url)) if getattr(store, "backend", "") == "sqlite" else None
        self._inode = file_identity(self._file)

    @property
    def reviewer(self) -> str:
        """The reviewer's name (surrounding blanks removed)."""
        return self._reviewer

    @reviewer.setter
    def reviewer(self, name: str) -> None:
        if not isinstance(name, str):
            raise InputError(f"`reviewer` must be a str (a name); got {type(name).__name__}.")
        self._reviewer = name.strip()

    def reload(self, case: str | None = None) -> None:
        """Read the current verdicts and who has which case open from the store; with ``case``
        (the case open here) first renew this reviewer's presence on it (so it stays marked for
        the others while it is open, and a name given after opening the case counts).

        Raises
        ------
        StoreError
            When the database cannot be read (the last read is kept).
        """
        if case is not None and self.reviewer:
            self.store.mark_opened(case, reviewer=self.reviewer)
        frame = self.store.current()
        current = {str(row["case"]): dict(row) for row in frame.to_dict("records")}
        opened = (self.store.opened_by_others(reviewer=self.reviewer, minutes=PRESENCE_MINUTES)
                  if self.reviewer else {})
        self.current, self.opened = current, opened

    def history(self, case: str) -> pd.DataFrame:
        """Every verdict recorded for ``case``, oldest first (:meth:`qe_nb.ReviewStore.history`)."""
        return self.store.history(case)

    def open(self, case: str) -> None:
        """``case`` is open now: start its clock and tell the other reviewers (presence).

        Raises
        ------
        StoreError
            When the presence cannot be written (the case is open anyway).
        """
        self._opened_at[case] = time.monotonic()
        if self.reviewer:
            self.store.mark_opened(case, reviewer=self.reviewer)

    def seconds_on(self, case: str) -> float | None:
        """Seconds since ``case`` was opened in this session, or None."""
        start = self._opened_at.get(case)
        return None if start is None else round(time.monotonic() - start, 1)

    def record(self, case: str, verdict: str, *, note: str = "", alpha: float | None = None) -> dict[str, Any]:
        """Record a verdict by :attr:`reviewer` and return the stored row.

        The verdict is :attr:`pending` until the store has it; a failed save keeps it there (with
        the error) for :meth:`retry`.

        Raises
        ------
        InputError
            Without a reviewer, or for an unknown verdict.
        StoreError
            When the database cannot be written.
        """
        if not self.reviewer:
            raise InputError("who is reviewing? Enter your name before recording a verdict.")
        if verdict not in VERDICTS:
            raise InputError(f"Unknown verdict {verdict!r}; expected one of {list(VERDICTS)}.")
        self.pending = {"case": case, "verdict": verdict, "note": note, "alpha": alpha,
                        "seconds": self.seconds_on(case), "error": ""}
        return self.retry()

    def retry(self) -> dict[str, Any]:
        """Save the :attr:`pending` verdict again; see :meth:`record`.

        Raises
        ------
        InputError
            When nothing is pending.
        """
        pending = self.pending
        if pending is None:
            raise InputError("no verdict is waiting to be saved.")
        try:
            self.check_file()
            row = self.store.record(pending["case"], pending["verdict"], reviewer=self.reviewer,
                                    note=pending["note"], alpha=pending["alpha"], scores_file=self.scores_file,
                                    seconds=pending["seconds"])
        except Exception as exc:
            pending["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise
        self.pending = None
        self.current[str(row["case"])] = dict(row)
        return row


    def check_file(self) -> None:
        """A SQLite database must still be the file the session opened: SQLite keeps writing into a
        file whose folder was removed or renamed (the verdicts would vanish with the process).

        Raises
        ------
        StoreError
            When the file is gone or was replaced.
        """
        if self._file is None or self._inode is None:
            return
        now = file_identity(self._file)
        if now != self._inode:
            from qe_nb.store import StoreError

            what = "is gone (its folder removed or renamed?)" if now is None else "was replaced by another file"
            raise StoreError(f"the review database {str(self._file)!r} {what}; nothing was written. Put it "
                             "back and retry, or restart the app to use a new database.")


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (percent-decoded), or None."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(unquote(url[len("sqlite:///"):]))


class PeriodicRefresh:
    """Call ``callback`` every ``seconds`` on the running asyncio loop (the kernel's), until stopped.

    Use :meth:`start`; outside a running loop (plain Python) there is nothing to run on and it
    returns None. An exception in ``callback`` is passed to ``on_error`` and the refresh goes on.
    """

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task

    @classmethod
    def start(cls, callback: Callable[[], None], seconds: float,
              on_error: Callable[[BaseException], None] | None = None) -> PeriodicRefresh | None:
        """Start calling ``callback``; None when there is no running loop or ``seconds`` <= 0."""
        if not seconds or seconds <= 0:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None

        async def run() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    callback()
                except Exception as exc:  # shown by on_error; the next tick tries again
                    if on_error is not None:
                        on_error(exc)

        return cls(loop.create_task(run()))

    def stop(self) -> None:
        """Stop calling."""
        self.task.cancel()

"""The review store: an append-only verdict log, reviewer presence and ``qe-nb watch``'s assessments.

- :class:`ReviewStore` -- one database (a SQLite file, or PostgreSQL for a ``postgresql://`` URL)
  that several reviewers in separate processes write to at once without losing a verdict.

Its parts: :class:`~qe_nb.store.connection.StoreConnection` (opening, transactions, errors,
closing), :class:`~qe_nb.store.assessments.AssessmentLog` (the assessments); the verdicts and
presence are here.
"""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from qe_nb.data.files import atomic_write
from qe_nb.store import csv_import
from qe_nb.store.assessments import AssessmentLog
from qe_nb.store.connection import now_utc
from qe_nb.store.schema import PRESENCE_TABLE, VERDICTS_TABLE
from qe_nb.store.values import (
    VERDICT_LOG_COLUMNS,
    check_number,
    check_text,
    check_verdict,
    verdict_frame,
)

__all__ = ["ReviewStore"]


class ReviewStore(AssessmentLog):
    """Reviewers' verdicts in a database: an append-only log, safe with many writers at once.

    Parameters
    ----------
    path_or_url : str or path-like, default "qe-nb.db"
        A SQLite file (created when missing) or ``postgresql://user:password@host:port/db``.
    timeout : float, default 30.0
        Seconds to wait for another writer's lock (SQLite), or for a connection and at most for
        any one statement (PostgreSQL).

    Attributes
    ----------
    url : str
        The database, for display (password masked).
    backend : {"sqlite", "postgresql"}

    Raises
    ------
    InputError
        For a malformed URL or one of another database.
    StoreError
        When the database cannot be opened or created, or its schema is newer than this qe_nb.

    Notes
    -----
    A verdict is never changed or deleted: recording another verdict for a case appends a row,
    and :meth:`current` is the latest row per case (by id). Every write is one transaction, so
    a process killed mid-write loses at most the verdict it was writing.

    Examples
    --------
    >>> import tempfile, os
    >>> with ReviewStore(os.path.join(tempfile.mkdtemp(), "reviews.db")) as store:
    ...     _ = store.record("case-01", "reject", reviewer="ana", note="missed the rim")
    ...     _ = store.record("case-01", "needs correction", reviewer="ben")
    ...     store.current()[["case", "verdict", "reviewer"]].values.tolist()
    [['case-01', 'needs correction', 'ben']]
    >>> len(store.history("case-01"))
    2
    """

    def __init__(self, path_or_url: str | os.PathLike = "qe-nb.db", *, timeout: float = 30.0) -> None:
        super().__init__(path_or_url, timeout=timeout)

    # ------------------------------------------------------------------ verdicts

    def record(self, case: str, verdict: str, *, reviewer: str, note: str = "",
               alpha: float | None = None, model: str | None = None,
               scores_file: str | os.PathLike | None = None, seconds: float | None = None) -> dict[str, Any]:
        """Append ``reviewer``'s verdict on ``case`` to the log; return the stored row.

        Parameters
        ----------
        case : str
            The case id (stored verbatim).
        verdict : {"accept", "needs correction", "reject"}
        reviewer : str
            Who decided; must not be empty.
        note : str, default ""
        alpha, model, scores_file : optional
            The similarity α, the model and the scores file the verdict was made under.
        seconds : float, optional
            Time spent on the case (>= 0).

        Returns
        -------
        dict
            The row with its ``id`` and ``recorded_at`` (tz-aware UTC datetime).

        Raises
        ------
        InputError
            For an unknown verdict, an empty reviewer or case, a value of the wrong type.
        StoreError
            When the database cannot be written.
        """
        values = {
            "case": check_text(case, "case", empty=False),
            "verdict": check_verdict(verdict),
            "note": check_text(note, "note"),
            "reviewer": check_text(reviewer, "reviewer", empty=False),
            "recorded_at": now_utc(),
            "alpha": check_number(alpha, "alpha"),
            "model": check_text(model, "model", optional=True),
            "scores_file": check_text(scores_file, "scores_file", optional=True),
            "seconds": check_number(seconds, "seconds", minimum=0.0),
        }
        with self._write(f"record the verdict on case {case!r}") as conn:
            row = conn.execute(VERDICTS_TABLE.insert().values(**values).returning(*VERDICTS_TABLE.c)).one()
        return dict(row._mapping)

    def history(self, case: str | None = None) -> pd.DataFrame:
        """Every verdict (of ``case``, or of all cases), oldest first.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`~qe_nb.store.values.VERDICT_LOG_COLUMNS`; ``recorded_at`` is UTC.
        """
        query = select(VERDICTS_TABLE).order_by(VERDICTS_TABLE.c.id)
        if case is not None:
            query = query.where(VERDICTS_TABLE.c.case == check_text(case, "case"))
        with self._read("read the verdicts") as conn:
            return verdict_frame(row._mapping for row in conn.execute(query))

    def current(self) -> pd.DataFrame:
        """The latest verdict per case (largest id), one row per case, in the order they were made."""
        table = VERDICTS_TABLE
        latest = select(func.max(table.c.id)).group_by(table.c.case)
        query = select(table).where(table.c.id.in_(latest)).order_by(table.c.id)
        with self._read("read the verdicts") as conn:
            return verdict_frame(row._mapping for row in conn.execute(query))

    def import_csv(self, path: str | os.PathLike) -> int:
        """Add the verdicts of an old ``*.verdicts.csv`` file (or of :meth:`export_csv`); return how many.

        Rows without a ``reviewer`` column get reviewer ``"imported"``. A row already in the log
        (same case, verdict, note, reviewer and time) is skipped, so importing a file twice adds
        nothing the second time.

        Raises
        ------
        InputError
            When the file is missing or is not a verdict file; the message names the row.
        """
        rows = csv_import.read_verdict_csv(path)
        table = VERDICTS_TABLE
        key = (table.c.case, table.c.verdict, table.c.note, table.c.reviewer, table.c.recorded_at)
        reviewers = sorted({row["reviewer"] for row in rows})
        with self._write(f"import the verdicts of {os.fspath(path)!r}") as conn:
            seen = {tuple(r) for r in conn.execute(select(*key).where(table.c.reviewer.in_(reviewers)))}
            new = []
            for row in rows:
                ident = tuple(row[c.name] for c in key)
                if ident not in seen:
                    seen.add(ident)
                    new.append(row)
            if new:
                conn.execute(table.insert(), new)
        return len(new)

    def export_csv(self, path: str | os.PathLike) -> Path:
        """Write the whole history as CSV (columns of :meth:`history`, ISO 8601 times) atomically.

        The file appears complete or not at all. A symlink stays a symlink (its target is
        replaced) and an existing file keeps its permissions. Returns ``path``.
        """
        frame = self.history()
        frame["recorded_at"] = [t.isoformat() for t in frame["recorded_at"]]
        path = Path(os.fspath(path))
        target = Path(os.path.realpath(path))
        mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else None
        with atomic_write(target, "w", newline="") as fh:
            frame[list(VERDICT_LOG_COLUMNS)].to_csv(fh, index=False)
            if mode is not None:
                os.chmod(fh.name, mode)
        return path

    # ------------------------------------------------------------------ presence

    def mark_opened(self, case: str, *, reviewer: str) -> None:
        """Note that ``reviewer`` opened ``case`` now (see :meth:`opened_by_others`)."""
        values = {"case": check_text(case, "case", empty=False),
                  "reviewer": check_text(reviewer, "reviewer", empty=False), "opened_at": now_utc()}
        statement = self._insert(PRESENCE_TABLE).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["case", "reviewer"], set_={"opened_at": statement.excluded.opened_at})
        with self._write(f"mark case {case!r} as opened") as conn:
            conn.execute(statement)

    def opened_by_others(self, *, reviewer: str, minutes: float = 5.0) -> dict[str, tuple[str, pd.Timestamp]]:
        """Cases another reviewer opened in the last ``minutes``: case -> (reviewer, when, UTC).

        When several others opened a case, the latest opening is given.
        """
        reviewer = check_text(reviewer, "reviewer", empty=False)
        minutes = check_number(minutes, "minutes", minimum=0.0)
        table = PRESENCE_TABLE
        since = now_utc() - timedelta(minutes=0.0 if minutes is None else minutes)
        query = (select(table.c.case, table.c.reviewer, table.c.opened_at)
                 .where(table.c.reviewer != reviewer, table.c.opened_at >= since)
                 .order_by(table.c.opened_at))
        with self._read("read who opened which case") as conn:
            rows = conn.execute(query).all()
        return {case: (who, pd.Timestamp(when)) for case, who, when in rows}

"""The review store: an append-only verdict log, reviewer presence and ``qe-nb watch``'s assessments.

- :class:`ReviewStore` -- one database (a SQLite file, or PostgreSQL for a ``postgresql://`` URL)
  that several reviewers in separate processes write to at once without losing a verdict.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from qe_nb.data.files import atomic_write
from qe_nb.store import csv_import
from qe_nb.store.engine import WRITE, open_engine
from qe_nb.store.errors import StoreError
from qe_nb.store.schema import (
    ASSESSMENTS_TABLE,
    PRESENCE_TABLE,
    VERDICTS_TABLE,
    check_version,
    ensure_schema,
)
from qe_nb.store.values import (
    VERDICT_LOG_COLUMNS,
    assessment_frame,
    check_number,
    check_text,
    check_verdict,
    result_json,
    verdict_frame,
)

__all__ = ["ReviewStore"]


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0]}" if lines else type(orig).__name__


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ReviewStore:
    """Reviewers' verdicts in a database: an append-only log, safe with many writers at once.

    Parameters
    ----------
    path_or_url : str or path-like, default "qe-nb.db"
        A SQLite file (created when missing) or ``postgresql://user:password@host:port/db``.
    timeout : float, default 30.0
        Seconds to wait for another writer's lock (SQLite) or for a connection (PostgreSQL).

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
        self._engine, self.url, self.backend = open_engine(path_or_url, timeout=timeout)
        try:
            with self._read("open the database") as conn:
                current = check_version(conn, self.url)
            if not current:
                with self._guard("create or migrate the tables"):
                    ensure_schema(self._begin_write, self.url, postgres=self.backend == "postgresql")
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"ReviewStore({self.url!r})"

    # ------------------------------------------------------------------ connections

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"review database {self.url!r}: could not {what} ({_reason(exc)}).") from exc

    @contextlib.contextmanager
    def _begin_write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        with self._guard(what), self._begin_write() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        with self._guard(what), self._engine.connect() as conn:
            yield conn

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(table)

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
            "recorded_at": _now(),
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
        """Write the whole history as CSV (columns of :meth:`history`, ISO 8601 times) atomically."""
        frame = self.history()
        frame["recorded_at"] = [t.isoformat() for t in frame["recorded_at"]]
        path = Path(os.fspath(path))
        with atomic_write(path, "w", newline="") as fh:
            frame[list(VERDICT_LOG_COLUMNS)].to_csv(fh, index=False)
        return path

    # ------------------------------------------------------------------ presence

    def mark_opened(self, case: str, *, reviewer: str) -> None:
        """Note that ``reviewer`` opened ``case`` now (see :meth:`opened_by_others`)."""
        values = {"case": check_text(case, "case", empty=False),
                  "reviewer": check_text(reviewer, "reviewer", empty=False), "opened_at": _now()}
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
        since = _now() - timedelta(minutes=0.0 if minutes is None else minutes)
        query = (select(table.c.case, table.c.reviewer, table.c.opened_at)
                 .where(table.c.reviewer != reviewer, table.c.opened_at >= since)
                 .order_by(table.c.opened_at))
        with self._read("read who opened which case") as conn:
            rows = conn.execute(query).all()
        return {case: (who, pd.Timestamp(when)) for case, who, when in rows}

    # ------------------------------------------------------------------ assessments

    def record_assessment(self, case: str, *, model_hash: str, risk: float | None, alarms: int | None,
                          reasons: str, error: str, result: Mapping[str, Any] | None = None,
                          source: str = "") -> bool:
        """Store ``qe-nb watch``'s assessment of ``case`` under a model; False when it exists already.

        The pair (case, model_hash) is unique in the database, so of two watchers assessing the
        same case at once exactly one writes it and the other gets False.

        Parameters
        ----------
        case, model_hash : str
        risk : float or None
        alarms : int or None
        reasons, error : str
            Why the case was flagged; why it could not be assessed ("" when it was).
        result : mapping, optional
            Anything else, stored as JSON (numpy values become numbers and lists).
        source : str, default ""
            Where the case came from (a folder, a DICOM study).

        Returns
        -------
        bool
            True when the row was written.
        """
        values = {
            "case": check_text(case, "case", empty=False),
            "model_hash": check_text(model_hash, "model_hash", empty=False),
            "assessed_at": _now(),
            "risk": check_number(risk, "risk"),
            "alarms": check_number(alarms, "alarms", integer=True),
            "reasons": check_text(reasons, "reasons"),
            "error": check_text(error, "error"),
            "source": check_text(source, "source"),
            "result": result_json(result),
        }
        statement = self._insert(ASSESSMENTS_TABLE).values(**values).on_conflict_do_nothing(
            index_elements=["case", "model_hash"])
        with self._write(f"record the assessment of case {case!r}") as conn:
            return conn.execute(statement).rowcount == 1

    def assessed_cases(self, model_hash: str | None = None) -> set[str]:
        """The cases assessed (under ``model_hash``, or under any model)."""
        query = select(ASSESSMENTS_TABLE.c.case).distinct()
        if model_hash is not None:
            query = query.where(ASSESSMENTS_TABLE.c.model_hash == check_text(model_hash, "model_hash"))
        with self._read("read the assessments") as conn:
            return set(conn.execute(query).scalars())

    def assessments(self, model_hash: str | None = None) -> pd.DataFrame:
        """The assessments (under ``model_hash``, or all), oldest first.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`~qe_nb.store.values.ASSESSMENT_COLUMNS`: ``assessed_at`` UTC, ``risk``
            float (NaN for None), ``alarms`` nullable Int64, ``result`` a dict or None.
        """
        query = select(ASSESSMENTS_TABLE).order_by(ASSESSMENTS_TABLE.c.id)
        if model_hash is not None:
            query = query.where(ASSESSMENTS_TABLE.c.model_hash == check_text(model_hash, "model_hash"))
        with self._read("read the assessments") as conn:
            return assessment_frame(row._mapping for row in conn.execute(query))

    # ------------------------------------------------------------------ upkeep

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` ("ok" for a sound file); "ok" once PostgreSQL answers."""
        with self._read("check the database's integrity") as conn:
            if self.backend != "sqlite":
                conn.execute(text("SELECT 1"))
                return "ok"
            return "\n".join(str(row[0]) for row in conn.exec_driver_sql("PRAGMA integrity_check"))

    def close(self) -> None:
        """Close the store's connections (it can be used again: a new connection opens when needed)."""
        self._engine.dispose()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

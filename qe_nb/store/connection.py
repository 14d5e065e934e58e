"""The review store's connection: opening the database, transactions, error messages, closing.

- :class:`StoreConnection` -- the base of :class:`~qe_nb.store.review.ReviewStore`: an engine on
  a SQLite file or a PostgreSQL database whose schema is current, write transactions (``BEGIN
  IMMEDIATE`` on SQLite), and every database error turned into a :class:`StoreError` naming the
  database and what was being done;
- :func:`now_utc` -- the time stamps the store writes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from qe_nb.store.engine import WRITE, open_engine
from qe_nb.store.errors import StoreError
from qe_nb.store.schema import check_version, ensure_schema

__all__ = ["StoreConnection", "now_utc"]

_Store = TypeVar("_Store", bound="StoreConnection")


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0]}" if lines else type(orig).__name__


def now_utc() -> datetime:
    """Now, tz-aware UTC."""
    return datetime.now(timezone.utc)


class StoreConnection:
    """An open review database (see :class:`~qe_nb.store.review.ReviewStore` for the parameters)."""

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
        return f"{type(self).__name__}({self.url!r})"

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

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

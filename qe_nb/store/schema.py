"""The review database's tables, its schema version and the migrations between versions.

- :data:`SCHEMA_VERSION` -- the version this qe_nb writes and reads;
- :data:`METADATA` and the tables :data:`VERDICTS_TABLE`, :data:`ASSESSMENTS_TABLE`,
  :data:`PRESENCE_TABLE`, :data:`VERSION_TABLE`;
- :data:`MIGRATIONS` -- version -> the step that brings a database from the version before to it;
- :func:`ensure_schema` -- create a new database or migrate an older one; refuse a newer one.

Every table name starts with ``qe_nb_`` so the store can share a PostgreSQL database with others.
The version table holds one row per applied migration; the database's version is the largest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator

from qe_nb.store.errors import StoreError

__all__ = [
    "SCHEMA_VERSION",
    "UTCDateTime",
    "METADATA",
    "VERSION_TABLE",
    "VERDICTS_TABLE",
    "ASSESSMENTS_TABLE",
    "PRESENCE_TABLE",
    "MIGRATIONS",
    "schema_version",
    "ensure_schema",
    "check_version",
]

SCHEMA_VERSION: int = 1
"""The schema version this qe_nb creates, migrates to and reads."""

# any constant: serialises concurrent schema set-ups on PostgreSQL (pg_advisory_xact_lock)
_PG_LOCK_KEY = 0x51E_4E5_17


class UTCDateTime(TypeDecorator):
    """A time stamp stored in UTC and read back tz-aware (UTC) on SQLite and PostgreSQL alike.

    PostgreSQL keeps it as ``timestamp with time zone``; SQLite as SQLAlchemy's ISO text of the
    naive UTC time, which sorts and compares in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """A tz-aware datetime to UTC (naive UTC on SQLite); a naive one is refused."""
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"expected a tz-aware datetime; got {value!r}")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """The stored time as a tz-aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


METADATA = MetaData()

VERSION_TABLE = Table(
    "qe_nb_schema",
    METADATA,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

VERDICTS_TABLE = Table(
    "qe_nb_verdicts",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case", Text, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("reviewer", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("alpha", Float, nullable=True),
    Column("model", Text, nullable=True),
    Column("scores_file", Text, nullable=True),
    Column("seconds", Float, nullable=True),
    Index("ix_qe_nb_verdicts_case", "case"),
)

ASSESSMENTS_TABLE = Table(
    "qe_nb_assessments",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case", Text, nullable=False),
    Column("model_hash", Text, nullable=False),
    Column("assessed_at", UTCDateTime, nullable=False),
    Column("risk", Float, nullable=True),
    Column("alarms", Integer, nullable=True),
    Column("reasons", Text, nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("result", Text, nullable=True),  # JSON
    UniqueConstraint("case", "model_hash", name="uq_qe_nb_assessments_case_model"),
)

PRESENCE_TABLE = Table(
    "qe_nb_presence",
    METADATA,
    Column("case", Text, primary_key=True),
    Column("reviewer", Text, primary_key=True),
    Column("opened_at", UTCDateTime, nullable=False),
)


APPEND_ONLY_MESSAGE = "qe_nb_verdicts is append-only: a verdict is never changed or deleted"


def _append_only(conn: Connection) -> None:
    """Triggers that make the database itself refuse an UPDATE or DELETE of a recorded verdict."""
    if conn.dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS qe_nb_verdicts_no_{operation.lower()} BEFORE {operation} "
                f"ON qe_nb_verdicts BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION qe_nb_verdicts_append_only() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS qe_nb_verdicts_append_only ON qe_nb_verdicts")
        conn.exec_driver_sql(
            "CREATE TRIGGER qe_nb_verdicts_append_only BEFORE UPDATE OR DELETE ON qe_nb_verdicts "
            "FOR EACH ROW EXECUTE PROCEDURE qe_nb_verdicts_append_only()"
        )


def _create_version_1(conn: Connection) -> None:
    for table in (VERDICTS_TABLE, ASSESSMENTS_TABLE, PRESENCE_TABLE):
        table.create(conn, checkfirst=True)
    _append_only(conn)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _create_version_1}
"""version -> the step that brings a database of version ``version - 1`` (0: empty) to it."""


def schema_version(conn: Connection) -> int | None:
    """The database's schema version, or None when it has no version table (a new database)."""
    if not inspect(conn).has_table(VERSION_TABLE.name):
        return None
    found = conn.execute(select(func.max(VERSION_TABLE.c.version))).scalar()
    return None if found is None else int(found)


def _refuse_newer(version: int | None, url: str) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"review database {url!r} has schema version {version}, newer than the version "
            f"{SCHEMA_VERSION} this qe_nb knows; upgrade qe_nb to open it (nothing was changed)."
        )


def ensure_schema(connect: Callable[[], Any], url: str, *, postgres: bool) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; return the version it had (0 for a new one).

    Parameters
    ----------
    connect : callable
        Returns a context manager yielding a :class:`sqlalchemy.Connection` inside a write
        transaction (``BEGIN IMMEDIATE`` on SQLite) that commits when the block ends.
    url : str
        For messages.
    postgres : bool
        Take a transaction-level advisory lock first, so that processes opening a new
        PostgreSQL database at the same time create the tables once.

    Raises
    ------
    StoreError
        When the database's version is newer than :data:`SCHEMA_VERSION`.
    """
    with connect() as conn:
        if postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        version = schema_version(conn)
        _refuse_newer(version, url)
        start = version or 0
        if start == SCHEMA_VERSION:
            return start
        VERSION_TABLE.create(conn, checkfirst=True)
        for target in range(start + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[target](conn)
            conn.execute(VERSION_TABLE.insert().values(version=target, applied_at=datetime.now(timezone.utc)))
        return start


def check_version(conn: Connection, url: str) -> bool:
    """True when the database is at :data:`SCHEMA_VERSION` (read only); StoreError when newer."""
    version = schema_version(conn)
    _refuse_newer(version, url)
    return version == SCHEMA_VERSION

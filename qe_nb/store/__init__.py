"""The review store: verdicts and assessments in SQLite or PostgreSQL (issue 17).

- :class:`ReviewStore` -- the append-only verdict log, reviewer presence and ``qe-nb watch``'s
  assessments in one database (:mod:`qe_nb.store.review`);
- :class:`StoreError` -- a database that cannot be opened or written, or whose schema is newer;
- :data:`VERDICT_LOG_COLUMNS`, :data:`ASSESSMENT_COLUMNS` -- the columns of its DataFrames;
- :data:`SCHEMA_VERSION` -- the database schema version this qe_nb writes.

Layout: :mod:`~qe_nb.store.review` (verdicts, presence) built on
:mod:`~qe_nb.store.assessments` (watch's assessments) and :mod:`~qe_nb.store.connection`
(opening, transactions, errors); :mod:`~qe_nb.store.engine` (path or URL to a configured engine:
SQLite pragmas, pg8000), :mod:`~qe_nb.store.schema` (tables, version, migrations, append-only
triggers), :mod:`~qe_nb.store.values` (argument checks, DataFrames),
:mod:`~qe_nb.store.csv_import` (old verdict CSV files).
"""

from __future__ import annotations

from qe_nb.store.errors import StoreError
from qe_nb.store.review import ReviewStore
from qe_nb.store.schema import SCHEMA_VERSION
from qe_nb.store.values import ASSESSMENT_COLUMNS, VERDICT_LOG_COLUMNS

__all__ = ["ReviewStore", "StoreError", "VERDICT_LOG_COLUMNS", "ASSESSMENT_COLUMNS", "SCHEMA_VERSION"]

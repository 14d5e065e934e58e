"""``qe-nb watch``'s assessments in the review database.

- :class:`AssessmentLog` -- one row per (case, model): :meth:`~AssessmentLog.record_assessment`
  writes it unless it exists (a UNIQUE constraint decides, so two watchers never assess a case
  twice), :meth:`~AssessmentLog.assessed_cases` and :meth:`~AssessmentLog.assessments` read them.
  :class:`~qe_nb.store.review.ReviewStore` has these methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from sqlalchemy import select

from qe_nb.store.connection import StoreConnection, now_utc
from qe_nb.store.schema import ASSESSMENTS_TABLE
from qe_nb.store.values import assessment_frame, check_number, check_text, result_json

__all__ = ["AssessmentLog"]


class AssessmentLog(StoreConnection):
    """The assessments part of :class:`~qe_nb.store.review.ReviewStore`."""

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
            "assessed_at": now_utc(),
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

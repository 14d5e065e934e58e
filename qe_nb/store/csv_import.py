"""Reading verdict CSV files for :meth:`qe_nb.store.review.ReviewStore.import_csv`.

- :func:`read_verdict_csv` -- the rows of an old ``*.verdicts.csv`` file (``case, verdict, note,
  recorded_at``, one row per case, as the single-user triage app wrote them) or of a file written
  by :meth:`~qe_nb.store.review.ReviewStore.export_csv` (which adds reviewer, α, model, scores file
  and seconds), checked and ready to insert.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from qe_nb.exceptions import InputError
from qe_nb.store.values import check_number, check_text, check_verdict

__all__ = ["OLD_COLUMNS", "IMPORTED_REVIEWER", "read_verdict_csv"]

OLD_COLUMNS: tuple[str, ...] = ("case", "verdict", "note", "recorded_at")
"""The columns every verdict CSV file has."""

IMPORTED_REVIEWER = "imported"
"""The reviewer of rows from a file without a ``reviewer`` column."""

_OPTIONAL_TEXT = ("model", "scores_file")
_OPTIONAL_NUMBERS = ("alpha", "seconds")


def _time(value: str) -> datetime:
    if not value.strip():
        raise ValueError("empty time stamp")
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise ValueError("empty time stamp")
    stamp = stamp.tz_localize(timezone.utc) if stamp.tzinfo is None else stamp.tz_convert(timezone.utc)
    return stamp.to_pydatetime()


def _row(raw: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    row = {
        "case": check_text(raw["case"], "case", empty=False),
        "verdict": check_verdict(raw["verdict"]),
        "note": check_text(raw["note"], "note"),
        "recorded_at": _time(raw["recorded_at"]),
        "reviewer": check_text(raw["reviewer"], "reviewer", empty=False) if "reviewer" in columns
        else IMPORTED_REVIEWER,
    }
    for name in _OPTIONAL_TEXT:
        row[name] = raw[name] or None if name in columns else None
    for name in _OPTIONAL_NUMBERS:
        row[name] = check_number(float(raw[name]), name) if name in columns and raw[name] else None
    return row


def read_verdict_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The verdict rows of a CSV file, in the file's order, with ``recorded_at`` as UTC datetimes.

    Parameters
    ----------
    path : str or path-like
        An old ``*.verdicts.csv`` or a file of :meth:`ReviewStore.export_csv`; an empty file has
        no rows. A time stamp without a zone is taken as UTC.

    Returns
    -------
    list of dict
        Keys ``case, verdict, note, recorded_at, reviewer, alpha, model, scores_file, seconds``.

    Raises
    ------
    InputError
        When the file is missing, is not UTF-8 CSV, lacks a column, or a row holds an unknown
        verdict, an empty case or reviewer, or a time stamp that cannot be read; the message
        names the file and the row.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.verdicts.csv")
    >>> _ = open(path, "w").write("case,verdict,note,recorded_at\\n"
    ...                           "c1,reject,<b>rim</b>,2026-01-02T03:04:05+00:00\\n")
    >>> [(r["case"], r["note"], r["reviewer"], r["recorded_at"].isoformat()) for r in read_verdict_csv(path)]
    [('c1', '<b>rim</b>', 'imported', '2026-01-02T03:04:05+00:00')]
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise InputError(f"verdict file {str(path)!r} does not exist or is not a file.")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            raws = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"verdict file {str(path)!r} could not be read as UTF-8 CSV ({exc}).") from exc
    if not columns:
        return []
    missing = [c for c in OLD_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"verdict file {str(path)!r} lacks the column(s) {missing}; got columns {columns}, "
            f"expected at least {list(OLD_COLUMNS)}."
        )
    rows = []
    for i, raw in enumerate(raws):
        if None in raw or any(raw[c] is None for c in columns):
            raise InputError(f"verdict file {str(path)!r}, row {i + 1}: expected {len(columns)} fields.")
        try:
            rows.append(_row(raw, columns))
        except (InputError, ValueError) as exc:
            raise InputError(
                f"verdict file {str(path)!r}, row {i + 1} (case {raw.get('case')!r}): {exc}"
            ) from exc
    return rows

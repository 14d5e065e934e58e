"""Checking what goes into the review store and shaping what comes out as DataFrames.

- :data:`VERDICT_LOG_COLUMNS`, :data:`ASSESSMENT_COLUMNS` -- the columns of the frames;
- :func:`check_text`, :func:`check_verdict`, :func:`check_number` -- argument checks that raise
  :class:`qe_nb.exceptions.InputError` naming the argument;
- :func:`verdict_frame`, :func:`assessment_frame` -- rows to typed DataFrames;
- :func:`result_json` -- an assessment's result mapping as JSON text.

Strings are stored exactly as given (any Unicode, HTML included; escaping is the UI's job).
Two kinds of string no database stores are refused with a clear message instead: a NUL
character (PostgreSQL's ``text`` cannot hold one) and unpaired surrogates (not UTF-8).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from qe_nb.core.verdicts import check_verdict
from qe_nb.exceptions import InputError

__all__ = [
    "VERDICT_LOG_COLUMNS",
    "ASSESSMENT_COLUMNS",
    "check_text",
    "check_verdict",
    "check_number",
    "verdict_frame",
    "assessment_frame",
    "result_json",
]

VERDICT_LOG_COLUMNS: tuple[str, ...] = (
    "id", "case", "verdict", "note", "reviewer", "recorded_at", "alpha", "model", "scores_file", "seconds",
)
"""The columns of :meth:`ReviewStore.current` and :meth:`ReviewStore.history`."""

ASSESSMENT_COLUMNS: tuple[str, ...] = (
    "id", "case", "model_hash", "assessed_at", "risk", "alarms", "reasons", "error", "source", "result",
)
"""The columns of :meth:`ReviewStore.assessments`."""


def check_text(value: Any, name: str, *, empty: bool = True, optional: bool = False) -> str | None:
    """``value`` as a str to store verbatim; InputError for a non-str, NUL or broken Unicode.

    Examples
    --------
    >>> check_text("<b>Ödem</b>", "note")
    '<b>Ödem</b>'
    >>> check_text("  ", "reviewer", empty=False)
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `reviewer` must be a non-empty str; got '  '.
    """
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike) and optional:
        value = os.fspath(value)
    if not isinstance(value, str):
        kind = "str or None" if optional else "str"
        raise InputError(f"`{name}` must be a {kind}; got {type(value).__name__} {value!r}.")
    if not empty and not value.strip():
        raise InputError(f"`{name}` must be a non-empty str; got {value!r}.")
    if "\x00" in value:
        raise InputError(f"`{name}` holds a NUL character, which a database cannot store; got {value!r}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"`{name}` is not valid Unicode ({exc.reason}); got {value!r}.") from exc
    return value


def check_number(value: Any, name: str, *, minimum: float | None = None, integer: bool = False) -> Any:
    """A finite float (or int with ``integer=True``) or None; NaN becomes None; InputError otherwise."""
    if value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an int" if integer else "a number"
        raise InputError(f"`{name}` must be {what} or None; got {type(value).__name__} {value!r}.")
    if integer:
        value = int(value)
    else:
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise InputError(f"`{name}` must be finite; got {value!r}.")
    if minimum is not None and value < minimum:
        raise InputError(f"`{name}` must be >= {minimum}; got {value!r}.")
    return value


def _typed(frame: pd.DataFrame, times: str, floats: Sequence[str], ints: Sequence[str],
           nullable_ints: Sequence[str] = ()) -> pd.DataFrame:
    frame[times] = pd.to_datetime(frame[times], utc=True).astype("datetime64[us, UTC]")
    for column in floats:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ints:
        frame[column] = frame[column].astype("int64")
    for column in nullable_ints:
        frame[column] = frame[column].astype("Int64")
    return frame


def verdict_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Verdict rows as a DataFrame of :data:`VERDICT_LOG_COLUMNS` (``recorded_at`` UTC)."""
    records = [[row[c] for c in VERDICT_LOG_COLUMNS] for row in rows]
    frame = pd.DataFrame.from_records(records, columns=list(VERDICT_LOG_COLUMNS)).astype(object)
    return _typed(frame, "recorded_at", ("alpha", "seconds"), ("id",))


def assessment_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Assessment rows as a DataFrame of :data:`ASSESSMENT_COLUMNS` (``result`` parsed to dicts)."""
    records = []
    for row in rows:
        record = [row[c] for c in ASSESSMENT_COLUMNS]
        record[-1] = None if row["result"] is None else json.loads(row["result"])
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=list(ASSESSMENT_COLUMNS)).astype(object)
    return _typed(frame, "assessed_at", ("risk",), ("id",), ("alarms",))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON serialisable")


def result_json(result: Mapping[str, Any] | None) -> str | None:
    """``result`` as JSON text (numpy scalars and arrays become numbers and lists); None stays None."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise InputError(f"`result` must be a mapping or None; got {type(result).__name__} {result!r}.")
    try:
        return json.dumps(dict(result), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InputError(f"`result` cannot be stored as JSON: {exc}.") from exc

"""Reviewers' verdicts as data: the verdict vocabulary shared by the review store and the apps.

- :data:`VERDICTS` -- the verdicts a reviewer can record;
- :data:`POSITIVE_VERDICTS` -- the verdicts that say the segmentation failed;
- :func:`verdict_frame` -- the current verdict per case, from a review store or a table;
- :func:`check_positive` -- a valid set of "failed" verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from qe_nb.exceptions import InputError

__all__ = ["VERDICTS", "POSITIVE_VERDICTS", "check_verdict", "verdict_frame", "check_positive"]

VERDICTS: tuple[str, ...] = ("accept", "needs correction", "reject")
"""The verdicts a reviewer can record, in the order of the app's buttons."""

POSITIVE_VERDICTS: tuple[str, ...] = ("reject", "needs correction")
"""The verdicts that count as a failed segmentation (the positives a risk should rank first)."""


def check_verdict(verdict: Any, name: str = "verdict") -> str:
    """``verdict`` when it is one of :data:`VERDICTS`, else InputError naming ``name``.

    Examples
    --------
    >>> check_verdict("reject")
    'reject'
    """
    if not isinstance(verdict, str) or verdict not in VERDICTS:
        raise InputError(f"Unknown `{name}` {verdict!r}; expected one of {list(VERDICTS)}.")
    return verdict


def check_positive(positive: str | Sequence[str], *, name: str = "positive") -> tuple[str, ...]:
    """Return the "failed" verdicts as a tuple of distinct verdicts, leaving at least one out.

    Raises
    ------
    InputError
        For an empty set, a value outside :data:`VERDICTS`, or every verdict (then no case
        could be a negative).

    Examples
    --------
    >>> check_positive("reject")
    ('reject',)
    >>> check_positive(["accept", "accept"])
    ('accept',)
    """
    values = [positive] if isinstance(positive, str) else positive
    try:
        values = list(values)
    except TypeError:
        raise InputError(f"`{name}` must be a verdict or a sequence of verdicts; got {positive!r}.") from None
    unknown = [v for v in values if not isinstance(v, str) or v not in VERDICTS]
    if unknown:
        raise InputError(f"`{name}` holds unknown verdict(s) {unknown!r}; expected some of {list(VERDICTS)}.")
    out = tuple(dict.fromkeys(values))
    if not out or len(out) == len(VERDICTS):
        raise InputError(
            f"`{name}` must name at least one and not every verdict of {list(VERDICTS)}; got {list(out)}."
        )
    return out


def verdict_frame(verdicts: object) -> pd.DataFrame:
    """The current verdict of every reviewed case, from a review store or a table.

    Parameters
    ----------
    verdicts : ReviewStore-like or pandas.DataFrame
        Anything with a ``current()`` method returning a DataFrame (a
        :class:`qe_nb.ReviewStore`: the latest verdict per case), or such a DataFrame itself
        (e.g. an old ``*.verdicts.csv`` read with :func:`pandas.read_csv`). It needs the
        columns ``case`` and ``verdict``; other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        Columns ``case`` and ``verdict`` (both str), one row per case, in the input's order.

    Raises
    ------
    InputError
        For another type, a missing column, a missing case id, a verdict outside
        :data:`VERDICTS` or a case listed twice (a history rather than the current verdicts;
        pass ``store.current()``); the message names the case.

    Examples
    --------
    >>> frame = pd.DataFrame({"case": ["a", "b"], "verdict": ["reject", "accept"], "note": ["", ""]})
    >>> verdict_frame(frame).values.tolist()
    [['a', 'reject'], ['b', 'accept']]
    """
    current = getattr(verdicts, "current", None)
    if not isinstance(verdicts, pd.DataFrame) and callable(current):
        source = f"{type(verdicts).__name__}.current()"
        frame = current()
    else:
        source, frame = "`verdicts`", verdicts
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            "`verdicts` must be a review store (with a current() method) or a DataFrame with the columns "
            f"'case' and 'verdict'; got {type(frame).__name__} from {source}."
        )
    missing = [c for c in ("case", "verdict") if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source} lacks the column(s) {missing}; got columns {list(map(str, frame.columns))}, "
            "expected at least 'case' and 'verdict'."
        )
    cases, labels = frame["case"].tolist(), frame["verdict"].tolist()
    for i, (case, verdict) in enumerate(zip(cases, labels, strict=True)):
        if case is None or (isinstance(case, float) and case != case) or str(case) == "":
            raise InputError(f"{source}, row {i + 1}: the case id is missing (verdict {verdict!r}).")
        if not isinstance(verdict, str) or verdict not in VERDICTS:
            raise InputError(
                f"{source}, row {i + 1} (case {str(case)!r}): unknown verdict {verdict!r}; "
                f"expected one of {list(VERDICTS)}."
            )
    out = pd.DataFrame({"case": [str(c) for c in cases], "verdict": labels}, dtype=object)
    duplicated = out["case"][out["case"].duplicated()].unique().tolist()
    if duplicated:
        raise InputError(
            f"{source} lists case(s) {duplicated[:5]} more than once; expected the current verdict, one row "
            "per case (pass store.current(), not the history)."
        )
    return out.reset_index(drop=True)

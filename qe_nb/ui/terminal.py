"""Tables for the terminal: what ``qe-nb`` prints, fitted to a width (100 columns by default).

No science happens here: the tables come from :func:`qe_nb.sweep_table` and
:func:`qe_nb.worklist`; this module only lays them out. ``qe-nb sweep`` shows the alarm-count
histogram in bins (0, 1, 2, 3-4, 5-8, ...) unless asked for every column (``--wide``);
``qe-nb worklist`` cuts the reasons column to what fits.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["TERMINAL_WIDTH", "format_table", "compact_sweep", "fit_reasons"]

TERMINAL_WIDTH = 100
"""The width the terminal tables fit by default (``--wide``: no limit)."""

_COUNT_COLUMN = re.compile(r"^(\d+)a$")


def format_table(df: pd.DataFrame, float_format: str = "{:.2f}") -> str:
    """``df`` as plain text, without the index, floats with ``float_format``, NaN as "NA"."""
    with pd.option_context("display.width", 10_000, "display.max_columns", 1_000,
                           "display.max_colwidth", 10_000):
        return df.to_string(index=False, float_format=lambda v: float_format.format(v), na_rep="NA")


def _bins(counts: list[int]) -> list[tuple[int, int]]:
    """0, 1, 2, then doubling bins 3-4, 5-8, 9-16, ... up to the largest count."""
    top = max(counts)
    bins: list[tuple[int, int]] = [(k, k) for k in (0, 1, 2) if k <= top]
    lo = 3
    while lo <= top:
        hi = min(top, 2 * (lo - 1))
        bins.append((lo, hi))
        lo = hi + 1
    return bins


def compact_sweep(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table with its histogram columns (``0a``, ``1a``, ...) summed into bins.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`qe_nb.sweep_table`'s result.

    Returns
    -------
    pandas.DataFrame
        The same rows; ``alpha``, ``entropy`` and ``r:*`` as they are, then the number of
        cases with 0, 1, 2, 3-4, 5-8, ... alarms (columns ``0a``, ``1a``, ``2a``, ``3-4a``, ...).
        A table with at most 8 count columns is returned unchanged.

    Examples
    --------
    >>> t = pd.DataFrame({"alpha": [0.0], "entropy": [1.0], **{f"{k}a": [1] for k in range(10)}})
    >>> list(compact_sweep(t).columns)
    ['alpha', 'entropy', '0a', '1a', '2a', '3-4a', '5-8a', '9a']
    >>> compact_sweep(t)["5-8a"].tolist()
    [4]
    """
    counts = {int(m.group(1)): c for c in table.columns if (m := _COUNT_COLUMN.match(str(c)))}
    if len(counts) <= 8:
        return table
    out = table[[c for c in table.columns if c not in counts.values()]].copy()
    for lo, hi in _bins(sorted(counts)):
        cols = [counts[k] for k in range(lo, hi + 1) if k in counts]
        out[f"{lo}a" if lo == hi else f"{lo}-{hi}a"] = table[cols].sum(axis=1)
    return out


_MORE = re.compile(r"^\+(\d+) more$")


def _cut(text: str, room: int) -> str:
    """``text`` in ``room`` characters: whole reasons ("; "-separated) dropped from the end into
    the "+N more" count first; only a first reason too long for the room is cut with "…"."""
    if len(text) <= room:
        return text
    parts = text.split("; ")
    more = 0
    if parts and (m := _MORE.match(parts[-1])):
        more = int(m.group(1))
        parts = parts[:-1]
    while len(parts) > 1:
        more += 1
        parts = parts[:-1]
        candidate = "; ".join(parts + [f"+{more} more"])
        if len(candidate) <= room:
            return candidate
    tail = f"; +{more} more" if more else ""
    head = parts[0] if parts else ""
    if len(head) + len(tail) <= room:
        return head + tail
    return head[: max(1, room - len(tail) - 1)].rstrip() + "…" + tail


def fit_reasons(table: pd.DataFrame, width: int = TERMINAL_WIDTH, *, column: str = "reasons") -> pd.DataFrame:
    """Cut ``table[column]`` so that :func:`format_table` of the table fits ``width`` columns.

    Whole reasons are dropped from the end into the "+N more" count (:func:`qe_nb.worklist`'s
    ``max_reasons`` form); a single reason too long is cut with "…". The full text stays in the
    CSV (``--csv``). The other columns are not changed. At least 20 characters are kept.

    Examples
    --------
    >>> t = pd.DataFrame({"case": ["a"], "reasons": ["x" * 300]})
    >>> max(len(line) for line in format_table(fit_reasons(t, 60)).splitlines()) <= 60
    True
    >>> _cut("a: Dice 0.1 < 0.8; b: hd95 9 > 2; +3 more", 30)
    'a: Dice 0.1 < 0.8; +4 more'
    """
    if column not in table or table.empty:
        return table
    others = table.drop(columns=[column])
    rest = max((len(line) for line in format_table(others).splitlines()), default=0) if len(others.columns) else 0
    room = max(20, width - rest - 2)
    out = table.copy()
    out[column] = [_cut(s, room) for s in out[column].fillna("").astype(str)]
    # to_string right-aligns text columns; left-align the reasons so that cut lines read well
    out[column] = out[column].str.ljust(int(np.max(out[column].str.len())))
    return out

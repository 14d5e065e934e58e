"""What the ``qe-nb`` commands share: the one-line error, number lists, printing and tables."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["POOLS", "POOL_HELP", "PAPER_ALPHAS", "CommandError", "float_list", "say", "write_csv", "format_table",
           "negative_values"]

POOLS = ("algorithm", "all")
POOL_HELP = ("thresholds per member, as in the paper (algorithm, the default), or one per label and "
             "metric over all members (all), for cohorts whose member identity is not stable: crowd "
             "workers, readers in arbitrary order")

PAPER_ALPHAS = (-3.0, -2.0, -1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0)


class CommandError(Exception):
    """A failure the command reports in one line (exit status 2)."""


def float_list(text: str) -> list[float]:
    """``"-1,0,0.5"`` -> ``[-1.0, 0.0, 0.5]``, for argparse."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def say(text: str = "") -> None:
    """Print a line at once (flushed), for the commands' output."""
    print(text, flush=True)


def write_csv(path: str | os.PathLike, table: Any) -> None:
    """Write a DataFrame to CSV atomically (a crash never leaves a half-written file)."""
    from qe_nb.data.images import atomic_write

    with atomic_write(path, mode="w", newline="") as fh:
        table.to_csv(fh, index=False)


def format_table(df: Any, float_format: str = "{:.2f}") -> str:
    """A DataFrame as a plain-text table for the terminal."""
    from qe_nb.ui.terminal import format_table

    return format_table(df, float_format)


def negative_values(argv: list[str]) -> list[str]:
    """``--alphas -1,0,1`` as ``--alphas=-1,0,1``: argparse takes a value that starts with "-"
    and is not a plain negative number for an option ("expected one argument")."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if argv[i] in ("--alphas", "--alpha") and value[:1] == "-" and (value[1:2].isdigit() or value[1:2] == "."):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out



"""Progress reporting for long work: a tqdm bar that renders in terminals and notebooks."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def progress_bar(*, total: int, desc: str, initial: int = 0, disable: bool = False):
    """A tqdm bar (``tqdm.auto``: a widget in Jupyter, text in a terminal)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="case", disable=disable, leave=True)
    try:
        yield bar
    finally:
        bar.close()

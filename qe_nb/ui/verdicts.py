"""Where the triage app keeps verdicts: a review database (:class:`qe_nb.ReviewStore`), and the
verdict CSV files of earlier versions.

- :func:`default_database_path`, :func:`open_review_store` -- the app's database: given, or
  ``SCORES.reviews.db`` beside the scores, with an old ``SCORES.verdicts.csv`` imported once;
- legacy (qe_nb before the review store; kept to read and import old files):
  :func:`default_verdicts_path`, :func:`read_verdicts`, :func:`write_verdicts`,
  :func:`record_verdict` -- one row per case in a CSV file, written atomically
  (:func:`qe_nb.data.images.atomic_write`); :class:`VerdictStore` -- that table bound to its
  file. Several app sessions at once lose each other's rows in a CSV file: the app no longer
  writes one.
"""

from __future__ import annotations

import os
import shutil
import warnings
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from qe_nb.core.verdicts import VERDICTS, check_verdict
from qe_nb.exceptions import InputError

if TYPE_CHECKING:
    from qe_nb.store.review import ReviewStore

__all__ = [
    "VERDICTS",
    "VERDICT_COLUMNS",
    "default_database_path",
    "open_review_store",
    "verdicts_for_report",
    "default_verdicts_path",
    "read_verdicts",
    "write_verdicts",
    "record_verdict",
    "VerdictStore",
]


VERDICT_COLUMNS: tuple[str, ...] = ("case", "verdict", "note", "recorded_at")
"""The columns of the verdict CSV file (one row per case)."""

# ------------------------------------------------------------------------------- the database


def default_database_path(scores_path: str | os.PathLike) -> Path:
    """The review database beside a scores file: ``scores.nc`` -> ``scores.reviews.db``.

    Examples
    --------
    >>> default_database_path("/data/run1/scores.nc").as_posix()
    '/data/run1/scores.reviews.db'
    """
    path = Path(os.fspath(scores_path))
    return path.with_name(f"{path.stem}.reviews.db")


def open_review_store(
    verdicts: ReviewStore | str | os.PathLike | None,
    *,
    scores_path: str | os.PathLike | None = None,
    import_csv: str | os.PathLike | None = None,
) -> tuple[ReviewStore, int]:
    """The triage app's review database, with old CSV verdicts imported; and how many were imported.

    Parameters
    ----------
    verdicts : ReviewStore or str or path-like, optional
        A store; a SQLite file (``.db``) or URL (``sqlite:///...``, ``postgresql://...``); or
        None: ``SCORES.reviews.db`` beside ``scores_path`` (:func:`default_database_path`), or,
        without a scores file, a database in a new temporary folder (kept for this session only).
        A ``.csv`` path (how earlier versions took the verdict file) is imported into the default
        database instead, with a :class:`DeprecationWarning`.
    scores_path : str or path-like, optional
        The scores file the verdicts are about.
    import_csv : str or path-like, optional
        An old verdict CSV to import; default ``SCORES.verdicts.csv`` beside the scores when it
        exists. Importing is idempotent (:meth:`qe_nb.ReviewStore.import_csv`): the same rows are
        never added twice, so this runs at every start.

    Raises
    ------
    InputError
        For a malformed URL, or a CSV file that is not a verdict file.
    StoreError
        When the database cannot be opened or created.
    """
    import tempfile

    from qe_nb.store.review import ReviewStore

    if isinstance(verdicts, (str, os.PathLike)) and os.fspath(verdicts).lower().endswith(".csv"):
        warnings.warn(
            f"verdicts are kept in a review database now; the CSV file {os.fspath(verdicts)!r} is "
            "imported into it (give `verdicts=` a .db file or a URL, or `import_csv=` the CSV)",
            DeprecationWarning, stacklevel=3)
        import_csv, csv_home = verdicts, Path(os.fspath(verdicts))
        verdicts = default_database_path(scores_path if scores_path is not None else csv_home)
    if isinstance(verdicts, ReviewStore):
        store = verdicts
    elif verdicts is not None:
        store = ReviewStore(verdicts)
    elif scores_path is not None:
        store = ReviewStore(default_database_path(scores_path))
    else:  # a database for this session only, removed when the store goes
        folder = Path(tempfile.mkdtemp(prefix="qe_nb-reviews-"))
        store = ReviewStore(folder / "reviews.db")
        weakref.finalize(store, shutil.rmtree, folder, True)
    if import_csv is None and scores_path is not None:
        beside = default_verdicts_path(scores_path)
        import_csv = beside if beside.is_file() else None
    imported = store.import_csv(import_csv) if import_csv is not None else 0
    return store, imported


def verdicts_for_report(
    verdicts: ReviewStore | str | os.PathLike | None,
    scores_path: str | os.PathLike | None,
) -> tuple[pd.DataFrame | None, str]:
    """The current verdict per case for a report, and where they come from (for display).

    ``verdicts``: a :class:`qe_nb.ReviewStore`, a database file or URL, or an old ``.csv`` file;
    None looks beside the scores file for ``SCORES.reviews.db``, then ``SCORES.verdicts.csv``.
    Returns ``(None, "")`` when there are none. The table has the columns ``case``, ``verdict``,
    ``reviewer``, ``recorded_at`` (text, UTC) and ``note``, one row per case.

    Raises
    ------
    InputError, StoreError
        For a verdict file or database that cannot be read.
    """
    from qe_nb.store.review import ReviewStore

    if verdicts is None and scores_path is not None:
        for candidate in (default_database_path(scores_path), default_verdicts_path(scores_path)):
            if candidate.is_file():
                verdicts = candidate
                break
    if verdicts is None:
        return None, ""
    if isinstance(verdicts, (str, os.PathLike)) and os.fspath(verdicts).lower().endswith(".csv"):
        path = Path(os.fspath(verdicts))
        return (read_verdicts(path), str(path)) if path.is_file() else (None, "")
    if isinstance(verdicts, (str, os.PathLike)) and "://" not in os.fspath(verdicts) \
            and not Path(os.fspath(verdicts)).exists():
        return None, ""  # a report does not create a database
    store = verdicts if isinstance(verdicts, ReviewStore) else ReviewStore(verdicts)
    try:
        current = store.current()
    finally:
        if store is not verdicts:
            store.close()
    table = pd.DataFrame({
        "case": current["case"].astype(str), "verdict": current["verdict"].astype(str),
        "reviewer": current["reviewer"].astype(str),
        "recorded_at": [t.strftime("%Y-%m-%d %H:%M UTC") for t in current["recorded_at"]],
        "note": current["note"].fillna("").astype(str)})
    return table, store.url

# ------------------------------------------------------------------------------- legacy CSV files

def default_verdicts_path(scores_path: str | os.PathLike) -> Path:
    """The verdict file beside a scores file: ``scores.nc`` -> ``scores.verdicts.csv``.

    Examples
    --------
    >>> default_verdicts_path("/data/run1/scores.nc").as_posix()
    '/data/run1/scores.verdicts.csv'
    """
    path = Path(os.fspath(scores_path))
    return path.with_name(f"{path.stem}.verdicts.csv")


def _empty_verdicts() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in VERDICT_COLUMNS})


def read_verdicts(path: str | os.PathLike) -> pd.DataFrame:
    """Read a verdict CSV file; a missing file is an empty table.

    Parameters
    ----------
    path : str or path-like
        The CSV file written by :func:`write_verdicts`.

    Returns
    -------
    pandas.DataFrame
        Columns ``case``, ``verdict``, ``note``, ``recorded_at`` (all str), one row per case,
        in the file's order.

    Raises
    ------
    InputError
        When the file cannot be parsed as CSV, lacks a column, holds a verdict outside
        :data:`VERDICTS` or a case twice; the message names the file and the row.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.verdicts.csv")
    >>> len(read_verdicts(path))
    0
    >>> _ = write_verdicts(path, record_verdict(read_verdicts(path), "case-007", "reject",
    ...                                         note="missed the enhancing rim"))
    >>> read_verdicts(path)[["case", "verdict", "note"]].values.tolist()
    [['case-007', 'reject', 'missed the enhancing rim']]
    """
    path = Path(os.fspath(path))
    if not path.exists():
        return _empty_verdicts()
    if not path.is_file():
        raise InputError(f"verdict file {str(path)!r} is not a file; expected a CSV file path.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return _empty_verdicts()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"verdict file {str(path)!r} could not be read as CSV ({first}); fix or remove it "
            f"(expected the columns {list(VERDICT_COLUMNS)})."
        ) from exc
    missing = [c for c in VERDICT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"verdict file {str(path)!r} lacks the column(s) {missing}; got columns "
            f"{list(map(str, frame.columns))}, expected {list(VERDICT_COLUMNS)}."
        )
    frame = frame[list(VERDICT_COLUMNS)].reset_index(drop=True)
    for i, verdict in enumerate(frame["verdict"]):
        if verdict not in VERDICTS:
            raise InputError(
                f"verdict file {str(path)!r}, row {i + 1} (case {frame['case'][i]!r}): unknown "
                f"verdict {verdict!r}; expected one of {list(VERDICTS)}."
            )
    duplicated = frame["case"][frame["case"].duplicated()].tolist()
    if duplicated:
        raise InputError(
            f"verdict file {str(path)!r} lists case(s) {duplicated[:5]} more than once; expected "
            "one row per case."
        )
    return frame


def write_verdicts(path: str | os.PathLike, verdicts: pd.DataFrame) -> Path:
    """Write the verdict table to CSV atomically (complete or not at all); return the path.

    Raises
    ------
    InputError
        When ``verdicts`` lacks a column of :data:`VERDICT_COLUMNS` or holds an unknown
        verdict, or the folder does not exist.
    """
    from qe_nb.data.images import atomic_write

    if not isinstance(verdicts, pd.DataFrame) or any(c not in verdicts for c in VERDICT_COLUMNS):
        got = list(verdicts.columns) if isinstance(verdicts, pd.DataFrame) else type(verdicts).__name__
        raise InputError(
            f"`verdicts` must be a DataFrame with the columns {list(VERDICT_COLUMNS)}; got {got}."
        )
    for verdict in verdicts["verdict"]:
        check_verdict(verdict)
    path = Path(os.fspath(path))
    with atomic_write(path, "w", newline="") as fh:
        verdicts[list(VERDICT_COLUMNS)].to_csv(fh, index=False)
    return path


def record_verdict(
    verdicts: pd.DataFrame,
    case: str,
    verdict: str,
    *,
    note: str = "",
    recorded_at: str | None = None,
) -> pd.DataFrame:
    """A new verdict table with ``case``'s verdict set (replacing an earlier one).

    Parameters
    ----------
    verdicts : pandas.DataFrame
        The table (:func:`read_verdicts`); not modified.
    case : str
        The case id.
    verdict : {"accept", "needs correction", "reject"}
        The verdict.
    note : str, default ""
        Free text.
    recorded_at : str, optional
        ISO 8601 time stamp; default now (UTC, seconds).

    Returns
    -------
    pandas.DataFrame
        The table with the case's row last.

    Raises
    ------
    InputError
        For an unknown verdict, a case that is not a non-empty str or a note that is not a str.

    Examples
    --------
    >>> table = record_verdict(read_verdicts("/nonexistent.csv"), "a", "accept", recorded_at="t0")
    >>> table = record_verdict(table, "b", "reject", recorded_at="t1")
    >>> record_verdict(table, "a", "needs correction", note="edema", recorded_at="t2").values.tolist()
    [['b', 'reject', '', 't1'], ['a', 'needs correction', 'edema', 't2']]
    >>> record_verdict(table, "a", "maybe")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: Unknown `verdict` 'maybe'; expected one of ['accept', 'needs correction', 'reject'].
    """
    verdict = check_verdict(verdict)
    if not isinstance(case, str) or not case:
        raise InputError(f"`case` must be a non-empty str (a case id); got {case!r}.")
    if not isinstance(note, str):
        raise InputError(f"`note` must be a str; got {type(note).__name__} {note!r}.")
    if recorded_at is None:
        recorded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    kept = verdicts[verdicts["case"] != case][list(VERDICT_COLUMNS)]
    row = pd.DataFrame([[case, verdict, note, recorded_at]], columns=list(VERDICT_COLUMNS), dtype=object)
    return pd.concat([kept, row], ignore_index=True) if len(kept) else row


class VerdictStore:
    """The verdict table bound to its CSV file: every change is written at once (legacy: the
    triage app keeps verdicts in a :class:`qe_nb.ReviewStore`; see :func:`open_review_store`).

    Parameters
    ----------
    path : str or path-like, optional
        The CSV file; read when it exists. ``None`` keeps the verdicts in memory only.

    Attributes
    ----------
    path : pathlib.Path or None
    verdicts : pandas.DataFrame
        See :func:`read_verdicts`.

    Raises
    ------
    InputError
        When the file exists but is not a verdict file (see :func:`read_verdicts`).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "v.csv")
    >>> VerdictStore(path).record("case-001", "needs correction", note="edema too large")
    >>> VerdictStore(path).get("case-001")["note"]
    'edema too large'
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(os.fspath(path))
        self.verdicts = read_verdicts(self.path) if self.path is not None else _empty_verdicts()

    def record(self, case: str, verdict: str, *, note: str = "") -> None:
        """Set ``case``'s verdict and write the file atomically (see :func:`record_verdict`)."""
        table = record_verdict(self.verdicts, case, verdict, note=note)
        if self.path is not None:
            write_verdicts(self.path, table)
        self.verdicts = table

    def get(self, case: str) -> dict[str, str] | None:
        """The row of ``case`` as a dict, or None when it has no verdict yet."""
        rows = self.verdicts[self.verdicts["case"] == case]
        return None if rows.empty else {k: str(v) for k, v in rows.iloc[-1].items()}

    def as_dict(self) -> dict[str, str]:
        """case -> verdict."""
        return dict(zip(self.verdicts["case"], self.verdicts["verdict"]))

    def __len__(self) -> int:
        return len(self.verdicts)

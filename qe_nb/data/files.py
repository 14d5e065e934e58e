"""Atomic file output and file-name suffixes.

Every writer here is atomic: the data go to a hidden temporary file in the target folder,
which then replaces the target in one ``os.replace``. A crash leaves either the old file or
the new one, never half a file. Used for images (:func:`qe_nb.data.images.write_image`),
score cubes, worklists and verdict logs alike.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from qe_nb.exceptions import InputError

__all__ = [
    "PathLike",
    "image_suffix",
    "is_utf8",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
]

_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")

PathLike = str | os.PathLike
"""A file path: a string or any ``os.PathLike``."""


def image_suffix(path: PathLike, *, ascii_only: bool = False) -> str:
    """The file-name ending that selects a format: ``'.nii.gz'``, ``'.csv'``, ``''``.

    A compression suffix (``.gz``, ``.bz2``, ``.xz``, ``.zst``) includes the suffix before it.

    Examples
    --------
    >>> image_suffix("a/b.nii.gz"), image_suffix("scores.nc"), image_suffix("README")
    ('.nii.gz', '.nc', '')
    """
    name = Path(os.fsdecode(os.fspath(path))).name
    suffixes = Path(name).suffixes
    if not suffixes:
        return ""
    suffix = suffixes[-1]
    if suffix.lower() in _COMPRESSION_SUFFIXES and len(suffixes) > 1:
        suffix = suffixes[-2] + suffix
    if ascii_only and not suffix.isascii():
        return ""
    return suffix


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` atomically.

    For writers that want a file name (SimpleITK, ``Dataset.to_netcdf``). The temporary
    file is hidden (its name starts with ``.``), keeps the target's suffix so format-by-
    extension writers pick the right format, and has an ASCII name. If the block raises,
    the temporary file is removed and the target is left untouched.

    Raises
    ------
    InputError
        When the target folder does not exist or ``path`` is a directory.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("done")
    >>> open(target).read()
    'done'
    """
    target = os.path.abspath(os.fsdecode(os.fspath(path)))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise InputError(
            f"cannot write {target!r}: the folder {folder!r} does not exist; create it first."
        )
    if os.path.isdir(target):
        raise InputError(f"cannot write {target!r}: it is a directory; expected a file path.")
    tmp = os.path.join(
        folder, f".qe_nb-tmp-{uuid.uuid4().hex[:12]}{image_suffix(target, ascii_only=True)}"
    )
    # Created with the default mode (0o666 & ~umask) rather than mkstemp's 0o600, so the
    # final file gets the permissions any ordinary new file would.
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(
    path: PathLike, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a file for writing so that it appears at ``path`` complete or not at all.

    Parameters
    ----------
    path : str or path-like
        The final file.
    mode : {"w", "wb", "wt"}, default "w"
        Text or binary.
    encoding : str or None, default "utf-8"
        Text encoding (ignored in binary mode).
    newline : str or None
        As for :func:`open` (``""`` for the csv module).

    Yields
    ------
    file object
        Write to it; it is flushed, fsynced and moved over ``path`` when the block ends.

    Raises
    ------
    InputError
        For a mode that is not a write mode, or a missing folder.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "worklist.csv")
    >>> with atomic_write(target, newline="") as f:
    ...     _ = f.write("case,risk\\n")
    >>> open(target).read()
    'case,risk\\n'
    """
    if mode not in {"w", "wb", "wt"}:
        raise InputError(f"`mode` must be one of ['w', 'wb', 'wt']; got {mode!r}.")
    binary = "b" in mode
    with atomic_path(path) as tmp:
        if binary:
            f = open(tmp, "wb")
        else:
            f = open(tmp, "w", encoding=encoding, newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> atomic_write_bytes(target, b"\\x00\\x01")
    >>> open(target, "rb").read()
    b'\\x00\\x01'
    """
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`).

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> atomic_write_text(target, "hello")
    >>> open(target).read()
    'hello'
    """
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)


def is_utf8(path: str) -> bool:
    """Whether ``path`` is valid UTF-8 (SimpleITK aborts the process on a name that is not)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: The file a built or generated data set ends with: what it was made from, written last.
DATASET_MARKER = ".qe_nb-dataset.json"


def build_folder_once(dest: Path, expected: dict[str, Any], make: Callable[[Path], Any], *,
                      what: str = "data set") -> Path:
    """Build the folder ``dest`` with ``make(folder)`` unless a complete build of ``expected`` is there.

    The build happens in a temporary folder beside ``dest`` and is moved into place only when
    complete, with a marker (:data:`DATASET_MARKER`, the JSON of ``expected``) written last; a
    folder whose marker matches is reused as it is, one whose marker differs (other parameters,
    another builder version) or is unreadable is built again. An interrupted build never leaves
    a half-made ``dest``: its temporary folder is removed.

    Parameters
    ----------
    dest : Path
        The folder to make; its parent is created when missing.
    expected : dict
        What the build is made from (JSON-serialisable); compared with the marker of ``dest``.
    make : callable
        ``make(folder)`` writes the data set into ``folder`` (which does not exist yet).
    what : str, optional
        How to call the folder in the log line when it is rebuilt.

    Returns
    -------
    Path
        ``dest``.
    """
    import json
    import logging
    import shutil
    import tempfile

    marker = dest / DATASET_MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == expected:
                return dest
        except (OSError, ValueError):
            pass  # an unreadable marker: build again below
        logging.getLogger("qe_nb").info("qe_nb: rebuilding %s %s: what it is made from changed", what, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        target = work / dest.name
        make(target)
        target.mkdir(parents=True, exist_ok=True)
        (target / DATASET_MARKER).write_text(json.dumps(expected, indent=1), encoding="utf-8")
        if dest.exists():
            # a partial or outdated build: moved aside first so the swap is two renames
            os.replace(dest, work / "outdated")
        os.replace(target, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest

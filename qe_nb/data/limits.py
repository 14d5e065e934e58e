"""The resource limits of reading images: the largest image read, regular files only.

A file's header can declare any size: a 4 kB ``.nii.gz`` may promise 3 x 10^9 voxels, and a
few megabytes of gzip may inflate to gigabytes. :func:`max_voxels` is the largest image
:func:`qe_nb.data.images.read_image` allocates (the environment variable ``QE_NB_MAX_VOXELS``,
default :data:`DEFAULT_MAX_VOXELS`); the readers compare every header with it, and with the
file, before allocating anything, and stop inflating gzip data at the size the header
declares. A file over the limit is refused with :class:`SizeRefused`, which the readers turn
into an :class:`~qe_nb.exceptions.ImageReadError` naming the case, the file, the declared size,
the limit and how to raise it: one case fails, the run goes on.

Named pipes, sockets and devices are refused before they are opened
(:func:`non_regular_file`): reading a FIFO blocks until another program writes to it.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import warnings
from collections.abc import Iterator, Sequence

from qe_nb.exceptions import InputError, QeNbWarning

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MAX_VOXELS_ENV",
    "SPACING_RANGE_MM",
    "TRAILING_SLACK",
    "SizeRefused",
    "check_voxels",
    "max_voxels",
    "non_regular_file",
    "voxel_limit",
    "warn_spacing",
]

DEFAULT_MAX_VOXELS = 1_000_000_000
"""The default largest image read, in voxels (1 GB as uint8, 8 GB as float64).

A 512 x 512 x 1000 CT is 2.6 x 10^8 voxels, a BraTS volume 8.9 x 10^6."""

MAX_VOXELS_ENV = "QE_NB_MAX_VOXELS"
"""The environment variable that sets the largest image read, in voxels."""

TRAILING_SLACK = 1 << 20
"""Bytes a gzip'd NIfTI may inflate to beyond what its header declares (ignored trailing data)."""

SPACING_RANGE_MM = (1e-3, 100.0)
"""Voxel sizes outside this range (in mm) are read, with a warning: likely a broken header."""


class SizeRefused(ValueError):  # noqa: N818 - a refusal, not a bug
    """A file declares (or inflates to) more than the limits allow; the message says why."""


def max_voxels() -> int:
    """The largest image read, in voxels: ``QE_NB_MAX_VOXELS`` if set, else the default.

    Read at every call, so worker processes started with the variable set obey it too.

    Raises
    ------
    InputError
        When the variable is set but is not a positive whole number.

    Examples
    --------
    >>> with voxel_limit(1000):
    ...     max_voxels()
    1000
    """
    text = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VOXELS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise InputError(
            f"the environment variable {MAX_VOXELS_ENV} must be a positive whole number of voxels "
            f"(e.g. 4000000000 or 4e9); got {text[:40]!r}."
        )
    return int(value)


@contextlib.contextmanager
def voxel_limit(voxels: int) -> Iterator[None]:
    """Set the largest image read (``QE_NB_MAX_VOXELS``) inside a ``with`` block.

    Worker processes started inside the block inherit it; ones already running do not.
    """
    old = os.environ.get(MAX_VOXELS_ENV)
    os.environ[MAX_VOXELS_ENV] = str(int(voxels))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MAX_VOXELS_ENV, None)
        else:
            os.environ[MAX_VOXELS_ENV] = old


def check_voxels(size: Sequence[int], *, what: str = "its header declares") -> None:
    """Refuse an image of ``size`` (any axis order) with more voxels than :func:`max_voxels`.

    Raises
    ------
    SizeRefused
        Naming the size, the limit and how to raise it.

    Examples
    --------
    >>> with voxel_limit(1000):
    ...     check_voxels((20, 10, 10))
    Traceback (most recent call last):
    ...
    qe_nb.data.limits.SizeRefused: its header declares 20 x 10 x 10 = 2000 voxels, more than the limit of 1000 voxels; if the image is real, raise the limit: set the environment variable QE_NB_MAX_VOXELS (e.g. QE_NB_MAX_VOXELS=3000)
    """
    count = math.prod(max(int(s), 0) for s in size)
    limit = max_voxels()
    if count > limit:
        raise SizeRefused(
            f"{what} {' x '.join(str(int(s)) for s in size)} = {count} voxels, more than the limit "
            f"of {limit} voxels; if the image is real, raise the limit: set the environment "
            f"variable {MAX_VOXELS_ENV} (e.g. {MAX_VOXELS_ENV}={_suggest(count)})"
        )


def _suggest(count: int) -> int:
    """A round number of voxels above ``count``."""
    step = 10 ** max(len(str(count)) - 1, 0)
    return (count // step + 1) * step


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO), not a regular file: reading it would wait for another "
                    "program to write to it"),
    (stat.S_ISSOCK, "a socket, not a regular file"),
    (stat.S_ISCHR, "a character device, not a regular file"),
    (stat.S_ISBLK, "a block device, not a regular file"),
    (stat.S_ISDIR, "a directory, not an image file"),
)


def non_regular_file(path: str) -> str | None:
    """Why ``path`` (followed through symbolic links) is not a regular file, or None.

    Only ``stat`` is called: a named pipe is never opened.

    Examples
    --------
    >>> import tempfile
    >>> non_regular_file(tempfile.mkdtemp())
    'it is a directory, not an image file'
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: the caller's open() explains it
    for test, text in _KINDS:
        if test(mode):
            return f"it is {text}"
    return None


def warn_spacing(path: str, spacing: Sequence[float], *, raw: Sequence[float] | None = None) -> None:
    """Warn once (per file) when a voxel size is implausible or was replaced on reading.

    ``spacing``: the voxel sizes read (mm, any axis order); ``raw``: a NIfTI header's
    ``pixdim[1..n]`` in the same order, whose zero, NaN or infinite entries SimpleITK reads
    as 1.0 and whose negative ones as their magnitude (with that axis flipped).
    """
    notes = []
    if raw is not None:
        for k, value in enumerate(raw, start=1):
            if not math.isfinite(value) or value == 0:
                notes.append(f"pixdim[{k}] is {value:g} and is read as 1.0 (as SimpleITK does)")
            elif value < 0:
                notes.append(f"pixdim[{k}] is {value:g} and is read as {-value:g} with that axis "
                             "flipped (as SimpleITK does)")
    low, high = SPACING_RANGE_MM
    odd = [s for s in spacing if not low <= s <= high]
    if odd:
        notes.append(f"voxel size {tuple(round(float(s), 6) for s in spacing)} mm has values outside "
                     f"[{low:g}, {high:g}] mm")
    if notes:
        message = (f"{path!r}: the header's voxel size looks wrong: {'; '.join(notes)}; check the "
                   "file (distances in mm depend on it).")
        if message in _WARNED:
            return  # once per file and process: a file is read again to infer labels
        if len(_WARNED) < 10_000:
            _WARNED.add(message)
        warnings.warn(message, QeNbWarning, stacklevel=3)


_WARNED: set[str] = set()

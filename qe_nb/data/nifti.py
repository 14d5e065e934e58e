"""Guards for the image files SimpleITK reads wrongly: gzip streams, NIfTI sizes, NaN voxels.

SimpleITK reads some broken files without complaint (a truncated ``.nii`` or ``.nii.gz``
comes back padded with zeros, a corrupt gzip stream garbled), turns NaN voxels of float NIfTI
files into 0, and aborts the whole process on a file name that is not valid UTF-8. The
helpers here check what it cannot: :func:`inflate` decompresses a gzip file once, verifying
its checksum, and views an integer NIfTI label map in memory; :func:`nifti_expected_size`
gives the size a NIfTI header promises; :func:`nifti_float_nans` finds NaN voxels to put
back. Package-internal: :func:`qe_nb.data.images.read_image` is their one caller.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import shutil
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import SimpleITK as sitk

from qe_nb.data.files import image_suffix, is_utf8
from qe_nb.data.limits import TRAILING_SLACK, SizeRefused, check_voxels, max_voxels

__all__ = [
    "SITK_LOCK",
    "GZIP_MAGIC",
    "Inflated",
    "check_declared",
    "inflate",
    "is_nifti",
    "nifti_declared",
    "nifti_expected_size",
    "nifti_pixdim",
    "nifti_float_nans",
    "sitk_message",
    "sitk_readable",
]

GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of a gzip file."""
_CHUNK = 1 << 20

try:  # zlib-ng inflates 3x faster than the standard library's zlib, with the same checks
    from zlib_ng import zlib_ng as _inflate
except ImportError:  # pragma: no cover - zlib-ng is a dependency; keep working without it
    _inflate = zlib

_NIFTI_FLOATS = {16: np.float32, 64: np.float64}
"""NIfTI datatype codes whose voxels can be NaN."""


def sitk_message(error: Exception) -> str:
    """The first useful line of SimpleITK's multi-line C++ error text."""
    lines = []
    for raw in str(error).splitlines():
        line = raw.strip()
        if not line or line.startswith("Exception thrown in SimpleITK"):
            continue
        if line.endswith(":") and (".cxx" in line or ".h:" in line):
            continue  # a C++ source location
        for marker in ("sitk::ERROR:", "ITK ERROR:"):
            if marker in line:
                line = line.split(marker, 1)[1].strip()
                # drop "NrrdImageIO(0x55...): "
                head, sep, rest = line.partition("): ")
                if sep and "(0x" in head:
                    line = rest.strip()
        line = line.removeprefix("[nrrd]").strip()
        if line:
            lines.append(line)
    if not lines:
        return "SimpleITK gave no reason"
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        # "Read: Error reading x.nrrd:" says nothing; the deepest cause is on the last line
        first = lines[-1]
    return first.rstrip(".:")

def _ram_folder() -> str:
    """A folder for short-lived decompressed copies: RAM-backed where the system has one."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


def _ram_copy(write: Callable[[IO[bytes]], Any]) -> tuple[str, Any] | None:
    """A short-lived ``.nii`` file in the RAM folder, filled by ``write(file)``.

    Returns its path and what ``write`` returned, or None when there is no room for it (the
    partial file is removed; the caller reads the original instead). ``ValueError`` and
    ``PermissionError`` from ``write`` propagate, also after removing the partial file.
    """
    fd, path = tempfile.mkstemp(prefix="qe_nb-", suffix=".nii", dir=_ram_folder())
    try:
        with os.fdopen(fd, "wb") as out:
            result = write(out)
    except (ValueError, PermissionError):
        os.unlink(path)
        raise
    except OSError:
        os.unlink(path)
        return None
    return path, result


def _cap(head: bytes) -> int:
    """The most bytes a gzip'd image may inflate to, given its first inflated bytes.

    A NIfTI: what its header declares (after checking the voxel limit), plus
    :data:`~qe_nb.data.limits.TRAILING_SLACK`; anything else: what the largest image under the
    voxel limit needs (8 bytes a voxel).
    """
    declared = nifti_declared(head)
    if declared is None:
        return max_voxels() * 8 + TRAILING_SLACK
    size, needed = declared
    check_voxels(size)
    return needed + TRAILING_SLACK


def _too_large(head: bytes, cap: int) -> SizeRefused:
    declared = nifti_declared(head)
    if declared is not None:
        return SizeRefused(
            f"its gzip data inflate to more than the {declared[1]} bytes its NIfTI header "
            f"declares (inflating stopped at {cap} bytes); a file that inflates beyond its "
            "declared size is refused (a 'gzip bomb')"
        )
    return SizeRefused(
        f"its gzip data inflate to more than {cap} bytes, more than an image under the limit of "
        f"{max_voxels()} voxels needs (inflating stopped there); raise the limit with the "
        "environment variable QE_NB_MAX_VOXELS if the image is real"
    )


def check_declared(head: bytes, size: int) -> None:
    """Refuse NIfTI data (``size`` bytes in all) holding less than the header declares.

    Raises
    ------
    SizeRefused
        When the header declares more voxels than the limit, or more bytes than ``size``.
    """
    declared = nifti_declared(head)
    if declared is None:
        return
    check_voxels(declared[0])
    if size < declared[1]:
        raise SizeRefused(
            f"the NIfTI data are truncated: it holds {size} bytes, its header promises {declared[1]}"
        )


def _check_gzip(path: str, out: IO[bytes] | None = None) -> tuple[bytes, int]:
    """Decompress a gzip file fully (verifying its end marker and CRC), optionally into ``out``.

    Inflates at most what the header of the data declares (see :func:`_cap`): never more
    than the limits allow, whatever the stream holds. Returns the first 544 decompressed
    bytes and the decompressed size.

    Raises
    ------
    ValueError
        With a reason, when the stream is truncated or corrupt.
    SizeRefused
        When the data declare, or inflate to, more than the limits allow.
    """
    d = _inflate.decompressobj(wbits=31)
    head = b""
    total = 0
    cap: int | None = None
    with open(path, "rb") as f:
        buf = b""
        while True:
            if not buf:
                buf = f.read(_CHUNK)
                if not buf:
                    break
            room = (cap if cap is not None else 544) - total + 1
            try:
                data = d.decompress(buf, max(room, 1))
            except _inflate.error as exc:
                raise ValueError(f"the gzip data are corrupt ({exc})") from None
            buf = d.unconsumed_tail
            total += len(data)
            if len(head) < 544:
                head += data[: 544 - len(head)]
            if cap is None and (len(head) >= 544 or d.eof):
                cap = _cap(head)
            if cap is not None and total > cap:
                raise _too_large(head, cap)
            if out is not None:
                out.write(data)
            if d.eof:
                # Another member may follow (as gzip and zlib's gzread read them); other
                # trailing bytes are ignored, as gzread ignores them.
                rest = d.unused_data
                if len(rest) < 2:
                    rest += f.read(2 - len(rest))
                if rest[:2] != GZIP_MAGIC:
                    break
                d = _inflate.decompressobj(wbits=31)
                buf = rest
    if not d.eof:
        raise ValueError("the gzip stream is truncated (it ends before its end marker)")
    return head, total


@dataclass(frozen=True)
class _Nifti1:
    """The fields of a single-file NIfTI-1 header that the readers here need."""

    endian: str  # "<" or ">"
    dims: tuple[int, ...]  # dim[0..7]
    datatype: int
    bitpix: int
    vox_offset: float
    slope: float
    inter: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """The (z, y, x) shape of a 3-D image."""
        return (int(self.dims[3]), int(self.dims[2]), int(self.dims[1]))

    @property
    def array_shape(self) -> tuple[int, ...]:
        """The numpy shape of a 2-D ``(y, x)`` or 3-D ``(z, y, x)`` image."""
        n = int(self.dims[0])
        return tuple(int(self.dims[k]) for k in range(n, 0, -1))


def _nifti1_header(head: bytes) -> _Nifti1 | None:
    """The header of a single-file NIfTI-1 (``n+1``) in either byte order, or None."""
    if len(head) < 348 or head[344:348] != b"n+1\x00":
        return None
    for endian in "<>":
        if struct.unpack(endian + "i", head[:4])[0] == 348:
            break
    else:
        return None
    (datatype, bitpix) = struct.unpack(endian + "2h", head[70:74])
    (vox_offset, slope, inter) = struct.unpack(endian + "3f", head[108:120])
    return _Nifti1(endian, struct.unpack(endian + "8h", head[40:56]), datatype, bitpix,
                   vox_offset, slope, inter)


def nifti_float_nans(path: str, head: bytes, *, compressed: bool = False) -> np.ndarray | None:
    """Where a single-file float NIfTI holds NaN voxels, as a (z, y, x) or (y, x) mask; None if none.

    SimpleITK's NIfTI reader turns NaN voxels into 0 without a word, so they are found in
    the raw data instead, and put back into what ``read_image`` returns. ``compressed``: the
    file is gzip'd (read when there was no room for a decompressed copy). None too when the
    file holds fewer voxels than its header says: the caller reports the truncation.
    """
    header = _nifti1_header(head)
    if header is None or header.datatype not in _NIFTI_FLOATS or header.dims[0] not in (2, 3):
        return None
    dtype = np.dtype(_NIFTI_FLOATS[header.datatype]).newbyteorder(header.endian)
    shape = header.array_shape
    offset, count = int(header.vox_offset), math.prod(shape)
    needed = offset + count * dtype.itemsize
    if compressed:
        with gzip.open(path, "rb") as f:
            data = f.read(needed)
        if len(data) < needed:
            return None
        voxels = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    else:
        if os.path.getsize(path) < needed:
            return None
        voxels = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    nans = np.isnan(voxels).reshape(shape)
    return nans if nans.any() else None


def nifti_declared(head: bytes) -> tuple[tuple[int, ...], int] | None:
    """What a single-file NIfTI header declares: its size (file order ``x, y, z, ...``) and
    the bytes the file needs; None if ``head`` is not such a header.

    Examples
    --------
    >>> head = bytearray(348); head[:4] = (348).to_bytes(4, "little"); head[344:] = b"n+1\\x00"
    >>> head[40:48] = bytes([3, 0, 4, 0, 3, 0, 2, 0]); head[72:74] = bytes([8, 0])
    >>> head[108:112] = bytes([0, 0, 176, 67])  # vox_offset 352.0
    >>> nifti_declared(bytes(head))
    ((4, 3, 2), 376)
    """
    if len(head) < 348:
        return None
    header = _nifti1_header(head)
    if header is not None:
        dims, bitpix, vox_offset = header.dims, header.bitpix, header.vox_offset
        if not math.isfinite(vox_offset):
            vox_offset = 0.0
    else:
        for endian in "<>":
            (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
            if sizeof_hdr == 540 and len(head) >= 540 and head[4:8] == b"n+2\x00":
                (bitpix,) = struct.unpack(endian + "h", head[14:16])
                dims = struct.unpack(endian + "8q", head[16:80])
                (vox_offset,) = struct.unpack(endian + "q", head[168:176])
                break
        else:
            return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    size = tuple(max(int(dims[k]), 1) for k in range(1, ndim + 1))
    return size, max(int(vox_offset), 0) + (math.prod(size) * int(bitpix) + 7) // 8


def nifti_expected_size(head: bytes) -> int | None:
    """Bytes a single-file NIfTI needs according to its header, or None if not NIfTI."""
    declared = nifti_declared(head)
    return None if declared is None else declared[1]


def nifti_pixdim(head: bytes) -> tuple[float, ...] | None:
    """``pixdim[1..n]`` of a single-file NIfTI-1 header of ``n`` = 2 or 3 axes, or None."""
    header = _nifti1_header(head)
    if header is None or header.dims[0] not in (2, 3):
        return None
    n = int(header.dims[0])
    return struct.unpack(header.endian + f"{n}f", head[80 : 80 + 4 * n])


_NIFTI_INTEGERS = {
    2: (np.uint8, sitk.sitkUInt8),
    4: (np.int16, sitk.sitkInt16),
    8: (np.int32, sitk.sitkInt32),
    256: (np.int8, sitk.sitkInt8),
    512: (np.uint16, sitk.sitkUInt16),
    768: (np.uint32, sitk.sitkUInt32),
    1024: (np.int64, sitk.sitkInt64),
    1280: (np.uint64, sitk.sitkUInt64),
}
"""NIfTI datatype codes of integer voxels, with the numpy and SimpleITK types they read as."""


def _inflate_whole(path: str) -> bytes | None:
    """The whole decompressed content of a one-member gzip file, in one allocation.

    Verifies the stream (end marker and CRC) as :func:`_check_gzip` does, and inflates no
    more than its header declares (:func:`_cap`; the trailer's size is a hint only, modulo
    2**32). Returns None when the file is not that simple (several members, trailing bytes,
    a size the trailer does not give): the caller then takes the streaming path, which
    explains any problem.

    Raises
    ------
    SizeRefused
        When the data declare, or inflate to, more than the limits allow.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 18:
        return None
    (size,) = struct.unpack("<I", raw[-4:])  # ISIZE: the decompressed size modulo 2**32
    try:
        head = _inflate.decompressobj(wbits=31).decompress(raw, 544)
    except _inflate.error:
        return None
    cap = _cap(head)
    if size < cap:  # the trailer's size as the output limit first: the buffer grows to it, not beyond
        d = _inflate.decompressobj(wbits=31)
        try:
            data = d.decompress(raw, size + 1)
        except _inflate.error:
            return None
        if d.eof:  # the whole stream, within the cap: what the cap as the limit gives too
            return data if not d.unused_data and len(data) == size else None
    d = _inflate.decompressobj(wbits=31)
    try:
        data = d.decompress(raw, cap + 1)
    except _inflate.error:
        return None
    if len(data) > cap:
        raise _too_large(head, cap)
    if not d.eof or d.unused_data or len(data) % (1 << 32) != size:
        return None
    return data


_HEADER_READERS: dict[tuple[str, bytes], sitk.ImageFileReader] = {}
"""SimpleITK readers that read a NIfTI header, by file suffix and header bytes (with extensions)."""
SITK_LOCK = threading.RLock()
"""Held around every SimpleITK read: ITK's NIfTI library keeps global state and is not
thread-safe, and SimpleITK releases the GIL, so files read in threads (one case's candidates,
:func:`qe_nb.data.loading.read_label_maps` with ``threads``) inflate at once but enter
SimpleITK one at a time (unlocked, a full test run once aborted in ``ReadImageInformation``)."""
_HEADER_READERS_MAX = 16


def _header_reader(header: bytes, path: str) -> sitk.ImageFileReader | None:
    """A reader that has read the information of ``path``, whose bytes before the voxels are ``header``.

    ITK's header-only read depends on those bytes alone, so the candidates of a case, which
    usually share one header, are read by SimpleITK once (a few recent headers are kept).
    None when SimpleITK cannot read it.
    """
    key = (image_suffix(path).lower(), bytes(header))
    with SITK_LOCK:
        reader = _HEADER_READERS.get(key)
        if reader is not None:
            return reader
        with sitk_readable(path) as readable:
            reader = sitk.ImageFileReader()
            reader.SetFileName(readable)
            reader.SetImageIO("NiftiImageIO")  # the header says NIfTI-1: skip asking every format
            try:
                reader.ReadImageInformation()
            except RuntimeError:
                return None
        while len(_HEADER_READERS) >= _HEADER_READERS_MAX:
            del _HEADER_READERS[next(iter(_HEADER_READERS))]
        _HEADER_READERS[key] = reader
    return reader


def _nifti_integer_voxels(data: bytes, path: str) -> tuple[np.ndarray, sitk.ImageFileReader] | None:
    """Voxels of a decompressed single-file NIfTI-1 holding unscaled integers, and the reader
    that read its header (its grid).

    The voxels are viewed in ``data`` (read-only); the grid comes from SimpleITK's reading
    of the header alone, and the result is only returned when SimpleITK reports the same
    size and pixel type, so it equals ``sitk.ReadImage`` voxel for voxel. None otherwise.
    """
    header = _nifti1_header(data)
    if header is None or len(data) < 352:
        return None
    dims, vox_offset = header.dims, header.vox_offset
    if dims[0] != 3 or min(dims[1:4]) < 1 or header.datatype not in _NIFTI_INTEGERS:
        return None
    if header.slope not in (0.0, 1.0) or header.inter != 0.0 or vox_offset != int(vox_offset):
        return None
    dtype, pixel_id = _NIFTI_INTEGERS[header.datatype]
    shape = header.shape
    count = shape[0] * shape[1] * shape[2]
    if len(data) < int(vox_offset) + count * np.dtype(dtype).itemsize:
        return None  # truncated: the full path names the problem
    with SITK_LOCK:
        reader = _header_reader(data[: int(vox_offset)], path)
        if reader is None or (
            reader.GetDimension() != 3
            or reader.GetNumberOfComponents() != 1
            or reader.GetPixelID() != pixel_id
            or tuple(reader.GetSize()) != shape[::-1]
        ):
            return None
    voxels = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder(header.endian), count=count,
                           offset=int(vox_offset)).reshape(shape)
    if not voxels.dtype.isnative:
        voxels = voxels.astype(dtype)
    return voxels, reader


@contextlib.contextmanager
def sitk_readable(path: str) -> Iterator[str]:
    """A path SimpleITK can be given safely.

    SimpleITK aborts the whole process when handed a file name that is not valid UTF-8
    (a ``str`` holding surrogate escapes), so such files are read through an ASCII-named
    symbolic link in a temporary folder.
    """
    if is_utf8(path):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="qe_nb-")
    alias = os.path.join(folder, "image" + image_suffix(path, ascii_only=True))
    try:
        os.symlink(os.path.abspath(path), alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)



def is_nifti(head: bytes) -> bool:
    """Whether the first bytes of a file are those of a single-file NIfTI-1 or NIfTI-2."""
    return head[344:348] == b"n+1\x00" or head[4:8] == b"n+2\x00"


@dataclass(frozen=True)
class Inflated:
    """What :func:`inflate` made of a gzip file.

    Attributes
    ----------
    head : bytes
        The first 544 decompressed bytes.
    size : int
        The decompressed size in bytes.
    copy : str or None
        A decompressed copy of a NIfTI file for SimpleITK to read (the caller deletes it), or
        None: SimpleITK reads the gzip file itself (not NIfTI, or no room for a copy).
    label_map : tuple or None
        An integer NIfTI label map viewed in memory: its read-only voxels ``(z, y, x)`` and
        the SimpleITK reader holding its grid; nothing else is left to read.
    """

    head: bytes
    size: int
    copy: str | None = None
    label_map: tuple[np.ndarray, sitk.ImageFileReader] | None = None


def inflate(path: str) -> Inflated:
    """Decompress a gzip file once, verifying its end marker and checksum.

    SimpleITK reads truncated or corrupt gzip files without complaint (padding or garbling
    voxels), so the stream is checked here, and a NIfTI inside is then handed to SimpleITK
    uncompressed (see :class:`Inflated`), so the data are inflated only once. A one-member
    file is inflated in one allocation; a label map in it is viewed right there.

    Raises
    ------
    ValueError
        With the reason, when the stream is truncated or corrupt.
    SizeRefused
        When a NIfTI header inside declares more voxels than the limit, or more data than
        the stream holds, or the stream inflates beyond the declared size (the inflating
        stops there: see :mod:`qe_nb.data.limits`).
    PermissionError
        When the file cannot be read.
    """
    whole = _inflate_whole(path)
    if whole is not None:
        head = whole[:544]
        check_declared(head, len(whole))
        label_map = _nifti_integer_voxels(whole, path)
        if label_map is not None:
            return Inflated(head, len(whole), label_map=label_map)
        # (no room for the copy: SimpleITK inflates the file itself)
        copy = _ram_copy(lambda out: out.write(whole)) if is_nifti(head) else None
        return Inflated(head, len(whole), None if copy is None else copy[0])
    copy = _ram_copy(lambda out: _check_gzip(path, out))
    if copy is None:  # no room for the copy: verify only, and let SimpleITK inflate
        head, size = _check_gzip(path)
        check_declared(head, size)
        return Inflated(head, size)
    raw, (head, size) = copy
    if not is_nifti(head):
        os.unlink(raw)
        return Inflated(head, size)
    try:
        check_declared(head, size)
    except SizeRefused:
        os.unlink(raw)
        raise
    return Inflated(head, size, raw)

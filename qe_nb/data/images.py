"""Reading and writing images with SimpleITK, geometry checks and atomic file output.

Arrays follow the numpy order of SimpleITK arrays: ``(z, y, x)``. A :class:`Geometry` holds
the grid of one image in that same order, so ``geometry.spacing[0]`` is the slice thickness.

Every reading failure becomes an :class:`~qe_nb.exceptions.ImageReadError` whose message
names the case and the role of the file (when given), the file and the problem in words.
SimpleITK reads some broken files without complaint (a truncated ``.nii`` or ``.nii.gz``
comes back padded with zeros), so :func:`read_image` checks gzip streams and NIfTI data
sizes itself before trusting the voxels.

Every writer here is atomic: the data go to a hidden temporary file in the target folder,
which then replaces the target in one ``os.replace``. A crash leaves either the old file or
the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import shutil
import struct
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import SimpleITK as sitk

from qe_nb.exceptions import GeometryError, ImageReadError, InputError

__all__ = [
    "Geometry",
    "read_image",
    "write_image",
    "check_geometry",
    "resample_to",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "image_suffix",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File name endings of the volume formats SimpleITK reads and writes that qe_nb expects."""

_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
_TWO_FILE_SUFFIXES = (".mhd", ".nhdr", ".hdr")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20

try:  # zlib-ng inflates 3x faster than the standard library's zlib, with the same checks
    from zlib_ng import zlib_ng as _inflate
except ImportError:  # pragma: no cover - zlib-ng is a dependency; keep working without it
    _inflate = zlib

_NIFTI_FLOATS = {16: np.float32, 64: np.float64}
"""NIfTI datatype codes whose voxels can be NaN."""

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a 3-D image, in numpy ``(z, y, x)`` order.

    Parameters
    ----------
    shape : tuple of 3 int
        Number of voxels along ``(z, y, x)``.
    spacing : tuple of 3 float
        Voxel size in mm along ``(z, y, x)``.
    origin : tuple of 3 float
        Physical position (mm) of the first voxel, components in ``(z, y, x)`` order
        (SimpleITK's ``GetOrigin()`` reversed).
    direction : tuple of 9 float
        Direction cosines as a row-major 3x3 matrix in ``(z, y, x)`` order: SimpleITK's
        ``GetDirection()`` matrix with both its rows and its columns reversed, so that
        ``point_zyx = origin + direction @ (index_zyx * spacing)``.

    Examples
    --------
    >>> g = Geometry((2, 3, 4), spacing=(3.0, 1.0, 1.0))
    >>> g.spacing
    (3.0, 1.0, 1.0)
    >>> g.direction
    (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    >>> g.as_attrs()["origin"]
    (0.0, 0.0, 0.0)
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        fields = {
            "shape": (self.shape, 3, int),
            "spacing": (self.spacing, 3, float),
            "origin": (self.origin, 3, float),
            "direction": (self.direction, 9, float),
        }
        for name, (value, n, kind) in fields.items():
            try:
                clean = tuple(kind(v) for v in np.asarray(value).ravel())
            except (TypeError, ValueError):
                clean = ()
            if len(clean) != n:
                raise InputError(
                    f"Geometry `{name}` must hold {n} numbers in (z, y, x) order; got {value!r}."
                )
            object.__setattr__(self, name, clean)
        if any(s < 0 for s in self.shape):
            raise InputError(f"Geometry `shape` must be non-negative; got {self.shape}.")
        if not all(np.isfinite(self.spacing)) or any(s <= 0 for s in self.spacing):
            raise InputError(f"Geometry `spacing` must be positive and finite; got {self.spacing}.")

    def as_attrs(self) -> dict[str, tuple[float, ...]]:
        """``spacing``, ``origin`` and ``direction`` as a dict, for a DataArray's attrs."""
        return {"spacing": self.spacing, "origin": self.origin, "direction": self.direction}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], shape: tuple[int, ...]) -> Geometry:
        """Rebuild a geometry from attrs made by :meth:`as_attrs` and a ``(z, y, x)`` shape.

        Missing ``origin`` / ``direction`` default to zero / identity.
        """
        if "spacing" not in attrs:
            raise InputError(
                f"attrs must hold `spacing` (and optionally `origin`, `direction`); got keys "
                f"{sorted(attrs)}."
            )
        kwargs = {k: attrs[k] for k in ("spacing", "origin", "direction") if k in attrs}
        return cls(tuple(shape[-3:]), **kwargs)


def _geometry_of(image: sitk.Image | sitk.ImageFileReader) -> Geometry:
    """The grid of an image, or of a reader that has read an image's information.

    Zeros are unsigned (``+ 0.0``): a reader's header-only read gives ``-0.0`` where
    ``sitk.ReadImage`` gives ``0.0`` for the same file, and grids are printed in messages.
    """
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[::-1, ::-1] + 0.0
    return Geometry(
        shape=tuple(image.GetSize()[::-1]),
        spacing=tuple(image.GetSpacing()[::-1]),
        origin=tuple((np.asarray(image.GetOrigin(), dtype=float)[::-1] + 0.0).tolist()),
        direction=tuple(d.ravel().tolist()),
    )


def _apply_geometry(image: sitk.Image, geometry: Geometry) -> None:
    d = np.asarray(geometry.direction, dtype=float).reshape(3, 3)[::-1, ::-1]
    image.SetSpacing(tuple(geometry.spacing[::-1]))
    image.SetOrigin(tuple(geometry.origin[::-1]))
    image.SetDirection(tuple(d.ravel()))


def _fmt(values: tuple) -> str:
    return str(tuple(round(v, 6) if isinstance(v, float) else v for v in values))


def _first_difference(
    geometry: Geometry, first: Geometry, *, rtol: float, shape_only: bool
) -> str | None:
    """Name the first grid property in which ``geometry`` differs from ``first``."""
    if geometry.shape != first.shape:
        return "shape"
    if shape_only:
        return None
    if not np.allclose(geometry.spacing, first.spacing, rtol=rtol, atol=0.0):
        return "spacing"
    # Origins are compared relative to the voxel size: a shift of 1e-4 voxel is noise.
    if not np.allclose(geometry.origin, first.origin, rtol=0.0, atol=rtol * max(first.spacing)):
        return "origin"
    # Direction cosines lie in [-1, 1], so an absolute tolerance is a relative one.
    if not np.allclose(geometry.direction, first.direction, rtol=0.0, atol=rtol):
        return "direction"
    return None


def _where(case: str | None, role: str | None) -> str:
    parts = []
    if case is not None:
        parts.append(f"case {case!r}")
    if role:
        parts.append(role)
    return ", ".join(parts)


def check_geometry(
    geometries: Mapping[str, Geometry],
    *,
    case: str | None,
    role: str = "algorithm",
    rtol: float = 1e-4,
    shape_only: bool = False,
) -> Geometry:
    """Check that every image of a case lies on the same voxel grid; return that grid.

    Parameters
    ----------
    geometries : mapping of str to Geometry
        Name (an algorithm, a modality) -> the geometry of its image; the first entry is the
        one the others are compared with.
    case : str or None
        The case id, for the message.
    role : str, default "algorithm"
        What the names are, for the message (``"algorithm"``, ``"image"``).
    rtol : float, default 1e-4
        Relative tolerance: on spacing relative to the spacing, on origin relative to the
        largest voxel size, on the direction cosines absolute.
    shape_only : bool, default False
        Compare only the shapes (what ``check_geometry=False`` still needs: voxels of
        different grids sizes cannot be compared at all).

    Returns
    -------
    Geometry
        The first entry's geometry.

    Raises
    ------
    GeometryError
        Naming the case, the image, the property that differs and both values.
    InputError
        When ``geometries`` is empty.

    Examples
    --------
    >>> a = Geometry((2, 3, 4))
    >>> check_geometry({"a": a, "b": a}, case="c1").shape
    (2, 3, 4)
    >>> check_geometry({"a": a, "b": Geometry((2, 3, 4), spacing=(3.0, 1.0, 1.0))}, case="c1")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.GeometryError: case 'c1', algorithm 'b': spacing (3.0, 1.0, 1.0) differs from the first candidate's (1.0, 1.0, 1.0) (algorithm 'a'); resample it, pass `resample=True`, or pass `check_geometry=False` to ignore the difference.
    """
    if not geometries:
        raise InputError(f"case {case!r}: `geometries` is empty; expected at least one image.")
    items = iter(geometries.items())
    first_name, first = next(items)
    for name, geometry in items:
        what = _first_difference(geometry, first, rtol=rtol, shape_only=shape_only)
        if what is None:
            continue
        where = _where(case, f"{role} {name!r}")
        first_label = "first candidate's" if role == "algorithm" else f"first {role}'s"
        raise GeometryError(
            f"{where}: {what} {_fmt(getattr(geometry, what))} differs from the {first_label} "
            f"{_fmt(getattr(first, what))} ({role} {first_name!r}); {_fix_hint(what, role)}"
        )
    return first


def _fix_hint(what: str, role: str) -> str:
    if what == "shape":
        if role != "algorithm":
            return "resample it or pass `resample=True`."
        return (
            "resample it or pass `resample=True` (`check_geometry=False` cannot help: "
            "grids of different sizes cannot be compared voxel by voxel)."
        )
    if role != "algorithm":
        return "resample it or pass `resample=True`."
    return (
        "resample it, pass `resample=True`, or pass `check_geometry=False` to ignore the "
        "difference."
    )


def resample_to(
    image_array: np.ndarray, geometry: Geometry, target_geometry: Geometry, *, default_value: float = 0
) -> np.ndarray:
    """Resample an image onto another grid with nearest-neighbour interpolation (SimpleITK).

    Nearest neighbour keeps label values intact, which is what label maps need.

    Parameters
    ----------
    image_array : ndarray, dims (z, y, x)
        The image on ``geometry``.
    geometry : Geometry
        The grid of ``image_array``.
    target_geometry : Geometry
        The grid to resample onto.
    default_value : float, default 0
        Value of target voxels that fall outside the source image.

    Returns
    -------
    ndarray, shape ``target_geometry.shape``, same dtype as ``image_array``

    Raises
    ------
    GeometryError
        When ``image_array.shape`` is not ``geometry.shape``.

    Examples
    --------
    >>> a = np.zeros((2, 2, 2), np.uint8); a[1, 1, 1] = 4
    >>> fine = Geometry((2, 4, 4), spacing=(1.0, 0.5, 0.5), origin=(0.0, -0.25, -0.25))
    >>> out = resample_to(a, Geometry((2, 2, 2)), fine)
    >>> out.shape, int(out.sum() // 4)
    ((2, 4, 4), 4)
    """
    arr = np.asarray(image_array)
    if arr.shape != tuple(geometry.shape):
        raise GeometryError(
            f"`image_array` has shape {arr.shape} but `geometry.shape` is {geometry.shape}; "
            "they must describe the same image."
        )
    dtype = arr.dtype
    work = arr.astype(np.uint8) if dtype.kind == "b" else arr
    image = sitk.GetImageFromArray(work)
    _apply_geometry(image, geometry)
    reference = sitk.Image([int(s) for s in target_geometry.shape[::-1]], image.GetPixelID())
    _apply_geometry(reference, target_geometry)
    out = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, float(default_value)
    )
    return sitk.GetArrayFromImage(out).astype(dtype, copy=False)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _sitk_message(error: Exception) -> str:
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
    """A short-lived ``.nii`` file in :func:`_ram_folder`, filled by ``write(file)``.

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


def _check_gzip(path: str, out: IO[bytes] | None = None) -> tuple[bytes, int]:
    """Decompress a gzip file fully (verifying its end marker and CRC), optionally into ``out``.

    Returns the first 544 decompressed bytes and the decompressed size. Raises
    ``ValueError`` with a reason when the stream is truncated or corrupt.
    """
    d = _inflate.decompressobj(wbits=31)
    head = b""
    total = 0
    with open(path, "rb") as f:
        pending = b""
        while True:
            chunk = pending or f.read(_CHUNK)
            pending = b""
            if not chunk:
                break
            try:
                data = d.decompress(chunk)
            except _inflate.error as exc:
                raise ValueError(f"the gzip data are corrupt ({exc})") from None
            total += len(data)
            if len(head) < 544:
                head += data[: 544 - len(head)]
            if out is not None:
                out.write(data)
            if d.eof:
                # Another member may follow (as gzip and zlib's gzread read them); other
                # trailing bytes are ignored, as gzread ignores them.
                rest = d.unused_data
                if len(rest) < 2:
                    rest += f.read(2 - len(rest))
                if rest[:2] != _GZIP_MAGIC:
                    break
                d = _inflate.decompressobj(wbits=31)
                pending = rest
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


def _nifti_float_nans(path: str, head: bytes, *, compressed: bool = False) -> np.ndarray | None:
    """Where a single-file float NIfTI holds NaN voxels, as a (z, y, x) mask; None if none.

    SimpleITK's NIfTI reader turns NaN voxels into 0 without a word, so they are found in
    the raw data instead, and put back into what ``read_image`` returns. ``compressed``: the
    file is gzip'd (read when there was no room for a decompressed copy). None too when the
    file holds fewer voxels than its header says: the caller reports the truncation.
    """
    header = _nifti1_header(head)
    if header is None or header.datatype not in _NIFTI_FLOATS or header.dims[0] != 3:
        return None
    dtype = np.dtype(_NIFTI_FLOATS[header.datatype]).newbyteorder(header.endian)
    offset, count = int(header.vox_offset), math.prod(header.shape)
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
        voxels = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=header.shape)
    nans = np.isnan(voxels).reshape(header.shape)
    return nans if nans.any() else None


def _nifti_expected_size(head: bytes) -> int | None:
    """Bytes a single-file NIfTI needs according to its header, or None if not NIfTI."""
    if len(head) < 348:
        return None
    header = _nifti1_header(head)
    if header is not None:
        dims, bitpix, vox_offset = header.dims, header.bitpix, header.vox_offset
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
    n = 1
    for k in range(1, ndim + 1):
        n *= max(int(dims[k]), 1)
    return int(vox_offset) + (n * int(bitpix) + 7) // 8


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

    Verifies the stream (end marker and CRC) as :func:`_check_gzip` does. Returns None when
    the file is not that simple (several members, trailing bytes, a size the trailer does
    not give): the caller then takes the streaming path, which explains any problem.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 18:
        return None
    (size,) = struct.unpack("<I", raw[-4:])  # ISIZE: the decompressed size modulo 2**32
    d = _inflate.decompressobj(wbits=31)
    try:
        data = d.decompress(raw, size + 1)
    except _inflate.error:
        return None
    if not d.eof or d.unused_data or len(data) != size:
        return None
    return data


def _nifti_integer_voxels(data: bytes, path: str) -> tuple[np.ndarray, Geometry] | None:
    """Voxels and grid of a decompressed single-file NIfTI-1 holding unscaled integers.

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
    with _sitk_readable(path) as readable:
        reader = sitk.ImageFileReader()
        reader.SetFileName(readable)
        reader.SetImageIO("NiftiImageIO")  # the header says NIfTI-1: skip asking every format
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return None
    if (
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
    return voxels, _geometry_of(reader)


@contextlib.contextmanager
def _sitk_readable(path: str) -> Iterator[str]:
    """A path SimpleITK can be given safely.

    SimpleITK aborts the whole process when handed a file name that is not valid UTF-8
    (a ``str`` holding surrogate escapes), so such files are read through an ASCII-named
    symbolic link in a temporary folder.
    """
    if _is_utf8(path):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="qe_nb-")
    alias = os.path.join(folder, "image" + image_suffix(path, ascii_only=True))
    try:
        os.symlink(os.path.abspath(path), alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_image(
    path: PathLike, *, case: str | None = None, role: str | None = None
) -> tuple[np.ndarray, Geometry]:
    """Read a 3-D scalar image with SimpleITK; return its voxels ``(z, y, x)`` and grid.

    Any format SimpleITK reads works (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ...).

    Parameters
    ----------
    path : str or path-like
        The file.
    case : str, optional
        The case id, named in error messages.
    role : str, optional
        What the file is, named in error messages: ``"algorithm 'isen-20'"``,
        ``"reference"``, ``"image 't1'"``.

    Returns
    -------
    array : ndarray, dims (z, y, x)
        The voxels in the file's pixel type.
    geometry : Geometry
        The grid, in ``(z, y, x)`` order.

    Raises
    ------
    ImageReadError
        When the file is missing, a broken symbolic link, a directory, empty, unreadable
        (permission denied), a truncated or corrupt gzip stream, truncated NIfTI data, not
        an image SimpleITK reads, not 3-D, or not scalar. The message names the case and
        role (when given), the file and the problem.

    Notes
    -----
    SimpleITK silently pads truncated ``.nii`` / ``.nii.gz`` files with zeros, so gzip files
    are decompressed once to verify their checksum and NIfTI files are checked against
    the data size their header promises.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> write_image(np.ones((2, 3, 4), np.uint8), os.path.join(folder, "a.nii.gz"),
    ...             geometry=Geometry((2, 3, 4), spacing=(3.0, 1.0, 0.5)))
    >>> array, geometry = read_image(os.path.join(folder, "a.nii.gz"))
    >>> array.shape, geometry.spacing
    ((2, 3, 4), (3.0, 1.0, 0.5))
    >>> read_image(os.path.join(folder, "b.nii.gz"), case="c1", role="reference")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.ImageReadError: case 'c1', reference: cannot read '.../b.nii.gz': the file does not exist.
    """
    array, geometry = _read_image(path, case=case, role=role)
    if not array.flags.writeable:
        array = array.copy()
    return array, geometry


def _read_image(
    path: PathLike, *, case: str | None = None, role: str | None = None
) -> tuple[np.ndarray, Geometry]:
    """:func:`read_image`, whose array may be a read-only view of the decompressed file
    (loaders that copy the voxels anyway save a copy)."""
    p = os.fsdecode(os.fspath(path))
    where = _where(case, role)
    prefix = f"{where}: " if where else ""

    def fail(problem: str) -> ImageReadError:
        return ImageReadError(f"{prefix}cannot read {p!r}: {problem}.")

    if not os.path.lexists(p):
        raise fail("the file does not exist")
    if os.path.islink(p) and not os.path.exists(p):
        raise fail(f"it is a broken symbolic link (it points to {os.readlink(p)!r}, which does not exist)")
    if os.path.isdir(p):
        raise fail("it is a directory, not an image file")
    try:
        with open(p, "rb") as f:
            head = f.read(544)
    except PermissionError:
        raise fail("permission denied (the file cannot be opened for reading)") from None
    except OSError as exc:
        raise fail(f"the file cannot be opened ({exc.strerror or exc})") from None
    if not head:
        raise fail("the file is empty (0 bytes)")
    data_size = os.path.getsize(p)
    gzipped = head[:2] == _GZIP_MAGIC
    raw = None  # a decompressed single-file NIfTI, read instead of the .gz
    try:
        whole = _inflate_whole(p) if gzipped else None
        if whole is not None:
            # Decompressed in memory and verified. A label map (integer NIfTI) is viewed
            # right there; anything else is handed to SimpleITK uncompressed below.
            fast = _nifti_integer_voxels(whole, p)
            if fast is not None:
                return fast
            head, data_size = whole[:544], len(whole)
            if head[344:348] == b"n+1\x00" or head[4:8] == b"n+2\x00":
                # (no room for the copy: SimpleITK inflates the file itself)
                copy = _ram_copy(lambda out: out.write(whole))
                raw = None if copy is None else copy[0]
            del whole
        elif gzipped:
            # Decompress once: this verifies the stream (SimpleITK reads truncated or corrupt
            # gzip files without complaint, padding or garbling voxels), and a NIfTI inside is
            # then handed to SimpleITK uncompressed, so the data are inflated only once.
            try:
                copy = _ram_copy(lambda out: _check_gzip(p, out))
                if copy is None:  # no room for the copy: verify only, and let SimpleITK inflate
                    head, data_size = _check_gzip(p)
                else:
                    raw, (head, data_size) = copy
            except ValueError as exc:
                raise fail(f"it is a truncated or corrupt gzip file: {exc}") from None
            except PermissionError:
                raise fail("permission denied (the file cannot be opened for reading)") from None
            if raw is not None and head[344:348] != b"n+1\x00" and head[4:8] != b"n+2\x00":
                os.unlink(raw)
                raw = None
        source = raw if raw is not None else p
        with _sitk_readable(source) as readable:
            try:
                image = sitk.ReadImage(readable)
            except RuntimeError as exc:
                reason = _sitk_message(exc)
                if "Unable to determine ImageIO reader" in reason:
                    raise fail(
                        "it is not an image SimpleITK can read (expected a volume such as "
                        ".nii.gz, .nii, .nrrd or .mha)"
                    ) from None
                raise fail(f"SimpleITK could not read it ({reason})") from None
        # (a gzip file read as it is: there was no room for a decompressed copy)
        compressed = gzipped and raw is None
        nans = _nifti_float_nans(source, head, compressed=compressed) if image.GetDimension() == 3 else None
    finally:
        if raw is not None:
            with contextlib.suppress(OSError):
                os.unlink(raw)

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise fail(
            f"it has {image.GetNumberOfComponentsPerPixel()} components per voxel (size "
            f"{' x '.join(map(str, image.GetSize()[::-1]))}); expected a scalar 3-D image"
        )
    if image.GetDimension() != 3:
        raise fail(
            f"it is {image.GetDimension()}-D (size {' x '.join(map(str, image.GetSize()[::-1]))}); "
            "expected a 3-D image"
        )
    expected = _nifti_expected_size(head)
    if expected is not None and data_size < expected:
        raise fail(
            f"the NIfTI data are truncated: it holds {data_size} bytes, its header promises "
            f"{expected}"
        )
    array = sitk.GetArrayFromImage(image)
    if nans is not None and nans.shape == array.shape:
        array[nans] = np.nan
    return array, _geometry_of(image)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


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


def write_image(
    array: np.ndarray, path: PathLike, *, geometry: Geometry | None = None, compress: bool = True
) -> None:
    """Write a 3-D array ``(z, y, x)`` as an image file, atomically.

    The format follows the suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``). Two-file
    formats (``.mhd``, ``.nhdr``, ``.hdr``) name their data file in the header and are
    therefore written in place, not atomically.

    Parameters
    ----------
    array : ndarray, dims (z, y, x)
        Voxels; bool is written as uint8 and float16 as float32 (SimpleITK has neither).
    path : str or path-like
        The output file; its folder must exist.
    geometry : Geometry, optional
        The grid; default unit spacing, zero origin, identity direction.
    compress : bool, default True
        Ask SimpleITK to compress (for ``.nrrd`` / ``.mha``; ``.nii.gz`` is always gzip).

    Raises
    ------
    InputError
        When ``array`` is not 3-D or the suffix is not a format SimpleITK writes.
    GeometryError
        When ``geometry.shape`` is not ``array.shape``.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "mask.nrrd")
    >>> write_image(np.zeros((2, 3, 4), bool), target)
    >>> read_image(target)[0].dtype
    dtype('uint8')
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise InputError(f"`array` must be 3-D (z, y, x); got shape {arr.shape}.")
    if geometry is not None and tuple(geometry.shape) != arr.shape:
        raise GeometryError(
            f"`geometry.shape` {geometry.shape} does not match `array.shape` {arr.shape}."
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    image = sitk.GetImageFromArray(arr)
    if geometry is not None:
        _apply_geometry(image, geometry)
    target = os.fsdecode(os.fspath(path))
    if image_suffix(target).lower() in _TWO_FILE_SUFFIXES:
        # The header names its data file, so a renamed temporary would point at the wrong
        # data file: these formats are written in place.
        if not _is_utf8(target):
            raise InputError(
                f"cannot write {target!r}: SimpleITK cannot write a two-file format under a "
                "name that is not valid UTF-8; use .nii.gz, .nii, .nrrd or .mha."
            )
        _sitk_write(image, target, target, compress)
        return
    with atomic_path(target) as tmp:
        if _is_utf8(tmp):
            _sitk_write(image, tmp, target, compress)
        else:
            # SimpleITK aborts the process on a name that is not valid UTF-8: write under an
            # ASCII name elsewhere, then move the file into the temporary's place.
            folder = tempfile.mkdtemp(prefix="qe_nb-")
            try:
                alias = os.path.join(folder, "image" + image_suffix(tmp, ascii_only=True))
                _sitk_write(image, alias, target, compress)
                shutil.move(alias, tmp)
            finally:
                shutil.rmtree(folder, ignore_errors=True)


def _sitk_write(image: sitk.Image, path: str, target: str, compress: bool) -> None:
    try:
        sitk.WriteImage(image, path, bool(compress))
    except RuntimeError as exc:
        raise InputError(
            f"cannot write {target!r}: {_sitk_message(exc)}; use a suffix SimpleITK "
            f"writes, e.g. {list(IMAGE_SUFFIXES[:4])}."
        ) from None


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

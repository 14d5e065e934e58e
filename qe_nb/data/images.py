"""Reading and writing images with SimpleITK, and geometry checks.

Arrays follow the numpy order of SimpleITK arrays: ``(z, y, x)``. A :class:`Geometry` holds
the grid of one image in that same order, so ``geometry.spacing[0]`` is the slice thickness.

Every reading failure becomes an :class:`~qe_nb.exceptions.ImageReadError` whose message
names the case and the role of the file (when given), the file and the problem in words.
SimpleITK reads some broken files without complaint (a truncated ``.nii`` or ``.nii.gz``
comes back padded with zeros), so :func:`read_image` checks gzip streams and NIfTI data
sizes itself before trusting the voxels (the guards are in :mod:`qe_nb.data.nifti`).

:func:`write_image` is atomic, as every writer of :mod:`qe_nb.data.files` (whose
``atomic_*`` functions are also importable from here).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from qe_nb.data.files import (
    PathLike,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    image_suffix,
    is_utf8,
)
from qe_nb.data.nifti import (
    GZIP_MAGIC,
    inflate,
    nifti_expected_size,
    nifti_float_nans,
    sitk_message,
    sitk_readable,
)
from qe_nb.exceptions import GeometryError, ImageReadError, InputError

__all__ = [
    "Geometry",
    "read_image",
    "read_image_view",
    "write_image",
    "check_geometry",
    "first_difference",
    "format_values",
    "geometry_of",
    "resample_to",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "image_suffix",
    "IMAGE_SUFFIXES",
    "PathLike",
]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File name endings of the volume formats SimpleITK reads and writes that qe_nb expects."""

_TWO_FILE_SUFFIXES = (".mhd", ".nhdr", ".hdr")


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


def geometry_of(image: sitk.Image | sitk.ImageFileReader) -> Geometry:
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


def format_values(values: tuple) -> str:
    """A grid property for messages: a tuple with floats rounded to 6 decimals."""
    return str(tuple(round(v, 6) if isinstance(v, float) else v for v in values))


def first_difference(
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
        what = first_difference(geometry, first, rtol=rtol, shape_only=shape_only)
        if what is None:
            continue
        where = _where(case, f"{role} {name!r}")
        first_label = "first candidate's" if role == "algorithm" else f"first {role}'s"
        raise GeometryError(
            f"{where}: {what} {format_values(getattr(geometry, what))} differs from the {first_label} "
            f"{format_values(getattr(first, what))} ({role} {first_name!r}); {_fix_hint(what, role)}"
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
    array, geometry = read_image_view(path, case=case, role=role)
    if not array.flags.writeable:
        array = array.copy()
    return array, geometry


def read_image_view(
    path: PathLike, *, case: str | None = None, role: str | None = None
) -> tuple[np.ndarray, Geometry]:
    """:func:`read_image`, whose array may be a read-only view of the decompressed file.

    For loaders that copy the voxels anyway (into a stack of masks): they save a copy.
    Same parameters, result and errors as :func:`read_image`.
    """
    p = os.fsdecode(os.fspath(path))
    where = _where(case, role)
    prefix = f"{where}: " if where else ""

    def fail(problem: str) -> ImageReadError:
        return ImageReadError(f"{prefix}cannot read {p!r}: {problem}.")

    head = _read_head(p, fail)
    data_size = os.path.getsize(p)
    gzipped = head[:2] == GZIP_MAGIC
    raw = None  # a decompressed single-file NIfTI, read instead of the .gz
    try:
        if gzipped:
            try:
                inflated = inflate(p)
            except ValueError as exc:
                raise fail(f"it is a truncated or corrupt gzip file: {exc}") from None
            except PermissionError:
                raise fail("permission denied (the file cannot be opened for reading)") from None
            if inflated.label_map is not None:
                voxels, reader = inflated.label_map
                return voxels, geometry_of(reader)
            head, data_size, raw = inflated.head, inflated.size, inflated.copy
        source = raw if raw is not None else p
        image = _sitk_read(source, fail)
        # (a gzip file read as it is: there was no room for a decompressed copy)
        compressed = gzipped and raw is None
        nans = nifti_float_nans(source, head, compressed=compressed) if image.GetDimension() == 3 else None
    finally:
        if raw is not None:
            with contextlib.suppress(OSError):
                os.unlink(raw)

    size = " x ".join(map(str, image.GetSize()[::-1]))
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise fail(
            f"it has {image.GetNumberOfComponentsPerPixel()} components per voxel (size "
            f"{size}); expected a scalar 3-D image"
        )
    if image.GetDimension() != 3:
        raise fail(f"it is {image.GetDimension()}-D (size {size}); expected a 3-D image")
    expected = nifti_expected_size(head)
    if expected is not None and data_size < expected:
        raise fail(
            f"the NIfTI data are truncated: it holds {data_size} bytes, its header promises "
            f"{expected}"
        )
    array = sitk.GetArrayFromImage(image)
    if nans is not None and nans.shape == array.shape:
        array[nans] = np.nan
    return array, geometry_of(image)


def _read_head(p: str, fail: Callable[[str], ImageReadError]) -> bytes:
    """The first 544 bytes of an existing, readable, non-empty file (else ``fail``)."""
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
    return head


def _sitk_read(source: str, fail: Callable[[str], ImageReadError]) -> sitk.Image:
    """``sitk.ReadImage``, its errors in words."""
    with sitk_readable(source) as readable:
        try:
            return sitk.ReadImage(readable)
        except RuntimeError as exc:
            reason = sitk_message(exc)
            if "Unable to determine ImageIO reader" in reason:
                raise fail(
                    "it is not an image SimpleITK can read (expected a volume such as "
                    ".nii.gz, .nii, .nrrd or .mha)"
                ) from None
            raise fail(f"SimpleITK could not read it ({reason})") from None


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------




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
        if not is_utf8(target):
            raise InputError(
                f"cannot write {target!r}: SimpleITK cannot write a two-file format under a "
                "name that is not valid UTF-8; use .nii.gz, .nii, .nrrd or .mha."
            )
        _sitk_write(image, target, target, compress)
        return
    with atomic_path(target) as tmp:
        if is_utf8(tmp):
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
            f"cannot write {target!r}: {sitk_message(exc)}; use a suffix SimpleITK "
            f"writes, e.g. {list(IMAGE_SUFFIXES[:4])}."
        ) from None



"""Reading and writing images with SimpleITK: volumes ``(z, y, x)`` and 2-D images ``(y, x)``.

Arrays follow the numpy order of SimpleITK arrays. A :class:`~qe_nb.data.geometry.Geometry`
(importable from here too, with the grid checks of :mod:`qe_nb.data.geometry`) holds the
grid of one image in that same order, and the units of its spacing: ``"mm"``, or ``"px"`` for
picture formats that store no pixel size (PNG, BMP, JPEG; TIFF without resolution tags). A
2-D image stays 2-D (``(y, x)``, never ``(1, y, x)``); a one-slice volume stays 3-D. The rules
for pictures (units, colour channels, JPEG masks) are in :mod:`qe_nb.data.images_2d`.

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
from collections.abc import Callable

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
from qe_nb.data.geometry import (
    UNITS,
    Geometry,
    apply_geometry,
    check_geometry,
    first_difference,
    format_values,
    geometry_of,
    resample_to,
    where,
)
from qe_nb.data.images_2d import (
    PICTURE_SUFFIXES,
    one_channel,
    picture_format,
    picture_units,
    refuse_lossy_mask,
)
from qe_nb.data.limits import SizeRefused, check_voxels, non_regular_file, warn_spacing
from qe_nb.data.nifti import (
    GZIP_MAGIC,
    SITK_LOCK,
    check_declared,
    inflate,
    is_nifti,
    nifti_float_nans,
    nifti_pixdim,
    sitk_message,
    sitk_readable,
)
from qe_nb.exceptions import GeometryError, ImageReadError, InputError

__all__ = [
    "Geometry",
    "UNITS",
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
    "PICTURE_SUFFIXES",
    "PathLike",
]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File name endings of the volume formats SimpleITK reads and writes that qe_nb expects
(2-D images may use them too; the picture formats are :data:`PICTURE_SUFFIXES`)."""

_TWO_FILE_SUFFIXES = (".mhd", ".nhdr", ".hdr")


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------



def read_image(
    path: PathLike,
    *,
    case: str | None = None,
    role: str | None = None,
    ndim: int | None = None,
    mask: bool = False,
) -> tuple[np.ndarray, Geometry]:
    """Read a scalar image with SimpleITK; return its voxels and grid.

    Volumes come back as ``(z, y, x)``, 2-D images as ``(y, x)``: any format SimpleITK reads
    works (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ... for both; ``.png``, ``.tif``,
    ``.bmp``, ``.jpg`` for 2-D). A one-slice volume stays 3-D.

    Parameters
    ----------
    path : str or path-like
        The file.
    case : str, optional
        The case id, named in error messages.
    role : str, optional
        What the file is, named in error messages: ``"algorithm 'isen-20'"``,
        ``"reference"``, ``"image 't1'"``.
    ndim : {None, 2, 3}, default None
        The number of axes the image must have; None accepts 2-D and 3-D.
    mask : bool, default False
        The file is a mask (label map) or reference: a JPEG is refused (lossy), and colour
        channels must be equal (see :mod:`qe_nb.data.images_2d`). False: an image, whose
        differing colour channels become their luminance.

    Returns
    -------
    array : ndarray, dims (z, y, x) or (y, x)
        The voxels in the file's pixel type (float32 for the luminance of a colour image).
    geometry : Geometry
        The grid in the same order; ``units`` is ``"px"`` (spacing 1 x 1) for PNG, BMP,
        JPEG and TIFF without resolution tags, else ``"mm"``.

    Raises
    ------
    ImageReadError
        When the file is missing, a broken symbolic link, a directory, empty, unreadable
        (permission denied), a truncated or corrupt gzip stream, truncated NIfTI data, not
        an image SimpleITK reads, not 2-D or 3-D (or not ``ndim``-D), not scalar (a colour
        volume, a colour mask whose channels differ, a varying alpha), or a JPEG mask. The
        message names the case and role (when given), the file and the problem.

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
    >>> write_image(np.full((5, 6), 255, np.uint8), os.path.join(folder, "m.png"))
    >>> array, geometry = read_image(os.path.join(folder, "m.png"), mask=True)
    >>> array.shape, geometry.spacing, geometry.units
    ((5, 6), (1.0, 1.0), 'px')
    >>> read_image(os.path.join(folder, "b.nii.gz"), case="c1", role="reference")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.ImageReadError: case 'c1', reference: cannot read '.../b.nii.gz': the file does not exist.
    """
    array, geometry = read_image_view(path, case=case, role=role, ndim=ndim, mask=mask)
    if not array.flags.writeable:
        array = array.copy()
    return array, geometry


def read_image_view(
    path: PathLike,
    *,
    case: str | None = None,
    role: str | None = None,
    ndim: int | None = None,
    mask: bool = False,
) -> tuple[np.ndarray, Geometry]:
    """:func:`read_image`, whose array may be a read-only view of the decompressed file.

    For loaders that copy the voxels anyway (into a stack of masks): they save a copy.
    Same parameters, result and errors as :func:`read_image`.
    """
    if ndim not in (None, 2, 3):
        raise InputError(f"`ndim` must be None, 2 or 3; got {ndim!r}.")
    p = os.fsdecode(os.fspath(path))
    at = where(case, role)
    prefix = f"{at}: " if at else ""

    def fail(problem: str) -> ImageReadError:
        return ImageReadError(f"{prefix}cannot read {p!r}: {problem}.")

    head = _read_head(p, fail)
    fmt = picture_format(head)
    if mask:
        refuse_lossy_mask(fmt, p, prefix)
    array, geometry = _read_array(p, head, fmt, fail, mask=mask)
    if ndim is not None and geometry.ndim != ndim:
        size = " x ".join(map(str, geometry.shape))
        raise fail(f"it is {geometry.ndim}-D (size {size}); expected a {ndim}-D image")
    return array, geometry


def _read_array(
    p: str, head: bytes, fmt: str | None, fail: Callable[[str], ImageReadError], *, mask: bool
) -> tuple[np.ndarray, Geometry]:
    gzipped = head[:2] == GZIP_MAGIC
    raw = None  # a decompressed single-file NIfTI, read instead of the .gz
    try:
        if gzipped:
            try:
                inflated = inflate(p)
            except SizeRefused as exc:
                raise fail(str(exc)) from None
            except ValueError as exc:
                raise fail(f"it is a truncated or corrupt gzip file: {exc}") from None
            except PermissionError:
                raise fail("permission denied (the file cannot be opened for reading)") from None
            head, raw = inflated.head, inflated.copy
            if inflated.label_map is not None:
                voxels, reader = inflated.label_map
                with SITK_LOCK:  # the reader is shared by files with the same header
                    return voxels, _checked_geometry(p, head, reader, fmt, fail)
        try:
            if not gzipped:
                check_declared(head, os.path.getsize(p))  # a NIfTI: before SimpleITK allocates
            if not is_nifti(head):
                _check_declared_size(p, fmt)
        except SizeRefused as exc:
            raise fail(str(exc)) from None
        source = raw if raw is not None else p
        image = _sitk_read(source, fail, fmt)
        # (a gzip file read as it is: there was no room for a decompressed copy)
        compressed = gzipped and raw is None
        nans = nifti_float_nans(source, head, compressed=compressed) if image.GetDimension() in (2, 3) else None
    finally:
        if raw is not None:
            with contextlib.suppress(OSError):
                os.unlink(raw)

    size = " x ".join(map(str, image.GetSize()[::-1]))
    n = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1 and n != 2:
        what = "a scalar 3-D image" if n == 3 else "a scalar image"
        raise fail(f"it has {components} components per voxel (size {size}); expected {what}")
    if n not in (2, 3):
        raise fail(f"it is {n}-D (size {size}); expected a 3-D image (or a 2-D one)")
    geometry = _checked_geometry(p, head, image, fmt, fail)
    array = sitk.GetArrayFromImage(image)
    if components != 1:
        array = one_channel(array, mask=mask, fail=fail)
    if nans is not None and nans.shape == array.shape:
        array[nans] = np.nan
    return array, geometry


def _check_declared_size(p: str, fmt: str | None) -> None:
    """Refuse a (non-NIfTI) file whose header declares more voxels than the limit.

    SimpleITK reads the header alone here; a file it cannot read is left to ``_sitk_read``,
    which explains the problem.
    """
    with SITK_LOCK, sitk_readable(p) as readable:
        reader = sitk.ImageFileReader()
        reader.SetFileName(readable)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return
    check_voxels(tuple(reader.GetSize())[::-1])


def _checked_geometry(
    p: str, head: bytes, image: sitk.Image | sitk.ImageFileReader, fmt: str | None,
    fail: Callable[[str], ImageReadError],
) -> Geometry:
    """The grid of an image (or of a reader's header), in its units, with a warning when the
    voxel size looks wrong (see :func:`~qe_nb.data.limits.warn_spacing`)."""
    try:
        geometry = geometry_of(image)
    except InputError as exc:
        raise fail(f"its grid is not usable ({exc})") from None
    n = geometry.ndim
    units, spacing = picture_units(fmt, geometry.spacing)
    if units != geometry.units or spacing is not None:
        geometry = Geometry(
            geometry.shape,
            spacing=spacing if spacing is not None else geometry.spacing,
            origin=geometry.origin if units == "mm" else (0.0,) * n,
            direction=geometry.direction if units == "mm" else (),
            units=units,
        )
    if geometry.units == "mm":
        warn_spacing(p, geometry.spacing, raw=nifti_pixdim(head))
    return geometry


def _read_head(p: str, fail: Callable[[str], ImageReadError]) -> bytes:
    """The first 544 bytes of an existing, readable, non-empty file (else ``fail``)."""
    if not os.path.lexists(p):
        raise fail("the file does not exist")
    if os.path.islink(p) and not os.path.exists(p):
        raise fail(f"it is a broken symbolic link (it points to {os.readlink(p)!r}, which does not exist)")
    odd = non_regular_file(p)  # never open a named pipe: reading it would block
    if odd:
        raise fail(odd)
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


def _sitk_read(source: str, fail: Callable[[str], ImageReadError], fmt: str | None = None) -> sitk.Image:
    """``sitk.ReadImage``, its errors in words."""
    with SITK_LOCK, sitk_readable(source) as readable:
        try:
            return sitk.ReadImage(readable)
        except RuntimeError as exc:
            reason = sitk_message(exc)
            if "Unable to determine ImageIO reader" in reason:
                raise fail(
                    "it is not an image SimpleITK can read (expected a volume such as "
                    ".nii.gz, .nii, .nrrd or .mha, or a 2-D .png, .tif or .bmp)"
                ) from None
            if fmt == "png" and "Unknown PixelType" in reason:
                # ITK's PNG reader gives a gray + alpha PNG two components it cannot hold
                raise fail(
                    "it is a gray + alpha PNG, which SimpleITK cannot read; save it without "
                    "the alpha channel (plain grayscale)"
                ) from None
            raise fail(f"SimpleITK could not read it ({reason})") from None


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------




def write_image(
    array: np.ndarray, path: PathLike, *, geometry: Geometry | None = None, compress: bool = True
) -> None:
    """Write a 3-D array ``(z, y, x)`` or a 2-D array ``(y, x)`` as an image file, atomically.

    The format follows the suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``; for 2-D also
    ``.png``, ``.tif``, ``.bmp``, whose pixel types SimpleITK limits: uint8 and uint16 for
    PNG, uint8 for BMP). Two-file
    formats (``.mhd``, ``.nhdr``, ``.hdr``) name their data file in the header and are
    therefore written in place, not atomically.

    Parameters
    ----------
    array : ndarray, dims (z, y, x) or (y, x)
        Voxels; bool is written as uint8 and float16 as float32 (SimpleITK has neither).
    path : str or path-like
        The output file; its folder must exist.
    geometry : Geometry, optional
        The grid (as many axes as ``array``); default unit spacing, zero origin, identity
        direction. PNG and BMP keep no spacing (they are read back in ``"px"``).
    compress : bool, default True
        Ask SimpleITK to compress (for ``.nrrd`` / ``.mha``; ``.nii.gz`` is always gzip).

    Raises
    ------
    InputError
        When ``array`` is neither 2-D nor 3-D, or the suffix is not a format SimpleITK writes
        (or not for this pixel type).
    GeometryError
        When ``geometry.shape`` is not ``array.shape``.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "mask.nrrd")
    >>> write_image(np.zeros((2, 3, 4), bool), target)
    >>> read_image(target)[0].dtype
    dtype('uint8')
    >>> write_image(np.zeros((3, 4), np.uint16), target.replace(".nrrd", ".png"))
    >>> read_image(target.replace(".nrrd", ".png"))[0].shape
    (3, 4)
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise InputError(
            f"`array` must be 3-D (z, y, x) or 2-D (y, x); got shape {arr.shape}."
        )
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
        apply_geometry(image, geometry)
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



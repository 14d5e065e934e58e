"""The voxel grid of an image (:class:`Geometry`), grid comparisons and resampling.

Arrays follow the numpy order of SimpleITK arrays: ``(z, y, x)`` for volumes, ``(y, x)`` for
2-D images (never ``(1, y, x)``). A :class:`Geometry` holds the grid in that same order, so
``geometry.spacing[0]`` is the slice thickness of a volume, the row spacing of a 2-D image.

``units`` says what the spacing is measured in: ``"mm"`` for formats that store a physical
pixel size (NIfTI, NRRD, MHA, TIFF with resolution tags), ``"px"`` for those that do not (PNG,
BMP, JPEG, TIFF without resolution), whose spacing is then ``(1.0, 1.0)``: distances come out
in pixels. The rules per format are in :mod:`qe_nb.data.images_2d`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from qe_nb.exceptions import GeometryError, InputError

__all__ = [
    "Geometry",
    "UNITS",
    "apply_geometry",
    "check_geometry",
    "first_difference",
    "format_values",
    "geometry_of",
    "resample_to",
    "where",
]

UNITS = ("mm", "px")
"""What a grid's spacing is measured in: millimetres, or pixels (no physical spacing)."""

_AXES = {2: "(y, x)", 3: "(z, y, x)"}


@dataclass(frozen=True)
class Geometry:
    """The grid of a 3-D image ``(z, y, x)`` or of a 2-D image ``(y, x)``.

    Parameters
    ----------
    shape : tuple of 3 (or 2) int
        Number of voxels along ``(z, y, x)`` (or pixels along ``(y, x)``).
    spacing : tuple of 3 (or 2) float, optional
        Voxel size along the same axes, in ``units``; default 1.0 each.
    origin : tuple of 3 (or 2) float, optional
        Physical position of the first voxel, components in array order (SimpleITK's
        ``GetOrigin()`` reversed); default 0.0 each.
    direction : tuple of 9 (or 4) float, optional
        Direction cosines as a row-major 3x3 (2x2) matrix in array order: SimpleITK's
        ``GetDirection()`` matrix with both its rows and its columns reversed, so that
        ``point = origin + direction @ (index * spacing)``; default the identity.
    units : {"mm", "px"}, default "mm"
        ``"px"`` when the file stored no physical spacing (PNG, BMP, JPEG, TIFF without
        resolution): spacing is then 1.0 per pixel and distances are in pixels.

    Examples
    --------
    >>> g = Geometry((2, 3, 4), spacing=(3.0, 1.0, 1.0))
    >>> g.spacing, g.ndim
    ((3.0, 1.0, 1.0), 3)
    >>> g.direction
    (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    >>> g.as_attrs()["origin"]
    (0.0, 0.0, 0.0)
    >>> flat = Geometry((1030, 1300), units="px")
    >>> flat.spacing, flat.direction, flat.as_attrs()["units"]
    ((1.0, 1.0), (1.0, 0.0, 0.0, 1.0), 'px')
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...] = field(default=())
    origin: tuple[float, ...] = field(default=())
    direction: tuple[float, ...] = field(default=())
    units: str = "mm"

    def __post_init__(self) -> None:
        shape = _clean(self.shape, int)
        if len(shape) not in _AXES:
            raise InputError(
                f"Geometry `shape` must hold 3 numbers in (z, y, x) order (or 2 in (y, x) order "
                f"for a 2-D image); got {self.shape!r}."
            )
        n = len(shape)
        defaults = {
            "spacing": (1.0,) * n,
            "origin": (0.0,) * n,
            "direction": tuple(np.eye(n).ravel().tolist()),
        }
        object.__setattr__(self, "shape", shape)
        for name, count in (("spacing", n), ("origin", n), ("direction", n * n)):
            value = getattr(self, name)
            clean = defaults[name] if isinstance(value, tuple) and not value else _clean(value, float)
            if len(clean) != count:
                raise InputError(
                    f"Geometry `{name}` must hold {count} numbers in {_AXES[n]} order; got {value!r}."
                )
            object.__setattr__(self, name, clean)
        if any(s < 0 for s in self.shape):
            raise InputError(f"Geometry `shape` must be non-negative; got {self.shape}.")
        if not all(np.isfinite(self.spacing)) or any(s <= 0 for s in self.spacing):
            raise InputError(f"Geometry `spacing` must be positive and finite; got {self.spacing}.")
        if self.units not in UNITS:
            raise InputError(f"Geometry `units` must be one of {list(UNITS)}; got {self.units!r}.")

    @property
    def ndim(self) -> int:
        """2 for a 2-D image, 3 for a volume."""
        return len(self.shape)

    def as_attrs(self) -> dict[str, Any]:
        """``spacing``, ``origin``, ``direction`` (and ``units`` when not ``"mm"``) as a dict.

        For a DataArray's attrs. ``units`` is left out when it is ``"mm"``, the default that
        :meth:`from_attrs` assumes, so the attrs of volumes are what they always were.
        """
        attrs: dict[str, Any] = {"spacing": self.spacing, "origin": self.origin, "direction": self.direction}
        if self.units != "mm":
            attrs["units"] = self.units
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], shape: tuple[int, ...]) -> Geometry:
        """Rebuild a geometry from attrs made by :meth:`as_attrs` and an array's shape.

        The grid has as many axes as ``attrs["spacing"]`` has numbers: the last 3 (or 2) of
        ``shape``. Missing ``origin`` / ``direction`` / ``units`` default to zero / identity /
        ``"mm"``.
        """
        if "spacing" not in attrs:
            raise InputError(
                f"attrs must hold `spacing` (and optionally `origin`, `direction`, `units`); got "
                f"keys {sorted(attrs)}."
            )
        n = len(_clean(attrs["spacing"], float)) or 3
        kwargs = {k: attrs[k] for k in ("spacing", "origin", "direction", "units") if k in attrs}
        return cls(tuple(shape[-n:]), **kwargs)


def _clean(value: object, kind: type) -> tuple:
    try:
        return tuple(kind(v) for v in np.asarray(value).ravel())
    except (TypeError, ValueError):
        return ()


def geometry_of(image: sitk.Image | sitk.ImageFileReader, *, units: str = "mm") -> Geometry:
    """The grid of an image, or of a reader that has read an image's information.

    Zeros are unsigned (``+ 0.0``): a reader's header-only read gives ``-0.0`` where
    ``sitk.ReadImage`` gives ``0.0`` for the same file, and grids are printed in messages.
    A negative spacing (a reader's header-only read of a NIfTI with a negative ``pixdim``)
    becomes its magnitude with that axis's direction flipped, as ``sitk.ReadImage`` (ITK's
    ``ImageFileReader``) makes it.
    """
    n = image.GetDimension()
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(n, n).copy()
    flip = spacing < 0
    spacing[flip] = -spacing[flip]
    direction[:, flip] = -direction[:, flip]
    d = direction[::-1, ::-1] + 0.0
    return Geometry(
        shape=tuple(image.GetSize()[::-1]),
        spacing=tuple(spacing[::-1].tolist()),
        origin=tuple((np.asarray(image.GetOrigin(), dtype=float)[::-1] + 0.0).tolist()),
        direction=tuple(d.ravel().tolist()),
        units=units,
    )


def apply_geometry(image: sitk.Image, geometry: Geometry) -> None:
    """Set a SimpleITK image's spacing, origin and direction from ``geometry`` (same ndim)."""
    n = geometry.ndim
    d = np.asarray(geometry.direction, dtype=float).reshape(n, n)[::-1, ::-1]
    image.SetSpacing(tuple(geometry.spacing[::-1]))
    image.SetOrigin(tuple(geometry.origin[::-1]))
    image.SetDirection(tuple(d.ravel()))


def format_values(values: tuple | str) -> str:
    """A grid property for messages: a tuple with floats rounded to 6 decimals."""
    if isinstance(values, str):
        return repr(values)
    return str(tuple(round(v, 6) if isinstance(v, float) else v for v in values))


def first_difference(
    geometry: Geometry, first: Geometry, *, rtol: float, shape_only: bool
) -> str | None:
    """Name the first grid property in which ``geometry`` differs from ``first``.

    ``"shape"`` (also for a 2-D grid against a 3-D one), then ``"units"`` ("px" against
    "mm"), ``"spacing"``, ``"origin"``, ``"direction"``; None when they agree.
    """
    if geometry.shape != first.shape:
        return "shape"
    if shape_only:
        return None
    if geometry.units != first.units:
        return "units"
    if not np.allclose(geometry.spacing, first.spacing, rtol=rtol, atol=0.0):
        return "spacing"
    # Origins are compared relative to the voxel size: a shift of 1e-4 voxel is noise.
    if not np.allclose(geometry.origin, first.origin, rtol=0.0, atol=rtol * max(first.spacing)):
        return "origin"
    # Direction cosines lie in [-1, 1], so an absolute tolerance is a relative one.
    if not np.allclose(geometry.direction, first.direction, rtol=0.0, atol=rtol):
        return "direction"
    return None


def where(case: str | None, role: str | None) -> str:
    """``"case 'c1', reference"``: the start of a message about one file of a case."""
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
        Naming the case, the image, the property that differs and both values (a 2-D grid
        beside a 3-D one, and a grid in pixels beside one in mm, too).
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
        at = where(case, f"{role} {name!r}")
        first_label = "first candidate's" if role == "algorithm" else f"first {role}'s"
        raise GeometryError(
            f"{at}: {what} {format_values(getattr(geometry, what))} differs from the {first_label} "
            f"{format_values(getattr(first, what))} ({role} {first_name!r}); "
            f"{fix_hint(what, role, geometry, first)}"
        )
    return first


def fix_hint(what: str, role: str, geometry: Geometry | None = None, first: Geometry | None = None) -> str:
    """How to fix a grid difference named by :func:`first_difference`."""
    if what == "shape" and geometry is not None and first is not None and geometry.ndim != first.ndim:
        return (
            f"it is {geometry.ndim}-D and the other is {first.ndim}-D; the images of a case must "
            "all be 2-D or all 3-D (a one-slice volume stays 3-D)."
        )
    if what == "units":
        return (
            "one file stores a physical pixel size (mm) and the other does not (px); save them "
            "in the same format, or convert the px image to NIfTI with its spacing."
        )
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
    image_array : ndarray, dims (z, y, x) or (y, x)
        The image on ``geometry``.
    geometry : Geometry
        The grid of ``image_array``.
    target_geometry : Geometry
        The grid to resample onto (as many axes as ``geometry``).
    default_value : float, default 0
        Value of target voxels that fall outside the source image.

    Returns
    -------
    ndarray, shape ``target_geometry.shape``, same dtype as ``image_array``

    Raises
    ------
    GeometryError
        When ``image_array.shape`` is not ``geometry.shape``, or the two grids have a different
        number of axes.

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
    if geometry.ndim != target_geometry.ndim:
        raise GeometryError(
            f"cannot resample a {geometry.ndim}-D image (shape {geometry.shape}) onto a "
            f"{target_geometry.ndim}-D grid (shape {target_geometry.shape})."
        )
    dtype = arr.dtype
    work = arr.astype(np.uint8) if dtype.kind == "b" else arr
    image = sitk.GetImageFromArray(work)
    apply_geometry(image, geometry)
    reference = sitk.Image([int(s) for s in target_geometry.shape[::-1]], image.GetPixelID())
    apply_geometry(reference, target_geometry)
    out = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, float(default_value)
    )
    return sitk.GetArrayFromImage(out).astype(dtype, copy=False)

"""Reading DICOM segmentations (SEG) as label maps, on the grid of their source series.

A DICOM SEG stores one BINARY (or FRACTIONAL) frame per segment and source slice, or one
LABELMAP frame per slice (the Label Map Segmentation SOP class); :func:`read_segmentation` turns it into the integer label map that the rest of qe_nb
reads from NIfTI: each voxel holds the *segment number* of the segment covering it (0 for
background), on a :class:`~qe_nb.data.geometry.Geometry` built as SimpleITK builds the grid of
the source series (slices in increasing order along the normal of the image plane, origin at
the first of them, spacing and direction from the SEG's plane positions and orientation), so a
SEG lines up with NIfTI, NRRD or MHA masks exported from the same CT or MR series.

It reads with ``highdicom`` (and ``pydicom``), the optional extra ``qe-nb[dicom]``, imported
only when a DICOM file is read. Refused, each with an :class:`~qe_nb.exceptions.ImageReadError`
naming the case, the role, the file and the problem: a missing extra (with the install hint),
a DICOM file that is not a segmentation (a CT slice), a truncated or corrupt file, segments
that overlap (a voxel in two segments has no single label), a fractional (probabilistic) SEG
whose values are not all 0 or the maximum, frames that do not form a regular volume.

Sparse SEGs
-----------
Writers leave out empty frames (highdicom and dcmqi do by default), and a SEG does not record
where the source series begins and ends: it covers the slices from its first to its last
frame. Empty slices in between are background; a segment without frames is simply absent.
:func:`place_segmentations` puts the SEGs of one case on a common grid: the grid of a candidate
or reference that is not a SEG (a NIfTI mask of the same series), else the slices covered by
any of the case's SEGs. Scores do not depend on how far the grid reaches beyond the masks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import SimpleITK as sitk

from qe_nb.data.files import PathLike, image_suffix
from qe_nb.data.geometry import Geometry, geometry_of, where
from qe_nb.data.limits import SizeRefused, check_voxels
from qe_nb.data.nifti import SITK_LOCK, sitk_readable
from qe_nb.exceptions import ImageReadError, QeNbError

__all__ = [
    "DICOM_SUFFIXES",
    "INSTALL_HINT",
    "is_dicom",
    "read_segmentation",
    "place_segmentations",
    "embed_slices",
    "file_grid",
]

DICOM_SUFFIXES = (".dcm", ".dicom")
"""File name endings read as DICOM (case-insensitive); files without a suffix are DICOM when
their 128-byte preamble is followed by ``DICM``."""

INSTALL_HINT = 'pip install "qe-nb[dicom]"'

_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_LABEL_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"  # Label Map Segmentation (DICOM 2024)
_PREAMBLE = 128
_TOLERANCE = 1e-4  # of grid comparisons, as in qe_nb.data.loading


def is_dicom(path: PathLike) -> bool:
    """Whether ``path`` names a DICOM file: a ``.dcm`` / ``.dicom`` suffix, or no suffix and
    ``DICM`` after the 128-byte preamble.

    Examples
    --------
    >>> is_dicom("c1/unet.dcm"), is_dicom("c1/unet.DCM"), is_dicom("c1/unet.nii.gz")
    (True, True, False)
    """
    p = os.fsdecode(os.fspath(path))
    suffix = image_suffix(p).lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix:
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(_PREAMBLE + 4)
    except OSError:
        return False
    return head[_PREAMBLE:] == b"DICM"


def _import_highdicom(fail):
    try:
        import highdicom
        import pydicom
    except ImportError as exc:
        raise fail(
            f"reading DICOM segmentations needs highdicom and pydicom ({exc}); install them "
            f"with: {INSTALL_HINT}"
        ) from None
    return highdicom, pydicom


def _dataset(p: str, fail):
    """The file as a pydicom dataset, checked to be a segmentation."""
    _, pydicom = _import_highdicom(fail)
    try:
        dataset = pydicom.dcmread(p)
    except pydicom.errors.InvalidDicomError:
        raise fail("it is not a DICOM file (no 'DICM' after the 128-byte preamble)") from None
    except PermissionError:
        raise fail("permission denied (the file cannot be opened for reading)") from None
    except Exception as exc:  # pydicom raises many kinds on truncated or corrupt files
        raise fail(f"it is a truncated or corrupt DICOM file ({type(exc).__name__}: {exc})") from None
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in (_SEGMENTATION_STORAGE, _LABEL_MAP_STORAGE):
        if not sop_class:
            raise fail("it is a truncated or incomplete DICOM file (it has no SOP Class UID)")
        name = pydicom.uid.UID(sop_class).name
        raise fail(
            f"it is a DICOM {name!r} file, not a segmentation (DICOM SEG, SOP class "
            f"{_SEGMENTATION_STORAGE}); give the masks pattern the SEG files"
        )
    _check_pixel_data(dataset, fail)
    return dataset


def _check_pixel_data(dataset, fail) -> None:
    """Refuse a SEG cut off before or inside its pixel data (they come last in the file)."""
    if "PixelData" not in dataset:
        raise fail("it is truncated: the file ends before its pixel data")
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or getattr(syntax, "is_compressed", True):
        return  # compressed frames: their sizes are not known in advance
    try:
        bits = int(dataset.BitsAllocated)
        voxels = int(dataset.get("NumberOfFrames", 1) or 1) * int(dataset.Rows) * int(dataset.Columns)
    except (AttributeError, TypeError, ValueError):
        return  # left to highdicom, whose error is reported
    expected = -(-voxels * bits // 8)
    held = len(dataset.PixelData)
    if held < expected:
        raise fail(f"its pixel data are truncated: it holds {held} bytes of them, its header promises {expected}")


def read_segmentation(
    path: PathLike, *, case: str | None = None, role: str | None = None
) -> tuple[np.ndarray, Geometry]:
    """Read a DICOM SEG as an integer label map ``(z, y, x)`` and its grid.

    Parameters
    ----------
    path : str or path-like
        The SEG file.
    case : str, optional
        The case id, named in error messages.
    role : str, optional
        What the file is, named in error messages (``"algorithm 'unet'"``, ``"reference"``).

    Returns
    -------
    array : ndarray of uint8 (uint16 beyond 255 segments), dims (z, y, x)
        The segment number of each voxel, 0 for background. Slices run in increasing order
        along the normal of the image plane (row direction x column direction), as SimpleITK
        orders a DICOM series.
    geometry : Geometry
        Spacing, origin (the first slice's ``ImagePositionPatient``) and direction in array
        order, in mm, as :func:`~qe_nb.data.geometry.geometry_of` gives them for the source
        series read with SimpleITK. A sparse SEG covers its first to its last frame (see the
        module notes).

    Raises
    ------
    ImageReadError
        Naming the case, role, file and problem: highdicom missing (with the install hint),
        not a DICOM file, truncated or corrupt, not a segmentation, overlapping segments, a
        fractional SEG with values between 0 and the maximum, no frames at all, or frames
        that do not form a regularly spaced volume.
    """
    p = os.fsdecode(os.fspath(path))
    at = where(case, role)
    prefix = f"{at}: " if at else ""

    def fail(problem: str) -> ImageReadError:
        return ImageReadError(f"{prefix}cannot read {p!r}: {problem}.")

    if not os.path.isfile(p):
        raise fail("the file does not exist" if not os.path.lexists(p) else "it is not a regular file")
    highdicom, _ = _import_highdicom(fail)
    dataset = _dataset(p, fail)
    try:
        seg = highdicom.seg.Segmentation.from_dataset(dataset, copy=False)
    except Exception as exc:  # highdicom raises AttributeError/ValueError/KeyError on broken SEGs
        raise fail(f"it is a truncated or malformed DICOM SEG ({type(exc).__name__}: {exc})") from None
    frames = int(getattr(seg, "NumberOfFrames", 0) or 0)
    if frames == 0:
        raise fail("the DICOM SEG holds no frames")
    try:
        check_voxels((frames, int(seg.Rows), int(seg.Columns)))
        extent = seg.get_volume_geometry(allow_missing_positions=True)  # before it is allocated
        if extent is not None:
            check_voxels(tuple(extent.spatial_shape), what="its frames span")
    except SizeRefused as exc:
        raise fail(str(exc)) from None
    except (RuntimeError, ValueError, AttributeError, KeyError, IndexError, TypeError):
        pass  # an irregular or broken SEG: left to get_volume, whose error is turned into words below
    volume = _volume(seg, fail)
    return _label_map(volume, fail)


def _volume(seg, fail):
    """``seg.get_volume`` with the segment numbers as values, its errors in words."""
    kind = str(getattr(seg, "SegmentationType", ""))
    try:
        return seg.get_volume(combine_segments=True, relabel=False, allow_missing_positions=True)
    except RuntimeError as exc:
        text = str(exc)
        if "overlap" in text:
            raise fail(
                "its segments overlap (a voxel belongs to more than one segment), so it has no "
                "single label per voxel; export one SEG per structure or a SEG without overlap"
            ) from None
        raise fail(f"its frames do not form a regularly spaced 3-D volume ({text})") from None
    except ValueError as exc:
        if kind == "FRACTIONAL":
            raise fail(
                "it is a FRACTIONAL (probabilistic) SEG with values between 0 and the maximum; "
                "threshold it into a BINARY SEG first"
            ) from None
        raise fail(f"highdicom cannot build a label map from it ({exc})") from None
    except Exception as exc:
        raise fail(f"it is a truncated or malformed DICOM SEG ({type(exc).__name__}: {exc})") from None


def _label_map(volume, fail) -> tuple[np.ndarray, Geometry]:
    """A highdicom ``Volume`` as an array and a Geometry in SimpleITK's conventions."""
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise fail(f"its label map has shape {array.shape}; expected (slices, rows, columns)")
    if array.dtype.kind not in "ui" or array.dtype.itemsize > 2:
        array = array.astype(np.uint16 if array.max(initial=0) > 255 else np.uint8)
    affine = np.asarray(volume.affine, dtype=float)
    axes = affine[:3, :3].copy()  # column j: step in LPS mm along array axis j (slice, row, column)
    spacing = np.linalg.norm(axes, axis=0)
    if not np.all(spacing > 0):
        raise fail(f"its grid has a zero voxel size (spacing {tuple(spacing.tolist())})")
    units = axes / spacing
    origin = affine[:3, 3].copy()
    normal = np.cross(units[:, 2], units[:, 1])  # row direction (along a row) x column direction
    if float(units[:, 0] @ normal) < 0:  # slices stored downward: turn them as SimpleITK sorts them
        origin = origin + axes[:, 0] * (array.shape[0] - 1)
        units[:, 0] = -units[:, 0]
        array = array[::-1]
    geometry = Geometry(
        tuple(array.shape),
        spacing=tuple(spacing.tolist()),
        origin=tuple((origin[::-1] + 0.0).tolist()),
        direction=tuple((units[::-1, :] + 0.0).ravel().tolist()),
    )
    return np.ascontiguousarray(array), geometry


# --------------------------------------------------------------------------------------
# Sparse SEGs on a common grid
# --------------------------------------------------------------------------------------


def _slice_offset(own: Geometry, target: Geometry) -> int | None:
    """How many slices into ``target`` the first slice of ``own`` lies, when ``own`` is a run
    of ``target``'s slices (same rows, columns, spacing and direction); else None."""
    if own.ndim != 3 or target.ndim != 3 or own.shape[1:] != target.shape[1:]:
        return None
    if not np.allclose(own.spacing, target.spacing, rtol=_TOLERANCE, atol=0.0):
        return None
    if not np.allclose(own.direction, target.direction, rtol=0.0, atol=_TOLERANCE):
        return None
    direction = np.asarray(target.direction, dtype=float).reshape(3, 3)
    step = direction[:, 0] * target.spacing[0]  # array-order components of one slice step
    shift = np.asarray(own.origin, dtype=float) - np.asarray(target.origin, dtype=float)
    k = float(shift @ step) / float(step @ step)
    offset = int(round(k))
    if not np.allclose(shift, offset * step, rtol=0.0, atol=_TOLERANCE * max(target.spacing)):
        return None
    return offset


def embed_slices(array: np.ndarray, own: Geometry, target: Geometry) -> np.ndarray | None:
    """``array`` (on ``own``) placed on ``target`` with background elsewhere, when ``own``'s
    slices are slices of ``target``; None otherwise (the caller then reports the grid
    difference, or resamples)."""
    offset = _slice_offset(own, target)
    if offset is None or offset < 0 or offset + own.shape[0] > target.shape[0]:
        return None
    if offset == 0 and own.shape == target.shape:
        return array
    out = np.zeros(target.shape, dtype=array.dtype)
    out[offset : offset + own.shape[0]] = array
    return out


def _union(geometries: Iterable[Geometry]) -> Geometry | None:
    """The grid spanning the slices of every geometry, when they share one slice lattice."""
    items = list(geometries)
    first = items[0]
    low, high = 0, first.shape[0]
    for geometry in items[1:]:
        offset = _slice_offset(geometry, first)
        if offset is None:
            return None
        low, high = min(low, offset), max(high, offset + geometry.shape[0])
    direction = np.asarray(first.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(first.origin, dtype=float) + low * direction[:, 0] * first.spacing[0]
    return Geometry((high - low, *first.shape[1:]), spacing=first.spacing,
                    origin=tuple(origin.tolist()), direction=first.direction, units=first.units)


def place_segmentations(
    arrays: dict[str, np.ndarray],
    geometries: dict[str, Geometry],
    segmentations: Iterable[str],
    *,
    also: Iterable[tuple[Geometry, bool]] = (),
) -> None:
    """Put the SEG label maps of one case on a common grid, in place.

    Parameters
    ----------
    arrays, geometries : dict of str to ndarray / Geometry
        Name -> label map and its grid, as read; the entries named in ``segmentations`` are
        replaced by their label map on the common grid.
    segmentations : iterable of str
        The names read from DICOM SEG files.
    also : iterable of (Geometry, bool)
        Grids of the case's other files (its reference, see :func:`file_grid`), each with
        whether it is a SEG.

    Notes
    -----
    The target is the grid of the first entry that is not a SEG, else of the first non-SEG
    grid in ``also``, else the slices spanned by all the SEGs (those in ``also`` too). A
    SEG whose slices are not slices of the target is left as it is, for the grid check to
    report or for resampling.

    Examples
    --------
    >>> g = Geometry((4, 2, 2), spacing=(2.0, 1.0, 1.0))
    >>> part = Geometry((1, 2, 2), spacing=(2.0, 1.0, 1.0), origin=(4.0, 0.0, 0.0))
    >>> arrays = {"nifti": np.zeros((4, 2, 2), np.uint8), "seg": np.ones((1, 2, 2), np.uint8)}
    >>> geometries = {"nifti": g, "seg": part}
    >>> place_segmentations(arrays, geometries, ["seg"])
    >>> arrays["seg"].sum(axis=(1, 2)).tolist(), geometries["seg"] == g
    ([0, 0, 4, 0], True)
    """
    names = [n for n in segmentations if n in arrays]
    if not names:
        return
    others = list(also)
    plain = [g for n, g in geometries.items() if n not in names] + [g for g, seg in others if not seg]
    spans = [geometries[n] for n in names] + [g for g, seg in others if seg]
    target = plain[0] if plain else _union(spans)
    if target is None:
        return
    for name in names:
        placed = embed_slices(arrays[name], geometries[name], target)
        if placed is not None:
            arrays[name], geometries[name] = placed, target


def file_grid(path: PathLike) -> tuple[Geometry, bool] | None:
    """The grid of a label file and whether it is a SEG, or None when it cannot be read.

    For :func:`place_segmentations`: a SEG is read whole (SEGs are small), another file's
    header alone (SimpleITK). Errors are left to the reader that reads the file for real.
    """
    p = os.fsdecode(os.fspath(path))
    if is_dicom(p):
        try:
            return read_segmentation(p)[1], True
        except ImageReadError:
            return None
    try:
        with SITK_LOCK, sitk_readable(p) as readable:
            reader = sitk.ImageFileReader()
            reader.SetFileName(readable)
            reader.ReadImageInformation()
            if reader.GetDimension() != 3:
                return None
            return geometry_of(reader), False
    except (RuntimeError, OSError, QeNbError):
        return None

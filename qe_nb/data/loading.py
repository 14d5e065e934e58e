"""Loading one case of an ensemble catalogue: its candidates, reference and images.

:func:`qe_nb.data.ensemble.open_ensemble` returns the catalogue (file paths only);
:func:`load_case`, :func:`load_label_maps`, :func:`load_reference` and :func:`load_images` read
the voxels of one case at a time, checking (or resampling onto) a common grid.
:func:`read_label_maps` and :func:`read_reference` are the same reads before the arrays are
stacked or turned into structure masks, for the scoring pipeline, which crops them first.

A case is 3-D (voxel dims ``z, y, x``) or 2-D (pixel dims ``y, x``), never a mix: a 2-D
candidate beside 3-D ones is an error naming both. The grid's ``units`` (``"mm"``, or ``"px"``
for PNG, BMP, JPEG and TIFF without resolution) travel in :class:`~qe_nb.data.images.Geometry`
and, when ``"px"``, in the ``units`` attr of the arrays returned here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.labels import (
    SCHEMES,
    LabelScheme,
    check_label_map,
    parse_label_values,
    structure_masks,
)
from qe_nb.data.dicom_seg import (
    embed_slices,
    file_grid,
    is_dicom,
    place_segmentations,
    read_segmentation,
)
from qe_nb.data.images import (
    Geometry,
    check_geometry,
    first_difference,
    format_values,
    read_image,
    read_image_view,
    resample_to,
)
from qe_nb.exceptions import GeometryError, ImageReadError, InputError, LabelError

__all__ = [
    "ensemble_labels",
    "load_case",
    "load_label_maps",
    "load_reference",
    "load_images",
    "read_label_map",
    "read_label_maps",
    "read_reference",
]

_RTOL = 1e-4
"""Relative tolerance of grid comparisons (spacing, origin, direction)."""


def ensemble_labels(ensemble: xr.Dataset) -> LabelScheme:
    """The label scheme recorded in a catalogue (its ``label`` and ``label_values`` coords).

    Examples
    --------
    >>> ds = xr.Dataset(coords={"label": ["lesion"], "label_values": ("label", ["1,2"])},
    ...                 attrs={"label_scheme": "custom"})
    >>> ensemble_labels(ds).structures
    {'lesion': (1, 2)}
    """
    if "label" not in ensemble.coords or "label_values" not in ensemble.coords:
        raise InputError(
            "`ensemble` must carry the `label` and `label_values` coords made by "
            f"qe_nb.open_ensemble; got coords {sorted(map(str, ensemble.coords))}."
        )
    structures = {
        str(name): parse_label_values(str(text))
        for name, text in zip(ensemble["label"].values, ensemble["label_values"].values)
    }
    name = str(ensemble.attrs.get("label_scheme", "")) or "custom"
    known = SCHEMES.get(name)
    if known is not None and dict(known.structures) == structures:
        return known
    return LabelScheme(name, structures)



def _check_ensemble(ensemble: object, case: object) -> xr.Dataset:
    if not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble.data_vars:
        raise InputError(
            "`ensemble` must be the catalogue from qe_nb.open_ensemble (an xarray.Dataset with "
            f"a 'mask' variable over (case, algorithm)); got {type(ensemble).__name__}."
        )
    if not isinstance(case, str):
        raise InputError(f"`case` must be a case id (str); got {case!r}.")
    # a hashed index lookup: this runs once per case, for cohorts of 100 000 cases
    if "case" not in ensemble.indexes or case not in ensemble.indexes["case"]:
        known = [str(c) for c in np.atleast_1d(ensemble["case"].values)[:5]]
        raise InputError(
            f"Unknown case {case!r}; the ensemble holds {ensemble.sizes.get('case', 0)} case(s), "
            f"e.g. {known}."
        )
    return ensemble


def _cell(ensemble: xr.Dataset, variable: str, **where: str) -> str:
    return str(ensemble[variable].sel(**where).values)


def _mask_cells(ensemble: xr.Dataset, case: str, algorithms: list[str]) -> dict[str, str]:
    """Algorithm -> the case's mask path (``""`` when none), as :func:`_cell` gives each, in one selection."""
    row = ensemble["mask"].sel(case=case)
    if row.dims == ("algorithm",):
        found = dict(zip((str(a) for a in row["algorithm"].values), (str(v) for v in row.values)))
        if len(found) == row.sizes["algorithm"] and set(algorithms) <= set(found):
            return {a: found[a] for a in algorithms}
    return {a: _cell(ensemble, "mask", case=case, algorithm=a) for a in algorithms}


def _read_all(paths: dict[str, str], case: str,
              threads: int) -> dict[str, Callable[[], tuple[np.ndarray, Geometry]]]:
    """Algorithm -> a call giving :func:`read_label_map` of its path (or raising its error).

    With ``threads`` > 1 the files are read at once, in at most that many threads (and no more
    than the files or cores); otherwise each is read when its call is made.
    """
    workers = min(threads, len(paths), os.cpu_count() or 1)
    if workers <= 1:
        return {a: functools.partial(read_label_map, p, case=case, role=f"algorithm {a!r}") for a, p in paths.items()}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qe_nb-read") as pool:
        futures = {a: pool.submit(read_label_map, p, case=case, role=f"algorithm {a!r}") for a, p in paths.items()}
    return {a: future.result for a, future in futures.items()}


def _expected(ensemble: xr.Dataset, argument: str, **values: str) -> str:
    pattern = str(ensemble.attrs.get(argument, ""))
    text = pattern
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    root = str(ensemble.attrs.get("root", ""))
    return os.path.join(root, *text.split("/")) if root else text


def _missing(ensemble: xr.Dataset, argument: str, where: str, **values: str) -> ImageReadError:
    pattern = str(ensemble.attrs.get(argument, ""))
    return ImageReadError(
        f"{where}: no file matched the `{argument}` pattern {pattern!r} "
        f"(expected e.g. {_expected(ensemble, argument, **values)!r})."
    )


def read_label_map(path: str, *, case: str, role: str) -> tuple[np.ndarray, Geometry]:
    """Read one label map and check its values (whole, non-negative, not too large).

    The array may be a read-only view (see :func:`~qe_nb.data.images.read_image_view`). A
    DICOM SEG (``.dcm``, or no suffix and a DICOM preamble) gives its segment numbers, on the
    source series' grid (see :mod:`qe_nb.data.dicom_seg`).

    Raises
    ------
    ImageReadError
        When the file cannot be read (see :func:`~qe_nb.data.images.read_image`).
    LabelError
        Naming the case, the role (``"algorithm 'x'"``), the file and the bad values.
    """
    if is_dicom(path):
        array, geometry = read_segmentation(path, case=case, role=role)
    else:
        array, geometry = read_image_view(path, case=case, role=role, mask=True)  # copied by the callers
    try:
        return check_label_map(array, name="label_map"), geometry
    except LabelError as exc:
        raise LabelError(f"case {case!r}, {role}, file {path!r}: {exc}") from None



def _align(
    arrays: dict[str, np.ndarray],
    geometries: dict[str, Geometry],
    *,
    case: str,
    role: str,
    check: bool,
    resample: bool,
) -> Geometry:
    """Bring every array onto the first one's grid (resample) or check that they share it."""
    first = next(iter(geometries.values()))
    if resample:
        for name, geometry in geometries.items():
            if _differs(geometry, first):
                arrays[name] = resample_to(arrays[name], geometry, first)
        return first
    return check_geometry(geometries, case=case, role=role, shape_only=not check)


def _differs(geometry: Geometry, first: Geometry) -> bool:
    """True when two grids differ in any property beyond the default tolerance."""
    return first_difference(geometry, first, rtol=_RTOL, shape_only=False) is not None


def _grid_attrs(geometry: Geometry, case: str) -> dict[str, Any]:
    return {**geometry.as_attrs(), "case": case}


def grid_dims(geometry: Geometry) -> tuple[str, ...]:
    """The dims of a grid's axes: ``("z", "y", "x")``, or ``("y", "x")`` for a 2-D image."""
    return ("z", "y", "x")[-geometry.ndim:]


def _ndim_error(path: str, geometry: Geometry, first: Geometry, *, case: str, role: str,
                other: str, first_name: str | None = None) -> ImageReadError:
    named = "" if first_name is None else f"algorithm {first_name!r}, "
    return ImageReadError(
        f"case {case!r}, {role}: cannot read {path!r}: it is {geometry.ndim}-D (size "
        f"{' x '.join(map(str, geometry.shape))}); expected a {first.ndim}-D image like {other} "
        f"({named}size {' x '.join(map(str, first.shape))}): the masks of a case must all be 2-D or all "
        "3-D (a one-slice volume stays 3-D); convert the odd one out."
    )


def _stack(arrays: dict[str, np.ndarray], dim: str, dtype, geometry: Geometry, case: str, *,
           name: str) -> xr.DataArray:
    """The arrays (emptied as they are copied, in their order) stacked on a leading ``dim``."""
    names = list(arrays)
    out = np.empty((len(names), *geometry.shape), dtype=dtype)
    for i, key in enumerate(names):
        out[i] = arrays.pop(key)
    return xr.DataArray(
        out,
        dims=(dim, *grid_dims(geometry)),
        coords={dim: np.array(names, dtype=object)},
        name=name,
        attrs=_grid_attrs(geometry, case),
    )


def load_label_maps(
    ensemble: xr.Dataset, case: str, *, check_geometry: bool = True, resample: bool = False
) -> xr.DataArray:
    """Read the candidate label maps of one case.

    Parameters
    ----------
    ensemble : xarray.Dataset
        The catalogue from :func:`~qe_nb.data.ensemble.open_ensemble` (or a selection of it).
    case : str
        The case id.
    check_geometry : bool, default True
        Require every candidate to share spacing, origin and direction with the first
        (relative tolerance 1e-4). With False only the shapes must agree.
    resample : bool, default False
        Resample candidates whose grid differs onto the first candidate's grid (nearest
        neighbour, SimpleITK) instead of raising.

    Returns
    -------
    xarray.DataArray
        Integer label maps, dims (algorithm, z, y, x) -- (algorithm, y, x) for 2-D images --
        name ``"label_map"``; attrs ``spacing``, ``origin``, ``direction`` (tuples, in array
        order), ``case``, and ``units`` = ``"px"`` when the files store no spacing.

    Raises
    ------
    ImageReadError
        When a candidate has no file (naming the case, algorithm and pattern) or cannot be
        read (a JPEG, a colour mask), or is 2-D beside 3-D candidates (or the reverse).
    LabelError
        When a candidate holds non-integral, negative or NaN labels.
    GeometryError
        When grids differ (see ``check_geometry`` / ``resample``).

    Examples
    --------
    >>> import tempfile, os
    >>> from qe_nb.data.images import write_image
    >>> from qe_nb.data.ensemble import open_ensemble
    >>> root = tempfile.mkdtemp(); os.mkdir(os.path.join(root, "c1"))
    >>> write_image(np.full((2, 3, 4), 2.0, np.float32), os.path.join(root, "c1", "a.nii.gz"))
    >>> maps = load_label_maps(open_ensemble(root, labels="binary"), "c1")
    >>> maps.dims, maps.dtype.name, int(maps.max())
    (('algorithm', 'z', 'y', 'x'), 'uint8', 2)
    """
    arrays, geometry = read_label_maps(ensemble, case, check_geometry=check_geometry, resample=resample)
    dtype = np.result_type(*(a.dtype for a in arrays.values()))
    return _stack(arrays, "algorithm", dtype, geometry, case, name="label_map")


def read_label_maps(
    ensemble: xr.Dataset, case: str, *, check_geometry: bool = True, resample: bool = False, threads: int = 1
) -> tuple[dict[str, np.ndarray], Geometry]:
    """:func:`load_label_maps` before stacking: algorithm -> label map, and their common grid.

    The maps may be read-only views of the decompressed files: the scoring pipeline crops
    them before it stacks them, and so copies only the crop. Parameters and errors as for
    :func:`load_label_maps`; ``threads`` > 1 reads the files in that many threads of this
    process (inflating releases the GIL), for a caller that scores one case at a time in
    process, not inside workers that already use every core. The result, and the error
    raised (that of the first unusable candidate in catalogue order), do not depend on it.

    Returns
    -------
    arrays : dict of str to ndarray
        Algorithm -> integer label map ``(z, y, x)`` or ``(y, x)`` on the common grid, in
        catalogue order.
    geometry : Geometry
        That grid: ``geometry.ndim`` is 2 or 3, ``geometry.spacing`` has as many numbers
        (array order), ``geometry.units`` is ``"mm"`` or ``"px"`` (then spacing 1 x 1).
    """
    _check_ensemble(ensemble, case)
    algorithms = [str(a) for a in np.atleast_1d(ensemble["algorithm"].values)]
    if not algorithms:
        raise InputError(f"case {case!r}: `ensemble` selects no algorithm.")
    arrays: dict[str, np.ndarray] = {}
    geometries: dict[str, Geometry] = {}
    segmentations: list[str] = []  # read from DICOM SEG files
    paths = _mask_cells(ensemble, case, algorithms)
    reads = _read_all({a: p for a, p in paths.items() if p}, case, threads)
    for algorithm in algorithms:
        role = f"algorithm {algorithm!r}"
        path = paths[algorithm]
        if not path:
            raise _missing(ensemble, "masks", f"case {case!r}, {role}", case=case, algorithm=algorithm)
        arrays[algorithm], geometries[algorithm] = reads[algorithm]()
        if is_dicom(path):
            segmentations.append(algorithm)
        first_name, first = next(iter(geometries.items()))
        if geometries[algorithm].ndim != first.ndim:
            raise _ndim_error(path, geometries[algorithm], first, case=case, role=role,
                              other="the case's first candidate", first_name=first_name)
    if segmentations:  # sparse SEGs cover only their frames' slices: put them on the case's grid
        reference = _cell(ensemble, "reference", case=case) if "reference" in ensemble.data_vars else ""
        also = [file_grid(reference)] if reference and len(segmentations) == len(algorithms) else []
        place_segmentations(arrays, geometries, segmentations, also=[g for g in also if g is not None])
    geometry = _align(
        arrays, geometries, case=case, role="algorithm", check=check_geometry, resample=resample
    )
    return arrays, geometry


def load_case(
    ensemble: xr.Dataset, case: str, *, check_geometry: bool = True, resample: bool = False
) -> xr.DataArray:
    """Read one case's candidates as boolean structure masks.

    Parameters
    ----------
    ensemble, case, check_geometry, resample
        As for :func:`load_label_maps`.

    Returns
    -------
    xarray.DataArray
        Bool, dims (algorithm, label, z, y, x) -- (algorithm, label, y, x) for 2-D images --
        name ``"masks"``; coords ``algorithm``, ``label`` and ``label_values``; attrs as
        :func:`load_label_maps`.

    Raises
    ------
    ImageReadError, LabelError, GeometryError
        As for :func:`load_label_maps`.

    Examples
    --------
    >>> import tempfile, os
    >>> from qe_nb.data.images import write_image
    >>> from qe_nb.data.ensemble import open_ensemble
    >>> root = tempfile.mkdtemp(); os.mkdir(os.path.join(root, "c1"))
    >>> m = np.zeros((2, 3, 4), np.uint8); m[0, 0, :2] = 1; m[1, 1, 1] = 4
    >>> write_image(m, os.path.join(root, "c1", "a.nii.gz"))
    >>> masks = load_case(open_ensemble(root, labels="brats-regions"), "c1")
    >>> masks.sizes["label"], masks.sum(("z", "y", "x")).values.tolist()
    (3, [[3, 3, 1]])
    """
    maps = load_label_maps(ensemble, case, check_geometry=check_geometry, resample=resample)
    scheme = ensemble_labels(ensemble)
    out = np.empty((maps.sizes["algorithm"], len(scheme.names), *maps.shape[1:]), dtype=bool)
    for i in range(maps.sizes["algorithm"]):
        out[i] = structure_masks(maps.values[i], scheme)
    return xr.DataArray(
        out,
        dims=("algorithm", "label", *maps.dims[1:]),
        coords={
            "algorithm": maps["algorithm"].values,
            "label": np.array(scheme.names, dtype=object),
            "label_values": ("label", np.array(scheme.values_text(), dtype=object)),
        },
        name="masks",
        attrs=dict(maps.attrs),
    )


def _target_geometry(geometry: Geometry | xr.DataArray | None) -> Geometry | None:
    if geometry is None or isinstance(geometry, Geometry):
        return geometry
    if isinstance(geometry, xr.DataArray):
        return Geometry.from_attrs(geometry.attrs, tuple(geometry.shape))
    raise InputError(
        "`geometry` must be a Geometry or a DataArray from load_case / load_label_maps; got "
        f"{type(geometry).__name__}."
    )


def _against(
    array: np.ndarray,
    own: Geometry,
    target: Geometry | None,
    *,
    case: str,
    role: str,
    resample: bool,
    path: str,
) -> tuple[np.ndarray, Geometry]:
    """``array`` on the candidates' grid ``target``: checked, or resampled onto it.

    A file in pixels (PNG ...) beside candidates in mm, or the reverse, holds no spacing to
    compare: its pixels must match the candidates' one to one (same shape), and it takes
    their grid.
    """
    if target is None:
        return array, own
    if own.ndim != target.ndim:
        raise _ndim_error(path, own, target, case=case, role=role, other="the case's candidates")
    if own.units != target.units and own.shape == target.shape:
        return array, target
    if resample and own.units == target.units:
        if _differs(own, target):
            return resample_to(array, own, target), target
        return array, target
    what = first_difference(own, target, rtol=_RTOL, shape_only=False)
    if what is not None:
        raise GeometryError(
            f"case {case!r}, {role}: {what} {format_values(getattr(own, what))} differs from the "
            f"candidates' {format_values(getattr(target, what))}; resample it or pass `resample=True`."
        )
    return array, target


def load_reference(
    ensemble: xr.Dataset,
    case: str,
    *,
    geometry: Geometry | xr.DataArray | None = None,
    resample: bool = False,
) -> xr.DataArray | None:
    """Read one case's reference (ground truth) as boolean structure masks.

    Parameters
    ----------
    ensemble : xarray.Dataset
        The catalogue from :func:`~qe_nb.data.ensemble.open_ensemble`.
    case : str
        The case id.
    geometry : Geometry or xarray.DataArray, optional
        The candidates' grid (or the output of :func:`load_case`); when given, the reference
        must lie on it.
    resample : bool, default False
        Resample the reference onto ``geometry`` (nearest neighbour) instead of raising.

    Returns
    -------
    xarray.DataArray or None
        Bool, dims (label, z, y, x) or (label, y, x), name ``"reference"``, attrs as
        :func:`load_case`;
        None when the catalogue has no reference for this case.

    Raises
    ------
    ImageReadError, LabelError
        When the file cannot be read or is not a label map.
    GeometryError
        When ``geometry`` is given and the reference lies on another grid.

    Examples
    --------
    >>> import tempfile, os
    >>> from qe_nb.data.images import write_image
    >>> from qe_nb.data.ensemble import open_ensemble
    >>> root = tempfile.mkdtemp(); os.mkdir(os.path.join(root, "c1"))
    >>> write_image(np.ones((2, 3, 4), np.uint8), os.path.join(root, "c1", "a.nii.gz"))
    >>> write_image(np.ones((2, 3, 4), np.uint8), os.path.join(root, "c1", "gt.nii.gz"))
    >>> ens = open_ensemble(root, reference="{case}/gt.nii.gz", labels="binary")
    >>> list(ens.algorithm.values), load_reference(ens, "c1").dims
    (['a'], ('label', 'z', 'y', 'x'))
    """
    found = read_reference(ensemble, case, geometry=geometry, resample=resample)
    if found is None:
        return None
    array, grid = found
    scheme = ensemble_labels(ensemble)
    return xr.DataArray(
        structure_masks(array, scheme),
        dims=("label", *grid_dims(grid)),
        coords={
            "label": np.array(scheme.names, dtype=object),
            "label_values": ("label", np.array(scheme.values_text(), dtype=object)),
        },
        name="reference",
        attrs=_grid_attrs(grid, case),
    )


def read_reference(
    ensemble: xr.Dataset,
    case: str,
    *,
    geometry: Geometry | xr.DataArray | None = None,
    resample: bool = False,
) -> tuple[np.ndarray, Geometry] | None:
    """:func:`load_reference` before the structure masks.

    Parameters and errors as for :func:`load_reference`.

    Returns
    -------
    tuple of (ndarray, Geometry) or None
        The reference's integer label map ``(z, y, x)`` (possibly a read-only view of the
        decompressed file) on ``geometry``, and its grid; None when the case has no reference.
    """
    _check_ensemble(ensemble, case)
    if "reference" not in ensemble.data_vars:
        return None
    path = _cell(ensemble, "reference", case=case)
    if not path:
        return None
    array, own = read_label_map(path, case=case, role="reference")
    target = _target_geometry(geometry)
    if target is not None and is_dicom(path):
        placed = embed_slices(array, own, target)  # a sparse SEG covers only its frames' slices
        array, own = (array, own) if placed is None else (placed, target)
    return _against(array, own, target, case=case, role="reference", resample=resample, path=path)


def load_images(
    ensemble: xr.Dataset,
    case: str,
    *,
    geometry: Geometry | xr.DataArray | None = None,
    resample: bool = False,
    missing: str = "raise",
) -> xr.DataArray | None:
    """Read one case's images (all modalities) as float32.

    Parameters
    ----------
    ensemble : xarray.Dataset
        The catalogue from :func:`~qe_nb.data.ensemble.open_ensemble` opened with ``images=``.
    case : str
        The case id.
    geometry : Geometry or xarray.DataArray, optional
        The candidates' grid; when given, the images must lie on it (an image in pixels
        beside candidates in mm, or the reverse, only needs the same shape).
    resample : bool, default False
        Resample images onto ``geometry`` (or onto the first modality's grid) with nearest
        neighbour instead of raising.
    missing : {"raise", "skip"}, default "raise"
        What to do with a modality that has no file for this case (cohorts where only some
        cases come with images, e.g. BU-BIL): raise, or leave it out -- and return None when
        the case has no image at all.

    Returns
    -------
    xarray.DataArray or None
        Float32, dims (modality, z, y, x) or (modality, y, x), name ``"image"``, attrs as
        :func:`load_case`. A colour picture (RGB) becomes its luminance. None only with
        ``missing="skip"`` when the case has no image.

    Raises
    ------
    InputError
        When the catalogue has no images, or for an unknown ``missing``.
    ImageReadError
        When a modality has no file (``missing="raise"``) or cannot be read.
    GeometryError
        When the modalities do not share a grid, or differ from ``geometry``.

    Examples
    --------
    >>> import tempfile, os
    >>> from qe_nb.data.images import write_image
    >>> from qe_nb.data.ensemble import open_ensemble
    >>> root = tempfile.mkdtemp(); os.makedirs(os.path.join(root, "c1", "img"))
    >>> write_image(np.ones((2, 3, 4), np.uint8), os.path.join(root, "c1", "a.nii.gz"))
    >>> write_image(np.full((2, 3, 4), 7, np.int16), os.path.join(root, "c1", "img", "t1.nii.gz"))
    >>> ens = open_ensemble(root, images="{case}/img/{modality}.nii.gz", labels="binary")
    >>> im = load_images(ens, "c1")
    >>> im.dims, im.dtype.name, float(im.max())
    (('modality', 'z', 'y', 'x'), 'float32', 7.0)
    """
    _check_ensemble(ensemble, case)
    if missing not in ("raise", "skip"):
        raise InputError(f"`missing` must be 'raise' or 'skip'; got {missing!r}.")
    if "image" not in ensemble.data_vars:
        raise InputError(
            "`ensemble` has no images; open it with `images=` (e.g. "
            "'{case}/images/{modality}.nii.gz')."
        )
    arrays: dict[str, np.ndarray] = {}
    geometries: dict[str, Geometry] = {}
    paths: dict[str, str] = {}
    for modality in (str(m) for m in np.atleast_1d(ensemble["modality"].values)):
        role = f"image {modality!r}"
        path = _cell(ensemble, "image", case=case, modality=modality)
        if not path:
            if missing == "skip":
                continue
            raise _missing(ensemble, "images", f"case {case!r}, {role}", case=case, modality=modality)
        array, geometries[modality] = read_image(path, case=case, role=role)
        arrays[modality], paths[modality] = array.astype(np.float32, copy=False), path
    if not arrays:
        return None
    target = _target_geometry(geometry)
    if target is not None:
        for modality in list(arrays):
            arrays[modality], geometries[modality] = _against(
                arrays[modality], geometries[modality], target,
                case=case, role=f"image {modality!r}", resample=resample, path=paths[modality],
            )
        grid = target
    else:
        grid = _align(arrays, geometries, case=case, role="image", check=True, resample=resample)
    return _stack(arrays, "modality", np.float32, grid, case, name="image")

"""The scores file: a scores cube written to NetCDF atomically, and read back whole."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from qe_nb.exceptions import InputError

__all__ = ["save_scores", "load_scores"]


def save_scores(scores: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a scores Dataset to NetCDF atomically (a crash never leaves a half-written file).

    Returns the path written.
    """
    from qe_nb.data.images import atomic_path

    path = Path(path)
    if not isinstance(scores, xr.Dataset) or "similarity" not in scores:
        raise InputError(
            f"`scores` must be the Dataset from qe_nb.score (with 'similarity'); got {type(scores).__name__}."
        )
    ds = scores.copy()
    for name in list(ds.variables):
        if ds[name].dtype == object:
            ds[name] = ds[name].astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return path


def load_scores(path: str | os.PathLike) -> xr.Dataset:
    """Read a scores Dataset written by :func:`save_scores` (fully loaded; the file is closed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scores file {str(path)!r} does not exist.")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as exc:  # h5py/h5netcdf raise many kinds
        raise InputError(f"scores file {str(path)!r} could not be read as NetCDF: {exc}") from exc
    if "similarity" not in ds:
        raise InputError(f"scores file {str(path)!r} holds no 'similarity' variable; is it a qe_nb scores file?")
    if "higher_is_better" in ds.coords:
        ds = ds.assign_coords(higher_is_better=ds["higher_is_better"].astype(bool))
    return ds

"""The scores file: a scores cube written to NetCDF atomically, and read back whole.

Names that are not valid Unicode
--------------------------------
On Linux a folder name is bytes; one that is not UTF-8 (``b"lat\\xe9n"``, Latin-1) becomes a
case id with a lone surrogate (``"lat\\udce9n"``, Python's ``surrogateescape``), which NetCDF
cannot store. Such a case is kept: :func:`save_scores` writes every text value of a variable
holding one in an escaped form (``%`` -> ``%25``, the escaped byte ``0xXX`` -> ``%XX``, any other
lone surrogate ``U+DXXX`` -> ``%uDXXX``) and marks the variable with the attribute
``name_escape = "qe_nb-percent-1"`` (the Dataset's attrs likewise, marked the same way in
``attrs``); :func:`load_scores` restores the original ids.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import xarray as xr

from qe_nb.exceptions import InputError

__all__ = ["save_scores", "load_scores", "escape_name", "unescape_name", "NAME_ESCAPE"]

NAME_ESCAPE = "qe_nb-percent-1"
"""The value of a variable's ``name_escape`` attribute when its text values are escaped."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED = re.compile(r"%(25|[89A-F][0-9A-F]|uD[89A-F][0-9A-F]{2})")
_DIMS = {
    "similarity": ("case", "algorithm", "label", "metric"),
    "candidate_quality": ("case", "algorithm", "label", "metric"),
    "quality": ("case", "label", "metric"),
    "volume": ("case", "algorithm", "label"),
    "missing": ("case", "algorithm"),
    "error": ("case",),
}
"""The dims the scores cube's variables must have (when present) to be read back."""


def escape_name(text: str) -> str:
    """``text`` with lone surrogates escaped reversibly, so that it encodes as UTF-8.

    Examples
    --------
    >>> import os
    >>> escape_name(os.fsdecode(b"lat\\xe9n")), escape_name("50%"), escape_name("café")
    ('lat%E9n', '50%25', 'café')
    """

    def one(match: re.Match) -> str:
        code = ord(match.group())
        return f"%{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"%u{code:04X}"

    return _SURROGATE.sub(one, text.replace("%", "%25"))


def unescape_name(text: str) -> str:
    """The inverse of :func:`escape_name`.

    Examples
    --------
    >>> unescape_name("lat%E9n") == "lat\\udce9n", unescape_name("50%25")
    (True, '50%')
    """

    def one(match: re.Match) -> str:
        code = match.group(1)
        if code == "25":
            return "%"
        return chr(int(code[1:], 16)) if code.startswith("u") else chr(0xDC00 + int(code, 16))

    return _ESCAPED.sub(one, text)


def _needs_escape(values: np.ndarray) -> bool:
    return any(_SURROGATE.search(str(v)) for v in values.ravel())


def save_scores(scores: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a scores Dataset to NetCDF atomically (a crash never leaves a half-written file).

    Text values that are not valid Unicode (case ids from non-UTF-8 folder names) are escaped
    reversibly (see the module's notes) and restored by :func:`load_scores`.

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
        if ds[name].dtype == object or ds[name].dtype.kind == "U":
            values = np.asarray(ds[name].values).astype(str)
            if _needs_escape(values):
                escaped = np.vectorize(escape_name, otypes=[object])(values).astype(str)
                ds[name] = ds[name].copy(data=escaped).assign_attrs(name_escape=NAME_ESCAPE)
            elif ds[name].dtype == object:
                ds[name] = ds[name].astype(str)
    if any(isinstance(v, str) and _SURROGATE.search(v) for v in ds.attrs.values()):
        ds.attrs = {**{k: escape_name(v) if isinstance(v, str) else v for k, v in ds.attrs.items()},
                    "name_escape": NAME_ESCAPE}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return path


def _check_layout(ds: xr.Dataset, shown: str) -> None:
    """Refuse a file whose known variables lack their dims or their dims lack ids."""
    for name, dims in _DIMS.items():
        if name in ds and ds[name].dims != dims:
            raise InputError(
                f"scores file {shown}: `{name}` has dims {ds[name].dims}; expected {dims}. The file "
                "was changed after qe_nb wrote it; score the cohort again or restore the variable."
            )
    for dim in ("case", "algorithm", "label", "metric"):
        if dim in ds.dims and dim not in ds.coords:
            raise InputError(
                f"scores file {shown}: the {dim!r} dim has no coordinate (its ids are missing); "
                "score the cohort again, or assign them (e.g. scores.assign_coords(metric=['dice', 'hd95']))."
            )


def load_scores(path: str | os.PathLike) -> xr.Dataset:
    """Read a scores Dataset written by :func:`save_scores` (fully loaded; the file is closed).

    Raises
    ------
    InputError
        A missing or unreadable file, or one that is not a scores cube: no ``similarity``,
        a known variable with other dims than qe_nb writes, a dim without its ids.
    """
    path = Path(path)
    shown = repr(str(path))
    if not path.is_file():
        raise InputError(f"scores file {shown} does not exist.")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as exc:  # h5py/h5netcdf raise many kinds
        raise InputError(f"scores file {shown} could not be read as NetCDF: {exc}") from exc
    if "similarity" not in ds:
        raise InputError(f"scores file {shown} holds no 'similarity' variable; is it a qe_nb scores file?")
    _check_layout(ds, shown)
    for name in list(ds.variables):
        if ds[name].attrs.get("name_escape") == NAME_ESCAPE:
            attrs = {k: v for k, v in ds[name].attrs.items() if k != "name_escape"}
            values = np.vectorize(unescape_name, otypes=[object])(np.asarray(ds[name].values).astype(str))
            restored = xr.Variable(ds[name].dims, values.astype(str), attrs)
            ds = ds.assign_coords({name: restored}) if name in ds.coords else ds.assign({name: restored})
    if ds.attrs.get("name_escape") == NAME_ESCAPE:
        ds.attrs = {k: unescape_name(v) if isinstance(v, str) else v for k, v in ds.attrs.items() if k != "name_escape"}
    if "higher_is_better" in ds.coords:
        ds = ds.assign_coords(higher_is_better=ds["higher_is_better"].astype(bool))
    return ds

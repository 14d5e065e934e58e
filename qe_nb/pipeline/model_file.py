"""The frozen model as plain data and as a JSON file: format, content hash, validation.

One human-readable JSON file (indented, keys sorted) holds everything a
:class:`qe_nb.QualityModel` needs: ``format`` (``"qe_nb.QualityModel"``), ``format_version``,
``content_sha256`` (sha256 of the canonical JSON of every other key,
:func:`qe_nb.core.frozen.content_hash`), the settings the reference cohort was scored with,
the calibration (alpha, pool, MAD scale, the thresholds per algorithm x label x metric) and the
reference summary. :func:`model_from_dict` validates it completely before anything is built:
an unknown format version, a missing field, a value of the wrong kind or a hash that does not
match (an edited file) raise :class:`qe_nb.InputError` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.checks import GROUP_DIMS
from qe_nb.core.frozen import alpha_from_dict, content_hash, nested_to_grid
from qe_nb.exceptions import InputError

__all__ = ["FORMAT", "FORMAT_VERSION", "REQUIRED", "read_model_dict", "check_model_dict", "parts_from_dict"]

FORMAT = "qe_nb.QualityModel"
"""The ``format`` field of a model file."""

FORMAT_VERSION = 1
"""The ``format_version`` this version of qe_nb writes and reads."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "": ("format", "format_version", "content_sha256", "qe_nb_version", "created", "settings", "calibration",
         "reference"),
    "settings": ("fusion", "metrics", "higher_is_better", "algorithms", "labels", "label_scheme",
                 "nsd_tolerance_mm", "similarity_mode", "distance_units"),
    "calibration": ("alpha", "alpha_by", "alpha_method", "mad_scale", "pool", "thresholds"),
    "reference": ("n_cases", "n_failed_cases", "median", "mad", "n_finite", "alarm_rate", "member_alarm_rate",
                  "risk"),
}
"""The fields of a model file, per section ("" is the top level)."""


def read_model_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a model file's JSON and validate it (:func:`check_model_dict`).

    Raises
    ------
    InputError
        For a missing or unreadable file, text that is not JSON (e.g. truncated), or any
        problem :func:`check_model_dict` finds; the message names the file.
    """
    shown = repr(os.fsdecode(os.fspath(path)))
    file = Path(path)
    if not file.is_file():
        raise InputError(f"model file {shown} does not exist (or is not a file).")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"model file {shown} could not be read: {exc}.") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise InputError(
            f"model file {shown} is not valid JSON ({exc}); it may be truncated or damaged. Write it again "
            "with model.save(path) or `qe-nb fit`."
        ) from None
    check_model_dict(data, shown)
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def check_model_dict(data: object, shown: str = "<dict>") -> None:
    """Validate a model dict: format, version, every field, the content hash.

    Raises
    ------
    InputError
        Naming ``shown`` (the file) and the first problem found.

    Examples
    --------
    >>> check_model_dict({"format": FORMAT, "format_version": 1}, "'m.json'")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: model file 'm.json': the top level lacks the field(s) ['content_sha256', 'qe_nb_version', 'created', 'settings', 'calibration', 'reference']; the file is incomplete.
    """
    where = f"model file {shown}"
    if not isinstance(data, dict):
        raise InputError(f"{where} holds {type(data).__name__}, not a JSON object; is it a qe_nb model file?")
    if data.get("format") != FORMAT:
        raise InputError(f"{where} is not a qe_nb model (its 'format' is {data.get('format')!r}; expected {FORMAT!r}).")
    version = data.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise InputError(
            f"{where} has format_version {version!r}; this qe_nb reads version {FORMAT_VERSION} only. Fit the "
            "model again with this version (qe_nb.fit / `qe-nb fit`), or use the qe_nb version that wrote it "
            f"({data.get('qe_nb_version')!r})."
        )
    for section, keys in REQUIRED.items():
        part = data if not section else data.get(section)
        if not isinstance(part, dict):
            raise InputError(f"{where}: the section {section!r} is missing or not an object.")
        absent = [k for k in keys if k not in part]
        if absent:
            name = "top level" if not section else f"section {section!r}"
            raise InputError(f"{where}: the {name} lacks the field(s) {absent}; the file is incomplete.")
    expected = content_hash(data)
    if data["content_sha256"] != expected:
        raise InputError(
            f"{where}: its content does not match its content_sha256 (stored {str(data['content_sha256'])[:16]}..., "
            f"computed {expected[:16]}...); the file was edited or damaged after qe_nb wrote it. Fit the model "
            "again rather than editing thresholds by hand."
        )
    try:
        parts_from_dict(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{where}: a field has the wrong shape or kind: {exc}.") from None


def parts_from_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """The model's fields (settings, alpha, thresholds DataArray, reference Dataset) from its dict.

    Raises
    ------
    KeyError, TypeError, ValueError
        For malformed fields (:func:`check_model_dict` words them).
    """
    s, c, r = data["settings"], data["calibration"], data["reference"]
    algorithms = _strings(s["algorithms"], "settings.algorithms")
    pairs = s["labels"]
    if not isinstance(pairs, list) or not pairs or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("values"), str) for p in pairs):
        raise TypeError('settings.labels must be a list of {"name": ..., "values": ...} objects')
    labels = {p["name"]: p["values"] for p in pairs}
    label_names = _strings([p["name"] for p in pairs], "settings.labels' names")
    metrics = _strings(s["metrics"], "settings.metrics")
    better = s["higher_is_better"]
    if not isinstance(better, list) or len(better) != len(metrics) or not all(isinstance(b, bool) for b in better):
        raise TypeError("settings.higher_is_better must hold one true/false per metric")
    coords = {"algorithm": np.array(algorithms, dtype=object), "label": np.array(label_names, dtype=object),
              "metric": np.array(metrics),
              "higher_is_better": ("metric", np.array(better, bool))}

    def grid(nested: Any, name: str, dtype: Any = float) -> xr.DataArray:
        return xr.DataArray(nested_to_grid(nested, algorithms, label_names, metrics, name=name).astype(dtype),
                            dims=GROUP_DIMS, coords=coords)

    by = tuple(_strings(c["alpha_by"], "calibration.alpha_by"))
    alpha = alpha_from_dict(c["alpha"])
    if isinstance(alpha, xr.DataArray) and tuple(alpha.dims) != by:
        raise ValueError(f"calibration.alpha is over {tuple(alpha.dims)} but alpha_by is {by}")
    member_rate = np.array([np.nan if r["member_alarm_rate"][a] is None else float(r["member_alarm_rate"][a])
                            for a in algorithms])
    risk = np.asarray(r["risk"], dtype=np.int64)
    if risk.ndim != 1:
        raise ValueError("reference.risk must be a list of alarm counts")
    reference = xr.Dataset(
        {
            "median": grid(r["median"], "reference.median"),
            "mad": grid(r["mad"], "reference.mad"),
            "n_finite": grid(r["n_finite"], "reference.n_finite", np.int64),
            "alarm_rate": grid(r["alarm_rate"], "reference.alarm_rate"),
            "member_alarm_rate": ("algorithm", member_rate),
            "risk": ("reference_case", np.sort(risk)),
        },
        attrs={"n_cases": int(r["n_cases"]), "n_failed_cases": int(r["n_failed_cases"]),
               "mad_scale": float(c["mad_scale"]), "pool": str(c["pool"])},
    )
    thresholds = grid(c["thresholds"], "calibration.thresholds").rename("threshold")
    thresholds.attrs = {"mad_scale": float(c["mad_scale"]), "pool": str(c["pool"])}
    return {
        "thresholds": thresholds,
        "alpha": alpha,
        "by": by,
        "alpha_method": str(c["alpha_method"]),
        "mad_scale": float(c["mad_scale"]),
        "pool": str(c["pool"]),
        "fusion": str(s["fusion"]),
        "metrics": tuple(metrics),
        "labels": {str(k): str(v) for k, v in labels.items()},
        "label_scheme": str(s["label_scheme"]),
        "nsd_tolerance": float(s["nsd_tolerance_mm"]),
        "similarity_mode": str(s["similarity_mode"]),
        "distance_units": str(s["distance_units"]),
        "reference": reference,
        "qe_nb_version": str(data["qe_nb_version"]),
        "created": str(data["created"]),
    }


def _strings(values: Any, name: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{name} must be a list of strings")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} names an entry twice")
    return list(values)

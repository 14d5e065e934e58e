"""A frozen calibration: thresholds fitted once on a reference cohort, applied to new cases.

:func:`fit_alpha` settles the alpha of a calibration (given, per group, or calibrated by the
entropy of the alarm counts); :func:`reference_summary` describes the reference cohort at the
frozen thresholds (number of cases, medians, MADs, alarm rates, the risk distribution);
:func:`assess_cube` judges new cases against the frozen thresholds -- alarms, risk, the
worklist's reasons and the risk's percentile in the reference. The thresholds are those of
:func:`qe_nb.thresholds` on the reference cube (DESIGN section 2: "a frozen model applies exactly
the thresholds ``qe_nb.alarms`` would compute on its reference cohort; a new case never changes
them"). :func:`content_hash` is the sha256 of a dict's canonical JSON, which the model file
carries so that an edited file is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.alarms import robust_cube
from qe_nb.core.calibration import calibrate
from qe_nb.core.checks import (
    DIMS,
    GROUP_DIMS,
    check_alpha,
    check_by,
    check_scores,
    metric_directions,
)
from qe_nb.core.reasons import missing_flags, reason_table, reason_texts
from qe_nb.exceptions import InputError

__all__ = [
    "fit_alpha",
    "alpha_to_dict",
    "alpha_from_dict",
    "apply_thresholds",
    "reference_summary",
    "risk_percentile",
    "assess_cube",
    "content_hash",
    "canonical_json",
    "grid_to_nested",
    "nested_to_grid",
]


def fit_alpha(
    similarity: xr.DataArray | xr.Dataset,
    alpha: float | str | Mapping | xr.DataArray = 0.1,
    *,
    by: str | Sequence[str] | None = None,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
) -> tuple[float | xr.DataArray, tuple[str, ...], str]:
    """The alpha of a calibration, its group dims and how it was chosen.

    Parameters
    ----------
    similarity : xarray.DataArray or xarray.Dataset
        The reference cube (or a scores Dataset holding it).
    alpha : float, "entropy", mapping or xarray.DataArray, default 0.1
        A number (the same for every group of ``by``); ``"entropy"``: calibrated by the entropy
        of the alarm counts (:func:`qe_nb.calibrate`, no ground truth), one per group of ``by``;
        a mapping group -> alpha over the one dim ``by`` names (``{"wt": 0.1, "et": 0.3}`` with
        ``by="label"``); or a DataArray over a subset of (algorithm, label, metric).
    by : str or sequence of str, optional
        The dims alpha varies over (``"label"``, ``("algorithm", "label")``); for a DataArray
        alpha its dims by default.
    mad_scale, pool
        See :func:`qe_nb.thresholds` (used when alpha is calibrated).

    Returns
    -------
    tuple
        ``(alpha, by, method)``: alpha a float (``by == ()``) or a DataArray over ``by``
        aligned to the cube's coords; ``method`` ``"given"`` or ``"entropy"``.

    Raises
    ------
    InputError
        For a bad alpha, ``by``, a mapping without ``by`` or over several dims, a DataArray
        over other dims than ``by``, or a group the mapping does not cover.

    Examples
    --------
    >>> sim = xr.DataArray(np.random.default_rng(0).random((6, 1, 2, 1)), dims=DIMS,
    ...                    coords={"case": list("abcdef"), "algorithm": ["x"], "label": ["wt", "et"],
    ...                            "metric": ["dice"]})
    >>> a, by, how = fit_alpha(sim, {"wt": 0.1, "et": 0.3}, by="label")
    >>> a.values.tolist(), by, how
    ([0.1, 0.3], ('label',), 'given')
    >>> fit_alpha(sim, 0.2)
    (0.2, (), 'given')
    """
    sim = check_scores(similarity)
    dims = check_by(by)
    if isinstance(alpha, str):
        if alpha != "entropy":
            raise InputError(
                f"`alpha` must be a finite number, 'entropy' (calibrated), a mapping group -> alpha or "
                f"a DataArray; got {alpha!r}."
            )
        value = calibrate(sim, objective="entropy", by=dims or None, mad_scale=mad_scale, pool=pool)
        return (value.transpose(*dims) if dims else float(value)), dims, "entropy"
    if isinstance(alpha, Mapping):
        if len(dims) != 1:
            raise InputError(
                "`alpha` given as a mapping group -> alpha needs `by` naming its one dim (e.g. "
                f"by='label'); got by={by!r}."
            )
        keys = [str(k) for k in alpha]
        bad = [k for k, v in alpha.items() if not _is_real(v)]
        if bad:
            raise InputError(f"`alpha`[{bad[0]!r}] must be a finite number; got {alpha[bad[0]]!r}.")
        value = check_alpha(xr.DataArray(np.array([float(v) for v in alpha.values()]), dims=dims,
                                         coords={dims[0]: keys}), sim)
        return value.transpose(*dims), dims, "given"
    if isinstance(alpha, xr.DataArray):
        dims = dims or tuple(str(d) for d in alpha.dims)
        if set(alpha.dims) - set(dims):
            raise InputError(f"`alpha` varies over {tuple(alpha.dims)}, beyond `by`={dims}; pass by={tuple(alpha.dims)}.")
    value = check_alpha(alpha, sim)
    if not dims:
        if isinstance(value, xr.DataArray):
            raise InputError(f"`alpha` varies over {tuple(value.dims)}; pass by={tuple(value.dims)}.")
        return value, (), "given"
    template = xr.DataArray(np.zeros([sim.sizes[d] for d in dims]), dims=dims,
                            coords={d: sim.indexes[d] for d in dims})
    if isinstance(value, xr.DataArray):
        value = value.broadcast_like(template)
    else:
        value = template + value
    return value.transpose(*dims).rename("alpha"), dims, "given"


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def alpha_to_dict(alpha: float | xr.DataArray) -> dict[str, Any]:
    """Alpha as plain data: ``{"value": 0.1}`` or ``{"dims": [...], "coords": {...}, "values": [...]}``.

    Examples
    --------
    >>> alpha_to_dict(0.1)
    {'value': 0.1}
    >>> alpha_to_dict(xr.DataArray([0.1, 0.3], dims="label", coords={"label": ["wt", "et"]}))
    {'dims': ['label'], 'coords': {'label': ['wt', 'et']}, 'values': [0.1, 0.3]}
    """
    if not isinstance(alpha, xr.DataArray):
        return {"value": float(alpha)}
    return {
        "dims": [str(d) for d in alpha.dims],
        "coords": {str(d): [str(c) for c in alpha[d].values] for d in alpha.dims},
        "values": np.asarray(alpha.values, float).tolist(),
    }


def alpha_from_dict(data: Mapping[str, Any]) -> float | xr.DataArray:
    """The inverse of :func:`alpha_to_dict`.

    Examples
    --------
    >>> alpha_from_dict({"dims": ["label"], "coords": {"label": ["wt"]}, "values": [0.2]}).values.tolist()
    [0.2]
    """
    if "value" in data:
        return float(data["value"])
    dims = list(data["dims"])
    return xr.DataArray(np.asarray(data["values"], float), dims=dims,
                        coords={d: list(data["coords"][d]) for d in dims}, name="alpha")


def apply_thresholds(similarity: xr.DataArray | xr.Dataset, thresholds: xr.DataArray) -> xr.DataArray:
    """Alarms of a cube against given thresholds: the rule of :func:`qe_nb.alarms`, thresholds frozen.

    Parameters
    ----------
    similarity : xarray.DataArray or xarray.Dataset
        Scores over (case, algorithm, label, metric), any number of cases.
    thresholds : xarray.DataArray
        Over (algorithm, label, metric), in each metric's units (:func:`qe_nb.thresholds`),
        covering the cube's groups.

    Returns
    -------
    xarray.DataArray
        ``alarms``, bool, canonical dims (case, algorithm, label, metric): ``x < t`` where
        higher is better, ``x > t`` for distances, and every non-finite ``x``.

    Raises
    ------
    InputError
        For a malformed cube, or thresholds that do not cover its groups.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([0.9, 0.7, np.nan]).reshape(3, 1, 1, 1), dims=DIMS,
    ...                    coords={"case": list("abc"), "algorithm": ["x"], "label": ["t"], "metric": ["dice"]})
    >>> t = xr.DataArray(np.full((1, 1, 1), 0.8), dims=GROUP_DIMS,
    ...                  coords={"algorithm": ["x"], "label": ["t"], "metric": ["dice"]})
    >>> apply_thresholds(sim, t).values.ravel().tolist()
    [False, True, True]
    """
    sim = check_scores(similarity)
    sign = np.where(metric_directions(sim), 1.0, -1.0)
    coords = {d: sim.coords[d].values for d in DIMS}
    coords["higher_is_better"] = ("metric", sign > 0)
    flags = _alarm_values(sim.values, aligned_thresholds(thresholds, sim), sign)
    return xr.DataArray(flags, dims=DIMS, coords=coords, name="alarms")


def _alarm_values(values: np.ndarray, limits: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """(case, algorithm, label, metric) alarms: ``s * x < s * t`` or ``x`` not finite."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        below = np.where(finite, values * sign, np.nan) < (limits * sign)[np.newaxis]
    return below | ~finite


def aligned_thresholds(thresholds: xr.DataArray, sim: xr.DataArray) -> np.ndarray:
    """The thresholds as numpy (algorithm, label, metric) in the order of the checked cube ``sim``."""
    if not isinstance(thresholds, xr.DataArray) or set(thresholds.dims) != set(GROUP_DIMS):
        raise InputError(
            "`thresholds` must be a DataArray over (algorithm, label, metric) (qe_nb.thresholds); "
            f"got {getattr(thresholds, 'dims', type(thresholds).__name__)}."
        )
    if tuple(thresholds.dims) == GROUP_DIMS and all(
            thresholds.indexes[d].equals(sim.indexes[d]) for d in GROUP_DIMS):
        return thresholds.values  # already in the cube's order (a model's own assessments)
    try:
        return thresholds.sel({d: sim.indexes[d] for d in GROUP_DIMS}).transpose(*GROUP_DIMS).values
    except KeyError as exc:
        raise InputError(f"`thresholds` do not cover the cube's groups: {exc}.") from None


def reference_summary(
    similarity: xr.DataArray | xr.Dataset,
    thresholds: xr.DataArray,
    *,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
    n_failed_cases: int = 0,
) -> xr.Dataset:
    """What a frozen model remembers of its reference cohort.

    Parameters
    ----------
    similarity : xarray.DataArray or xarray.Dataset
        The reference cube.
    thresholds : xarray.DataArray
        The frozen thresholds (:func:`qe_nb.thresholds` of this cube).
    mad_scale, pool
        As the thresholds were fitted with.
    n_failed_cases : int, default 0
        Reference cases that could not be scored (recorded only).

    Returns
    -------
    xarray.Dataset
        ``median`` and ``mad`` (algorithm, label, metric), in each metric's units (the MAD
        scaled by ``mad_scale``; with ``pool="all"`` the pooled values on every member);
        ``n_finite`` (algorithm, label, metric): the finite values they rest on;
        ``alarm_rate`` (algorithm, label, metric): the share of reference cases that alarm;
        ``member_alarm_rate`` (algorithm): the share of cases with at least one alarm of that
        member; ``risk`` (reference_case): the reference cases' alarm counts, sorted (for
        percentiles). attrs ``n_cases``, ``n_failed_cases``.

    Examples
    --------
    >>> from qe_nb.core.alarms import thresholds as fit_thresholds
    >>> sim = xr.DataArray(np.array([1.0, 0.75, 0.5, 0.875, 0.25]).reshape(5, 1, 1, 1), dims=DIMS,
    ...                    coords={"case": list("abcde"), "algorithm": ["x"], "label": ["t"], "metric": ["dice"]})
    >>> ref = reference_summary(sim, fit_thresholds(sim, 1.0))  # threshold 0.75 - 0.25
    >>> float(ref["median"].squeeze()), float(ref["mad"].squeeze()), float(ref["alarm_rate"].squeeze())
    (0.75, 0.25, 0.2)
    >>> ref["risk"].values.tolist()
    [0, 0, 0, 0, 1]
    """
    rob = robust_cube(similarity, mad_scale, pool=pool)
    sim = rob.similarity
    flags = apply_thresholds(sim, thresholds).values
    n_cases = sim.sizes["case"]
    group = rob.coords_of(*GROUP_DIMS)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = flags.mean(axis=0) if n_cases else np.full(flags.shape[1:], np.nan)
        member_rate = flags.any(axis=(2, 3)).mean(axis=0) if n_cases else np.full(flags.shape[1], np.nan)
    risk = np.sort(flags.sum(axis=(1, 2, 3)).astype(np.int64))
    data = {
        "median": (GROUP_DIMS, rob.median * rob.sign, {"long_name": "median of the reference cases (finite values)"}),
        "mad": (GROUP_DIMS, rob.mad, {"long_name": f"median absolute deviation x {rob.mad_scale:g}"}),
        "n_finite": (GROUP_DIMS, rob.finite.sum(axis=0).astype(np.int64), {"long_name": "finite reference values"}),
        "alarm_rate": (GROUP_DIMS, rate, {"long_name": "share of reference cases that alarm"}),
        "member_alarm_rate": ("algorithm", member_rate,
                              {"long_name": "share of reference cases with an alarm of the member"}),
        "risk": ("reference_case", risk, {"long_name": "alarm counts of the reference cases, sorted"}),
    }
    return xr.Dataset(data, coords=group, attrs={"n_cases": int(n_cases), "n_failed_cases": int(n_failed_cases),
                                                 "mad_scale": float(rob.mad_scale), "pool": rob.pool})


def risk_percentile(risk: np.ndarray | Sequence[int], reference_risk: np.ndarray | Sequence[int]) -> np.ndarray:
    """Each risk's percentile in the reference: the share (in %) of reference cases at most as risky.

    NaN when the reference holds no case.

    Examples
    --------
    >>> risk_percentile([0, 2, 9], [0, 0, 1, 2]).tolist()
    [50.0, 100.0, 100.0]
    """
    ref = np.sort(np.asarray(reference_risk, dtype=float))
    values = np.asarray(risk, dtype=float)
    if ref.size == 0:
        return np.full(values.shape, np.nan)
    return 100.0 * np.searchsorted(ref, values, side="right") / ref.size


def assess_cube(
    similarity: xr.DataArray | xr.Dataset,
    thresholds: xr.DataArray,
    reference: xr.Dataset,
    *,
    missing: xr.DataArray | None = None,
    error: xr.DataArray | None = None,
) -> xr.Dataset:
    """Judge new cases against frozen thresholds.

    Parameters
    ----------
    similarity : xarray.DataArray or xarray.Dataset
        The new cases' scores (case, algorithm, label, metric), scored with the model's
        settings; a scores Dataset brings its ``missing`` and ``error`` variables.
    thresholds : xarray.DataArray
        The frozen thresholds (algorithm, label, metric), metric units.
    reference : xarray.Dataset
        :func:`reference_summary` of the reference cohort (its ``mad`` words how far past a
        threshold an alarm lies; its ``risk`` gives the percentiles).
    missing : xarray.DataArray, optional
        (case, algorithm) bool: candidates without a file (named once in the reasons).
    error : xarray.DataArray, optional
        (case,) str: why a case could not be scored ("" when it was).

    Returns
    -------
    xarray.Dataset
        Over ``case``: ``similarity`` and ``alarms`` (case, algorithm, label, metric),
        ``risk`` (int), ``reasons`` (the worklist's words, worst first, ``"; "`` between
        alarms; ``""`` without alarm), ``percentile`` (the risk's percentile in the
        reference, :func:`risk_percentile`), ``error``, ``missing`` (case, algorithm) and
        ``threshold`` (algorithm, label, metric).

    Examples
    --------
    >>> from qe_nb.core.alarms import thresholds as fit_thresholds
    >>> coords = {"algorithm": ["x"], "label": ["t"], "metric": ["dice"]}
    >>> ref_cube = xr.DataArray(np.array([1.0, 0.75, 0.5, 0.875, 0.25]).reshape(5, 1, 1, 1), dims=DIMS,
    ...                         coords={"case": list("abcde"), **coords})
    >>> limits = fit_thresholds(ref_cube, 1.0)
    >>> new = xr.DataArray(np.array([0.95, 0.375]).reshape(2, 1, 1, 1), dims=DIMS,
    ...                    coords={"case": ["n1", "n2"], **coords})
    >>> out = assess_cube(new, limits, reference_summary(ref_cube, limits))
    >>> out["risk"].values.tolist(), out["reasons"].values.tolist(), out["percentile"].values.tolist()
    ([0, 1], ['', 'x: t Dice 0.38 < 0.5'], [80.0, 100.0])
    """
    if isinstance(similarity, xr.Dataset):
        if missing is None and "missing" in similarity:
            missing = similarity["missing"]
        if error is None and "error" in similarity:
            error = similarity["error"]
    sim = check_scores(similarity)
    limits = aligned_thresholds(thresholds, sim)
    mad = aligned_thresholds(reference["mad"], sim)
    higher = metric_directions(sim)
    sign = np.where(higher, 1.0, -1.0)
    flags = _alarm_values(sim.values, limits, sign)
    cases = [str(c) for c in sim.coords["case"].values]
    if isinstance(missing, xr.DataArray) and missing.dims == ("case", "algorithm") and all(
            missing.indexes[d].equals(sim.indexes[d]) for d in ("case", "algorithm")):
        gone = missing.values.astype(bool)  # already in the cube's order (no alignment needed)
    else:
        gone = missing_flags(missing, sim)
    risk = flags.sum(axis=(1, 2, 3)).astype(np.int64)
    rows = np.flatnonzero(risk > 0)
    texts = [""] * len(cases)
    if rows.size:
        table = reason_table(sim, flags, limits, higher.tolist(), rows, mad=mad, missing=gone)
        texts = reason_texts(table, cases, max_reasons=None)
    errors = [""] * len(cases)
    if error is not None:
        aligned = error if error.indexes["case"].equals(sim.indexes["case"]) else error.sel(case=sim.indexes["case"])
        errors = [str(e) for e in aligned.values]
    data = {
        "similarity": (DIMS, sim.values, dict(sim.attrs)),
        "alarms": (DIMS, flags, {"long_name": "alarms at the model's frozen thresholds"}),
        "risk": ("case", risk, {"long_name": "alarm count"}),
        # str arrays, not object ones: xarray inspects every element of an object array
        "reasons": ("case", np.array(texts, dtype=str), {"long_name": "the alarms in words, worst first"}),
        "percentile": ("case", risk_percentile(risk, reference["risk"].values),
                       {"long_name": "share of reference cases at most as risky (%)"}),
        "error": ("case", np.array(errors, dtype=str),
                  {"long_name": "why the case could not be scored ('' when it was)"}),
        "missing": (("case", "algorithm"), np.zeros(flags.shape[:2], bool) if gone is None else gone,
                    {"long_name": "the candidate has no file"}),
        "threshold": (GROUP_DIMS, limits, {"long_name": "the model's frozen thresholds"}),
    }
    coords: dict[str, Any] = {d: sim.coords[d].values for d in DIMS}
    coords["higher_is_better"] = ("metric", higher)
    for name, coord in sim.coords.items():
        if name not in coords and coord.dims and set(coord.dims) <= set(DIMS):
            coords[name] = (coord.dims, coord.values)
    return xr.Dataset(data, coords=coords)


def grid_to_nested(values: xr.DataArray) -> dict[str, Any]:
    """A DataArray over (algorithm, label, metric) as nested plain dicts; NaN as None.

    Examples
    --------
    >>> da = xr.DataArray(np.array([[[0.5, np.nan]]]), dims=GROUP_DIMS,
    ...                   coords={"algorithm": ["x"], "label": ["t"], "metric": ["dice", "hd95"]})
    >>> grid_to_nested(da)
    {'x': {'t': {'dice': 0.5, 'hd95': None}}}
    """
    ordered = values.transpose(*GROUP_DIMS)
    alg, lab, met = ([str(v) for v in ordered.coords[d].values] for d in GROUP_DIMS)
    arr = ordered.values
    return {
        a: {b: {m: _plain_number(arr[i, j, k]) for k, m in enumerate(met)} for j, b in enumerate(lab)}
        for i, a in enumerate(alg)
    }


def nested_to_grid(nested: Mapping[str, Any], algorithms: Sequence[str], labels: Sequence[str],
                   metrics: Sequence[str], *, name: str) -> np.ndarray:
    """The inverse of :func:`grid_to_nested` as a float array (algorithm, label, metric).

    Raises
    ------
    KeyError, TypeError, ValueError
        For a missing entry or a value that is not a number or None (the caller words it).
    """
    out = np.empty((len(algorithms), len(labels), len(metrics)))
    for i, a in enumerate(algorithms):
        for j, b in enumerate(labels):
            for k, m in enumerate(metrics):
                value = nested[a][b][m]
                if value is None:
                    out[i, j, k] = np.nan
                elif _is_real(value):
                    out[i, j, k] = float(value)
                else:
                    raise TypeError(f"{name}[{a!r}][{b!r}][{m!r}] is {value!r}, not a number or null")
    return out


def _plain_number(value: float) -> float | int | None:
    value = float(value)
    return None if math.isnan(value) else value


def canonical_json(data: Mapping[str, Any]) -> str:
    """The canonical JSON text of plain data: sorted keys, no spaces, ASCII, no NaN.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [0.1, None]})
    '{"a":[0.1,null],"b":1}'
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def content_hash(data: Mapping[str, Any]) -> str:
    """sha256 (hex) of :func:`canonical_json` of ``data`` without its ``content_sha256`` key.

    Examples
    --------
    >>> content_hash({"a": 1}) == content_hash({"a": 1, "content_sha256": "anything"})
    True
    >>> content_hash({"a": 1})[:12]
    '015abd7f5cc5'
    """
    body = {k: v for k, v in data.items() if k != "content_sha256"}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()

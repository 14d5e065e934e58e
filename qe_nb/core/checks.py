"""Input checks shared by the core modules (alarms, calibration, triage).

Every public function of the core runs its arguments through one of these checks first, so
that a wrong input fails early with a message that names the argument, shows what came in
and says what was expected. Warnings about inputs that are legal but give unreliable
thresholds (:class:`~qe_nb.exceptions.UnreliableThresholdWarning`) are raised here as well.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.core.metric_specs import METRICS
from qe_nb.exceptions import InputError, UnreliableThresholdWarning

__all__ = [
    "DIMS",
    "GROUP_DIMS",
    "OBJECTIVES",
    "POOLS",
    "check_similarity",
    "check_scores",
    "metric_directions",
    "check_alpha",
    "check_alphas",
    "check_mad_scale",
    "check_pool",
    "check_quality",
    "check_case_scores",
    "check_objective",
    "check_by",
    "check_risk",
    "check_alarms",
    "warn_unreliable_thresholds",
]

DIMS: tuple[str, ...] = ("case", "algorithm", "label", "metric")
"""The dims of a similarity cube, in the order the core works in."""

GROUP_DIMS: tuple[str, ...] = ("algorithm", "label", "metric")
"""The dims over which thresholds (and alpha) may vary."""

OBJECTIVES: tuple[str, ...] = ("entropy", "pearson", "combined")
"""The calibration objectives of :func:`qe_nb.calibrate`."""

POOLS: tuple[str, ...] = ("algorithm", "all")
"""How thresholds pool the cube: per member (the paper) or over all members at once."""

NORMAL_MAD_SCALE = 1.4826
"""The consistency constant that makes the MAD estimate a normal standard deviation (R's mad())."""


def _shorten(values: Iterable, limit: int = 5) -> str:
    values = list(values)
    text = ", ".join(repr(_plain(v)) for v in values[:limit])
    if len(values) > limit:
        text += f", ... ({len(values)} in all)"
    return "[" + text + "]"


def _plain(value):
    """numpy scalars -> Python scalars, so that messages read ``'a'`` and not ``np.str_('a')``."""
    return value.item() if isinstance(value, np.generic) else value


def _describe(value) -> str:
    if isinstance(value, xr.DataArray):
        return f"a DataArray with dims {tuple(value.dims)}"
    if isinstance(value, xr.Dataset):
        return f"a Dataset with variables {sorted(map(str, value.data_vars))}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    text = repr(_plain(value))
    if text.startswith("<"):
        return type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def check_similarity(similarity, *, name: str = "similarity") -> xr.DataArray:
    """Return a similarity cube as float64 with dims ``(case, algorithm, label, metric)``.

    Dims may come in any order; the result is transposed to the canonical order. Dims
    without coordinates get the positions as text (``'0'``, ``'1'``, ...), except ``metric``,
    whose ids are needed to know each metric's direction (unless a ``higher_is_better``
    coordinate is given).

    Parameters
    ----------
    similarity : xarray.DataArray
        Fusion-vs-candidate scores, dims ``case, algorithm, label, metric`` in any order.
    name : str
        The argument's name, for messages.

    Returns
    -------
    xarray.DataArray
        A new float64 DataArray, dims ``(case, algorithm, label, metric)``.

    Raises
    ------
    InputError
        For anything but a DataArray, missing or extra dims, non-numeric data, duplicate
        coordinate values or a ``metric`` dim without ids.

    Examples
    --------
    >>> da = xr.DataArray(np.ones((1, 1, 1, 2)), dims=("metric", "case", "algorithm", "label"))
    >>> check_similarity(da)
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `similarity` must have dims (case, algorithm, label, metric); got ('metric', 'case', 'algorithm', 'label') with the 'metric' dim lacking ids: give it coordinates such as ['dice', 'hd95'].
    >>> da = xr.DataArray(np.ones((2, 1, 1, 1)), dims=("metric", "case", "algorithm", "label"),
    ...                   coords={"metric": ["dice", "hd"]})
    >>> check_similarity(da).dims
    ('case', 'algorithm', 'label', 'metric')
    """
    if isinstance(similarity, xr.Dataset):
        raise InputError(
            f"`{name}` must be a DataArray with dims (case, algorithm, label, metric); got "
            f"{_describe(similarity)} (pass scores['similarity'])."
        )
    if not isinstance(similarity, xr.DataArray):
        raise InputError(
            f"`{name}` must be a DataArray with dims (case, algorithm, label, metric); got "
            f"{type(similarity).__name__}."
        )
    dims = tuple(map(str, similarity.dims))
    if set(dims) != set(DIMS) or len(dims) != len(DIMS):
        raise InputError(f"`{name}` must have dims (case, algorithm, label, metric); got {dims}.")
    kind = similarity.dtype.kind
    if kind not in "iuf":
        raise InputError(
            f"`{name}` must hold numbers (float or int); got dtype {similarity.dtype}."
        )
    if "metric" not in similarity.coords and "higher_is_better" not in similarity.coords:
        raise InputError(
            f"`{name}` must have dims (case, algorithm, label, metric); got {dims} with the "
            "'metric' dim lacking ids: give it coordinates such as ['dice', 'hd95']."
        )
    out = similarity.transpose(*DIMS).astype(np.float64)
    for dim in DIMS:
        if dim not in out.coords:
            out = out.assign_coords({dim: [str(i) for i in range(out.sizes[dim])]})
        index = out.indexes[dim]
        if index.has_duplicates:
            dup = index[index.duplicated()].unique()
            raise InputError(
                f"`{name}` has duplicate {dim} coordinates {_shorten(dup)}; every {dim} must "
                "appear once."
            )
    if out.sizes["case"] == 0:
        raise InputError(f"`{name}` holds no case; the 'case' dim has length 0.")
    return out


def check_scores(scores, *, name: str = "similarity") -> xr.DataArray:
    """Return the similarity cube of a scores Dataset, or check a similarity DataArray.

    Parameters
    ----------
    scores : xarray.Dataset or xarray.DataArray
        A scores Dataset holding a ``similarity`` variable, or the similarity cube itself.
    name : str
        The argument's name, for messages.

    Returns
    -------
    xarray.DataArray
        See :func:`check_similarity`.

    Raises
    ------
    InputError
        For a Dataset without ``similarity`` or any error of :func:`check_similarity`.

    Examples
    --------
    >>> ds = xr.Dataset({"quality": ("case", [0.9])})
    >>> check_scores(ds)
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `similarity` must be a DataArray with dims (case, algorithm, label, metric) or a scores Dataset holding one as 'similarity'; got a Dataset with variables ['quality'].
    """
    if isinstance(scores, xr.Dataset):
        if "similarity" not in scores.data_vars:
            raise InputError(
                f"`{name}` must be a DataArray with dims (case, algorithm, label, metric) or a "
                f"scores Dataset holding one as 'similarity'; got {_describe(scores)}."
            )
        scores = scores["similarity"]
    return check_similarity(scores, name=name)


def metric_directions(similarity: xr.DataArray) -> np.ndarray:
    """Whether higher is better, per metric of a similarity cube (bool array over ``metric``).

    Looked up, in order: the cube's ``higher_is_better`` coordinate on ``metric``, then the
    metric registry :data:`qe_nb.core.metrics.METRICS` (the one table of directions).

    Raises
    ------
    InputError
        For a metric id none of them knows.

    Examples
    --------
    >>> da = xr.DataArray(np.zeros((1, 1, 1, 2)), dims=DIMS, coords={"metric": ["dice", "hd95"]})
    >>> metric_directions(da).tolist()
    [True, False]
    """
    if "higher_is_better" in similarity.coords:
        coord = similarity.coords["higher_is_better"]
        if coord.dims != ("metric",):
            raise InputError(
                f"the `higher_is_better` coordinate must lie on the 'metric' dim; got dims {coord.dims}."
            )
        values = coord.values
        if values.dtype != bool:
            try:
                ok = all(v in (0, 1, True, False) for v in values.tolist())
            except TypeError:
                ok = False
            if not ok:
                raise InputError(
                    f"the `higher_is_better` coordinate must hold booleans; got {values.tolist()!r}."
                )
        return values.astype(bool)
    out = []
    for metric in similarity.coords["metric"].values.tolist():
        spec = METRICS.get(metric) if isinstance(metric, str) else None
        if spec is None:
            raise InputError(
                f"Unknown metric {metric!r}: cannot tell whether higher is better; expected one "
                f"of {sorted(METRICS)} or a boolean `higher_is_better` "
                "coordinate on 'metric', e.g. similarity.assign_coords(higher_is_better=('metric', [True]))."
            )
        out.append(spec.higher_is_better)
    return np.array(out, dtype=bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_alpha(alpha, similarity: xr.DataArray | None = None, *, name: str = "alpha"):
    """Return ``alpha`` as a float, or as a DataArray aligned to the cube's groups.

    Parameters
    ----------
    alpha : float or xarray.DataArray
        A finite number, or a DataArray over any subset of ``(algorithm, label, metric)``
        holding finite numbers (per-group alpha).
    similarity : xarray.DataArray, optional
        A checked cube; when given, a DataArray ``alpha`` must cover its coordinates and is
        reindexed to them (extra entries are dropped; dims without coordinates must match
        in length and take the cube's).
    name : str
        The argument's name, for messages.

    Returns
    -------
    float or xarray.DataArray

    Raises
    ------
    InputError
        For strings, bools, NaN, inf, arrays, DataArrays over other dims or holding
        non-finite values, or not covering the cube.

    Examples
    --------
    >>> check_alpha(np.float32(0.5))
    0.5
    >>> check_alpha("high")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `alpha` must be a finite number or a DataArray over (algorithm, label, metric); got 'high'.
    """
    expected = f"`{name}` must be a finite number or a DataArray over (algorithm, label, metric)"
    if isinstance(alpha, xr.DataArray):
        extra = [d for d in alpha.dims if d not in GROUP_DIMS]
        if extra:
            raise InputError(f"{expected}; got {_describe(alpha)}.")
        if alpha.dtype.kind not in "iuf":
            raise InputError(f"{expected}; got a DataArray of dtype {alpha.dtype}.")
        values = alpha.values.astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(
                f"{expected}; got a DataArray holding {int(bad.sum())} non-finite value(s) "
                f"(e.g. {_plain(values[bad].flat[0])!r})."
            )
        if alpha.ndim == 0:
            return float(values)
        out = xr.DataArray(values, dims=alpha.dims, coords={d: alpha.coords[d] for d in alpha.dims if d in alpha.coords}, name="alpha")
        if similarity is None:
            return out
        for dim in out.dims:
            wanted = similarity.indexes[dim]
            if dim not in alpha.coords:
                if out.sizes[dim] != len(wanted):
                    raise InputError(
                        f"`{name}` has {out.sizes[dim]} entries along {dim!r} without coordinates; "
                        f"`similarity` has {len(wanted)} ({_shorten(wanted)}). Give `{name}` "
                        f"{dim} coordinates."
                    )
                out = out.assign_coords({dim: wanted})
                continue
            have = out.indexes[dim]
            if have.has_duplicates:
                raise InputError(
                    f"`{name}` has duplicate {dim} coordinates {_shorten(have[have.duplicated()].unique())}."
                )
            missing = wanted.difference(have, sort=False)
            if len(missing):
                raise InputError(
                    f"`{name}` has no value for {dim} {_shorten(missing)}; it must cover every "
                    f"{dim} of `similarity` ({_shorten(wanted)})."
                )
            out = out.reindex({dim: wanted})
        return out
    if _is_number(alpha) and math.isfinite(float(alpha)):
        return float(alpha)
    raise InputError(f"{expected}; got {_describe(alpha)}.")


def check_alphas(alphas, *, name: str = "alphas") -> np.ndarray:
    """Return a grid of alpha values as a 1-D float64 array (finite, distinct, non-empty).

    Examples
    --------
    >>> check_alphas([0, 0.5]).tolist()
    [0.0, 0.5]
    >>> check_alphas([0, 0])
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `alphas` must hold distinct values; got 0.0 more than once.
    """
    expected = f"`{name}` must be a non-empty sequence of finite numbers"
    if isinstance(alphas, (str, bytes)) or _is_number(alphas) or isinstance(alphas, (bool, np.bool_)):
        raise InputError(f"{expected}; got {_describe(alphas)}.")
    try:
        items = list(np.asarray(alphas).ravel()) if isinstance(alphas, (np.ndarray, xr.DataArray)) else list(alphas)
    except TypeError:
        raise InputError(f"{expected}; got {_describe(alphas)}.") from None
    if not items:
        raise InputError(f"{expected}; got an empty sequence.")
    for item in items:
        if not _is_number(item) or not math.isfinite(float(item)):
            raise InputError(f"{expected}; got {_describe(item)} among them.")
    out = np.array([float(v) for v in items], dtype=np.float64)
    uniq, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        raise InputError(
            f"`{name}` must hold distinct values; got {float(uniq[counts > 1][0])!r} more than once."
        )
    return out


def check_mad_scale(mad_scale, *, name: str = "mad_scale") -> float:
    """Return the MAD scale factor: a positive finite number, or ``"normal"`` (1.4826).

    Examples
    --------
    >>> check_mad_scale("normal")
    1.4826
    >>> check_mad_scale(0)
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `mad_scale` must be a positive finite number or 'normal' (1.4826, R's mad()); got 0.
    """
    if isinstance(mad_scale, str) and mad_scale.strip().lower() == "normal":
        return NORMAL_MAD_SCALE
    if _is_number(mad_scale) and math.isfinite(float(mad_scale)) and float(mad_scale) > 0:
        return float(mad_scale)
    raise InputError(
        f"`{name}` must be a positive finite number or 'normal' (1.4826, R's mad()); got "
        f"{_describe(mad_scale)}."
    )


def check_pool(pool, *, name: str = "pool") -> str:
    """Return ``pool`` if it is one of :data:`POOLS`, else raise :class:`InputError`.

    Examples
    --------
    >>> check_pool("all")
    'all'
    """
    if isinstance(pool, str) and pool in POOLS:
        return pool
    raise InputError(
        f"`{name}` must be one of {list(POOLS)} ('algorithm': thresholds per member, as the "
        f"paper; 'all': one per label and metric over all members); got {_describe(pool)}."
    )


def check_case_scores(values, cases: pd.Index | None = None, *, name: str) -> xr.DataArray:
    """Return a per-case score (quality, risk, a baseline) as a float DataArray over ``case``.

    A pandas Series indexed by case ids is accepted too. When ``cases`` is given, the cases
    must be exactly those (any order) and the result follows their order.

    Raises
    ------
    InputError
        For other types, other dims, non-numeric data, or cases that do not match.

    Examples
    --------
    >>> q = xr.DataArray([0.9, 0.5], dims="case", coords={"case": ["b", "a"]})
    >>> check_case_scores(q, pd.Index(["a", "b"]), name="quality").values.tolist()
    [0.5, 0.9]
    """
    expected = f"`{name}` must be a DataArray over (case,) holding numbers"
    if isinstance(values, pd.Series):
        values = xr.DataArray(values.to_numpy(), dims="case", coords={"case": values.index.to_numpy()})
    if not isinstance(values, xr.DataArray):
        raise InputError(f"{expected}; got {type(values).__name__}.")
    if values.dims != ("case",):
        hint = ""
        if "case" in values.dims:
            hint = (
                " Select or reduce the other dims first, e.g. "
                "scores['quality'].sel(metric='dice').mean('label')."
            )
        raise InputError(f"{expected}; got dims {tuple(values.dims)}.{hint}")
    if values.dtype.kind not in "iufb":
        raise InputError(f"{expected}; got dtype {values.dtype}.")
    out = xr.DataArray(
        values.values.astype(np.float64),
        dims=("case",),
        coords={"case": values.coords["case"].values if "case" in values.coords else np.arange(values.size).astype(str)},
        name=values.name,
    )
    index = out.indexes["case"]
    if index.has_duplicates:
        raise InputError(f"`{name}` has duplicate case coordinates {_shorten(index[index.duplicated()].unique())}.")
    if cases is None:
        return out
    missing = cases.difference(index, sort=False)
    extra = index.difference(cases, sort=False)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"lacks {len(missing)} case(s) of `similarity`: {_shorten(missing)}")
        if len(extra):
            parts.append(f"has {len(extra)} case(s) not in `similarity`: {_shorten(extra)}")
        raise InputError(f"`{name}` must cover the same cases as `similarity`; it " + " and ".join(parts) + ".")
    return out.reindex(case=cases)


def check_quality(quality, cases: pd.Index | None = None, *, name: str = "quality") -> xr.DataArray:
    """Check a quality measure per case (e.g. the fusion's true Dice); see :func:`check_case_scores`.

    Examples
    --------
    >>> check_quality(xr.DataArray([[1.0]], dims=("case", "label")))
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `quality` must be a DataArray over (case,) holding numbers; got dims ('case', 'label'). Select or reduce the other dims first, e.g. scores['quality'].sel(metric='dice').mean('label').
    """
    return check_case_scores(quality, cases, name=name)


def check_objective(objective, *, name: str = "objective") -> str:
    """Return a calibration objective, one of :data:`OBJECTIVES`.

    Examples
    --------
    >>> check_objective("dice")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: Unknown `objective` 'dice'; expected one of ['entropy', 'pearson', 'combined'].
    """
    if isinstance(objective, str) and objective in OBJECTIVES:
        return objective
    raise InputError(f"Unknown `{name}` {_describe(objective)}; expected one of {list(OBJECTIVES)}.")


def check_by(by, *, name: str = "by") -> tuple[str, ...]:
    """Return the group dims for per-group alpha: ``()`` for None, else a subset of (algorithm, label, metric).

    Examples
    --------
    >>> check_by("label")
    ('label',)
    >>> check_by(("case",))
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `by` must be None or a subset of ('algorithm', 'label', 'metric'); got ('case',).
    """
    if by is None:
        return ()
    items = (by,) if isinstance(by, str) else by
    expected = f"`{name}` must be None or a subset of {GROUP_DIMS}"
    if not isinstance(items, Sequence) and not isinstance(items, (set, frozenset)):
        raise InputError(f"{expected}; got {_describe(by)}.")
    items = tuple(items)
    if not all(isinstance(d, str) and d in GROUP_DIMS for d in items) or len(set(items)) != len(items):
        raise InputError(f"{expected}; got {items!r}.")
    return items


def check_alarms(alarms, *, name: str = "alarms") -> xr.DataArray:
    """Check a boolean alarm cube: a DataArray with a ``case`` dim and bool data.

    Examples
    --------
    >>> check_alarms(xr.DataArray([0.5], dims="case"))
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `alarms` must be a boolean DataArray with a 'case' dim (the output of alarms()); got dtype float64.
    """
    expected = f"`{name}` must be a boolean DataArray with a 'case' dim (the output of alarms())"
    if not isinstance(alarms, xr.DataArray):
        raise InputError(f"{expected}; got {type(alarms).__name__}.")
    if "case" not in alarms.dims:
        raise InputError(f"{expected}; got dims {tuple(alarms.dims)}.")
    extra = [d for d in alarms.dims if d not in (*DIMS, "alpha")]
    if extra:
        raise InputError(f"{expected}; got dims {tuple(alarms.dims)} (unexpected {extra}).")
    if alarms.dtype != bool:
        raise InputError(f"{expected}; got dtype {alarms.dtype}.")
    return alarms


def check_risk(risk, *, name: str = "risk") -> np.ndarray:
    """Return alarm counts as a 1-D int64 array (non-negative whole numbers).

    Examples
    --------
    >>> check_risk([0, 2, 1]).tolist()
    [0, 2, 1]
    >>> check_risk([0.5])
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `risk` must hold alarm counts (non-negative whole numbers) over cases; got 0.5 among them.
    """
    expected = f"`{name}` must hold alarm counts (non-negative whole numbers) over cases"
    if isinstance(risk, xr.DataArray):
        if risk.ndim != 1:
            raise InputError(f"{expected}; got {_describe(risk)}.")
        arr = risk.values
    elif isinstance(risk, (str, bytes)) or _is_number(risk):
        raise InputError(f"{expected}; got {_describe(risk)}.")
    else:
        try:
            arr = np.asarray(risk)
        except (TypeError, ValueError):
            raise InputError(f"{expected}; got {type(risk).__name__}.") from None
    if arr.ndim != 1:
        raise InputError(f"{expected}; got {_describe(arr)}.")
    if arr.size == 0:
        raise InputError(f"{expected}; got no case.")
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{expected}; got dtype {arr.dtype}.")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.floor(arr)) if arr.dtype.kind == "f" else arr < 0
    if bad.any():
        raise InputError(f"{expected}; got {_plain(arr[bad][0])!r} among them.")
    return arr.astype(np.int64)


def warn_unreliable_thresholds(
    n_cases: int, mad: np.ndarray, coords: dict[str, Sequence], *, stacklevel: int = 3
) -> None:
    """Warn when thresholds rest on fewer than three cases or on groups without spread.

    Parameters
    ----------
    n_cases : int
        The number of cases.
    mad : ndarray, shape (algorithm, label, metric)
        The MAD per group (NaN where a group has no finite value).
    coords : dict
        ``algorithm``, ``label``, ``metric`` coordinate values, to name the groups.
    stacklevel : int
        Passed to :func:`warnings.warn`; the default points at the caller of the public
        function that called this one.
    """
    if n_cases < 3:
        warnings.warn(
            f"`similarity` holds {n_cases} case(s); median and MAD over fewer than three cases "
            "are not reliable thresholds.",
            UnreliableThresholdWarning,
            stacklevel=stacklevel,
        )
    for mask, what in (
        (mad == 0, "a MAD of 0 (at least half of the cases share one value), so the threshold is the median for every alpha"),
        (np.isnan(mad), "no finite value, so every case raises an alarm"),
    ):
        if not mask.any():
            continue
        groups = [
            f"(algorithm={_plain(coords['algorithm'][a])!r}, label={_plain(coords['label'][b])!r}, "
            f"metric={_plain(coords['metric'][c])!r})"
            for a, b, c in zip(*np.nonzero(mask), strict=True)
        ]
        listed = ", ".join(groups[:5]) + (f" and {len(groups) - 5} more" if len(groups) > 5 else "")
        warnings.warn(
            f"{len(groups)} group(s) have {what}: {listed}.",
            UnreliableThresholdWarning,
            stacklevel=stacklevel,
        )

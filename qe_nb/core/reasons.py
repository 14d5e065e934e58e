"""Why a case alarms, as a table and in words a person can read.

:func:`reasons` lists every alarm of a cohort (or of some cases) as one row: the case, the
member, the structure, the metric, the value, the threshold it crossed, the direction and how
far beyond the threshold it lies in MAD units (``excess``), with the worded ``text`` the
worklist shows. A candidate without a file (``missing``) is one row, not one per metric.
:func:`alarm_grid` counts one case's alarms per member and metric (for a compact display);
:func:`reason_texts` words the table's rows per case, the worst first, with ``+N more``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.core.alarms import robust_cube
from qe_nb.core.checks import DIMS, check_alpha
from qe_nb.exceptions import InputError

__all__ = ["alarm_reason", "reasons", "reason_table", "reason_texts", "alarm_grid", "missing_flags",
           "REASON_COLUMNS"]

_DISPLAY = {"dice": "Dice", "jaccard": "Jaccard", "nsd": "NSD"}

REASON_COLUMNS = ("case", "algorithm", "label", "metric", "value", "threshold", "direction", "excess",
                  "n_alarms", "text")
"""The columns of :func:`reasons`."""


def _pair(value: float, threshold: float) -> tuple[str, str]:
    """Format a value and its threshold with just enough digits to tell them apart."""
    value, threshold = value + 0.0, threshold + 0.0  # no "-0" in the text a radiologist reads
    for digits in range(2, 8):
        a, b = f"{value:.{digits}g}", f"{threshold:.{digits}g}"
        if a != b:
            return a, b
    return f"{value:.8g}", f"{threshold:.8g}"


def alarm_reason(metric: str, value: float, threshold: float, higher_is_better: bool) -> str:
    """One alarm in words, as the worklist's ``reasons`` show it.

    Examples
    --------
    >>> alarm_reason("dice", 0.41, 0.83, True)
    'Dice 0.41 < 0.83'
    >>> alarm_reason("hd95", float("inf"), 4.0, False)
    'hd95 inf (empty)'
    """
    name = _DISPLAY.get(metric, metric)
    if math.isnan(value):
        return f"{name} missing (NaN)"
    if math.isinf(value):
        # by the package's rule, inf arises when exactly one of the two masks is empty
        return f"{name} {'inf' if value > 0 else '-inf'} (empty)"
    a, b = _pair(value, threshold)
    return f"{name} {a} {'<' if higher_is_better else '>'} {b}"


def missing_flags(missing: xr.DataArray | None, sim: xr.DataArray) -> np.ndarray | None:
    """``scores["missing"]`` as a (case, algorithm) bool array in the order of the checked cube ``sim``."""
    if missing is None:
        return None
    if not isinstance(missing, xr.DataArray) or set(missing.dims) != {"case", "algorithm"}:
        raise InputError(
            "`missing` must be the bool DataArray over (case, algorithm) of a scores cube "
            f"(scores['missing']); got {getattr(missing, 'dims', type(missing).__name__)}."
        )
    try:
        flags = missing.sel(case=sim.indexes["case"], algorithm=sim.indexes["algorithm"])
    except KeyError as exc:
        raise InputError(f"`missing` does not cover the cases and algorithms of `similarity`: {exc}.") from None
    return flags.transpose("case", "algorithm").values.astype(bool)


def reason_table(
    sim: xr.DataArray,
    flags: np.ndarray,
    limits: np.ndarray,
    better: list[bool],
    rows: Iterable[int],
    *,
    mad: np.ndarray | None = None,
    missing: np.ndarray | None = None,
) -> pd.DataFrame:
    """The alarms of the cases ``rows`` (positions along ``case``) as a table, worst first per case.

    The building block of :func:`reasons` and :func:`qe_nb.worklist`: ``sim`` in canonical
    dims, ``flags`` its alarms, ``limits`` the thresholds (algorithm, label, metric) in the
    metrics' units, ``better`` per metric, ``mad`` (algorithm, label, metric; scaled) for the
    ``excess`` (NaN without it), ``missing`` (case, algorithm) bool.
    """
    values = sim.values
    cases = [str(c) for c in sim.coords["case"].values]
    algorithms = [str(a) for a in sim.coords["algorithm"].values]
    labels = [str(lab) for lab in sim.coords["label"].values]
    metrics = [str(m) for m in sim.coords["metric"].values]
    sign = np.where(np.asarray(better, bool), 1.0, -1.0)
    records: list[tuple] = []
    for c in rows:
        c = int(c)
        gone = set() if missing is None else set(np.flatnonzero(missing[c] & flags[c].any(axis=(1, 2))).tolist())
        per_case: list[tuple] = []
        for a in sorted(gone):
            n = int(flags[c, a].sum())
            per_case.append((cases[c], algorithms[a], "", "", math.nan, math.nan, "missing", math.inf, n,
                             f"{algorithms[a]}: no file (missing candidate, {n} alarm{'s' * (n != 1)})"))
        for a, lab, m in zip(*np.nonzero(flags[c]), strict=True):
            if a in gone:
                continue
            value, limit = float(values[c, a, lab, m]), float(limits[a, lab, m])
            if not math.isfinite(value):
                excess = math.inf
            elif mad is None:
                excess = math.nan
            else:
                gap, scale = sign[m] * (limit - value), float(mad[a, lab, m])
                excess = gap / scale if scale > 0 else (math.inf if gap > 0 else 0.0)
            per_case.append((cases[c], algorithms[a], labels[lab], metrics[m], value, limit,
                             "<" if better[m] else ">", excess, 1,
                             f"{algorithms[a]}: {labels[lab]} {alarm_reason(metrics[m], value, limit, better[m])}"))
        if mad is not None:  # stable: ties keep the (algorithm, label, metric) order
            per_case.sort(key=lambda r: -r[7] if not math.isnan(r[7]) else math.inf)
        records.extend(per_case)
    table = pd.DataFrame.from_records(records, columns=list(REASON_COLUMNS))
    return table.astype({"value": float, "threshold": float, "excess": float, "n_alarms": np.int64})


def reason_texts(table: pd.DataFrame, cases: Iterable[str], *, max_reasons: int | None = 3) -> list[str]:
    """Per case (in the order given), its reasons joined by ``"; "``, the first ``max_reasons``
    rows of the table then ``+N more``; ``""`` for a case without a row.

    Examples
    --------
    >>> t = pd.DataFrame({"case": ["a", "a", "a"], "text": ["x: t Dice 0.1 < 0.8", "y: t hd95 9 > 3",
    ...                   "z: t Dice 0.5 < 0.8"]})
    >>> reason_texts(t, ["a", "b"], max_reasons=2)
    ['x: t Dice 0.1 < 0.8; y: t hd95 9 > 3; +1 more', '']
    """
    if max_reasons is not None and (isinstance(max_reasons, bool) or not isinstance(max_reasons, (int, np.integer))
                                    or max_reasons < 1):
        raise InputError(f"`max_reasons` must be a positive int or None (all); got {max_reasons!r}.")
    grouped = {k: list(v) for k, v in table.groupby("case", sort=False)["text"]} if len(table) else {}
    out = []
    for case in cases:
        texts = grouped.get(case, [])
        if max_reasons is not None and len(texts) > max_reasons:
            texts = [*texts[:max_reasons], f"+{len(texts) - max_reasons} more"]
        out.append("; ".join(texts))
    return out


def reasons(
    similarity: xr.DataArray | xr.Dataset,
    alpha: float | xr.DataArray = 0.0,
    *,
    pool: str = "algorithm",
    mad_scale: float | str = 1.0,
    cases: Iterable[str] | None = None,
    missing: xr.DataArray | None = None,
) -> pd.DataFrame:
    """Every alarm as one row: which member, structure and metric, how far past which threshold.

    Parameters
    ----------
    similarity : xarray.DataArray or xarray.Dataset
        Fusion-vs-candidate scores (case, algorithm, label, metric), or a scores Dataset (its
        ``missing`` variable is then used unless ``missing`` is given).
    alpha, pool, mad_scale
        See :func:`qe_nb.alarms` (use :func:`qe_nb.run_alpha` for the run's alpha).
    cases : iterable of str, optional
        Only these cases (in this order); by default every case with an alarm, in cube order.
    missing : xarray.DataArray, optional
        ``scores["missing"]``: a candidate without a file becomes one row (``direction``
        ``"missing"``) instead of one per structure and metric.

    Returns
    -------
    pandas.DataFrame
        Columns ``case``, ``algorithm``, ``label``, ``metric``, ``value``, ``threshold``,
        ``direction`` (``"<"``: an alarm below the threshold, higher is better; ``">"``: above
        it, for distances; ``"missing"``), ``excess`` (how far past the threshold in MADs;
        ``inf`` for a missing, empty or infinite value), ``n_alarms`` (1, or the alarms of a
        missing candidate) and ``text`` (``"isen-20: enhancing_tumor Dice 0.41 < 0.75"``).
        Within a case the rows are sorted by ``excess``, largest first.

    Raises
    ------
    InputError
        For a malformed cube, alpha or ``missing``, or an unknown case.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([[0.9, 2.0], [0.8, 3.0], [0.4, np.inf]]).reshape(3, 1, 1, 2),
    ...                    dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": ["a", "b", "c"], "algorithm": ["isen-20"],
    ...                            "label": ["et"], "metric": ["dice", "hd95"]})
    >>> table = reasons(sim, 0.0)
    >>> table[["case", "metric", "direction", "text"]].values.tolist()
    [['b', 'hd95', '>', 'isen-20: et hd95 3 > 2.5'], ['c', 'hd95', '>', 'isen-20: et hd95 inf (empty)'], ['c', 'dice', '<', 'isen-20: et Dice 0.4 < 0.8']]
    >>> table["excess"].round(6).tolist()  # MADs past the threshold: hd95 MAD 0.5, Dice MAD 0.1
    [1.0, inf, 4.0]
    """
    if missing is None and isinstance(similarity, xr.Dataset) and "missing" in similarity:
        missing = similarity["missing"]
    rob = robust_cube(similarity, mad_scale, pool=pool)
    alpha_values = rob.alpha_array(check_alpha(alpha, rob.similarity))
    rob.warn(stacklevel=3)
    flags = rob.alarm_values(alpha_values)
    limits = rob.signed_threshold(alpha_values) * rob.sign
    index = rob.similarity.indexes["case"]
    if cases is None:
        rows = np.flatnonzero(flags.any(axis=(1, 2, 3)))
    else:
        wanted = [str(c) for c in cases]
        unknown = [c for c in wanted if c not in index]
        if unknown:
            raise InputError(f"`cases` names cases not in `similarity`: {unknown[:5]}.")
        rows = np.array([index.get_loc(c) for c in wanted], dtype=np.int64)
    return reason_table(rob.similarity, flags, limits, rob.higher_is_better.tolist(), rows, mad=rob.mad,
                        missing=missing_flags(missing, rob.similarity))


def alarm_grid(
    similarity: xr.DataArray | xr.Dataset,
    alpha: float | xr.DataArray,
    case: str,
    *,
    pool: str = "algorithm",
    mad_scale: float | str = 1.0,
) -> pd.DataFrame:
    """One case's alarms counted per member (rows) and metric (columns), over the structures.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([[0.9, 2.0], [0.8, 3.0], [0.4, np.inf]]).reshape(3, 1, 1, 2),
    ...                    dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": ["a", "b", "c"], "algorithm": ["isen-20"],
    ...                            "label": ["et"], "metric": ["dice", "hd95"]})
    >>> alarm_grid(sim, 0.0, "c").to_dict()
    {'dice': {'isen-20': 1}, 'hd95': {'isen-20': 1}}
    """
    rob = robust_cube(similarity, mad_scale, pool=pool)
    index = rob.similarity.indexes["case"]
    if not isinstance(case, str) or case not in index:
        raise InputError(f"Unknown `case` {case!r}; expected one of the cube's {len(index)} cases, e.g. {list(index[:3])}.")
    flags = rob.alarm_values(rob.alpha_array(check_alpha(alpha, rob.similarity)))[index.get_loc(case)]
    return pd.DataFrame(
        flags.sum(axis=1).astype(np.int64),
        index=pd.Index(rob.similarity.coords["algorithm"].values, name="algorithm"),
        columns=pd.Index(rob.similarity.coords["metric"].values, name="metric"),
    )


assert DIMS == ("case", "algorithm", "label", "metric")  # the canonical order reason_table reads

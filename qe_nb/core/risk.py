"""Ground-truth-free risk scores side by side, and how well each finds the bad segmentations.

:func:`risk_scores` turns one scores Dataset into several risk scores, higher = riskier, per
case or per candidate (case x member): the paper's alarm count (the default everywhere else
in the package), a soft alarm count, the mean similarity to the fusion, the disagreement
among members, the spread of member volumes and STAPLE's estimated member performance.
:func:`evaluate_risk` measures each against an *independent* reference (a gold standard, a
synthetic cohort's ground truth) with bootstrap confidence intervals. Agreement among the
members is what every score is built from, so it can never also judge them (DESIGN §2).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.core.alarms import RobustCube, robust_cube
from qe_nb.core.checks import check_alpha
from qe_nb.core.statistics import auroc_rows, case_quality, percentile_interval, spearman_rows
from qe_nb.exceptions import InputError

__all__ = ["LEVELS", "RISK_SCORES", "SOFT_CAP", "risk_scores", "evaluate_risk"]

LEVELS: tuple[str, ...] = ("case", "candidate")
"""What a risk score ranks: whole cases, or each member's candidate of a case."""

RISK_SCORES: tuple[str, ...] = (
    "alarm_count", "soft_count", "mean_similarity", "pairwise_disagreement", "volume_cv",
    "staple_disagreement",
)
"""The scores :func:`risk_scores` computes, in the order of its Dataset."""

SOFT_CAP: float = 3.0
"""The most one cell (member, label, metric) adds to the soft count, in MAD units.

Three is the end of the alpha range over which thresholds are ever set
(:data:`qe_nb.core.calibration.ALPHA_RANGE`) and the usual robust outlier cut (values more
than about three MADs out are outliers whatever the data). It is fixed a priori, not tuned
on any cohort: it keeps one catastrophic cell (an empty candidate, whose distances are
infinite) from outweighing every other alarm of the case.
"""

_FORMULAS = {
    "alarm_count": "sum of alarms (qe_nb.alarms at alpha) over members, labels and metrics",
    "soft_count": "sum over cells of min(cap, (t - s x) / MAD) where s x < t; cap where MAD = 0 "
                  "or x not finite",
    "mean_similarity": "-mean Dice(candidate, fusion) over labels (and members)",
    "pairwise_disagreement": "1 - mean Dice(member a, member b) over pairs a != b and labels",
    "volume_cv": "std / mean of member volumes per label (population std), mean over labels",
    "staple_disagreement": "1 - mean of STAPLE's estimated sensitivity and specificity",
}


def _check_level(level: object) -> str:
    if isinstance(level, str) and level in LEVELS:
        return level
    raise InputError(f"`level` must be one of {list(LEVELS)}; got {level!r}.")


def _soft_cells(rob: RobustCube, alpha: float | np.ndarray) -> np.ndarray:
    """Per cell, how far beyond its threshold in MAD units, capped at :data:`SOFT_CAP`."""
    threshold = rob.signed_threshold(alpha)[np.newaxis]
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = (threshold - rob.signed) / rob.mad[np.newaxis]
    below = rob.alarm_values(alpha)
    # MAD 0 (or no finite value): any alarm is as far beyond as the cap; non-finite x too
    excess = np.where(np.isfinite(excess), excess, SOFT_CAP)
    return np.where(below, np.clip(excess, 0.0, SOFT_CAP), 0.0)


def _dice(da: xr.DataArray, where: str) -> xr.DataArray:
    if "metric" not in da.dims or "dice" not in da.coords["metric"].values.tolist():
        raise InputError(f"`scores[{where!r}]` needs a 'dice' entry on its 'metric' dim.")
    return da.sel(metric="dice", drop=True)


def _nanmean(values: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Mean over the non-NaN values (NaN where there is none), without a warning."""
    count = np.sum(~np.isnan(values), axis=axis)
    total = np.nansum(values, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _pairwise(pairwise: xr.DataArray, cases, algorithms, level: str) -> np.ndarray:
    dice = _dice(pairwise, "pairwise")
    expected = {"case", "algorithm", "algorithm_b", "label"}
    if set(dice.dims) != expected:
        raise InputError(
            "`scores['pairwise']` must have dims (case, algorithm, algorithm_b, label, metric); "
            f"got {tuple(pairwise.dims)}."
        )
    dice = dice.sel(case=cases, algorithm=algorithms, algorithm_b=algorithms)
    values = dice.transpose("case", "algorithm", "algorithm_b", "label").values.astype(np.float64)
    eye = np.eye(len(algorithms), dtype=bool)[None, :, :, None]
    values = np.where(eye, np.nan, values)  # a member against itself is no disagreement
    axes = (1, 2, 3) if level == "case" else (2, 3)
    return 1.0 - _nanmean(values, axes)


def _volume_cv(volume: xr.DataArray, cases, algorithms, level: str) -> np.ndarray:
    if set(volume.dims) != {"case", "algorithm", "label"}:
        raise InputError(f"`scores['volume']` must have dims (case, algorithm, label); got {tuple(volume.dims)}.")
    v = volume.sel(case=cases, algorithm=algorithms).transpose("case", "algorithm", "label").values
    v = v.astype(np.float64)
    mean = v.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        if level == "case":
            cv = np.where(mean[:, 0] > 0, v.std(axis=1) / mean[:, 0], 0.0)  # all empty: agree
            return _nanmean(cv, (1,))
        deviation = np.where(mean > 0, np.abs(v - mean) / mean, 0.0)
    return _nanmean(deviation, (2,))


def _staple(performance: xr.DataArray, cases, algorithms, level: str) -> np.ndarray:
    if not {"case", "algorithm"} <= set(performance.dims):
        raise InputError(
            "`scores['staple_performance']` must have dims (case, algorithm, ...); got "
            f"{tuple(performance.dims)}."
        )
    p = performance.sel(case=cases, algorithm=algorithms)
    rest = [d for d in p.dims if d not in ("case", "algorithm")]
    values = p.transpose("case", "algorithm", *rest).values.astype(np.float64)
    axes = tuple(range(1 if level == "case" else 2, values.ndim))
    return 1.0 - (_nanmean(values, axes) if axes else values)


def risk_scores(
    scores: xr.Dataset | xr.DataArray,
    *,
    alpha: float | xr.DataArray = 0.1,
    level: str = "case",
    pool: str = "algorithm",
    mad_scale: float | str = 1.0,
) -> xr.Dataset:
    """Every ground-truth-free risk score of a cohort, higher = riskier, side by side.

    Parameters
    ----------
    scores : xarray.Dataset or xarray.DataArray
        The scores Dataset of :func:`qe_nb.score` (or its ``similarity`` alone). Used:
        ``similarity`` (case, algorithm, label, metric), and when present ``pairwise``
        (case, algorithm, algorithm_b, label, metric: member-vs-member scores), ``volume``
        (case, algorithm, label: member volumes) and ``staple_performance`` (case,
        algorithm, ...: STAPLE's estimated sensitivity and specificity of each member;
        every other dim is averaged).
    alpha : float or xarray.DataArray, default 0.1
        See :func:`qe_nb.alarms` (0.1 is the paper's choice).
    level : {"case", "candidate"}, default "case"
        ``"case"``: one value per case (which images to review). ``"candidate"``: one per
        case and member (which member's segmentation is wrong).
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`qe_nb.thresholds`.
    mad_scale : float or "normal", default 1.0
        See :func:`qe_nb.thresholds`.

    Returns
    -------
    xarray.Dataset
        Over ``case`` (or ``case`` x ``algorithm``), one float variable per score of
        :data:`RISK_SCORES` that the inputs allow, each with a ``formula`` attr. ``attrs``:
        ``level``, ``pool``, ``mad_scale``, ``soft_cap``, ``alpha`` (when a number), and
        ``skipped`` / ``skipped_reasons``: the scores left out and why.

    Raises
    ------
    InputError
        For a malformed cube, alpha, pool or mad_scale, an unknown ``level``, or an
        optional variable with the wrong dims.

    Warns
    -----
    UnreliableThresholdWarning
        See :func:`qe_nb.thresholds`.

    Notes
    -----
    With ``s = +1`` for higher-is-better metrics and ``-1`` for distances, ``t`` the
    sign-adjusted threshold ``median - alpha MAD`` of each (member, label, metric) group
    (pooled over members with ``pool="all"``), and sums over labels and metrics (and members
    at case level):

    - ``alarm_count`` = number of cells with ``s x < t`` or ``x`` not finite: the paper's
      risk (:func:`qe_nb.risk` of :func:`qe_nb.alarms`).
    - ``soft_count`` = sum of ``min(C, (t - s x) / MAD)`` over the alarming cells, ``C`` =
      :data:`SOFT_CAP` = 3; a cell alarming with MAD 0, or with a non-finite ``x``, adds
      ``C``. It orders the cases of one alarm count by how far out their alarms are.
    - ``mean_similarity`` = ``-mean Dice(candidate, fusion)`` over labels (and members).
    - ``pairwise_disagreement`` = ``1 - mean Dice(a, b)`` over ordered member pairs
      ``a != b`` and labels; at candidate level over the other members ``b``.
    - ``volume_cv`` = per label, ``std(v) / mean(v)`` over the member volumes ``v``
      (population std; 0 when every member is empty), averaged over labels; at candidate
      level ``|v_a - mean(v)| / mean(v)``, whose root mean square over members is the CV.
    - ``staple_disagreement`` = ``1 -`` the mean of STAPLE's estimated sensitivity and
      specificity (over labels and members at case level).

    NaN values (a missing score) are left out of the means; a mean over nothing is NaN.

    References
    ----------
    Kofler F. et al. (2021), Front. Neurosci. 15:752780; Warfield S. K. et al. (2004),
    STAPLE, IEEE TMI 23(7).

    Examples
    --------
    One member over five cases: Dice median 0.7, MAD 0.1, threshold 0.7 at alpha 0; case d
    is one MAD below it, case e six (capped at three).

    >>> sim = xr.DataArray(np.array([0.9, 0.8, 0.7, 0.6, 0.1]).reshape(5, 1, 1, 1),
    ...                    dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": list("abcde"), "algorithm": ["x"], "label": ["t"],
    ...                            "metric": ["dice"]})
    >>> ds = risk_scores(sim, alpha=0.0)
    >>> ds.alarm_count.values.tolist(), ds.soft_count.values.round(6).tolist()
    ([0.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0, 3.0])
    >>> ds.mean_similarity.values.tolist()
    [-0.9, -0.8, -0.7, -0.6, -0.1]
    """
    level = _check_level(level)
    rob = robust_cube(scores, mad_scale, pool=pool)
    alpha = check_alpha(alpha, rob.similarity)
    rob.warn()
    alpha_values = rob.alpha_array(alpha)
    sim = rob.similarity
    cases = sim.coords["case"].values
    algorithms = sim.coords["algorithm"].values
    axes = (1, 2, 3) if level == "case" else (2, 3)
    dims = ("case",) if level == "case" else ("case", "algorithm")
    data: dict[str, np.ndarray] = {
        "alarm_count": rob.alarm_values(alpha_values).sum(axis=axes).astype(np.float64),
        "soft_count": _soft_cells(rob, alpha_values).sum(axis=axes),
    }
    skipped: dict[str, str] = {}
    if "dice" in sim.coords["metric"].values.tolist():
        dice = sim.sel(metric="dice").values.astype(np.float64)  # (case, algorithm, label)
        data["mean_similarity"] = -_nanmean(dice, axes[:-1] if level == "case" else (2,))
    else:
        skipped["mean_similarity"] = "the similarity cube has no 'dice' metric"
    optional = {
        "pairwise_disagreement": ("pairwise", _pairwise, "score(..., pairwise=True) adds it"),
        "volume_cv": ("volume", _volume_cv, "the scoring pipeline adds member volumes"),
        "staple_disagreement": ("staple_performance", _staple, "STAPLE's member estimates"),
    }
    for name, (variable, compute, hint) in optional.items():
        if isinstance(scores, xr.Dataset) and variable in scores:
            data[name] = compute(scores[variable], cases, algorithms, level)
        else:
            skipped[name] = f"no `{variable}` variable in the scores ({hint})"
    coords = {d: sim.coords[d].values for d in dims}
    variables = {
        name: xr.DataArray(values, dims=dims, coords=coords, name=name, attrs={"formula": _FORMULAS[name]})
        for name, values in data.items()
    }
    attrs: dict = {"level": level, "pool": rob.pool, "mad_scale": rob.mad_scale, "soft_cap": SOFT_CAP,
                   "skipped": list(skipped), "skipped_reasons": list(skipped.values())}
    if not isinstance(alpha, xr.DataArray):
        attrs["alpha"] = float(alpha)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _truth_values(truth: xr.DataArray | xr.Dataset, cases, algorithms, level: str) -> np.ndarray:
    """The reference quality per unit, aligned with the risk scores, NaN where unknown."""
    if isinstance(truth, xr.Dataset):
        if level == "case":
            if "quality" not in truth:
                raise InputError("`truth` as a scores Dataset needs a `quality` variable (fusion vs reference).")
            truth = case_quality(truth["quality"], "dice")
        else:
            if "candidate_quality" not in truth:
                raise InputError(
                    "`truth` as a scores Dataset needs a `candidate_quality` variable (candidate vs reference)."
                )
            truth = _dice(truth["candidate_quality"], "candidate_quality").mean("label", skipna=False)
    want = ("case",) if level == "case" else ("case", "algorithm")
    if not isinstance(truth, xr.DataArray) or set(truth.dims) != set(want):
        raise InputError(
            f"`truth` must be a DataArray over {want} (at level {level!r}: "
            f"{'the fusion' if level == 'case' else 'each candidate'}'s Dice to the reference) or a "
            f"scores Dataset; got {getattr(truth, 'dims', type(truth).__name__)}."
        )
    index = {"case": cases} if level == "case" else {"case": cases, "algorithm": algorithms}
    for dim, wanted in index.items():
        have = pd.Index(truth.coords[dim].values)
        missing = pd.Index(wanted).difference(have)
        if len(missing):
            raise InputError(f"`truth` lacks {len(missing)} {dim}(s) of the risk scores, e.g. {missing[0]!r}.")
    return truth.sel(index).transpose(*want).values.astype(np.float64)


def _worst(truth: np.ndarray, fraction: float) -> np.ndarray:
    """Rows of ``truth`` -> the units at or below the ``fraction`` quantile (inverted CDF)."""
    valid = ~np.isnan(truth)
    cut = np.full(truth.shape[:-1] + (1,), np.nan)
    rows = valid.any(axis=-1)
    if rows.any():
        cut[rows] = np.nanquantile(truth[rows], fraction, axis=-1, method="inverted_cdf", keepdims=True)
    with np.errstate(invalid="ignore"):
        return valid & (truth <= cut)


def evaluate_risk(
    risk_scores: xr.Dataset,
    truth: xr.DataArray | xr.Dataset,
    *,
    level: str | None = None,
    worst_fraction: float = 0.25,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """How well each risk score finds the worst segmentations, with bootstrap CIs.

    Parameters
    ----------
    risk_scores : xarray.Dataset
        The output of :func:`risk_scores` (any Dataset of scores over ``case`` or ``case`` x
        ``algorithm``, higher = riskier).
    truth : xarray.DataArray or xarray.Dataset
        The independent reference quality, higher = better: over ``case`` at case level (the
        fusion's Dice to the reference), over ``case`` x ``algorithm`` at candidate level
        (each candidate's Dice to the reference). A scores Dataset gives them from its
        ``quality`` (:func:`qe_nb.core.statistics.case_quality` of ``dice``) or
        ``candidate_quality`` (``dice`` averaged over labels). Units whose truth is not finite
        are left out.
    level : {"case", "candidate"}, optional
        Default: ``risk_scores.attrs["level"]``, else from its dims.
    worst_fraction : float, default 0.25
        The units at or below this quantile of the truth (``inverted_cdf``: the fewest worst
        units that make up at least this share, ties included) are the positives of the AUROC.
    n_boot : int, default 1000
        Bootstrap resamples of the *cases* (at candidate level a case brings all its
        candidates); 0 for no CIs.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``: the result is deterministic.

    Returns
    -------
    pandas.DataFrame
        Index ``(score, statistic)``, statistics ``auroc`` (worst vs the rest; 1 = perfect,
        0.5 = chance) and ``spearman_rho`` (score vs truth; -1 when the score ranks the units
        perfectly, since higher risk should mean lower quality). Columns ``value``,
        ``ci_low``, ``ci_high`` (95 % percentile interval; NaN without resamples) and ``n``
        (units used). ``attrs``: ``level``, ``n_cases``, ``n_units``, ``n_worst``,
        ``worst_fraction``, ``n_boot``, ``seed``.

    Raises
    ------
    InputError
        For a bad level, fraction, n_boot or seed, or truth that does not cover the units.

    Notes
    -----
    AUROC and Spearman's rho are :func:`qe_nb.core.statistics.auroc_rows` and
    :func:`~qe_nb.core.statistics.spearman_rows`, as in :func:`qe_nb.triage_performance`.
    The worst set is recomputed in every resample. A unit without a score (NaN) is left out
    of that score only.

    Examples
    --------
    >>> cases = list("abcdefgh")
    >>> rs = xr.Dataset({"alarm_count": ("case", [7.0, 6, 5, 4, 3, 2, 1, 0])}, coords={"case": cases})
    >>> dice = xr.DataArray(np.linspace(0.1, 0.9, 8), dims="case", coords={"case": cases})
    >>> table = evaluate_risk(rs, dice, n_boot=0)
    >>> table["value"].tolist()
    [1.0, -1.0]
    """
    if level is None:
        level = risk_scores.attrs.get("level", "candidate" if "algorithm" in risk_scores.dims else "case")
    level = _check_level(level)
    if not isinstance(risk_scores, xr.Dataset) or not risk_scores.data_vars:
        raise InputError(f"`risk_scores` must be a Dataset of scores (qe_nb.risk_scores); got {type(risk_scores).__name__}.")
    want = ("case",) if level == "case" else ("case", "algorithm")
    bad = [n for n, v in risk_scores.data_vars.items() if set(v.dims) != set(want)]
    if bad:
        raise InputError(f"`risk_scores` variables {bad} are not over {want} (level={level!r}).")
    if isinstance(worst_fraction, bool) or not isinstance(worst_fraction, (int, float)) or not 0 < worst_fraction < 1:
        raise InputError(f"`worst_fraction` must be a number in (0, 1); got {worst_fraction!r}.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise InputError(f"`n_boot` must be a non-negative int; got {n_boot!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"`seed` must be an int; got {seed!r}.")
    cases = risk_scores.coords["case"].values
    algorithms = risk_scores.coords["algorithm"].values if level == "candidate" else None
    q = _truth_values(truth, cases, algorithms, level).reshape(len(cases), -1)
    q = np.where(np.isfinite(q), q, np.nan)
    n_cases, per_case = q.shape
    flat_q = q.ravel()
    worst = _worst(flat_q, float(worst_fraction))
    if n_boot:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n_cases, size=(n_boot, n_cases))
        units = (draws[..., None] * per_case + np.arange(per_case)).reshape(n_boot, -1)
        boot_q = flat_q[units]
        boot_worst = _worst(boot_q, float(worst_fraction))
    rows = []
    for name, variable in risk_scores.data_vars.items():
        s = variable.transpose(*want).values.astype(np.float64).ravel()
        s = np.where(np.isnan(flat_q), np.nan, s)
        n = int(np.count_nonzero(~np.isnan(s)))
        point = {"auroc": float(auroc_rows(s, worst)), "spearman_rho": float(spearman_rows(s, flat_q))}
        interval = {key: (math.nan, math.nan) for key in point}
        if n_boot:
            boot_s = s[units]
            interval["auroc"] = percentile_interval(auroc_rows(boot_s, boot_worst))
            interval["spearman_rho"] = percentile_interval(spearman_rows(boot_s, boot_q))
        for key, value in point.items():
            rows.append((name, key, value, *interval[key], n))
    table = pd.DataFrame(rows, columns=["score", "statistic", "value", "ci_low", "ci_high", "n"])
    table = table.set_index(["score", "statistic"])
    table.attrs = {
        "level": level, "n_cases": int(n_cases), "n_units": int(np.count_nonzero(~np.isnan(flat_q))),
        "n_worst": int(worst.sum()), "worst_fraction": float(worst_fraction), "n_boot": int(n_boot),
        "seed": int(seed),
    }
    return table

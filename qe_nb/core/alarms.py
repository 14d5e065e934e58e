"""Robust per-group thresholds, alarms and the risk score (Kofler et al. 2021).

Per ensemble member (algorithm), per structure (label) and per metric, over all cases:

    threshold = median - alpha * MAD

computed on the finite values only, after turning lower-is-better metrics (distances) into
their additive inverse. With ``pool="all"`` the median and MAD of a (label, metric) are taken
over every member's values at once and the one threshold applies to every member: for
cohorts whose member identity is not stable across cases (crowd workers, readers in an
arbitrary order per case). A candidate raises an alarm where its (sign-adjusted) metric lies
*strictly* below the threshold, and always where the metric is not finite (``inf`` for an
empty candidate next to a non-empty fusion, ``NaN`` for a missing score). The alarms of a
case summed are its risk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.core.checks import (
    DIMS,
    GROUP_DIMS,
    check_alarms,
    check_alpha,
    check_mad_scale,
    check_pool,
    check_scores,
    metric_directions,
    warn_unreliable_thresholds,
)
from qe_nb.core.statistics import median_mad
from qe_nb.exceptions import InputError

__all__ = ["thresholds", "alarms", "risk", "threshold_table"]


@dataclass(frozen=True)
class RobustCube:
    """A checked cube with its sign-adjusted values and robust statistics per group.

    Package-internal: the one pass over the cube that :func:`thresholds`, :func:`alarms`,
    :mod:`qe_nb.core.calibration` and :mod:`qe_nb.core.triage` share. Build it with
    :func:`robust_cube`.
    """

    similarity: xr.DataArray  # canonical dims (case, algorithm, label, metric), float64
    input_dims: tuple[str, ...]
    signed: np.ndarray  # (case, algorithm, label, metric); +x or -x; NaN where not finite
    finite: np.ndarray  # (case, algorithm, label, metric) bool
    sign: np.ndarray  # (metric,) +1.0 higher is better, -1.0 lower is better
    median: np.ndarray  # (algorithm, label, metric), of the signed values
    mad: np.ndarray  # (algorithm, label, metric), scaled; NaN where no finite value
    mad_scale: float
    pool: str = "algorithm"  # "all": median and MAD pooled over the members, broadcast

    @property
    def higher_is_better(self) -> np.ndarray:
        return self.sign > 0

    def coords_of(self, *dims: str) -> dict:
        """The cube's coords over ``dims`` (non-index ones too) plus ``higher_is_better``."""
        sim = self.similarity
        out: dict = {d: sim.coords[d].values for d in dims}
        for name, coord in sim.coords.items():
            if name not in out and coord.dims and set(coord.dims) <= set(dims):
                out[name] = (coord.dims, coord.values)
        if "metric" in dims:
            out["higher_is_better"] = ("metric", self.higher_is_better)
        return out

    def warn(self, *, stacklevel: int = 4) -> None:
        warn_unreliable_thresholds(
            self.similarity.sizes["case"],
            self.mad,
            {d: self.similarity.coords[d].values for d in GROUP_DIMS},
            stacklevel=stacklevel,
        )

    def alpha_array(self, alpha: float | xr.DataArray) -> np.ndarray | float:
        """alpha as a float or a numpy array broadcast to (algorithm, label, metric)."""
        if not isinstance(alpha, xr.DataArray):
            return alpha
        template = xr.DataArray(
            np.zeros(self.median.shape), dims=GROUP_DIMS,
            coords={d: self.similarity.indexes[d] for d in GROUP_DIMS},
        )
        return alpha.broadcast_like(template).transpose(*GROUP_DIMS).values

    def signed_threshold(self, alpha: float | np.ndarray) -> np.ndarray:
        """median - alpha * MAD, in sign-adjusted units, (algorithm, label, metric)."""
        return self.median - alpha * self.mad

    def alarm_values(self, alpha: float | np.ndarray) -> np.ndarray:
        """The boolean alarm cube (case, algorithm, label, metric) as numpy."""
        with np.errstate(invalid="ignore"):
            below = self.signed < self.signed_threshold(alpha)[np.newaxis]
        return below | ~self.finite


def robust_cube(
    similarity: xr.DataArray | xr.Dataset, mad_scale: float | str = 1.0, *, pool: str = "algorithm"
) -> RobustCube:
    """Check a scores cube and compute median and MAD of every group (no warnings here).

    Package-internal (see :class:`RobustCube`); the statistics are
    :func:`qe_nb.core.statistics.median_mad` of the sign-adjusted values over ``case``
    (``pool="algorithm"``) or over ``case`` and ``algorithm`` together (``pool="all"``, the
    result broadcast to every algorithm).
    """
    input_dims = tuple(map(str, similarity.dims)) if isinstance(similarity, xr.DataArray) else DIMS
    sim = check_scores(similarity)
    scale = check_mad_scale(mad_scale)
    pool = check_pool(pool)
    sign = np.where(metric_directions(sim), 1.0, -1.0)
    values = sim.values
    finite = np.isfinite(values)
    signed = np.where(finite, values * sign, np.nan)
    if pool == "all":
        n_case, n_alg, n_lab, n_met = signed.shape
        median, mad = median_mad(signed.reshape(n_case * n_alg, n_lab, n_met), scale=scale, axis=0)
        median = np.broadcast_to(median, (n_alg, n_lab, n_met)).copy()
        mad = np.broadcast_to(mad, (n_alg, n_lab, n_met)).copy()
    else:
        median, mad = median_mad(signed, scale=scale, axis=0)
    return RobustCube(sim, input_dims, signed, finite, sign, median, mad, scale, pool)


def thresholds(
    similarity: xr.DataArray,
    alpha: float | xr.DataArray = 0.0,
    *,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
) -> xr.DataArray:
    """Robust alarm thresholds per (algorithm, label, metric), in each metric's own units.

    Parameters
    ----------
    similarity : xarray.DataArray
        Fusion-vs-candidate scores, dims ``(case, algorithm, label, metric)`` in any order
        (or a scores Dataset holding it as ``similarity``).
    alpha : float or xarray.DataArray, default 0.0
        How many MADs below the median the threshold lies; a DataArray over any subset of
        ``(algorithm, label, metric)`` sets it per group.
    mad_scale : float or "normal", default 1.0
        Factor applied to the raw median absolute deviation; ``"normal"`` is 1.4826.
    pool : {"algorithm", "all"}, default "algorithm"
        ``"algorithm"``: one median and MAD per member, as the paper. ``"all"``: one median
        and MAD per (label, metric) over every member's finite values of every case, the
        same threshold for every member (alpha may still vary per member), for cohorts
        whose member identity is not stable (crowd workers, readers in arbitrary order).

    Returns
    -------
    xarray.DataArray
        ``threshold``, dims ``(algorithm, label, metric)``, with the ``higher_is_better``
        coordinate on ``metric``. NaN where a group has no finite value. ``attrs`` record
        ``mad_scale`` and ``pool``.

    Raises
    ------
    InputError
        For a malformed cube, alpha or mad_scale (see ``qe_nb.core.checks``).

    Warns
    -----
    UnreliableThresholdWarning
        With fewer than three cases, or for groups whose MAD is 0 or that hold no finite value.

    Notes
    -----
    Over the finite values ``x`` of a group, with ``s = +1`` where higher is better and
    ``s = -1`` where lower is better (distances):

    .. math:: t = s \\cdot (\\mathrm{median}(s x) - \\alpha \\cdot c \\cdot \\mathrm{MAD}(s x))

    with ``c = mad_scale``. For Dice this is ``median - alpha * MAD`` and an alarm is raised
    where ``dice < t``; for a distance such as ``hd95`` it is ``median + alpha * MAD`` and an
    alarm is raised where ``hd95 > t``. Non-finite values always alarm.

    References
    ----------
    Kofler F. et al. (2021), Robust, Primitive, and Unsupervised Quality Estimation for
    Segmentation Ensembles. Front. Neurosci. 15:752780.

    Examples
    --------
    Dice of one algorithm over five cases: median 0.8, MAD 0.1.

    >>> dice = [0.9, 0.8, 0.7, 0.85, 0.6]
    >>> hd = [2.0, 3.0, 4.0, 10.0, 3.0]
    >>> sim = xr.DataArray(np.array([dice, hd]).T.reshape(5, 1, 1, 2), dims=DIMS,
    ...                    coords={"case": list("abcde"), "algorithm": ["x"], "label": ["tumor"],
    ...                            "metric": ["dice", "hd"]})
    >>> thresholds(sim, 1.0).sel(algorithm="x", label="tumor").values.round(6).tolist()
    [0.7, 4.0]

    Two members over three cases: their own medians are 0.8 and 0.5; pooled, the median of
    all six values, 0.65, is both members' threshold.

    >>> two = xr.DataArray(np.array([[0.9, 0.6], [0.8, 0.5], [0.7, 0.4]]).reshape(3, 2, 1, 1),
    ...                    dims=DIMS, coords={"case": list("abc"), "algorithm": ["x", "y"],
    ...                                       "label": ["tumor"], "metric": ["dice"]})
    >>> thresholds(two, 0.0).values.ravel().round(6).tolist()
    [0.8, 0.5]
    >>> thresholds(two, 0.0, pool="all").values.ravel().round(6).tolist()
    [0.65, 0.65]
    """
    rob = robust_cube(similarity, mad_scale, pool=pool)
    alpha = check_alpha(alpha, rob.similarity)
    rob.warn()
    signed = rob.signed_threshold(rob.alpha_array(alpha))
    return xr.DataArray(
        signed * rob.sign,
        dims=GROUP_DIMS,
        coords=rob.coords_of(*GROUP_DIMS),
        name="threshold",
        attrs={"mad_scale": rob.mad_scale, "pool": rob.pool},
    )


def alarms(
    similarity: xr.DataArray,
    alpha: float | xr.DataArray = 0.0,
    *,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
) -> xr.DataArray:
    """Flag every candidate whose score is an outlier for its algorithm, label and metric.

    Parameters
    ----------
    similarity : xarray.DataArray
        Fusion-vs-candidate scores, dims ``(case, algorithm, label, metric)`` in any order.
    alpha : float or xarray.DataArray, default 0.0
        See :func:`thresholds`; a DataArray over any subset of ``(algorithm, label, metric)``
        gives per-group alpha by broadcasting.
    mad_scale : float or "normal", default 1.0
        See :func:`thresholds`.
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`thresholds`: per-member thresholds, or one per label and metric.

    Returns
    -------
    xarray.DataArray
        ``alarms``, bool, with the dims (in the same order) and coords of ``similarity``.

    Raises
    ------
    InputError
        For a malformed cube, alpha or mad_scale.

    Warns
    -----
    UnreliableThresholdWarning
        See :func:`thresholds`.

    Notes
    -----
    An alarm is raised where ``s * x < s * t`` (strictly; ``t`` from :func:`thresholds`),
    i.e. ``x < t`` for higher-is-better metrics and ``x > t`` for distances, and always where
    ``x`` is not finite. With ``alpha = 0`` about half the cases alarm per group.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([0.9, 0.8, 0.7, 0.85, np.nan]).reshape(5, 1, 1, 1),
    ...                    dims=DIMS, coords={"case": list("abcde"), "algorithm": ["x"],
    ...                                       "label": ["tumor"], "metric": ["dice"]})
    >>> alarms(sim, 0.0).values.ravel().tolist()  # median of the finite values: 0.825
    [False, True, True, False, True]
    """
    rob = robust_cube(similarity, mad_scale, pool=pool)
    alpha = check_alpha(alpha, rob.similarity)
    rob.warn()
    flags = rob.alarm_values(rob.alpha_array(alpha))
    out = xr.DataArray(flags, dims=DIMS, coords=rob.coords_of(*DIMS), name="alarms")
    return out.transpose(*rob.input_dims)


def risk(alarms: xr.DataArray) -> xr.DataArray:
    """The alarm count of every case: the risk score that orders the worklist.

    Parameters
    ----------
    alarms : xarray.DataArray
        Boolean alarms with a ``case`` dim (the output of :func:`alarms`).

    Returns
    -------
    xarray.DataArray
        ``risk``, int64, over ``case`` (and ``alpha`` when the alarms have that dim): the
        number of alarms summed over ``algorithm``, ``label`` and ``metric``.

    Raises
    ------
    InputError
        For anything but a boolean DataArray with a ``case`` dim.

    Examples
    --------
    >>> flags = xr.DataArray([[True, True], [False, True]], dims=("case", "metric"),
    ...                      coords={"case": ["a", "b"], "metric": ["dice", "hd"]})
    >>> risk(flags).values.tolist()
    [2, 1]
    """
    flags = check_alarms(alarms)
    summed = [d for d in flags.dims if d in GROUP_DIMS]
    keep = [d for d in flags.dims if d not in GROUP_DIMS]
    axes = tuple(flags.dims.index(d) for d in summed)
    counts = flags.values.sum(axis=axes, dtype=np.int64)
    return xr.DataArray(
        counts,
        dims=keep,
        coords={d: flags.coords[d].values for d in keep if d in flags.coords},
        name="risk",
    )


def threshold_table(
    similarity: xr.DataArray | None,
    alpha: float | xr.DataArray = 0.1,
    *,
    label: str | None = None,
    mad_scale: float | str = 1.0,
    thresholds: xr.DataArray | None = None,
    pool: str = "algorithm",
) -> pd.DataFrame:
    """The thresholds as a table: the layout of the paper's Table 3.

    Parameters
    ----------
    similarity : xarray.DataArray
        Fusion-vs-candidate scores, dims ``(case, algorithm, label, metric)``.
    alpha : float or xarray.DataArray, default 0.1
        See :func:`thresholds` (0.1 is the paper's choice).
    label : str, optional
        One label to show; by default one block of rows per label.
    mad_scale : float or "normal", default 1.0
        See :func:`thresholds`.
    thresholds : xarray.DataArray, optional
        The output of :func:`thresholds`, when the caller has it already (an app that also
        words the worklist's reasons from it): the table is laid out from it, and
        ``similarity`` (may be None), ``alpha``, ``mad_scale`` and ``pool`` are not used.
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`thresholds`; with ``"all"`` every algorithm's row is the same.

    Returns
    -------
    pandas.DataFrame
        Rows: algorithms (index ``algorithm``), or ``(label, algorithm)`` when ``label`` is
        None; columns: metrics; values in each metric's own units.

    Raises
    ------
    InputError
        For an unknown label, or any error of :func:`thresholds`.

    Examples
    --------
    >>> sim = xr.DataArray(np.array([[0.9, 0.8, 0.7]]).T.reshape(3, 1, 1, 1), dims=DIMS,
    ...                    coords={"case": list("abc"), "algorithm": ["x"], "label": ["tumor"],
    ...                            "metric": ["dice"]})
    >>> threshold_table(sim, 1.0, label="tumor").round(6).to_dict()
    {'dice': {'x': 0.7}}
    """
    if thresholds is None:
        if similarity is None:
            raise InputError("`similarity` is needed unless `thresholds` is given; got None for both.")
        rob = robust_cube(similarity, mad_scale, pool=pool)
        alpha = check_alpha(alpha, rob.similarity)
        limits = xr.DataArray(
            rob.signed_threshold(rob.alpha_array(alpha)) * rob.sign,
            dims=GROUP_DIMS, coords={d: rob.similarity.indexes[d] for d in GROUP_DIMS},
        )
    else:
        if not isinstance(thresholds, xr.DataArray) or set(thresholds.dims) != set(GROUP_DIMS):
            raise InputError(
                "`thresholds` must be the DataArray over (algorithm, label, metric) that "
                f"qe_nb.thresholds returns; got {getattr(thresholds, 'dims', type(thresholds).__name__)}."
            )
        rob = None
        limits = thresholds.transpose(*GROUP_DIMS)
    labels = limits.indexes["label"]
    if label is not None and label not in labels:
        raise InputError(f"Unknown `label` {label!r}; expected one of {list(labels)}.")
    if rob is not None:
        rob.warn()
    values = limits.values
    algorithms = pd.Index(limits.indexes["algorithm"], name="algorithm")
    metrics = pd.Index(limits.indexes["metric"], name="metric")
    if label is not None:
        return pd.DataFrame(values[:, labels.get_loc(label), :], index=algorithms, columns=metrics)
    blocks = np.transpose(values, (1, 0, 2)).reshape(-1, values.shape[2])
    index = pd.MultiIndex.from_product([labels, algorithms], names=["label", "algorithm"])
    return pd.DataFrame(blocks, index=index, columns=metrics)

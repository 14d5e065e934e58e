"""The metric registry: every metric id qe_nb computes, its direction, units and meaning.

The one table of metric directions (DESIGN.md section 2): overlaps (``dice``, ``jaccard``,
``nsd``) are higher-is-better; distances and the volume difference are lower-is-better and
negated before a threshold. :mod:`qe_nb.core.metrics` re-exports everything here; this module
is kept apart so that input checks and plots can read the table without the distance engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qe_nb.exceptions import InputError

__all__ = ["METRICS", "MetricSpec", "metric_spec", "higher_is_better", "units_of", "check_metric_ids"]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric id means: its direction, units and a human description.

    Parameters
    ----------
    id : str
        The fixed metric id (``"dice"``, ``"hd95"``, ...), the ``metric`` coordinate.
    higher_is_better : bool
        True for overlaps (Dice, Jaccard, NSD); False for distances and volume differences,
        which are negated before a threshold is applied.
    units : str
        ``"1"`` (dimensionless), ``"mm"`` or ``"mm3"``.
    long_name : str
        A short human-readable name, for plot labels.
    description : str
        One sentence saying exactly what is computed and after whom.

    Examples
    --------
    >>> METRICS["hd95"].units
    'mm'
    >>> METRICS["dice"].higher_is_better
    True
    """

    id: str
    higher_is_better: bool
    units: str
    long_name: str
    description: str


METRICS: dict[str, MetricSpec] = {
    spec.id: spec
    for spec in (
        MetricSpec(
            "dice", True, "1", "Dice coefficient",
            "2|A & B| / (|A| + |B|) over voxels; 1 when both masks are empty.",
        ),
        MetricSpec(
            "jaccard", True, "1", "Jaccard index",
            "|A & B| / |A | B| over voxels; 1 when both masks are empty.",
        ),
        MetricSpec(
            "hd", False, "mm", "Hausdorff distance",
            "Exact symmetric Hausdorff distance between the two voxel sets, as SimpleITK's "
            "HausdorffDistanceImageFilter.",
        ),
        MetricSpec(
            "hd95", False, "mm", "95th percentile Hausdorff distance",
            "Larger of the two surfel-area-weighted 95th percentiles of the directed surface "
            "distances, as surface-distance's compute_robust_hausdorff (and pymia).",
        ),
        MetricSpec(
            "hd95_medpy", False, "mm", "95th percentile Hausdorff distance (MedPy)",
            "95th percentile of the pooled voxel surface distances of both directions, as "
            "medpy.metric.binary.hd95.",
        ),
        MetricSpec(
            "assd", False, "mm", "Average symmetric surface distance",
            "Mean of the two surfel-area-weighted directed average surface distances of "
            "surface-distance's compute_average_surface_distance.",
        ),
        MetricSpec(
            "nsd", True, "1", "Normalised surface Dice",
            "Surface Dice at a tolerance in mm, as surface-distance's "
            "compute_surface_dice_at_tolerance.",
        ),
        MetricSpec(
            "abs_volume_diff", False, "mm3", "Absolute volume difference",
            "| |A| - |B| | times the voxel volume, in mm^3.",
        ),
    )
}
"""Every metric id qe_nb computes, mapped to its :class:`MetricSpec`."""


def metric_spec(metric: str) -> MetricSpec:
    """Return the :class:`MetricSpec` of a metric id.

    Parameters
    ----------
    metric : str
        One of the ids in :data:`METRICS`.

    Raises
    ------
    InputError
        For an unknown id; the message lists the valid ones.

    Examples
    --------
    >>> metric_spec("nsd").long_name
    'Normalised surface Dice'
    >>> metric_spec("hd99")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: Unknown metric 'hd99'; expected one of ['abs_volume_diff', 'assd', 'dice', 'hd', 'hd95', 'hd95_medpy', 'jaccard', 'nsd'].
    """
    if not isinstance(metric, str) or metric not in METRICS:
        raise InputError(f"Unknown metric {metric!r}; expected one of {sorted(METRICS)}.")
    return METRICS[metric]


def higher_is_better(metrics: str | Sequence[str]) -> np.ndarray:
    """Whether higher is better for each metric id, from :data:`METRICS`.

    Parameters
    ----------
    metrics : str or sequence of str
        Metric ids (e.g. a cube's ``metric`` coordinate values).

    Returns
    -------
    numpy.ndarray
        bool, one entry per id (shape ``(1,)`` for a single id).

    Raises
    ------
    InputError
        For an unknown id (see :func:`metric_spec`).

    Examples
    --------
    >>> higher_is_better(["dice", "hd95", "nsd"]).tolist()
    [True, False, True]
    """
    ids = [metrics] if isinstance(metrics, str) else list(metrics)
    return np.array([metric_spec(m).higher_is_better for m in ids], dtype=bool)


def units_of(metrics: str | Sequence[str]) -> list[str]:
    """The units of each metric id, from :data:`METRICS` (``"1"``, ``"mm"`` or ``"mm3"``).

    A cube scored on images without spacing (PNG) holds pixels instead; its ``units``
    coordinate, when present, is the authority for that cube.

    Examples
    --------
    >>> units_of(["dice", "hd", "abs_volume_diff"])
    ['1', 'mm', 'mm3']
    """
    ids = [metrics] if isinstance(metrics, str) else list(metrics)
    return [metric_spec(m).units for m in ids]


def check_metric_ids(metrics: object) -> tuple[str, ...]:
    """Metric ids as a tuple (one id or a sequence of them), each known to :data:`METRICS`."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        ids: tuple[str, ...] = tuple(metrics)  # type: ignore[arg-type]
    except TypeError:
        raise InputError(
            f"`metrics` must be a metric id or a sequence of them (e.g. ('dice', 'hd95')); got "
            f"{metrics!r}."
        ) from None
    for m in ids:
        metric_spec(m)
    return ids

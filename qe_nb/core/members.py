"""What the members of one case say about each other: pairwise similarity, volumes, STAPLE.

The per-case kernel (:func:`qe_nb.core.case.score_label_maps`) measures each candidate
against a fusion. The helpers here turn the same structure masks into the member-level
evidence that :func:`qe_nb.risk_scores` ranks by: member-vs-member similarity (each
unordered pair measured once, the matrix mirrored), member volumes, and STAPLE's estimated
sensitivity and specificity of each member (SimpleITK's ``STAPLEImageFilter``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qe_nb.core.fusion import fuse
from qe_nb.core.labels import LabelScheme, structure_masks
from qe_nb.core.metric_specs import metric_spec

__all__ = [
    "leave_one_out_fusions",
    "member_variables",
    "STAPLE_ESTIMATES",
    "STAPLE_MAX_ITERATIONS",
    "identity_values",
    "member_pairs",
    "pairwise_matrix",
    "member_volumes",
    "staple_estimates",
    "structure_staple_estimates",
]

STAPLE_ESTIMATES: tuple[str, ...] = ("sensitivity", "specificity")

STAPLE_MAX_ITERATIONS = 1000
"""The cap on STAPLE's EM iterations (SimpleITK's default never stops on some near-empty structures)."""
"""What :func:`staple_estimates` returns per member, in order (the ``estimate`` coord)."""


def identity_values(metrics: Sequence[str]) -> np.ndarray:
    """Each metric of a mask against itself: 1 for overlaps, 0 for distances and differences.

    By the empty-mask rules (DESIGN §2) this holds for an empty mask too (two empty masks
    agree: Dice 1, Hausdorff 0), so it is the diagonal of every pairwise matrix.

    Examples
    --------
    >>> identity_values(["dice", "hd95", "nsd", "abs_volume_diff"]).tolist()
    [1.0, 0.0, 1.0, 0.0]
    """
    return np.array([1.0 if metric_spec(m).higher_is_better else 0.0 for m in metrics])


def member_pairs(n: int) -> list[tuple[int, int]]:
    """The unordered pairs ``(a, b)``, ``a < b``, of ``n`` members, row by row.

    Examples
    --------
    >>> member_pairs(3)
    [(0, 1), (0, 2), (1, 2)]
    """
    return [(a, b) for a in range(n) for b in range(a + 1, n)]


def pairwise_matrix(table: np.ndarray, n: int, metrics: Sequence[str]) -> np.ndarray:
    """The symmetric (n, n, metric) matrix from one row per pair of :func:`member_pairs`.

    Every metric qe_nb computes is symmetric, so each unordered pair is measured once and
    mirrored; the diagonal holds :func:`identity_values`.

    Parameters
    ----------
    table : ndarray, shape ``(n (n - 1) / 2, len(metrics))``
        The metrics of the pairs, in the order of ``member_pairs(n)``.
    n : int
        Number of members.
    metrics : sequence of str
        The metric ids of the columns.

    Examples
    --------
    >>> pairwise_matrix(np.array([[0.5], [0.25], [0.75]]), 3, ["dice"])[..., 0].tolist()
    [[1.0, 0.5, 0.25], [0.5, 1.0, 0.75], [0.25, 0.75, 1.0]]
    """
    out = np.empty((n, n, len(metrics)))
    out[np.arange(n), np.arange(n)] = identity_values(metrics)
    for row, (a, b) in zip(table, member_pairs(n)):
        out[a, b] = out[b, a] = row
    return out


def member_volumes(masks: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Voxel count times voxel volume of each mask on the leading axes.

    Parameters
    ----------
    masks : ndarray of bool, shape ``(..., *grid)``
        Masks whose last ``len(spacing)`` axes are the voxel grid (e.g. member, label, z,
        y, x).
    spacing : sequence of float
        Voxel size per grid axis (mm, or 1 per pixel for images without spacing).

    Returns
    -------
    ndarray of float, shape ``masks.shape[:-len(spacing)]``
        Volumes (areas for 2-D grids) in the spacing's units cubed (squared).

    Examples
    --------
    >>> m = np.zeros((2, 3, 4), bool); m[0, :2, :2] = True
    >>> member_volumes(m, (0.5, 2.0)).tolist()
    [4.0, 0.0]
    """
    grid_axes = tuple(range(masks.ndim - len(spacing), masks.ndim))
    counts = np.count_nonzero(masks, axis=grid_axes)
    return counts.astype(np.float64) * math.prod(float(s) for s in spacing)


def staple_estimates(masks: np.ndarray) -> np.ndarray:
    """STAPLE's estimated sensitivity and specificity of each member, for one structure.

    SimpleITK's binary ``STAPLEImageFilter`` (Warfield et al. 2004) with its defaults except
    the number of iterations, capped at :data:`STAPLE_MAX_ITERATIONS`, on the masks as given:
    its priors depend on the amount of background, so pass the whole image, not a crop.
    SimpleITK's default is unbounded: a structure that three members leave empty and two mark
    with a few voxels ran 62,328 iterations (over 200 s for one synthetic glioma case); a
    structure that converges (here in 10 to 20 iterations) gets the same estimates with the cap.

    Parameters
    ----------
    masks : ndarray of bool, shape ``(n, *grid)``
        One binary mask per member, 2-D or 3-D grids.

    Returns
    -------
    ndarray of float, shape ``(n, 2)``
        Columns :data:`STAPLE_ESTIMATES`: sensitivity, specificity. NaN where STAPLE cannot
        estimate them (every member empty: SimpleITK returns NaN).

    References
    ----------
    Warfield S. K., Zou K. H., Wells W. M. (2004), Simultaneous truth and performance level
    estimation (STAPLE), IEEE TMI 23(7):903-921.

    Examples
    --------
    >>> m = np.zeros((3, 8, 8), bool); m[:, 2:6, 2:6] = True; m[2, 2:6, 2] = False
    >>> staple_estimates(m)[:, 0].round(3).tolist()
    [1.0, 1.0, 0.75]
    """
    import SimpleITK as sitk

    staple = sitk.STAPLEImageFilter()
    staple.SetForegroundValue(1.0)
    staple.SetMaximumIterations(STAPLE_MAX_ITERATIONS)
    images = [sitk.GetImageFromArray(np.ascontiguousarray(m, dtype=np.uint8)) for m in masks]
    staple.Execute(images)
    return np.column_stack([staple.GetSensitivity(), staple.GetSpecificity()]).astype(np.float64)


def structure_staple_estimates(maps: np.ndarray, scheme: LabelScheme) -> np.ndarray:
    """:func:`staple_estimates` of every structure of ``scheme``: (member, label, estimate).

    ``maps`` (n, *grid) are whole-grid label maps; one structure's masks are built at a time.

    Examples
    --------
    >>> m = np.zeros((2, 4, 4), np.uint8); m[:, 1:3, 1:3] = 1
    >>> structure_staple_estimates(m, LabelScheme("t", {"one": (1,), "two": (2,)})).shape
    (2, 2, 2)
    """
    out = np.full((len(maps), len(scheme.names), len(STAPLE_ESTIMATES)), np.nan)
    for j, (label, values) in enumerate(scheme.structures.items()):
        one = LabelScheme(scheme.name, {label: values})
        out[:, j] = staple_estimates(np.stack([structure_masks(m, one)[0] for m in maps]))
    return out


def leave_one_out_fusions(stacked: np.ndarray, whole: np.ndarray | None, box: tuple[slice, ...],
                   fusion: str) -> list[np.ndarray | None]:
    """Per member, the fusion of the other members, on the box (None when there are none).

    ``stacked`` (n, *box) holds the members cropped to ``box``; ``whole`` (n, *grid), when
    given, is fused instead and then cropped (STAPLE, whose priors depend on the amount of
    background). Every other method gives the same values on the crop.

    Examples
    --------
    >>> m = np.array([[0, 1, 1], [0, 1, 0], [1, 1, 0]])
    >>> [f.tolist() for f in leave_one_out_fusions(m, None, (slice(0, 3),), "mav")]
    [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    """
    n = len(stacked)
    if n < 2:
        return [None] * n
    if whole is not None:  # STAPLE fuses the whole grid (its priors depend on the background)
        return [fuse(np.delete(whole, i, axis=0), method=fusion)[box] for i in range(n)]
    return [fuse(np.delete(stacked, i, axis=0), method=fusion) for i in range(n)]


def member_variables(result: Any, names: Sequence[str], units: str, ndim: int,
                     lead: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The member-level variables of a case (or cohort, ``lead=("case",)``): Dataset items, coords.

    ``result`` has ``volume``, ``pairwise`` and ``staple_performance`` (attributes or keys;
    the last two None when not computed); ``names`` are the members. ``volume`` is always
    there; ``pairwise`` (with an ``algorithm_b`` coord) and ``staple_performance`` (with an
    ``estimate`` coord) when computed.
    """
    get = result.get if isinstance(result, Mapping) else lambda name: getattr(result, name)
    data: dict[str, Any] = {
        "volume": (lead + ("algorithm", "label"), get("volume"),
                   {"long_name": "voxel count times voxel volume of each candidate",
                    "units": f"{units}{ndim}"}),
    }
    coords: dict[str, Any] = {}
    if get("pairwise") is not None:
        data["pairwise"] = (lead + ("algorithm", "algorithm_b", "label", "metric"), get("pairwise"),
                            {"long_name": "similarity of each candidate to each other candidate"})
        coords["algorithm_b"] = ("algorithm_b", np.array(names, dtype=object))
    if get("staple_performance") is not None:
        data["staple_performance"] = (
            lead + ("algorithm", "label", "estimate"), get("staple_performance"),
            {"long_name": "STAPLE's estimated sensitivity and specificity of each candidate (SimpleITK)"},
        )
        coords["estimate"] = ("estimate", list(STAPLE_ESTIMATES))
    return data, coords

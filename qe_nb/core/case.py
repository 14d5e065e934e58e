"""One case's scores from its label maps in memory: fuse, measure, compare with the reference.

:func:`score_arrays` is the per-case computation of :func:`qe_nb.score` on arrays: fuse the
candidates, turn the fusion, every candidate and the reference into structure masks, measure
every candidate against the fusion (``similarity``) and, with a reference, the fusion
(``quality``) and every candidate (``candidate_quality``) against it. The pipeline's
``score_case`` reads a case's files and runs the same kernel, :func:`score_label_maps`, so the
two give identical values. Nothing here reads or writes files.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.fusion import METHODS, fuse, union_box
from qe_nb.core.labels import (
    LabelScheme,
    check_label_map,
    infer_labels,
    resolve_labels,
    structure_masks,
    values_in,
)
from qe_nb.core.masks import check_spacing
from qe_nb.core.members import (
    STAPLE_ESTIMATES,
    leave_one_out_fusions,
    member_pairs,
    member_variables,
    member_volumes,
    pairwise_matrix,
    structure_staple_estimates,
)
from qe_nb.core.metrics import METRICS, metric_spec, metrics_of_pairs
from qe_nb.exceptions import GeometryError, InputError, LabelValueWarning, QeNbError

__all__ = [
    "CaseScores",
    "score_arrays",
    "score_label_maps",
    "SIMILARITY_MODES",
    "SIMILARITY_LONG_NAMES",
    "DISTANCE_UNITS",
    "metric_coords",
    "check_metrics",
    "check_fusion",
    "check_similarity",
    "check_units",
    "foreground_box",
    "unexpected_label_messages",
]

_DIMS = ("z", "y", "x")

SIMILARITY_MODES: tuple[str, ...] = ("fusion", "leave-one-out")
"""What each candidate's ``similarity`` is measured against: the fusion of all candidates, or
the fusion of the other candidates (DESIGN §2)."""

DISTANCE_UNITS: tuple[str, ...] = ("mm", "px")
"""The length units of distances: millimetres, or pixels for images that store no spacing."""


def metric_coords(metrics: Sequence[str], *, units: str = "mm", ndim: int = 3) -> dict[str, Any]:
    """Coordinates of the ``metric`` dim: ids plus ``higher_is_better`` and ``units``.

    ``units`` is the length unit of the distances: ``"mm"``, or ``"px"`` for images that
    store no spacing; volume differences get it to the power ``ndim`` (``"mm3"``, ``"px2"``).

    Examples
    --------
    >>> c = metric_coords(["dice", "hd95"])
    >>> c["higher_is_better"][1].tolist(), c["units"][1].tolist()
    ([True, False], ['1', 'mm'])
    >>> metric_coords(["hd", "abs_volume_diff"], units="px", ndim=2)["units"][1].tolist()
    ['px', 'px2']
    """
    units = check_units(units)
    specs = [metric_spec(m) for m in metrics]
    named = {"mm": units, "mm3": f"{units}{ndim}"}
    return {
        "metric": ("metric", [s.id for s in specs]),
        "higher_is_better": ("metric", np.array([s.higher_is_better for s in specs], dtype=bool)),
        "units": ("metric", np.array([named.get(s.units, s.units) for s in specs], dtype=object)),
    }


def check_units(units: object) -> str:
    """``units`` if it is one of :data:`DISTANCE_UNITS`, else :class:`InputError`.

    Examples
    --------
    >>> check_units("cm")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `units` must be one of ['mm', 'px'] (the length unit of the spacing); got 'cm'.
    """
    if not isinstance(units, str) or units not in DISTANCE_UNITS:
        raise InputError(
            f"`units` must be one of {list(DISTANCE_UNITS)} (the length unit of the spacing); got {units!r}."
        )
    return units


def check_similarity(similarity: object) -> str:
    """``similarity`` if it is one of :data:`SIMILARITY_MODES`, else :class:`InputError`.

    Examples
    --------
    >>> check_similarity("loo")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: `similarity` must be one of ['fusion', 'leave-one-out']; got 'loo'.
    """
    if not isinstance(similarity, str) or similarity not in SIMILARITY_MODES:
        raise InputError(f"`similarity` must be one of {list(SIMILARITY_MODES)}; got {similarity!r}.")
    return similarity


def check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """The metric ids of ``metrics`` (a sequence or a comma-separated string), checked.

    Raises
    ------
    InputError
        For no metric, a metric named twice or an unknown metric id.

    Examples
    --------
    >>> check_metrics("dice, hd95")
    ('dice', 'hd95')
    """
    if isinstance(metrics, str):
        metrics = tuple(m.strip() for m in metrics.split(",") if m.strip())
    metrics = tuple(metrics)
    if not metrics:
        raise InputError("`metrics` names no metric; expected e.g. ('dice', 'hd95').")
    if len(set(metrics)) != len(metrics):
        raise InputError(f"`metrics` names a metric twice: {list(metrics)}.")
    for m in metrics:
        metric_spec(m)
    return metrics


def check_fusion(fusion: object) -> str:
    """``fusion`` if it is one of :data:`qe_nb.core.fusion.METHODS`, else :class:`InputError`.

    Examples
    --------
    >>> check_fusion("vote")
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: Unknown fusion method 'vote'; expected one of ['mav', 'simple', 'brats-simple', 'staple'].
    """
    if not isinstance(fusion, str) or fusion not in METHODS:
        raise InputError(f"Unknown fusion method {fusion!r}; expected one of {list(METHODS)}.")
    return fusion


def foreground_box(maps: Sequence[np.ndarray], *, margin: int = 1) -> tuple[slice, ...]:
    """The box holding every non-zero voxel of the label maps (same shape), plus a margin.

    Fusion, structure masks and metrics give the same values on this box as on the whole
    grid, at a fraction of the cost.

    Examples
    --------
    >>> a = np.zeros((5, 6, 7), np.uint8); a[2, 3, 4] = 1
    >>> b = np.zeros_like(a); b[2, 3, 5] = 4
    >>> foreground_box([a, b])
    (slice(1, 4, None), slice(2, 5, None), slice(3, 7, None))
    >>> foreground_box([np.zeros((2, 3, 4), np.uint8)])
    (slice(0, 1, None), slice(0, 1, None), slice(0, 1, None))
    """
    union = union_box(maps)
    if union is None:  # nothing anywhere: a one-voxel box keeps the empty-mask rules
        return tuple(slice(0, 1) for _ in maps[0].shape)
    return tuple(
        slice(max(box.start - margin, 0), min(box.stop + margin, n)) for box, n in zip(union, maps[0].shape)
    )


def unexpected_label_messages(
    maps: Sequence[np.ndarray], algorithms: Sequence[str], scheme: LabelScheme, *, case: str | None = None
) -> list[str]:
    """Messages naming label values that no structure of the scheme uses (they are ignored).

    Examples
    --------
    >>> unexpected_label_messages([np.array([0, 1, 3])], ["a"], resolve_labels({"t": 1}))
    ["algorithm 'a': label values [3] are outside the label scheme (t=[1]) and are ignored."]
    """
    known = set(scheme.values)
    if not known:  # the binary scheme takes every non-zero value
        return []
    where = "" if case is None else f"case {case!r}, "
    messages = []
    for algorithm, values in zip(algorithms, maps):
        extra = sorted(set(values_in(values).tolist()) - known - {0})
        if extra:
            messages.append(
                f"{where}algorithm {str(algorithm)!r}: label values {extra} are outside the "
                f"label scheme ({scheme.describe()}) and are ignored."
            )
    return messages


@dataclass(frozen=True)
class CaseScores:
    """What :func:`score_label_maps` computes for one case: the arrays of :func:`score_arrays`'s
    variables (None when not computed), without coords, and the ``warnings`` it would issue."""

    similarity: np.ndarray
    quality: np.ndarray | None
    candidate_quality: np.ndarray | None
    warnings: list[str]
    fused: np.ndarray | None = None
    volume: np.ndarray | None = None
    pairwise: np.ndarray | None = None
    staple_performance: np.ndarray | None = None


def score_label_maps(
    maps: Sequence[np.ndarray | None],
    *,
    spacing: Sequence[float],
    scheme: LabelScheme,
    fusion: str,
    metrics: Sequence[str],
    nsd_tolerance: float = 1.0,
    reference: np.ndarray | None = None,
    algorithms: Sequence[str] | None = None,
    case: str | None = None,
    keep_fusion: bool = False,
    similarity: str = "fusion",
    pairwise: bool = False,
    staple_performance: bool = False,
) -> CaseScores:
    """The per-case kernel on checked label maps (shared by :func:`score_arrays` and the pipeline).

    Parameters
    ----------
    maps : sequence of ndarray or None
        One checked label map per algorithm, all of one shape; None for a missing candidate
        (its rows are NaN). The whole-grid maps are dropped once cropped, so a caller that
        passes them without keeping a reference frees them before the metrics run.
    spacing : sequence of float
        Voxel size (mm, or 1 per pixel), numpy order.
    scheme : LabelScheme
        The structures to measure.
    fusion, metrics, nsd_tolerance, similarity, pairwise, staple_performance
        Checked settings, as for :func:`score_arrays`.
    reference : ndarray, optional
        The checked reference label map, same shape.
    algorithms : sequence of str, optional
        Names of the maps, for the warnings' messages (default "0", "1", ...).
    case : str, optional
        The case id, for the warnings' messages.
    keep_fusion : bool, default False
        Also return the fused label map on the whole grid.

    Raises
    ------
    QeNbError
        When every map is None.
    """
    maps = list(maps)
    names = [str(i) for i in range(len(maps))] if algorithms is None else [str(a) for a in algorithms]
    n_alg, n_lab, n_met = len(maps), len(scheme.names), len(metrics)
    index = [i for i, m in enumerate(maps) if m is not None]
    if not index:
        where = "" if case is None else f"case {case!r}: "
        raise QeNbError(f"{where}no candidate segmentation was found (patterns matched none).")
    whole = [maps[i] for i in index]
    shape = whole[0].shape
    # Everything below runs on the box holding every non-zero voxel of the case (plus a
    # margin), at a fraction of the cost (a tumour fills a few % of a brain volume). The
    # maps are cropped before they are stacked, so the whole grid is never copied unless
    # STAPLE needs it (its priors depend on the amount of background).
    box = foreground_box(whole + ([] if reference is None else [reference]))
    stacked = np.stack([m[box] for m in whole])
    whole_stack = np.stack(whole) if fusion == "staple" or staple_performance else None
    leave_one_out = similarity == "leave-one-out"
    # The full fusion serves `similarity` (fusion mode), `quality` and `keep_fusion` only.
    need_fusion = not leave_one_out or reference is not None or keep_fusion
    fused_whole = fuse(whole_stack, method="staple") if fusion == "staple" and need_fusion else None
    fused = None
    if need_fusion:
        fused = fuse(stacked, method=fusion) if fused_whole is None else fused_whole[box]
    others = leave_one_out_fusions(stacked, whole_stack if fusion == "staple" else None, box, fusion) \
        if leave_one_out else []
    ref = None if reference is None else structure_masks(reference[box], scheme)
    messages = unexpected_label_messages(stacked, [names[i] for i in index], scheme, case=case)
    candidate_masks = np.stack([structure_masks(m, scheme) for m in stacked])
    n = len(index)
    volume = np.full((n_alg, n_lab), np.nan)
    volume[index] = member_volumes(candidate_masks, check_spacing(spacing, stacked.ndim - 1))
    staple = np.full((n_alg, n_lab, len(STAPLE_ESTIMATES)), np.nan) if staple_performance else None
    if staple is not None:
        staple[index] = structure_staple_estimates(whole_stack, scheme)
    del maps, whole, whole_stack, reference
    sim = np.full((n_alg, n_lab, n_met), np.nan)
    quality = None if ref is None else np.full((n_lab, n_met), np.nan)
    candidate_quality = None if ref is None else np.full((n_alg, n_lab, n_met), np.nan)
    between = np.full((n_alg, n_alg, n_lab, n_met), np.nan) if pairwise else None
    # Per structure, one stack: the candidates, the fusion, the reference, the leave-one-out
    # fusions. Each mask is prepared once for all the pairs it is in.
    rows: list[np.ndarray] = [candidate_masks.swapaxes(0, 1)]  # (label, n, ...)
    at = n
    pairs: dict[str, list[tuple[int, int]]] = {}
    if fused is not None:
        rows.append(structure_masks(fused, scheme)[:, None])
        if not leave_one_out:
            pairs["similarity"] = [(at, i) for i in range(n)]
        if ref is not None:
            rows.append(ref[:, None])
            pairs["quality"] = [(at + 1, at)]
            pairs["candidate_quality"] = [(at + 1, i) for i in range(n)]
            at += 1
        at += 1
    loo = [i for i in range(n) if others and others[i] is not None]
    if loo:
        rows.append(np.stack([structure_masks(others[i], scheme) for i in loo], axis=1))
        pairs["similarity"] = [(at + k, i) for k, i in enumerate(loo)]
    if pairwise:
        pairs["pairwise"] = member_pairs(n)
    masks = np.concatenate(rows, axis=1)
    del rows, candidate_masks, ref, others
    flat = [p for group in pairs.values() for p in group]
    for j in range(n_lab):
        table = metrics_of_pairs(masks[j], flat, metrics, spacing=spacing, nsd_tolerance=nsd_tolerance)
        start = 0
        for name, group in pairs.items():
            part, start = table[start:start + len(group)], start + len(group)
            if name == "similarity":
                sim[[index[i] for _, i in group], j] = part
            elif name == "quality":
                quality[j] = part[0]
            elif name == "candidate_quality":
                candidate_quality[index, j] = part
            else:
                between[np.ix_(index, index, [j])] = pairwise_matrix(part, n, metrics)[:, :, None]
    if keep_fusion and fused_whole is None:
        fused_whole = np.zeros(shape, dtype=fused.dtype)
        fused_whole[box] = fused
    return CaseScores(sim, quality, candidate_quality, messages, fused_whole if keep_fusion else None,
                      volume=volume, pairwise=between, staple_performance=staple)


def _named_maps(label_maps: object, algorithms: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    """Algorithm names and raw maps (None for a missing candidate) from any accepted form."""
    if isinstance(label_maps, Mapping):
        if algorithms is not None:
            raise InputError(
                "`algorithms` names the candidates of a sequence or array of label maps; "
                "a mapping already names them by its keys. Pass one or the other."
            )
        return [str(a) for a in label_maps], list(label_maps.values())
    if isinstance(label_maps, xr.DataArray) and "algorithm" in label_maps.dims:
        label_maps = label_maps.transpose("algorithm", ...)
        if algorithms is None:
            algorithms = [str(a) for a in label_maps["algorithm"].values]
        raw = [label_maps.values[i] for i in range(label_maps.sizes["algorithm"])]
    elif isinstance(label_maps, np.ndarray) or hasattr(label_maps, "__array__"):
        arr = np.asarray(label_maps)
        if arr.ndim < 3:
            raise InputError(
                "`label_maps` given as one array must have a leading algorithm axis and two or "
                f"three voxel axes; got an array of shape {arr.shape}."
            )
        raw = [arr[i] for i in range(arr.shape[0])]
    elif isinstance(label_maps, (list, tuple)):
        raw = list(label_maps)
    else:
        raise InputError(
            "`label_maps` must be a mapping algorithm -> label map, a sequence of label maps or "
            f"one array with a leading algorithm axis; got {type(label_maps).__name__}."
        )
    names = [f"candidate-{i}" for i in range(len(raw))] if algorithms is None else [str(a) for a in algorithms]
    if len(names) != len(raw):
        raise InputError(
            f"`algorithms` must name each of the {len(raw)} label maps once; got {len(names)} "
            f"names: {names}."
        )
    return names, raw


def _checked_maps(
    label_maps: object, algorithms: Sequence[str] | None
) -> tuple[list[str], list[np.ndarray | None]]:
    names, raw = _named_maps(label_maps, algorithms)
    if not raw:
        raise InputError("`label_maps` is empty; expected at least one candidate label map.")
    if len(set(names)) != len(names):
        raise InputError(f"`algorithms` names a candidate twice: {names}.")
    maps = [
        None if m is None else check_label_map(np.asarray(m), name=f"label_maps[{name!r}]")
        for name, m in zip(names, raw)
    ]
    present = [(name, m) for name, m in zip(names, maps) if m is not None]
    if present:
        first_name, first = present[0]
        if first.ndim not in (2, 3):
            raise InputError(
                f"`label_maps[{first_name!r}]` must be a 2-D or 3-D label map; got shape {first.shape}."
            )
        for name, m in present[1:]:
            if m.shape != first.shape:
                raise GeometryError(
                    f"algorithm {name!r}: shape {m.shape} differs from the first candidate's "
                    f"({first_name!r}) {first.shape}; resample the label maps to one grid."
                )
    return names, maps


def score_arrays(
    label_maps: Mapping[str, np.ndarray | None] | Sequence[np.ndarray | None] | np.ndarray | xr.DataArray,
    *,
    spacing: Sequence[float],
    reference: np.ndarray | None = None,
    labels: str | Mapping | LabelScheme | None = None,
    fusion: str = "mav",
    metrics: Sequence[str] | str = ("dice", "hd95"),
    nsd_tolerance: float = 1.0,
    algorithms: Sequence[str] | None = None,
    keep_fusion: bool = False,
    similarity: str = "fusion",
    pairwise: bool = False,
    staple_performance: bool = False,
    units: str = "mm",
) -> xr.Dataset:
    """Score one case held in memory: fuse its candidates and measure each against the fusion.

    The per-case computation of :func:`qe_nb.score` without files: the same values as
    ``score`` on the same maps written as images.

    Parameters
    ----------
    label_maps : mapping, sequence of ndarray, ndarray or DataArray
        The candidates' label maps, all of one shape (``z, y, x`` or ``y, x``): a mapping
        algorithm -> map, a sequence of maps, one array with a leading algorithm axis, or a
        DataArray with an ``algorithm`` dim (as from :func:`qe_nb.load_label_maps`). Integer,
        bool or integral float values. A None entry is a missing candidate: NaN rows.
    spacing : sequence of float
        Voxel size per axis, numpy (z, y, x) or (y, x) order, in ``units``.
    reference : ndarray, optional
        A reference (ground truth) label map of the same shape; gives ``quality`` and
        ``candidate_quality``.
    labels : str, mapping or LabelScheme, optional
        The structures (see :func:`qe_nb.resolve_labels`); default: inferred from the
        candidates' values, as :func:`qe_nb.open_ensemble` does.
    fusion : {"mav", "simple", "brats-simple", "staple"}, default "mav"
        How to fuse the candidates (see :func:`qe_nb.fuse`).
    metrics : sequence of str or comma-separated str, default ("dice", "hd95")
        Metric ids from :data:`qe_nb.METRICS`.
    nsd_tolerance : float, default 1.0
        Tolerance in mm of the normalised surface Dice.
    algorithms : sequence of str, optional
        Names of the candidates of a sequence or array (default ``candidate-0``, ...; a
        DataArray's own ``algorithm`` coord otherwise).
    keep_fusion : bool, default False
        Also return the fused label map as ``fused`` (z, y, x).
    similarity : {"fusion", "leave-one-out"}, default "fusion"
        What each candidate's ``similarity`` is measured against: the fusion of all the
        candidates, or the fusion of the *other* candidates with the same rule (DESIGN §2;
        with three to five members the full fusion is largely made of the candidate itself).
        ``quality`` and ``candidate_quality`` do not depend on it.
    pairwise : bool, default False
        Also measure every member against every other: ``pairwise``.
    staple_performance : bool, default False
        Also estimate each member's sensitivity and specificity per structure with
        SimpleITK's STAPLE on the whole grid: ``staple_performance``.
    units : {"mm", "px"}, default "mm"
        The length unit of ``spacing``: "px" for images that store no spacing (PNG); the
        distance metrics' ``units`` coord and ``attrs["distance_units"]`` say it.

    Returns
    -------
    xarray.Dataset
        ``similarity`` (algorithm, label, metric); with a reference, ``quality`` (label,
        metric) and ``candidate_quality`` (algorithm, label, metric); with ``keep_fusion``,
        ``fused`` (z, y, x). Always ``volume`` (algorithm, label): each candidate's voxel
        count times the voxel volume (area in 2-D; its ``units`` attr says which). With
        ``pairwise``, ``pairwise`` (algorithm, algorithm_b, label, metric): symmetric, the
        diagonal is a mask's metric against itself (Dice 1, distance 0), NaN for a missing
        member. With ``staple_performance``, ``staple_performance`` (algorithm, label,
        estimate), ``estimate`` = ("sensitivity", "specificity"). The ``metric`` coord
        carries ``higher_is_better`` and ``units``, ``label`` carries ``label_values``;
        attrs record the fusion, ``similarity_mode``, ``distance_units``, the label scheme,
        the metrics and the spacing.

    Raises
    ------
    InputError
        For an unknown fusion method, metric, similarity mode or units, malformed
        ``label_maps`` or ``algorithms``, or a bad ``spacing``.
    LabelError
        For a map holding non-integral, negative or NaN labels.
    GeometryError
        When the maps (or the reference) differ in shape.
    QeNbError
        When every candidate is None.

    Warns
    -----
    LabelValueWarning
        For label values no structure of the scheme uses (they are ignored).

    Examples
    --------
    >>> a = np.zeros((1, 1, 6), np.uint8); a[0, 0, 1:3] = 1
    >>> b = a.copy(); b[0, 0, 3] = 1
    >>> ds = score_arrays({"a": a, "b": b, "c": a}, spacing=(1, 1, 1), metrics=("dice", "hd"))
    >>> ds["similarity"].sel(label="foreground").values.round(3).tolist()
    [[1.0, 0.0], [0.8, 1.0], [1.0, 0.0]]
    """
    fusion = check_fusion(fusion)
    metrics = check_metrics(metrics)
    similarity = check_similarity(similarity)
    units = check_units(units)
    names, maps = _checked_maps(label_maps, algorithms)
    present = [(name, m) for name, m in zip(names, maps) if m is not None]
    if reference is not None:
        reference = check_label_map(np.asarray(reference), name="reference")
        if present and reference.shape != present[0][1].shape:
            raise GeometryError(
                f"`reference`: shape {reference.shape} differs from the candidates' "
                f"{present[0][1].shape}; resample it to their grid."
            )
    if labels is None:
        seen: set[int] = set()
        for _, m in present:
            seen.update(values_in(m).tolist())
        scheme = infer_labels(seen)
    else:
        scheme = resolve_labels(labels)
    result = score_label_maps(
        maps, spacing=spacing, scheme=scheme, fusion=fusion, metrics=metrics,
        nsd_tolerance=nsd_tolerance, reference=reference, algorithms=names, keep_fusion=keep_fusion,
        similarity=similarity, pairwise=bool(pairwise), staple_performance=bool(staple_performance),
    )
    for message in result.warnings:
        warnings.warn(message, LabelValueWarning, stacklevel=2)
    ndim = next(m.ndim for m in maps if m is not None)
    settings = {"fusion": fusion, "similarity": similarity, "metrics": metrics, "units": units, "ndim": ndim}
    return _case_dataset(result, names, scheme, settings, nsd_tolerance, spacing)


def _case_dataset(result: CaseScores, names: list[str], scheme: LabelScheme, settings: dict[str, Any],
                  nsd_tolerance: float, spacing: Sequence[float]) -> xr.Dataset:
    fusion, metrics, units, ndim = settings["fusion"], settings["metrics"], settings["units"], settings["ndim"]
    coords: dict[str, Any] = {
        "algorithm": ("algorithm", np.array(names, dtype=object)),
        "label": ("label", np.array(scheme.names, dtype=object)),
        "label_values": ("label", np.array(scheme.values_text(), dtype=object)),
        **metric_coords(metrics, units=units, ndim=ndim),
    }
    data: dict[str, Any] = {
        "similarity": (("algorithm", "label", "metric"), result.similarity,
                       {"long_name": SIMILARITY_LONG_NAMES[settings["similarity"]]}),
    }
    if result.quality is not None:
        data["quality"] = (("label", "metric"), result.quality,
                           {"long_name": "quality of the fusion against the reference"})
        data["candidate_quality"] = (("algorithm", "label", "metric"), result.candidate_quality,
                                     {"long_name": "quality of each candidate against the reference"})
    members, member_coords = member_variables(result, names, units, ndim)
    data.update(members)
    coords.update(member_coords)
    if result.fused is not None:
        data["fused"] = (_DIMS[-result.fused.ndim:], result.fused,
                         {"long_name": f"the candidates fused ({fusion})"})
    attrs = {
        "fusion": fusion,
        "similarity_mode": settings["similarity"],
        "distance_units": units,
        "label_scheme": scheme.name,
        "label_scheme_text": scheme.describe(),
        "metrics": ",".join(metrics),
        "metric_definitions": "; ".join(f"{m}: {getattr(METRICS[m], 'description', '')}" for m in metrics),
        "nsd_tolerance_mm": float(nsd_tolerance),
        "spacing": tuple(float(s) for s in spacing),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


SIMILARITY_LONG_NAMES = {
    "fusion": "similarity of each candidate to the fusion",
    "leave-one-out": "similarity of each candidate to the fusion of the other candidates",
}
"""The ``long_name`` of ``similarity`` per :data:`SIMILARITY_MODES`."""

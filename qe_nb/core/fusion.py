"""Fusion of candidate segmentations: majority vote, SIMPLE, BraTS-SIMPLE and STAPLE.

``mav``, ``simple`` and ``brats-simple`` reproduce BraTS Toolkit's ``Fusionator``
(``_mav``, ``_simple``, ``_brats_simple``, as called by ``Fusionator.fuse``) voxel for voxel,
which is what Kofler et al. 2021 used. They are reimplemented from the published
description and from black-box comparison; no BraTS Toolkit code is used or needed.

Speed comes from two observations. Every voxel outside the bounding box of the union of
the candidates is background in every candidate and stays background, so the work is done
on that box only. Inside it, a voxel's fused label depends only on its *pattern*, the tuple
of labels the candidates give it; there are few distinct patterns, so votes, Dice scores and
every SIMPLE iteration are computed once per pattern (weighted by how many voxels share it)
instead of once per voxel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from qe_nb.core.labels import check_label_map, values_in
from qe_nb.core.masks import bounding_box
from qe_nb.exceptions import InputError

__all__ = ["METHODS", "fuse", "union_box"]

METHODS: tuple[str, ...] = ("mav", "simple", "brats-simple", "staple")
"""The fusion methods :func:`fuse` knows."""

# BraTS Toolkit's SIMPLE settings (Fusionator._simple defaults, used by Fusionator.fuse).
_SIMPLE_STOP = 25  # stop once the estimate's volume changes by fewer voxels than this
_SIMPLE_ITERATIONS = 25
# BraTS-SIMPLE regions, in BraTS Toolkit's order: later regions overwrite earlier ones.
# (written value, member values, whole tumour = any non-zero value)
_BRATS_REGIONS = ((2, (1, 2, 4), True), (1, (1, 4), False), (4, (4,), False))
# The same regions for BraTS 2023 maps, whose enhancing tumour is 3 (BRATS_2023_REGIONS).
_BRATS_2023_REGIONS = ((2, (1, 2, 3), True), (1, (1, 3), False), (3, (3,), False))
# Above this many possible label patterns the patterns are found by sorting, not counting.
_MAX_COUNTED_PATTERNS = 1 << 20


def fuse(
    candidates: Sequence[np.ndarray] | np.ndarray,
    *,
    method: str = "mav",
    weights: Sequence[float] | np.ndarray | None = None,
    labels: Iterable[int] | int | None = None,
) -> np.ndarray:
    """Fuse the candidate label maps of one case into one label map.

    Parameters
    ----------
    candidates : sequence of ndarray, or ndarray
        The candidate label maps (``z, y, x`` or any shape, all the same), or one array whose
        leading axis is the ``algorithm``. Any integer dtype, bool, or floats holding whole
        numbers. The order matters only through floating-point rounding of weighted votes;
        BraTS Toolkit is reproduced for the same order.
    method : {"mav", "simple", "brats-simple", "staple"}, default "mav"
        ``mav``: per-label (weighted) majority vote. ``simple``: SIMPLE (Langerak et al.
        2010) per label, as BraTS Toolkit does it. ``brats-simple``: SIMPLE on the nested
        BraTS regions (whole tumour, tumour core, enhancing tumour, labels 1, 2, 4).
        ``staple``: SimpleITK's ``MultiLabelSTAPLE``.
    weights : sequence of float, optional
        One non-negative, finite weight per candidate, not all zero (default: all 1). For
        ``mav`` they weight the votes; for ``simple`` and ``brats-simple`` they weight the
        initial majority vote, as in BraTS Toolkit. Not accepted by ``staple``.
    labels : int or iterable of int, optional
        The label values to fuse (default: every non-zero value present in any candidate).
        Values not listed become background. 0 (background) is never fused and is ignored.
        Not accepted by ``brats-simple``, whose regions are fixed.

    Returns
    -------
    ndarray
        The fused label map, of the candidates' shape, holding their label values; dtype
        ``uint8`` when the largest label fits, else the smallest unsigned type that holds it.

    Raises
    ------
    InputError
        For an unknown ``method``; no candidates; candidates of different shapes;
        ``weights`` of the wrong length, negative, non-finite or all zero; ``labels`` that
        are not non-negative integers; an option the method does not use.
    LabelError
        For a candidate that is not a label map (non-integral or negative values).

    Notes
    -----
    With weights :math:`w_i` (all 1 by default) and :math:`W = \\sum_i w_i`, majority
    vote visits the labels from the highest value to the lowest and gives label :math:`l`
    to every voxel where :math:`\\sum_{i: c_i = l} w_i \\ge W / 2`; a later (lower) label
    overwrites, so lower labels win ties. Votes are summed in candidate order in float64,
    exactly as BraTS Toolkit does, so that ties resolve identically.

    SIMPLE, per label from the lowest value to the highest (higher labels overwrite): the
    binary masks :math:`c_i = l` start from their weighted majority vote :math:`E`; then, at
    most 25 times, every candidate gets the weight :math:`(1 + \\mathrm{Dice}(c_i, E))^2`
    (Dice of two empty masks counted as 0, as BraTS Toolkit does), :math:`E` becomes the
    majority vote under those weights, and the loop stops once the volume of :math:`E`
    changes by fewer than 25 voxels. BraTS Toolkit also drops candidates whose weight is
    not above :math:`0.05 \\max_i w_i`; as every weight lies in :math:`[1, 4]` that never
    happens, so it is not repeated here. ``brats-simple`` runs the same loop on the whole
    tumour (any non-zero label, written as 2), the tumour core (1 or 4, written as 1) and
    the enhancing tumour (4, written as 4), in that order.

    ``staple`` runs SimpleITK's ``MultiLabelSTAPLE`` on the whole image (its priors depend
    on the amount of background, so the image is not cropped) with the fused labels only;
    voxels it leaves undecided become background. It is the multi-label STAPLE of Rohlfing
    et al., not one binary STAPLE per label.

    Empty candidates are fine: all-background candidates fuse to all background.

    Where BraTS Toolkit's behaviour is accidental, this function does the evident intended
    thing instead: ``Fusionator.fuse`` drops ``labels`` for SIMPLE, here they are honoured
    as ``Fusionator._simple(labels=...)`` honours them; BraTS Toolkit removes the *first*
    listed label when 0 is among them, here 0 is simply ignored. With ``labels=None``, or
    labels without 0, the results are the same.

    References
    ----------
    .. [1] Kofler F. et al. (2021), "Robust, Primitive, and Unsupervised Quality Estimation
       for Segmentation Ensembles", Front. Neurosci. 15:752780.
    .. [2] Kofler F. et al. (2020), "BraTS Toolkit: Translating BraTS Brain Tumor
       Segmentation Algorithms Into Clinical and Scientific Practice", Front. Neurosci.
       (``brats_toolkit.fusionator.Fusionator``).
    .. [3] Langerak T. R. et al. (2010), "Label Fusion in Atlas-Based Segmentation Using a
       Selective and Iterative Method for Performance Level Estimation (SIMPLE)", IEEE TMI.

    Examples
    --------
    Three candidates of four voxels; a label needs at least half of the votes (1.5 of 3),
    so the last voxel, voted 4, 2 and 0, has no majority and stays background:

    >>> a = np.array([0, 1, 2, 4])
    >>> b = np.array([0, 1, 2, 2])
    >>> c = np.array([1, 2, 2, 0])
    >>> fuse([a, b, c])
    array([0, 1, 2, 0], dtype=uint8)

    With two candidates every disagreement is a tie, and the lower label wins:

    >>> fuse([np.array([1, 2, 0]), np.array([2, 4, 4])])
    array([1, 2, 4], dtype=uint8)

    Weights decide between them:

    >>> fuse([np.array([1, 2, 0]), np.array([2, 4, 4])], weights=[1, 3])
    array([2, 4, 4], dtype=uint8)

    Only the listed labels are fused:

    >>> fuse([a, b, c], labels=[2])
    array([0, 0, 2, 0], dtype=uint8)

    SIMPLE agrees with the vote here; BraTS-SIMPLE fuses regions, and the last voxel is
    tumour (non-zero) in two of three candidates, so it joins the whole tumour, written 2:

    >>> fuse([a, b, c], method="simple")
    array([0, 1, 2, 0], dtype=uint8)
    >>> fuse([a, b, c], method="brats-simple")
    array([0, 1, 2, 2], dtype=uint8)
    """
    if not isinstance(method, str) or method not in METHODS:
        raise InputError(f"Unknown fusion `method` {method!r}; expected one of {list(METHODS)}.")
    maps = _check_candidates(candidates)
    n = len(maps)
    if method == "staple" and weights is not None:
        raise InputError(
            "`weights` is not used by method='staple' (STAPLE estimates each candidate's "
            "performance itself); pass weights=None or use method='mav'."
        )
    if method == "brats-simple" and labels is not None:
        raise InputError(
            f"`labels` is not used by method='brats-simple', whose regions are fixed "
            f"(whole tumour 1,2,4; tumour core 1,4; enhancing 4); got {labels!r}. Pass "
            "labels=None, or use method='simple' to fuse chosen labels."
        )
    w = _check_weights(weights, n)
    chosen = _check_labels(labels)

    shape = maps[0].shape
    box = union_box(maps)
    if method == "staple":
        present = _present_values(maps, box) if chosen is None else chosen
        return _staple(maps, present)

    if box is None:  # every candidate is all background
        return np.zeros(shape, dtype=_output_dtype(chosen or ()))
    crops = [m[box] for m in maps]
    present = _present_values(crops, None)
    regions = _brats_regions(present) if method == "brats-simple" else ()
    values = present if chosen is None or method == "brats-simple" else chosen
    out_dtype = _output_dtype(values if method != "brats-simple" else (4,))

    patterns, counts, expand = _patterns(crops, values)
    # `patterns` holds indices into `values` shifted by one (0 = a label not fused).
    value_of = np.concatenate([[0], np.asarray(values, dtype=np.int64)])
    if method == "mav":
        fused = _mav(patterns, value_of, w)
    elif method == "simple":
        fused = _simple(patterns, counts, value_of, w)
    else:
        fused = _brats_simple(patterns, counts, value_of, w, regions)

    result = np.zeros(shape, dtype=out_dtype)
    result[box] = expand(fused.astype(out_dtype, copy=False))
    return result


# -- input checks ---------------------------------------------------------------------------


def _check_candidates(candidates: object) -> list[np.ndarray]:
    if isinstance(candidates, np.ndarray) or (
        hasattr(candidates, "__array__") and not isinstance(candidates, (list, tuple))
    ):
        arr = np.asarray(candidates)
        if arr.ndim < 2:
            raise InputError(
                f"`candidates` given as one array must have a leading algorithm axis and at "
                f"least one voxel axis; got an array of shape {arr.shape}."
            )
        raw = [arr[i] for i in range(arr.shape[0])]
    elif isinstance(candidates, (str, bytes)) or not isinstance(candidates, Iterable):
        raise InputError(
            "`candidates` must be a sequence of label maps or one array with a leading "
            f"algorithm axis; got {type(candidates).__name__}."
        )
    else:
        raw = list(candidates)
    if not raw:
        raise InputError("`candidates` is empty; expected at least one label map to fuse.")
    maps = [check_label_map(np.asarray(c), name=f"candidates[{i}]") for i, c in enumerate(raw)]
    if maps[0].ndim == 0:
        raise InputError(
            "`candidates` must be label maps with at least one axis; got scalars. Pass a list "
            "of arrays, or one array with a leading algorithm axis."
        )
    shapes = [m.shape for m in maps]
    if any(s != shapes[0] for s in shapes):
        odd = next(i for i, s in enumerate(shapes) if s != shapes[0])
        raise InputError(
            f"`candidates` must all have the same shape; got shapes {shapes} (candidate "
            f"{odd} has {shapes[odd]}, candidate 0 has {shapes[0]}). Resample them to one grid."
        )
    return maps


def _check_weights(weights: object, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    try:
        arr = np.asarray(weights, dtype=float)
    except (TypeError, ValueError):
        raise InputError(
            f"`weights` must be a sequence of {n} non-negative numbers, one per candidate; "
            f"got {weights!r}."
        ) from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(
            f"`weights` must hold one weight per candidate ({n}); got {arr.size} "
            f"value(s) of shape {arr.shape}: {weights!r}."
        )
    if not np.isfinite(arr).all():
        raise InputError(f"`weights` must be finite; got {weights!r}.")
    if (arr < 0).any():
        raise InputError(f"`weights` must be non-negative; got {weights!r}.")
    if not (arr > 0).any():
        raise InputError(
            f"`weights` must not all be zero (no candidate would vote); got {weights!r}."
        )
    return [float(x) for x in arr]


def _check_labels(labels: object) -> tuple[int, ...] | None:
    if labels is None:
        return None
    items = (labels,) if isinstance(labels, (int, np.integer)) else labels
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise InputError(
            f"`labels` must be None, an int or a list of non-negative ints; got {labels!r}."
        )
    out = set()
    for v in np.asarray(list(items), dtype=object).ravel():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(
                f"`labels` must hold non-negative integers (label values); got {v!r} in "
                f"{labels!r}."
            )
        if v:
            out.add(int(v))
    return tuple(sorted(out))


# -- the pieces -----------------------------------------------------------------------------


def union_box(maps: Sequence[np.ndarray]) -> tuple[slice, ...] | None:
    """Bounding box of the voxels that are non-zero in any map, as slices (None if there are none).

    Package-internal: the scoring pipeline crops a case's label maps to it, as :func:`fuse` does.

    Examples
    --------
    >>> union_box([np.array([0, 1, 0, 0]), np.array([0, 0, 2, 0])])
    (slice(1, 3, None),)
    """
    boxes = [box for box in map(bounding_box, maps) if box is not None]
    if not boxes:
        return None
    lo = np.min([lo for lo, _ in boxes], axis=0)
    hi = np.max([hi for _, hi in boxes], axis=0)
    return tuple(slice(int(low), int(high) + 1) for low, high in zip(lo, hi))




def _present_values(maps: list[np.ndarray], box: tuple[slice, ...] | None) -> tuple[int, ...]:
    """Sorted non-zero values present in any map (within `box` when given)."""
    seen: set[int] = set()
    for m in maps:
        seen.update(values_in(m if box is None else m[box]).tolist())
    seen.discard(0)
    return tuple(sorted(seen))


def _output_dtype(values: Iterable[int]) -> np.dtype:
    top = max(values, default=0)
    return np.result_type(np.uint8, np.min_scalar_type(int(top)))


def _label_index(m: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """Per voxel, 1 + the position of its value in `values`, or 0 for any other value."""
    width = np.uint8 if len(values) < 255 else np.uint32
    top = int(m.max()) if m.size else 0
    if top < 65536:
        lut = np.zeros(top + 1, dtype=width)
        for k, v in enumerate(values, start=1):
            if v <= top:
                lut[v] = k
        return lut[m]
    vals = np.asarray(values, dtype=np.int64)
    pos = np.searchsorted(vals, m)
    hit = (pos < vals.size) & (vals[np.minimum(pos, vals.size - 1)] == m)
    return np.where(hit, pos + 1, 0).astype(width)


def _patterns(crops: list[np.ndarray], values: tuple[int, ...]):
    """Distinct label patterns over the candidates, their voxel counts and the way back.

    Returns ``(patterns, counts, expand)``: ``patterns`` (P, n) holds label indices
    (see :func:`_label_index`), ``counts`` (P,) the number of voxels with each pattern,
    and ``expand(per_pattern)`` maps a per-pattern array back onto the cropped voxels.
    """
    n = len(crops)
    base = len(values) + 1
    index = [_label_index(c, values) for c in crops]
    shape = crops[0].shape
    if base**n <= _MAX_COUNTED_PATTERNS:
        code = np.zeros(shape, dtype=np.int64)
        for i, idx in enumerate(index):
            code += idx.astype(np.int64) * base**i
        counts_all = np.bincount(code.ravel(), minlength=base**n)
        present = np.flatnonzero(counts_all)
        patterns = (present[:, None] // base ** np.arange(n)) % base
        slot = np.zeros(base**n, dtype=np.int64)
        slot[present] = np.arange(present.size)
        where = slot[code]

        def expand(per_pattern: np.ndarray) -> np.ndarray:
            return per_pattern[where]

        return patterns, counts_all[present], expand

    rows = np.stack([idx.ravel() for idx in index], axis=1)
    patterns, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(shape)

    def expand_sorted(per_pattern: np.ndarray) -> np.ndarray:
        return per_pattern[inverse]

    return patterns.astype(np.int64), counts, expand_sorted


def _majority(votes: np.ndarray, weights: list[float]) -> np.ndarray:
    """Weighted majority vote per pattern, summed as BraTS Toolkit sums (candidate order, float64).

    ``votes`` is (P, n) bool: which candidates vote for the structure in each pattern.
    """
    tally = np.zeros(votes.shape[0])
    total = 0.0
    for i, w in enumerate(weights):
        tally += votes[:, i] * w  # adding 0.0 where a candidate does not vote is exact
        total += w
    return tally >= total / 2.0


def _mav(patterns: np.ndarray, value_of: np.ndarray, weights: list[float]) -> np.ndarray:
    fused = np.zeros(patterns.shape[0], dtype=np.int64)
    for k in range(value_of.size - 1, 0, -1):  # highest label first: lower labels win ties
        fused[_majority(patterns == k, weights)] = value_of[k]
    return fused


def _simple_binary(votes: np.ndarray, counts: np.ndarray, weights: list[float]) -> np.ndarray:
    """SIMPLE on one binary structure, per pattern; returns the estimate (P,) bool."""
    estimate = _majority(votes, weights)
    size = int(counts[estimate].sum())
    sizes = counts @ votes  # voxels per candidate
    for _ in range(_SIMPLE_ITERATIONS):
        overlap = (counts * estimate) @ votes
        new_weights = []
        for tp, volume in zip(overlap.tolist(), sizes.tolist()):
            denominator = np.int64(volume + size)  # 2 TP + FP + FN
            dice = np.int64(2 * tp) / denominator if denominator else np.float64(0.0)
            new_weights.append(float((dice + 1) ** 2))
        estimate = _majority(votes, new_weights)
        new_size = int(counts[estimate].sum())
        if abs(size - new_size) < _SIMPLE_STOP:
            break
        size = new_size
    return estimate


def _simple(patterns, counts, value_of, weights) -> np.ndarray:
    fused = np.zeros(patterns.shape[0], dtype=np.int64)
    for k in range(1, value_of.size):  # lowest label first: higher labels overwrite
        fused[_simple_binary(patterns == k, counts, weights)] = value_of[k]
    return fused


def _brats_regions(present: tuple[int, ...]) -> tuple[tuple[int, tuple[int, ...], bool], ...]:
    """The BraTS-SIMPLE regions for the label values present in a case's candidates.

    Classic maps (enhancing tumour 4) follow BraTS Toolkit exactly, where any non-zero value
    joins the whole tumour. A map with 3 and without 4 is a BraTS 2023 map (enhancing tumour
    3): BraTS Toolkit's classic rule would write its 3s as 2 and lose the enhancing tumour,
    so the 2023 regions are fused instead. Other values next to a 3 make the scheme
    ambiguous: refused rather than guessed.
    """
    if 4 in present or 3 not in present:
        return _BRATS_REGIONS
    if set(present) <= {1, 2, 3}:
        return _BRATS_2023_REGIONS
    raise InputError(
        "method='brats-simple' fuses the BraTS regions of label values 1, 2, 4 (classic) or "
        f"1, 2, 3 (BraTS 2023); the candidates hold {', '.join(map(str, present))}. Map the "
        "labels to one of these schemes first, or use method='simple' (per label) or "
        "method='mav'."
    )


def _brats_simple(patterns, counts, value_of, weights, regions) -> np.ndarray:
    raw = value_of[patterns]
    fused = np.zeros(patterns.shape[0], dtype=np.int64)
    for written, members, any_nonzero in regions:
        votes = raw != 0 if any_nonzero else np.isin(raw, members)
        fused[_simple_binary(votes, counts, weights)] = written
    return fused


def _staple(maps: list[np.ndarray], values: tuple[int, ...]) -> np.ndarray:
    import SimpleITK as sitk

    shape = maps[0].shape
    out_dtype = _output_dtype(values)
    if not values:
        return np.zeros(shape, dtype=out_dtype)
    pixel = np.uint8 if len(values) < 255 else np.uint16
    # STAPLE is voxel-wise, so any grid SimpleITK cannot hold is flattened to 2-D.
    grid = shape if len(shape) in (2, 3) else (1, -1)
    images = [
        sitk.GetImageFromArray(_label_index(m, values).astype(pixel, copy=False).reshape(grid))
        for m in maps
    ]
    staple = sitk.MultiLabelSTAPLEImageFilter()
    # Undecided voxels go to background: the index 0 that stands for it.
    staple.SetLabelForUndecidedPixels(0)
    index = sitk.GetArrayFromImage(staple.Execute(images))
    value_of = np.concatenate([[0], np.asarray(values)]).astype(out_dtype)
    return value_of[index].reshape(shape)

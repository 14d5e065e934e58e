"""Tests of qe_nb.metrics: conformance with SimpleITK, surface-distance and MedPy, the
empty-mask rules, properties and every error message."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from qe_nb.core.labels import structure_masks
from qe_nb.core.masks import surfel_area_table as _surfel_area_table
from qe_nb.core.metrics import (
    METRICS,
    MetricSpec,
    abs_volume_diff,
    assd,
    compute_metrics,
    compute_metrics_many,
    dice,
    hausdorff,
    jaccard,
    metric_spec,
    metrics_of_pairs,
    nsd,
)
from qe_nb.exceptions import InputError

sitk = pytest.importorskip("SimpleITK")
surface_distance = pytest.importorskip("surface_distance")
medpy_binary = pytest.importorskip("medpy.metric.binary")
from surface_distance import lookup_tables  # noqa: E402

# surface-distance imports scipy.ndimage.filters / .morphology, deprecated in SciPy.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance")

ALL = ("dice", "jaccard", "hd", "hd95", "hd95_medpy", "assd", "nsd", "abs_volume_diff")
SPACINGS = ((2.5, 0.8, 0.7), (1.0, 1.0, 1.0), (0.7, 1.3, 3.0), (1.5, 1.5, 0.5))
N_BATCHES, PER_BATCH = 8, 26  # 208 random pairs
ATOL = 1e-6


# ----------------------------------------------------------------------------------------
# Peers


def sitk_hausdorff(a: np.ndarray, b: np.ndarray, spacing) -> float:
    images = []
    for m in (a, b):
        image = sitk.GetImageFromArray(m.astype(np.uint8))
        image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK is (x, y, z)
        images.append(image)
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(*images)
    return f.GetHausdorffDistance()


def peer_metrics(a: np.ndarray, b: np.ndarray, spacing, tolerance: float = 1.0) -> dict[str, float]:
    """Every metric from other people's code (both masks non-empty)."""
    sd = surface_distance.compute_surface_distances(a, b, spacing)
    return {
        "dice": medpy_binary.dc(a, b),
        "jaccard": medpy_binary.jc(a, b),
        "hd": sitk_hausdorff(a, b, spacing),
        "hd95": surface_distance.compute_robust_hausdorff(sd, 95),
        "hd95_medpy": medpy_binary.hd95(a, b, voxelspacing=spacing),
        "assd": float(np.mean(surface_distance.compute_average_surface_distance(sd))),
        "nsd": surface_distance.compute_surface_dice_at_tolerance(sd, tolerance),
        "abs_volume_diff": abs(int(a.sum()) - int(b.sum())) * float(np.prod(spacing)),
    }


# ----------------------------------------------------------------------------------------
# Random pairs: blobs from thresholded smoothed noise, of several kinds


def _blob(rng: np.random.Generator, shape, *, sigma=None, level=None) -> np.ndarray:
    sigma = rng.uniform(1.5, 3.0) if sigma is None else sigma
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    level = rng.uniform(0.3, 1.6) if level is None else level
    return noise > level * noise.std()


def _nonempty(rng, shape, **kw) -> np.ndarray:
    for _ in range(20):
        m = _blob(rng, shape, **kw)
        if m.any():
            return m
    m = np.zeros(shape, bool)
    m[tuple(s // 2 for s in shape)] = True
    return m


def random_pair(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], str]:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(20, 41, size=3))
    spacing = SPACINGS[seed % len(SPACINGS)]
    kind = ("independent", "nested", "shell", "tiny", "border", "shifted", "one-voxel-vs-blob")[
        seed % 7
    ]
    a = _nonempty(rng, shape)
    if kind == "independent":
        b = _nonempty(rng, shape)
    elif kind == "nested":  # b inside a
        b = a & _blob(rng, shape, level=0.0)
        if not b.any():
            b = a.copy()
    elif kind == "shell":  # a full blob, b its shell: a holds points of b's medial axis
        a = _nonempty(rng, shape, sigma=4.0, level=0.2)
        b = a & ~ndimage.binary_erosion(a, iterations=int(rng.integers(1, 4)))
    elif kind == "tiny":
        a = np.zeros(shape, bool)
        b = np.zeros(shape, bool)
        a[tuple(rng.integers(0, shape))] = True
        b[tuple(rng.integers(0, shape))] = True
        if rng.random() < 0.5:  # two or three voxels
            b[tuple(rng.integers(0, shape))] = True
    elif kind == "border":  # large blobs cut by the array's faces
        a = _nonempty(rng, shape, level=-0.3)
        b = _nonempty(rng, shape, level=-0.2)
        a[0, :, :] |= rng.random(shape[1:]) < 0.5
        b[:, -1, :] |= rng.random((shape[0], shape[2])) < 0.5
    elif kind == "shifted":
        shift = tuple(int(s) for s in rng.integers(-3, 4, size=3))
        b = np.roll(a, shift, axis=(0, 1, 2)) | (rng.random(shape) < 0.002)
    else:
        b = np.zeros(shape, bool)
        b[tuple(rng.integers(0, shape))] = True
    if rng.random() < 0.5:
        a, b = b, a
    return a, b, spacing, kind


@pytest.mark.parametrize("batch", range(N_BATCHES))
def test_conformance_random_pairs(batch):
    worst = dict.fromkeys(ALL, 0.0)
    kinds = set()
    for seed in range(batch * PER_BATCH, (batch + 1) * PER_BATCH):
        a, b, spacing, kind = random_pair(seed)
        assert a.any() and b.any()
        kinds.add(kind)
        ours = compute_metrics(a, b, ALL, spacing=spacing)
        ref = peer_metrics(a, b, spacing)
        for m in ALL:
            np.testing.assert_allclose(ours[m], ref[m], atol=ATOL, rtol=0, err_msg=f"seed {seed} ({kind}) {m}")
            worst[m] = max(worst[m], abs(ours[m] - ref[m]))
    assert len(kinds) == 7


def _large_far_pair(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Two big overlapping blobs (tens of thousands of voxels), one with a far satellite
    and a shifted copy: many voxels and surfels lie beyond the offset scan's radius."""
    rng = np.random.default_rng(1000 + seed)
    shape = (48, 56, 64)
    a = _blob(rng, shape, sigma=4.0, level=-0.2)
    b = np.roll(a, tuple(int(v) for v in rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
    b &= ~_blob(rng, shape, sigma=3.0, level=1.4)
    far = np.zeros(shape, bool)
    corner = rng.integers(0, 6, size=3)
    far[tuple(slice(c, c + 5) for c in corner)] = True
    if seed % 2:
        a = a & ~ndimage.binary_dilation(far, iterations=12)
        b |= far
    else:
        b = b & ~ndimage.binary_dilation(far, iterations=12)
        a |= far
    return a, b, SPACINGS[seed % len(SPACINGS)]


@pytest.mark.parametrize("fallback", ["kd-tree", "distance-transform"])
def test_conformance_large_far_pairs_on_every_distance_path(monkeypatch, fallback):
    """Large pairs with far parts go through every distance path: the offset scan, the
    k-d tree or the distance transform for what lies beyond it, and the block pruning of
    the exact Hausdorff distance. Each path gives the peers' values."""
    from qe_nb.core import distances as qm

    monkeypatch.setattr(qm, "_EDT_FRACTION", 1.0 if fallback == "kd-tree" else 0.0)
    measured = {"hd_query": 0, "hd_measured": 0, "measured": 0, "beyond_scan": 0}
    scan, farthest_distances = qm._scan, qm._distances

    def counting_scan(cells, target, offsets):
        out, todo = scan(cells, target, offsets)
        measured["beyond_scan"] += todo.size
        return out, todo

    def counting_distances(query, target, origin, spacing, tree_of_target=None, *, cells=None):
        out = farthest_distances(query, target, origin, spacing, tree_of_target, cells=cells)
        measured["measured"] += out.size
        return out

    monkeypatch.setattr(qm, "_scan", counting_scan)
    monkeypatch.setattr(qm, "_distances", counting_distances)
    for seed in range(4):
        a, b, spacing = _large_far_pair(seed)
        before = measured["measured"]
        hd_alone = compute_metrics(a, b, "hd", spacing=spacing)["hd"]
        measured["hd_measured"] += measured["measured"] - before
        measured["hd_query"] += int(np.count_nonzero(a & ~b) + np.count_nonzero(b & ~a))
        ours = compute_metrics(a, b, ("hd", "hd95", "assd", "nsd"), spacing=spacing)
        assert ours["hd"] == hd_alone
        sd = surface_distance.compute_surface_distances(a, b, spacing)
        assert ours["hd"] == pytest.approx(sitk_hausdorff(a, b, spacing), abs=ATOL), seed
        assert ours["hd95"] == surface_distance.compute_robust_hausdorff(sd, 95), seed
        assert ours["assd"] == pytest.approx(
            float(np.mean(surface_distance.compute_average_surface_distance(sd))), abs=ATOL), seed
        assert ours["nsd"] == surface_distance.compute_surface_dice_at_tolerance(sd, 1.0), seed
    assert measured["beyond_scan"] > 1000, measured
    # the block pruning measured a fraction of the voxels of the Hausdorff queries
    assert measured["hd_measured"] < 0.5 * measured["hd_query"], measured


def test_random_pairs_cover_interesting_cases():
    """The generator really makes nested pairs, one-voxel masks and masks on the border,
    and the shells separate MedPy's surface hd from the exact voxel-set hd."""
    seen = {"nested": 0, "one_voxel": 0, "border": 0, "hd_differs_from_medpy": 0}
    for seed in range(N_BATCHES * PER_BATCH):
        a, b, spacing, kind = random_pair(seed)
        if (a <= b).all() or (b <= a).all():
            seen["nested"] += 1
        if a.sum() == 1 or b.sum() == 1:
            seen["one_voxel"] += 1
        if any(np.take(m, i, axis=ax).any() for m in (a, b) for ax in range(3) for i in (0, -1)):
            seen["border"] += 1
        if kind == "shell":
            medpy_hd = hausdorff(a, b, spacing=spacing, definition="medpy")
            if medpy_hd > hausdorff(a, b, spacing=spacing) + 0.1:
                seen["hd_differs_from_medpy"] += 1
    assert seen["nested"] >= 20 and seen["one_voxel"] >= 20 and seen["border"] >= 20, seen
    assert seen["hd_differs_from_medpy"] >= 3, seen


@pytest.mark.parametrize("seed", [3, 10, 17, 40])
def test_hausdorff_medpy_definition_at_100_is_medpy_hd(seed):
    a, b, spacing, _ = random_pair(seed)
    ours = hausdorff(a, b, spacing=spacing, percentile=100, definition="medpy")
    assert ours == pytest.approx(medpy_binary.hd(a, b, voxelspacing=spacing), abs=ATOL)


@pytest.mark.parametrize("percentile", [0.0, 50.0, 90.0, 99.0])
def test_hausdorff_other_percentiles_match_peers(percentile):
    for seed in range(0, 42, 6):
        a, b, spacing, _ = random_pair(seed)
        sd = surface_distance.compute_surface_distances(a, b, spacing)
        ours = hausdorff(a, b, spacing=spacing, percentile=percentile)
        assert ours == pytest.approx(surface_distance.compute_robust_hausdorff(sd, percentile), abs=ATOL)
        ours_medpy = hausdorff(a, b, spacing=spacing, percentile=percentile, definition="medpy")
        pooled = np.hstack(
            [
                medpy_binary.__surface_distances(a, b, spacing),
                medpy_binary.__surface_distances(b, a, spacing),
            ]
        )
        assert ours_medpy == pytest.approx(np.percentile(pooled, percentile), abs=ATOL)


@pytest.mark.parametrize("tolerance", [0.0, 0.5, 2.0, 5.0])
def test_nsd_tolerances_match_surface_distance(tolerance):
    for seed in range(1, 43, 6):
        a, b, spacing, _ = random_pair(seed)
        sd = surface_distance.compute_surface_distances(a, b, spacing)
        expected = surface_distance.compute_surface_dice_at_tolerance(sd, tolerance)
        assert nsd(a, b, spacing=spacing, tolerance=tolerance) == pytest.approx(expected, abs=ATOL)
        assert compute_metrics(a, b, ["nsd"], spacing=spacing, nsd_tolerance=tolerance)["nsd"] == (
            pytest.approx(expected, abs=ATOL)
        )


def test_single_metric_functions_agree_with_peers():
    for seed in range(5, 40, 5):
        a, b, spacing, _ = random_pair(seed)
        ref = peer_metrics(a, b, spacing)
        assert dice(a, b) == pytest.approx(ref["dice"], abs=ATOL)
        assert jaccard(a, b) == pytest.approx(ref["jaccard"], abs=ATOL)
        assert hausdorff(a, b, spacing=spacing) == pytest.approx(ref["hd"], abs=ATOL)
        assert hausdorff(a, b, spacing=spacing, percentile=95) == pytest.approx(ref["hd95"], abs=ATOL)
        assert hausdorff(a, b, spacing=spacing, percentile=95, definition="medpy") == (
            pytest.approx(ref["hd95_medpy"], abs=ATOL)
        )
        assert assd(a, b, spacing=spacing) == pytest.approx(ref["assd"], abs=ATOL)
        assert abs_volume_diff(a, b, spacing=spacing) == pytest.approx(ref["abs_volume_diff"])


def test_compute_metrics_many_equals_pairwise():
    rng = np.random.default_rng(7)
    shape = (24, 30, 28)
    fused = _nonempty(rng, shape, level=0.5)
    candidates = np.stack(
        [fused ^ (_blob(rng, shape, level=1.5)), _nonempty(rng, shape), np.zeros(shape, bool), fused]
    )
    spacing = (2.5, 0.8, 0.7)
    got = compute_metrics_many(fused, candidates, ALL, spacing=spacing, nsd_tolerance=1.5)
    assert got.shape == (4, len(ALL))
    for i, c in enumerate(candidates):
        expected = compute_metrics(fused, c, ALL, spacing=spacing, nsd_tolerance=1.5)
        np.testing.assert_array_equal(got[i], [expected[m] for m in ALL])
    assert got[3].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_metrics_of_pairs_equals_pairwise_and_checks_pairs():
    rng = np.random.default_rng(8)
    shape = (24, 30, 28)
    fused = _nonempty(rng, shape, level=0.5)
    masks = np.stack([fused, fused ^ _blob(rng, shape, level=1.5), _nonempty(rng, shape),
                      np.zeros(shape, bool), _nonempty(rng, shape, level=0.8)])
    pairs = [(0, 1), (0, 2), (0, 3), (4, 0), (4, 1), (4, 2), (4, 3), (2, 2)]
    spacing = (0.7, 1.3, 3.0)
    got = metrics_of_pairs(masks, pairs, ALL, spacing=spacing, nsd_tolerance=2.0)
    assert got.shape == (len(pairs), len(ALL))
    for row, (i, j) in zip(got, pairs):
        expected = compute_metrics(masks[i], masks[j], ALL, spacing=spacing, nsd_tolerance=2.0)
        np.testing.assert_array_equal(row, [expected[m] for m in ALL])
    with pytest.raises(InputError, match=r"`pairs` holds \(0, 5\), outside the 5 masks"):
        metrics_of_pairs(masks, [(0, 5)])
    with pytest.raises(InputError, match=r"`pairs` must hold pairs of integer indices; got \(0, 1, 2\)"):
        metrics_of_pairs(masks, [(0, 1, 2)])
    with pytest.raises(InputError, match=r"`pairs` must hold pairs of integer indices; got \(0.5, 1\)"):
        metrics_of_pairs(masks, [(0.5, 1)])
    with pytest.raises(InputError, match=r"`masks` must stack masks on a leading axis; got shape \(5,\)"):
        metrics_of_pairs(np.ones(5, bool), [(0, 1)])


def test_2d_masks_match_surface_distance():
    rng = np.random.default_rng(2)
    for _ in range(15):
        shape = tuple(int(n) for n in rng.integers(15, 40, size=2))
        a, b = _nonempty(rng, shape), _nonempty(rng, shape)
        spacing = (0.9, 1.7)
        sd = surface_distance.compute_surface_distances(a, b, spacing)
        ours = compute_metrics(a, b, ["hd", "hd95", "assd", "nsd", "hd95_medpy"], spacing=spacing)
        assert ours["hd95"] == pytest.approx(surface_distance.compute_robust_hausdorff(sd, 95), abs=ATOL)
        assert ours["assd"] == pytest.approx(
            np.mean(surface_distance.compute_average_surface_distance(sd)), abs=ATOL
        )
        assert ours["nsd"] == pytest.approx(
            surface_distance.compute_surface_dice_at_tolerance(sd, 1.0), abs=ATOL
        )
        assert ours["hd"] == pytest.approx(sitk_hausdorff(a, b, spacing), abs=ATOL)
        assert ours["hd95_medpy"] == pytest.approx(medpy_binary.hd95(a, b, voxelspacing=spacing), abs=ATOL)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.8, 0.7), (0.3, 5.0, 1.1)])
def test_surfel_area_table_is_surface_distances(spacing):
    expected = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_array_equal(_surfel_area_table(spacing), expected)


def test_contour_length_table_is_surface_distances():
    expected = lookup_tables.create_table_neighbour_code_to_contour_length((0.9, 1.7))
    np.testing.assert_allclose(_surfel_area_table((0.9, 1.7)), expected, rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------------------
# The real BraTS case


def _crop_for_peers(a: np.ndarray, b: np.ndarray, margin: int = 3):
    """Crop to the union box with a zero margin: every peer's result is unchanged (their
    surfaces, erosions and distance maps see zeros there either way) and MedPy's full-volume
    distance transforms take seconds instead of minutes."""
    idx = np.argwhere(a | b)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = idx.max(0) + margin + 1
    box = tuple(slice(lo_, hi_) for lo_, hi_ in zip(lo, hi))
    return np.ascontiguousarray(a[box]), np.ascontiguousarray(b[box])


@pytest.fixture(scope="module")
def brats_regions(brats_case_dir, brats_candidates):
    fused = sitk.GetArrayFromImage(
        sitk.ReadImage(str(brats_case_dir / "fusion-brats-toolkit" / "mav.nii.gz"))
    )
    names = list(brats_candidates)
    return (
        structure_masks(fused, "brats-regions"),
        np.stack([structure_masks(brats_candidates[n], "brats-regions") for n in names], axis=1),
        names,
    )


def test_brats_case_matches_peers(brats_regions):
    fused, candidates, names = brats_regions
    spacing = (1.0, 1.0, 1.0)
    compared = empty_checked = 0
    for r, region in enumerate(("whole_tumor", "tumor_core", "enhancing_tumor")):
        rows = compute_metrics_many(fused[r], candidates[r], ALL, spacing=spacing)
        for i, name in enumerate(names):
            ours = dict(zip(ALL, rows[i]))
            f, c = fused[r], candidates[r, i]
            if not f.any() or not c.any():
                # MedPy and surface-distance cannot handle an empty mask: check our rule.
                both = not f.any() and not c.any()
                assert ours["dice"] == ours["jaccard"] == ours["nsd"] == (1.0 if both else 0.0)
                for m in ("hd", "hd95", "hd95_medpy", "assd"):
                    assert ours[m] == (0.0 if both else math.inf), (region, name, m)
                empty_checked += 1
                continue
            ref = peer_metrics(*_crop_for_peers(f, c), spacing)
            for m in ALL:
                assert ours[m] == pytest.approx(ref[m], abs=ATOL), (region, name, m)
            compared += 1
    # enhancing tumour is empty in the fusion and in three of five candidates
    assert (compared, empty_checked) == (10, 5)


@pytest.mark.slow
def test_brats_whole_volume_peers_without_cropping(brats_regions):
    """One pair on the whole 155 x 240 x 240 grid, as the peers see it uncropped."""
    fused, candidates, _ = brats_regions
    f, c = np.ascontiguousarray(fused[1]), np.ascontiguousarray(candidates[1, 0])
    ours = compute_metrics(f, c, ALL)
    ref = peer_metrics(f, c, (1.0, 1.0, 1.0))
    for m in ALL:
        assert ours[m] == pytest.approx(ref[m], abs=ATOL), m


# ----------------------------------------------------------------------------------------
# Empty masks


@pytest.mark.parametrize("ndim", [2, 3])
def test_both_empty(ndim):
    e = np.zeros((4,) * ndim, bool)
    got = compute_metrics(e, e, ALL)
    assert got == {
        "dice": 1.0, "jaccard": 1.0, "hd": 0.0, "hd95": 0.0, "hd95_medpy": 0.0,
        "assd": 0.0, "nsd": 1.0, "abs_volume_diff": 0.0,
    }
    assert (dice(e, e), jaccard(e, e), hausdorff(e, e), assd(e, e), nsd(e, e)) == (1, 1, 0, 0, 1)
    assert abs_volume_diff(e, e) == 0.0


@pytest.mark.parametrize("empty_first", [True, False])
def test_exactly_one_empty(empty_first):
    m = np.zeros((4, 5, 6), bool)
    m[1:3, 1:3, 1:4] = True
    e = np.zeros_like(m)
    a, b = (e, m) if empty_first else (m, e)
    got = compute_metrics(a, b, ALL, spacing=(2.0, 1.0, 1.0))
    assert got["dice"] == got["jaccard"] == got["nsd"] == 0.0
    for m_id in ("hd", "hd95", "hd95_medpy", "assd"):
        assert got[m_id] == math.inf
    assert got["abs_volume_diff"] == 24.0  # the volume of the other mask: finite
    assert hausdorff(a, b, percentile=95) == math.inf
    assert hausdorff(a, b, definition="medpy") == math.inf
    assert assd(a, b) == math.inf and nsd(a, b) == 0.0
    assert dice(a, b) == jaccard(a, b) == 0.0


def test_empty_rules_raise_no_warning(recwarn):
    e = np.zeros((3, 3, 3), bool)
    m = e.copy()
    m[1, 1, 1] = True
    compute_metrics(e, m, ALL)
    compute_metrics(e, e, ALL)
    compute_metrics_many(e, np.stack([e, m]), ALL)
    assert len(recwarn) == 0


# ----------------------------------------------------------------------------------------
# Small cases checkable by hand


def test_hand_checked_values():
    a = np.zeros((1, 1, 8), bool)
    b = np.zeros_like(a)
    a[0, 0, 0] = True
    b[0, 0, 3] = True
    assert hausdorff(a, b) == 3.0
    assert hausdorff(a, b, spacing=(1.0, 1.0, 0.5)) == 1.5
    # nested: a full 5-cube, b its centre voxel; exact hd is the cube's corner to the centre
    a = np.zeros((7, 7, 7), bool)
    a[1:6, 1:6, 1:6] = True
    b = np.zeros_like(a)
    b[3, 3, 3] = True
    assert hausdorff(a, b) == pytest.approx(math.sqrt(12))
    assert hausdorff(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(math.sqrt(16 + 4 + 4))
    assert abs_volume_diff(a, b, spacing=(2.0, 1.0, 0.5)) == 124.0


def test_hd_inside_not_on_surface():
    """b is a hollow shell around a: the voxel of a farthest from b is a's centre, deep
    inside a, which surface-to-surface distances miss."""
    a = np.zeros((9, 9, 9), bool)
    a[1:8, 1:8, 1:8] = True
    b = a & ~ndimage.binary_erosion(a)
    assert hausdorff(a, b) == pytest.approx(3.0)
    assert sitk_hausdorff(a, b, (1.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert hausdorff(a, b, definition="medpy") == 0.0  # the boundaries coincide


def test_integer_masks_are_accepted():
    rng = np.random.default_rng(0)
    a = _nonempty(rng, (10, 12, 11))
    b = _nonempty(rng, (10, 12, 11))
    for dtype in (np.uint8, np.int16, np.int64):
        assert compute_metrics(a.astype(dtype), b.astype(dtype), ALL) == compute_metrics(a, b, ALL)


def test_metric_registry():
    assert set(METRICS) == set(ALL)
    for mid, spec in METRICS.items():
        assert isinstance(spec, MetricSpec) and spec.id == mid
        assert spec.units in {"1", "mm", "mm3"}
        assert spec.higher_is_better == (mid in {"dice", "jaccard", "nsd"})
    assert metric_spec("abs_volume_diff").units == "mm3"
    with pytest.raises(AttributeError):
        METRICS["dice"].units = "mm"  # type: ignore[misc]


def test_single_metric_string_is_accepted():
    m = np.ones((2, 2, 2), bool)
    assert compute_metrics(m, m, "hd") == {"hd": 0.0}


# ----------------------------------------------------------------------------------------
# Properties

masks = arrays(bool, st.tuples(*[st.integers(1, 6)] * 3))


@settings(max_examples=60, deadline=None)
@given(masks)
def test_identity(m):
    if m.any():
        assert dice(m, m) == 1.0
        assert hausdorff(m, m) == 0.0
        assert hausdorff(m, m, percentile=95) == 0.0
        assert nsd(m, m, tolerance=0.0) == 1.0
    else:
        assert dice(m, m) == 1.0 and hausdorff(m, m) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_symmetry(data):
    shape = data.draw(st.tuples(*[st.integers(1, 6)] * 3))
    a = data.draw(arrays(bool, shape))
    b = data.draw(arrays(bool, shape))
    spacing = data.draw(st.tuples(*[st.sampled_from([0.5, 1.0, 2.5])] * 3))
    ab = compute_metrics(a, b, ALL, spacing=spacing)
    ba = compute_metrics(b, a, ALL, spacing=spacing)
    assert ab["dice"] == ba["dice"]
    assert ab["hd"] == ba["hd"]
    for m in ("hd95", "hd95_medpy", "assd", "nsd", "jaccard", "abs_volume_diff"):
        assert ab[m] == pytest.approx(ba[m], abs=1e-12)
    assert 0.0 <= ab["dice"] <= 1.0 and 0.0 <= ab["nsd"] <= 1.0


# ----------------------------------------------------------------------------------------
# Errors


def test_shape_mismatch():
    with pytest.raises(InputError, match=r"`a` and `b` must have the same shape; got \(3, 4\) and \(3, 5\)"):
        dice(np.zeros((3, 4), bool), np.zeros((3, 5), bool))
    with pytest.raises(InputError, match=r"same shape; got \(2, 2, 2\) and \(2, 2\)"):
        compute_metrics(np.zeros((2, 2, 2), bool), np.zeros((2, 2), bool))


@pytest.mark.parametrize(
    ("spacing", "pattern"),
    [
        ((1.0, 1.0), r"`spacing` must hold one value per mask axis \(3, in numpy \(z, y, x\) order\); got \(1.0, 1.0\)"),
        (1.0, r"`spacing` must hold one value per mask axis \(3"),
        ((1.0, 0.0, 1.0), r"`spacing` must hold finite positive millimetres; got \(1.0, 0.0, 1.0\)"),
        ((1.0, -2.0, 1.0), r"finite positive millimetres; got \(1.0, -2.0, 1.0\)"),
        ((1.0, float("nan"), 1.0), r"finite positive millimetres; got \(1.0, nan, 1.0\)"),
        ((1.0, float("inf"), 1.0), r"finite positive millimetres"),
        (("a", 1, 1), r"`spacing` must be 3 numbers in mm, in numpy \(z, y, x\) order; got \('a', 1, 1\)"),
    ],
)
def test_bad_spacing(spacing, pattern):
    m = np.ones((2, 2, 2), bool)
    for call in (
        lambda: hausdorff(m, m, spacing=spacing),
        lambda: compute_metrics(m, m, spacing=spacing),
        lambda: compute_metrics_many(m, m[None], spacing=spacing),
        lambda: assd(m, m, spacing=spacing),
        lambda: nsd(m, m, spacing=spacing),
        lambda: abs_volume_diff(m, m, spacing=spacing),
    ):
        with pytest.raises(InputError, match=pattern):
            call()


def test_non_boolean_masks():
    good = np.zeros((2, 2), bool)
    with pytest.raises(InputError, match=r"`a` must be a boolean mask \(or an integer array of 0 and 1\); got dtype float64"):
        dice(np.zeros((2, 2)), good)
    with pytest.raises(InputError, match=r"`b` must be a boolean mask .*got an integer array holding 4.*`b == 4`"):
        jaccard(good, np.array([[0, 4], [1, 0]], dtype=np.uint8))
    with pytest.raises(InputError, match=r"got an integer array holding -1"):
        hausdorff(np.array([[0, -1], [1, 0]]), good)
    with pytest.raises(InputError, match=r"`fused` must be a boolean mask .*got dtype <U1"):
        compute_metrics_many(np.array(["a"]), np.zeros((1, 1), bool))
    with pytest.raises(InputError, match=r"`a` must be an array with at least one axis; got a scalar"):
        dice(True, True)


def test_unknown_metric():
    m = np.ones((2, 2, 2), bool)
    expected = r"Unknown metric 'hd99'; expected one of \['abs_volume_diff', 'assd', 'dice', 'hd', 'hd95', 'hd95_medpy', 'jaccard', 'nsd'\]"
    with pytest.raises(InputError, match=expected):
        metric_spec("hd99")
    with pytest.raises(InputError, match=expected):
        compute_metrics(m, m, ["dice", "hd99"])
    with pytest.raises(InputError, match=r"Unknown metric 3"):
        compute_metrics_many(m, m[None], [3])
    with pytest.raises(InputError, match=r"`metrics` must be a metric id or a sequence of them .*got 5"):
        compute_metrics(m, m, 5)


@pytest.mark.parametrize("percentile", [-1, 100.5, float("nan"), "95", True])
def test_bad_percentile(percentile):
    m = np.ones((2, 2, 2), bool)
    with pytest.raises(InputError, match=r"`percentile` must be a (finite number >= 0 and <= 100|number); got"):
        hausdorff(m, m, percentile=percentile)


def test_bad_definition():
    m = np.ones((2, 2, 2), bool)
    with pytest.raises(InputError, match=r"`definition` must be one of \['surface-distance', 'medpy'\]; got 'pymia'"):
        hausdorff(m, m, definition="pymia")


def test_bad_tolerance():
    m = np.ones((2, 2, 2), bool)
    with pytest.raises(InputError, match=r"`tolerance` must be a finite number >= 0; got -1.0"):
        nsd(m, m, tolerance=-1)
    with pytest.raises(InputError, match=r"`nsd_tolerance` must be a finite number >= 0; got inf"):
        compute_metrics(m, m, ["nsd"], nsd_tolerance=math.inf)
    with pytest.raises(InputError, match=r"`nsd_tolerance` must be a number; got None"):
        compute_metrics_many(m, m[None], ["nsd"], nsd_tolerance=None)


@pytest.mark.parametrize("ndim", [1, 4])
def test_surfel_metrics_need_2d_or_3d(ndim):
    m = np.ones((2,) * ndim, bool)
    pattern = rf"metric\(s\) \[.*\] need 2-D or 3-D masks \(surface-distance's surfels\); got {ndim}-D masks"
    with pytest.raises(InputError, match=pattern):
        compute_metrics(m, m, ["dice", "hd95", "nsd"])
    with pytest.raises(InputError, match=pattern):
        hausdorff(m, m, percentile=95)
    with pytest.raises(InputError, match=pattern):
        assd(m, m)
    with pytest.raises(InputError, match=pattern):
        nsd(m, m)
    # voxel-set and MedPy metrics work in any dimension
    assert compute_metrics(m, m, ["dice", "hd", "hd95_medpy"]) == {"dice": 1.0, "hd": 0.0, "hd95_medpy": 0.0}


def test_many_candidates_shape():
    with pytest.raises(
        InputError, match=r"`candidates` must have shape \(n, \*fused.shape\) = \(n, 3, 4\); got \(2, 3, 5\)"
    ):
        compute_metrics_many(np.zeros((3, 4), bool), np.zeros((2, 3, 5), bool))


# -- zero-size arrays: an error naming the argument and the shape, never a raw numpy error --


_NO_VOXELS = r"has no voxel: shape \(0, 4, 4\); a mask needs at least one voxel along every axis"


@pytest.mark.parametrize(
    "call",
    [
        lambda z: dice(z, z),
        lambda z: jaccard(z, z),
        lambda z: hausdorff(z, z),
        lambda z: hausdorff(z, z, definition="medpy"),
        lambda z: assd(z, z),
        lambda z: nsd(z, z),
        lambda z: abs_volume_diff(z, z),
        lambda z: compute_metrics(z, z, ["dice", "hd"]),
    ],
)
def test_zero_size_masks_are_refused(call):
    with pytest.raises(InputError, match=r"`a` " + _NO_VOXELS):
        call(np.zeros((0, 4, 4), bool))


def test_zero_size_batches_are_refused():
    z = np.zeros((0, 4, 4), bool)
    with pytest.raises(InputError, match=r"`fused` " + _NO_VOXELS):
        compute_metrics_many(z, z[None])
    with pytest.raises(InputError, match=r"`masks` holds masks of shape \(0, 4, 4\), without a voxel"):
        metrics_of_pairs(np.stack([z, z]), [(0, 1)])


def test_no_candidates_is_an_empty_table_not_an_error():
    assert compute_metrics_many(np.zeros((4, 4), bool), np.zeros((0, 4, 4), bool)).shape == (0, 2)

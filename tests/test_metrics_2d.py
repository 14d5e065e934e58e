"""2-D images (y, x) with pixel spacing: metrics against SimpleITK, surface-distance and MedPy,
fusion against its own 3-D result with one slice and against SimpleITK's STAPLE, and the
structure masks of a 2-D label map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from qe_nb.core.fusion import METHODS, fuse
from qe_nb.core.labels import structure_masks
from qe_nb.core.metrics import (
    abs_volume_diff,
    assd,
    compute_metrics,
    compute_metrics_many,
    dice,
    hausdorff,
    jaccard,
    metrics_of_pairs,
    nsd,
)
from qe_nb.exceptions import InputError

sitk = pytest.importorskip("SimpleITK")
surface_distance = pytest.importorskip("surface_distance")
medpy_binary = pytest.importorskip("medpy.metric.binary")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance")

ALL = ("dice", "jaccard", "hd", "hd95", "hd95_medpy", "assd", "nsd", "abs_volume_diff")
# (y, x) pixel spacings, anisotropic as microscopy and X-ray often are
SPACINGS = ((0.65, 0.5), (1.0, 2.5), (0.3, 0.9), (1.0, 1.0), (2.0, 0.7))
ATOL = 1e-6


def sitk_hausdorff(a, b, spacing) -> float:
    images = []
    for m in (a, b):
        image = sitk.GetImageFromArray(m.astype(np.uint8))  # a 2-D array gives a 2-D image
        assert image.GetDimension() == 2
        image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK is (x, y)
        images.append(image)
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(*images)
    return f.GetHausdorffDistance()


def peers(a, b, spacing, tolerance) -> dict[str, float]:
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


def _blob(rng, shape, sigma=None, level=None):
    sigma = rng.uniform(1.5, 4.0) if sigma is None else sigma
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    level = rng.uniform(0.3, 1.6) if level is None else level
    return noise > level * noise.std()


def _nonempty(rng, shape, **kw):
    for _ in range(20):
        m = _blob(rng, shape, **kw)
        if m.any():
            return m
    m = np.zeros(shape, bool)
    m[shape[0] // 2, shape[1] // 2] = True
    return m


def random_pair_2d(seed: int):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(20, 90, size=2))
    spacing = SPACINGS[seed % len(SPACINGS)]
    kind = ("independent", "nested", "shell", "tiny", "border", "shifted", "cells")[seed % 7]
    a = _nonempty(rng, shape)
    if kind == "independent":
        b = _nonempty(rng, shape)
    elif kind == "nested":
        b = a & _blob(rng, shape, level=0.0)
        b = b if b.any() else a.copy()
    elif kind == "shell":  # a holds points of b's medial axis: hd is not surface-to-surface
        a = _nonempty(rng, shape, sigma=5.0, level=0.2)
        b = a & ~ndimage.binary_erosion(a, iterations=int(rng.integers(1, 4)))
        b = b if b.any() else a.copy()
    elif kind == "tiny":
        a = np.zeros(shape, bool)
        b = np.zeros(shape, bool)
        a[tuple(rng.integers(0, shape))] = True
        b[tuple(rng.integers(0, shape))] = True
    elif kind == "border":  # touching the image edge
        a[0, :] |= rng.random(shape[1]) < 0.5
        b = _nonempty(rng, shape)
        b[:, -1] = True
    elif kind == "shifted":
        b = np.roll(a, tuple(int(v) for v in rng.integers(-4, 5, size=2)), axis=(0, 1))
        b = b if b.any() else a.copy()
    else:  # cells: many small discs, some missed, some merged, loose outlines
        a = _cells(rng, shape)
        b = ndimage.binary_dilation(a, iterations=int(rng.integers(0, 3)) or 1)
        lab, n = ndimage.label(b)
        b &= ~np.isin(lab, rng.choice(np.arange(1, n + 1), size=max(1, n // 4)))
        b = b if b.any() else a.copy()
    return a, b, spacing


def _cells(rng, shape, n=12):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    out = np.zeros(shape, bool)
    for _ in range(n):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(2, 7)
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out


@pytest.mark.parametrize("batch", range(6))
def test_random_2d_pairs_match_the_peers(batch):
    for seed in range(batch * 20, batch * 20 + 20):
        a, b, spacing = random_pair_2d(seed)
        tolerance = float(np.random.default_rng(seed).choice([0.5, 1.0, 2.0]))
        ours = compute_metrics(a, b, ALL, spacing=spacing, nsd_tolerance=tolerance)
        theirs = peers(a, b, spacing, tolerance)
        for metric in ALL:
            assert ours[metric] == pytest.approx(theirs[metric], abs=ATOL), (seed, metric, spacing)


def test_single_metric_functions_in_2d():
    a, b, spacing = random_pair_2d(2)  # a shell pair
    theirs = peers(a, b, spacing, 1.0)
    assert dice(a, b) == pytest.approx(theirs["dice"], abs=ATOL)
    assert jaccard(a, b) == pytest.approx(theirs["jaccard"], abs=ATOL)
    assert hausdorff(a, b, spacing=spacing) == pytest.approx(theirs["hd"], abs=ATOL)
    assert hausdorff(a, b, spacing=spacing, percentile=95) == pytest.approx(theirs["hd95"], abs=ATOL)
    assert hausdorff(a, b, spacing=spacing, percentile=95, definition="medpy") == pytest.approx(
        theirs["hd95_medpy"], abs=ATOL
    )
    assert assd(a, b, spacing=spacing) == pytest.approx(theirs["assd"], abs=ATOL)
    assert nsd(a, b, spacing=spacing) == pytest.approx(theirs["nsd"], abs=ATOL)
    assert abs_volume_diff(a, b, spacing=spacing) == pytest.approx(theirs["abs_volume_diff"])


def test_pixel_spacing_scales_distances():
    a = np.zeros((5, 9), bool)
    a[2, 1] = True
    b = np.zeros_like(a)
    b[2, 7] = True
    assert hausdorff(a, b) == 6.0
    assert hausdorff(a, b, spacing=(3.0, 0.5)) == 3.0  # along x: 6 pixels of 0.5
    assert compute_metrics(a, b, ["hd", "hd95_medpy"], spacing=(3.0, 0.5)) == {"hd": 3.0, "hd95_medpy": 3.0}


def test_empty_rules_in_2d():
    e = np.zeros((6, 7), bool)
    m = e.copy()
    m[2:4, 3:5] = True
    both = compute_metrics(e, e, ALL, spacing=(0.5, 2.0))
    assert both == {"dice": 1.0, "jaccard": 1.0, "hd": 0.0, "hd95": 0.0, "hd95_medpy": 0.0, "assd": 0.0,
                    "nsd": 1.0, "abs_volume_diff": 0.0}
    one = compute_metrics(m, e, ALL, spacing=(0.5, 2.0))
    assert one == {"dice": 0.0, "jaccard": 0.0, "hd": np.inf, "hd95": np.inf, "hd95_medpy": np.inf,
                   "assd": np.inf, "nsd": 0.0, "abs_volume_diff": 4.0}


def test_many_and_pairs_equal_pairwise_in_2d():
    rng = np.random.default_rng(11)
    shape = (70, 85)
    fused = _cells(rng, shape, n=20)
    cands = np.stack([fused, np.roll(fused, 2, axis=1), _cells(rng, shape), np.zeros(shape, bool),
                      ndimage.binary_erosion(fused)])
    spacing = (0.65, 0.5)
    got = compute_metrics_many(fused, cands, ALL, spacing=spacing, nsd_tolerance=1.5)
    for row, cand in zip(got, cands):
        expected = compute_metrics(fused, cand, ALL, spacing=spacing, nsd_tolerance=1.5)
        np.testing.assert_array_equal(row, [expected[m] for m in ALL])
    masks = np.concatenate([fused[None], cands])
    pairs = [(0, 1), (1, 2), (3, 4), (4, 5)]
    table = metrics_of_pairs(masks, pairs, ALL, spacing=spacing, nsd_tolerance=1.5)
    for row, (i, j) in zip(table, pairs):
        expected = compute_metrics(masks[i], masks[j], ALL, spacing=spacing, nsd_tolerance=1.5)
        np.testing.assert_array_equal(row, [expected[m] for m in ALL])


def test_spacing_of_the_wrong_length_for_2d():
    m = np.ones((3, 3), bool)
    with pytest.raises(InputError, match=r"`spacing` must hold one value per mask axis \(2, in numpy \(y, x\) order\)"):
        compute_metrics(m, m, ["hd"], spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match=r"`spacing` must hold one value per mask axis \(2, in numpy \(y, x\) order\)"):
        compute_metrics_many(m, m[None], ["dice"], spacing=(1.0,))


# -- fusion ---------------------------------------------------------------------------------


def _label_candidates(rng, shape, n=5, labels=(1, 2)):
    truth = np.zeros(shape, np.uint8)
    for value in labels:
        truth[_blob(rng, shape, sigma=3.0, level=0.6)] = value
    cands = []
    for _ in range(n):
        c = truth.copy()
        flip = rng.random(shape) < 0.15
        c[flip] = rng.choice(np.array((0, *labels), np.uint8), size=int(flip.sum()))
        cands.append(c)
    return np.stack(cands)


@pytest.mark.parametrize("method", METHODS)
def test_2d_fusion_equals_the_3d_fusion_of_one_slice(method):
    rng = np.random.default_rng(5)
    cands = _label_candidates(rng, (60, 75), labels=(1, 2, 4))
    flat = fuse(cands, method=method)
    assert flat.shape == (60, 75)
    one_slice = fuse(cands[:, None], method=method)
    np.testing.assert_array_equal(flat, one_slice[0])
    if method == "mav":  # a per-pixel vote: the same as fusing any pixel on its own
        for y, x in rng.integers(0, (60, 75), size=(20, 2)):
            assert flat[y, x] == fuse(cands[:, y : y + 1, x : x + 1], method="mav")[0, 0]


def test_2d_staple_matches_simpleitk():
    rng = np.random.default_rng(9)
    cands = _label_candidates(rng, (50, 64), labels=(1, 3))
    ours = fuse(cands, method="staple")
    images = [sitk.GetImageFromArray(c) for c in cands]
    assert images[0].GetDimension() == 2
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(0)
    theirs = sitk.GetArrayFromImage(f.Execute(images))
    # qe_nb passes label indices (1, 2) to SimpleITK and maps them back to (1, 3)
    expected = np.select([theirs == 1, theirs == 3], [1, 3], 0)
    np.testing.assert_array_equal(ours, expected)


def test_2d_structure_masks():
    label_map = np.array([[0, 1, 2], [4, 0, 255]])
    masks = structure_masks(label_map, "brats-regions")
    assert masks.shape == (3, 2, 3)
    np.testing.assert_array_equal(masks[0], [[0, 1, 1], [1, 0, 0]])
    binary = structure_masks(label_map == 255, {"cell": [1]})  # a 0/255 mask compared first
    np.testing.assert_array_equal(binary[0], [[0, 0, 0], [0, 0, 1]])

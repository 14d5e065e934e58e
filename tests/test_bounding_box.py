"""``qe_nb.core.masks.bounding_box``: the max-reduction fast path (unsigned ints, bools) gives the
box of ``np.nonzero`` for every dtype, contiguous or not (issue 16: it speeds up assessing a case)."""

from __future__ import annotations

import numpy as np
import pytest

from qe_nb.core.fusion import union_box
from qe_nb.core.masks import bounding_box


def _expected(a: np.ndarray):
    nz = np.nonzero(a)
    if len(nz[0]) == 0:
        return None
    return np.array([x.min() for x in nz]), np.array([x.max() for x in nz])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64, bool, np.int8, np.int32, np.float32])
def test_bounding_box_equals_nonzero_extent(dtype):
    rng = np.random.default_rng(7)
    for _ in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 8, size=rng.integers(1, 4)))
        values = (rng.random(shape) < rng.choice([0.0, 0.02, 0.2])) * rng.integers(1, 5, size=shape)
        a = values.astype(dtype)
        for view in (a, a.T, a[..., ::-1]):
            got, want = bounding_box(view), _expected(view)
            assert (got is None) == (want is None)
            if want is not None:
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])


def test_union_box_of_label_maps():
    a = np.zeros((4, 5, 6), np.uint8)
    b = np.zeros_like(a)
    a[1, 2, 3] = 4
    b[2, 4, 0] = 255
    assert union_box([a, b]) == (slice(1, 3), slice(2, 5), slice(0, 4))
    assert union_box([np.zeros((3, 3), np.uint8)]) is None


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.7, 0.9), (0.5, 0.5, 2.5)])
def test_hd95_from_the_scan_alone_equals_the_full_surface_distances(spacing):
    """HD95 alone (the offset-scan shortcut of ``MaskPair.robust_hd``) gives the same float as
    HD95 computed after every surfel's exact distance (assd first forces that path)."""
    from qe_nb.core.distances import MaskPair, pairs_table
    from qe_nb.core.masks import mask_features

    rng = np.random.default_rng(11)
    decided = undecided = 0
    for trial in range(60):
        shape = (20, 24, 22)
        masks = np.zeros((2, *shape), bool)
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        c = rng.uniform(7, 13, size=3)
        r = rng.uniform(3, 6, size=3)
        for k in range(2):  # a candidate and a fusion: the same blob, moved and resized a little
            ck = c + (rng.uniform(-2, 2, size=3) if k else 0)
            rk = r * (rng.uniform(0.8, 1.2, size=3) if k else 1)
            masks[k] = ((zz - ck[0]) / rk[0]) ** 2 + ((yy - ck[1]) / rk[1]) ** 2 + ((xx - ck[2]) / rk[2]) ** 2 <= 1
            masks[k] |= rng.random(shape) < rng.choice([0.0, 0.0, 0.0005, 0.003])  # specks far from the blob
            masks[k, 0, 0, 0] |= k == 0 and trial % 3 == 0  # an outlier voxel
        if not masks[0].any() or not masks[1].any():
            continue
        alone = pairs_table(masks, [(0, 1)], ("hd95",), spacing, 1.0)[0, 0]
        full = pairs_table(masks, [(0, 1)], ("assd", "hd95"), spacing, 1.0)[0, 1]
        assert alone == full, (trial, alone, full)
        near = MaskPair(mask_features(masks[0], spacing), mask_features(masks[1], spacing))._robust_hd_near(95.0)
        if near is None:  # the percentile lies among the far surfels: the full path decides
            undecided += 1
        else:
            assert near == full
            decided += 1
    assert decided >= 15 and undecided >= 5, (decided, undecided)

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

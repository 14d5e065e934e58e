"""Tests of qe_nb.core.fusion: conformance with BraTS Toolkit and SimpleITK, rules, errors.

BraTS Toolkit (AGPL) is never a dependency: its outputs are stored in
tests/data/fusion_reference/ by benchmarks/make_fusion_reference.py, run by hand in a scratch
environment. When BraTS Toolkit happens to be importable, the live tests compare against it too.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qe_nb
from qe_nb.core import fusion
from qe_nb.core.fusion import METHODS, fuse
from qe_nb.exceptions import InputError, LabelError

REFERENCE = Path(__file__).parent / "data" / "fusion_reference"
REFERENCE_CASES = sorted(p for p in REFERENCE.glob("*.npz") if not p.name.startswith("real_"))
BTK_KEYS = {"mav": "mav", "simple": "simple", "brats-simple": "brats_simple"}


def _load(path: Path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _weights(case: dict) -> list[float] | None:
    return case["weights"].tolist() if bool(case["weights_given"]) else None


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


# -- the real case: BraTS Toolkit's own fusions ---------------------------------------------


@pytest.fixture(scope="module")
def real_candidates(brats_candidates) -> list[np.ndarray]:
    # Alphabetical order of algorithm name (conftest's BRATS_ALGORITHMS). On this case the
    # order does not matter: every permutation gives the same fusions (checked below).
    return [brats_candidates[name] for name in sorted(brats_candidates)]


@pytest.mark.parametrize("method", ["mav", "simple"])
def test_real_case_equals_brats_toolkit(real_candidates, brats_case_dir, method):
    expected = _read(brats_case_dir / "fusion-brats-toolkit" / f"{method}.nii.gz")
    fused = fuse(real_candidates, method=method)
    assert fused.dtype == np.uint8
    assert fused.shape == expected.shape == (155, 240, 240)
    assert int((fused != expected).sum()) == 0
    # not a trivial agreement: the candidates disagree on thousands of voxels
    assert sum(int((c != expected).sum()) for c in real_candidates) > 1000


def test_real_case_brats_simple_equals_brats_toolkit(real_candidates):
    expected = _load(REFERENCE / "real_case_brats_simple.npz")
    assert tuple(expected["algorithms"]) == tuple(sorted(expected["algorithms"]))
    fused = fuse(real_candidates, method="brats-simple")
    assert int((fused != expected["brats_simple"]).sum()) == 0


def test_real_case_independent_of_candidate_order(real_candidates, brats_case_dir):
    expected = _read(brats_case_dir / "fusion-brats-toolkit" / "simple.nii.gz")
    rng = np.random.default_rng(7)
    for _ in range(3):
        order = rng.permutation(len(real_candidates))
        shuffled = np.stack([real_candidates[i] for i in order])
        assert int((fuse(shuffled, method="simple") != expected).sum()) == 0
        assert int((fuse(shuffled, method="mav") != expected).sum()) == 0


@pytest.mark.slow  # SimpleITK's STAPLE on the whole 155 x 240 x 240 volume: several seconds
def test_real_case_staple_close_to_majority_vote(real_candidates, brats_case_dir):
    expected = _read(brats_case_dir / "fusion-brats-toolkit" / "mav.nii.gz")
    fused = fuse(real_candidates, method="staple")
    assert set(np.unique(fused).tolist()) <= {0, 1, 2, 4}
    tumour = (expected > 0) | (fused > 0)
    agree = (fused == expected)[tumour].mean()
    assert agree > 0.9


# -- stored BraTS Toolkit outputs on random label maps --------------------------------------


def test_reference_files_are_present_and_small():
    assert len(REFERENCE_CASES) >= 10
    assert sum(p.stat().st_size for p in REFERENCE.glob("*.npz")) < 2_000_000


@pytest.mark.parametrize("path", REFERENCE_CASES, ids=lambda p: p.stem)
@pytest.mark.parametrize("method", list(BTK_KEYS))
def test_equals_stored_brats_toolkit(path, method):
    case = _load(path)
    fused = fuse(case["candidates"], method=method, weights=_weights(case))
    expected = case[BTK_KEYS[method]]
    assert fused.shape == expected.shape
    assert int((fused != expected).sum()) == 0


@pytest.mark.parametrize(
    "path", [p for p in REFERENCE_CASES if _load(p)["labels"].size], ids=lambda p: p.stem
)
def test_equals_stored_brats_toolkit_with_labels(path):
    case = _load(path)
    labels = case["labels"].tolist()
    for method, key in (("mav", "mav_labels"), ("simple", "simple_labels")):
        fused = fuse(case["candidates"], method=method, weights=_weights(case), labels=labels)
        assert int((fused != case[key]).sum()) == 0, method
        assert set(np.unique(fused).tolist()) <= {0, *labels}


def test_stored_cases_exercise_ties_rounding_and_iterations():
    """The references are only worth something if the rules matter on them."""
    ties = _load(REFERENCE / "tumour_n4_ties.npz")
    # an even number of candidates: label "upper wins" would change the answer
    flipped = np.zeros_like(ties["mav"])
    for value in (1, 2, 4):  # lowest label first, so higher labels overwrite
        votes = (ties["candidates"] == value).sum(axis=0)
        flipped[votes >= 2] = value
    assert int((flipped != ties["mav"]).sum()) > 0
    # 0.1 + 0.2 >= (0.1 + 0.2 + 0.3) / 2 in float64 but not in exact arithmetic
    rounding = _load(REFERENCE / "noise_n3_rounding_weights.npz")
    exact = fuse(rounding["candidates"], weights=[1, 2, 3])
    assert int((exact != rounding["mav"]).sum()) > 1000
    # SIMPLE's iterations move the estimate away from the vote on several cases
    moved = [p.stem for p in REFERENCE_CASES if (_load(p)["simple"] != _load(p)["mav"]).any()]
    assert len(moved) >= 5


def test_sorted_pattern_path_matches_counted_path(monkeypatch):
    case = _load(REFERENCE / "noisy_tumour_n12.npz")
    for method in BTK_KEYS:
        sorted_path = fuse(case["candidates"], method=method)
        monkeypatch.setattr(fusion, "_MAX_COUNTED_PATTERNS", 4**12)
        counted_path = fuse(case["candidates"], method=method)
        monkeypatch.undo()
        assert np.array_equal(sorted_path, counted_path)


# -- live BraTS Toolkit, when it is importable (normally not: it is AGPL) -------------------


def _btk_fusionator():
    for module in ("brats_toolkit.fusionator", "brats.fusionator"):
        try:
            mod = __import__(module, fromlist=["Fusionator"])
        except ImportError:
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            return mod.Fusionator(verbose=False)
    pytest.skip("BraTS Toolkit is not installed (it is AGPL: never a dependency of qe_nb)")


def _btk(fusionator, candidates, method, weights, labels=None):
    cands = [np.asarray(c) for c in candidates]
    w = list(weights) if weights is not None else [1] * len(cands)
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
            if method == "mav":
                out = fusionator._mav(cands, labels=labels, weights=w)
            elif method == "simple":
                out = fusionator._simple(cands, w, labels=labels)
            else:
                out = fusionator._brats_simple(cands, w)
    finally:
        logging.disable(logging.NOTSET)
    return np.asarray(out)


@pytest.mark.parametrize("method", list(BTK_KEYS))
def test_live_brats_toolkit_on_stored_cases(method):
    fusionator = _btk_fusionator()
    for path in REFERENCE_CASES:
        case = _load(path)
        expected = _btk(fusionator, case["candidates"], method, _weights(case))
        assert int((expected != case[BTK_KEYS[method]]).sum()) == 0, path.stem
        fused = fuse(case["candidates"], method=method, weights=_weights(case))
        assert int((fused != expected).sum()) == 0, path.stem


@pytest.mark.parametrize("seed", range(4))
def test_live_brats_toolkit_on_fresh_random_maps(seed):
    fusionator = _btk_fusionator()
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 8))
    cands = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(n, 12, 14, 16), p=[0.4, 0.2, 0.2, 0.2])
    weights = np.round(rng.uniform(0.1, 2.0, n), 2).tolist() if seed % 2 else None
    for method in BTK_KEYS:
        expected = _btk(fusionator, cands, method, weights)
        assert int((fuse(cands, method=method, weights=weights) != expected).sum()) == 0, method
    for method in ("mav", "simple"):
        expected = _btk(fusionator, cands, method, weights, labels=[2, 4])
        fused = fuse(cands, method=method, weights=weights, labels=[2, 4])
        assert int((fused != expected).sum()) == 0, method


# -- the rules, checked voxel by voxel against their statement ------------------------------


def _mav_by_rule(cands: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Lowest label with at least half of the total weight (integer weights: exact)."""
    out = np.zeros(cands.shape[1:], dtype=np.int64)
    total = weights.sum()
    for value in sorted(set(np.unique(cands).tolist()) - {0}, reverse=True):
        votes = np.tensordot(weights, (cands == value).astype(np.int64), axes=1)
        out[2 * votes >= total] = value
    return out


@settings(max_examples=60, deadline=None)
@given(
    cands=st.integers(1, 6).flatmap(
        lambda n: arrays(np.uint8, (n, 3, 4), elements=st.sampled_from([0, 1, 2, 4]))
    ),
    data=st.data(),
)
def test_mav_follows_the_rule(cands, data):
    weights = np.array(data.draw(st.lists(st.integers(0, 4), min_size=len(cands), max_size=len(cands))))
    if not weights.any():
        weights[0] = 1
    assert np.array_equal(fuse(cands, weights=weights), _mav_by_rule(cands, weights))


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, (5, 6), elements=st.sampled_from([0, 1, 2, 4])), st.integers(1, 5))
def test_identical_candidates_fuse_to_themselves(label_map, n):
    for method in METHODS:
        assert np.array_equal(fuse([label_map] * n, method=method), label_map), method


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, (4, 5), elements=st.sampled_from([0, 1, 3, 7])))
def test_one_candidate_fuses_to_itself(label_map):
    for method in ("mav", "simple", "staple"):
        assert np.array_equal(fuse([label_map], method=method), label_map), method


def test_lower_label_wins_mav_ties_higher_label_wins_simple_overlaps():
    a, b = np.array([[1, 2, 4, 0]]), np.array([[2, 4, 1, 0]])
    assert fuse([a, b]).tolist() == [[1, 2, 1, 0]]
    # SIMPLE fuses each label on its own, lowest first, so the higher label is written last
    assert fuse([a, b], method="simple").tolist() == [[2, 4, 4, 0]]


def test_brats_simple_writes_nested_regions():
    a = np.array([1, 2, 4, 3, 0])
    fused = fuse([a, a, np.zeros_like(a)], method="brats-simple")
    # whole tumour (any non-zero, even 3) -> 2, core (1 or 4) -> 1, enhancing -> 4
    assert fused.tolist() == [1, 2, 4, 2, 0]


def test_mav_candidate_order_does_not_matter_with_unit_weights(rng):
    cands = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(6, 8, 9, 10))
    expected = fuse(cands)
    assert np.array_equal(fuse(cands[::-1]), expected)
    assert np.array_equal(fuse(cands[[3, 1, 5, 0, 2, 4]]), expected)


def test_weights_scale_free_for_mav(rng):
    cands = rng.choice(np.array([0, 1, 2], np.uint8), size=(5, 6, 7))
    w = [1, 2, 3, 1, 5]
    assert np.array_equal(fuse(cands, weights=w), fuse(cands, weights=[4 * x for x in w]))
    # a zero weight silences a candidate
    w0 = [0, 1, 1, 1, 1]
    assert np.array_equal(fuse(cands, weights=w0), fuse(cands[1:]))


def test_weights_reach_simple_initial_vote():
    # the estimate starts from the weighted vote, as in BraTS Toolkit's fuse()
    a, b = np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)
    a[5:25, 5:25] = 1
    b[15:35, 15:35] = 1
    assert fuse([a, b], method="simple", weights=[1, 3]).sum() < fuse([a, b], method="simple").sum()


# -- inputs: forms, dtypes, shapes ----------------------------------------------------------


def test_input_forms_agree(rng):
    cands = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(4, 5, 6, 7))
    expected = fuse(cands)
    assert np.array_equal(fuse(list(cands)), expected)
    assert np.array_equal(fuse(tuple(cands)), expected)
    assert np.array_equal(fuse([c.astype(np.float32) for c in cands]), expected)
    assert np.array_equal(fuse([c.astype(np.int64) for c in cands]), expected)
    assert np.array_equal(fuse(c for c in cands), expected)


def test_does_not_modify_inputs(rng):
    cands = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(3, 5, 5))
    before = cands.copy()
    for method in METHODS:
        fuse(cands, method=method)
    assert np.array_equal(cands, before)


def test_bool_candidates():
    a = np.array([[True, False], [True, True]])
    b = np.array([[True, False], [False, False]])
    c = np.array([[False, False], [True, False]])
    assert fuse([a, b, c]).tolist() == [[1, 0], [1, 0]]


@pytest.mark.parametrize(
    ("values", "dtype"), [((0, 3, 200), np.uint8), ((0, 5, 300), np.uint16), ((0, 9, 70000), np.uint32)]
)
def test_large_label_values_keep_values_and_pick_dtype(values, dtype, rng):
    cands = rng.choice(np.array(values, np.int64), size=(3, 4, 5))
    for method in ("mav", "simple", "staple"):
        fused = fuse(cands, method=method)
        assert fused.dtype == dtype, method
        assert set(np.unique(fused).tolist()) <= set(values)
    assert np.array_equal(fuse(cands), _mav_by_rule(cands, np.ones(3, np.int64)))


def test_empty_candidates_and_absent_labels_fuse_to_background():
    zeros = np.zeros((3, 4, 5), np.uint8)
    for method in METHODS:
        fused = fuse([zeros, zeros], method=method)
        assert fused.dtype == np.uint8 and fused.shape == (3, 4, 5) and not fused.any()
    ones = np.ones((2, 3), np.uint8)
    assert not fuse([ones, ones], labels=[2]).any()
    assert not fuse([ones, ones], labels=[0]).any()
    assert not fuse([ones, ones], method="staple", labels=[]).any()


def test_labels_int_and_background_ignored():
    a = np.array([1, 2, 4])
    assert fuse([a, a], labels=4).tolist() == [0, 0, 4]
    assert fuse([a, a], labels=[4, 0, 1]).tolist() == [1, 0, 4]
    assert fuse([a, a], labels=np.array([1, 2])).tolist() == [1, 2, 0]


def test_other_dimensionalities():
    a = np.array([0, 1, 2, 1, 0])
    for method in METHODS:
        assert np.array_equal(fuse([a, a, a[::-1]], method=method), np.array([0, 1, 2, 1, 0]))
    four_d = np.arange(16, dtype=np.uint8).reshape(2, 2, 2, 2) % 3
    for method in METHODS:
        assert np.array_equal(fuse([four_d] * 3, method=method), four_d)


def test_public_reexport():
    assert qe_nb.fuse is fuse


# -- STAPLE vs SimpleITK --------------------------------------------------------------------


def test_staple_unanimous_candidates(rng):
    truth = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(6, 7, 8))
    assert np.array_equal(fuse([truth] * 4, method="staple"), truth)


def test_staple_equals_simpleitk_multilabel_staple(rng):
    truth = np.zeros((10, 12, 14), np.uint8)
    truth[2:8, 3:9, 4:10] = 1
    truth[4:6, 5:7, 6:8] = 2
    cands = []
    for _ in range(5):
        c = truth.copy()
        flip = rng.random(c.shape) < 0.1
        c[flip] = rng.integers(0, 3, int(flip.sum()))
        cands.append(c)
    expected = sitk.GetArrayFromImage(
        sitk.MultiLabelSTAPLE([sitk.GetImageFromArray(c) for c in cands], 0)
    )
    fused = fuse(cands, method="staple")
    assert np.array_equal(fused, expected)
    assert (fused == truth).mean() > 0.95


def test_staple_labels_subset():
    a = np.array([[1, 2, 2, 0]], np.uint8)
    fused = fuse([a, a, a], method="staple", labels=[2])
    assert fused.tolist() == [[0, 2, 2, 0]]


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["majority", "SIMPLE", "", None, 3])
def test_unknown_method(method):
    with pytest.raises(InputError, match=r"Unknown fusion `method` .*expected one of \['mav', 'simple', 'brats-simple', 'staple'\]"):
        fuse([np.zeros(3, np.uint8)], method=method)


def test_no_candidates():
    with pytest.raises(InputError, match=r"`candidates` is empty; expected at least one"):
        fuse([])
    with pytest.raises(InputError, match=r"`candidates` is empty"):
        fuse(np.zeros((0, 3, 3), np.uint8))


def test_candidates_of_different_shapes():
    with pytest.raises(
        InputError,
        match=r"`candidates` must all have the same shape; got shapes \[\(2, 2\), \(2, 2\), \(2, 3\)\] \(candidate 2 has \(2, 3\)",
    ):
        fuse([np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 3))])


def test_candidates_not_label_maps():
    with pytest.raises(InputError, match=r"leading algorithm axis and at least one voxel axis; got an array of shape \(3,\)"):
        fuse(np.array([0, 1, 2]))
    with pytest.raises(InputError, match=r"at least one axis; got scalars"):
        fuse([1, 2])
    with pytest.raises(InputError, match=r"`candidates` must be a sequence of label maps .*got int"):
        fuse(3)
    with pytest.raises(InputError, match=r"`candidates` must be a sequence .*got str"):
        fuse("seg.nii.gz")
    with pytest.raises(LabelError, match=r"`candidates\[1\]` holds non-integral values \(e.g. 0.5\)"):
        fuse([np.zeros(3), np.array([0.0, 0.5, 1.0])])
    with pytest.raises(LabelError, match=r"`candidates\[0\]` holds negative labels"):
        fuse([np.array([0, -1, 1])])


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1, 1], r"`weights` must hold one weight per candidate \(3\); got 2 value\(s\) of shape \(2,\)"),
        ([[1, 1, 1]], r"`weights` must hold one weight per candidate \(3\); got 3 value\(s\) of shape \(1, 3\)"),
        ([1, -1, 1], r"`weights` must be non-negative; got \[1, -1, 1\]"),
        ([1, float("nan"), 1], r"`weights` must be finite; got \[1, nan, 1\]"),
        ([1, float("inf"), 1], r"`weights` must be finite"),
        ([0, 0, 0], r"`weights` must not all be zero"),
        (["a", "b", "c"], r"`weights` must be a sequence of 3 non-negative numbers"),
        (2.0, r"`weights` must hold one weight per candidate \(3\); got 1 value\(s\) of shape \(\)"),
    ],
)
@pytest.mark.parametrize("method", ["mav", "simple", "brats-simple"])
def test_bad_weights(weights, match, method):
    cands = np.zeros((3, 2, 2), np.uint8)
    with pytest.raises(InputError, match=match):
        fuse(cands, method=method, weights=weights)


def test_staple_rejects_weights():
    with pytest.raises(InputError, match=r"`weights` is not used by method='staple'"):
        fuse(np.zeros((2, 2, 2), np.uint8), method="staple", weights=[1, 1])


def test_brats_simple_rejects_labels():
    with pytest.raises(InputError, match=r"`labels` is not used by method='brats-simple'.*got \[1, 4\]"):
        fuse(np.zeros((2, 2, 2), np.uint8), method="brats-simple", labels=[1, 4])


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ([1, -2], r"`labels` must hold non-negative integers \(label values\); got -2 in \[1, -2\]"),
        ([1.5], r"`labels` must hold non-negative integers .*got 1.5"),
        ([True], r"`labels` must hold non-negative integers .*got True"),
        ("1,2", r"`labels` must be None, an int or a list of non-negative ints; got '1,2'"),
        (1.0, r"`labels` must be None, an int or a list of non-negative ints; got 1.0"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(InputError, match=match):
        fuse(np.zeros((2, 2, 2), np.uint8), labels=labels)


# -- BraTS 2023 label maps (NETC 1, SNFH 2, ET 3) under brats-simple -------------------------


def test_brats_simple_fuses_brats_2023_regions():
    # values 1, 2, 3 (no 4): the 2023 regions WT = 1,2,3; TC = 1,3; ET = 3
    a = np.array([1, 2, 3, 3, 0])
    fused = fuse([a, a, np.zeros_like(a)], method="brats-simple")
    assert fused.tolist() == [1, 2, 3, 3, 0]  # the enhancing tumour survives


def test_brats_simple_2023_matches_the_classic_rule_relabelled(rng):
    # a 2023 map is a classic map with 4 written 3: the fusions must agree after relabelling
    classic = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(5, 9, 10, 11), p=[0.4, 0.2, 0.2, 0.2])
    classic[:, 0, 0, 0] = 4  # every candidate holds an enhancing voxel
    modern = np.where(classic == 4, 3, classic).astype(np.uint8)
    expected = fuse(classic, method="brats-simple")
    fused = fuse(modern, method="brats-simple")
    np.testing.assert_array_equal(fused, np.where(expected == 4, 3, expected))
    assert (fused == 3).any()


def test_brats_simple_refuses_2023_maps_with_unknown_values():
    a = np.array([1, 2, 3, 5, 0])
    with pytest.raises(InputError, match=r"method='brats-simple' fuses the BraTS regions of label values 1, 2, 4 \(classic\) or 1, 2, 3 \(BraTS 2023\); the candidates hold 1, 2, 3, 5"):
        fuse([a, a], method="brats-simple")

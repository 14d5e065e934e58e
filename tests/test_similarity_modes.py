"""Leave-one-out similarity, member-vs-member scores, member volumes, STAPLE's estimates, units.

Every value is checked against an independent path: ``qe_nb.fuse`` + ``compute_metrics`` by
hand, SimpleITK's STAPLE and shape statistics called directly, MedPy.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import qe_nb
from qe_nb.core.case import metric_coords, score_arrays
from qe_nb.core.labels import resolve_labels, structure_masks
from qe_nb.core.metrics import compute_metrics
from qe_nb.exceptions import InputError

SPACING = (2.0, 1.0, 0.75)
METRICS = ("dice", "hd95", "hd")


def _line(start, stop, n=10):
    a = np.zeros((1, 3, n), np.uint8)
    a[0, 1, start:stop] = 1
    return a


def _glioma(shape, center, rng, radius=5):
    zz, yy, xx = np.indices(shape)
    c = np.asarray(center) + rng.integers(-2, 3, 3)
    r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
    out = np.zeros(shape, np.uint8)
    out[r2 <= (radius + rng.integers(-1, 2)) ** 2] = 2
    out[r2 <= 9] = 4
    out[r2 <= 2] = 1
    return out


@pytest.fixture
def members(rng):
    """Four glioma-like candidates (BraTS labels), one with a far false positive, and a reference."""
    shape = (16, 20, 22)
    maps = {f"m{i}": _glioma(shape, (8, 10, 11), rng) for i in range(4)}
    maps["m3"][1:3, 1:4, 17:21] = 4
    return maps, _glioma(shape, (8, 10, 11), rng)


# --- leave-one-out -----------------------------------------------------------------------

def test_leave_one_out_by_hand():
    # A, A, B: the full fusion is A, so A scores 1 against it. Without itself, A meets the
    # fusion of (A, B) = A | B (one vote of two is a majority) and B meets A.
    a, b = _line(0, 4), _line(2, 8)
    maps = {"a1": a, "a2": a, "b": b}
    full = score_arrays(maps, spacing=(1, 1, 1), metrics=("dice", "hd"))
    loo = score_arrays(maps, spacing=(1, 1, 1), metrics=("dice", "hd"), similarity="leave-one-out")
    assert full["similarity"].sel(label="foreground").values.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.4, 4.0]]
    # Dice(A, A|B) = 2 * 4 / (4 + 8); hd: voxel 7 of A|B is 4 from A. Dice(B, A) = 2 * 2 / (6 + 4).
    np.testing.assert_allclose(loo["similarity"].sel(label="foreground").values,
                               [[2 / 3, 4.0], [2 / 3, 4.0], [0.4, 4.0]])
    assert loo.attrs["similarity_mode"] == "leave-one-out"
    assert full.attrs["similarity_mode"] == "fusion"
    assert "other candidates" in loo["similarity"].attrs["long_name"]


@pytest.mark.parametrize("fusion", ["mav", "simple", "staple"])
def test_leave_one_out_equals_fusing_the_others_by_hand(members, fusion):
    maps, reference = members
    scheme = resolve_labels("brats-regions")
    ds = score_arrays(maps, spacing=SPACING, reference=reference, labels=scheme, fusion=fusion,
                      metrics=METRICS, similarity="leave-one-out")
    full = score_arrays(maps, spacing=SPACING, reference=reference, labels=scheme, fusion=fusion, metrics=METRICS)
    names = list(maps)
    for _i, name in enumerate(names):
        others = qe_nb.fuse([maps[n] for n in names if n != name], method=fusion)
        fused_masks, own = structure_masks(others, scheme), structure_masks(maps[name], scheme)
        for j, label in enumerate(scheme.names):
            expected = compute_metrics(fused_masks[j], own[j], METRICS, spacing=SPACING)
            got = ds["similarity"].sel(algorithm=name, label=label).values
            np.testing.assert_allclose(got, list(expected.values()), rtol=1e-12, err_msg=f"{name} {label}")
    # the fusion of all members and the reference do not depend on the mode
    np.testing.assert_array_equal(ds["quality"].values, full["quality"].values)
    np.testing.assert_array_equal(ds["candidate_quality"].values, full["candidate_quality"].values)
    assert not np.array_equal(ds["similarity"].values, full["similarity"].values)


def test_leave_one_out_with_a_missing_member(members):
    maps, reference = members
    with_none = {**maps, "gone": None}
    ds = score_arrays(with_none, spacing=SPACING, reference=reference, labels="brats-regions",
                      metrics=METRICS, similarity="leave-one-out", pairwise=True)
    without = score_arrays(maps, spacing=SPACING, reference=reference, labels="brats-regions",
                           metrics=METRICS, similarity="leave-one-out", pairwise=True)
    assert np.isnan(ds["similarity"].sel(algorithm="gone").values).all()
    assert np.isnan(ds["volume"].sel(algorithm="gone").values).all()
    assert np.isnan(ds["pairwise"].sel(algorithm="gone").values).all()
    assert np.isnan(ds["pairwise"].sel(algorithm_b="gone").values).all()
    present = list(maps)
    for name in ("similarity", "candidate_quality", "volume"):
        np.testing.assert_array_equal(ds[name].sel(algorithm=present).values, without[name].values)
    np.testing.assert_array_equal(ds["pairwise"].sel(algorithm=present, algorithm_b=present).values,
                                  without["pairwise"].values)


def test_leave_one_out_of_a_single_member_is_nan():
    ds = score_arrays({"only": _line(0, 4), "gone": None}, spacing=(1, 1, 1), similarity="leave-one-out")
    assert np.isnan(ds["similarity"].values).all()
    assert ds["volume"].sel(algorithm="only").item() == 4.0


def test_bad_similarity_and_units_are_refused(members):
    maps, _ = members
    with pytest.raises(InputError, match=r"`similarity` must be one of \['fusion', 'leave-one-out'\]; got 'loo'"):
        score_arrays(maps, spacing=SPACING, similarity="loo")
    with pytest.raises(InputError, match=r"`units` must be one of \['mm', 'px'\] .*; got 'cm'"):
        score_arrays(maps, spacing=SPACING, units="cm")


# --- member vs member, volumes, STAPLE ---------------------------------------------------

def test_pairwise_equals_compute_metrics_on_each_pair(members):
    maps, _ = members
    scheme = resolve_labels("brats-regions")
    metrics = ("dice", "hd95", "hd", "assd", "nsd", "abs_volume_diff")
    ds = score_arrays(maps, spacing=SPACING, labels=scheme, metrics=metrics, pairwise=True)
    pw = ds["pairwise"]
    assert pw.dims == ("algorithm", "algorithm_b", "label", "metric")
    names = list(maps)
    masks = {n: structure_masks(m, scheme) for n, m in maps.items()}
    for a in names:
        for b in names:
            for j, label in enumerate(scheme.names):
                got = pw.sel(algorithm=a, algorithm_b=b, label=label).values
                expected = compute_metrics(masks[a][j], masks[b][j], metrics, spacing=SPACING)
                np.testing.assert_allclose(got, list(expected.values()), rtol=1e-12, err_msg=f"{a} {b} {label}")
    # the diagonal is a mask against itself: 1 for overlaps, 0 for distances
    diagonal = pw.values[np.arange(4), np.arange(4)]
    np.testing.assert_array_equal(diagonal, np.broadcast_to([1, 0, 0, 0, 1, 0], diagonal.shape))
    # without pairwise the default output has no such variable
    assert "pairwise" not in score_arrays(maps, spacing=SPACING, labels=scheme)


def test_pairwise_dice_against_simpleitk(members):
    maps, _ = members
    ds = score_arrays(maps, spacing=SPACING, labels={"whole": [1, 2, 4]}, metrics=("dice", "hd"), pairwise=True)
    overlap, hausdorff = sitk.LabelOverlapMeasuresImageFilter(), sitk.HausdorffDistanceImageFilter()

    def image(m):
        img = sitk.GetImageFromArray((m > 0).astype(np.uint8))
        img.SetSpacing(SPACING[::-1])
        return img

    overlap.Execute(image(maps["m0"]), image(maps["m3"]))
    hausdorff.Execute(image(maps["m0"]), image(maps["m3"]))
    got = ds["pairwise"].sel(algorithm="m3", algorithm_b="m0", label="whole").values
    np.testing.assert_allclose(got, [overlap.GetDiceCoefficient(), hausdorff.GetHausdorffDistance()], rtol=1e-9)


def test_volume_against_simpleitk_shape_statistics(members):
    maps, _ = members
    ds = score_arrays(maps, spacing=SPACING, labels="brats-regions")
    assert ds["volume"].attrs["units"] == "mm3"
    stats = sitk.LabelShapeStatisticsImageFilter()
    scheme = resolve_labels("brats-regions")
    for name, m in maps.items():
        for j, label in enumerate(scheme.names):
            img = sitk.GetImageFromArray(structure_masks(m, scheme)[j].astype(np.uint8))
            img.SetSpacing(SPACING[::-1])
            stats.Execute(img)
            expected = stats.GetPhysicalSize(1) if stats.HasLabel(1) else 0.0
            assert ds["volume"].sel(algorithm=name, label=label).item() == pytest.approx(expected, rel=1e-12)


def test_staple_performance_equals_simpleitk_staple(members):
    maps, _ = members
    scheme = resolve_labels("brats-regions")
    with_gone = {**maps, "gone": None}
    ds = score_arrays(with_gone, spacing=SPACING, labels=scheme, staple_performance=True)
    perf = ds["staple_performance"]
    assert perf.dims == ("algorithm", "label", "estimate")
    assert perf["estimate"].values.tolist() == ["sensitivity", "specificity"]
    assert np.isnan(perf.sel(algorithm="gone").values).all()
    for j, label in enumerate(scheme.names):
        staple = sitk.STAPLEImageFilter()
        staple.SetForegroundValue(1)
        staple.Execute([sitk.GetImageFromArray(structure_masks(m, scheme)[j].astype(np.uint8))
                        for m in maps.values()])
        got = perf.sel(label=label, algorithm=list(maps)).values
        np.testing.assert_allclose(got[:, 0], staple.GetSensitivity(), rtol=1e-12)
        np.testing.assert_allclose(got[:, 1], staple.GetSpecificity(), rtol=1e-12)


def test_staple_performance_of_an_empty_structure_is_nan():
    ds = score_arrays({"a": _line(0, 4), "b": _line(1, 5)}, spacing=(1, 1, 1),
                      labels={"one": [1], "two": [2]}, staple_performance=True)
    assert np.isnan(ds["staple_performance"].sel(label="two").values).all()
    assert np.isfinite(ds["staple_performance"].sel(label="one").values).all()


def test_risk_scores_reads_every_member_variable(members):
    maps, reference = members
    cases = {}
    rng = np.random.default_rng(3)
    for c in range(6):
        shifted = {n: np.roll(m, int(rng.integers(-2, 3)), axis=2) for n, m in maps.items()}
        cases[f"c{c}"] = score_arrays(shifted, spacing=SPACING, labels="brats-regions", metrics=("dice", "hd95"),
                                      pairwise=True, staple_performance=True)
    import xarray as xr

    scores = xr.concat(list(cases.values()), dim="case").assign_coords(case=list(cases))
    for level in ("case", "candidate"):
        rs = qe_nb.risk_scores(scores, alpha=0.0, level=level)
        assert rs.attrs["skipped"] == []
        assert {"pairwise_disagreement", "volume_cv", "staple_disagreement"} <= set(rs.data_vars)
    pw = scores["pairwise"].sel(metric="dice").values
    off = ~np.eye(4, dtype=bool)
    expected = 1 - np.stack([pw[k][off].mean() for k in range(6)])  # labels averaged too
    rs = qe_nb.risk_scores(scores, alpha=0.0, level="case")
    np.testing.assert_allclose(rs["pairwise_disagreement"].values, expected)


# --- units -------------------------------------------------------------------------------

def test_px_units_in_coords_and_attrs():
    maps = {"a": _line(0, 4)[0], "b": _line(1, 6)[0]}  # 2-D (y, x)
    ds = score_arrays(maps, spacing=(1.0, 1.0), metrics=("dice", "hd", "abs_volume_diff"), units="px")
    assert ds["units"].values.tolist() == ["1", "px", "px2"]
    assert ds.attrs["distance_units"] == "px"
    assert ds["volume"].attrs["units"] == "px2"
    mm = score_arrays(maps, spacing=(0.5, 0.5), metrics=("dice", "hd", "abs_volume_diff"))
    assert mm["units"].values.tolist() == ["1", "mm", "mm2"]
    assert mm.attrs["distance_units"] == "mm"
    assert mm["volume"].sel(algorithm="b").item() == 5 * 0.25


def test_metric_coords_units():
    assert metric_coords(["hd95", "abs_volume_diff"])["units"][1].tolist() == ["mm", "mm3"]
    with pytest.raises(InputError, match="`units` must be one of"):
        metric_coords(["dice"], units="inch")


def test_staple_estimates_cap_the_em_iterations(monkeypatch):
    """SimpleITK's STAPLE runs unbounded by default (62,328 iterations, > 200 s, on a near-empty
    structure of a synthetic glioma case): the estimates must cap it."""
    import SimpleITK as sitk

    from qe_nb.core import members

    calls = []
    real = sitk.STAPLEImageFilter

    class Recording(real):
        def SetMaximumIterations(self, n):  # noqa: N802 (SimpleITK's name)
            calls.append(n)
            return super().SetMaximumIterations(n)

    monkeypatch.setattr(sitk, "STAPLEImageFilter", Recording)
    m = np.zeros((3, 8, 8), bool)
    m[:, 2:6, 2:6] = True
    m[2, 2:6, 2] = False
    assert members.staple_estimates(m)[:, 0].round(3).tolist() == [1.0, 1.0, 0.75]
    assert calls == [members.STAPLE_MAX_ITERATIONS] and 0 < members.STAPLE_MAX_ITERATIONS <= 1000

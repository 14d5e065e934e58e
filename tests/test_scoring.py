"""The cohort -> scores cube: values against other people's code, errors, cache, parallel runs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import xarray as xr

import qe_nb
from qe_nb.exceptions import InputError
from qe_nb.pipeline.scoring import label_mean

from .conftest import BRATS_ALGORITHMS


def _write(arr, path, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(np.asarray(arr))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def _blob(shape, center, radius):
    zz, yy, xx = np.indices(shape)
    return ((zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2) <= radius**2


@pytest.fixture
def small_cohort(tmp_path):
    """Six cases x three algorithms of spheres, with references; deterministic."""
    rng = np.random.default_rng(7)
    shape = (16, 18, 20)
    root = tmp_path / "cohort"
    for i in range(6):
        case = f"c{i}"
        center = np.array([8, 9, 10]) + rng.integers(-2, 3, 3)
        ref = _blob(shape, center, 4).astype(np.uint8)
        _write(ref, root / case / "reference.nii.gz", spacing=(2.0, 1.0, 0.8))
        for a, name in enumerate(("alg-a", "alg-b", "alg-c")):
            shift = rng.integers(-1, 2, 3) * (a + i % 3)
            cand = _blob(shape, center + shift, 4 + (a == 2) * (i % 2)).astype(np.uint8)
            _write(cand, root / case / f"{name}.nii.gz", spacing=(2.0, 1.0, 0.8))
    return qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii.gz",
                               reference="{case}/reference.nii.gz", labels="binary")


def test_score_cube_layout(small_cohort):
    scores = qe_nb.score(small_cohort, metrics=("dice", "hd95", "hd"), progress=False)
    assert scores["similarity"].dims == ("case", "algorithm", "label", "metric")
    assert scores["similarity"].shape == (6, 3, 1, 3)
    assert scores["quality"].dims == ("case", "label", "metric")
    assert scores["candidate_quality"].shape == (6, 3, 1, 3)
    assert scores["higher_is_better"].values.tolist() == [True, False, False]
    assert scores["units"].values.tolist() == ["1", "mm", "mm"]
    assert scores.attrs["fusion"] == "mav"
    assert scores.attrs["label_scheme"] == "binary"
    assert scores.attrs["qe_nb_version"] == qe_nb.__version__
    assert (scores["error"] == "").all()


def test_score_values_match_medpy_and_simpleitk(small_cohort):
    medpy = pytest.importorskip("medpy.metric.binary")
    scores = qe_nb.score(small_cohort, metrics=("dice", "hd"), progress=False)
    for case in scores.case.values:
        maps = [sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
                for p in small_cohort["mask"].sel(case=case).values]
        fused = qe_nb.fuse(maps, method="mav") > 0
        for a, m in zip(scores.algorithm.values, maps):
            cand = m > 0
            got = scores["similarity"].sel(case=case, algorithm=a, label="foreground")
            assert got.sel(metric="dice") == pytest.approx(medpy.dc(cand, fused), abs=1e-12)
            f = sitk.HausdorffDistanceImageFilter()
            img_f, img_c = (sitk.GetImageFromArray(x.astype(np.uint8)) for x in (fused, cand))
            for img in (img_f, img_c):
                img.SetSpacing((0.8, 1.0, 2.0))
            f.Execute(img_f, img_c)
            assert got.sel(metric="hd") == pytest.approx(f.GetHausdorffDistance(), abs=1e-6)


def test_real_case_scores(brats_case_dir):
    """The real glioma case: five algorithms, BraTS regions, the empty enhancing tumour."""
    surface_distance = pytest.importorskip("surface_distance")
    ens = qe_nb.open_ensemble(brats_case_dir.parent, masks="{case}/segmentation/{algorithm}.nii.gz",
                              labels="brats-regions")
    scores = qe_nb.score(ens, metrics=("dice", "hd95", "hd"), progress=False)
    sim = scores["similarity"].sel(case="TCGA-DU-7294")
    assert sorted(sim.algorithm.values.tolist()) == sorted(BRATS_ALGORITHMS)
    # Against BraTS Toolkit's own fusion file and DeepMind's surface-distance.
    btk = sitk.GetArrayFromImage(sitk.ReadImage(str(brats_case_dir / "fusion-brats-toolkit" / "mav.nii.gz")))
    fused = qe_nb.structure_masks(btk, "brats-regions")
    for a in BRATS_ALGORITHMS:
        cand_map = sitk.GetArrayFromImage(sitk.ReadImage(str(brats_case_dir / "segmentation" / f"{a}.nii.gz")))
        cand = qe_nb.structure_masks(cand_map, "brats-regions")
        for j, label in enumerate(sim.label.values):
            f, c = fused[j], cand[j]
            got = sim.sel(algorithm=a, label=label)
            if not f.any() and not c.any():
                assert got.sel(metric="dice") == 1.0 and got.sel(metric="hd95") == 0.0
                continue
            if f.any() != c.any():
                assert got.sel(metric="dice") == 0.0
                assert np.isinf(got.sel(metric="hd95")) and np.isinf(got.sel(metric="hd"))
                continue
            d = surface_distance.compute_surface_distances(f, c, (1.0, 1.0, 1.0))
            assert got.sel(metric="hd95") == pytest.approx(
                surface_distance.compute_robust_hausdorff(d, 95), abs=1e-6)
            assert got.sel(metric="dice") == pytest.approx(
                2 * (f & c).sum() / (f.sum() + c.sum()), abs=1e-12)
    # Enhancing tumour is absent in the fusion and in three of the five candidates.
    enh = sim.sel(label="enhancing_tumor", metric="hd95")
    assert int(np.isinf(enh).sum()) == 2
    assert int((enh == 0).sum()) == 3


def test_save_and_load_roundtrip(small_cohort, tmp_path):
    scores = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False)
    path = qe_nb.save_scores(scores, tmp_path / "out" / "scores.nc")
    back = qe_nb.load_scores(path)
    xr.testing.assert_equal(back["similarity"], scores["similarity"].astype(float))
    assert back["higher_is_better"].dtype == bool
    assert back.attrs["fusion"] == "mav"
    assert not list(path.parent.glob(".qe_nb-tmp-*"))


def test_load_scores_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        qe_nb.load_scores(tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(InputError, match="could not be read as NetCDF"):
        qe_nb.load_scores(bad)


def test_one_broken_file_never_loses_the_others(small_cohort, tmp_path):
    clean = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False)
    broken = small_cohort["mask"].sel(case="c2", algorithm="alg-b").item()
    with open(broken, "wb") as fh:
        fh.write(b"\x1f\x8b\x08\x00garbage")
    scores = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False)
    assert "c2" in scores["error"].sel(case="c2").item()
    assert "alg-b" in scores["error"].sel(case="c2").item() or broken in scores["error"].sel(case="c2").item()
    assert scores["similarity"].sel(case="c2").isnull().all()
    others = [c for c in scores.case.values if c != "c2"]
    xr.testing.assert_identical(scores["similarity"].sel(case=others), clean["similarity"].sel(case=others))
    with pytest.raises(qe_nb.QeNbError):
        qe_nb.score(small_cohort, metrics=("dice",), progress=False, on_error="raise")


def test_quality_on_the_foreground_box_matches_whole_grid_peers(tmp_path):
    """score() crops every map to the case's foreground box before anything else: quality and
    candidate quality still equal MedPy's Dice and SimpleITK's Hausdorff on the whole grids,
    with far-off parts that only the reference (missed edema, a label outside the scheme) or
    only one candidate (a false positive) holds."""
    medpy = pytest.importorskip("medpy.metric.binary")
    shape, spacing = (20, 24, 28), (2.0, 1.0, 0.8)
    root = tmp_path / "cohort"
    ref = np.zeros(shape, np.uint8)
    ref[_blob(shape, (6, 7, 8), 4)] = 2
    ref[_blob(shape, (6, 7, 8), 2)] = 4
    ref[0:2, 0:3, 20:23] = 2  # edema that every candidate misses
    ref[0, 0, 27] = 3  # not in the BraTS scheme: ignored, but non-zero
    _write(ref, root / "c0" / "reference.nii.gz", spacing)
    cands = []
    for name, shift in (("alg-a", (0, 0, 0)), ("alg-b", (1, -1, 0)), ("alg-c", (0, 2, 1))):
        cand = np.zeros(shape, np.uint8)
        center = np.array((6, 7, 8)) + shift
        cand[_blob(shape, center, 4)] = 2
        cand[_blob(shape, center, 2)] = 4
        cand[_blob(shape, center + 1, 1)] = 1
        if name == "alg-c":
            cand[15:17, 18:20, 20:22] = 4  # a far false positive
        _write(cand, root / "c0" / f"{name}.nii.gz", spacing)
        cands.append(cand)
    ens = qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii.gz",
                              reference="{case}/reference.nii.gz", labels="brats-regions")
    scores = qe_nb.score(ens, metrics=("dice", "hd"), progress=False, n_jobs=1)
    fused = qe_nb.structure_masks(qe_nb.fuse(cands, method="mav"), "brats-regions")
    truth = qe_nb.structure_masks(ref, "brats-regions")

    def hausdorff(a, b):
        if not a.any() and not b.any():
            return 0.0
        if not a.any() or not b.any():
            return np.inf
        images = [sitk.GetImageFromArray(x.astype(np.uint8)) for x in (a, b)]
        for image in images:
            image.SetSpacing(spacing[::-1])
        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(*images)
        return f.GetHausdorffDistance()

    def dice(a, b):
        return 1.0 if not a.any() and not b.any() else medpy.dc(a, b)

    for j, label in enumerate(scores.label.values):
        got = scores["quality"].sel(case="c0", label=label)
        assert got.sel(metric="dice") == pytest.approx(dice(truth[j], fused[j]), abs=1e-12)
        assert got.sel(metric="hd") == pytest.approx(hausdorff(truth[j], fused[j]), abs=1e-6)
        for name, cand in zip(("alg-a", "alg-b", "alg-c"), cands):
            mask = qe_nb.structure_masks(cand, "brats-regions")[j]
            got = scores["candidate_quality"].sel(case="c0", algorithm=name, label=label)
            assert got.sel(metric="dice") == pytest.approx(dice(truth[j], mask), abs=1e-12)
            assert got.sel(metric="hd") == pytest.approx(hausdorff(truth[j], mask), abs=1e-6)
    assert scores["candidate_quality"].sel(case="c0", algorithm="alg-c", metric="hd").max() > 15


def test_missing_candidate_gives_nan_row(small_cohort):
    ens = small_cohort.copy(deep=True)
    ens["mask"].loc[{"case": "c1", "algorithm": "alg-c"}] = ""
    scores = qe_nb.score(ens, metrics=("dice",), progress=False)
    assert scores["similarity"].sel(case="c1", algorithm="alg-c").isnull().all()
    assert scores["similarity"].sel(case="c1", algorithm="alg-a").notnull().all()
    assert scores["error"].sel(case="c1").item() == ""
    # NaN similarity always raises the alarm.
    assert bool(qe_nb.alarms(scores["similarity"], 0.0).sel(case="c1", algorithm="alg-c").all())


def test_cache_resumes_and_is_identical(small_cohort, tmp_path):
    cache = tmp_path / "cache"
    seen = []
    first = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False, cache=cache,
                        cases=["c0", "c1", "c2"])
    assert first.sizes["case"] == 3
    full = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False, cache=cache,
                       callback=lambda r: seen.append(r["case"]))
    assert sorted(seen) == ["c3", "c4", "c5"]  # only the missing cases were computed
    plain = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False)
    xr.testing.assert_identical(full["similarity"], plain["similarity"])
    xr.testing.assert_identical(full["quality"], plain["quality"])


def test_process_pool_equals_serial(small_cohort):
    serial = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False, n_jobs=1)
    parallel = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False, n_jobs=2)
    xr.testing.assert_identical(serial["similarity"], parallel["similarity"])
    xr.testing.assert_identical(serial["candidate_quality"], parallel["candidate_quality"])


def test_score_argument_errors(small_cohort):
    with pytest.raises(InputError, match="Unknown fusion method 'vote'"):
        qe_nb.score(small_cohort, fusion="vote", progress=False)
    with pytest.raises(InputError, match="Unknown metric 'hd99'"):
        qe_nb.score(small_cohort, metrics=("hd99",), progress=False)
    with pytest.raises(InputError, match="`on_error` must be one of"):
        qe_nb.score(small_cohort, on_error="ignore", progress=False)
    with pytest.raises(InputError, match="`ensemble` must be the catalogue"):
        qe_nb.score(xr.Dataset(), progress=False)
    with pytest.raises(InputError, match="`cases` names cases not in the ensemble"):
        qe_nb.score(small_cohort, cases=["zz"], progress=False)
    with pytest.raises(InputError, match="`n_jobs` must be a positive integer"):
        qe_nb.score(small_cohort, n_jobs=0, progress=False)


def test_label_mean_keeps_inf():
    da = xr.DataArray([[1.0, np.inf], [2.0, 4.0]], dims=("case", "label"),
                      coords={"case": ["a", "b"], "label": ["x", "y"]})
    out = label_mean(da)
    assert out.dims == ("case", "label")
    assert np.isinf(out.sel(case="a").item())
    assert out.sel(case="b").item() == 3.0
    with pytest.raises(InputError, match="must be a DataArray with a 'label' dim"):
        label_mean(da.isel(label=0))


# --- similarity modes, member variables, units (issue 13) ---------------------------------

def _read_case(ensemble, case):
    maps = {str(a): sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
            for a, p in zip(ensemble["algorithm"].values, ensemble["mask"].sel(case=case).values)}
    ref = None
    if "reference" in ensemble:
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ensemble["reference"].sel(case=case).item())))
    return maps, ref


@pytest.mark.parametrize("fusion", ["mav", "staple"])
def test_score_options_equal_score_arrays(small_cohort, fusion):
    options = dict(similarity="leave-one-out", pairwise=True, staple_performance=True)
    metrics = ("dice", "hd95", "hd")
    scores = qe_nb.score(small_cohort, fusion=fusion, metrics=metrics, progress=False, n_jobs=1, **options)
    assert scores.attrs["similarity_mode"] == "leave-one-out"
    assert scores.attrs["distance_units"] == "mm"
    assert scores["pairwise"].dims == ("case", "algorithm", "algorithm_b", "label", "metric")
    assert scores["staple_performance"].dims == ("case", "algorithm", "label", "estimate")
    assert scores["volume"].attrs["units"] == "mm3"
    for case in scores.case.values:
        maps, ref = _read_case(small_cohort, case)
        one = qe_nb.score_arrays(maps, spacing=(2.0, 1.0, 0.8), reference=ref, labels="binary", fusion=fusion,
                                 metrics=metrics, **options)
        for name in ("similarity", "quality", "candidate_quality", "volume", "pairwise", "staple_performance"):
            np.testing.assert_allclose(scores[name].sel(case=case).values, one[name].values, rtol=1e-6,
                                       err_msg=f"{case} {name}")
    # the default run: the same quality, volumes always there, no optional variables
    plain = qe_nb.score(small_cohort, fusion=fusion, metrics=metrics, progress=False, n_jobs=1)
    assert plain.attrs["similarity_mode"] == "fusion"
    assert "pairwise" not in plain and "staple_performance" not in plain
    xr.testing.assert_identical(plain["quality"], scores["quality"])
    xr.testing.assert_identical(plain["volume"], scores["volume"])
    risk = qe_nb.risk_scores(scores, alpha=0.0, level="candidate")
    assert risk.attrs["skipped"] == []


def test_cache_never_serves_another_similarity_mode(small_cohort, tmp_path):
    cache = tmp_path / "cache"
    fusion = qe_nb.score(small_cohort, metrics=("dice",), progress=False, cache=cache)
    seen = []
    loo = qe_nb.score(small_cohort, metrics=("dice",), progress=False, cache=cache, similarity="leave-one-out",
                      callback=lambda r: seen.append(r["case"]))
    assert len(seen) == 6  # every case computed again, none served from the fusion run
    plain = qe_nb.score(small_cohort, metrics=("dice",), progress=False, similarity="leave-one-out")
    xr.testing.assert_identical(loo["similarity"], plain["similarity"])
    assert not np.array_equal(loo["similarity"].values, fusion["similarity"].values)
    again = qe_nb.score(small_cohort, metrics=("dice",), progress=False, cache=cache, similarity="leave-one-out",
                        pairwise=True, callback=lambda r: seen.append(r["case"]))
    assert len(seen) == 12 and "pairwise" in again  # pairwise is part of the key too
    seen.clear()
    cached = qe_nb.score(small_cohort, metrics=("dice",), progress=False, cache=cache, similarity="leave-one-out",
                         pairwise=True, callback=lambda r: seen.append(r["case"]))
    assert seen == []
    xr.testing.assert_identical(cached["pairwise"], again["pairwise"])
    xr.testing.assert_identical(cached["volume"], again["volume"])


def test_member_variables_survive_the_scores_file(small_cohort, tmp_path):
    scores = qe_nb.score(small_cohort, metrics=("dice", "hd95"), progress=False, pairwise=True,
                         staple_performance=True)
    back = qe_nb.load_scores(qe_nb.save_scores(scores, tmp_path / "scores.nc"))
    for name in ("pairwise", "volume", "staple_performance"):
        np.testing.assert_array_equal(back[name].values, scores[name].values)
    assert back.attrs["similarity_mode"] == "fusion"


def test_bad_similarity_is_refused(small_cohort):
    with pytest.raises(InputError, match=r"`similarity` must be one of \['fusion', 'leave-one-out'\]; got 'others'"):
        qe_nb.score(small_cohort, similarity="others", progress=False)


def _cells(shape, rng, n=6):
    yy, xx = np.indices(shape)
    out = np.zeros(shape, np.uint8)
    for _ in range(n):
        cy, cx, r = rng.integers(4, shape[0] - 4), rng.integers(4, shape[1] - 4), rng.integers(2, 5)
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 255
    return out


@pytest.fixture
def cohort_2d(tmp_path):
    """Three 2-D cases x three annotators, as PNG (no spacing: px) and as 2-D NIfTI (mm; spacings
    exact in a NIfTI header's float32, so files and arrays agree)."""
    rng = np.random.default_rng(11)
    truth = {f"c{i}": _cells((40, 52), rng) for i in range(3)}
    arrays = {}
    for case, t in truth.items():
        arrays[case] = {"ann-1": t, "ann-2": np.roll(t, 2, axis=1), "ann-3": _cells((40, 52), rng)}
        for ext, spacing in (("png", None), ("nii.gz", (0.5, 0.75))):
            for name, m in arrays[case].items():
                img = sitk.GetImageFromArray(m)
                if spacing:
                    img.SetSpacing(spacing[::-1])
                path = tmp_path / ext.split(".")[0] / case / f"{name}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                sitk.WriteImage(img, str(path))
    return tmp_path, arrays


@pytest.mark.parametrize("ext, spacing, units", [("png", (1.0, 1.0), "px"), ("nii.gz", (0.5, 0.75), "mm")])
def test_2d_cohort_end_to_end(cohort_2d, ext, spacing, units):
    medpy = pytest.importorskip("medpy.metric.binary")
    root, arrays = cohort_2d
    ens = qe_nb.open_ensemble(root / ext.split(".")[0], masks=f"{{case}}/{{algorithm}}.{ext}")
    metrics = ("dice", "hd", "hd95_medpy", "abs_volume_diff")
    for similarity in ("fusion", "leave-one-out"):
        scores = qe_nb.score(ens, metrics=metrics, progress=False, n_jobs=1, similarity=similarity, pairwise=True)
        assert scores.attrs["distance_units"] == units
        assert scores["units"].values.tolist() == ["1", units, units, f"{units}2"]
        assert (scores["error"] == "").all()
        for case, maps in arrays.items():
            one = qe_nb.score_arrays(maps, spacing=spacing, metrics=metrics, units=units, labels="binary",
                                     similarity=similarity, pairwise=True)
            for name in ("similarity", "pairwise", "volume"):
                np.testing.assert_allclose(scores[name].sel(case=case).values, one[name].values, rtol=1e-12)
            xr.testing.assert_identical(scores["units"], one["units"])
    # other people's code on member pairs: MedPy's Dice and HD95, SimpleITK's Hausdorff
    for case, maps in arrays.items():
        a, b = maps["ann-1"] > 0, maps["ann-3"] > 0
        got = scores["pairwise"].sel(case=case, algorithm="ann-1", algorithm_b="ann-3", label="foreground")
        assert got.sel(metric="dice") == pytest.approx(medpy.dc(a, b), abs=1e-12)
        assert got.sel(metric="hd95_medpy") == pytest.approx(medpy.hd95(a, b, voxelspacing=spacing), abs=1e-9)
        images = [sitk.GetImageFromArray(x.astype(np.uint8)) for x in (a, b)]
        for image in images:
            image.SetSpacing(spacing[::-1])
        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(*images)
        assert got.sel(metric="hd") == pytest.approx(f.GetHausdorffDistance(), abs=1e-9)


def test_cohort_mixing_px_and_mm_is_refused(cohort_2d):
    root, _ = cohort_2d
    ens = qe_nb.open_ensemble(root / "png", masks="{case}/{algorithm}.png")
    nifti = qe_nb.open_ensemble(root / "nii", masks="{case}/{algorithm}.nii.gz")
    ens["mask"].loc[{"case": "c2"}] = nifti["mask"].sel(case="c2").values
    for on_error in ("record", "raise"):
        with pytest.raises(qe_nb.GeometryError, match=r"mixes distance units: case '(c0|c1)' .* px\) and case 'c2' "
                                                      r"has a spacing in mm.*Score them separately \(`cases=`\)"):
            qe_nb.score(ens, metrics=("dice", "hd"), progress=False, n_jobs=1, on_error=on_error)
    assert qe_nb.score(ens, metrics=("dice",), progress=False, cases=["c2"]).attrs["distance_units"] == "mm"

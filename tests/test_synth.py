"""Synthetic cohorts: arguments, determinism, files and geometry, labels, failures, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from qe_nb.data.synth import GLIOMA_ALGORITHMS, synthetic_cohort
from qe_nb.exceptions import EnsembleError, InputError

SMALL_GLIOMA = (48, 56, 48)
SMALL_LUNG = (24, 80, 96)


def _read(path) -> tuple[np.ndarray, sitk.Image]:
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), img


@pytest.fixture(scope="module")
def glioma(tmp_path_factory):
    """A small glioma cohort (with images), shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("glioma")
    ens = synthetic_cohort(root, n_cases=12, shape=SMALL_GLIOMA, seed=3)
    return root, ens


@pytest.fixture(scope="module")
def lung(tmp_path_factory):
    root = tmp_path_factory.mktemp("lung")
    ens = synthetic_cohort(root, kind="lung", n_cases=6, n_algorithms=3, shape=SMALL_LUNG, seed=4)
    return root, ens


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "liver"}, r"Unknown `kind` 'liver'; expected one of \['glioma', 'lung', 'cells'\]"),
        ({"n_cases": 0}, r"`n_cases` must be an integer >= 1; got 0"),
        ({"n_cases": 2.5}, r"`n_cases` must be an integer >= 1; got 2.5"),
        ({"n_cases": True}, r"`n_cases` must be an integer >= 1; got True"),
        ({"n_algorithms": 1}, r"`n_algorithms` must be an integer >= 2; got 1"),
        ({"seed": -1}, r"`seed` must be an integer >= 0; got -1"),
        ({"seed": "a"}, r"`seed` must be an integer >= 0; got 'a'"),
        ({"shape": (32, 32)}, r"`shape` must be 3 positive integers \(z, y, x\), each >= 16; got \(32, 32\)"),
        ({"shape": (0, 32, 32)}, r"`shape` must be 3 positive integers .*got \(0, 32, 32\)"),
        ({"shape": (32.0, 32, 32)}, r"`shape` must be 3 positive integers .*got \(32.0, 32, 32\)"),
        ({"shape": 32}, r"`shape` must be 3 positive integers .*got 32"),
    ],
)
def test_bad_arguments_raise_before_writing(tmp_path, kwargs, match):
    target = tmp_path / "cohort"
    with pytest.raises(InputError, match=match):
        synthetic_cohort(target, **{"n_cases": 1, "shape": SMALL_GLIOMA, **kwargs})
    assert not target.exists()


def test_path_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "x.txt"
    file.write_text("hello")
    with pytest.raises(InputError, match=r"`path` '.*x.txt' is a file; expected a folder"):
        synthetic_cohort(file, n_cases=1, shape=SMALL_GLIOMA)


def test_non_empty_foreign_folder_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(EnsembleError, match=r"is not empty \(1 entries\) and holds no synthetic cohort \(cohort.json\).*overwrite=True"):
        synthetic_cohort(tmp_path, n_cases=1, shape=SMALL_GLIOMA, images=False)
    ens = synthetic_cohort(tmp_path, n_cases=1, shape=SMALL_GLIOMA, images=False, overwrite=True)
    assert list(ens["case"].values) == ["case-000"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_previous_synthetic_cohort_is_replaced_without_stale_cases(tmp_path):
    synthetic_cohort(tmp_path, n_cases=3, shape=SMALL_GLIOMA, images=False)
    ens = synthetic_cohort(tmp_path, kind="lung", n_cases=2, n_algorithms=3, shape=SMALL_LUNG, images=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "case-000", "case-001", "cohort.json"]
    assert list(ens["algorithm"].values) == ["ADA", "AUG", "RAN"]
    assert json.loads((tmp_path / "cohort.json").read_text())["kind"] == "lung"


def test_progress_callback_and_bar(tmp_path):
    seen = []
    synthetic_cohort(tmp_path / "a", n_cases=2, shape=SMALL_GLIOMA, images=False, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 2), (2, 2)]
    synthetic_cohort(tmp_path / "b", n_cases=1, shape=SMALL_GLIOMA, images=False, progress=True)


# --------------------------------------------------------------------------- determinism


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["glioma", "lung"])
def test_same_seed_writes_the_same_bytes(tmp_path, kind):
    shape = SMALL_GLIOMA if kind == "glioma" else SMALL_LUNG
    for name in ("a", "b"):
        synthetic_cohort(tmp_path / name, kind=kind, n_cases=2, n_algorithms=3, shape=shape, seed=7)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert len(a) == 2 * (3 + 1 + (4 if kind == "glioma" else 1)) + 2
    assert a == b
    synthetic_cohort(tmp_path / "c", kind=kind, n_cases=2, n_algorithms=3, shape=shape, seed=8)
    c = _tree(tmp_path / "c")
    assert a.keys() == c.keys()
    assert a["case-000/reference.nii.gz"] != c["case-000/reference.nii.gz"]


def test_a_case_does_not_depend_on_the_number_of_cases(tmp_path):
    synthetic_cohort(tmp_path / "a", n_cases=1, shape=SMALL_GLIOMA, images=False)
    synthetic_cohort(tmp_path / "b", n_cases=3, shape=SMALL_GLIOMA, images=False)
    for f in ("reference.nii.gz", "unet-a.nii.gz"):
        assert (tmp_path / "a/case-000" / f).read_bytes() == (tmp_path / "b/case-000" / f).read_bytes()


# --------------------------------------------------------------------------- files and geometry


def test_glioma_catalogue_files_and_geometry(glioma):
    root, ens = glioma
    assert dict(ens.sizes) == {"case": 12, "algorithm": 5, "modality": 4, "label": 3}
    assert sorted(ens["algorithm"].values) == sorted(GLIOMA_ALGORITHMS)
    assert list(ens["modality"].values) == ["flair", "t1", "t1c", "t2"]
    assert list(ens["label"].values) == ["whole_tumor", "tumor_core", "enhancing_tumor"]
    assert ens.attrs["label_scheme"] == "brats-regions"
    assert list(ens["case"].values) == [f"case-{i:03d}" for i in range(12)]
    meta = json.loads((root / "cohort.json").read_text())
    assert meta["generator"] == "qe_nb.synth.synthetic_cohort" and meta["seed"] == 3
    assert meta["shape"] == list(SMALL_GLIOMA) and len(meta["cases"]) == 12
    assert "synthetic_cohort" in (root / "README.md").read_text()
    for case in ens["case"].values[:3]:
        ref, ref_img = _read(ens["reference"].sel(case=case).item())
        assert ref.shape == SMALL_GLIOMA and ref.dtype == np.uint8
        assert ref_img.GetSpacing() == (1.0, 1.0, 1.0)
        for path in [*ens["mask"].sel(case=case).values, *ens["image"].sel(case=case).values]:
            arr, img = _read(path)
            assert arr.shape == SMALL_GLIOMA
            assert arr.dtype == (np.int16 if "/images/" in str(path) else np.uint8)
            assert img.GetSpacing() == ref_img.GetSpacing()
            assert img.GetOrigin() == ref_img.GetOrigin()


def test_glioma_labels_are_brats_and_nested(glioma):
    root, ens = glioma
    has_et = 0
    for case in ens["case"].values:
        ref, _ = _read(ens["reference"].sel(case=case).item())
        assert set(np.unique(ref)) <= {0, 1, 2, 4}
        for path in ens["mask"].sel(case=case).values:
            assert set(np.unique(_read(path)[0])) <= {0, 1, 2, 4}
        core = (ref == 1) | (ref == 4)
        assert (ref == 2).sum() > core.sum() > 0
        # the core sits inside the edema: almost none of its outer shell touches background
        shell = ndi.binary_dilation(core) & ~core
        assert (ref[shell] == 0).mean() < 0.1
        if (ref == 4).any():
            has_et += 1
            # enhancing tumour is the rim of the core: necrosis barely touches edema
            nec = ref == 1
            if nec.any():
                assert (ref[ndi.binary_dilation(nec) & ~nec] == 2).mean() < 0.1
    assert 0 < has_et < 12 or has_et == 12  # usually enhancing, sometimes none


def test_glioma_images_show_the_tumour(glioma):
    _, ens = glioma
    case = ens["case"].values[0]
    ref, _ = _read(ens["reference"].sel(case=case).item())
    t1c, _ = _read(ens["image"].sel(case=case, modality="t1c").item())
    flair, _ = _read(ens["image"].sel(case=case, modality="flair").item())
    assert (t1c[ref == 0] >= 0).all() and (t1c[:2] == 0).all()  # skull-stripped background
    if (ref == 4).any():
        assert t1c[ref == 4].mean() > t1c[ref == 2].mean() + 200
    assert flair[ref == 2].mean() > flair[(ref == 0) & (flair > 0)].mean() + 200


def test_lung_spacing_is_anisotropic_ct(lung):
    root, ens = lung
    assert dict(ens.sizes) == {"case": 6, "algorithm": 3, "modality": 1, "label": 1}
    assert list(ens["algorithm"].values) == ["ADA", "AUG", "RAN"]
    assert ens.attrs["label_scheme"] == "binary"
    spacings = set()
    for case in ens["case"].values:
        ref, img = _read(ens["reference"].sel(case=case).item())
        sx, sy, sz = img.GetSpacing()
        assert 2.5 <= sz <= 5.0 and 0.7 <= sx <= 0.9 and sx == sy
        spacings.add((sx, sz))
        assert ref.shape == SMALL_LUNG and set(np.unique(ref)) == {0, 1}
        assert 1 <= ndi.label(ref)[1] <= 8
        ct, ct_img = _read(ens["image"].sel(case=case, modality="ct").item())
        assert ct.dtype == np.int16 and ct_img.GetSpacing() == img.GetSpacing()
        assert -1100 < np.median(ct[ref == 1]) < 0 and np.median(ct[:, :3, :]) < -900
        for path in ens["mask"].sel(case=case).values:
            assert _read(path)[1].GetSpacing() == img.GetSpacing()
    assert len(spacings) == 6


def test_more_algorithms_get_generic_names(tmp_path):
    ens = synthetic_cohort(tmp_path, kind="lung", n_cases=1, n_algorithms=6, shape=SMALL_LUNG, images=False)
    assert sorted(ens["algorithm"].values) == ["ADA", "AUG", "BASE", "RAN", "model-05", "model-06"]
    assert "image" not in ens


# --------------------------------------------------------------------------- failures


def test_failure_modes_appear_and_are_what_they_claim(tmp_path):
    ens = synthetic_cohort(tmp_path, n_cases=24, shape=SMALL_GLIOMA, seed=11, images=False)
    meta = json.loads((tmp_path / "cohort.json").read_text())
    seen: dict[str, int] = {}
    for case in meta["cases"]:
        ref, _ = _read(ens["reference"].sel(case=case["case"]).item())
        near = ndi.binary_dilation(ref > 0, iterations=10)
        for algorithm, modes in case["failures"].items():
            for m in modes:
                seen[m] = seen.get(m, 0) + 1
            cand, _ = _read(ens["mask"].sel(case=case["case"], algorithm=algorithm).item())
            if "empty" in modes:
                assert not cand.any()
                continue
            if "false_positive" in modes and "shift" not in modes:
                assert (cand[~near] > 0).any()
            if "miss_enhancing" in modes and not {"false_positive", "confuse_necrosis_enhancing"} & set(modes):
                assert not (cand == 4).any()
            if "miss_core" in modes and "false_positive" not in modes:
                assert not ((cand == 1) | (cand == 4)).any()
    expected = {"miss_enhancing", "confuse_necrosis_enhancing", "miss_core", "bleed", "shrink",
                "shift", "false_positive", "empty"}
    assert expected <= set(seen), sorted(expected - set(seen))
    n_candidates = 24 * 5
    assert seen["empty"] < 0.1 * n_candidates  # rare
    assert sum(1 for c in meta["cases"] if not any(c["failures"].values())) >= 3  # clean cases exist


# --------------------------------------------------------------------------- end to end


def _pearson(x, y) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


@pytest.mark.parametrize(
    ("kind", "n_cases", "n_algorithms", "shape", "median_range"),
    [
        ("glioma", 20, 5, (64, 72, 64), (0.6, 0.95)),
        # paper, CT: median 0.67, min 0, sd 0.25 (the small grid makes lesions harder)
        ("lung", 20, 3, (32, 112, 128), (0.4, 0.9)),
    ],
)
def test_alarm_count_predicts_fusion_dice(tmp_path, kind, n_cases, n_algorithms, shape, median_range):
    from qe_nb.core.alarms import alarms, risk
    from qe_nb.pipeline.scoring import score

    ens = synthetic_cohort(tmp_path, kind=kind, n_cases=n_cases, n_algorithms=n_algorithms,
                           shape=shape, seed=0, images=False)
    scores = score(ens, fusion="mav", metrics=("dice", "hd95"), progress=False, n_jobs=1)
    assert not any(scores["error"].values)
    quality = scores["quality"].sel(metric="dice").mean("label")
    q = quality.values
    # the paper's shape: most cases good, a tail of failures
    assert median_range[0] < np.median(q) < median_range[1]
    assert np.mean(q >= 0.3) >= 0.6
    assert q.min() < 0.5 and q.max() > 0.85
    count = risk(alarms(scores["similarity"], 0.1))
    r = _pearson(count.sel(case=quality["case"]).values, q)
    assert r < -0.3, r

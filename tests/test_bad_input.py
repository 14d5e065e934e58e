"""Bad input end to end: each broken file gives a clear message and never loses other cases.

Each fault of ``tests/bad_inputs.py`` is applied to one file of a clean cohort; the cohort is
scored with the default ``on_error="record"``. The broken case's recorded error must name the
case, the algorithm, the file and the problem; every other case must be scored exactly as in
a clean run. Errors that must stop before any work (bad patterns, duplicate ids) raise.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

import qe_nb
from qe_nb.data.limits import voxel_limit
from qe_nb.exceptions import EnsembleError, GeometryError, ImageReadError, LabelError

from .bad_inputs import ALGORITHMS, FAULTS, make_cohort, victim

METRICS = ("dice", "hd95")


def _open(root, suffix=".nii.gz"):
    return qe_nb.open_ensemble(root, masks=f"{{case}}/{{algorithm}}{suffix}",
                               reference=f"{{case}}/reference{suffix}", labels="brats")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = {}
    for suffix in sorted({f.suffix for f in FAULTS}):
        root = make_cohort(tmp_path_factory.mktemp("clean") / "cohort", suffix=suffix)
        out[suffix] = (root, qe_nb.score(_open(root, suffix), metrics=METRICS, progress=False))
    return out


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_is_reported_and_others_are_untouched(fault, clean, tmp_path):
    clean_root, clean_scores = clean[fault.suffix]
    root = tmp_path / "cohort"
    shutil.copytree(clean_root, root, symlinks=True)
    fault.apply(victim(root, fault.suffix))
    limit = voxel_limit(fault.max_voxels) if fault.max_voxels else contextlib.nullcontext()
    with warnings.catch_warnings(record=True) as caught, limit:
        warnings.simplefilter("always")
        scores = qe_nb.score(_open(root, fault.suffix), metrics=METRICS, progress=False)
    error = str(scores["error"].sel(case="case-03").item())
    if fault.warning:
        messages = [str(w.message) for w in caught if issubclass(w.category, qe_nb.QeNbWarning)]
        assert any(re.search(fault.warning, m) for m in messages), messages
    sim = scores["similarity"].sel(case="case-03")
    if fault.outcome == "error":
        assert error, f"{fault.id}: no error recorded"
        assert re.search(fault.message, error), error
        assert sim.isnull().all()
    elif fault.outcome == "scored":
        assert error == ""
        messages = [str(w.message) for w in caught if issubclass(w.category, qe_nb.QeNbWarning)]
        assert any(re.search(fault.message, m) for m in messages), messages
        assert sim.notnull().all()
    else:  # a missing candidate: NaN similarity for it, which raises its alarms
        assert error == ""
        assert sim.sel(algorithm="alg-b").isnull().all()
        assert sim.sel(algorithm=["alg-a", "alg-c"]).notnull().all()
        assert bool(qe_nb.alarms(scores["similarity"], 0.0).sel(case="case-03", algorithm="alg-b").all())
    others = [c for c in scores.case.values if c != "case-03"]
    xr.testing.assert_identical(scores["similarity"].sel(case=others),
                                clean_scores["similarity"].sel(case=others))
    xr.testing.assert_identical(scores["quality"].sel(case=others), clean_scores["quality"].sel(case=others))


@pytest.mark.parametrize("fault_id, error", [
    ("truncated", ImageReadError), ("empty-file", ImageReadError), ("other-spacing", GeometryError),
    ("non-integral", LabelError), ("broken-symlink", ImageReadError),
])
def test_strict_runs_raise_the_same_message(fault_id, error, clean, tmp_path):
    fault = next(f for f in FAULTS if f.id == fault_id)
    root = tmp_path / "cohort"
    shutil.copytree(clean[".nii.gz"][0], root, symlinks=True)
    fault.apply(victim(root))
    with pytest.raises(error, match=fault.message):
        qe_nb.score(_open(root), metrics=METRICS, progress=False, on_error="raise")


@pytest.mark.parametrize("fault_id", ["other-spacing", "other-origin", "other-direction"])
def test_resample_brings_the_candidate_onto_the_first_grid(fault_id, clean, tmp_path):
    fault = next(f for f in FAULTS if f.id == fault_id)
    root = tmp_path / "cohort"
    shutil.copytree(clean[".nii.gz"][0], root, symlinks=True)
    fault.apply(victim(root))
    scores = qe_nb.score(_open(root), metrics=METRICS, progress=False, resample=True)
    assert str(scores["error"].sel(case="case-03").item()) == ""
    assert scores["similarity"].sel(case="case-03", algorithm="alg-a").notnull().all()


def test_permission_denied_is_reported(clean, tmp_path, monkeypatch):
    """As root chmod 000 still reads, so the PermissionError of opening the file is emulated."""
    import qe_nb.data.images as qio

    root = tmp_path / "cohort"
    shutil.copytree(clean[".nii.gz"][0], root, symlinks=True)
    target = str(victim(root))
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if str(file) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(qio, "open", guarded_open, raising=False)
    scores = qe_nb.score(_open(root), metrics=METRICS, progress=False, n_jobs=1)
    error = str(scores["error"].sel(case="case-03").item())
    assert "case 'case-03', algorithm 'alg-b'" in error and "permission denied" in error
    assert str(scores["error"].sel(case="case-00").item()) == ""


def test_reference_but_no_candidates(clean, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(clean[".nii.gz"][0], root, symlinks=True)
    for name in ALGORITHMS:
        (root / "case-01" / f"{name}.nii.gz").unlink()
    scores = qe_nb.score(_open(root), metrics=METRICS, progress=False)
    assert "case 'case-01': no candidate segmentation was found" in str(scores["error"].sel(case="case-01").item())
    assert scores.sizes["case"] == 6


def test_long_and_non_ascii_case_names_are_scored(clean, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(clean[".nii.gz"][0], root, symlinks=True)
    long_name = "Patient-Ærøskøbing-" + "x" * 180
    (root / "case-02").rename(root / long_name)
    scores = qe_nb.score(_open(root), metrics=METRICS, progress=False)
    assert long_name in scores.case.values
    assert str(scores["error"].sel(case=long_name).item()) == ""


def test_duplicate_case_ids_fail_before_any_work(clean, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(clean[".nii.gz"][0], root, symlinks=True)
    shutil.copy(root / "case-00" / "alg-a.nii.gz", root / "case-00" / "alg-a.nii")
    with pytest.raises(EnsembleError, match=r"alg-a\.nii.*alg-a\.nii\.gz|alg-a\.nii\.gz.*alg-a\.nii"):
        qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii*", labels="brats")


def test_twenty_cases_four_broken_one_missing(tmp_path):
    """The reliability issue's scenario: 15 intact cases equal a clean run exactly."""
    root = make_cohort(tmp_path / "cohort", n_cases=20, seed=5)
    clean = qe_nb.score(_open(root), metrics=METRICS, progress=False)
    broken = {
        "case-02": ("truncated", "alg-a"),
        "case-07": ("not-an-image", "alg-c"),
        "case-11": ("other-spacing", "alg-b"),
        "case-16": ("non-integral", "alg-a"),
    }
    by_id = {f.id: f for f in FAULTS}
    for case, (fault_id, algorithm) in broken.items():
        by_id[fault_id].apply(root / case / f"{algorithm}.nii.gz")
    (root / "case-19" / "alg-b.nii.gz").unlink()
    scores = qe_nb.score(_open(root), metrics=METRICS, progress=False)
    failed = {str(c): str(e) for c, e in zip(scores.case.values, scores["error"].values) if str(e)}
    assert sorted(failed) == sorted(broken)
    for case, (_fault, algorithm) in broken.items():
        assert f"case '{case}'" in failed[case] and f"'{algorithm}'" in failed[case]
    assert scores["similarity"].sel(case="case-19", algorithm="alg-b").isnull().all()
    intact = [f"case-{i:02d}" for i in range(20) if f"case-{i:02d}" not in broken and i != 19]
    assert len(intact) == 15
    xr.testing.assert_identical(scores["similarity"].sel(case=intact), clean["similarity"].sel(case=intact))
    xr.testing.assert_identical(scores["quality"].sel(case=intact), clean["quality"].sel(case=intact))
    assert np.isfinite(scores["similarity"].sel(case=intact).sel(metric="dice")).all()

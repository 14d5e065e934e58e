"""Nothing silent (issue 14): label inference over the cohort with one warning, missing candidate
files recorded per case, label values outside the scheme summarised once, a warning when most
cases fail."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

import qe_nb
from qe_nb.data.label_inference import infer_cohort_labels, spread_order
from qe_nb.exceptions import LabelValueWarning, QeNbWarning
from qe_nb.pipeline.scoring import label_value_summary, missing_summary

SHAPE = (10, 12, 14)


def _write(arr, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.asarray(arr, np.uint8)), str(path))


def _tumour(values, shift=0):
    """Edema (2) around necrosis (1) and, when 4 in values, enhancing tumour (4)."""
    m = np.zeros(SHAPE, np.uint8)
    m[2:8, 3 + shift:9 + shift, 3:11] = 2 if 2 in values else 1
    m[3:7, 4 + shift:8 + shift, 4:10] = 1
    for v in values:
        if v not in (1, 2):
            m[4:6, 5 + shift:7 + shift, 5:9] = v
    return m


def _cohort(root, per_case, *, layout="{case}/{algorithm}.nii.gz", algorithms=("a", "b", "c"), skip=()):
    for i, values in enumerate(per_case):
        for j, algorithm in enumerate(algorithms):
            if (f"c{i}", algorithm) in skip:
                continue
            _write(_tumour(values, shift=j % 2), root / layout.format(case=f"c{i}", algorithm=algorithm))
    return root


# --------------------------------------------------------------------------- label inference


def test_inference_sees_labels_beyond_the_first_case(tmp_path, caplog):
    """The demo's first case has no enhancing tumour: the first-case-only guess dropped label 4."""
    root = _cohort(tmp_path, [(1, 2)] * 3 + [(1, 2, 4)] + [(1, 2)] * 3)
    with caplog.at_level(logging.INFO, logger="qe_nb"), warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ens = qe_nb.open_ensemble(root)
    assert ens.attrs["label_scheme"] == "brats-regions" and ens.attrs["labels_inferred"] == 1
    ours = [w for w in record if issubclass(w.category, QeNbWarning)]
    assert len(ours) == 1  # once, not per value or per case
    assert str(ours[0].message).startswith(
        "no `labels=` given: label values [1, 2, 4] seen in 21 candidate file(s) of all 7 case(s); using "
        "the scheme 'brats-regions' (whole_tumor=[1, 2, 4], tumor_core=[1, 4], enhancing_tumor=[4]). "
        "Pass `labels=` (CLI: `--labels`) to choose")
    assert ours[0].filename == __file__
    assert "labels inferred from 3 file(s) of case 'c0' and 18 file(s) of 6 other case(s)" in caplog.text


@pytest.mark.parametrize(("per_case", "name"), [
    ([(1, 2, 3), (1, 2), (1, 2)], "brats2023-regions"),
    ([(1, 2), (1, 2)], "inferred"),
    ([(1,), (1,)], "binary"),
])
def test_inference_recognises_the_schemes(tmp_path, per_case, name):
    root = _cohort(tmp_path, per_case)
    with pytest.warns(QeNbWarning, match=rf"using the scheme '{name}'"):
        assert qe_nb.open_ensemble(root).attrs["label_scheme"] == name


def test_no_warning_when_labels_are_given(tmp_path):
    root = _cohort(tmp_path, [(1, 2, 4)] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qe_nb.open_ensemble(root, labels="brats")


def test_inference_within_a_budget_reads_cases_spread_over_the_cohort(tmp_path):
    root = _cohort(tmp_path, [(1, 2)] * 9)
    ens = qe_nb.open_ensemble(root, labels="binary")
    found = infer_cohort_labels(ens["mask"].values, list(ens.case.values), list(ens.algorithm.values),
                                voxel_budget=1, min_cases=3)
    assert found.cases_read == ("c0", "c8", "c4") and not found.complete
    assert "of 3 of 9 cases spread over the cohort" in found.warning_text()
    assert spread_order(9) == [0, 8, 4, 2, 6, 1, 3, 5, 7]


def test_long_value_lists_are_cut(tmp_path):
    m = np.arange(np.prod(SHAPE)).reshape(SHAPE) % 40
    _write(m, tmp_path / "c0" / "a.nii.gz")
    with pytest.warns(QeNbWarning, match=r"label values \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, \.\.\., 39\] "
                                         r"\(39 values\) seen in 1 candidate file"):
        qe_nb.open_ensemble(tmp_path)


# --------------------------------------------------------------------------- label values outside the scheme


def test_values_outside_the_scheme_warn_once_per_run(tmp_path):
    root = _cohort(tmp_path, [(1, 2, 4)] * 5)
    ens = qe_nb.open_ensemble(root, labels={"core": [1]})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1)
    ours = [w for w in record if issubclass(w.category, LabelValueWarning)]
    assert len(ours) == 1
    assert str(ours[0].message).startswith(
        "15 candidate file(s) hold label values [2, 4] that no structure of the label scheme (core=[1]) "
        "uses; they are ignored. First: case 'c0', algorithm 'a': label values [2, 4] are outside")
    assert str(ours[0].message).endswith("Pass `labels=` (CLI: `--labels`) to use them.")


def test_label_value_summary_of_one_message_is_the_message():
    assert label_value_summary(["x: label values [3] are outside"], "t=[1]") == "x: label values [3] are outside"


# --------------------------------------------------------------------------- missing candidates


def test_missing_candidates_of_an_nnunet_layout_are_recorded(tmp_path):
    root = _cohort(tmp_path, [(1, 2, 4)] * 4, layout="{algorithm}/{case}.nii.gz",
                   algorithms=("netA", "netB", "netC"), skip={("c1", "netB"), ("c3", "netA")})
    ens = qe_nb.open_ensemble(root, masks="{algorithm}/{case}.nii.gz", labels="brats-regions")
    scores = qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1)
    assert scores["missing"].dims == ("case", "algorithm") and scores["missing"].dtype == bool
    assert scores["missing"].sum().item() == 2
    assert bool(scores["missing"].sel(case="c1", algorithm="netB"))
    assert scores["similarity"].sel(case="c1", algorithm="netB").isnull().all()
    assert (scores["error"] == "").all()  # the other candidates were scored
    text = missing_summary(scores)
    assert text == (
        f"2 candidate file(s) missing in 2 of 4 case(s): case 'c1': netB (expected "
        f"{str(root / 'netB' / 'c1.nii.gz')!r}); case 'c3': netA (expected {str(root / 'netA' / 'c3.nii.gz')!r}). "
        "Their scores are NaN and count as alarms."
    )
    back = qe_nb.load_scores(qe_nb.save_scores(scores, tmp_path / "scores.nc"))
    assert back["missing"].dtype == bool and missing_summary(back) == text
    full = qe_nb.score(ens.sel(case=["c0", "c2"]), metrics=("dice",), progress=False, n_jobs=1)
    assert missing_summary(full) == "" and not full["missing"].any()


def test_missing_summary_counts_beyond_its_limit(tmp_path):
    root = _cohort(tmp_path, [(1,)] * 4, skip={(f"c{i}", "a") for i in range(4)})
    _write(_tumour((1,)), root / "c0" / "a.nii.gz")
    ens = qe_nb.open_ensemble(root, labels="binary")
    scores = qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1)
    assert missing_summary(scores, limit=1).startswith(
        "3 candidate file(s) missing in 3 of 4 case(s): case 'c1': a (expected ")
    assert "; and 2 more case(s). Their scores are NaN" in missing_summary(scores, limit=1)
    with pytest.raises(qe_nb.InputError, match=r"`scores` must be the Dataset from qe_nb.score; got str"):
        missing_summary("scores.nc")


# --------------------------------------------------------------------------- most cases failing


def test_most_cases_failing_warns_and_all_failing_gives_nan(tmp_path):
    root = _cohort(tmp_path, [(1,)] * 4)
    ens = qe_nb.open_ensemble(root, labels="binary")
    for case in ("c0", "c1", "c2"):
        (root / case / "b.nii.gz").write_bytes(b"not an image")
    with pytest.warns(QeNbWarning, match=r"^3 of 4 cases failed; first: case 'c0'.*scores\['error'\]"):
        scores = qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1)
    assert scores["similarity"].sel(case="c3").notnull().all()
    (root / "c3" / "b.nii.gz").write_bytes(b"")
    with pytest.warns(QeNbWarning, match=r"^4 of 4 cases failed; first: case 'c0'"):
        scores = qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1)
    assert scores["similarity"].isnull().all() and scores.attrs["n_failed_cases"] == 4
    with pytest.raises(qe_nb.QeNbError, match=r"c0"):
        qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1, on_error="raise")


def test_half_failing_does_not_warn(tmp_path):
    root = _cohort(tmp_path, [(1,)] * 4)
    ens = qe_nb.open_ensemble(root, labels="binary")
    for case in ("c0", "c1"):
        (root / case / "b.nii.gz").write_bytes(b"not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = qe_nb.score(ens, metrics=("dice",), progress=False, n_jobs=1)
    assert scores.attrs["n_failed_cases"] == 2

"""`qe-nb report`: one self-contained HTML file of a scored run (issue 14)."""

from __future__ import annotations

import base64
import re

import pytest

import qe_nb
from qe_nb.cli import main
from qe_nb.data.synth import IMAGES, MASKS, REFERENCE
from qe_nb.exceptions import InputError

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    qe_nb.synthetic_cohort(root / "cohort", kind="glioma", n_cases=8, n_algorithms=3, shape=(16, 24, 24), seed=7)
    scores = root / "scores.nc"
    assert main(["score", str(root / "cohort"), "--masks", MASKS, "--reference", REFERENCE, "--labels",
                 "brats-regions", "--out", str(scores), "--quiet", "--jobs", "1"]) == 0
    return root, scores


def _pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_is_one_self_contained_file(run, capsys):
    root, scores = run
    out = root / "report.html"
    status = main(["report", str(scores), "--out", str(out), "--ensemble", str(root / "cohort"),
                   "--masks", MASKS, "--reference", REFERENCE, "--images", IMAGES, "--top", "3"])
    assert status == 0
    assert "one self-contained HTML file" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # nothing to fetch: no scripts, no links, every image embedded
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    assert not re.search(r'src="(?!data:image/png;base64,)', text)
    pngs = _pngs(text)
    assert len(pngs) == 2 + 3 and all(p.startswith(b"\x89PNG") for p in pngs)  # Fig. 4, sweep, 3 thumbnails
    run_alpha = qe_nb.run_alpha(qe_nb.load_scores(scores))
    assert f"The run's α</b>: {run_alpha.text}" in text
    assert "Figure 4" in text and f"at {run_alpha.value_text} (entropy)" in text
    assert "Thresholds" in text and "MADs past" in text
    top = qe_nb.worklist(run_alpha.similarity(qe_nb.load_scores(scores)), run_alpha.alpha)["case"].tolist()[:3]
    for rank, case in enumerate(top, start=1):
        assert f"#{rank} · {case} ·" in text
    assert "where the members disagree most" in text
    assert "Verdicts" not in text


def test_report_escapes_every_string_and_shows_verdicts(run, tmp_path):
    from qe_nb.ui.report import report_html
    from qe_nb.ui.verdicts import VerdictStore

    root, scores_path = run
    scores = qe_nb.load_scores(scores_path)
    scores.attrs["source"] = "<script>alert('x')</script>"
    scores.attrs["masks_pattern"] = "{case}/<b>{algorithm}</b>.nii.gz"
    case = str(scores["case"].values[0])
    verdicts = tmp_path / "v.csv"
    VerdictStore(verdicts).record(case, "reject", note="<img src=x onerror=alert(1)>")
    text = report_html(scores, verdicts=verdicts, top=2)
    assert "<script>" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;b&gt;{algorithm}&lt;/b&gt;" in text
    assert "<h2>Verdicts</h2>" in text and "1 verdict(s)" in text
    assert "No thumbnails" in text  # the recorded folder is not a folder any more


def test_report_without_ground_truth_and_bad_top(run):
    from qe_nb.ui.report import report_html

    _, scores_path = run
    scores = qe_nb.load_scores(scores_path).drop_vars(["quality"], errors="ignore")
    scores = scores.drop_vars([v for v in ("candidate_quality",) if v in scores])
    text = report_html(scores, top=2)
    assert "no ground truth: no Figure 4" in text
    with pytest.raises(InputError, match=r"`top` must be a whole number >= 1; got 0"):
        report_html(scores, top=0)


def test_report_needs_ensemble_for_patterns(run, capsys):
    _, scores = run
    assert main(["report", str(scores), "--images", IMAGES]) == 2
    assert "--ensemble ROOT" in capsys.readouterr().err

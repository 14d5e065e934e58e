"""The qe-nb command: help on every command, one-line errors, end-to-end runs."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import qe_nb
from qe_nb.cli import build_parser, main

from .conftest import SHARED

COMMANDS = ("demo", "score", "sweep", "worklist", "fetch")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert command in capsys.readouterr().out


def test_entry_point_installed():
    out = subprocess.run([sys.executable, "-m", "qe_nb.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "qe-nb" in out.stdout


def test_score_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status = main(["score", str(tmp_path / "empty"), "--out", str(tmp_path / "s.nc"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("qe-nb score: error:") and "\n" not in err
    status = main(["score", str(tmp_path / "empty"), "--masks", "{case}.nii.gz", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "{algorithm}" in err


def test_unknown_labels_fail_before_work(tmp_path, capsys):
    status = main(["score", str(tmp_path), "--labels", "kidney", "--quiet"])
    assert status == 2
    assert "kidney" in capsys.readouterr().err


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    qe_nb.synthetic_cohort(root / "cohort", kind="glioma", n_cases=8, n_algorithms=3,
                           shape=(32, 40, 40), seed=3)
    out = root / "scores.nc"
    status = main(["score", str(root / "cohort"), "--masks", "{case}/{algorithm}.nii.gz",
                   "--reference", "{case}/reference.nii.gz", "--labels", "brats-regions",
                   "--metrics", "dice,hd95", "--out", str(out), "--quiet", "--jobs", "1"])
    assert status == 0
    return out


def test_score_sweep_worklist(scored, tmp_path, capsys):
    scores = qe_nb.load_scores(scored)
    assert scores["similarity"].shape == (8, 3, 3, 2)
    assert main(["sweep", str(scored), "--alphas", "0,0.1,1"]) == 0
    out = capsys.readouterr().out
    assert "entropy" in out and "r:dice" in out and "0a" in out
    csv = tmp_path / "w.csv"
    assert main(["worklist", str(scored), "--alpha", "0.1", "--csv", str(csv)]) == 0
    import pandas as pd

    table = pd.read_csv(csv)
    assert len(table) == 8
    assert table["risk"].is_monotonic_decreasing
    expected = qe_nb.risk(qe_nb.alarms(scores["similarity"], 0.1))
    assert table.set_index("case")["risk"].to_dict() == {str(c): int(v) for c, v in zip(expected.case.values, expected.values)}


def test_score_reports_failed_cases_and_exits_nonzero(tmp_path, capsys):
    qe_nb.synthetic_cohort(tmp_path / "c", kind="lung", n_cases=4, n_algorithms=3, shape=(16, 32, 32), seed=1)
    victim = sorted((tmp_path / "c").glob("*/ADA.nii.gz"))[1]
    victim.write_bytes(b"")
    status = main(["score", str(tmp_path / "c"), "--reference", "{case}/reference.nii.gz",
                   "--labels", "binary", "--out", str(tmp_path / "s.nc"), "--quiet", "--jobs", "1"])
    out = capsys.readouterr().out
    assert status == 1
    assert "failed cases:" in out and victim.parent.name in out
    scores = qe_nb.load_scores(tmp_path / "s.nc")
    assert np.isnan(scores["similarity"].sel(case=victim.parent.name)).all()
    assert int((scores["error"] != "").sum()) == 1


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path / "demo"), "--cases", "20", "--quiet", "--jobs", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "Alpha sweep" in out and "Thresholds per algorithm" in out and "Top of the worklist" in out
    for name in ("scores.nc", "worklist.csv", "figure4_alarms_vs_quality.png"):
        assert (tmp_path / "demo" / name).is_file()


def test_parser_lists_commands():
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


# ---------------------------------------------------------------- 2-D cohorts and the new options (issue 13)

BU_BIL = SHARED / "data" / "bu-bil-fibroblasts"


@pytest.mark.parametrize(("command", "options"), [
    ("score", ["--similarity", "leave-one-out", "--pairwise", "PNG", "px", "crowd_mturk_annotation3"]),
    ("sweep", ["--pool", "{algorithm,all}"]),
    ("worklist", ["--pool", "{algorithm,all}"]),
    ("app", ["--pool", "{algorithm,all}"]),
])
def test_help_names_the_new_options(command, options, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for option in options:
        assert option in out, option


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """A synthetic 2-D PNG cohort (kind='cells'), scored by the CLI with the default options."""
    root = tmp_path_factory.mktemp("cells")
    ensemble = qe_nb.synthetic_cohort(root / "cohort", kind="cells", n_cases=6, n_algorithms=4, seed=1)
    out = root / "s.nc"
    assert main(["score", str(root / "cohort"), "--masks", "{case}/{algorithm}.png", "--reference",
                 "{case}/reference.png", "--labels", "binary", "--out", str(out), "--quiet", "--jobs", "1"]) == 0
    return {"root": root, "ensemble": ensemble, "scores": out}


def test_score_2d_png_cohort_in_pixels(cells):
    scores = qe_nb.load_scores(cells["scores"])
    assert scores["similarity"].shape == (6, 4, 1, 2)
    assert scores.attrs["distance_units"] == "px"
    assert scores["metric"].attrs.get("units", None) is None  # the units are a coord along metric
    assert scores["units"].values.tolist() == ["1", "px"]
    expected = qe_nb.score(cells["ensemble"], metrics=("dice", "hd95"), n_jobs=1, progress=False)
    np.testing.assert_allclose(scores["similarity"].values, expected["similarity"].values)


@pytest.mark.parametrize(("options", "keywords"), [
    (["--similarity", "leave-one-out"], {"similarity": "leave-one-out"}),
    (["--pairwise"], {"pairwise": True}),
    (["--similarity", "fusion", "--pairwise"], {"pairwise": True}),
])
def test_score_similarity_and_pairwise_pass_through(cells, tmp_path, options, keywords):
    out = tmp_path / "s.nc"
    assert main(["score", str(cells["root"] / "cohort"), "--masks", "{case}/{algorithm}.png", "--reference",
                 "{case}/reference.png", "--labels", "binary", "--out", str(out), "--quiet", "--jobs", "1",
                 *options]) == 0
    got = qe_nb.load_scores(out)
    expected = qe_nb.score(cells["ensemble"], metrics=("dice", "hd95"), n_jobs=1, progress=False, **keywords)
    np.testing.assert_allclose(got["similarity"].values, expected["similarity"].values)
    assert got.attrs["similarity_mode"] == keywords.get("similarity", "fusion")
    assert ("pairwise" in got.data_vars) == keywords.get("pairwise", False)
    if "pairwise" in got.data_vars:
        np.testing.assert_allclose(got["pairwise"].values, expected["pairwise"].values)
    if "similarity" in keywords:  # leave-one-out differs from the full fusion
        default = qe_nb.load_scores(cells["scores"])
        assert not np.allclose(got["similarity"].values, default["similarity"].values, equal_nan=True)


@pytest.mark.parametrize(("argv", "match"), [
    (["score", "ROOT", "--similarity", "loo"], r"argument --similarity: invalid choice: 'loo' \(choose from '?fusion'?, '?leave-one-out'?\)"),
    (["sweep", "s.nc", "--pool", "members"], r"argument --pool: invalid choice: 'members' \(choose from '?algorithm'?, '?all'?\)"),
    (["worklist", "s.nc", "--pool", "case"], r"argument --pool: invalid choice: 'case'"),
    (["app", "s.nc", "--pool", "none"], r"argument --pool: invalid choice: 'none'"),
])
def test_new_options_refuse_unknown_values(argv, match, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: qe-nb")
    import re

    assert re.search(match, err), err


def test_sweep_and_worklist_pool_all(cells, tmp_path, capsys):
    scores = qe_nb.load_scores(cells["scores"])
    sim = scores["similarity"]
    quality = scores["quality"].sel(metric="dice").mean("label")
    for pool in ("algorithm", "all"):
        csv = tmp_path / f"sweep-{pool}.csv"
        assert main(["sweep", str(cells["scores"]), "--alphas", "0,0.5,1", "--pool", pool, "--csv", str(csv)]) == 0
        expected = qe_nb.sweep_table(sim, alphas=[0.0, 0.5, 1.0], quality=quality, pool=pool)
        pd.testing.assert_frame_equal(pd.read_csv(csv), expected, check_dtype=False)
        csv = tmp_path / f"worklist-{pool}.csv"
        assert main(["worklist", str(cells["scores"]), "--alpha", "0.5", "--pool", pool, "--csv", str(csv)]) == 0
        table = pd.read_csv(csv)
        expected = qe_nb.worklist(sim, 0.5, quality=quality, pool=pool)
        assert table["case"].tolist() == expected["case"].tolist()
        assert table["risk"].tolist() == expected["risk"].tolist()
    capsys.readouterr()
    # without --alpha, the entropy calibration pools as well
    assert main(["worklist", str(cells["scores"]), "--pool", "all", "--top", "2"]) == 0
    alpha = qe_nb.calibrate(sim, objective="entropy", pool="all")
    assert f"alpha calibrated by entropy: {alpha:.2f}" in capsys.readouterr().out


def test_app_passes_pool_to_the_app(cells, monkeypatch, capsys):
    import importlib.util
    import os

    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append(env))
    assert main(["app", str(cells["scores"]), "--pool", "all", "--port", "8899"]) == 0
    assert calls[0]["QE_NB_POOL"] == "all"
    assert main(["app", str(cells["scores"]), "--port", "8899"]) == 0
    assert calls[1]["QE_NB_POOL"] == "algorithm"


def test_score_bu_bil_pngs_end_to_end(tmp_path, capsys):
    """BU-BIL's 47 cell images from their PNG files: crowd workers against the gold standard, in px."""
    if not (BU_BIL / "m01" / "gold.png").is_file():
        pytest.skip(f"BU-BIL is not at {BU_BIL} (../shared is absent; set QE_NB_SHARED to point at it)")
    out = tmp_path / "s.nc"
    status = main(["score", str(BU_BIL), "--masks", "{case}/crowd_mturk_annotation3-{algorithm}.png",
                   "--reference", "{case}/gold.png", "--labels", "binary", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "47 cases x 7 algorithms" in text and "47 cases scored" in text
    scores = qe_nb.load_scores(out)
    assert scores.attrs["distance_units"] == "px" and scores["units"].values.tolist() == ["1", "px"]
    assert scores["similarity"].shape == (47, 7, 1, 2) and np.isfinite(scores["quality"].sel(metric="dice")).all()
    # each case.json records every crowd mask's Dice against the gold standard, computed when the
    # data set was prepared (not by qe_nb): the candidate quality of the CLI's cube agrees
    import json

    for case in ("m01", "m17", "m48"):
        record = json.loads((BU_BIL / case / "case.json").read_text())["dice_vs_gold"]
        got = scores["candidate_quality"].sel(case=case, label="foreground", metric="dice")
        for k in range(1, 8):
            assert float(got.sel(algorithm=str(k))) == pytest.approx(record[f"crowd_mturk_annotation3-{k}"], abs=5e-5)
    assert main(["worklist", str(out), "--alpha", "0.1", "--pool", "all", "--top", "3"]) == 0
    assert "reasons" in capsys.readouterr().out


# ------------------------------------------------------------------------------- issue 14


def test_sweep_takes_negative_alphas_as_in_the_readme(scored, capsys):
    """`qe-nb sweep scores.nc --alphas -1,0,0.1,1` (argparse alone: "expected one argument")."""
    assert main(["sweep", str(scored), "--alphas", "-1,0,0.1,1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["alpha", "entropy"])
    assert [line.split()[0] for line in lines[head + 1:head + 5]] == ["-1.00", "0.00", "0.10", "1.00"]
    assert main(["worklist", str(scored), "--alpha", "-0.5", "--top", "2"]) == 0
    assert main(["sweep", str(scored), "--alphas=-1,1"]) == 0
    with pytest.raises(SystemExit):
        main(["sweep", str(scored), "--alphas", "-x"])
    assert "argument --alphas: expected one argument" in capsys.readouterr().err


def test_terminal_output_fits_100_columns(scored, capsys):
    scores = qe_nb.load_scores(scored)
    assert main(["sweep", str(scored)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "--wide" in out and "3-4a" in out
    assert main(["sweep", str(scored), "--wide"]) == 0
    wide = capsys.readouterr().out
    n = scores["similarity"].sizes
    assert f"{n['algorithm'] * n['label'] * n['metric']}a" in wide
    assert main(["worklist", str(scored), "--alpha", "0", "--top", "0"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert re.search(r"; \+\d+ more", out)
    assert main(["worklist", str(scored), "--alpha", "0", "--top", "0", "--wide"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) > 100


def test_compact_sweep_sums_the_counts():
    from qe_nb.ui.terminal import compact_sweep

    table = pd.DataFrame({"alpha": [0.0, 1.0], "entropy": [1.0, 0.5],
                          **{f"{k}a": [k, 1] for k in range(19)}})
    small = compact_sweep(table)
    assert list(small.columns) == ["alpha", "entropy", "0a", "1a", "2a", "3-4a", "5-8a", "9-16a", "17-18a"]
    assert small.iloc[:, 2:].sum(axis=1).tolist() == table.iloc[:, 2:].sum(axis=1).tolist()
    assert small["9-16a"].tolist() == [sum(range(9, 17)), 8]


def test_app_checks_patterns_before_the_server_starts(scored, tmp_path, monkeypatch, capsys):
    import importlib.util
    import os

    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append(env))
    root = scored.parent / "cohort"
    status = main(["app", str(scored), "--ensemble", str(root), "--images", "{case}/img_{modality}.nii.gz"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and not calls
    assert err.startswith("qe-nb app: error:") and "\n" not in err
    assert "`images` pattern '{case}/img_{modality}.nii.gz'" in err
    assert main(["app", str(scored), "--images", "{case}/t1.nii.gz"]) == 2
    assert "--ensemble ROOT" in capsys.readouterr().err
    assert main(["app", str(tmp_path / "nope.nc")]) == 2
    assert "nope.nc" in capsys.readouterr().err
    assert main(["app", str(scored), "--ensemble", str(root), "--reference", "{case}/reference.nii.gz"]) == 0
    assert calls and calls[0]["QE_NB_REFERENCE"] == "{case}/reference.nii.gz"


def test_app_serves_without_tracebacks(scored):
    from qe_nb.ui.serve import voila_command

    argv, _ = voila_command(scored)
    assert "--VoilaConfiguration.show_tracebacks=False" in argv


def test_demo_shows_progress_while_writing(tmp_path, monkeypatch):
    seen = {}

    def fake(path, **kwargs):
        seen.update(kwargs)
        raise qe_nb.InputError("stop here")

    monkeypatch.setattr(qe_nb, "synthetic_cohort", fake)
    assert main(["demo", "--out", str(tmp_path / "d"), "--cases", "4"]) == 2
    assert seen["progress"] is True
    assert main(["demo", "--out", str(tmp_path / "d"), "--cases", "4", "--quiet"]) == 2
    assert seen["progress"] is False


def test_one_alpha_from_score_to_sweep_worklist_and_app(scored, tmp_path, monkeypatch, capsys):
    """`qe-nb score` stores the run's alpha; sweep, worklist and app use it and say so."""
    import importlib.util
    import os

    scores = qe_nb.load_scores(scored)
    assert scores.attrs["alpha_method"] == "entropy"
    run = qe_nb.run_alpha(scores)
    assert run.stored
    assert main(["worklist", str(scored), "--top", "3", "--csv", str(tmp_path / "w.csv")]) == 0
    out = capsys.readouterr().out
    assert f"α = {float(run.alpha):.2f} (calibrated by the entropy" in out and "stored with the scores" in out
    expected = qe_nb.worklist(scores["similarity"], run.alpha, quality=None)
    assert pd.read_csv(tmp_path / "w.csv")["case"].tolist()[:3] == expected["case"].tolist()[:3]
    assert main(["sweep", str(scored), "--alphas", "0,1"]) == 0
    assert f"α = {float(run.alpha):.2f}" in capsys.readouterr().out
    assert main(["worklist", str(scored), "--alpha", "0.5", "--top", "1"]) == 0
    assert "α = 0.50 (given with --alpha; the run's: α =" in capsys.readouterr().out
    # the app starts at the run's alpha and says where it comes from
    from qe_nb.ui.triage_app import TriageApp

    pytest.importorskip("ipywidgets")
    app = TriageApp(scored)
    assert app.alpha == pytest.approx(float(run.alpha)) and app.run_alpha == pytest.approx(float(run.alpha))
    assert "the run&#x27;s" in app.alpha_note.value and "stored with the scores" in app.alpha_note.value
    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append(env))
    assert main(["app", str(scored)]) == 0
    assert "QE_NB_ALPHA" not in calls[0]  # the app reads the stored alpha itself


def test_score_summarises_missing_candidates_and_exits_nonzero(tmp_path, capsys):
    """An nnU-Net-style layout with two candidate files missing: named at scoring time."""
    src = tmp_path / "src"
    qe_nb.synthetic_cohort(src, kind="lung", n_cases=4, n_algorithms=3, shape=(16, 24, 24), seed=2)
    root = tmp_path / "nnunet"
    for f in sorted(src.glob("*/*.nii.gz")):
        if f.name == "reference.nii.gz" or f.parent.name == "images":
            continue
        (root / f.stem.split(".")[0]).mkdir(parents=True, exist_ok=True)
        (root / f.stem.split(".")[0] / f"{f.parent.name}.nii.gz").write_bytes(f.read_bytes())
    algorithms = sorted(p.name for p in root.iterdir())
    (root / algorithms[0] / "case-001.nii.gz").unlink()
    (root / algorithms[1] / "case-002.nii.gz").unlink()
    argv = ["score", str(root), "--masks", "{algorithm}/{case}.nii.gz", "--labels", "binary",
            "--out", str(tmp_path / "s.nc"), "--quiet", "--jobs", "1"]
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 1
    assert "2 candidate file(s) missing in 2 of 4 case(s)" in captured.out
    assert "case-001" in captured.out and algorithms[0] in captured.out
    assert "--allow-missing" in captured.err
    assert main([*argv, "--allow-missing"]) == 0
    assert "missing: 2 candidate file(s)" in capsys.readouterr().out


def test_worklist_into_a_closed_pipe_is_not_an_error(scored):
    """`qe-nb worklist s.nc | head -1`: the reader leaves early; no BrokenPipeError traceback.

    The read end is closed before the command writes anything, so its first write fails."""
    proc = subprocess.Popen([sys.executable, "-m", "qe_nb.cli", "worklist", str(scored), "--wide"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_fetch_takes_an_overall_timeout_and_a_stall_rule(monkeypatch, capsys):
    import qe_nb

    seen = {}

    def fake_fetch(name, **kw):
        seen.update(kw)
        return "/tmp/x"

    monkeypatch.setattr(qe_nb, "fetch_dataset", fake_fetch)
    assert main(["fetch", "brats-example", "--timeout", "12.5", "--stall", "3"]) == 0
    assert seen["timeout"] == 12.5 and seen["stall"] == 3.0
    assert main(["fetch", "brats-example"]) == 0
    assert seen["timeout"] == 1800.0 and seen["stall"] == 60.0

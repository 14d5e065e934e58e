"""The qe-nb command: help on every command, one-line errors, end-to-end runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import qe_nb
from qe_nb.cli import build_parser, main

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

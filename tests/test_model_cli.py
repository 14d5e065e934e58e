"""``qe-nb fit`` and ``qe-nb assess`` (issue 16), run in-process through ``qe_nb.cli.main``."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

import qe_nb
from qe_nb.cli import main
from qe_nb.cli.common import CommandError
from qe_nb.cli.model import parse_alpha
from qe_nb.exceptions import UnreliableThresholdWarning
from qe_nb.pipeline.model import load_model

N_REF, N_NEW = 10, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A reference cohort's scores file and a folder of new cases (with their reference files)."""
    root = tmp_path_factory.mktemp("cli")
    ens = qe_nb.synthetic_cohort(root / "cohort", n_cases=N_REF + N_NEW, shape=(24, 28, 24), images=False, seed=3)
    cases = [str(c) for c in ens["case"].values]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableThresholdWarning)
        ref = qe_nb.score(ens, cases=cases[:N_REF], n_jobs=1, progress=False)
    qe_nb.save_scores(ref, root / "ref.nc")
    new_root = root / "incoming"
    for case in cases[N_REF:]:
        shutil.copytree(root / "cohort" / case, new_root / case)
    return root, ref, new_root, cases[N_REF:]


def _fit(setup, tmp_path, *extra):
    root, _, _, _ = setup
    out = tmp_path / "model.json"
    assert main(["fit", str(root / "ref.nc"), "--out", str(out), *extra]) == 0
    return out


def test_fit_writes_the_thresholds_of_qe_nb_thresholds(setup, tmp_path, capsys):
    _, ref, _, _ = setup
    path = _fit(setup, tmp_path, "--alpha", "0.25")
    out = capsys.readouterr().out
    assert f"fitted on {N_REF} reference cases" in out and "wrote " in out and "whole_tumor" in out
    model = load_model(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableThresholdWarning)
        expected = qe_nb.thresholds(ref, 0.25).transpose("algorithm", "label", "metric")
    np.testing.assert_array_equal(model.thresholds.values, expected.values)


def test_fit_per_label_alpha_entropy_and_pool(setup, tmp_path, capsys):
    path = _fit(setup, tmp_path, "--by", "label", "--alpha", "whole_tumor=0.1,tumor_core=-0.3,enhancing_tumor=0",
                "--pool", "all", "--quiet")
    model = load_model(path)
    assert model.alpha.sel(label="tumor_core").item() == -0.3 and model.pool == "all"
    assert "per label: whole_tumor 0.1, tumor_core -0.3, enhancing_tumor 0" in capsys.readouterr().out
    model = load_model(_fit(setup, tmp_path, "--alpha", "entropy", "--quiet"))
    assert model.alpha_method == "entropy"


@pytest.mark.parametrize("args, message", [
    (["--alpha", "high"], "--alpha must be a number, 'entropy' or group=value pairs; got 'high'"),
    (["--alpha", "whole_tumor=0.1"], "say which groups with --by"),
    (["--alpha", "nan"], "--alpha must be finite"),
    (["--by", "label", "--alpha", "whole_tumor=0.1"], "`alpha` has no value for label"),
    (["--mad-scale", "big"], "--mad-scale must be a number or 'normal'"),
])
def test_fit_errors_are_one_line(setup, tmp_path, capsys, args, message):
    root, _, _, _ = setup
    status = main(["fit", str(root / "ref.nc"), "--out", str(tmp_path / "m.json"), *args])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("qe-nb fit: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "m.json").exists()


def test_assess_json_lines_equal_the_api(setup, tmp_path, capsys):
    _, _, new_root, cases = setup
    path = _fit(setup, tmp_path, "--quiet")
    capsys.readouterr()
    status = main(["assess", str(new_root), "--model", str(path), "--json"])
    captured = capsys.readouterr()
    assert status == 0
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["case"] for r in lines] == cases
    assert "not read, not members of the model: files of ['reference']" in captured.err
    model = load_model(path)
    api = model.assess(qe_nb.open_ensemble(new_root, labels=model.scheme, reference="{case}/reference.nii.gz"))
    for record, risk, reasons in zip(lines, api["risk"].values, api["reasons"].values):
        assert set(record) == {"case", "risk", "percentile", "alarms", "reasons", "error", "model_sha256"}
        assert record["risk"] == int(risk) == sum(record["alarms"].values())
        assert "; ".join(record["reasons"]) == reasons
        assert record["error"] == "" and record["model_sha256"] == model.content_hash
    main(["assess", str(new_root), "--model", str(path), "--json", "--cases", cases[1], f"{cases[3]},{cases[0]}"])
    assert [json.loads(x)["case"] for x in capsys.readouterr().out.splitlines()] == [cases[0], cases[1], cases[3]]


def test_assess_table_and_exit_1_when_a_case_fails(setup, tmp_path, capsys):
    _, _, new_root, cases = setup
    path = _fit(setup, tmp_path, "--quiet")
    broken = tmp_path / "incoming"
    shutil.copytree(new_root, broken)
    (broken / cases[2] / "unet-a.nii.gz").write_bytes(b"\x00" * 10)
    capsys.readouterr()
    status = main(["assess", str(broken), "--model", str(path)])
    out = capsys.readouterr().out
    assert status == 1
    assert all(c in out for c in cases) and "percentile" in out
    assert "1 case(s) could not be assessed" in out
    status = main(["assess", str(broken), "--model", str(path), "--json"])
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert status == 1
    bad = next(r for r in records if r["case"] == cases[2])
    assert cases[2] in bad["error"] and "unet-a" in bad["error"] and bad["risk"] is None
    assert all(r["error"] == "" and r["risk"] is not None for r in records if r["case"] != cases[2])


def test_assess_refuses_other_labels_and_damaged_models(setup, tmp_path, capsys):
    _, _, new_root, _ = setup
    path = _fit(setup, tmp_path, "--quiet")
    capsys.readouterr()
    assert main(["assess", str(new_root), "--model", str(path), "--labels", "brats"]) == 2
    err = capsys.readouterr().err
    assert "qe-nb assess: error: the catalogue does not match the model: labels ['necrosis'" in err
    path.write_text(path.read_text().replace('"pool": "algorithm"', '"pool": "all"'))
    assert main(["assess", str(new_root), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"model file '{path}': its content does not match its content_sha256" in err


def test_parse_alpha():
    assert parse_alpha(" 0.1 ", None) == 0.1
    assert parse_alpha("a=1,b=2", "label") == {"a": 1.0, "b": 2.0}
    with pytest.raises(CommandError, match="is not group=number"):
        parse_alpha("a=1,b", "label")

"""The triage app over a watched stream: ``qe-nb app --db DB --model MODEL.json`` (issues 16 and 17).

A model is fitted on a small synthetic reference cohort, new cases are copied into a watched folder
and recorded by the real watcher (``--once``) in a real SQLite store; the app is built on that store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import warnings

import numpy as np
import pytest

import qe_nb
from qe_nb.exceptions import InputError
from qe_nb.pipeline.watch import stored_assessments, watch_folder
from qe_nb.store.review import ReviewStore

from .browser_util import chromium

pytest.importorskip("ipywidgets")
__all__ = ["chromium"]  # a fixture, imported for pytest


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """A model fitted on 12 synthetic lung cases and 8 new cases (another seed) to feed in."""
    from qe_nb.pipeline.model import fit

    root = tmp_path_factory.mktemp("stream")
    shape = dict(kind="lung", n_algorithms=3, shape=(16, 32, 32), images=False)
    reference = qe_nb.synthetic_cohort(root / "reference", n_cases=12, seed=1, **shape)
    scores = qe_nb.score(reference, progress=False, n_jobs=1)
    model = fit(scores, alpha=0.5)
    model_path = model.save(root / "model.json")
    fit(scores, alpha=0.25).save(root / "other.json")
    new = qe_nb.synthetic_cohort(root / "new", n_cases=8, seed=2, **shape)
    return {"model": model, "model_path": model_path, "other_path": root / "other.json", "scores": scores, "new": new, "source": root / "new",
            "cases": [str(c) for c in new["case"].values]}


def feed(cohorts, folder, cases) -> None:
    for case in cases:
        shutil.copytree(cohorts["source"] / case, folder / case)


def watch(cohorts, folder, db) -> None:
    with ReviewStore(db) as store:
        watch_folder(folder, cohorts["model"], store, settle=0, once=True, log=lambda line: None)


@pytest.fixture
def watched(cohorts, tmp_path):
    """Five cases watched into a fresh database (one of them with an unreadable member)."""
    folder, db = tmp_path / "incoming", tmp_path / "qe-nb.db"
    folder.mkdir()
    feed(cohorts, folder, cohorts["cases"][:5])
    (folder / cohorts["cases"][4] / "ADA.nii.gz").write_bytes(b"not an image")
    watch(cohorts, folder, db)
    return folder, db


def test_worklist_is_the_stored_assessments(cohorts, watched):
    from qe_nb.ui.stream_worklist import StreamTriageApp

    folder, db = watched
    model = cohorts["model"]
    app = StreamTriageApp(db, cohorts["model_path"], reviewer="ana", refresh=0)
    with ReviewStore(db) as store:
        rows = store.assessments(model.content_hash).set_index("case")
    table = app.worklist.set_index("case")
    assert sorted(table.index) == sorted(rows.index) == cohorts["cases"][:5]
    failed = cohorts["cases"][4]
    ok = [c for c in rows.index if c != failed]
    assert table.loc[ok, "risk"].tolist() == rows.loc[ok, "risk"].astype(int).tolist()
    assert table.loc[ok, "reasons"].tolist() == rows.loc[ok, "reasons"].tolist()
    # the frozen model, not the cohort at hand: the same as model.assess of those cases
    expected = model.assess(cohorts["new"], cases=ok)
    assert table.loc[ok, "risk"].tolist() == [int(expected["risk"].sel(case=c)) for c in ok]
    # a case the watcher could not assess is listed first, with its error as the reasons
    assert app.worklist["case"].iloc[0] == failed
    assert table.loc[failed, "risk"] == app.max_count and "not assessed" in table.loc[failed, "reasons"]
    assert "ADA" in table.loc[failed, "error"]
    ranks = app.worklist["risk"].tolist()
    assert ranks == sorted(ranks, reverse=True)
    # the rows' alarms are the stored ones
    stored = stored_assessments(rows.reset_index(), model)
    np.testing.assert_array_equal(app.stream.alarms.values, stored["alarms"].values)
    # the α line names the model; there is no α to move
    assert app.alpha_note.value.endswith("thresholds frozen by model.json (α = 0.5, fitted on 12 cases)</span>")
    assert app.alpha_slider.layout.display == "none" and app.alpha == 0.5
    with pytest.raises(InputError, match="thresholds frozen by model.json .* α cannot be changed"):
        app.set_alpha(0.1)
    assert "5 watched case(s)" in app.summary.value and "1 could not be assessed" in app.summary.value
    assert len(app.row_buttons) == 5 and app.row_buttons[0].description == failed


def test_a_verdict_lands_in_the_same_database(cohorts, watched):
    from qe_nb.ui.stream_worklist import StreamTriageApp

    _, db = watched
    app = StreamTriageApp(str(db), cohorts["model"], reviewer="ana", refresh=0)
    case = app.worklist["case"].iloc[1]
    app.select(case)
    app.record("needs correction", note="rim")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT \"case\", verdict, reviewer, note, model, alpha FROM qe_nb_verdicts").fetchall()
    assert rows == [(case, "needs correction", "ana", "rim", cohorts["model"].content_hash, 0.5)]
    assert app.worklist.set_index("case").loc[case, ["verdict", "reviewer"]].tolist() == ["needs correction", "ana"]
    again = StreamTriageApp(db, cohorts["model"], reviewer="ben", refresh=0)
    assert again.verdicts.set_index("case").loc[case, "verdict"] == "needs correction"


def test_a_newly_watched_case_appears_on_refresh(cohorts, watched):
    from qe_nb.ui.stream_worklist import StreamTriageApp

    folder, db = watched
    app = StreamTriageApp(db, cohorts["model"], reviewer="ana", refresh=0)
    app.select(app.worklist["case"].iloc[2])
    assert not app.stream.reload(), "nothing new"
    new = cohorts["cases"][5:7]
    feed(cohorts, folder, new)
    watch(cohorts, folder, db)
    assert set(new).isdisjoint(app.worklist["case"])
    app.reload()  # what the refresh button and the periodic refresh do
    assert set(new) <= set(app.worklist["case"]) and len(app.worklist) == 7
    assert len(app.row_buttons) == 7 and "7 watched case(s)" in app.summary.value
    assert "7 cases" in app.header.value
    with ReviewStore(db) as store:
        rows = store.assessments(cohorts["model"].content_hash).set_index("case")
    table = app.worklist.set_index("case")
    assert table.loc[new, "risk"].tolist() == rows.loc[new, "risk"].astype(int).tolist()
    app.select(new[0])
    assert app.case == new[0]


def test_the_case_viewer_shows_the_frozen_alarms_and_reads_new_cases(cohorts, watched):
    from qe_nb.ui.stream_worklist import StreamTriageApp

    folder, db = watched

    def catalogue():
        return qe_nb.open_ensemble(folder, masks="{case}/{algorithm}.nii.gz")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        app = StreamTriageApp(db, cohorts["model"], ensemble=catalogue(), catalogue=catalogue, refresh=0)
        ok = app.worklist[app.worklist["error"] == ""]["case"].iloc[0]
        app.select(ok)
        assert app.viewer.alarms.equals(app.stream.alarms)
        new = cohorts["cases"][7]
        feed(cohorts, folder, [new])
        watch(cohorts, folder, db)
        app.reload()
        app.select(new)  # arrived after the catalogue was read: read again
    assert app.viewer.case == new and app.viewer.alarms.equals(app.stream.alarms)
    assert int(app.viewer.alarms.sel(case=new).sum()) == int(app.worklist.set_index("case").loc[new, "risk"])


def test_an_empty_database_and_other_models_are_refused(cohorts, tmp_path):
    from qe_nb.ui.stream_worklist import StreamTriageApp

    with pytest.raises(InputError, match="holds no assessment for model.json .*run `qe-nb watch"):
        StreamTriageApp(tmp_path / "empty.db", cohorts["model_path"], refresh=0)


def test_a_model_with_alpha_per_label(cohorts, tmp_path):
    from qe_nb.pipeline.model import fit
    from qe_nb.ui.stream_worklist import StreamTriageApp

    model = fit(cohorts["scores"], alpha={"foreground": 0.25}, by="label")
    folder, db = tmp_path / "incoming", tmp_path / "q.db"
    folder.mkdir()
    feed(cohorts, folder, cohorts["cases"][:2])
    with ReviewStore(db) as store:
        watch_folder(folder, model, store, settle=0, once=True, log=lambda line: None)
    app = StreamTriageApp(db, model, reviewer="ana", refresh=0)
    assert app.stream.alpha_text == (f"thresholds frozen by the model sha256 {model.content_hash[:12]} "
                                     "(α per label: 0.25, fitted on 12 cases)")
    assert np.isnan(app.alpha)
    app.record("accept", case=app.worklist["case"].iloc[0])
    with ReviewStore(db) as store:
        assert store.current()["alpha"].isna().all()  # no one α to record; the model's hash is


def test_app_from_environment_serves_the_stream(cohorts, watched):
    from qe_nb.ui.serve import app_from_environment
    from qe_nb.ui.stream_worklist import StreamTriageApp

    _, db = watched
    app = app_from_environment({"QE_NB_MODEL": str(cohorts["model_path"]), "QE_NB_DB": str(db),
                                "QE_NB_REVIEWER": "ana", "QE_NB_REFRESH": "0", "QE_NB_ROWS": "3"})
    assert isinstance(app, StreamTriageApp) and app.reviewer == "ana" and len(app.row_buttons) == 3
    with pytest.raises(InputError, match="QE_NB_MODEL needs QE_NB_DB"):
        app_from_environment({"QE_NB_MODEL": str(cohorts["model_path"])})


def test_cli_app_serves_the_stream_or_fails_in_one_line(cohorts, watched, monkeypatch, capsys, tmp_path):
    from qe_nb import cli

    folder, db = watched
    calls = []
    monkeypatch.delenv("QE_NB_DB", raising=False)  # --db's default
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    model = str(cohorts["model_path"])
    assert cli.main(["app", "--db", str(db), "--model", model, "--ensemble", str(folder), "--port", "9003"]) == 0
    env = calls[0][2]
    assert env["QE_NB_MODEL"] == str(cohorts["model_path"].resolve()) and env["QE_NB_DB"] == str(db.resolve())
    assert "QE_NB_SCORES" not in env and "http://127.0.0.1:9003/ " in capsys.readouterr().out

    def fails(argv, words):
        assert cli.main(["app", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qe-nb app: error:") and words in err and len(err.strip().splitlines()) == 1, err

    empty = tmp_path / "empty.db"
    ReviewStore(empty).close()
    fails(["--db", str(empty), "--model", model], "holds no assessment made with")
    edited = tmp_path / "edited.json"
    edited.write_text(cohorts["model_path"].read_text().replace('"n_cases": 12', '"n_cases": 13', 1))
    fails(["--db", str(db), "--model", str(edited)], str(edited))  # its content hash no longer matches
    fails(["--db", str(db), "--model", str(cohorts["other_path"])], "it holds 5 of other models")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    fails(["--db", str(db), "--model", str(bad)], str(bad))
    fails(["--db", str(tmp_path / "none.db"), "--model", model], "does not exist")
    fails(["--model", model], "--model needs --db")
    fails(["--db", str(db), "--model", model, "--alpha", "0.2"], "--alpha: not with --model")
    fails([], "give a scores file")
    assert len(calls) == 1 and not (tmp_path / "none.db").exists()


# ------------------------------------------------------------------ in a real browser (optional)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::qe_nb.exceptions.UnreliableThresholdWarning")
def test_browser_worklist_of_a_watched_folder_grows_on_refresh(chromium, cohorts, watched, tmp_path):
    """`qe-nb app --db DB --model MODEL.json --ensemble FOLDER --refresh 2` in headless Chromium: the
    frozen α line, the stored risks, a verdict saved to the database, a newly watched case shown by
    the periodic refresh without a reload of the page."""
    import re
    import sys
    import tempfile
    from pathlib import Path

    from playwright.sync_api import expect

    from .browser_util import OFF_HOST, Server, free_port, jupyter_env, no_widget_errors

    folder, db = watched
    port = free_port()
    cmd = [sys.executable, "-m", "qe_nb.cli", "app", "--db", str(db), "--model", str(cohorts["model_path"]),
           "--ensemble", str(folder), "--port", str(port), "--refresh", "2", "--reviewer", "Ana"]
    server = Server(cmd, f"http://127.0.0.1:{port}/", jupyter_env(tmp_path / "jupyter"), tmp_path / "app.log",
                    port=port)
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        page.route(OFF_HOST, lambda route: route.abort())
        page.goto(f"http://127.0.0.1:{port}/", timeout=180_000)
        app = page.locator(".qe-triage-app")
        expect(app).to_be_visible(timeout=90_000)
        expect(app.locator(".qe-alpha-source")).to_have_text(
            "thresholds frozen by model.json (α = 0.5, fitted on 12 cases)")
        expect(app.locator(".qe-alpha-slider")).to_be_hidden()
        expect(app.locator(".qe-worklist").locator("xpath=..")).to_contain_text("top 5 of 5 cases")
        with ReviewStore(db) as store:
            rows = store.assessments(cohorts["model"].content_hash).set_index("case")
        case = next(c for c in rows.index if rows.loc[c, "risk"] > 0)
        row = app.locator(".qe-worklist-row", has=page.locator(".qe-worklist-case", has_text=re.compile(
            rf"^\W*{re.escape(case)}$")))
        expect(row.locator(".qe-risk")).to_have_text(re.compile(rf"^{int(rows.loc[case, 'risk'])} alarms?$"))
        row.locator(".qe-worklist-case").click()
        expect(app.locator(".qe-case-title")).to_have_text(case)
        app.locator(".qe-verdict-reject").click()
        expect(app.locator(".qe-verdict-status")).to_contain_text(f"saved: {case} → reject by Ana")

        new = cohorts["cases"][5]
        feed(cohorts, folder, [new])
        watch(cohorts, folder, db)
        expect(app.locator(".qe-worklist-case", has_text=new)).to_be_visible(timeout=20_000)  # no page reload
        expect(app.locator(".qe-worklist").locator("xpath=..")).to_contain_text("top 6 of 6 cases")
        no_widget_errors(page)
        shots = Path(os.environ.get("QE_NB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "qe_nb-screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "stream_app.png"), full_page=False)
    finally:
        context.close()
        server.stop()
    with ReviewStore(db) as store:
        current = store.current().set_index("case")
    assert current.loc[case, ["verdict", "reviewer", "model"]].tolist() == [
        "reject", "Ana", cohorts["model"].content_hash]

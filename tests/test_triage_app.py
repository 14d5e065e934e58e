"""The triage app without a browser: the verdict store, the app object, the Voila command."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import qe_nb
from qe_nb.exceptions import InputError
from qe_nb.store import ReviewStore
from qe_nb.ui.triage_app import (
    VERDICT_COLUMNS,
    VERDICTS,
    TriageApp,
    VerdictStore,
    alarm_colour,
    app_from_environment,
    default_database_path,
    default_verdicts_path,
    read_verdicts,
    record_verdict,
    voila_command,
    write_verdicts,
)

from .pg_server import postgres_server

pytest.importorskip("ipywidgets")
__all__ = ["postgres_server"]  # a fixture, imported for pytest


def fake_scores(n_cases: int = 12, *, seed: int = 5, quality: bool = True) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    dims = ("case", "algorithm", "label", "metric")
    values = np.empty((n_cases, 3, 2, 2))
    values[..., 0] = rng.uniform(0.5, 0.98, (n_cases, 3, 2))
    values[..., 1] = rng.uniform(1.0, 12.0, (n_cases, 3, 2))
    values[2, 1, 0, 1] = np.inf
    coords = {"case": [f"c{i:02d}" for i in range(n_cases)], "algorithm": ["a", "b", "c"],
              "label": ["wt", "tc"], "metric": ["dice", "hd95"],
              "higher_is_better": ("metric", [True, False])}
    ds = xr.Dataset({"similarity": xr.DataArray(values, dims=dims, coords=coords)})
    if quality:
        q = xr.DataArray(rng.uniform(0.3, 0.95, (n_cases, 2, 2)), dims=("case", "label", "metric"),
                         coords={k: coords[k] for k in ("case", "label", "metric")})
        ds["quality"] = q
    return ds


# ------------------------------------------------------------------------------- verdicts


def test_verdicts_round_trip_and_reload(tmp_path):
    path = tmp_path / "scores.verdicts.csv"
    store = VerdictStore(path)
    assert len(store) == 0 and not path.exists()
    store.record("c01", "accept")
    store.record("c02", "needs correction", note='edema, "too large"\nsecond line')
    store.record("c01", "reject", note="ünïcode")
    assert path.is_file()
    again = VerdictStore(path)
    assert again.verdicts[["case", "verdict", "note"]].values.tolist() == [
        ["c02", "needs correction", 'edema, "too large"\nsecond line'], ["c01", "reject", "ünïcode"]]
    assert again.as_dict() == {"c02": "needs correction", "c01": "reject"}
    assert again.get("c03") is None
    assert list(read_verdicts(path).columns) == list(VERDICT_COLUMNS)
    assert all(again.verdicts["recorded_at"].str.match(r"^\d{4}-\d\d-\d\dT"))


def test_verdicts_written_atomically(tmp_path, monkeypatch):
    """A failure during the write leaves the previous file intact and no temporary file."""
    path = tmp_path / "v.csv"
    store = VerdictStore(path)
    store.record("c01", "accept")
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        store.record("c02", "reject")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.csv"]
    assert store.as_dict() == {"c01": "accept"}  # memory follows the file


def test_default_verdicts_path():
    assert default_verdicts_path("/x/run.nc").name == "run.verdicts.csv"


@pytest.mark.parametrize(
    "text, match",
    [
        ("case,verdict\nc01,accept\n", r"lacks the column\(s\) \['note', 'recorded_at'\]"),
        ("case,verdict,note,recorded_at\nc01,maybe,,t\n",
         r"row 1 \(case 'c01'\): unknown verdict 'maybe'; expected one of \['accept'"),
        ("case,verdict,note,recorded_at\nc01,accept,,t\nc01,reject,,t\n",
         r"lists case\(s\) \['c01'\] more than once"),
        ('case,verdict,note,recorded_at\nc01,accept,"unclosed,t\n', r"could not be read as CSV"),
    ],
)
def test_bad_verdict_file(tmp_path, text, match):
    path = tmp_path / "v.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        read_verdicts(path)
    with pytest.raises(InputError, match=match):
        VerdictStore(path)


def test_bad_verdict_file_encoding_and_folder(tmp_path):
    path = tmp_path / "v.csv"
    path.write_bytes(b"case,verdict,note,recorded_at\nc01,accept,\xff\xfe,t\n")
    with pytest.raises(InputError, match="could not be read as CSV"):
        read_verdicts(path)
    with pytest.raises(InputError, match="is not a file"):
        read_verdicts(tmp_path)
    path.write_text("", encoding="utf-8")
    assert len(read_verdicts(path)) == 0


def test_record_verdict_errors(tmp_path):
    table = read_verdicts(tmp_path / "none.csv")
    with pytest.raises(InputError, match=r"Unknown `verdict` 'Accept'; expected one of \['accept', 'needs correction', 'reject'\]"):
        record_verdict(table, "c01", "Accept")
    with pytest.raises(InputError, match=r"`case` must be a non-empty str \(a case id\); got ''"):
        record_verdict(table, "", "accept")
    with pytest.raises(InputError, match=r"`note` must be a str; got int 3"):
        record_verdict(table, "c01", "accept", note=3)
    with pytest.raises(InputError, match=r"`verdicts` must be a DataFrame with the columns"):
        write_verdicts(tmp_path / "v.csv", pd.DataFrame({"case": ["c01"]}))
    bad = pd.DataFrame([["c01", "later", "", "t"]], columns=list(VERDICT_COLUMNS))
    with pytest.raises(InputError, match="Unknown `verdict` 'later'"):
        write_verdicts(tmp_path / "v.csv", bad)
    store = VerdictStore(tmp_path / "v.csv")
    with pytest.raises(InputError, match="Unknown `verdict` 'ok'"):
        store.record("c01", "ok")
    assert not (tmp_path / "v.csv").exists()


def test_alarm_colour_darkens_with_count():
    greys = [alarm_colour(c, 12)[0] for c in range(13)]
    assert greys[0] == "#eeeeee"
    brightness = [sum(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in greys[1:]]
    assert brightness == sorted(brightness, reverse=True)
    assert alarm_colour(1, 1) == ("#990000", "#ffffff")


# ------------------------------------------------------------------------------- the app


def _app(scores=None, **kwargs) -> TriageApp:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        return TriageApp(fake_scores() if scores is None else scores, **kwargs)


@pytest.fixture
def app(tmp_path):
    return _app(verdicts=tmp_path / "reviews.db", alpha=0.0, rows=5, reviewer="ana")


def _worklist(scores, alpha):
    quality = scores["quality"].sel(metric="dice").mean("label")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        return qe_nb.worklist(scores["similarity"], alpha, quality=quality)


@pytest.mark.parametrize("alpha", [-0.5, 0.0, 0.35, 1.2])
def test_alpha_change_worklist_equals_core(app, alpha):
    app.alpha_slider.value = alpha
    expected = _worklist(app.scores, alpha)
    pd.testing.assert_frame_equal(app.worklist.drop(columns=["verdict", "reviewer"]), expected)
    shown = [b.description.removeprefix("▶ ") for b in app.row_buttons]
    assert shown == expected["case"].head(5).tolist()
    n = int(qe_nb.alarms(app.similarity, alpha).sum())
    assert f"α = {alpha:.2f} · {n} alarms" in app.summary.value
    assert app.alpha_readout.value == f"<code>{alpha:.2f}</code>"


def test_calibrated_preset(tmp_path):
    scores = fake_scores()
    quality = scores["quality"].sel(metric="dice").mean("label")
    app = _app(scores, verdicts=tmp_path / "reviews.db")
    no_truth = _app(scores.drop_vars("quality"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        pearson = qe_nb.calibrate(scores["similarity"], objective="pearson", quality=quality)
        entropy = qe_nb.calibrate(scores["similarity"], objective="entropy")
    assert (app.calibration_objective, app.calibrated_alpha, app.alpha) == ("pearson", pearson, pearson)
    assert (no_truth.calibration_objective, no_truth.calibrated_alpha) == ("entropy", entropy)
    assert "qe_nb-reviews-" in no_truth.store.url  # a Dataset: a database for this session only
    assert "quality" not in no_truth.worklist
    app.alpha_slider.value = 2.0
    app.preset_button.click()
    assert app.alpha == pytest.approx(pearson)


def test_label_mean_and_notes(tmp_path):
    scores = fake_scores()
    scores["similarity"][:, 0, :, 0] = 0.9  # MAD 0: a note, not a stderr warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app = TriageApp(scores, alpha=0.0, label_mean=True, verdicts=tmp_path / "r.db")
    assert list(app.similarity["label"].values) == ["mean"]
    assert app.max_count == 3 * 1 * 2
    assert any("MAD of 0" in n for n in app.notes)
    assert "note(s) on the thresholds" in app.notes_html.value


def test_record_shows_and_saves_with_who_and_when(app, tmp_path):
    top = app.worklist["case"].iloc[0]
    app.row_buttons[0].click()
    assert app.case == top and app.row_buttons[0].description == f"▶ {top}"
    assert app.viewer is None  # no ensemble: no viewer, a hint instead
    assert "case viewer is off" in app.viewer_box.children[0].value
    app.note_text.value = "rim missed"
    app.verdict_buttons["needs correction"].click()
    history = ReviewStore(tmp_path / "reviews.db").history()
    assert history[["case", "verdict", "note", "reviewer"]].values.tolist() == [
        [top, "needs correction", "rim missed", "ana"]]
    assert history["alpha"].tolist() == [0.0] and history["seconds"].iloc[0] >= 0
    assert "saved: " + top in app.verdict_status.value and "by ana" in app.verdict_status.value
    assert "needs correction" in app.row_infos[0].value and "ana" in app.row_infos[0].value
    header = app.verdict_panel.case_header.value
    assert "verdict: <b class='qe-verdict-value'>needs correction</b> (rim missed)" in header
    assert "by ana, " in header and " UTC" in header
    assert "<td class='qe-history-reviewer'>ana</td>" in app.verdict_panel.history.value
    assert app.worklist.set_index("case").loc[top, ["verdict", "reviewer"]].tolist() == ["needs correction", "ana"]
    # a later verdict by someone else: the current one changes, the history keeps both
    again = _app(app.scores, verdicts=tmp_path / "reviews.db", alpha=0.0, rows=5, reviewer="ben")
    assert again.verdicts["verdict"].tolist() == ["needs correction"]
    assert "needs correction" in again.row_infos[0].value
    again.select(top)
    assert again.note_text.value == "rim missed"
    again.record("accept", note="")
    assert again.verdicts[["verdict", "reviewer"]].values.tolist() == [["accept", "ben"]]
    assert again.verdict_panel.history.value.count("<tr><td>") == 2
    assert [r["reviewer"] for r in again.store.history(top).to_dict("records")] == ["ana", "ben"]


def test_a_reviewer_is_required_before_a_verdict(tmp_path):
    app = _app(verdicts=tmp_path / "reviews.db", alpha=0.0, rows=5)
    hint = app.verdict_panel.hint
    assert app.reviewer == "" and "enter your name" in hint.value
    app.row_buttons[0].click()
    assert all(b.disabled for b in app.verdict_buttons.values())  # a case, but no name
    with pytest.raises(InputError, match="who is reviewing"):
        app.record("accept")
    assert len(app.store.history()) == 0
    field = app.verdict_panel.reviewer_text
    for typed in ("D", "Dr.", "Dr. ", "Dr. A", "  Dr. Ana  "):  # key by key, as typed in the page
        field.value = typed
        assert field.value == typed  # a trailing space stays while typing
    assert app.reviewer == "Dr. Ana" and hint.value == ""
    assert not any(b.disabled for b in app.verdict_buttons.values())
    app.verdict_buttons["accept"].click()
    assert app.store.history()["reviewer"].tolist() == ["Dr. Ana"]
    app.set_reviewer("")
    assert all(b.disabled for b in app.verdict_buttons.values())


def test_two_reviewers_see_each_other_after_a_reload(tmp_path):
    db = tmp_path / "reviews.db"
    ana = _app(verdicts=db, alpha=0.0, rows=12, reviewer="ana", refresh=0)
    ben = _app(verdicts=db, alpha=0.0, rows=12, reviewer="ben", refresh=0)
    cases = ana.worklist["case"].tolist()
    ana.select(cases[0])
    ben.select(cases[1])
    ana.record("reject", note="ana's")
    ben.record("accept", note="ben's")
    row = {c: i for i, c in enumerate(cases)}
    assert "accept" not in ana.row_infos[row[cases[1]]].value  # not read yet
    ana.reload()
    ben.desk.refresh_button.click()
    for app in (ana, ben):
        assert "reject" in app.row_infos[row[cases[0]]].value and "ana" in app.row_infos[row[cases[0]]].value
        assert "accept" in app.row_infos[row[cases[1]]].value and "ben" in app.row_infos[row[cases[1]]].value
        assert "2 reviewed" in app.worklist_view.caption.value
    # presence: each sees the case the other has open
    assert "open by ben" in ana.row_infos[row[cases[1]]].value
    assert "open by ana" in ben.row_infos[row[cases[0]]].value
    assert "open by" not in ana.row_infos[row[cases[0]]].value  # one's own case is not marked
    assert "read " in ana.desk.refresh_note.value


@pytest.mark.slow
def test_two_reviewers_on_postgresql(postgres_server):
    """The same reading room on a PostgreSQL database (a real server, started by the tests)."""
    url = postgres_server.new_database()
    ana = _app(verdicts=url, alpha=0.0, rows=12, reviewer="ana", refresh=0)
    ben = _app(verdicts=url, alpha=0.0, rows=12, reviewer="ben", refresh=0)
    assert ana.store.backend == "postgresql" and "qe-nb-test-pw" not in ana.store.url
    cases = ana.worklist["case"].tolist()
    ana.select(cases[0])
    ben.select(cases[1])
    ana.record("reject", note="ana's")
    ben.record("accept")
    ana.reload()
    assert "accept" in ana.row_infos[1].value and "ben" in ana.row_infos[1].value
    assert "open by ben" in ana.row_infos[1].value
    assert "qe-nb-test-pw" not in ana.widget.children[0].value  # the header shows the URL, masked
    assert sorted(ben.verdicts["reviewer"]) == ["ana", "ben"]


def test_the_app_says_how_well_the_risk_ranks_the_verdicts_so_far(app):
    from qe_nb.core.verdict_performance import verdict_performance

    assert app.desk.performance.value == ""  # no verdicts yet
    ranked = app.worklist["case"].tolist()
    for case in ranked[:3]:
        app.record("reject", case=case)
    for case in ranked[-4:]:
        app.record("accept", case=case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        counts = qe_nb.risk(qe_nb.alarms(app.similarity, app.alpha))
        frame = app.verdicts[["case", "verdict"]]
        expected = str(verdict_performance(counts, frame, n_boot=500))
    assert expected.startswith("your verdicts so far: risk AUROC") and "over 7 reviewed cases" in expected
    assert app.desk.performance.value == f"<span style='font-size:12px'>{expected}</span>"
    app.set_alpha(1.5)  # another α, another risk: the line follows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        moved = str(verdict_performance(qe_nb.risk(qe_nb.alarms(app.similarity, 1.5)), frame, n_boot=500))
    assert moved in app.desk.performance.value


def test_a_name_given_after_opening_a_case_marks_it_at_the_next_refresh(tmp_path):
    db = tmp_path / "reviews.db"
    ana = _app(verdicts=db, alpha=0.0, rows=12, refresh=0)
    ben = _app(verdicts=db, alpha=0.0, rows=12, reviewer="ben", refresh=0)
    top = ana.worklist["case"].iloc[0]
    ana.select(top)  # no name yet: nothing to tell the others
    ben.reload()
    assert "open by" not in ben.row_infos[0].value
    ana.set_reviewer("ana")
    ana.reload()  # the periodic refresh renews the presence of the open case
    ben.reload()
    assert "open by ana" in ben.row_infos[0].value


def test_periodic_refresh_in_the_kernels_event_loop(tmp_path):
    """In a kernel (an asyncio loop runs) the app reads the database every `refresh` seconds."""
    import asyncio
    import threading

    db = tmp_path / "reviews.db"

    async def session():
        app = _app(verdicts=db, alpha=0.0, rows=12, reviewer="ana", refresh=0.1)
        assert app.timer is not None
        top = app.worklist["case"].iloc[0]
        ReviewStore(db).record(top, "reject", reviewer="ben")  # another reviewer, another process
        for _ in range(100):
            await asyncio.sleep(0.05)
            if "reject" in app.row_infos[0].value:
                break
        app.close()
        return app

    def in_a_thread(call):
        # a thread of its own: a browser test earlier in the session (Playwright's sync API)
        # leaves an event loop marked as running in the main thread
        out = {}
        worker = threading.Thread(target=lambda: out.setdefault("value", call()))
        worker.start()
        worker.join()
        return out["value"]

    app = in_a_thread(lambda: asyncio.run(session()))
    assert "reject" in app.row_infos[0].value and "ben" in app.row_infos[0].value
    assert app.timer is None
    # no loop running: nothing to run on
    assert in_a_thread(lambda: _app(verdicts=db, refresh=5).timer) is None


def test_a_failed_save_is_shown_and_kept_until_a_retry_saves_it(app, monkeypatch):
    from qe_nb.store import StoreError

    top = app.worklist["case"].iloc[0]
    app.select(top)
    app.note_text.value = "rim missed"
    real = app.store.record
    monkeypatch.setattr(app.store, "record", lambda *a, **k: (_ for _ in ()).throw(
        StoreError("could not write to the database 'x.db': disk I/O error")))
    app.verdict_buttons["reject"].click()  # the button does not raise; the page says it
    status = app.verdict_status.value
    assert "not saved" in status and "color:#b00000" in status and "disk I/O error" in status
    assert "saved: " not in status
    assert app.session.pending["verdict"] == "reject" and app.session.pending["case"] == top
    assert app.verdict_panel.retry_button.layout.display is None  # shown
    assert "reject" not in app.row_infos[0].value
    with pytest.raises(StoreError, match="disk I/O error"):
        app.record("reject")
    # the panel keeps the note when the case is opened again
    app.select(app.worklist["case"].iloc[1])
    app.select(top)
    assert app.note_text.value == "rim missed"
    monkeypatch.setattr(app.store, "record", real)
    app.verdict_panel.retry_button.click()
    assert "saved: " + top in app.verdict_status.value and app.session.pending is None
    assert app.verdict_panel.retry_button.layout.display == "none"
    assert app.store.history()[["case", "verdict", "note"]].values.tolist() == [[top, "reject", "rim missed"]]
    assert "reject" in app.row_infos[0].value


def test_a_locked_database_fails_the_save_visibly_and_a_retry_saves_it(tmp_path):
    """A real failure: another process holds the database's write lock longer than the store waits."""
    import sqlite3

    db = tmp_path / "reviews.db"
    app = _app(verdicts=ReviewStore(db, timeout=0.3), alpha=0.0, rows=5, reviewer="ana", refresh=0)
    top = app.worklist["case"].iloc[0]
    app.select(top)
    app.note_text.value = "kept"
    blocker = sqlite3.connect(db, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        app.verdict_buttons["accept"].click()
        status = app.verdict_status.value
        assert "not saved" in status and "color:#b00000" in status and str(db) in status, status
        assert app.session.pending["verdict"] == "accept"
    finally:
        blocker.rollback()
        blocker.close()
    app.verdict_panel.retry_button.click()
    assert "saved: " + top in app.verdict_status.value
    assert app.store.history()[["case", "verdict", "note"]].values.tolist() == [[top, "accept", "kept"]]


def test_a_database_whose_folder_is_gone_fails_the_save_and_a_retry_saves_once_it_is_back(tmp_path):
    """SQLite would write into the removed file and lose the verdict with the process: refused instead."""
    folder = tmp_path / "share"
    folder.mkdir()
    app = _app(verdicts=folder / "reviews.db", alpha=0.0, rows=5, reviewer="ana", refresh=0)
    top = app.worklist["case"].iloc[0]
    app.select(top)
    (folder).rename(tmp_path / "moved")  # the share unmounted, the folder renamed...
    app.verdict_buttons["reject"].click()
    status = app.verdict_status.value
    assert "not saved" in status and "is gone" in status and "reviews.db" in status, status
    assert app.session.pending["verdict"] == "reject"
    (tmp_path / "moved").rename(folder)  # ...and back
    app.verdict_panel.retry_button.click()
    assert "saved: " + top in app.verdict_status.value
    assert ReviewStore(folder / "reviews.db").history()["verdict"].tolist() == ["reject"]
    # a new file in its place is another database: refused too
    (folder / "reviews.db").rename(tmp_path / "old.db")
    ReviewStore(folder / "reviews.db").close()
    with pytest.raises(qe_nb.QeNbError, match="was replaced by another file"):
        app.record("accept", case=top)


def test_a_failed_read_is_shown_and_the_last_read_kept(app, monkeypatch):
    from qe_nb.store import StoreError

    app.record("reject", case=app.worklist["case"].iloc[0])
    monkeypatch.setattr(app.store, "current", lambda: (_ for _ in ()).throw(StoreError("database is gone")))
    app.reload()
    assert "could not read the verdicts" in app.verdict_status.value and "database is gone" in app.verdict_status.value
    assert "reject" in app.row_infos[0].value


def test_old_verdict_csv_is_imported_once(tmp_path):
    scores_path = qe_nb.save_scores(fake_scores(), tmp_path / "scores.nc")
    old = tmp_path / "scores.verdicts.csv"
    write_verdicts(old, record_verdict(read_verdicts(old), "c03", "reject", note="old", recorded_at="2025-01-02T03:04:05+00:00"))
    first = _app(scores_path, alpha=0.0)
    assert first.imported == 1 and first.store.url.endswith("scores.reviews.db")
    assert (tmp_path / "scores.reviews.db").is_file()
    second = _app(scores_path, alpha=0.0)
    assert second.imported == 0
    assert second.verdicts[["case", "verdict", "note", "reviewer"]].values.tolist() == [["c03", "reject", "old", "imported"]]
    with pytest.warns(DeprecationWarning, match="imported into it"):
        third = TriageApp(scores_path, verdicts=old, alpha=0.0)
    assert third.imported == 0 and len(third.store.history()) == 1


def test_the_report_reads_the_review_database(tmp_path):
    from qe_nb.ui.report import report_html
    from qe_nb.ui.verdicts import verdicts_for_report

    scores_path = qe_nb.save_scores(fake_scores(), tmp_path / "scores.nc")
    assert verdicts_for_report(None, scores_path) == (None, "")
    assert verdicts_for_report(tmp_path / "none.db", scores_path) == (None, "")
    assert not (tmp_path / "none.db").exists()
    app = _app(scores_path, alpha=0.0, reviewer="<b>ana</b>")
    app.record("reject", case="c03", note="<img src=x onerror=alert(1)>")
    table, where = verdicts_for_report(None, scores_path)
    assert where.endswith("scores.reviews.db")
    assert table[["case", "verdict", "reviewer"]].values.tolist() == [["c03", "reject", "<b>ana</b>"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = report_html(scores_path, top=3)
    assert "<h2>Verdicts</h2>" in text and "1 verdict(s) from sqlite:///" in text
    assert "&lt;b&gt;ana&lt;/b&gt;" in text and "<img src=x" not in text and "<b>ana" not in text


def test_html_from_files_and_people_is_escaped(tmp_path):
    """A metric, a case id, a note and a reviewer holding markup are drawn as text."""
    evil = "<img src=x onerror=alert(1)>"
    scores = fake_scores()
    scores = scores.assign_coords(metric=["dice", evil], case=[f"c{i}" for i in range(11)] + [evil])
    scores = scores.assign_coords(higher_is_better=("metric", [True, False]))
    app = _app(scores, verdicts=tmp_path / "r.db", alpha=0.0, rows=12, reviewer=evil)
    app.select(evil)
    app.record("reject", note=evil)
    texts = [app.widget.children[0].value, app.verdict_status.value, app.verdict_panel.case_header.value,
             app.verdict_panel.history.value, *[i.value for i in app.row_infos]]
    assert any("&lt;img src=x onerror=alert(1)&gt;" in t for t in texts[:1])  # the metric in the header
    assert all("<img" not in t for t in texts)
    assert sum("&lt;img" in t for t in texts) >= 5


def test_app_errors(app, tmp_path):
    with pytest.raises(InputError, match=r"Unknown case 'nope'; the scores hold 12 case\(s\)"):
        app.select("nope")
    with pytest.raises(InputError, match="no case is open; pass `case=`"):
        app.record("accept")
    with pytest.raises(InputError, match="Unknown verdict 'fine'"):
        app.record("fine", case="c01")
    with pytest.raises(InputError, match=r"`alpha` must be a finite number; got nan"):
        app.set_alpha(float("nan"))
    with pytest.raises(InputError, match=r"`scores` must be a scores Dataset .* got int"):
        TriageApp(3)
    with pytest.raises(InputError, match=r"`rows` must be an integer >= 1; got 0"):
        TriageApp(fake_scores(), rows=0)
    with pytest.raises(InputError, match=r"`alpha` must be a finite number or None; got 'x'"):
        TriageApp(fake_scores(), alpha="x")
    with pytest.raises(InputError, match="`ensemble` must be None or the catalogue"):
        TriageApp(fake_scores(), ensemble=xr.Dataset())
    with pytest.raises(InputError, match="scores file .* does not exist"):
        TriageApp(tmp_path / "missing.nc")
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n", encoding="utf-8")
    with pytest.raises(InputError, match="bad.csv' lacks the column"):
        _app(verdicts=tmp_path / "r.db", import_csv=bad)
    with pytest.raises(InputError):
        _app(verdicts="mysql://nobody@nowhere/db")


# ------------------------------------------------------------------------------- with files


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from qe_nb.data.synth import IMAGES, MASKS, REFERENCE

    root = tmp_path_factory.mktemp("cohort")
    ensemble = qe_nb.synthetic_cohort(root / "cohort", kind="glioma", n_cases=6, n_algorithms=3,
                                      shape=(20, 24, 24), seed=3)
    scores = qe_nb.score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False)
    path = qe_nb.save_scores(scores, root / "scores.nc")
    env = {"QE_NB_SCORES": str(path), "QE_NB_ENSEMBLE_ROOT": str(root / "cohort"), "QE_NB_MASKS": MASKS,
           "QE_NB_REFERENCE": REFERENCE, "QE_NB_IMAGES": IMAGES}
    return {"root": root, "path": path, "scores": scores, "env": env}


def test_select_row_opens_viewer_and_alpha_follows(cohort):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        app = app_from_environment({**cohort["env"], "QE_NB_ALPHA": "0.1"})
        assert app.store.url == "sqlite:///" + str(default_database_path(cohort["path"]))
        assert app.alpha == 0.1
        second = app.worklist["case"].iloc[1]
        app.row_buttons[1].click()
        assert app.viewer.case == second and app.case == second
        assert app.viewer_box.children == (app.viewer.widget,)
        first = app.worklist["case"].iloc[0]
        app.row_buttons[0].click()
        assert app.viewer.case == first
        app.alpha_slider.value = 0.6
        expected = qe_nb.alarms(cohort["scores"]["similarity"], 0.6)
    assert app.viewer.alpha == 0.6
    assert bool((app.viewer.alarms == expected).all())
    assert "alarms (α = 0.60)" in app.viewer.scores_panel.outputs[0]["data"]["text/html"]


def test_app_from_environment_errors(cohort):
    with pytest.raises(InputError, match="QE_NB_SCORES is not set; start the app with `qe-nb app scores.nc`"):
        app_from_environment({})
    with pytest.raises(InputError, match="QE_NB_ALPHA must be a number; got 'high'"):
        app_from_environment({"QE_NB_SCORES": str(cohort["path"]), "QE_NB_ALPHA": "high"})
    with pytest.raises(InputError, match="QE_NB_ROWS must be an integer; got '2.5'"):
        app_from_environment({"QE_NB_SCORES": str(cohort["path"]), "QE_NB_ROWS": "2.5"})


def test_voila_command(cohort, tmp_path):
    argv, env = voila_command(cohort["path"], ensemble_root=cohort["root"] / "cohort", masks="{case}/{algorithm}.nii.gz",
                              alpha=0.25, rows=7, port=9123,
                              environ={"PATH": "/bin", "QE_NB_IMAGES": "leaked", "QE_NB_LABEL_MEAN": "1",
                                       "QE_NB_APP_TOKEN": "leaked", "QE_NB_DB": "leaked.db"})
    assert argv[1:3] == ["-m", "qe_nb.ui.voila_server"]
    assert argv[3].endswith(os.path.join("notebooks", "triage_app.ipynb"))
    assert "--Voila.ip=127.0.0.1" in argv and "--port=9123" in argv and "--no-browser" in argv
    assert "--VoilaConfiguration.show_tracebacks=False" in argv
    assert env["QE_NB_SCORES"] == str(cohort["path"].resolve())
    assert (env["QE_NB_ALPHA"], env["QE_NB_ROWS"], env["PATH"]) == ("0.25", "7", "/bin")
    for leaked in ("QE_NB_IMAGES", "QE_NB_LABEL_MEAN", "QE_NB_APP_TOKEN", "QE_NB_DB"):
        assert leaked not in env  # no leaks from outside
    with pytest.raises(InputError, match="scores file .* does not exist; write it with `qe-nb score`"):
        voila_command(tmp_path / "none.nc")
    with pytest.raises(InputError, match="`ensemble_root` .* is not a folder"):
        voila_command(cohort["path"], ensemble_root=tmp_path / "none")
    with pytest.raises(InputError, match=r"`port` must be an integer in 1..65535; got 70000"):
        voila_command(cohort["path"], port=70000)


def test_voila_command_for_a_team(cohort, tmp_path):
    url = "postgresql://qe:secret@db.example:5432/reviews"
    argv, env = voila_command(cohort["path"], host="0.0.0.0", port=9124, token="t0k", db=url,
                              verdicts=tmp_path / "old.csv", reviewer=" ana ", refresh=5,
                              allow_hosts=["reading-room.example"], environ={})
    assert "--Voila.ip=0.0.0.0" in argv
    assert not any("t0k" in a for a in argv)  # not on the command line, where `ps` shows it
    assert env["QE_NB_APP_TOKEN"] == "t0k" and env["QE_NB_APP_ALLOW_HOSTS"] == "reading-room.example"
    assert env["QE_NB_DB"] == url and env["QE_NB_VERDICTS"] == str((tmp_path / "old.csv").resolve())
    assert (env["QE_NB_REVIEWER"], env["QE_NB_REFRESH"]) == ("ana", "5.0")
    _, env = voila_command(cohort["path"], db=tmp_path / "r.db", environ={})
    assert env["QE_NB_DB"] == str((tmp_path / "r.db").resolve()) and "QE_NB_APP_TOKEN" not in env
    with pytest.raises(InputError, match="serving on '0.0.0.0' \\(not loopback\\) needs a token"):
        voila_command(cohort["path"], host="0.0.0.0")


def test_app_from_environment_takes_the_database_and_the_reviewer(cohort, tmp_path):
    from qe_nb.ui.serve import reviewer_from_environment

    env = {**cohort["env"], "QE_NB_DB": str(tmp_path / "team.db"), "QE_NB_REVIEWER": "ana",
           "QE_NB_REFRESH": "0"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        app = app_from_environment(env)
        by_url = app_from_environment({**env, "QUERY_STRING": "reviewer=Dr%20Ben&token=x"})
    assert app.store.url.endswith("team.db") and app.reviewer == "ana" and app.timer is None
    assert by_url.reviewer == "Dr Ben"
    assert reviewer_from_environment({"JUPYTERHUB_USER": "carla"}) == "carla"
    assert reviewer_from_environment({"QUERY_STRING": "reviewer=&token=x"}) == ""
    with pytest.raises(InputError, match="QE_NB_REFRESH must be a number; got 'often'"):
        app_from_environment({**env, "QE_NB_REFRESH": "often"})


def test_cli_app_execs_voila(cohort, monkeypatch, capsys, tmp_path):
    from qe_nb import cli

    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    status = cli.main(["app", str(cohort["path"]), "--ensemble", str(cohort["root"] / "cohort"),
                       "--port", "9001", "--alpha", "0.3"])
    assert status == 0 and len(calls) == 1
    path, argv, env = calls[0]
    assert "--port=9001" in argv and env["QE_NB_ALPHA"] == "0.3"
    assert env["QE_NB_ENSEMBLE_ROOT"] == str((cohort["root"] / "cohort").resolve())
    assert "QE_NB_APP_TOKEN" not in env  # loopback: no token unless asked
    assert "http://127.0.0.1:9001/ " in capsys.readouterr().out
    assert cli.main(["app", str(cohort["root"] / "none.nc")]) == 2
    assert "qe-nb app: error: scores file" in capsys.readouterr().err


def test_cli_app_for_a_team_prints_a_new_token(cohort, monkeypatch, capsys, tmp_path):
    from qe_nb import cli

    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    assert cli.main(["app", str(cohort["path"]), "--host", "0.0.0.0", "--port", "9002",
                     "--db", str(tmp_path / "team.db"), "--reviewer", "ana"]) == 0
    out = capsys.readouterr().out
    token = calls[0][2]["QE_NB_APP_TOKEN"]
    assert len(token) >= 40 and f":9002/?token={token} " in out
    assert calls[0][2]["QE_NB_REVIEWER"] == "ana" and (tmp_path / "team.db").is_file()
    assert cli.main(["app", str(cohort["path"]), "--host", "0.0.0.0", "--token", "mine"]) == 0
    assert calls[1][2]["QE_NB_APP_TOKEN"] == "mine" and "?token=..." in capsys.readouterr().out
    assert cli.main(["app", str(cohort["path"]), "--host", "0.0.0.0", "--token", ""]) == 2
    assert "needs a token" in capsys.readouterr().err
    assert cli.main(["app", str(cohort["path"]), "--db", "mysql://x@y/z"]) == 2
    assert "qe-nb app: error:" in capsys.readouterr().err
    assert len(calls) == 2


def test_notebook_builds_the_app_from_the_environment():
    import json

    from qe_nb.ui.triage_app import app_notebook

    cells = json.loads(app_notebook().read_text(encoding="utf-8"))["cells"]
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "app_from_environment()" in code and "display(app.widget)" in code
    assert "with " not in code.replace("without", "")  # no `with out:` while Voila runs the cell


def test_verdicts_constant():
    assert VERDICTS == ("accept", "needs correction", "reject")


# ------------------------------------------------------------------ pool= and units (issue 13)


def test_app_pool_all_follows_the_core():
    scores = fake_scores()
    sim = scores["similarity"]
    quality = scores["quality"].sel(metric="dice").mean("label")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        app = TriageApp(scores, alpha=0.2, pool="all")
        expected = qe_nb.worklist(sim, 0.2, quality=quality, pool="all")
        calibrated = float(qe_nb.calibrate(sim, objective="pearson", quality=quality, pool="all"))
        per_member = TriageApp(scores, alpha=0.2)
    assert app.pool == "all" and per_member.pool == "algorithm"
    assert app.worklist["case"].tolist() == expected["case"].tolist()
    assert app.worklist["risk"].tolist() == expected["risk"].tolist()
    assert app.calibrated_alpha == pytest.approx(calibrated)
    assert app.worklist["reasons"].tolist() != per_member.worklist["reasons"].tolist()
    header = app.widget.children[0].value
    assert "thresholds pooled over all members" in header
    assert "pooled" not in per_member.widget.children[0].value
    with pytest.raises(InputError, match=r"`pool` must be one of \['algorithm', 'all'\].* got 'members'"):
        TriageApp(scores, pool="members")


def test_app_header_names_the_distance_units():
    scores = fake_scores().assign_coords(units=("metric", ["1", "px"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        app = TriageApp(scores, alpha=0.2)
    assert "metrics dice, hd95 (px)" in app.widget.children[0].value


def test_pool_through_the_environment_and_voila_command(cohort, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.QeNbWarning)
        app = app_from_environment({"QE_NB_SCORES": str(cohort["path"]), "QE_NB_POOL": "all"})
    assert app.pool == "all"
    with pytest.raises(InputError, match=r"`pool` must be one of \['algorithm', 'all'\].* got 'any'"):
        app_from_environment({"QE_NB_SCORES": str(cohort["path"]), "QE_NB_POOL": "any"})
    _, env = voila_command(cohort["path"], pool="all", environ={"QE_NB_POOL": "leaked"})
    assert env["QE_NB_POOL"] == "all"
    _, env = voila_command(cohort["path"], environ={"QE_NB_POOL": "leaked"})
    assert "QE_NB_POOL" not in env
    with pytest.raises(InputError, match=r"`pool` must be one of \['algorithm', 'all'\].* got 'reader'"):
        voila_command(cohort["path"], pool="reader")


def test_error_html_is_one_escaped_line():
    from qe_nb.exceptions import InputError
    from qe_nb.ui.triage_app import error_html

    text = error_html(InputError("verdict file '<x>.csv' lacks the column(s)\nsecond line"))
    assert text.count("<p") == 1 and "second line" not in text
    assert "&lt;x&gt;.csv" in text and "InputError" in text and 'class="qe-error"' in text

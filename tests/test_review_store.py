"""The review store (issue 17) on SQLite and on a real PostgreSQL server, with the same tests.

Every test taking ``store`` or ``store_url`` runs twice: on a SQLite file in ``tmp_path`` and on a
new database of the session's PostgreSQL server (tests/pg_server.py; skipped without Debian's
``postgresql`` binaries unless ``QE_NB_REQUIRE_POSTGRES=1``). Several processes writing at once
and a writer killed with SIGKILL are real processes; run with ``-s`` to see the counts.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import qe_nb.store.schema as schema
from qe_nb.core.verdicts import VERDICTS
from qe_nb.exceptions import InputError, QeNbError
from qe_nb.store import (
    ASSESSMENT_COLUMNS,
    SCHEMA_VERSION,
    VERDICT_LOG_COLUMNS,
    ReviewStore,
    StoreError,
)

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["sqlite", "postgresql"]
TRICKY = [
    "<img src=x onerror=alert(1)>",
    "Ödem & Nekrose – “rim” <b>fett</b>",
    "肿瘤 🧠 עברית مرحبا",
    "e\u0301 (combining) \u200b zero-width",
    "line 1\nline 2\r\n\ttab",
    "'; DROP TABLE qe_nb_verdicts; --",
    '  padded "quotes" \\ backslash  ',
]


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "reviews.db")
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def store(store_url):
    with ReviewStore(store_url) as opened:
        yield opened


def _engine(url: str) -> sa.Engine:
    """A plain SQLAlchemy engine on the store's database, to look behind the store's back."""
    if "://" not in url:
        return sa.create_engine(f"sqlite:///{url}")
    return sa.create_engine(url.replace("postgresql://", "postgresql+pg8000://", 1))


# ----------------------------------------------------------------------------- verdicts


def test_record_returns_the_stored_row_and_history_gives_it_back(store):
    before = datetime.now(timezone.utc)
    row = store.record("case-01", "needs correction", reviewer="ana", note="edema too large", alpha=0.5,
                       model="ensemble-v3", scores_file=Path("/data/run1/scores.nc"), seconds=12.5)
    after = datetime.now(timezone.utc)
    assert set(row) == set(VERDICT_LOG_COLUMNS)
    assert isinstance(row["id"], int) and before <= row["recorded_at"] <= after
    assert row["recorded_at"].tzinfo is not None
    history = store.history()
    assert list(history.columns) == list(VERDICT_LOG_COLUMNS)
    assert str(history["recorded_at"].dtype).endswith("UTC]")
    got = history.iloc[0].to_dict()
    assert got["recorded_at"] == pd.Timestamp(row["recorded_at"])
    assert {k: got[k] for k in ("case", "verdict", "note", "reviewer", "alpha", "model", "scores_file", "seconds")} \
        == {"case": "case-01", "verdict": "needs correction", "note": "edema too large", "reviewer": "ana",
            "alpha": 0.5, "model": "ensemble-v3", "scores_file": "/data/run1/scores.nc", "seconds": 12.5}
    assert store.integrity_check() == "ok"


def test_optional_columns_are_missing_values_and_an_empty_store_has_typed_columns(store):
    empty = store.history()
    assert list(empty.columns) == list(VERDICT_LOG_COLUMNS) and len(empty) == 0
    assert list(store.current().columns) == list(VERDICT_LOG_COLUMNS)
    store.record("c", "accept", reviewer="ana")
    row = store.history().iloc[0]
    assert np.isnan(row["alpha"]) and np.isnan(row["seconds"]) and row["model"] is None
    assert empty["recorded_at"].dtype == store.history()["recorded_at"].dtype


def test_current_is_the_latest_verdict_per_case_and_the_log_keeps_every_verdict(store):
    store.record("a", "reject", reviewer="ana")
    store.record("b", "accept", reviewer="ana")
    store.record("a", "needs correction", reviewer="ben", note="second look")
    store.record("c", "accept", reviewer="ben")
    store.record("b", "reject", reviewer="ana")
    current = store.current()
    assert current[["case", "verdict", "reviewer"]].values.tolist() == [
        ["a", "needs correction", "ben"], ["c", "accept", "ben"], ["b", "reject", "ana"]]
    history = store.history()
    assert len(history) == 5 and history["id"].is_monotonic_increasing
    assert store.history("a")["verdict"].tolist() == ["reject", "needs correction"]
    assert store.history("nobody").empty
    # the same answer as pandas' own "last row per case" over the log
    expected = history.sort_values("id").groupby("case").tail(1).sort_values("id")
    assert current["id"].tolist() == expected["id"].tolist()


@pytest.mark.parametrize("statement", [
    "UPDATE qe_nb_verdicts SET verdict = 'accept'",
    "DELETE FROM qe_nb_verdicts",
])
def test_the_database_refuses_to_change_or_delete_a_recorded_verdict(store_url, statement):
    with ReviewStore(store_url) as store:
        store.record("c1", "reject", reviewer="ana")
    engine = _engine(store_url)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()
    with ReviewStore(store_url) as store:
        assert store.history()[["case", "verdict"]].values.tolist() == [["c1", "reject"]]


@pytest.mark.parametrize("text", TRICKY)
def test_strings_are_stored_verbatim(store_url, text):
    with ReviewStore(store_url) as store:
        store.record(text, "reject", reviewer=text, note=text, model=text, scores_file=text)
        store.mark_opened(text, reviewer=text)
        store.record_assessment(text, model_hash=text, risk=None, alarms=None, reasons=text, error=text,
                                source=text, result={text: text})
    with ReviewStore(store_url) as store:  # a new connection reads what was written
        row = store.current().iloc[0]
        assert [row[c] for c in ("case", "reviewer", "note", "model", "scores_file")] == [text] * 5
        assert {case: who for case, (who, _) in store.opened_by_others(reviewer="someone else").items()} \
            == {text: text}
        assessment = store.assessments().iloc[0]
        assert [assessment[c] for c in ("case", "model_hash", "reasons", "error", "source")] == [text] * 5
        assert assessment["result"] == {text: text}


@pytest.mark.parametrize("kwargs, match", [
    ({"verdict": "maybe"}, "Unknown `verdict` 'maybe'"),
    ({"verdict": "Accept"}, "Unknown `verdict`"),
    ({"verdict": None}, "Unknown `verdict`"),
    ({"reviewer": ""}, "`reviewer` must be a non-empty str"),
    ({"reviewer": "   "}, "`reviewer` must be a non-empty str"),
    ({"reviewer": None}, "`reviewer` must be a str"),
    ({"case": ""}, "`case` must be a non-empty str"),
    ({"case": 7}, "`case` must be a str"),
    ({"note": None}, "`note` must be a str"),
    ({"note": "a\x00b"}, "NUL character"),
    ({"note": "\ud800"}, "not valid Unicode"),
    ({"alpha": "0.5"}, "`alpha` must be a number"),
    ({"alpha": float("inf")}, "`alpha` must be finite"),
    ({"seconds": -1.0}, "`seconds` must be >= 0"),
])
def test_bad_arguments_raise_input_error_and_write_nothing(store, kwargs, match):
    args = {"case": "c1", "verdict": "accept", "reviewer": "ana", **kwargs}
    case, verdict = args.pop("case"), args.pop("verdict")
    with pytest.raises(InputError, match=match):
        store.record(case, verdict, **args)
    assert store.history().empty


def test_two_sessions_open_at_once_keep_each_others_verdicts(store_url):
    """The issue's first finding: with the CSV file, B (opened before A wrote) overwrote A's verdict."""
    with ReviewStore(store_url) as a, ReviewStore(store_url) as b:
        a.record("case-1", "accept", reviewer="ana")
        b.record("case-2", "reject", reviewer="ben")
        assert a.current()["case"].tolist() == ["case-1", "case-2"]
        assert b.current()["reviewer"].tolist() == ["ana", "ben"]


def test_threads_sharing_one_store_lose_nothing(store):
    from concurrent.futures import ThreadPoolExecutor

    def write(k: int) -> list[int]:
        return [store.record(f"t{k}-{i}", "accept", reviewer=f"r{k}")["id"] for i in range(25)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = [i for chunk in pool.map(write, range(8)) for i in chunk]
    assert len(set(ids)) == 200 and sorted(store.history()["id"]) == sorted(ids)


def _record_in_forked_child(store: ReviewStore, inherited) -> None:
    inherited.put(store._engine.pool.checkedin())  # noqa: SLF001 -- the parent's pooled connections
    store.record("from-the-child", "reject", reviewer="child")


def test_a_store_used_in_a_forked_child_opens_its_own_connections(store):
    store.record("before-fork", "accept", reviewer="parent")  # a pooled connection exists now
    assert store._engine.pool.checkedin() >= 1  # noqa: SLF001
    context = multiprocessing.get_context("fork")
    inherited = context.Queue()
    child = context.Process(target=_record_in_forked_child, args=(store, inherited))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert inherited.get(timeout=10) == 0  # the child did not reuse the parent's connection
    store.record("after-fork", "accept", reviewer="parent")  # the parent's connection still works
    assert store.history()["case"].tolist() == ["before-fork", "from-the-child", "after-fork"]
    assert store.integrity_check() == "ok"


def test_every_verdict_of_the_vocabulary_is_accepted(store):
    for i, verdict in enumerate(VERDICTS):
        store.record(f"c{i}", verdict, reviewer="ana")
    assert store.current()["verdict"].tolist() == list(VERDICTS)


# ----------------------------------------------------------------------------- opening, schema


def test_verdicts_survive_closing_and_reopening(store_url):
    with ReviewStore(store_url) as store:
        ids = [store.record(f"c{i}", "accept", reviewer="ana")["id"] for i in range(3)]
    with ReviewStore(store_url) as store:
        assert store.history()["id"].tolist() == ids


def test_a_newer_schema_version_is_refused_and_left_alone(store_url):
    ReviewStore(store_url).close()
    engine = _engine(store_url)
    with engine.begin() as conn:
        conn.execute(schema.VERSION_TABLE.insert().values(version=SCHEMA_VERSION + 98,
                                                          applied_at=datetime.now(timezone.utc)))
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 98}, newer than") as raised:
        ReviewStore(store_url)
    assert isinstance(raised.value, QeNbError)
    assert "qe_nb_test" in str(raised.value) or "reviews.db" in str(raised.value)  # names the database
    assert "qe-nb-test-pw" not in str(raised.value)  # never the password
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.VERSION_TABLE)).scalar() == 2
    engine.dispose()


def test_an_older_schema_is_migrated_step_by_step(store_url, monkeypatch):
    with ReviewStore(store_url) as store:
        store.record("c1", "accept", reviewer="ana")
    extra = sa.Table("qe_nb_extra_v2", sa.MetaData(), sa.Column("x", sa.Integer))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(schema.MIGRATIONS, 2, lambda conn: extra.create(conn))
    with ReviewStore(store_url) as store:
        assert store.history()["case"].tolist() == ["c1"]
    engine = _engine(store_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.select(schema.VERSION_TABLE.c.version).order_by("version")).scalars().all()
        assert versions == [1, 2] and sa.inspect(conn).has_table("qe_nb_extra_v2")
    engine.dispose()


def test_an_empty_file_becomes_a_new_store(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with ReviewStore(path) as store:
        store.record("c", "reject", reviewer="ana")
        assert len(store.history()) == 1 and store.backend == "sqlite"
        assert store.url == f"sqlite:///{path}"


@pytest.mark.parametrize("kind, match", [
    ("text file", "file is not a database"),
    ("directory", "is a directory"),
    ("missing folder", "folder .* does not exist"),
])
def test_a_path_that_is_no_database_raises_store_error_naming_it(tmp_path, kind, match):
    target = tmp_path / "reviews.db"
    if kind == "text file":
        target.write_text("case,verdict\nnot a database at all\n" * 20)
    elif kind == "directory":
        target.mkdir()
    else:
        target = tmp_path / "no-such-folder" / "reviews.db"
    with pytest.raises(StoreError, match=match) as raised:
        ReviewStore(target)
    assert str(target) in str(raised.value)


@pytest.mark.parametrize("change", ["folder removed", "file moved", "file replaced"])
def test_a_sqlite_file_gone_while_open_is_an_error_not_a_silent_loss(tmp_path, change):
    import shutil

    folder = tmp_path / "reviews"
    folder.mkdir()
    path = folder / "reviews.db"
    store = ReviewStore(path)
    store.record("c1", "accept", reviewer="ana")
    if change == "folder removed":
        shutil.rmtree(folder)
    elif change == "file moved":
        path.rename(tmp_path / "elsewhere.db")
    else:
        ReviewStore(tmp_path / "other.db").close()
        os.replace(tmp_path / "other.db", path)
    with pytest.raises(StoreError, match="is gone: the file was deleted, moved or replaced.*nothing was written"):
        store.record("c2", "reject", reviewer="ana")
    with pytest.raises(StoreError, match="nothing was read"):
        store.current()
    if change == "file moved":  # moved back (with its -wal beside it), the store works on as before
        (tmp_path / "elsewhere.db").rename(path)
        store.record("c3", "reject", reviewer="ana")
        assert store.history()["case"].tolist() == ["c1", "c3"]
    store.close()


@pytest.mark.parametrize("url", ["mysql://u:p@host/db", "postgresql://u:p@host:5432", "sqlite://", "", 42])
def test_a_bad_url_raises_input_error(url):
    with pytest.raises(InputError):
        ReviewStore(url)


def test_the_sqlite_file_uses_wal_full_sync_and_a_busy_timeout(tmp_path):
    with ReviewStore(tmp_path / "r.db", timeout=7.5) as store:
        with store._engine.connect() as conn:  # noqa: SLF001 -- the pragmas are the point here
            pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")}
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 7500, "foreign_keys": 1}


# ----------------------------------------------------------------------------- CSV


def _old_csv(path: Path) -> Path:
    """A verdict file as the single-user app writes it (qe_nb.ui.verdicts, the code being replaced)."""
    from qe_nb.ui.verdicts import read_verdicts, record_verdict, write_verdicts

    table = read_verdicts(path)
    table = record_verdict(table, "case-01", "reject", note="<b>rim</b>, “missed”",
                           recorded_at="2026-03-01T10:00:00+00:00")
    table = record_verdict(table, "case-02", "accept", recorded_at="2026-03-01T10:05:30+00:00")
    table = record_verdict(table, "Ödem 🧠", "needs correction", note="a\nb",
                           recorded_at="2026-03-01T11:00:00+01:00")
    write_verdicts(path, table)
    return path


def test_import_csv_reads_the_old_verdict_files_once(store, tmp_path):
    path = _old_csv(tmp_path / "scores.verdicts.csv")
    assert store.import_csv(path) == 3
    assert store.import_csv(path) == 0  # idempotent
    history = store.history()
    assert history[["case", "verdict", "note", "reviewer"]].values.tolist() == [
        ["case-01", "reject", "<b>rim</b>, “missed”", "imported"],
        ["case-02", "accept", "", "imported"],
        ["Ödem 🧠", "needs correction", "a\nb", "imported"]]
    assert history["recorded_at"].tolist() == [pd.Timestamp("2026-03-01T10:00:00Z"),
                                               pd.Timestamp("2026-03-01T10:05:30Z"),
                                               pd.Timestamp("2026-03-01T10:00:00Z")]
    # a later verdict in the app, then the same file again: still nothing added
    store.record("case-01", "accept", reviewer="ana")
    assert store.import_csv(path) == 0 and len(store.history()) == 4


@pytest.mark.parametrize("content, match", [
    ("case,verdict,note\nc1,accept,\n", r"lacks the column\(s\) \['recorded_at'\]"),
    ("case,verdict,note,recorded_at\nc1,maybe,,2026-01-01T00:00:00\n", r"row 1 \(case 'c1'\): Unknown `verdict`"),
    ("case,verdict,note,recorded_at\nc1,accept,,\n", "row 1.*empty time stamp"),
    ("case,verdict,note,recorded_at\nc1,accept,,t0\n", "row 1"),
    ("case,verdict,note,recorded_at\n,accept,,2026-01-01\n", "`case` must be a non-empty str"),
])
def test_import_csv_refuses_a_broken_file_and_adds_nothing(store, tmp_path, content, match):
    path = tmp_path / "bad.verdicts.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=match) as raised:
        store.import_csv(path)
    assert str(path) in str(raised.value)
    assert store.history().empty


@pytest.mark.parametrize("content", ["", "case,verdict,note,recorded_at\n"])
def test_import_csv_of_an_empty_file_adds_nothing(store, tmp_path, content):
    path = tmp_path / "empty.verdicts.csv"
    path.write_text(content)
    assert store.import_csv(path) == 0 and store.history().empty


def test_import_csv_of_a_missing_file_is_an_input_error(store, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        store.import_csv(tmp_path / "nothing.csv")


def test_export_csv_writes_the_history_atomically_and_imports_back(store, tmp_path, store_url):
    store.record("c1", "reject", reviewer="ana", note=TRICKY[0], alpha=0.25, seconds=3.0)
    store.record("c1", "accept", reviewer="ben", note=TRICKY[4], model="m", scores_file="/s.nc")
    target = tmp_path / "out.csv"
    target.write_text("old content")
    assert store.export_csv(target) == target
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".qe_nb-tmp")] == []
    frame = pd.read_csv(target, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(VERDICT_LOG_COLUMNS)
    assert frame["note"].tolist() == [TRICKY[0], TRICKY[4]]
    with ReviewStore(tmp_path / "copy.db") as copy:
        assert copy.import_csv(target) == 2 and copy.import_csv(target) == 0
        columns = [c for c in VERDICT_LOG_COLUMNS if c != "id"]
        pd.testing.assert_frame_equal(copy.history()[columns], store.history()[columns])


def test_export_csv_keeps_a_symlink_and_the_files_permissions(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    real = shared / "verdicts.csv"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "verdicts.csv"
    link.symlink_to(real)
    with ReviewStore(tmp_path / "r.db") as store:
        store.record("c1", "accept", reviewer="ana")
        assert store.export_csv(link) == link
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("id,case,verdict") and (real.stat().st_mode & 0o777) == 0o600


# ----------------------------------------------------------------------------- presence


def test_presence_tells_who_else_opened_which_case_recently(store):
    store.mark_opened("c1", reviewer="ana")
    store.mark_opened("c2", reviewer="ben")
    store.mark_opened("c2", reviewer="ana")
    assert set(store.opened_by_others(reviewer="ana")) == {"c2"}
    who, when = store.opened_by_others(reviewer="ana")["c2"]
    assert who == "ben" and isinstance(when, pd.Timestamp) and when.tzinfo is not None
    assert set(store.opened_by_others(reviewer="ben")) == {"c1", "c2"}
    assert store.opened_by_others(reviewer="carla", minutes=0.0) == {}
    time.sleep(0.05)
    store.mark_opened("c1", reviewer="ana")  # opening again moves the time, adds no row
    assert store.opened_by_others(reviewer="ben")["c1"][1] > when
    with pytest.raises(InputError):
        store.mark_opened("c1", reviewer="")


# ----------------------------------------------------------------------------- assessments


def test_an_assessment_is_written_once_per_case_and_model(store):
    result = {"risk": np.float32(0.25), "members": np.array([1, 2]), "label": "tumour"}
    assert store.record_assessment("c1", model_hash="m1", risk=0.7, alarms=np.int64(3), reasons="dice low",
                                   error="", result=result, source="/in/c1") is True
    assert store.record_assessment("c1", model_hash="m1", risk=0.1, alarms=0, reasons="", error="") is False
    assert store.record_assessment("c1", model_hash="m2", risk=None, alarms=None, reasons="",
                                   error="ImageReadError: truncated") is True
    assert store.record_assessment("c2", model_hash="m1", risk=float("nan"), alarms=0, reasons="", error="")
    assert store.assessed_cases() == {"c1", "c2"} and store.assessed_cases("m2") == {"c1"}
    assert store.assessed_cases("m3") == set()
    frame = store.assessments()
    assert list(frame.columns) == list(ASSESSMENT_COLUMNS) and len(frame) == 3
    first = frame.iloc[0]
    assert (first["risk"], first["alarms"], first["reasons"], first["source"]) == (0.7, 3, "dice low", "/in/c1")
    assert first["result"] == {"risk": 0.25, "members": [1, 2], "label": "tumour"}
    assert pd.isna(frame.iloc[1]["alarms"]) and frame.iloc[1]["result"] is None
    assert np.isnan(frame.iloc[2]["risk"])
    assert store.assessments("m2")["error"].tolist() == ["ImageReadError: truncated"]


def test_the_database_itself_refuses_a_second_assessment(store_url):
    ReviewStore(store_url).close()
    engine = _engine(store_url)
    row = {"case": "c1", "model_hash": "m", "assessed_at": datetime.now(timezone.utc), "reasons": "",
           "error": "", "source": ""}
    with engine.begin() as conn:
        conn.execute(schema.ASSESSMENTS_TABLE.insert().values(**row))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(schema.ASSESSMENTS_TABLE.insert().values(**row))
    engine.dispose()


# ----------------------------------------------------------------------------- processes at once


def _write_verdicts(url: str, worker: int, n: int, barrier) -> None:
    with ReviewStore(url) as store:
        barrier.wait()
        for i in range(n):
            store.record(f"w{worker}-case-{i:03d}", VERDICTS[i % 3], reviewer=f"reviewer-{worker}",
                         note=f"note {worker}/{i} {TRICKY[i % len(TRICKY)]}", seconds=float(i))


def _assess(url: str, worker: int, n: int, barrier, results) -> None:
    barrier.wait()  # open the new store at once too: the schema is created exactly once
    with ReviewStore(url) as store:
        written = [store.record_assessment(f"case-{i:03d}", model_hash="m", risk=worker / 10, alarms=worker,
                                           reasons=f"worker {worker}", error="") for i in range(n)]
    results.put(sum(written))


def _run_at_once(target, args_of, workers: int) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    processes = [context.Process(target=target, args=args_of(k, barrier, context)) for k in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * workers


@pytest.mark.slow
def test_four_processes_writing_50_verdicts_each_at_once_lose_nothing(store_url):
    workers, n = 4, 50
    ReviewStore(store_url).close()  # the schema exists before the race (creating it at once is tested below)
    started = time.perf_counter()
    _run_at_once(_write_verdicts, lambda k, barrier, _: (store_url, k, n, barrier), workers)
    seconds = time.perf_counter() - started
    with ReviewStore(store_url) as store:
        history = store.history()
        assert store.integrity_check() == "ok"
    writers = history.sort_values("id")["reviewer"]
    switches = int((writers != writers.shift()).sum()) - 1  # how interleaved the commits were
    print(f"\n{store.backend}: {workers} processes x {n} verdicts at once -> {len(history)} rows in the history, "
          f"{history['id'].nunique()} distinct ids, {history['case'].nunique()} distinct cases, "
          f"{switches} switches between writers in commit order ({seconds:.1f} s with process start-up)")
    assert len(history) == workers * n
    assert history["id"].is_unique and history["case"].is_unique
    expected = {(f"w{k}-case-{i:03d}", VERDICTS[i % 3], f"reviewer-{k}",
                 f"note {k}/{i} {TRICKY[i % len(TRICKY)]}", float(i)) for k in range(workers) for i in range(n)}
    got = set(history[["case", "verdict", "reviewer", "note", "seconds"]].itertuples(index=False, name=None))
    assert got == expected  # every verdict present, none corrupted


@pytest.mark.slow
def test_processes_opening_a_new_store_and_assessing_the_same_cases_at_once_write_each_once(store_url):
    workers, n = 4, 20
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    _run_at_once(_assess, lambda k, barrier, _: (store_url, k, n, barrier, results), workers)
    written = [results.get(timeout=10) for _ in range(workers)]
    with ReviewStore(store_url) as store:
        frame = store.assessments()
    print(f"\n{store.backend}: {workers} processes assessing the same {n} cases at once -> "
          f"{len(frame)} rows, writes won per process {written}")
    assert sum(written) == n and len(frame) == n and frame["case"].is_unique


_KILLED_WRITER = textwrap.dedent("""
    import sys
    from qe_nb.store import ReviewStore
    store = ReviewStore(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        row = store.record(f"{sys.argv[2]}-{i:05d}", ("accept", "reject")[i % 2], reviewer="writer",
                           note="x" * (i % 700) + " <i>ü</i>")
        print(row["id"], flush=True)  # after the commit returned
        i += 1
""")


@pytest.mark.slow
@pytest.mark.parametrize("kill_after, delay", [(25, 0.0), (60, 0.003), (140, 0.011)])
def test_a_writer_killed_mid_write_leaves_a_sound_store_with_every_reported_verdict(store_url, kill_after, delay):
    ReviewStore(store_url).close()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, store_url, f"k{kill_after}"],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline().strip() == "ready"
    reported = []
    for line in writer.stdout:
        reported.append(int(line))
        if len(reported) >= kill_after:
            time.sleep(delay)  # lands at different points of the next record()s
            os.kill(writer.pid, signal.SIGKILL)
            break
    rest, _ = writer.communicate(timeout=30)
    reported += [int(line) for line in rest.split()]
    assert writer.returncode == -signal.SIGKILL
    with ReviewStore(store_url) as store:
        integrity = store.integrity_check()
        history = store.history()
        store.record("after-the-kill", "accept", reviewer="ana")  # and it can be written again
    print(f"\n{store.backend}: writer SIGKILLed after {len(reported)} reported commits; the store holds "
          f"{len(history)} verdicts; integrity_check: {integrity!r}")
    assert integrity == "ok"
    assert set(reported) <= set(history["id"])  # every verdict reported as committed is there
    assert len(history) - len(reported) in (0, 1)  # at most the one being written when killed
    assert all(note.endswith(" <i>ü</i>") for note in history["note"])

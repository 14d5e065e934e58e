"""qe-nb watch (issue 16): each new case assessed once, when complete; a killed watcher resumes.

The completeness rules are tested with a fake model and a fake store (both here, in the tests
only) and a fake clock; the end-to-end tests use a real model fitted on a synthetic reference
cohort and the real SQLite store, in process (``--once``) and as a subprocess killed with SIGKILL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from qe_nb.exceptions import EnsembleError, ImageReadError, InputError
from qe_nb.pipeline.watch import FolderWatcher, assessment_row, stored_assessments

MEMBERS = ("netA", "netB", "netC")


# ---------------------------------------------------------------------------- fakes (tests only)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class FakeModel:
    """Risk = the number of expected files present; every assess call is counted."""

    algorithms = MEMBERS
    scheme = "binary"
    content_hash = "fake-model-hash"

    def __init__(self, *, fail: BaseException | None = None, during=None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.during = during

    def assess(self, ensemble: xr.Dataset, *, cases=None) -> xr.Dataset:
        cases = [str(c) for c in ensemble["case"].values]
        self.calls.extend(cases)
        assert [str(a) for a in ensemble["algorithm"].values] == list(MEMBERS)
        if self.during is not None:
            self.during(cases[0])
        if self.fail is not None:
            raise self.fail
        present = (np.asarray(ensemble["mask"].values) != "").astype(float)  # case x algorithm
        sim = np.broadcast_to(present[:, :, None, None], (len(cases), len(MEMBERS), 1, 1))
        alarms = sim < 1
        return xr.Dataset(
            {
                "similarity": (("case", "algorithm", "label", "metric"), np.where(alarms, np.nan, 0.9)),
                "alarms": (("case", "algorithm", "label", "metric"), alarms),
                "risk": (("case",), alarms.sum(axis=(1, 2, 3)).astype(float)),
                "reasons": (("case",), np.array(["" if not a.any() else "netX missing" for a in alarms], object)),
                "percentile": (("case",), np.full(len(cases), 50.0)),
                "error": (("case",), np.array([""] * len(cases), object)),
            },
            coords={"case": cases, "algorithm": list(MEMBERS), "label": ["lesion"], "metric": ["dice"]},
        )


class FakeStore:
    """The two ReviewStore methods the watcher uses, with the (case, model_hash) uniqueness."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict] = {}

    def record_assessment(self, case, *, model_hash, risk, alarms, reasons, error, result=None, source=""):
        if (case, model_hash) in self.rows:
            return False
        self.rows[case, model_hash] = dict(risk=risk, alarms=alarms, reasons=reasons, error=error,
                                           result=result, source=source)
        return True

    def assessed_cases(self, model_hash=None):
        return {c for c, h in self.rows if model_hash is None or h == model_hash}


def write_case(root: Path, case: str, members=MEMBERS, payload: bytes = b"x" * 10) -> None:
    (root / case).mkdir(parents=True, exist_ok=True)
    for m in members:
        (root / case / f"{m}.nii.gz").write_bytes(payload)


def watcher(root: Path, model=None, store=None, **kw) -> tuple[FolderWatcher, FakeModel, FakeStore, FakeClock]:
    model = model or FakeModel()
    store = store if store is not None else FakeStore()
    clock = FakeClock()
    lines: list[str] = []
    w = FolderWatcher(root, model, store, settle=3.0, clock=clock, log=lines.append, **kw)
    w.lines = lines  # type: ignore[attr-defined]
    return w, model, store, clock


# ---------------------------------------------------------------------------- completeness


def test_half_written_case_is_not_assessed_until_complete_and_settled(tmp_path):
    write_case(tmp_path, "case-01", members=MEMBERS[:2])
    w, model, store, clock = watcher(tmp_path)
    assert w.scan() == []
    clock.tick(60)
    assert w.scan() == [], "two of three members, however long unchanged, are not a complete case"
    assert w.pending == ["case-01"]
    write_case(tmp_path, "case-01", members=MEMBERS[2:])
    assert w.scan() == [], "the last file just arrived"
    clock.tick(2.9)
    assert w.scan() == []
    clock.tick(0.2)
    assert w.scan() == ["case-01"]
    row = w.assess("case-01")
    assert row["recorded"] and row["risk"] == 0.0 and row["error"] == ""
    assert model.calls == ["case-01"]
    assert sorted(row["result"]["files"]) == list(MEMBERS) and row["result"]["missing"] == []


def test_a_file_still_changing_is_not_assessed(tmp_path):
    write_case(tmp_path, "c1")
    w, model, store, clock = watcher(tmp_path)
    w.scan()
    for size in range(11, 16):  # the writer appends every 2 s: never 3 s unchanged
        clock.tick(2.0)
        (tmp_path / "c1" / "netB.nii.gz").write_bytes(b"x" * size)
        assert w.scan() == []
    clock.tick(3.0)
    assert w.scan() == ["c1"]


def test_a_file_replaced_by_one_of_the_same_size_restarts_the_wait(tmp_path):
    write_case(tmp_path, "c1")
    w, model, store, clock = watcher(tmp_path)
    w.scan()
    clock.tick(2.5)
    tmp = tmp_path / "c1" / ".netA.nii.gz.part"
    tmp.write_bytes(b"y" * 10)
    os.replace(tmp, tmp_path / "c1" / "netA.nii.gz")  # same size, another inode
    assert w.scan() == []
    clock.tick(1.0)
    assert w.scan() == [], "the settle time counts from the replacement"
    clock.tick(2.5)
    assert w.scan() == ["c1"]


def test_a_complete_case_is_assessed_once_also_by_a_restarted_watcher(tmp_path):
    for case in ("a", "b"):
        write_case(tmp_path, case)
    store = FakeStore()
    model = FakeModel()
    summary = FolderWatcher(tmp_path, model, store, settle=0.0, log=lambda s: None).run(once=True)
    assert summary.assessed == ["a", "b"] and model.calls == ["a", "b"]
    # a second pass and a new watcher on the same store (a restart): nothing assessed again
    w = FolderWatcher(tmp_path, model, store, settle=0.0, log=lambda s: None)
    assert w.scan() == [] and w.run(once=True).assessed == []
    write_case(tmp_path, "c")
    assert w.run(once=True).assessed == ["c"]
    assert model.calls == ["a", "b", "c"]
    assert sorted(store.assessed_cases("fake-model-hash")) == ["a", "b", "c"]


def test_once_waits_one_settle_for_cases_it_sees_for_the_first_time(tmp_path):
    write_case(tmp_path, "a")
    model, store = FakeModel(), FakeStore()
    summary = FolderWatcher(tmp_path, model, store, settle=0.3, log=lambda s: None).run(once=True)
    assert summary.assessed == ["a"] and summary.pending == []


def test_other_files_are_ignored_and_missing_columns_filled(tmp_path):
    write_case(tmp_path, "a")
    (tmp_path / "a" / "reference.nii.gz").write_bytes(b"r")
    (tmp_path / "a" / "netZ.nii.gz").write_bytes(b"z")  # a member the model does not know
    (tmp_path / "a" / ".netA.nii.gz.part").write_bytes(b"p")
    write_case(tmp_path, "b", members=["netA"])
    w, model, store, clock = watcher(tmp_path)
    w.scan()
    clock.tick(5)
    assert w.scan() == ["a"]
    assert w.assess("a")["risk"] == 0.0


def test_one_folder_per_algorithm_and_long_reasons_shortened_in_the_log(tmp_path):
    for member in MEMBERS[:2]:
        (tmp_path / member).mkdir()
        (tmp_path / member / "c1.nii.gz").write_bytes(b"m")
    w, model, store, clock = watcher(tmp_path, masks="{algorithm}/{case}.nii.gz")
    w.scan()
    clock.tick(5)
    assert w.scan() == [] and w.pending == ["c1"]
    (tmp_path / "netC").mkdir()
    (tmp_path / "netC" / "c1.nii.gz").write_bytes(b"m")
    w.scan()
    clock.tick(5)
    assert w.scan() == ["c1"]
    row = w.assess("c1")
    assert row["result"]["files"]["netC"][0] == os.path.join("netC", "c1.nii.gz")
    row["reasons"] = "a; b; c; d; e"
    w._say("c1", row)
    assert w.lines[-1] == "assessed c1: risk 0, a; b; c; +2 more"


def test_a_case_missing_a_member_is_assessed_after_missing_after(tmp_path):
    write_case(tmp_path, "a", members=["netA", "netC"])
    w, model, store, clock = watcher(tmp_path, missing_after=30.0)
    w.scan()
    clock.tick(10)
    assert w.scan() == []
    clock.tick(25)
    assert w.scan() == ["a"]
    row = w.assess("a")
    assert row["result"]["missing"] == ["netB"] and row["risk"] == 1.0
    w._say("a", row)
    assert w.lines[-1].startswith("assessed a (without netB): risk 1")


def test_files_changed_during_the_assessment_are_not_recorded(tmp_path):
    write_case(tmp_path, "a")

    def rewrite(case):
        if len(model.calls) == 1:
            (tmp_path / case / "netC.nii.gz").write_bytes(b"longer than before")

    model = FakeModel(during=rewrite)
    w, _, store, clock = watcher(tmp_path, model=model)
    w.scan()
    clock.tick(3)
    assert w.scan() == ["a"]
    assert w.assess("a") is None and store.rows == {}
    assert "changed while it was assessed" in w.lines[-1]
    assert w.scan() == []
    clock.tick(3)
    assert w.scan() == ["a"] and w.assess("a")["recorded"]
    assert model.calls == ["a", "a"] and len(store.rows) == 1


def test_a_case_that_fails_is_recorded_with_its_error_and_not_retried(tmp_path):
    write_case(tmp_path, "bad")
    model = FakeModel(fail=ImageReadError("case 'bad', algorithm 'netB': not a NIfTI file"))
    w, _, store, clock = watcher(tmp_path, model=model)
    w.scan()
    clock.tick(3)
    row = w.assess(w.scan()[0])
    assert row["recorded"] and row["risk"] is None and row["alarms"] is None
    assert "netB" in row["error"] and "not a NIfTI file" in row["error"]
    stored = store.rows["bad", "fake-model-hash"]
    assert stored["error"] == row["error"] and stored["result"]["files"]
    write_case(tmp_path, "bad", payload=b"fixed")  # fixing the files does not assess it again
    clock.tick(10)
    assert w.scan() == [] and model.calls == ["bad"]


def test_warnings_of_the_scoring_are_logged_with_the_case_and_kept_in_the_row(tmp_path):
    import warnings

    from qe_nb.exceptions import LabelValueWarning

    write_case(tmp_path, "a")
    def warn(case):
        warnings.warn("1 file holds label values [7]", LabelValueWarning, stacklevel=2)

    model = FakeModel(during=warn)
    w, _, store, clock = watcher(tmp_path, model=model)
    w.scan()
    clock.tick(3)
    row = w.assess(w.scan()[0])
    w._say("a", row)
    assert row["result"]["warnings"] == ["1 file holds label values [7]"]
    assert w.lines == ["watch: a: warning: 1 file holds label values [7]", "assessed a: risk 0, no alarm"]
    assert store.rows["a", "fake-model-hash"]["result"]["warnings"] == row["result"]["warnings"]


def test_a_model_that_refuses_the_settings_stops_the_watcher(tmp_path):
    write_case(tmp_path, "a")
    model = FakeModel(fail=InputError("the ensemble's labels 'brats' differ from the model's 'binary'"))
    w, _, store, clock = watcher(tmp_path, model=model)
    w.scan()
    clock.tick(3)
    with pytest.raises(InputError, match="differ from the model"):
        w.assess(w.scan()[0])
    assert store.rows == {}


def test_a_case_recorded_by_another_watcher_meanwhile_is_not_recorded_twice(tmp_path):
    write_case(tmp_path, "a")
    store = FakeStore()
    w, model, _, clock = watcher(tmp_path, store=store)
    w.scan()
    clock.tick(3)
    assert w.scan() == ["a"]
    store.record_assessment("a", model_hash="fake-model-hash", risk=0.0, alarms=0, reasons="", error="")
    row = w.assess("a")
    assert row["recorded"] is False and len(store.rows) == 1
    w._say("a", row)
    assert "already in the store for this model (another watcher?)" in w.lines[-1]
    # a case another watcher recorded before this one found it ready is not assessed at all
    write_case(tmp_path, "b")
    w.scan()
    clock.tick(3)
    store.record_assessment("b", model_hash="fake-model-hash", risk=0.0, alarms=0, reasons="", error="")
    assert w.scan() == [] and model.calls == ["a"] and w.pending == []


def test_empty_folder_bad_pattern_and_missing_folder(tmp_path):
    w, model, store, clock = watcher(tmp_path)
    assert w.scan() == [] and w.pending == []
    with pytest.raises(EnsembleError, match="no {algorithm}"):
        FolderWatcher(tmp_path, FakeModel(), FakeStore(), masks="{case}/seg.nii.gz")
    with pytest.raises(EnsembleError, match="does not exist"):
        FolderWatcher(tmp_path / "nowhere", FakeModel(), FakeStore())
    with pytest.raises(InputError, match="`settle` must be a number of seconds >= 0; got -1"):
        FolderWatcher(tmp_path, FakeModel(), FakeStore(), settle=-1)
    with pytest.raises(InputError, match="`interval` must be a positive number"):
        w.run(interval=0)


def test_two_files_for_one_candidate_are_logged_once_and_do_not_stop_the_watcher(tmp_path):
    w, model, store, clock = watcher(tmp_path, masks="{case}/{algorithm}")
    write_case(tmp_path, "a")
    (tmp_path / "a" / "netA.nii").write_bytes(b"dup")
    assert w.scan() == [] and w.scan() == []
    assert len(w.lines) == 1 and "two files map to" in w.lines[0]
    (tmp_path / "a" / "netA.nii").unlink()
    w.scan()
    clock.tick(3)
    assert w.scan() == ["a"]


def test_stop_event_ends_the_loop(tmp_path):
    write_case(tmp_path, "a")
    stop = threading.Event()
    w = FolderWatcher(tmp_path, FakeModel(), FakeStore(), settle=0.0, log=lambda s: None)
    thread = threading.Thread(target=lambda: setattr(thread, "summary", w.run(interval=0.05, stop=stop)))
    thread.start()
    stop.set()
    thread.join(timeout=20)
    assert not thread.is_alive()


def test_assessment_row_words_and_json_values():
    model = FakeModel()
    ens = xr.Dataset({"mask": (("case", "algorithm"), np.array([["p", "", "p"]], object))},
                     coords={"case": ["c"], "algorithm": list(MEMBERS)})
    row = assessment_row(model.assess(ens), "c")
    assert row["risk"] == 1.0 and row["alarms"] == 1 and row["error"] == ""
    assert row["result"]["similarity"]["netB"]["lesion"]["dice"] is None
    assert row["result"]["similarity"]["netA"]["lesion"]["dice"] == 0.9
    assert row["result"]["alarm"]["netB"]["lesion"]["dice"] is True
    assert row["result"]["percentile"] == 50.0


def test_two_watchers_on_one_database_record_each_case_once(tmp_path):
    """Two watchers (two connections to one SQLite file) racing over the same ten cases."""
    from qe_nb.store.review import ReviewStore

    folder = tmp_path / "in"
    for i in range(10):
        write_case(folder, f"c{i}")
    models, summaries = [FakeModel(), FakeModel()], []

    def run(model):
        with ReviewStore(tmp_path / "qe-nb.db") as store:
            summaries.append(FolderWatcher(folder, model, store, settle=0.0, log=lambda s: None).run(once=True))

    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    with ReviewStore(tmp_path / "qe-nb.db") as store:
        rows = store.assessments("fake-model-hash")
    assert sorted(rows["case"]) == [f"c{i}" for i in range(10)]
    recorded = [c for s in summaries for c in s.assessed]
    assert sorted(recorded) == sorted(rows["case"]), "each case recorded by exactly one of the two"
    assert len(models[0].calls) + len(models[1].calls) == len(recorded) + sum(len(s.already) for s in summaries)


def test_stored_assessments_refuses_rows_of_another_model():
    class Model:
        thresholds = xr.DataArray(np.zeros((1, 1, 1)), dims=("algorithm", "label", "metric"),
                                  coords={"algorithm": ["netA"], "label": ["lesion"], "metric": ["dice"]})

    rows = pd.DataFrame({"case": ["a"], "risk": [0.0], "reasons": [""], "error": [""],
                         "result": [{"similarity": {"netQ": {"lesion": {"dice": 0.9}}}}]})
    with pytest.raises(InputError, match="case 'a': its stored similarity lacks 'netA'"):
        stored_assessments(rows, Model())
    with pytest.raises(InputError, match="must be ReviewStore.assessments"):
        stored_assessments(rows.drop(columns="result"), Model())
    rows["result"] = [{"similarity": {"netA": {"lesion": {"dice": "inf"}}}, "alarm": {"netA": {"lesion": {"dice": True}}}}]
    out = stored_assessments(rows, Model())
    assert float(out["similarity"].squeeze()) == np.inf and bool(out["alarms"].squeeze())


# ---------------------------------------------------------------------------- end to end: real model and store

FEED_CASES = 30


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """A model fitted on 20 synthetic lung cases, and 30 new cases (another seed) to feed in."""
    import qe_nb
    from qe_nb.pipeline.model import fit

    root = tmp_path_factory.mktemp("watch")
    shape = dict(kind="lung", n_algorithms=3, shape=(16, 32, 32), images=False)
    reference = qe_nb.synthetic_cohort(root / "reference", n_cases=20, seed=1, **shape)
    model = fit(qe_nb.score(reference, progress=False, n_jobs=1), alpha=0.5)
    model_path = model.save(root / "model.json")
    new = qe_nb.synthetic_cohort(root / "new", n_cases=FEED_CASES, seed=2, **shape)
    return {"model": model, "model_path": Path(model_path), "new": new, "source": root / "new"}


def feed_case(source: Path, folder: Path, case: str, *, slow: bool = False) -> None:
    """Copy one case's candidates (and its reference, which the watcher must ignore) into ``folder``:
    each file written under a hidden name and renamed into place, or (``slow``) written in two halves."""
    import time

    (folder / case).mkdir(parents=True, exist_ok=True)
    for file in sorted((source / case).iterdir()):
        data = file.read_bytes()
        target = folder / case / file.name
        if slow:
            with open(target, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(0.05)
                fh.write(data[len(data) // 2:])
        else:
            part = folder / case / f".{file.name}.part"
            part.write_bytes(data)
            os.replace(part, target)


def _assessed_lines(text: str) -> list[str]:
    import re

    return re.findall(r"^assessed (\S+?)(?: \(without [^)]*\))?: ", text, flags=re.M)


def test_watch_once_records_what_the_model_says_and_a_second_run_adds_nothing(cohorts, tmp_path, capsys):
    from qe_nb.cli import main
    from qe_nb.store.review import ReviewStore

    folder, db = tmp_path / "incoming", tmp_path / "qe-nb.db"
    cases = [str(c) for c in cohorts["new"]["case"].values]
    for case in cases[:10]:
        feed_case(cohorts["source"], folder, case)
    feed_case(cohorts["source"], folder, cases[10])
    (folder / cases[10] / "RAN.nii.gz").write_bytes(b"not an image")  # a bad file: recorded with its error
    argv = ["watch", str(folder), "--model", str(cohorts["model_path"]), "--db", str(db), "--settle", "0.2",
            "--once"]
    assert main(argv) == 1  # a case was recorded with an error
    err = capsys.readouterr().err
    assert sorted(_assessed_lines(err)) == cases[:11]
    assert "done; 11 case(s) assessed (1 with an error)" in err

    model = cohorts["model"]
    expected = model.assess(cohorts["new"], cases=cases[:10])
    with ReviewStore(db) as store:
        rows = store.assessments(model.content_hash).set_index("case")
    assert sorted(rows.index) == cases[:11]
    bad = rows.loc[cases[10]]
    assert "RAN" in bad["error"] and pd.isna(bad["alarms"]) and pd.isna(bad["risk"])
    for case in cases[:10]:
        row = rows.loc[case]
        assert row["error"] == ""
        assert row["risk"] == float(expected["risk"].sel(case=case))
        assert row["alarms"] == int(expected["alarms"].sel(case=case).sum())
        assert row["reasons"] == str(expected["reasons"].sel(case=case).values)
        assert row["source"] == str(folder)
        label = str(expected["label"].values[0])
        dice = expected["similarity"].sel(case=case, algorithm="ADA", label=label, metric="dice")
        assert row["result"]["similarity"]["ADA"][label]["dice"] == pytest.approx(float(dice))

    # drift from the store alone equals drift from model.assess (the error case is left out of both)
    stored = stored_assessments(rows.reset_index(), model)
    assert [str(c) for c in stored["case"].values] == sorted(cases[:11])
    pd.testing.assert_frame_equal(model.drift(stored), model.drift(expected))
    np.testing.assert_array_equal(stored["alarms"].sel(case=cases[:10]).values, expected["alarms"].values)

    with sqlite3.connect(db) as con:  # the triage app (and sqlite3) can read it while the watcher writes
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT count(*) FROM qe_nb_assessments").fetchone()[0] == 11

    assert main(argv) == 0, "nothing new: the error case is not retried"
    err = capsys.readouterr().err
    assert _assessed_lines(err) == [] and "11 case(s) already assessed" in err
    with ReviewStore(db) as store:
        assert len(store.assessments(model.content_hash)) == 11


def test_watch_with_labels_other_than_the_models_stops_with_the_difference(cohorts, tmp_path, capsys):
    from qe_nb.cli import main

    folder = tmp_path / "in"
    feed_case(cohorts["source"], folder, str(cohorts["new"]["case"].values[0]))
    argv = ["watch", str(folder), "--model", str(cohorts["model_path"]), "--db", str(tmp_path / "q.db"),
            "--settle", "0", "--once", "--labels", "brats"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "qe-nb watch: error: the catalogue does not match the model" in err
    assert "assessed" not in err.split("error:")[-1]


@pytest.mark.slow
def test_watch_killed_with_sigkill_and_restarted_assesses_every_case_once(cohorts, tmp_path):
    """The issue's must-show: SIGKILL halfway through 30 arriving cases, restart: 30 assessments, none twice."""
    import signal
    import subprocess
    import sys
    import time

    from qe_nb.store.review import ReviewStore

    folder, db = tmp_path / "incoming", tmp_path / "qe-nb.db"
    folder.mkdir()
    model = cohorts["model"]
    cases = [str(c) for c in cohorts["new"]["case"].values]
    assert len(cases) == FEED_CASES
    argv = [sys.executable, "-m", "qe_nb", "watch", str(folder), "--model", str(cohorts["model_path"]),
            "--db", str(db), "--settle", "1", "--interval", "0.2"]

    def start(name: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.stderr"
        with open(log, "w") as fh:
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=fh, cwd=tmp_path), log

    def recorded() -> set[str]:
        if not db.exists():
            return set()
        with ReviewStore(db) as store:
            return store.assessed_cases(model.content_hash)

    killed = threading.Event()

    def feed() -> None:
        for i, case in enumerate(cases):
            if i == 2 * FEED_CASES // 3:
                killed.wait(timeout=300)  # the rest arrive after the kill, however slow the machine
            feed_case(cohorts["source"], folder, case, slow=i % 3 == 0)
            time.sleep(0.3)

    feeder = threading.Thread(target=feed)
    t0 = time.monotonic()
    first, first_log = start("first")
    feeder.start()
    try:
        while len(recorded()) < FEED_CASES // 2:
            assert first.poll() is None, first_log.read_text()
            assert time.monotonic() - t0 < 300, f"the watcher recorded only {len(recorded())} cases"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        before = recorded()
        fed_at_kill = sum((folder / c).is_dir() for c in cases)
        killed.set()
        second, second_log = start("second")
        feeder.join(timeout=120)
        while len(recorded()) < FEED_CASES:
            assert second.poll() is None, second_log.read_text()
            assert time.monotonic() - t0 < 300, f"only {len(recorded())} cases recorded after the restart"
            time.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, second_log.read_text()
    finally:
        for process in (first, locals().get("second")):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        killed.set()
        feeder.join(timeout=120)

    with ReviewStore(db) as store:
        rows = store.assessments(model.content_hash)
        assert store.integrity_check() == "ok"
    first_lines, second_lines = _assessed_lines(first_log.read_text()), _assessed_lines(second_log.read_text())
    print(f"\nwatch kill test: {fed_at_kill} of {FEED_CASES} cases had arrived and {len(before)} were recorded "
          f"when the watcher was killed (SIGKILL); the restarted watcher assessed {len(second_lines)}; rows "
          f"{len(rows)}, distinct cases {rows['case'].nunique()}, errors {int((rows['error'] != '').sum())}; "
          f"{time.monotonic() - t0:.1f} s")
    assert 0 < len(before) < FEED_CASES and fed_at_kill < FEED_CASES, "the kill did not fall halfway"
    assert len(rows) == FEED_CASES and rows["case"].nunique() == FEED_CASES
    assert sorted(rows["case"]) == cases, "none missing"
    assert (rows["error"] == "").all() and rows["risk"].notna().all()
    assert set(first_lines) <= before, "a case the first watcher announced is in the store"
    assert sorted(second_lines) == sorted(set(cases) - before), "the restart assessed exactly the others"
    assert len(second_lines) == len(set(second_lines))
    assert "already in the store" not in second_log.read_text()
    assert "stopped; " in second_log.read_text()
    expected = model.assess(cohorts["new"])
    assert rows.set_index("case")["risk"].sort_index().tolist() == expected["risk"].sortby("case").values.tolist()

"""Scoring at scale: dask and local processes equal the serial path; interrupted runs resume.

The serial path (``n_jobs=1``) is the reference everywhere: a LocalCluster of two worker
processes, a local process pool, a run interrupted by Ctrl-C or SIGKILL and resumed from its
cache, and a run during which a worker is killed must all give the identical cube.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import qe_nb
from qe_nb.exceptions import InputError, QeNbError
from qe_nb.pipeline import runners
from qe_nb.pipeline.one_case import case_settings

distributed = pytest.importorskip("distributed")

METRICS = ("dice", "hd95", "hd")
N_CASES = 12


def _cluster(**config):
    import dask

    with dask.config.set(config):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=50,
        )
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Twelve small glioma-like cases with references (BraTS regions: three structures)."""
    root = tmp_path_factory.mktemp("cohort") / "glioma"
    return qe_nb.synthetic_cohort(root, n_cases=N_CASES, shape=(16, 24, 24), images=False, seed=3)


@pytest.fixture(scope="module")
def serial(cohort):
    return qe_nb.score(cohort, metrics=METRICS, n_jobs=1, progress=False)


@pytest.fixture(scope="module")
def client():
    cluster, client = _cluster()
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def force_processes(monkeypatch):
    """Make score() use its process pool even for a cohort this small; count its uses."""
    calls = []
    real = runners._run_processes

    def counting(*args, **kwargs):
        calls.append(args[3])
        yield from real(*args, **kwargs)

    monkeypatch.setattr(runners, "_PARALLEL_ABOVE_SECONDS", 0.0)
    monkeypatch.setattr(runners, "_run_processes", counting)
    return calls


def assert_same_cube(got, expected):
    for name in ("similarity", "quality", "candidate_quality", "error"):
        xr.testing.assert_identical(got[name], expected[name])
    assert got.attrs["n_failed_cases"] == 0


def _cached(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.npz"))


def _pool_processes() -> list:
    """Live processes of our local pool (not the module's dask workers)."""
    return [p for p in multiprocessing.active_children() if "Dask" not in p.name]


def _released(client) -> bool:
    """True once the scheduler holds no result of ours (releases reach it asynchronously)."""
    deadline = time.monotonic() + 30
    while client.who_has() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not client.who_has()


class _KillsItsWorker:
    """A job that kills the process that unpickles it: a pool worker dies on every attempt.

    (Not usable with dask, whose scheduler unpickles task arguments in the client's process.)
    """

    def __reduce__(self):
        return (os._exit, (1,))

    def __contains__(self, name):
        return False


# --------------------------------------------------------------------------- dask


def test_local_cluster_equals_serial(cohort, serial, client):
    scores = qe_nb.score(cohort, metrics=METRICS, client=client, progress=False)
    assert_same_cube(scores, serial)
    assert scores["similarity"].notnull().all()


def test_dask_keeps_a_bounded_window_of_tasks(cohort, serial, client):
    assert runners.client_threads(client) == 2  # default window: 4 x 2 threads
    pulled, in_flight = [], []

    def jobs():
        for i, case in enumerate(cohort.case.values):
            pulled.append(case)
            yield cohort.isel(case=[i]), str(case)

    settings = case_settings(cohort, "mav", METRICS, 1.0)
    results = {}
    for result in runners.run_dask(jobs(), settings, "record", client, window=3):
        in_flight.append(len(pulled) - len(results))
        results[result["case"]] = result
    assert max(in_flight) <= 3
    assert len(results) == N_CASES
    for case, result in results.items():
        np.testing.assert_array_equal(result["similarity"], serial["similarity"].sel(case=case).values)
    assert _released(client)  # every future released


def test_dask_interrupted_then_resumed_from_cache(cohort, serial, client, tmp_path):
    cache = tmp_path / "cache"
    done = []

    def stop_after_four(result):
        done.append(result["case"])
        if len(done) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        qe_nb.score(cohort, metrics=METRICS, client=client, cache=cache, progress=False,
                    callback=stop_after_four)
    assert len(_cached(cache)) == 4
    computed = []
    resumed = qe_nb.score(cohort, metrics=METRICS, client=client, cache=cache, progress=False,
                          callback=lambda r: computed.append(r["case"]))
    assert sorted(computed) == sorted(set(cohort.case.values) - set(done))
    assert_same_cube(resumed, serial)
    assert _released(client)  # the interrupted run's tasks were cancelled, not left behind


def test_dask_on_error_raise(cohort, client, tmp_path):
    ens = cohort.copy(deep=True)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    ens["mask"].loc[{"case": "case-005", "algorithm": "unet-a"}] = str(broken)
    recorded = qe_nb.score(ens, metrics=("dice",), client=client, progress=False)
    assert "case-005" in recorded["error"].sel(case="case-005").item()
    assert recorded.attrs["n_failed_cases"] == 1
    with pytest.raises(QeNbError, match="case-005"):
        qe_nb.score(ens, metrics=("dice",), client=client, progress=False, on_error="raise")


@pytest.mark.slow
def test_worker_killed_during_a_dask_run(cohort, serial):
    cluster, client = _cluster()
    try:
        killed = []

        def kill_a_worker(result):
            if not killed:
                pids = client.run(os.getpid)
                pid = sorted(pids.values())[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        scores = qe_nb.score(cohort, metrics=METRICS, client=client, progress=False,
                             callback=kill_a_worker)
        assert killed
        assert_same_cube(scores, serial)
        assert killed[0] not in client.run(os.getpid).values()
    finally:
        client.close()
        cluster.close()


def test_client_must_be_a_client(cohort):
    with pytest.raises(InputError, match=r"`client` must be a dask.distributed.Client .*got object"):
        qe_nb.score(cohort, client=object(), progress=False)


# --------------------------------------------------------------------------- local processes


def test_process_pool_equals_serial(cohort, serial, force_processes):
    scores = qe_nb.score(cohort, metrics=METRICS, n_jobs=2, progress=False)
    assert force_processes == [2]
    assert_same_cube(scores, serial)


def test_default_uses_every_core_but_small_cohorts_stay_here(cohort, serial, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for a cohort that is quicker to score here")

    monkeypatch.setattr(runners, "_run_processes", no_pool)
    few = ["case-000", "case-004", "case-007"]  # below runners._SERIAL_BELOW: never a pool
    scores = qe_nb.score(cohort, metrics=METRICS, cases=few, progress=False)  # n_jobs=None
    xr.testing.assert_identical(scores["similarity"], serial["similarity"].sel(case=few))
    # More cases, each quick: the first one, timed, says the rest is not worth a pool.
    monkeypatch.setattr(runners, "_PARALLEL_ABOVE_SECONDS", 1e9)
    assert_same_cube(qe_nb.score(cohort, metrics=METRICS, progress=False), serial)


@pytest.mark.slow
def test_process_pool_keeps_a_bounded_window(cohort, serial):
    pulled, in_flight, results = [], [], {}

    def jobs():
        for i, case in enumerate(cohort.case.values):
            pulled.append(case)
            yield cohort.isel(case=[i]), str(case)

    settings = case_settings(cohort, "mav", METRICS, 1.0)
    for result in runners._run_processes(jobs(), settings, "record", 2, window=3):
        in_flight.append(len(pulled) - len(results))
        results[result["case"]] = result
    assert max(in_flight) <= 3
    assert sorted(results) == sorted(cohort.case.values)


@pytest.mark.slow
def test_process_pool_interrupted_then_resumed(cohort, serial, force_processes, tmp_path):
    cache = tmp_path / "cache"
    done = []

    def stop_after_five(result):
        done.append(result["case"])
        if len(done) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        qe_nb.score(cohort, metrics=METRICS, n_jobs=2, cache=cache, progress=False,
                    callback=stop_after_five)
    assert len(_cached(cache)) == 5
    # The pool's workers stop: nothing keeps running after Ctrl-C.
    deadline = time.monotonic() + 30
    while _pool_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pool_processes()
    computed = []
    resumed = qe_nb.score(cohort, metrics=METRICS, n_jobs=2, cache=cache, progress=False,
                          callback=lambda r: computed.append(r["case"]))
    assert sorted(computed) == sorted(set(cohort.case.values) - set(done))
    assert_same_cube(resumed, serial)


@pytest.mark.slow
def test_worker_process_killed_during_a_run(cohort, serial, force_processes):
    killed = []

    def kill_a_worker(result):
        children = _pool_processes()
        if children and not killed:
            os.kill(children[0].pid, signal.SIGKILL)
            killed.append(children[0].pid)

    scores = qe_nb.score(cohort, metrics=METRICS, n_jobs=2, progress=False, callback=kill_a_worker)
    assert killed
    assert_same_cube(scores, serial)


@pytest.mark.slow
def test_a_case_that_keeps_killing_its_worker_is_recorded(cohort, serial):
    settings = case_settings(cohort, "mav", METRICS, 1.0)
    jobs = [(cohort.isel(case=[0]), "case-000"), (_KillsItsWorker(), "doomed")]
    results = {r["case"]: r for r in runners._run_processes(iter(jobs), settings, "record", 2)}
    assert results["doomed"]["error"] == (
        "case 'doomed': the worker process scoring it died 3 times (killed, out of memory or "
        "crashed); rerun to retry it."
    )
    np.testing.assert_array_equal(results["case-000"]["similarity"],
                                  serial["similarity"].sel(case="case-000").values)
    with pytest.raises(QeNbError, match="case 'doomed': the worker process scoring it died 3 times"):
        list(runners._run_processes(iter(jobs[1:]), settings, "raise", 2))


@pytest.mark.slow
def test_script_without_main_guard_scores_in_worker_processes(cohort, serial, tmp_path):
    """loky's workers never re-run the caller's script: an unguarded script is scored in the
    worker processes, with no fallback and no worker traceback (multiprocessing's spawned
    workers re-ran it and died at once, so score() used to fall back to scoring here)."""
    out = tmp_path / "scores.nc"
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import warnings, qe_nb
        from qe_nb.pipeline import runners
        runners._PARALLEL_ABOVE_SECONDS = 0.0
        ens = qe_nb.open_ensemble({cohort.attrs["root"]!r}, masks={cohort.attrs["masks"]!r},
                                  reference={cohort.attrs["reference"]!r}, labels="brats-regions")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            scores = qe_nb.score(ens, metrics={METRICS!r}, n_jobs=2, progress=False)
        print("WARNED", any("before returning a result" in str(w.message) for w in seen))
        qe_nb.save_scores(scores, {str(out)!r})
        """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNED False" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    back = qe_nb.load_scores(out)
    xr.testing.assert_equal(back["similarity"], serial["similarity"])


@pytest.mark.parametrize("n_jobs", [0, -1, 2.5, True, "2"])
def test_n_jobs_must_be_a_positive_integer(cohort, n_jobs):
    with pytest.raises(InputError, match=r"`n_jobs` must be a positive integer or None \(every core\); got "):
        qe_nb.score(cohort, n_jobs=n_jobs, progress=False)


# --------------------------------------------------------------------------- cache and resume


def test_serial_interrupted_then_resumed(cohort, serial, tmp_path):
    cache = tmp_path / "cache"
    done = []

    def stop_after_three(result):
        done.append(result["case"])
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        qe_nb.score(cohort, metrics=METRICS, n_jobs=1, cache=cache, progress=False,
                    callback=stop_after_three)
    computed = []
    resumed = qe_nb.score(cohort, metrics=METRICS, n_jobs=1, cache=cache, progress=False,
                          callback=lambda r: computed.append(r["case"]))
    assert sorted(computed) == sorted(set(cohort.case.values) - set(done))
    assert_same_cube(resumed, serial)


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_from_its_cache(cohort, serial, tmp_path):
    """A hard kill (no cleanup at all) loses nothing that finished; torn entries are recomputed."""
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import os, signal, qe_nb
        ens = qe_nb.open_ensemble({cohort.attrs["root"]!r}, masks={cohort.attrs["masks"]!r},
                                  reference={cohort.attrs["reference"]!r}, labels="brats-regions")
        done = []
        def die(result):
            done.append(result["case"])
            if len(done) == 6:
                os.kill(os.getpid(), signal.SIGKILL)
        qe_nb.score(ens, metrics={METRICS!r}, n_jobs=1, cache={str(cache)!r}, progress=False,
                    callback=die)
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    entries = _cached(cache)
    assert len(entries) == 6
    # A file torn by a crash of the disk or of another tool must not poison the rerun.
    entries[0].write_bytes(entries[0].read_bytes()[:50])
    (entries[1].parent / "unrelated.npz").write_bytes(b"not a zip")
    computed = []
    resumed = qe_nb.score(cohort, metrics=METRICS, n_jobs=1, cache=cache, progress=False,
                          callback=lambda r: computed.append(r["case"]))
    assert len(computed) == N_CASES - 6 + 1
    assert_same_cube(resumed, serial)
    assert not list(cache.rglob(".qe_nb-tmp-*"))


def test_changed_file_or_settings_are_recomputed(cohort, serial, tmp_path):
    cache = tmp_path / "cache"
    qe_nb.score(cohort, metrics=METRICS, n_jobs=1, cache=cache, progress=False)
    path = Path(cohort["mask"].sel(case="case-002", algorithm="unet-a").item())
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    computed = []
    again = qe_nb.score(cohort, metrics=METRICS, n_jobs=1, cache=cache, progress=False,
                        callback=lambda r: computed.append(r["case"]))
    assert computed == ["case-002"]
    assert_same_cube(again, serial)
    computed.clear()
    dice_only = qe_nb.score(cohort, metrics=("dice",), n_jobs=1, cache=cache, progress=False,
                            callback=lambda r: computed.append(r["case"]))
    assert len(computed) == N_CASES
    xr.testing.assert_identical(dice_only["similarity"], serial["similarity"].sel(metric=["dice"]))


def test_failed_cases_are_not_cached(cohort, tmp_path):
    ens = cohort.copy(deep=True)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    ens["mask"].loc[{"case": "case-001", "algorithm": "unet-a"}] = str(broken)
    cache = tmp_path / "cache"
    qe_nb.score(ens, metrics=("dice",), n_jobs=1, cache=cache, progress=False, cases=["case-000", "case-001"])
    assert len(_cached(cache)) == 1
    computed = []
    qe_nb.score(ens, metrics=("dice",), n_jobs=1, cache=cache, progress=False, cases=["case-000", "case-001"],
                callback=lambda r: computed.append(r["case"]))
    assert computed == ["case-001"]  # retried, since its failure may have been passing

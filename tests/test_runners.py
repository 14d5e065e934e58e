"""Local worker processes (loky): plain scripts, crash isolation, the fall-back to scoring here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

import qe_nb
from qe_nb.exceptions import QeNbError, QeNbWarning
from qe_nb.pipeline import runners
from qe_nb.pipeline.one_case import case_settings

METRICS = ("dice", "hd95")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("runners") / "glioma"
    return qe_nb.synthetic_cohort(root, n_cases=6, shape=(16, 24, 24), images=False, seed=5)


@pytest.fixture(scope="module")
def serial(cohort):
    return qe_nb.score(cohort, metrics=METRICS, n_jobs=1, progress=False)


class _KillsItsWorker:
    """A job that kills the process that unpickles it; scored here it is just a bad catalogue."""

    def __reduce__(self):
        return (os._exit, (1,))

    def __contains__(self, name):
        return False


@pytest.mark.slow
def test_plain_script_without_main_guard_runs_in_workers_quietly(cohort, serial, tmp_path):
    """A research script with no ``if __name__ == "__main__":``, run from a folder of its own
    (no qe_nb source next to it): the workers score the cases, nothing is printed on stderr."""
    folder = tmp_path / "analysis"
    folder.mkdir()
    out = folder / "scores.nc"
    (folder / "study.py").write_text(textwrap.dedent(f"""
        import multiprocessing
        import qe_nb
        from qe_nb.pipeline import runners

        runners._PARALLEL_ABOVE_SECONDS = 0.0  # this small cohort would otherwise stay here
        pools = []
        real = runners._run_processes
        def counting(*args, **kwargs):
            pools.append(args[3])
            yield from real(*args, **kwargs)
        runners._run_processes = counting

        workers = set()
        def note_workers(result):
            workers.update(p.pid for p in multiprocessing.active_children())

        ens = qe_nb.open_ensemble({cohort.attrs["root"]!r}, masks={cohort.attrs["masks"]!r},
                                  reference={cohort.attrs["reference"]!r}, labels="brats-regions")
        scores = qe_nb.score(ens, metrics={METRICS!r}, n_jobs=2, progress=False, callback=note_workers)
        print("POOLS", pools, "WORKERS", len(workers) > 0, "FAILED", scores.attrs["n_failed_cases"])
        qe_nb.save_scores(scores, {str(out)!r})
        """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "study.py"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "POOLS [2] WORKERS True FAILED 0" in proc.stdout, proc.stdout
    back = qe_nb.load_scores(out)
    for name in ("similarity", "quality", "candidate_quality"):
        xr.testing.assert_equal(back[name], serial[name])


def test_process_pool_equals_serial_case_by_case(cohort, serial):
    settings = case_settings(cohort, "mav", METRICS, 1.0)
    jobs = ((cohort.isel(case=[i]), str(c)) for i, c in enumerate(cohort.case.values))
    results = {r["case"]: r for r in runners._run_processes(jobs, settings, "record", 2, window=2)}
    assert sorted(results) == sorted(cohort.case.values)
    for case, result in results.items():
        np.testing.assert_array_equal(result["similarity"], serial["similarity"].sel(case=case).values)
        np.testing.assert_array_equal(result["quality"], serial["quality"].sel(case=case).values)


@pytest.mark.slow
def test_workers_that_never_return_fall_back_to_scoring_here(cohort, serial):
    """Pools that break before any result (here: every job kills its worker) three times in a
    row: the rest is scored in this process, with a warning, and nothing is lost."""
    settings = case_settings(cohort, "mav", METRICS, 1.0)
    jobs = [(_KillsItsWorker(), f"doomed-{i}") for i in range(3)] + [(cohort.isel(case=[0]), "case-000")]
    with pytest.warns(QeNbWarning, match=r"worker processes died 3 times before returning a result; "
                                         r"scoring the remaining cases in this process\. Pass n_jobs=1"):
        results = {r["case"]: r for r in runners._run_processes(iter(jobs), settings, "record", 2, window=3)}
    assert sorted(results) == ["case-000", "doomed-0", "doomed-1", "doomed-2"]
    np.testing.assert_array_equal(results["case-000"]["similarity"],
                                  serial["similarity"].sel(case="case-000").values)
    assert all(results[f"doomed-{i}"]["error"] for i in range(3))


@pytest.mark.slow
def test_a_case_that_kills_its_worker_raises_with_on_error_raise(cohort):
    settings = case_settings(cohort, "mav", METRICS, 1.0)
    with pytest.raises(QeNbError, match=r"case 'doomed': the worker process scoring it died 3 times \(killed, "
                                        r"out of memory or crashed\); rerun to retry it\."):
        list(runners._run_processes(iter([(_KillsItsWorker(), "doomed")]), settings, "raise", 2))


def test_run_local_stays_here_below_the_threshold(cohort, serial, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started")

    monkeypatch.setattr(runners, "_run_processes", no_pool)
    monkeypatch.setattr(runners, "_PARALLEL_ABOVE_SECONDS", 1e9)
    settings = case_settings(cohort, "mav", METRICS, 1.0)
    jobs = [(cohort.isel(case=[i]), str(c)) for i, c in enumerate(cohort.case.values)]
    results = list(runners.run_local(jobs, settings, "record", 2, len(jobs)))
    assert [r["case"] for r in results] == [str(c) for c in cohort.case.values]

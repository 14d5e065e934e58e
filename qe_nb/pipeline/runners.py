"""Where the cases of a run are scored: here, in local worker processes (loky), or on dask.

Every runner takes an iterator of ``(one-case catalogue, case id)`` jobs and yields one
result dict per case (see :func:`qe_nb.pipeline.one_case.score_case`), in any order. Jobs
are pulled only as slots free up, so memory is bounded by the window in flight, not by the
cohort; results never depend on where a case ran.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import xarray as xr

from qe_nb.exceptions import InputError, QeNbError, QeNbWarning
from qe_nb.pipeline.one_case import empty_result, score_case_safe

__all__ = ["run_local", "run_dask", "client_threads"]

Job = tuple[xr.Dataset, str]
Result = dict[str, Any]

_SERIAL_BELOW = 4
"""With fewer cases to compute than this, score here: starting processes costs more than it saves."""
_PARALLEL_ABOVE_SECONDS = 5.0
"""Start worker processes only when the rest of the cohort would take longer than this here.

A new worker imports numpy, SimpleITK, scipy and xarray before its first case (one to
several seconds); a cohort of small cases is done here sooner. The first case is scored here
and timed to estimate the rest."""
_MAX_ATTEMPTS = 3
"""A case whose worker dies this many times is recorded as an error (it may be what kills it)."""


def _worker_died(case: str, attempts: int, settings: dict, with_reference: bool, on_error: str) -> Result:
    message = (
        f"case {case!r}: the worker process scoring it died {attempts} times (killed, out of "
        "memory or crashed); rerun to retry it."
    )
    if on_error == "raise":
        raise QeNbError(message)
    return empty_result(case, settings, with_reference, message)


def _run_serial(jobs: Iterable[Job], settings: dict, on_error: str) -> Iterator[Result]:
    for cat, case in jobs:
        yield score_case_safe(cat, case, settings, on_error)


def run_local(
    jobs: Iterable[Job], settings: dict, on_error: str, n_jobs: int, n_todo: int
) -> Iterator[Result]:
    """Score here, or in ``n_jobs`` local processes when the cohort is worth their start-up.

    The first case is scored here and timed; processes start only when the remaining
    ``n_todo - 1`` cases would take longer than ``_PARALLEL_ABOVE_SECONDS`` here.
    """
    jobs = iter(jobs)
    if n_jobs > 1 and n_todo >= _SERIAL_BELOW:
        first = next(jobs, None)
        if first is None:
            return
        start = time.perf_counter()
        result = score_case_safe(first[0], first[1], settings, on_error)
        per_case = time.perf_counter() - start
        yield result
        if per_case * (n_todo - 1) > _PARALLEL_ABOVE_SECONDS:
            yield from _run_processes(jobs, settings, on_error, min(n_jobs, n_todo - 1))
            return
    yield from _run_serial(jobs, settings, on_error)


def _run_processes(
    jobs: Iterable[Job], settings: dict, on_error: str, n_jobs: int, *, window: int | None = None
) -> Iterator[Result]:
    """Score cases in ``n_jobs`` loky worker processes, at most ``window`` cases in flight.

    loky starts clean interpreters (it never re-runs the caller's script, so a script needs
    no ``if __name__ == "__main__":`` guard) and reports a worker that dies (SIGKILL, out of
    memory, a crash) as a broken pool. The cases in flight then run again on a fresh pool,
    one at a time, so that a case that kills its worker is found and recorded after
    ``_MAX_ATTEMPTS`` and the others are not blamed for it.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from loky import BrokenProcessPool, ProcessPoolExecutor

    window = max(int(window or 2 * n_jobs), 1)
    jobs = iter(jobs)
    suspects: deque[Job] = deque()  # lost with a broken pool; each reruns alone
    attempts: dict[str, int] = {}
    pending: dict[Any, Job] = {}
    barren = 0  # pools broken while none has ever returned a result
    returned = False
    pool = ProcessPoolExecutor(max_workers=n_jobs)

    def submit(job: Job) -> None:
        pending[pool.submit(score_case_safe, job[0], job[1], settings, on_error)] = job

    try:
        while True:
            if barren >= _MAX_ATTEMPTS and not returned:
                # Workers that die before any result cannot start at all: score here.
                pool.shutdown(wait=False, kill_workers=True)
                yield from _score_here(itertools.chain(suspects, jobs), settings, on_error, barren)
                return
            if suspects:
                if not pending:
                    submit(suspects.popleft())
            else:
                for job in itertools.islice(jobs, window - len(pending)):
                    submit(job)
            if not pending:
                return
            alone = len(pending) == 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                job = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:  # loky's TerminatedWorkerError is one
                    broken = True
                    if alone:
                        attempts[job[1]] = attempts.get(job[1], 0) + 1
                        if attempts[job[1]] >= _MAX_ATTEMPTS:
                            yield _worker_died(job[1], attempts[job[1]], settings, "reference" in job[0], on_error)
                            continue
                    suspects.append(job)
                    continue
                returned = True
                yield result
            if broken:
                barren += 1
                # The pool is unusable: every case still in flight is lost with it.
                suspects.extend(pending.values())
                pending.clear()
                pool.shutdown(wait=False, kill_workers=True)
                pool = ProcessPoolExecutor(max_workers=n_jobs)
    finally:
        # Stop the workers now (Ctrl-C, an error): nothing keeps running after the run.
        pool.shutdown(wait=False, kill_workers=True)


def _score_here(jobs: Iterator[Job], settings: dict, on_error: str, barren: int) -> Iterator[Result]:
    first = next(jobs, None)
    if first is None:
        return
    warnings.warn(
        f"worker processes died {barren} times before returning a result; scoring the "
        "remaining cases in this process. Pass n_jobs=1 to score here from the start.",
        QeNbWarning, stacklevel=5,
    )
    for job in itertools.chain([first], jobs):
        yield score_case_safe(job[0], job[1], settings, on_error)


def client_threads(client: Any) -> int:
    """The number of worker threads of a dask.distributed ``client``, or :class:`InputError`.

    Raises
    ------
    InputError
        When ``client`` is not a usable dask.distributed Client.
    """
    try:
        return int(sum(client.nthreads().values()))
    except Exception as exc:  # anything else is not a usable client
        raise InputError(
            "`client` must be a dask.distributed.Client (e.g. Client(LocalCluster()) or "
            f"Client('tcp://host:8786')); got {type(client).__name__} ({exc})."
        ) from None


def run_dask(
    jobs: Iterable[Job], settings: dict, on_error: str, client: Any, *, window: int | None = None
) -> Iterator[Result]:
    """Score cases as dask tasks, at most ``window`` (default 4x the cluster's threads) in flight.

    More tasks are submitted as results come back, so neither the scheduler nor this process
    holds the whole cohort. Dask reruns the tasks of a worker that dies; a case whose
    workers keep dying (``KilledWorker``) is recorded as an error.
    """
    import uuid

    from dask.distributed import as_completed as dask_as_completed
    from distributed.scheduler import KilledWorker

    if window is None:
        window = 4 * max(client_threads(client), 1)
    window = max(int(window), 1)
    run = uuid.uuid4().hex[:10]
    jobs = iter(jobs)
    pending: dict[Any, Job] = {}
    counter = itertools.count(1)

    def submit(job: Job) -> Any:
        fut = client.submit(
            score_case_safe, job[0], job[1], settings, on_error,
            key=f"qe-nb-score-{run}-{next(counter)}", pure=False, retries=0,
        )
        pending[fut] = job
        return fut

    queue = dask_as_completed()
    try:
        for job in itertools.islice(jobs, window):
            queue.add(submit(job))
        for fut in queue:
            job = pending.pop(fut)
            try:
                result = fut.result()
            except KilledWorker:
                result = _worker_died(job[1], _MAX_ATTEMPTS, settings, "reference" in job[0], on_error)
            fut.release()
            yield result
            for job in itertools.islice(jobs, 1):
                queue.add(submit(job))
    finally:
        if pending:
            client.cancel(list(pending))
        queue.clear()

"""From a catalogue of files to the scores cube, one case at a time.

For every case: load the candidates' label maps, fuse them, turn the fusion and every
candidate into structure masks, and measure each candidate against the fusion
(``similarity``); when a reference exists, measure the fusion (``quality``) and every
candidate (``candidate_quality``) against it. Cases are independent, so they run in parallel
(local processes, or a ``dask.distributed.Client``), can be cached as they finish, and a case
whose files cannot be used is recorded as an error without losing the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from qe_nb.core.case import check_fusion, check_metrics, metric_coords
from qe_nb.exceptions import InputError, LabelValueWarning, QeNbError, QeNbWarning

__all__ = ["score", "score_case", "save_scores", "load_scores", "metric_coords", "label_mean"]

ON_ERROR = ("record", "raise")
_CACHE_FORMAT = 1


def _settings(ensemble: xr.Dataset, fusion: str, metrics: tuple[str, ...], nsd_tolerance: float,
              resample: bool = False) -> dict:
    from qe_nb import __version__

    return {
        "fusion": fusion,
        "resample": bool(resample),
        "metrics": list(metrics),
        "nsd_tolerance": float(nsd_tolerance),
        "labels": [str(v) for v in ensemble["label"].values],
        "label_values": [str(v) for v in ensemble["label_values"].values],
        "label_scheme": str(ensemble.attrs.get("label_scheme", "")),
        "label_scheme_text": str(ensemble.attrs.get("label_scheme_text", "")),
        "algorithms": [str(a) for a in ensemble["algorithm"].values],
        "qe_nb_version": __version__,
    }


def _scheme_from_settings(settings: dict):
    from qe_nb.core.labels import LabelScheme

    structures = {
        name: tuple(int(v) for v in text.split(",")) if text != "nonzero" else ()
        for name, text in zip(settings["labels"], settings["label_values"])
    }
    return LabelScheme(settings["label_scheme"] or "custom", structures)


def score_case(case_catalogue: xr.Dataset, case: str, settings: dict) -> dict[str, Any]:
    """Score one case; the unit of work that runs in a worker.

    Reads the case's files (:mod:`qe_nb.data`) and runs the in-memory computation of
    :func:`qe_nb.core.case.score_arrays` on them (:func:`qe_nb.core.case.score_label_maps`).

    Parameters
    ----------
    case_catalogue : xarray.Dataset
        The catalogue (or its one-case selection) from :func:`qe_nb.open_ensemble`.
    case : str
        The case id.
    settings : dict
        Fusion, metrics and label scheme, as built by :func:`score`.

    Returns
    -------
    dict
        ``similarity`` (algorithm, label, metric), ``quality`` (label, metric) or None,
        ``candidate_quality`` (algorithm, label, metric) or None, ``error`` ("" when fine) and
        ``case``. Missing candidates give NaN rows.
    """
    from qe_nb.core.case import score_label_maps
    from qe_nb.data.ensemble import _read_label_maps, _read_reference

    algorithms = settings["algorithms"]
    n_alg, n_lab, n_met = len(algorithms), len(settings["labels"]), len(settings["metrics"])
    cat = case_catalogue.sel(case=[case]) if case_catalogue.sizes.get("case", 1) > 1 else case_catalogue
    paths = {str(a): str(p) for a, p in zip(cat["algorithm"].values, cat["mask"].values[0])}
    present = [a for a in algorithms if paths.get(a)]
    has_reference = "reference" in cat and str(cat["reference"].values[0]) != ""
    if not present:
        raise QeNbError(f"case {case!r}: no candidate segmentation was found (patterns matched none).")

    resample = settings.get("resample", False)
    arrays, grid = _read_label_maps(cat.sel(algorithm=present), case, resample=resample)
    found = _read_reference(cat, case, geometry=grid, resample=resample) if has_reference else None
    reference = [] if found is None else [found[0]]
    del found
    # The whole-grid maps are handed over (popped, no reference kept here), so the kernel
    # frees them once it has cropped them to the case's foreground box.
    result = score_label_maps(
        [arrays.pop(a, None) for a in algorithms],
        spacing=tuple(float(s) for s in grid.spacing),
        scheme=_scheme_from_settings(settings),
        fusion=settings["fusion"],
        metrics=settings["metrics"],
        nsd_tolerance=settings["nsd_tolerance"],
        reference=reference.pop() if reference else None,
        algorithms=algorithms,
        case=case,
    )
    with_reference = "reference" in cat
    quality, candidate_quality = result.quality, result.candidate_quality
    if with_reference and quality is None:  # the catalogue has references, this case none
        quality = np.full((n_lab, n_met), np.nan)
        candidate_quality = np.full((n_alg, n_lab, n_met), np.nan)
    return {
        "case": case,
        "similarity": result.similarity,
        "quality": quality,
        "candidate_quality": candidate_quality,
        "error": "",
        "warnings": result.warnings,
    }


def _empty_result(case: str, settings: dict, with_reference: bool, error: str) -> dict[str, Any]:
    n_alg, n_lab, n_met = len(settings["algorithms"]), len(settings["labels"]), len(settings["metrics"])
    return {
        "case": case,
        "similarity": np.full((n_alg, n_lab, n_met), np.nan),
        "quality": np.full((n_lab, n_met), np.nan) if with_reference else None,
        "candidate_quality": np.full((n_alg, n_lab, n_met), np.nan) if with_reference else None,
        "error": error,
        "warnings": [],
    }


def _error_text(case: str, exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, QeNbError):
        text = f"{type(exc).__name__}: {text}"
    if f"{case!r}" not in text and f"'{case}'" not in text:
        text = f"case {case!r}: {text}"
    return text.splitlines()[0] if len(text.splitlines()) > 3 else text


def _score_case_safe(case_catalogue: xr.Dataset, case: str, settings: dict, on_error: str) -> dict:
    try:
        return score_case(case_catalogue, case, settings)
    except Exception as exc:  # one case's failure must never lose the others
        if on_error == "raise":
            raise
        with_reference = "reference" in case_catalogue
        return _empty_result(case, settings, with_reference, _error_text(case, exc))


# ---------------------------------------------------------------------------------------------
# cache


def _settings_key(settings: dict) -> str:
    blob = json.dumps({k: settings[k] for k in sorted(settings) if k != "qe_nb_version"}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _files_key(case_catalogue: xr.Dataset) -> str:
    """A fingerprint of a case's files (path, size, mtime): a changed file invalidates its cache."""
    parts = []
    for name in ("mask", "reference"):
        if name in case_catalogue:
            for p in np.asarray(case_catalogue[name].values).ravel():
                p = str(p)
                try:
                    st = os.stat(p)
                    parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
                except OSError:
                    parts.append(f"{p}:missing")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _cache_path(cache: Path, case: str, settings_key: str) -> Path:
    safe = hashlib.sha256(case.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return cache / settings_key / f"{safe}.npz"


def _cache_load(path: Path, case: str, files_key: str) -> dict | None:
    """A case's stored result, or None when absent, stale or unreadable (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["case"]) != case or str(z["files_key"]) != files_key or int(z["format"]) != _CACHE_FORMAT:
                return None
            out = {"case": case, "error": str(z["error"]), "similarity": z["similarity"]}
            out["quality"] = z["quality"] if "quality" in z else None
            out["candidate_quality"] = z["candidate_quality"] if "candidate_quality" in z else None
            out["warnings"] = [str(w) for w in z["warnings"]] if "warnings" in z else []
            return out
    except Exception:  # a torn or foreign file (BadZipFile, EOFError, OSError, ...) is a miss
        return None


def _cache_store(path: Path, result: dict, files_key: str) -> None:
    from qe_nb.data.images import atomic_write

    arrays = {
        "format": np.array(_CACHE_FORMAT),
        "case": np.array(result["case"]),
        "files_key": np.array(files_key),
        "error": np.array(result["error"]),
        "similarity": result["similarity"],
        "warnings": np.array([str(w) for w in result.get("warnings", ())], dtype=str),
    }
    for name in ("quality", "candidate_quality"):
        if result[name] is not None:
            arrays[name] = result[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a temporary file, fsynced, then renamed: a run killed mid-write
    # leaves either the old state or the complete file, never a torn one.
    with atomic_write(path, mode="wb") as fh:
        np.savez(fh, **arrays)


# ---------------------------------------------------------------------------------------------
# running the cases

_SERIAL_BELOW = 4
"""With fewer cases to compute than this, score here: starting processes costs more than it saves."""
_PARALLEL_ABOVE_SECONDS = 5.0
"""Start worker processes only when the rest of the cohort would take longer than this here.

A spawned worker imports numpy, SimpleITK, scipy and xarray before its first case (one to
several seconds); a cohort of small cases is done here sooner. The first case is scored here
and timed to estimate the rest."""
_MAX_ATTEMPTS = 3
"""A case whose worker dies this many times is recorded as an error (it may be what kills it)."""


def _worker_died(case: str, attempts: int, settings: dict, with_reference: bool, on_error: str) -> dict:
    message = (
        f"case {case!r}: the worker process scoring it died {attempts} times (killed, out of "
        "memory or crashed); rerun to retry it."
    )
    if on_error == "raise":
        raise QeNbError(message)
    return _empty_result(case, settings, with_reference, message)


def _run_serial(jobs, settings, on_error):
    for cat, case in jobs:
        yield _score_case_safe(cat, case, settings, on_error)


def _run_local(jobs, settings, on_error, n_jobs, n_todo):
    """Score here, or in ``n_jobs`` processes when the cohort is worth their start-up."""
    import time

    jobs = iter(jobs)
    if n_jobs > 1 and n_todo >= _SERIAL_BELOW:
        first = next(jobs, None)
        if first is None:
            return
        start = time.perf_counter()
        result = _score_case_safe(first[0], first[1], settings, on_error)
        per_case = time.perf_counter() - start
        yield result
        if per_case * (n_todo - 1) > _PARALLEL_ABOVE_SECONDS:
            yield from _run_processes(jobs, settings, on_error, min(n_jobs, n_todo - 1))
            return
    yield from _run_serial(jobs, settings, on_error)


def _run_processes(jobs, settings, on_error, n_jobs, *, window=None):
    """Score cases in ``n_jobs`` local processes, at most ``window`` cases in flight.

    Jobs are pulled from the iterator only as slots free up, so memory is bounded by the
    window, not by the cohort. A worker that dies (SIGKILL, out of memory, a crash) breaks
    the whole pool: the cases that were in flight are run again on a fresh pool, one at a
    time, so that a case that kills its worker is found and recorded, and the others are not
    blamed for it.
    """
    import itertools
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: SimpleITK and BLAS keep thread pools that a fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    window = max(int(window or 2 * n_jobs), 1)
    jobs = iter(jobs)
    suspects: deque = deque()  # lost with a broken pool; each reruns alone
    attempts: dict[str, int] = {}
    pending: dict = {}
    barren = 0  # pools broken while none has ever returned a result
    returned = False
    pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx)
    try:
        while True:
            if barren >= _MAX_ATTEMPTS and not returned:
                # Workers that die before any result cannot start at all (e.g. a script
                # without `if __name__ == "__main__":`, which spawned workers re-run): score here.
                pool.shutdown(wait=False, cancel_futures=True)
                rest = itertools.chain(suspects, jobs)
                first = next(rest, None)
                if first is None:
                    return
                warnings.warn(
                    f"worker processes died {barren} times before returning a result; scoring the "
                    "remaining cases in this process. In a script, guard the call with "
                    "`if __name__ == \"__main__\":` or pass n_jobs=1.",
                    QeNbWarning, stacklevel=4,
                )
                for job in itertools.chain([first], rest):
                    yield _score_case_safe(job[0], job[1], settings, on_error)
                return
            if suspects:
                if not pending:
                    job = suspects.popleft()
                    pending[pool.submit(_score_case_safe, job[0], job[1], settings, on_error)] = job
            else:
                while len(pending) < window:
                    job = next(jobs, None)
                    if job is None:
                        break
                    pending[pool.submit(_score_case_safe, job[0], job[1], settings, on_error)] = job
            if not pending:
                return
            alone = len(pending) == 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                job = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
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
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _client_threads(client) -> int:
    try:
        return int(sum(client.nthreads().values()))
    except Exception as exc:  # anything else is not a usable client
        raise InputError(
            "`client` must be a dask.distributed.Client (e.g. Client(LocalCluster()) or "
            f"Client('tcp://host:8786')); got {type(client).__name__} ({exc})."
        ) from None


def _run_dask(jobs, settings, on_error, client, *, window=None):
    """Score cases as dask tasks, at most ``window`` (default 4x the cluster's threads) in flight.

    More tasks are submitted as results come back, so neither the scheduler nor this process
    holds the whole cohort. Dask reruns the tasks of a worker that dies; a case whose
    workers keep dying (``KilledWorker``) is recorded as an error.
    """
    import uuid

    from dask.distributed import as_completed as dask_as_completed
    from distributed.scheduler import KilledWorker

    if window is None:
        window = 4 * max(_client_threads(client), 1)
    window = max(int(window), 1)
    run = uuid.uuid4().hex[:10]
    jobs = iter(jobs)
    pending: dict = {}
    counter = 0

    def submit(job):
        nonlocal counter
        counter += 1
        fut = client.submit(
            _score_case_safe, job[0], job[1], settings, on_error,
            key=f"qe-nb-score-{run}-{counter}", pure=False, retries=0,
        )
        pending[fut] = job
        return fut

    queue = dask_as_completed()
    try:
        for job in jobs:
            queue.add(submit(job))
            if len(pending) >= window:
                break
        for fut in queue:
            job = pending.pop(fut)
            try:
                result = fut.result()
            except KilledWorker:
                result = _worker_died(job[1], _MAX_ATTEMPTS, settings, "reference" in job[0], on_error)
            fut.release()
            yield result
            for job in jobs:
                queue.add(submit(job))
                break
    finally:
        if pending:
            client.cancel(list(pending))
        queue.clear()


def score(
    ensemble: xr.Dataset,
    *,
    fusion: Literal["mav", "simple", "brats-simple", "staple"] = "mav",
    metrics: Sequence[str] | str = ("dice", "hd95"),
    client: Any = None,
    n_jobs: int | None = None,
    progress: bool = True,
    on_error: Literal["record", "raise"] = "record",
    cache: str | os.PathLike | None = None,
    nsd_tolerance: float = 1.0,
    cases: Iterable[str] | None = None,
    callback: Callable[[dict], None] | None = None,
    resample: bool = False,
) -> xr.Dataset:
    """Score a cohort: fuse each case's candidates and measure every candidate against the fusion.

    Parameters
    ----------
    ensemble : xarray.Dataset
        The catalogue from :func:`qe_nb.open_ensemble` (or :func:`qe_nb.synthetic_cohort`).
    fusion : {"mav", "simple", "brats-simple", "staple"}, default "mav"
        How to fuse the candidates (see :func:`qe_nb.fuse`).
    metrics : sequence of str or comma-separated str, default ("dice", "hd95")
        Metric ids from :data:`qe_nb.METRICS`.
    client : dask.distributed.Client, optional
        Run the cases as tasks on this client (a ``LocalCluster`` or a real cluster's
        scheduler address). At most four tasks per worker thread are in flight; more are
        submitted as results come back, so memory does not grow with the cohort. Tasks of a
        worker that dies are rerun elsewhere.
    n_jobs : int or None, default None
        Without a client: local worker processes; ``None`` uses every core, 1 runs here.
        The first case runs here and is timed: when the rest would take under about five
        seconds here (small cohorts, small images), they run here too, since starting
        processes would cost more. Results never depend on where cases ran.
    progress : bool, default True
        Show a progress bar (tqdm; a widget in notebooks).
    on_error : {"record", "raise"}, default "record"
        ``"record"``: a case whose files cannot be used gets NaN scores and its reason in the
        ``error`` variable; every other case is scored as in a clean run. ``"raise"``: stop at
        the first failing case.
    cache : path, optional
        A folder where each case's result is stored as it finishes (one small file per
        case, written atomically); a rerun after an interruption (Ctrl-C, a killed worker
        or process) computes only the cases missing there and gives identical results.
        Entries are keyed by the settings and by each file's size and modification time, so
        a changed file or setting is recomputed. Failed cases are not stored.
    nsd_tolerance : float, default 1.0
        Tolerance in mm of the normalised surface Dice.
    cases : iterable of str, optional
        Score only these cases.
    callback : callable, optional
        Called with each case's result dict as it finishes (for progress displays).
    resample : bool, default False
        Bring candidates whose grid (spacing, origin, direction) differs from the first
        candidate's onto its grid with nearest-neighbour interpolation, instead of recording a
        geometry error for the case.

    Returns
    -------
    xarray.Dataset
        ``similarity`` (case, algorithm, label, metric): fusion vs each candidate;
        ``quality`` (case, label, metric): reference vs fusion, and ``candidate_quality``
        (case, algorithm, label, metric): reference vs each candidate, when the catalogue has
        references; ``error`` (case): "" or why the case could not be scored. The ``metric``
        coord carries ``higher_is_better`` and ``units``; attrs record the fusion, the label
        scheme, the metric definitions and the qe_nb version.

    Raises
    ------
    InputError
        For an unknown fusion method or metric, a bad ``on_error`` or ``n_jobs``, or a
        ``client`` that is not a dask.distributed Client.
    """
    from qe_nb.progress import progress_bar

    if not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble or "case" not in ensemble.dims:
        raise InputError(
            "`ensemble` must be the catalogue from qe_nb.open_ensemble (an xarray.Dataset with a "
            f"'mask' variable over (case, algorithm)); got {type(ensemble).__name__}."
        )
    check_fusion(fusion)
    if on_error not in ON_ERROR:
        raise InputError(f"`on_error` must be one of {list(ON_ERROR)}; got {on_error!r}.")
    metrics = check_metrics(metrics)
    settings = _settings(ensemble, fusion, metrics, nsd_tolerance, resample)
    all_cases = [str(c) for c in ensemble["case"].values]
    if cases is not None:
        wanted = [str(c) for c in cases]
        unknown = sorted(set(wanted) - set(all_cases))
        if unknown:
            raise InputError(f"`cases` names cases not in the ensemble: {unknown[:5]}.")
        all_cases = [c for c in all_cases if c in set(wanted)]
    with_reference = "reference" in ensemble

    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1):
        raise InputError(f"`n_jobs` must be a positive integer or None (every core); got {n_jobs!r}.")
    if client is not None:
        _client_threads(client)

    results: dict[str, dict] = {}
    cache_dir = Path(cache) if cache is not None else None
    settings_key = _settings_key(settings)
    index = {c: i for i, c in enumerate(str(c) for c in ensemble["case"].values)}
    todo: list[str] = []
    files_keys: dict[str, str] = {}
    for case in all_cases:
        if cache_dir is not None:
            files_keys[case] = _files_key(ensemble.isel(case=[index[case]]))
            hit = _cache_load(_cache_path(cache_dir, case, settings_key), case, files_keys[case])
            if hit is not None and (hit["quality"] is not None) == with_reference:
                results[case] = hit
                continue
        todo.append(case)
    # One-case catalogues are cut as workers ask for them, so memory does not grow with the cohort.
    jobs = ((ensemble.isel(case=[index[case]]), case) for case in todo)

    if client is not None:
        runner = _run_dask(jobs, settings, on_error, client)
    else:
        workers = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
        runner = _run_local(jobs, settings, on_error, workers, len(todo))

    for case in results:
        for message in results[case].get("warnings", ()):
            warnings.warn(message, LabelValueWarning, stacklevel=2)
    with progress_bar(total=len(all_cases), initial=len(results), desc="scoring", disable=not progress) as bar:
        try:
            for result in runner:
                case = result["case"]
                results[case] = result
                for message in result.get("warnings", ()):
                    warnings.warn(message, LabelValueWarning, stacklevel=2)
                if cache_dir is not None and not result["error"]:
                    _cache_store(_cache_path(cache_dir, case, settings_key), result, files_keys[case])
                if callback is not None:
                    callback(result)
                bar.update(1)
        finally:
            # Stop the workers now (Ctrl-C, an error): what finished is already in the cache.
            runner.close()

    return _assemble(results, all_cases, settings, with_reference, ensemble)


def _assemble(results, cases, settings, with_reference, ensemble) -> xr.Dataset:
    coords: dict[str, Any] = {
        "case": ("case", np.array(cases, dtype=object)),
        "algorithm": ("algorithm", np.array(settings["algorithms"], dtype=object)),
        "label": ("label", np.array(settings["labels"], dtype=object)),
        "label_values": ("label", np.array(settings["label_values"], dtype=object)),
        **metric_coords(settings["metrics"]),
    }
    data = {
        "similarity": (
            ("case", "algorithm", "label", "metric"),
            np.stack([results[c]["similarity"] for c in cases]) if cases else
            np.empty((0, len(settings["algorithms"]), len(settings["labels"]), len(settings["metrics"]))),
            {"long_name": "similarity of each candidate to the fusion"},
        ),
        "error": (
            "case",
            np.array([results[c]["error"] for c in cases], dtype=object),
            {"long_name": "why the case could not be scored ('' when it was)"},
        ),
    }
    if with_reference:
        data["quality"] = (
            ("case", "label", "metric"),
            np.stack([results[c]["quality"] for c in cases]),
            {"long_name": "quality of the fusion against the reference"},
        )
        data["candidate_quality"] = (
            ("case", "algorithm", "label", "metric"),
            np.stack([results[c]["candidate_quality"] for c in cases]),
            {"long_name": "quality of each candidate against the reference"},
        )
    from qe_nb.core.metrics import METRICS

    attrs = {
        "title": "qe_nb scores",
        "fusion": settings["fusion"],
        "label_scheme": settings["label_scheme"],
        "label_scheme_text": settings["label_scheme_text"],
        "metrics": ",".join(settings["metrics"]),
        "metric_definitions": "; ".join(
            f"{m}: {getattr(METRICS[m], 'description', '')}" for m in settings["metrics"]
        ),
        "nsd_tolerance_mm": settings["nsd_tolerance"],
        "qe_nb_version": settings["qe_nb_version"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(ensemble.attrs.get("root", "")),
        "n_failed_cases": int(sum(1 for c in cases if results[c]["error"])),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def save_scores(scores: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a scores Dataset to NetCDF atomically (a crash never leaves a half-written file).

    Returns the path written.
    """
    from qe_nb.data.images import atomic_path

    path = Path(path)
    if not isinstance(scores, xr.Dataset) or "similarity" not in scores:
        raise InputError(
            f"`scores` must be the Dataset from qe_nb.score (with 'similarity'); got {type(scores).__name__}."
        )
    ds = scores.copy()
    for name in list(ds.variables):
        if ds[name].dtype == object:
            ds[name] = ds[name].astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return path


def load_scores(path: str | os.PathLike) -> xr.Dataset:
    """Read a scores Dataset written by :func:`save_scores` (fully loaded; the file is closed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scores file {str(path)!r} does not exist.")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as exc:  # h5py/h5netcdf raise many kinds
        raise InputError(f"scores file {str(path)!r} could not be read as NetCDF: {exc}") from exc
    if "similarity" not in ds:
        raise InputError(f"scores file {str(path)!r} holds no 'similarity' variable; is it a qe_nb scores file?")
    if "higher_is_better" in ds.coords:
        ds = ds.assign_coords(higher_is_better=ds["higher_is_better"].astype(bool))
    return ds


def label_mean(similarity: xr.DataArray, *, name: str = "mean") -> xr.DataArray:
    """Average a cube over its structures, keeping a one-entry ``label`` dim.

    The paper's MR experiment raises one Dice and one Hausdorff alarm per algorithm (its
    Table 1 counts 0-10 for 5 algorithms x 2 metrics), from values averaged over the tumour
    structures; this gives that cube. A non-finite value in any structure makes the mean
    non-finite, so it still raises its alarm.

    Examples
    --------
    >>> da = xr.DataArray([[1.0, 0.5]], dims=("case", "label"), coords={"label": ["a", "b"]})
    >>> label_mean(da).sel(label="mean").values.tolist()
    [0.75]
    """
    if not isinstance(similarity, xr.DataArray) or "label" not in similarity.dims:
        raise InputError(
            "`similarity` must be a DataArray with a 'label' dim; got "
            f"{getattr(similarity, 'dims', type(similarity).__name__)}."
        )
    out = similarity.mean("label", skipna=False).expand_dims(label=[name], axis=similarity.dims.index("label"))
    if "label_values" in similarity.coords:
        out = out.assign_coords(label_values=("label", ["mean of " + ",".join(map(str, similarity.label.values))]))
    out.name = similarity.name
    out.attrs = dict(similarity.attrs)
    return out

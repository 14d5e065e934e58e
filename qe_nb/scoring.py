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
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from .exceptions import InputError, LabelValueWarning, QeNbError

__all__ = ["score", "score_case", "save_scores", "load_scores", "metric_coords", "label_mean"]

FUSION_METHODS = ("mav", "simple", "brats-simple", "staple")
ON_ERROR = ("record", "raise")
_CACHE_FORMAT = 1


def metric_coords(metrics: Sequence[str]) -> dict[str, Any]:
    """Coordinates of the ``metric`` dim: ids plus ``higher_is_better`` and ``units``.

    Examples
    --------
    >>> c = metric_coords(["dice", "hd95"])
    >>> c["higher_is_better"][1].tolist(), c["units"][1].tolist()
    ([True, False], ['1', 'mm'])
    """
    from .metrics import metric_spec

    specs = [metric_spec(m) for m in metrics]
    return {
        "metric": ("metric", [s.id for s in specs]),
        "higher_is_better": ("metric", np.array([s.higher_is_better for s in specs], dtype=bool)),
        "units": ("metric", np.array([s.units for s in specs], dtype=object)),
    }


def _check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    from .metrics import metric_spec

    if isinstance(metrics, str):
        metrics = tuple(m.strip() for m in metrics.split(",") if m.strip())
    metrics = tuple(metrics)
    if not metrics:
        raise InputError("`metrics` names no metric; expected e.g. ('dice', 'hd95').")
    if len(set(metrics)) != len(metrics):
        raise InputError(f"`metrics` names a metric twice: {list(metrics)}.")
    for m in metrics:
        metric_spec(m)
    return metrics


def _settings(ensemble: xr.Dataset, fusion: str, metrics: tuple[str, ...], nsd_tolerance: float,
              resample: bool = False) -> dict:
    from . import __version__

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
    from .labels import LabelScheme

    structures = {
        name: tuple(int(v) for v in text.split(",")) if text != "nonzero" else ()
        for name, text in zip(settings["labels"], settings["label_values"])
    }
    return LabelScheme(settings["label_scheme"] or "custom", structures)


def score_case(case_catalogue: xr.Dataset, case: str, settings: dict) -> dict[str, Any]:
    """Score one case; the unit of work that runs in a worker.

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
    from .ensemble import load_label_maps, load_reference
    from .fusion import fuse
    from .labels import structure_masks
    from .metrics import compute_metrics, compute_metrics_many

    algorithms = settings["algorithms"]
    metrics = settings["metrics"]
    n_alg, n_lab, n_met = len(algorithms), len(settings["labels"]), len(metrics)
    similarity = np.full((n_alg, n_lab, n_met), np.nan)
    cat = case_catalogue.sel(case=[case]) if case_catalogue.sizes.get("case", 1) > 1 else case_catalogue
    paths = {str(a): str(p) for a, p in zip(cat["algorithm"].values, cat["mask"].values[0])}
    present = [a for a in algorithms if paths.get(a)]
    has_reference = "reference" in cat and str(cat["reference"].values[0]) != ""
    quality = np.full((n_lab, n_met), np.nan) if "reference" in cat else None
    candidate_quality = np.full((n_alg, n_lab, n_met), np.nan) if "reference" in cat else None
    if not present:
        raise QeNbError(f"case {case!r}: no candidate segmentation was found (patterns matched none).")

    scheme = _scheme_from_settings(settings)
    label_maps = load_label_maps(cat.sel(algorithm=present), case, resample=settings.get("resample", False))
    warnings_found = _unexpected_labels(label_maps, scheme, case)
    spacing = tuple(float(s) for s in label_maps.attrs["spacing"])
    fused = fuse(label_maps.values, method=settings["fusion"])
    fused_masks = structure_masks(fused, scheme)
    index = [algorithms.index(a) for a in present]
    candidate_masks = np.stack([structure_masks(m, scheme) for m in label_maps.values])
    for j in range(n_lab):
        similarity[index, j, :] = compute_metrics_many(
            fused_masks[j], candidate_masks[:, j], metrics,
            spacing=spacing, nsd_tolerance=settings["nsd_tolerance"],
        )
    if has_reference:
        reference = load_reference(cat, case, geometry=label_maps, resample=settings.get("resample", False))
        ref = np.asarray(reference.values, dtype=bool)
        for j in range(n_lab):
            values = compute_metrics(ref[j], fused_masks[j], metrics, spacing=spacing,
                                     nsd_tolerance=settings["nsd_tolerance"])
            quality[j, :] = [values[m] for m in metrics]
            candidate_quality[index, j, :] = compute_metrics_many(
                ref[j], candidate_masks[:, j], metrics,
                spacing=spacing, nsd_tolerance=settings["nsd_tolerance"],
            )
    return {
        "case": case,
        "similarity": similarity,
        "quality": quality,
        "candidate_quality": candidate_quality,
        "error": "",
        "warnings": warnings_found,
    }


def _unexpected_labels(label_maps: xr.DataArray, scheme, case: str) -> list[str]:
    """Messages naming label values that no structure of the scheme uses (they are ignored)."""
    known = set(scheme.values)
    if not known:  # the binary scheme takes every non-zero value
        return []
    messages = []
    for algorithm, values in zip(label_maps["algorithm"].values, label_maps.values):
        top = int(values.max()) if values.size else 0
        seen = np.flatnonzero(np.bincount(values.ravel(), minlength=top + 1)) if top < 65536 else np.unique(values)
        extra = sorted(set(int(v) for v in seen) - known - {0})
        if extra:
            messages.append(
                f"case {case!r}, algorithm {str(algorithm)!r}: label values {extra} are outside the "
                f"label scheme ({scheme.describe()}) and are ignored."
            )
    return messages


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
        result = _empty_result(case, settings, with_reference, _error_text(case, exc))
        result["traceback"] = traceback.format_exc(limit=3)
        return result


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
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["case"]) != case or str(z["files_key"]) != files_key or int(z["format"]) != _CACHE_FORMAT:
                return None
            out = {"case": case, "error": str(z["error"]), "similarity": z["similarity"]}
            out["quality"] = z["quality"] if "quality" in z else None
            out["candidate_quality"] = z["candidate_quality"] if "candidate_quality" in z else None
            return out
    except (OSError, KeyError, ValueError):
        return None


def _cache_store(path: Path, result: dict, files_key: str) -> None:
    from .io import atomic_write

    arrays = {
        "format": np.array(_CACHE_FORMAT),
        "case": np.array(result["case"]),
        "files_key": np.array(files_key),
        "error": np.array(result["error"]),
        "similarity": result["similarity"],
    }
    for name in ("quality", "candidate_quality"):
        if result[name] is not None:
            arrays[name] = result[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, mode="wb") as fh:
        np.savez(fh, **arrays)


# ---------------------------------------------------------------------------------------------
# running the cases


def _run_serial(jobs, settings, on_error):
    for cat, case in jobs:
        yield _score_case_safe(cat, case, settings, on_error)


def _run_processes(jobs, settings, on_error, n_jobs):
    import multiprocessing

    # spawn, not fork: SimpleITK and BLAS keep thread pools that a fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    jobs = list(jobs)
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
        # Keep a bounded number of cases in flight so memory does not grow with the cohort.
        pending = {}
        it = iter(jobs)
        limit = 2 * n_jobs
        for cat, case in it:
            pending[pool.submit(_score_case_safe, cat, case, settings, on_error)] = case
            if len(pending) >= limit:
                break
        while pending:
            done = next(as_completed(pending))
            pending.pop(done)
            yield done.result()
            for cat, case in it:
                pending[pool.submit(_score_case_safe, cat, case, settings, on_error)] = case
                break


def _run_dask(jobs, settings, on_error, client):
    from dask.distributed import as_completed as dask_as_completed

    jobs = list(jobs)
    settings_f = client.scatter(settings, broadcast=True)
    futures = [
        client.submit(_score_case_safe, cat, case, settings_f, on_error, key=f"qe-nb-{case}-{i}", pure=False)
        for i, (cat, case) in enumerate(jobs)
    ]
    try:
        for fut in dask_as_completed(futures):
            yield fut.result()
            fut.release()
    finally:
        for fut in futures:
            fut.release()


def score(
    ensemble: xr.Dataset,
    *,
    fusion: Literal["mav", "simple", "brats-simple", "staple"] = "mav",
    metrics: Sequence[str] | str = ("dice", "hd95"),
    client: Any = None,
    n_jobs: int | None = 1,
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
        Run the cases as tasks on this client (a ``LocalCluster`` or a real cluster).
    n_jobs : int or None, default 1
        Without a client: local worker processes; ``None`` uses every core, 1 runs here.
    progress : bool, default True
        Show a progress bar (tqdm; a widget in notebooks).
    on_error : {"record", "raise"}, default "record"
        ``"record"``: a case whose files cannot be used gets NaN scores and its reason in the
        ``error`` variable; every other case is scored as in a clean run. ``"raise"``: stop at
        the first failing case.
    cache : path, optional
        A folder where each case's result is stored as it finishes; a rerun computes only the
        cases missing there (results are identical).
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
        For an unknown fusion method or metric, or a bad ``on_error``.
    """
    from ._progress import progress_bar

    if not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble or "case" not in ensemble.dims:
        raise InputError(
            "`ensemble` must be the catalogue from qe_nb.open_ensemble (an xarray.Dataset with a "
            f"'mask' variable over (case, algorithm)); got {type(ensemble).__name__}."
        )
    if fusion not in FUSION_METHODS:
        raise InputError(f"Unknown fusion method {fusion!r}; expected one of {list(FUSION_METHODS)}.")
    if on_error not in ON_ERROR:
        raise InputError(f"`on_error` must be one of {list(ON_ERROR)}; got {on_error!r}.")
    metrics = _check_metrics(metrics)
    settings = _settings(ensemble, fusion, metrics, nsd_tolerance, resample)
    all_cases = [str(c) for c in ensemble["case"].values]
    if cases is not None:
        wanted = [str(c) for c in cases]
        unknown = sorted(set(wanted) - set(all_cases))
        if unknown:
            raise InputError(f"`cases` names cases not in the ensemble: {unknown[:5]}.")
        all_cases = [c for c in all_cases if c in set(wanted)]
    with_reference = "reference" in ensemble

    results: dict[str, dict] = {}
    cache_dir = Path(cache) if cache is not None else None
    settings_key = _settings_key(settings)
    todo = []
    files_keys = {}
    for case in all_cases:
        cat = ensemble.sel(case=[case])
        if cache_dir is not None:
            files_keys[case] = _files_key(cat)
            hit = _cache_load(_cache_path(cache_dir, case, settings_key), case, files_keys[case])
            if hit is not None and (hit["quality"] is not None) == with_reference:
                results[case] = hit
                continue
        todo.append((cat, case))

    if client is not None:
        runner = _run_dask(todo, settings, on_error, client)
    else:
        workers = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
        if workers < 1:
            raise InputError(f"`n_jobs` must be a positive integer or None; got {n_jobs!r}.")
        if workers == 1 or len(todo) < 2:
            runner = _run_serial(todo, settings, on_error)
        else:
            runner = _run_processes(todo, settings, on_error, min(workers, len(todo)))

    with progress_bar(total=len(all_cases), initial=len(results), desc="scoring", disable=not progress) as bar:
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
    from .metrics import METRICS

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
    from .io import atomic_path

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

"""From a catalogue of files to the scores cube: :func:`score`.

For every case: load the candidates' label maps, fuse them, turn the fusion and every
candidate into structure masks, and measure each candidate against the fusion
(``similarity``); when a reference exists, measure the fusion (``quality``) and every
candidate (``candidate_quality``) against it. Cases are independent, so they run in parallel
(local processes, or a ``dask.distributed.Client``, :mod:`qe_nb.pipeline.runners`), can be
cached as they finish (:mod:`qe_nb.pipeline.cache`), and a case whose files cannot be used is
recorded as an error without losing the others (:mod:`qe_nb.pipeline.one_case`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from qe_nb.core.case import (
    SIMILARITY_LONG_NAMES,
    check_fusion,
    check_metrics,
    check_similarity,
    metric_coords,
)
from qe_nb.core.members import STAPLE_ESTIMATES, member_variables
from qe_nb.core.statistics import label_mean
from qe_nb.exceptions import GeometryError, InputError, LabelValueWarning
from qe_nb.pipeline.cache import cache_path, files_key, load_cached, settings_key, store_cached
from qe_nb.pipeline.one_case import case_settings, score_case
from qe_nb.pipeline.runners import client_threads, run_dask, run_local
from qe_nb.pipeline.scores_file import load_scores, save_scores

__all__ = ["score", "score_case", "save_scores", "load_scores", "metric_coords", "label_mean"]

ON_ERROR = ("record", "raise")


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
    similarity: Literal["fusion", "leave-one-out"] = "fusion",
    pairwise: bool = False,
    staple_performance: bool = False,
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
    similarity : {"fusion", "leave-one-out"}, default "fusion"
        What each candidate's ``similarity`` is measured against: the fusion of all the
        candidates, or the fusion of the *other* candidates with the same rule (one more
        fusion per member; for small ensembles and reader cohorts, where the full fusion is
        largely made of the candidate itself). ``quality`` and ``candidate_quality`` do not
        depend on it. Recorded in ``attrs["similarity_mode"]`` and in the cache key.
    pairwise : bool, default False
        Also measure every member against every other member (``pairwise``; each unordered
        pair once), the input of :func:`qe_nb.risk_scores`' pairwise disagreement.
    staple_performance : bool, default False
        Also estimate each member's sensitivity and specificity per structure with
        SimpleITK's ``STAPLEImageFilter`` on the whole image (``staple_performance``).

    Returns
    -------
    xarray.Dataset
        ``similarity`` (case, algorithm, label, metric): fusion vs each candidate;
        ``quality`` (case, label, metric): reference vs fusion, and ``candidate_quality``
        (case, algorithm, label, metric): reference vs each candidate, when the catalogue has
        references; ``volume`` (case, algorithm, label): each candidate's voxel count times
        the voxel volume (area in 2-D); with ``pairwise``, ``pairwise`` (case, algorithm,
        algorithm_b, label, metric): symmetric, diagonal = a mask against itself (Dice 1,
        distance 0); with ``staple_performance``, ``staple_performance`` (case, algorithm,
        label, estimate), ``estimate`` = ("sensitivity", "specificity"); ``error`` (case):
        "" or why the case could not be scored. Missing candidates are NaN. The ``metric``
        coord carries ``higher_is_better`` and ``units`` ("px" instead of "mm" for a cohort
        of images that store no spacing, such as PNG); attrs record the fusion,
        ``similarity_mode``, ``distance_units`` ("mm" or "px"), the label scheme, the metric
        definitions and the qe_nb version.

    Raises
    ------
    InputError
        For an unknown fusion method, metric or similarity mode, a bad ``on_error`` or
        ``n_jobs``, or a ``client`` that is not a dask.distributed Client.
    GeometryError
        When the cohort mixes cases whose distances are in pixels (images without spacing)
        with cases in millimetres: raised as soon as the second kind is seen, whatever
        ``on_error`` (it concerns the cohort, not one case). Cases already finished stay in
        the cache.
    """
    from qe_nb.progress import progress_bar

    if not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble or "case" not in ensemble.dims:
        raise InputError(
            "`ensemble` must be the catalogue from qe_nb.open_ensemble (an xarray.Dataset with a "
            f"'mask' variable over (case, algorithm)); got {type(ensemble).__name__}."
        )
    check_fusion(fusion)
    similarity = check_similarity(similarity)
    if on_error not in ON_ERROR:
        raise InputError(f"`on_error` must be one of {list(ON_ERROR)}; got {on_error!r}.")
    metrics = check_metrics(metrics)
    settings = case_settings(ensemble, fusion, metrics, nsd_tolerance, resample, similarity=similarity,
                             pairwise=bool(pairwise), staple_performance=bool(staple_performance))
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
        client_threads(client)

    results: dict[str, dict] = {}
    cache_dir = Path(cache) if cache is not None else None
    key = settings_key(settings)
    index = {c: i for i, c in enumerate(str(c) for c in ensemble["case"].values)}
    todo: list[str] = []
    files_keys: dict[str, str] = {}
    for case in all_cases:
        if cache_dir is not None:
            files_keys[case] = files_key(ensemble.isel(case=[index[case]]))
            hit = load_cached(cache_path(cache_dir, case, key), case, files_keys[case])
            if hit is not None and (hit["quality"] is not None) == with_reference:
                results[case] = hit
                continue
        todo.append(case)
    # One-case catalogues are cut as workers ask for them, so memory does not grow with the cohort.
    jobs = ((ensemble.isel(case=[index[case]]), case) for case in todo)

    if client is not None:
        runner = run_dask(jobs, settings, on_error, client)
    else:
        workers = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
        runner = run_local(jobs, settings, on_error, workers, len(todo))

    units = _CohortUnits()
    for case in results:
        units.check(results[case])
        for message in results[case].get("warnings", ()):
            warnings.warn(message, LabelValueWarning, stacklevel=2)
    with progress_bar(total=len(all_cases), initial=len(results), desc="scoring", disable=not progress) as bar:
        try:
            for result in runner:
                case = result["case"]
                units.check(result)
                results[case] = result
                for message in result.get("warnings", ()):
                    warnings.warn(message, LabelValueWarning, stacklevel=2)
                if cache_dir is not None and not result["error"]:
                    store_cached(cache_path(cache_dir, case, key), result, files_keys[case])
                if callback is not None:
                    callback(result)
                bar.update(1)
        finally:
            # Stop the workers now (Ctrl-C, an error): what finished is already in the cache.
            runner.close()

    return _assemble(results, all_cases, settings, with_reference, ensemble, units)


class _CohortUnits:
    """The distance units and grid dimension of a cohort's cases; refuses a mix of px and mm."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}  # units -> the first case seen with them
        self.ndim: int | None = None

    @property
    def units(self) -> str:
        return next(iter(self.first), "mm")

    def check(self, result: dict) -> None:
        units = result.get("units")
        if units is None:  # a case that could not be scored
            return
        self.ndim = self.ndim or result.get("ndim")
        self.first.setdefault(units, result["case"])
        if len(self.first) > 1:
            (u1, c1), (u2, c2) = self.first.items()
            px, mm = (c1, c2) if u1 == "px" else (c2, c1)
            raise GeometryError(
                f"the cohort mixes distance units: case {px!r} is read from images that store no "
                f"spacing (distances in px) and case {mm!r} has a spacing in mm, so their distances "
                "cannot share one threshold. Score them separately (`cases=`), or store the pixel "
                "spacing in the px images (e.g. write them as NIfTI/MHA with their spacing)."
            )


def _assemble(results, cases, settings, with_reference, ensemble, units: _CohortUnits) -> xr.Dataset:
    coords: dict[str, Any] = {
        "case": ("case", np.array(cases, dtype=object)),
        "algorithm": ("algorithm", np.array(settings["algorithms"], dtype=object)),
        "label": ("label", np.array(settings["labels"], dtype=object)),
        "label_values": ("label", np.array(settings["label_values"], dtype=object)),
        **metric_coords(settings["metrics"], units=units.units, ndim=units.ndim or 3),
    }
    n_alg, n_lab, n_met = len(settings["algorithms"]), len(settings["labels"]), len(settings["metrics"])

    def stacked(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.stack([results[c][name] for c in cases]) if cases else np.empty((0, *shape))

    data = {
        "similarity": (
            ("case", "algorithm", "label", "metric"),
            stacked("similarity", (n_alg, n_lab, n_met)),
            {"long_name": SIMILARITY_LONG_NAMES[settings["similarity"]]},
        ),
        "error": (
            "case",
            np.array([results[c]["error"] for c in cases], dtype=object),
            {"long_name": "why the case could not be scored ('' when it was)"},
        ),
    }
    members = {
        "volume": stacked("volume", (n_alg, n_lab)),
        "pairwise": stacked("pairwise", (n_alg, n_alg, n_lab, n_met)) if settings["pairwise"] else None,
        "staple_performance": (stacked("staple_performance", (n_alg, n_lab, len(STAPLE_ESTIMATES)))
                               if settings["staple_performance"] else None),
    }
    members, member_coords = member_variables(members, settings["algorithms"], units.units, units.ndim or 3,
                                              lead=("case",))
    data.update(members)
    coords.update(member_coords)
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
        "similarity_mode": settings["similarity"],
        "distance_units": units.units,
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

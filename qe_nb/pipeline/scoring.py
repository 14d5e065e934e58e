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
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
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
from qe_nb.exceptions import GeometryError, InputError, LabelValueWarning, QeNbWarning
from qe_nb.pipeline.cache import cache_path, files_key, load_cached, settings_key, store_cached
from qe_nb.pipeline.one_case import case_settings, score_case
from qe_nb.pipeline.runners import client_threads, run_dask, run_local
from qe_nb.pipeline.scores_file import load_scores, save_scores

__all__ = [
    "score", "score_case", "save_scores", "load_scores", "metric_coords", "label_mean", "missing_summary",
    "label_value_summary",
]

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
        "" or why the case could not be scored; ``missing`` (case, algorithm), bool: the
        candidate has no file in the catalogue (e.g. an nnU-Net folder ``{algorithm}/{case}.nii.gz``
        lacking one case). A missing candidate's scores are NaN (so they alarm) while the
        case's other candidates are scored and ``error`` stays ""; :func:`missing_summary`
        words them (the CLI prints it and fails unless ``--allow-missing``), and
        :func:`qe_nb.worklist` names them in its reasons when given ``missing=``. The ``metric``
        coord carries ``higher_is_better`` and ``units`` ("px" instead of "mm" for a cohort
        of images that store no spacing, such as PNG); attrs record the fusion,
        ``similarity_mode``, ``distance_units`` ("mm" or "px"), the label scheme, the metric
        definitions, the catalogue's root (``source``) and ``masks_pattern``, and the qe_nb
        version.

    Warns
    -----
    LabelValueWarning
        Once per run, when candidates hold label values no structure of the scheme uses (the
        number of files, the values, the first file and the ``labels=`` hint).
    QeNbWarning
        When more than half of the cases failed with ``on_error="record"``: "N of M cases
        failed; first: ..." (with every case failing, the cube is all NaN).

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
    label_messages: list[str] = []
    for case in results:
        units.check(results[case])
        label_messages.extend(results[case].get("warnings", ()))
    with progress_bar(total=len(all_cases), initial=len(results), desc="scoring", disable=not progress) as bar:
        try:
            for result in runner:
                case = result["case"]
                units.check(result)
                results[case] = result
                label_messages.extend(result.get("warnings", ()))
                if cache_dir is not None and not result["error"]:
                    store_cached(cache_path(cache_dir, case, key), result, files_keys[case])
                if callback is not None:
                    callback(result)
                bar.update(1)
        finally:
            # Stop the workers now (Ctrl-C, an error): what finished is already in the cache.
            runner.close()

    if label_messages:
        warnings.warn(label_value_summary(label_messages, settings["label_scheme_text"]),
                      LabelValueWarning, stacklevel=2)
    scores = _assemble(results, all_cases, settings, with_reference, ensemble, units)
    failed = int(scores.attrs["n_failed_cases"])
    if all_cases and failed > len(all_cases) / 2:
        first = next(str(e) for e in scores["error"].values if e)
        warnings.warn(
            f"{failed} of {len(all_cases)} cases failed; first: {first} (their scores are NaN; the "
            "reasons are in scores['error']; pass on_error='raise' to stop at the first).",
            QeNbWarning,
            stacklevel=2,
        )
    return scores


def missing_summary(scores: xr.Dataset, *, limit: int = 5) -> str:
    """Which candidate files a run found missing, in words; ``""`` when none was.

    Parameters
    ----------
    scores : xarray.Dataset
        The output of :func:`score` (its ``missing`` variable; a cube without it, from an
        older version, has nothing to report).
    limit : int, default 5
        Cases named at most; the rest are counted.

    Returns
    -------
    str
        E.g. ``"2 candidate file(s) missing in 2 of 68 case(s): case 'c1': netB (expected
        '/data/netB/c1.nii.gz'); case 'c3': netA (expected '/data/netA/c3.nii.gz'). Their
        scores are NaN and count as alarms."``

    Examples
    --------
    >>> ds = xr.Dataset({"missing": (("case", "algorithm"), [[False, True], [False, False]])},
    ...                 coords={"case": ["c1", "c2"], "algorithm": ["netA", "netB"]},
    ...                 attrs={"source": "/data", "masks_pattern": "{algorithm}/{case}.nii.gz"})
    >>> print(missing_summary(ds))
    1 candidate file(s) missing in 1 of 2 case(s): case 'c1': netB (expected '/data/netB/c1.nii.gz'). Their scores are NaN and count as alarms.
    """
    if not isinstance(scores, xr.Dataset):
        raise InputError(f"`scores` must be the Dataset from qe_nb.score; got {type(scores).__name__}.")
    if "missing" not in scores:
        return ""
    flags = scores["missing"].transpose("case", "algorithm").values.astype(bool)
    if not flags.any():
        return ""
    cases = [str(c) for c in scores["case"].values]
    algorithms = [str(a) for a in scores["algorithm"].values]
    root = str(scores.attrs.get("source", ""))
    pattern = str(scores.attrs.get("masks_pattern", ""))

    def expected(case: str, algorithm: str) -> str:
        if not pattern:
            return ""
        rel = pattern.replace("{case}", case).replace("{algorithm}", algorithm)
        return f" (expected {os.path.join(root, *rel.split('/')) if root else rel!r})"

    rows = np.flatnonzero(flags.any(axis=1))
    parts = [
        f"case {cases[c]!r}: " + ", ".join(f"{algorithms[a]}{expected(cases[c], algorithms[a])}"
                                          for a in np.flatnonzero(flags[c]))
        for c in rows[:limit]
    ]
    more = f"; and {len(rows) - limit} more case(s)" if len(rows) > limit else ""
    return (
        f"{int(flags.sum())} candidate file(s) missing in {len(rows)} of {len(cases)} case(s): "
        + "; ".join(parts) + more + ". Their scores are NaN and count as alarms."
    )


_VALUES = re.compile(r"label values \[([0-9, ]+)\]")


def label_value_summary(messages: Sequence[str], scheme_text: str) -> str:
    """One warning for every label value outside the scheme that a run met.

    A single message is returned as it is; several become one line: how many files, which
    values, the first message and the ``labels=`` / ``--labels`` hint.

    Examples
    --------
    >>> label_value_summary(["case 'a', algorithm 'x': label values [4] are outside the label "
    ...                      "scheme (t=[1]) and are ignored."], "t=[1]")[:37]
    "case 'a', algorithm 'x': label values"
    >>> print(label_value_summary(["case 'a', algorithm 'x': label values [4] ...",
    ...                            "case 'b', algorithm 'x': label values [3, 4] ..."], "t=[1]"))
    2 candidate file(s) hold label values [3, 4] that no structure of the label scheme (t=[1]) uses; they are ignored. First: case 'a', algorithm 'x': label values [4] ... Pass `labels=` (CLI: `--labels`) to use them.
    """
    if len(messages) == 1:
        return messages[0]
    values: set[int] = set()
    for message in messages:
        found = _VALUES.search(message)
        if found:
            values.update(int(v) for v in found.group(1).split(","))
    return (
        f"{len(messages)} candidate file(s) hold label values {sorted(values)} that no structure of "
        f"the label scheme ({scheme_text}) uses; they are ignored. First: {messages[0]} Pass "
        "`labels=` (CLI: `--labels`) to use them."
    )


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
    paths = ensemble["mask"].sel(case=cases, algorithm=settings["algorithms"]).values if cases else None
    data["missing"] = (
        ("case", "algorithm"),
        np.zeros((0, n_alg), bool) if paths is None else (paths == "") | pd.isna(paths),
        {"long_name": "the candidate has no file (its scores are NaN)"},
    )
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
        "masks_pattern": str(ensemble.attrs.get("masks", "")),
        "n_failed_cases": int(sum(1 for c in cases if results[c]["error"])),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)

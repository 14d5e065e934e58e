"""One case of a cohort run: its settings, reading its files and scoring them, its failures.

:func:`score_case` is the unit of work every runner (serial, local processes, dask) runs:
it reads a case's files through :mod:`qe_nb.data` and scores them with the in-memory kernel
of :mod:`qe_nb.core.case`. :func:`score_case_safe` turns a failure into a recorded result,
so that one unusable case never loses the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.labels import LabelScheme, parse_label_values
from qe_nb.core.members import STAPLE_ESTIMATES
from qe_nb.exceptions import QeNbError

__all__ = ["case_settings", "scheme_from_settings", "score_case", "score_case_safe", "empty_result"]


def case_settings(
    ensemble: xr.Dataset,
    fusion: str,
    metrics: tuple[str, ...],
    nsd_tolerance: float,
    resample: bool = False,
    *,
    similarity: str = "fusion",
    pairwise: bool = False,
    staple_performance: bool = False,
) -> dict[str, Any]:
    """The settings every case of a run is scored with (plain data: they travel to workers).

    They key the cache: a result computed with other settings (another ``similarity``
    mode, say) is never served.

    Examples
    --------
    >>> ens = xr.Dataset(coords={"algorithm": ["a"], "label": ["foreground"],
    ...                          "label_values": ("label", ["nonzero"])})
    >>> case_settings(ens, "mav", ("dice",), 1.0)["labels"]
    ['foreground']
    """
    from qe_nb import __version__

    return {
        "fusion": fusion,
        "similarity": similarity,
        "pairwise": bool(pairwise),
        "staple_performance": bool(staple_performance),
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


def scheme_from_settings(settings: dict[str, Any]) -> LabelScheme:
    """The label scheme a run's settings describe.

    Examples
    --------
    >>> scheme_from_settings({"labels": ["wt", "et"], "label_values": ["1,2,4", "4"],
    ...                       "label_scheme": "brats-regions"}).describe()
    'wt=[1, 2, 4], et=[4]'
    """
    structures = {
        name: parse_label_values(text) for name, text in zip(settings["labels"], settings["label_values"])
    }
    return LabelScheme(settings["label_scheme"] or "custom", structures)


def score_case(case_catalogue: xr.Dataset, case: str, settings: dict[str, Any], *, threads: int = 1) -> dict[str, Any]:
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
        Fusion, metrics and label scheme, as built by :func:`case_settings`.
    threads : int, default 1
        Threads of this process that read the case's files at once (the caller scores one
        case at a time in process; never more than the cores). Results do not depend on it.

    Returns
    -------
    dict
        ``similarity`` (algorithm, label, metric), ``quality`` (label, metric) or None,
        ``candidate_quality`` (algorithm, label, metric) or None, ``volume`` (algorithm,
        label), ``pairwise`` (algorithm, algorithm_b, label, metric) or None,
        ``staple_performance`` (algorithm, label, estimate) or None, ``units`` ("mm" or "px":
        the unit of the grid's spacing), ``ndim`` (2 or 3), ``error`` ("" when fine),
        ``warnings`` (messages about label values outside the scheme) and ``case``. Missing
        candidates give NaN rows.

    Raises
    ------
    QeNbError
        When no candidate of the case has a file, or its files cannot be used.
    """
    from qe_nb.core.case import score_label_maps
    from qe_nb.data.loading import read_label_maps, read_reference

    algorithms = settings["algorithms"]
    n_alg, n_lab, n_met = len(algorithms), len(settings["labels"]), len(settings["metrics"])
    cat = case_catalogue.sel(case=[case]) if case_catalogue.sizes.get("case", 1) > 1 else case_catalogue
    paths = {str(a): str(p) for a, p in zip(cat["algorithm"].values, cat["mask"].values[0])}
    present = [a for a in algorithms if paths.get(a)]
    has_reference = "reference" in cat and str(cat["reference"].values[0]) != ""
    if not present:
        raise QeNbError(f"case {case!r}: no candidate segmentation was found (patterns matched none).")

    resample = settings.get("resample", False)
    every = [str(a) for a in cat["algorithm"].values] == present  # nothing missing: no selection to make
    arrays, grid = read_label_maps(cat if every else cat.sel(algorithm=present), case, resample=resample,
                                   threads=threads)
    found = read_reference(cat, case, geometry=grid, resample=resample) if has_reference else None
    reference = [] if found is None else [found[0]]
    del found
    # The whole-grid maps are handed over (popped, no reference kept here), so the kernel
    # frees them once it has cropped them to the case's foreground box.
    result = score_label_maps(
        [arrays.pop(a, None) for a in algorithms],
        spacing=tuple(float(s) for s in grid.spacing),
        scheme=scheme_from_settings(settings),
        fusion=settings["fusion"],
        metrics=settings["metrics"],
        nsd_tolerance=settings["nsd_tolerance"],
        reference=reference.pop() if reference else None,
        algorithms=algorithms,
        case=case,
        similarity=settings["similarity"],
        pairwise=settings["pairwise"],
        staple_performance=settings["staple_performance"],
    )
    quality, candidate_quality = result.quality, result.candidate_quality
    if "reference" in cat and quality is None:  # the catalogue has references, this case none
        quality = np.full((n_lab, n_met), np.nan)
        candidate_quality = np.full((n_alg, n_lab, n_met), np.nan)
    return {
        "case": case,
        "similarity": result.similarity,
        "quality": quality,
        "candidate_quality": candidate_quality,
        "volume": result.volume,
        "pairwise": result.pairwise,
        "staple_performance": result.staple_performance,
        "units": grid.units,
        "ndim": len(grid.shape),
        "error": "",
        "warnings": result.warnings,
    }


def empty_result(case: str, settings: dict[str, Any], with_reference: bool, error: str) -> dict[str, Any]:
    """The result of a case that could not be scored: NaN everywhere and why, in ``error``."""
    n_alg, n_lab, n_met = len(settings["algorithms"]), len(settings["labels"]), len(settings["metrics"])
    return {
        "case": case,
        "similarity": np.full((n_alg, n_lab, n_met), np.nan),
        "quality": np.full((n_lab, n_met), np.nan) if with_reference else None,
        "candidate_quality": np.full((n_alg, n_lab, n_met), np.nan) if with_reference else None,
        "volume": np.full((n_alg, n_lab), np.nan),
        "pairwise": np.full((n_alg, n_alg, n_lab, n_met), np.nan) if settings["pairwise"] else None,
        "staple_performance": (np.full((n_alg, n_lab, len(STAPLE_ESTIMATES)), np.nan)
                               if settings["staple_performance"] else None),
        "units": None,
        "ndim": None,
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


def score_case_safe(case_catalogue: xr.Dataset, case: str, settings: dict[str, Any], on_error: str, *,
                    threads: int = 1) -> dict[str, Any]:
    """:func:`score_case`, with a failure recorded in the result (``on_error="record"``) or raised."""
    try:
        return score_case(case_catalogue, case, settings, threads=threads)
    except Exception as exc:  # one case's failure must never lose the others
        if on_error == "raise":
            raise
        with_reference = "reference" in case_catalogue
        return empty_result(case, settings, with_reference, _error_text(case, exc))

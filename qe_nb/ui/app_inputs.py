"""The apps' input checks: each app's constructor arguments checked in one place and handed
back as data, so the app classes only compose widgets and views.

:func:`check_explorer_inputs` serves :class:`qe_nb.ui.explorer.CalibrationExplorer`,
:func:`load_triage_inputs` and :func:`check_alpha` serve :class:`qe_nb.ui.triage_app.TriageApp`,
:func:`check_catalogue` and :func:`check_optional_scores` serve
:class:`qe_nb.ui.viewer.CaseViewer`. Each raises :class:`qe_nb.exceptions.InputError` with a
message that names the argument, the value and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.exceptions import InputError
from qe_nb.ui.common import check_number
from qe_nb.ui.controls import OVERRIDE_DIMS

__all__ = [
    "DISTANCE_METRICS",
    "ExplorerInputs",
    "check_explorer_inputs",
    "TriageInputs",
    "load_triage_inputs",
    "check_alpha",
    "check_catalogue",
    "check_optional_scores",
]

DISTANCE_METRICS: tuple[str, ...] = ("hd95", "hd", "hd95_medpy", "assd")
"""The ground-truth distance shown beside the quality in Figure 4: the first of these present."""


def _whole(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= minimum


@dataclass(frozen=True)
class ExplorerInputs:
    """The calibration explorer's checked inputs.

    Attributes
    ----------
    scores : xarray.Dataset
        The scores cube (a bare similarity DataArray wrapped in a Dataset).
    similarity : xarray.DataArray
        Its checked ``similarity`` (:func:`qe_nb.core.checks.check_scores`).
    top, n_bootstrap : int
    dpi : float
    has_ground_truth : bool
        Whether the scores hold ``quality``.
    distance_metric : str or None
        The ground truth's distance metric (see :data:`DISTANCE_METRICS`), if any.
    names : dict of str to list of str
        The names along ``metric``, ``label`` and ``algorithm``.
    """

    scores: xr.Dataset
    similarity: xr.DataArray
    top: int
    n_bootstrap: int
    dpi: float
    has_ground_truth: bool
    distance_metric: str | None
    names: dict[str, list[str]]


def check_explorer_inputs(scores: Any, *, quality_metric: str, alpha: Any, top: Any,
                          n_bootstrap: Any, dpi: Any) -> ExplorerInputs:
    """Check :class:`~qe_nb.ui.explorer.CalibrationExplorer`'s arguments (see there).

    Raises
    ------
    InputError
        When ``scores`` is not a scores Dataset (or a similarity DataArray), ``alpha`` or
        ``dpi`` is not a finite number, ``top`` < 1, ``n_bootstrap`` < 0, or
        ``quality_metric`` is not in the ground truth.
    """
    from qe_nb.core.checks import check_scores

    if isinstance(scores, xr.DataArray):
        scores = xr.Dataset({"similarity": scores})
    if not isinstance(scores, xr.Dataset):
        raise InputError(
            "`scores` must be a scores Dataset with a 'similarity' variable over (case, "
            f"algorithm, label, metric) (qe_nb.score); got {type(scores).__name__}."
        )
    similarity = check_scores(scores, name="scores")
    check_number(alpha, "alpha")
    if not _whole(top, 1):
        raise InputError(f"`top` must be a whole number >= 1; got {top!r}.")
    if not _whole(n_bootstrap, 0):
        raise InputError(f"`n_bootstrap` must be a whole number >= 0; got {n_bootstrap!r}.")
    dpi = check_number(dpi, "dpi")
    has_ground_truth = "quality" in scores.data_vars
    distance_metric = None
    if has_ground_truth:
        metrics = [str(m) for m in scores["quality"]["metric"].values]
        if quality_metric not in metrics:
            raise InputError(
                f"`quality_metric` {quality_metric!r} is not in the scores' quality; "
                f"expected one of {metrics}."
            )
        distance_metric = next((m for m in DISTANCE_METRICS if m in metrics), None)
    names = {d: [str(v) for v in similarity[d].values] for d in OVERRIDE_DIMS}
    return ExplorerInputs(scores=scores, similarity=similarity, top=int(top),
                          n_bootstrap=int(n_bootstrap), dpi=dpi, has_ground_truth=has_ground_truth,
                          distance_metric=distance_metric, names=names)


@dataclass(frozen=True)
class TriageInputs:
    """The triage app's checked and loaded inputs.

    Attributes
    ----------
    scores : xarray.Dataset
    scores_path : pathlib.Path or None
        The scores file, when the scores were given as one.
    ensemble : xarray.Dataset or None
    similarity : xarray.DataArray
        The cube the alarms are computed on (averaged over labels with ``label_mean``).
    quality : xarray.DataArray or None
        The ground truth per case, or None.
    """

    scores: xr.Dataset
    scores_path: Path | None
    ensemble: xr.Dataset | None
    similarity: xr.DataArray
    quality: xr.DataArray | None


def load_triage_inputs(scores: Any, *, ensemble: Any, rows: Any, label_mean: bool,
                       quality_metric: str) -> TriageInputs:
    """Check :class:`~qe_nb.ui.triage_app.TriageApp`'s arguments and read the scores file.

    Raises
    ------
    InputError
        For scores that are not a scores cube (or its file), ``rows`` < 1, or an ``ensemble``
        that is not a catalogue.
    """
    from qe_nb.core.checks import check_scores
    from qe_nb.core.statistics import case_quality
    from qe_nb.core.statistics import label_mean as mean_over_labels

    scores_path = None
    if isinstance(scores, (str, os.PathLike)):
        from qe_nb.pipeline.scoring import load_scores

        scores_path = Path(os.fspath(scores))
        scores = load_scores(scores_path)
    if not isinstance(scores, xr.Dataset) or "similarity" not in scores.data_vars:
        raise InputError(
            "`scores` must be a scores Dataset with a 'similarity' variable (qe_nb.score) or "
            f"the path of its file; got {type(scores).__name__}."
        )
    if not _whole(rows, 1):
        raise InputError(f"`rows` must be an integer >= 1; got {rows!r}.")
    if ensemble is not None and (not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble):
        raise InputError(
            "`ensemble` must be None or the catalogue from qe_nb.open_ensemble; got "
            f"{type(ensemble).__name__}."
        )
    similarity = check_scores(scores, name="scores")
    quality = None
    if "quality" in scores.data_vars and quality_metric in scores["quality"]["metric"].values:
        # a case's quality is the mean over the labels that have a value (as before 0.2)
        quality = case_quality(scores["quality"], quality_metric, skipna=True)
    return TriageInputs(scores=scores, scores_path=scores_path, ensemble=ensemble,
                        similarity=mean_over_labels(similarity) if label_mean else similarity,
                        quality=quality)


def check_alpha(alpha: Any, *, none_ok: bool = False) -> float | None:
    """``alpha`` as a float; a bool, a non-number or a non-finite number is refused.

    Examples
    --------
    >>> check_alpha(1), check_alpha(None, none_ok=True)
    (1.0, None)
    """
    if alpha is None and none_ok:
        return None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not np.isfinite(alpha):
        expected = "a finite number or None" if none_ok else "a finite number"
        raise InputError(f"`alpha` must be {expected}; got {alpha!r}.")
    return float(alpha)


def check_catalogue(ensemble: Any, *, fusion: str) -> xr.Dataset:
    """Check the case viewer's catalogue and fusion method; return the catalogue.

    Raises
    ------
    InputError
        For a catalogue without a ``mask`` variable or an unknown fusion method.
    """
    from qe_nb.core.fusion import METHODS as FUSION_METHODS

    if not isinstance(ensemble, xr.Dataset) or "mask" not in ensemble.data_vars:
        raise InputError(
            "`ensemble` must be the catalogue from qe_nb.open_ensemble (an xarray.Dataset "
            f"with a 'mask' variable over (case, algorithm)); got {type(ensemble).__name__}."
        )
    if fusion not in FUSION_METHODS:
        raise InputError(f"Unknown fusion {fusion!r}; expected one of {list(FUSION_METHODS)}.")
    return ensemble


def check_optional_scores(scores: Any) -> xr.Dataset | None:
    """None, or a scores Dataset (a bare similarity DataArray is wrapped in one).

    Raises
    ------
    InputError
        For anything else, or a Dataset without ``similarity``.
    """
    if scores is None:
        return None
    if isinstance(scores, xr.DataArray):
        scores = xr.Dataset({"similarity": scores})
    if not isinstance(scores, xr.Dataset) or "similarity" not in scores.data_vars:
        raise InputError(
            "`scores` must be None or a scores Dataset with a 'similarity' variable "
            f"(qe_nb.score); got {type(scores).__name__}."
        )
    return scores

"""qe_nb: unsupervised quality estimation for segmentation ensembles.

Fuse the candidate segmentations of every case, measure how far each candidate lies from the
fusion, flag per-algorithm outliers with ``median - alpha * MAD`` thresholds and rank the
cases by their alarm count (Kofler et al. 2021, "Robust, Primitive, and Unsupervised Quality
Estimation for Segmentation Ensembles", Front. Neurosci.).

The public API is re-exported here and imported lazily, so ``import qe_nb`` stays fast and
the optional layers (plots, widgets, dask) load only when used.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("qe-nb")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# public name -> module that defines it
_API = {
    # labels
    "LabelScheme": "core.labels",
    "BRATS": "core.labels",
    "BRATS_REGIONS": "core.labels",
    "BRATS_2023": "core.labels",
    "BRATS_2023_REGIONS": "core.labels",
    "BINARY": "core.labels",
    "resolve_labels": "core.labels",
    "structure_masks": "core.labels",
    # metrics
    "METRICS": "core.metrics",
    "dice": "core.metrics",
    "jaccard": "core.metrics",
    "hausdorff": "core.metrics",
    "assd": "core.metrics",
    "nsd": "core.metrics",
    "abs_volume_diff": "core.metrics",
    "compute_metrics": "core.metrics",
    "compute_metrics_many": "core.metrics",
    "metrics_of_pairs": "core.metrics",
    "metric_spec": "core.metrics",
    "MetricSpec": "core.metrics",
    # fusion
    "fuse": "core.fusion",
    # alarms
    "thresholds": "core.alarms",
    "alarms": "core.alarms",
    "risk": "core.alarms",
    "threshold_table": "core.alarms",
    # calibration
    "alarm_entropy": "core.calibration",
    "sweep": "core.calibration",
    "sweep_table": "core.calibration",
    "calibrate": "core.calibration",
    # the one alpha of a run, stored with its scores
    "settle_alpha": "core.run_alpha",
    "run_alpha": "core.run_alpha",
    "RunAlpha": "core.run_alpha",
    # reasons a person can read
    "reasons": "core.reasons",
    "alarm_grid": "core.reasons",
    # triage
    "worklist": "core.triage",
    "triage_performance": "core.triage",
    # ground-truth-free risk scores side by side
    "risk_scores": "core.risk",
    "evaluate_risk": "core.risk",
    # continuous QA: a frozen calibration, new cases assessed one by one, drift
    "fit": "pipeline.model",
    "QualityModel": "pipeline.model",
    "load_model": "pipeline.model",
    "drift_table": "core.drift",
    "watch_folder": "pipeline.watch",
    "FolderWatcher": "pipeline.watch",
    "stored_assessments": "pipeline.watch",
    # the review store (verdicts, assessments) and learning from the verdicts
    "ReviewStore": "store",
    "StoreError": "store",
    "verdict_performance": "core.verdict_performance",
    "VerdictPerformance": "core.verdict_performance",
    # files -> cohort
    "open_ensemble": "data.ensemble",
    "load_case": "data.loading",
    "load_label_maps": "data.loading",
    "load_reference": "data.loading",
    "load_images": "data.loading",
    "read_image": "data.images",
    "Geometry": "data.geometry",
    "write_image": "data.images",
    "synthetic_cohort": "data.synth",
    "score": "pipeline.scoring",
    "save_scores": "pipeline.scoring",
    "load_scores": "pipeline.scoring",
    "score_arrays": "core.case",
    "label_mean": "pipeline.scoring",
    "missing_summary": "pipeline.scoring",
    # data sets
    "load_manifest": "data.manifest",
    "fetch_dataset": "data.manifest",
    "open_dataset": "data.manifest",
    "DatasetEntry": "data.manifest",
    # errors
    "QeNbError": "exceptions",
    "InputError": "exceptions",
    "GeometryError": "exceptions",
    "LabelError": "exceptions",
    "ImageReadError": "exceptions",
    "EnsembleError": "exceptions",
    "ManifestError": "exceptions",
    "QeNbWarning": "exceptions",
    "UndefinedValueWarning": "exceptions",
    "UnreliableThresholdWarning": "exceptions",
    "LabelValueWarning": "exceptions",
}

__all__ = sorted(_API) + ["__version__"]

if TYPE_CHECKING:  # the same names, statically, for type checkers and IDEs
    from qe_nb.core.alarms import alarms, risk, threshold_table, thresholds
    from qe_nb.core.calibration import alarm_entropy, calibrate, sweep, sweep_table
    from qe_nb.core.case import score_arrays
    from qe_nb.core.drift import drift_table
    from qe_nb.core.fusion import fuse
    from qe_nb.core.labels import (
        BINARY,
        BRATS,
        BRATS_2023,
        BRATS_2023_REGIONS,
        BRATS_REGIONS,
        LabelScheme,
        resolve_labels,
        structure_masks,
    )
    from qe_nb.core.metrics import (
        METRICS,
        MetricSpec,
        abs_volume_diff,
        assd,
        compute_metrics,
        compute_metrics_many,
        dice,
        hausdorff,
        jaccard,
        metric_spec,
        metrics_of_pairs,
        nsd,
    )
    from qe_nb.core.reasons import alarm_grid, reasons
    from qe_nb.core.risk import evaluate_risk, risk_scores
    from qe_nb.core.run_alpha import RunAlpha, run_alpha, settle_alpha
    from qe_nb.core.triage import triage_performance, worklist
    from qe_nb.core.verdict_performance import VerdictPerformance, verdict_performance
    from qe_nb.data.ensemble import open_ensemble
    from qe_nb.data.geometry import Geometry
    from qe_nb.data.images import read_image, write_image
    from qe_nb.data.loading import load_case, load_images, load_label_maps, load_reference
    from qe_nb.data.manifest import DatasetEntry, fetch_dataset, load_manifest, open_dataset
    from qe_nb.data.synth import synthetic_cohort
    from qe_nb.exceptions import (
        EnsembleError,
        GeometryError,
        ImageReadError,
        InputError,
        LabelError,
        LabelValueWarning,
        ManifestError,
        QeNbError,
        QeNbWarning,
        UndefinedValueWarning,
        UnreliableThresholdWarning,
    )
    from qe_nb.pipeline.model import QualityModel, fit, load_model
    from qe_nb.pipeline.scoring import label_mean, load_scores, missing_summary, save_scores, score
    from qe_nb.pipeline.watch import FolderWatcher, stored_assessments, watch_folder
    from qe_nb.store import ReviewStore, StoreError

# The flat modules of versions before 0.2 (``qe_nb.metrics``, ``qe_nb.widgets``, ...) still
# import, with a DeprecationWarning that names their new home in the layers.
from qe_nb._compat import install_module_aliases  # noqa: E402

install_module_aliases()

# ``scores.qe.alarms(0.1)`` must work on any scores cube once qe_nb is imported; registering the
# accessor imports xarray (about 0.25 s), which every use of a scores cube needs anyway.
import qe_nb.core.accessor  # noqa: E402


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'qe_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

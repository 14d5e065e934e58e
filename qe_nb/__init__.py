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

try:
    __version__ = version("qe-nb")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# public name -> module that defines it
_API = {
    # labels
    "LabelScheme": "labels",
    "BRATS": "labels",
    "BRATS_REGIONS": "labels",
    "BRATS_2023": "labels",
    "BRATS_2023_REGIONS": "labels",
    "BINARY": "labels",
    "resolve_labels": "labels",
    "structure_masks": "labels",
    # metrics
    "METRICS": "metrics",
    "dice": "metrics",
    "jaccard": "metrics",
    "hausdorff": "metrics",
    "assd": "metrics",
    "nsd": "metrics",
    "abs_volume_diff": "metrics",
    "compute_metrics": "metrics",
    "compute_metrics_many": "metrics",
    "metrics_of_pairs": "metrics",
    "metric_spec": "metrics",
    "MetricSpec": "metrics",
    # fusion
    "fuse": "fusion",
    # alarms
    "thresholds": "alarms",
    "alarms": "alarms",
    "risk": "alarms",
    "threshold_table": "alarms",
    # calibration
    "alarm_entropy": "calibration",
    "sweep": "calibration",
    "sweep_table": "calibration",
    "calibrate": "calibration",
    # triage
    "worklist": "triage",
    "triage_performance": "triage",
    # files -> cohort
    "open_ensemble": "ensemble",
    "load_case": "ensemble",
    "load_label_maps": "ensemble",
    "load_reference": "ensemble",
    "load_images": "ensemble",
    "read_image": "io",
    "write_image": "io",
    "synthetic_cohort": "synth",
    "score": "scoring",
    "save_scores": "scoring",
    "load_scores": "scoring",
    "label_mean": "scoring",
    # data sets
    "load_manifest": "manifest",
    "fetch_dataset": "manifest",
    "open_dataset": "manifest",
    "DatasetEntry": "manifest",
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

# ``qe_nb.alarms`` names both a submodule and its main function. Importing the submodule binds
# the module to the package attribute, which would hide the function from the lazy lookup
# below; binding the function eagerly here (after the submodule import) keeps it callable.
from .alarms import alarms  # noqa: E402, F401


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'qe_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

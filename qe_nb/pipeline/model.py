"""Continuous QA: calibrate once on a reference cohort, then assess every new case as it arrives.

:func:`fit` freezes the thresholds of :func:`qe_nb.thresholds` on a reference cohort's scores
into a :class:`QualityModel`; :meth:`QualityModel.assess` judges new cases (a catalogue of
files, a scores cube, or one case's label maps in memory) against those thresholds, which a new
case never changes; :meth:`QualityModel.drift` compares recent assessments with the reference;
:meth:`QualityModel.save` and :func:`load_model` keep the model in one JSON file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.core.alarms import thresholds as fit_thresholds
from qe_nb.core.checks import (
    GROUP_DIMS,
    check_mad_scale,
    check_pool,
    check_scores,
    metric_directions,
)
from qe_nb.core.drift import drift_table
from qe_nb.core.frozen import (
    alpha_to_dict,
    assess_cube,
    canonical_json,
    content_hash,
    fit_alpha,
    grid_to_nested,
    reference_summary,
)
from qe_nb.core.labels import LabelScheme, parse_label_values
from qe_nb.exceptions import InputError
from qe_nb.pipeline.model_file import FORMAT, FORMAT_VERSION, parts_from_dict, read_model_dict
from qe_nb.pipeline.model_inputs import label_settings, scores_settings, settings_differences

__all__ = ["QualityModel", "fit", "load_model"]


class QualityModel:
    """A frozen calibration: thresholds per algorithm x label x metric fitted on a reference cohort.

    Build it with :func:`fit` (or :func:`load_model`); its fields are read-only.

    Attributes
    ----------
    thresholds : xarray.DataArray
        (algorithm, label, metric), in each metric's units: ``median - alpha * MAD`` of the
        reference (``median + alpha * MAD`` for distances), exactly :func:`qe_nb.thresholds`.
    alpha : float or xarray.DataArray
        The alpha, global or over the ``by`` dims; ``alpha_method`` says how it was chosen.
    by : tuple of str
        The dims alpha varies over (``()`` for one alpha).
    mad_scale, pool
        As :func:`qe_nb.thresholds` was called.
    fusion, metrics, labels, label_scheme, nsd_tolerance, similarity_mode, distance_units
        The settings the reference was scored with; new cases are scored with the same, and
        scores with other settings are refused. ``labels`` maps each structure to its label
        values as text (``"1,2,4"``, ``"nonzero"``).
    reference : xarray.Dataset
        :func:`qe_nb.core.frozen.reference_summary`: number of cases, medians, MADs, alarm
        rates per member, label and metric, the reference risk distribution.
    qe_nb_version, created
        Who fitted it and when (UTC).
    """

    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_hash", None)
        object.__setattr__(self, "_algorithms", tuple(str(a) for a in self.thresholds.coords["algorithm"].values))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"QualityModel is read-only; fit a new model instead of setting {name!r}.")

    thresholds: xr.DataArray
    alpha: float | xr.DataArray
    by: tuple[str, ...]
    alpha_method: str
    mad_scale: float
    pool: str
    fusion: str
    metrics: tuple[str, ...]
    labels: dict[str, str]
    label_scheme: str
    nsd_tolerance: float
    similarity_mode: str
    distance_units: str
    reference: xr.Dataset
    qe_nb_version: str
    created: str

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The ensemble members, in the model's order."""
        return self._algorithms

    @property
    def scheme(self) -> LabelScheme:
        """The label scheme as a :class:`qe_nb.LabelScheme`."""
        structures = {k: parse_label_values(v) for k, v in self.labels.items()}
        return LabelScheme(self.label_scheme or "custom", structures)

    @property
    def content_hash(self) -> str:
        """sha256 of the model's canonical JSON (the ``content_sha256`` of its file)."""
        if self._hash is None:  # the model is read-only: computed once
            object.__setattr__(self, "_hash", content_hash(self.to_dict()))
        return self._hash

    def __repr__(self) -> str:
        alpha = f"{self.alpha:g}" if not isinstance(self.alpha, xr.DataArray) else f"per {', '.join(self.by)}"
        return (f"<QualityModel: {len(self.algorithms)} members x {len(self.labels)} labels x {len(self.metrics)} "
                f"metrics, alpha {alpha}, fusion {self.fusion!r}, reference {self.reference.attrs['n_cases']} "
                f"cases, sha256 {self.content_hash[:12]}>")

    def to_dict(self) -> dict[str, Any]:
        """The model as plain data (the JSON file's content), with its ``content_sha256``.

        Examples
        --------
        >>> model = fit(_example_scores(), 0.1)
        >>> sorted(model.to_dict())[:4]
        ['calibration', 'content_sha256', 'created', 'format']
        """
        ref = self.reference
        data = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "qe_nb_version": self.qe_nb_version,
            "created": self.created,
            "settings": {
                "fusion": self.fusion,
                "metrics": list(self.metrics),
                "higher_is_better": [bool(b) for b in metric_directions(self.thresholds)],
                "algorithms": list(self.algorithms),
                "labels": [{"name": k, "values": v} for k, v in self.labels.items()],
                "label_scheme": self.label_scheme,
                "nsd_tolerance_mm": float(self.nsd_tolerance),
                "similarity_mode": self.similarity_mode,
                "distance_units": self.distance_units,
            },
            "calibration": {
                "alpha": alpha_to_dict(self.alpha),
                "alpha_by": list(self.by),
                "alpha_method": self.alpha_method,
                "mad_scale": float(self.mad_scale),
                "pool": self.pool,
                "thresholds": grid_to_nested(self.thresholds),
            },
            "reference": {
                "n_cases": int(ref.attrs["n_cases"]),
                "n_failed_cases": int(ref.attrs["n_failed_cases"]),
                "median": grid_to_nested(ref["median"]),
                "mad": grid_to_nested(ref["mad"]),
                "n_finite": _int_grid(ref["n_finite"]),
                "alarm_rate": grid_to_nested(ref["alarm_rate"]),
                "member_alarm_rate": {str(a): (None if np.isnan(v) else float(v)) for a, v in
                                      zip(ref["algorithm"].values, ref["member_alarm_rate"].values)},
                "risk": [int(v) for v in ref["risk"].values],
            },
        }
        data["content_sha256"] = content_hash(data)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> QualityModel:
        """Build a model from :meth:`to_dict`'s output, validated (hash included).

        Raises
        ------
        InputError
            For anything :func:`qe_nb.pipeline.model_file.check_model_dict` refuses.
        """
        from qe_nb.pipeline.model_file import check_model_dict

        check_model_dict(dict(data), source)
        return cls(**parts_from_dict(data))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to one human-readable JSON file, atomically.

        Parameters
        ----------
        path : str or path-like
            The file (conventionally ``*.json``); its folder must exist.

        Returns
        -------
        pathlib.Path
            The path written.

        Examples
        --------
        >>> import tempfile, os
        >>> model = fit(_example_scores(), 0.1)
        >>> target = model.save(os.path.join(tempfile.mkdtemp(), "model.json"))
        >>> load_model(target).content_hash == model.content_hash
        True
        """
        import json

        from qe_nb.data.files import atomic_write_text

        data = self.to_dict()
        canonical_json(data)  # refuses NaN/inf before anything is written
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
        return Path(path)

    def assess(
        self,
        new: xr.Dataset | xr.DataArray | Mapping[str, np.ndarray | None] | Sequence[np.ndarray | None] | np.ndarray,
        *,
        cases: Sequence[str] | None = None,
        spacing: Sequence[float] | None = None,
        n_jobs: int | None = 1,
        progress: bool = False,
    ) -> xr.Dataset:
        """Assess new cases against the frozen thresholds.

        Parameters
        ----------
        new : xarray.Dataset, mapping, sequence or ndarray
            A catalogue from :func:`qe_nb.open_ensemble` (its cases are scored here with the
            model's settings and members -- files of other algorithms are not read; a bad file
            is recorded in ``error``, the other cases are assessed); a scores Dataset from :func:`qe_nb.score` or :func:`qe_nb.score_arrays`
            scored with the model's settings; or one case's label maps in memory (a mapping
            member -> map, None for a missing member, or a sequence / array in the model's
            member order), scored with :func:`qe_nb.score_arrays`.
        cases : sequence of str, optional
            Only these cases of a catalogue or scores cube; for label maps, the one case's name
            (default ``"case"``).
        spacing : sequence of float, optional
            Voxel size (z, y, x) of label maps in memory (required for them).
        n_jobs : int or None, default 1
            Worker processes for a catalogue (see :func:`qe_nb.score`); 1 scores here, with no
            process start-up on the path of a single case.
        progress : bool, default False
            A progress bar while scoring a catalogue.

        Returns
        -------
        xarray.Dataset
            Over the new ``case``: ``similarity`` and ``alarms`` (case, algorithm, label,
            metric), ``risk``, ``reasons`` (the worklist's words), ``percentile`` (of the risk
            in the reference cohort), ``error`` ("" or why the case could not be scored),
            ``missing`` (case, algorithm) and ``threshold``; attrs the model's hash and
            settings.

        Raises
        ------
        InputError
            For scores or a catalogue whose settings (labels, metrics, fusion, members,
            similarity mode, distance units, NSD tolerance) differ from the model's: the
            message lists what differs.

        Examples
        --------
        >>> model = fit(_example_scores(), 0.1)
        >>> a = np.zeros((1, 4, 8), np.uint8); a[0, 1:3, 2:6] = 1
        >>> out = model.assess({"x": a, "y": a, "z": np.roll(a, 3, axis=2)}, spacing=(1, 1, 1), cases=["new"])
        >>> out["risk"].values.tolist(), out["reasons"].values[0].split(";")[0]
        ([2], 'z: foreground Dice 0.25 < 0.84')
        """
        from qe_nb.pipeline.model_inputs import scores_of

        scores = scores_of(self, new, cases=cases, spacing=spacing, n_jobs=n_jobs, progress=progress)
        differences = settings_differences(self, scores_settings(scores))
        if differences:
            raise InputError(
                "the new cases were scored with settings other than the model's: " + "; ".join(differences)
                + ". Score them with the model's settings (model.assess(catalogue) does) or fit a model on "
                "scores made like them."
            )
        order = {"algorithm": list(self.algorithms), "label": list(self.labels), "metric": list(self.metrics)}
        keep = [v for v in ("similarity", "missing", "error") if v in scores]
        scores = scores[keep]
        if any([str(v) for v in scores[d].values] != want for d, want in order.items()):
            scores = scores.sel(order)
        out = assess_cube(scores, self.thresholds, self.reference)
        out.attrs = {"model_sha256": self.content_hash, "fusion": self.fusion, "metrics": ",".join(self.metrics),
                     "similarity_mode": self.similarity_mode, "label_scheme_text": self.scheme.describe(),
                     "assessed": _now()}
        return out

    def drift(
        self, assessments: xr.Dataset | Sequence[xr.Dataset], *, last: int | None = None, level: float = 0.01
    ) -> pd.DataFrame:
        """Compare recent assessments with the reference: alarm rates, median shifts, a drift flag.

        Parameters
        ----------
        assessments : xarray.Dataset or sequence of them
            Outputs of :meth:`assess`, in arrival order (several are concatenated over ``case``).
        last : int, optional
            Only the last ``last`` cases (default: all).
        level : float, default 0.01
            Family-wise error level of the flags (Holm over the table's rows).

        Returns
        -------
        pandas.DataFrame
            See :func:`qe_nb.core.drift.drift_table`.

        Examples
        --------
        >>> model = fit(_example_scores(), 0.1)
        >>> table = model.drift(model.assess(_example_scores()))
        >>> bool(table["drifted"].any())
        False
        """
        if not isinstance(assessments, xr.Dataset):
            items = list(assessments)
            if not items or not all(isinstance(a, xr.Dataset) for a in items):
                raise InputError("`assessments` must be the Dataset of model.assess or a non-empty list of them.")
            assessments = xr.concat([a.drop_vars("threshold", errors="ignore") for a in items], dim="case")
        for name in ("similarity", "alarms", "error"):
            if name not in assessments:
                raise InputError(f"`assessments` lacks {name!r}; pass what model.assess returned.")
        return drift_table(assessments, self.reference, self.thresholds, last=last, level=level)


def _int_grid(values: xr.DataArray) -> dict[str, Any]:
    nested = grid_to_nested(values)
    return {a: {b: {m: int(v) for m, v in row.items()} for b, row in lab.items()} for a, lab in nested.items()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fit(
    scores: xr.Dataset | str | os.PathLike,
    alpha: float | str | Mapping | xr.DataArray = 0.1,
    *,
    by: str | Sequence[str] | None = None,
    mad_scale: float | str = 1.0,
    pool: str = "algorithm",
) -> QualityModel:
    """Freeze the thresholds of a reference cohort into a :class:`QualityModel`.

    Parameters
    ----------
    scores : xarray.Dataset or path
        The reference cohort's scores (:func:`qe_nb.score`, or a file of
        :func:`qe_nb.save_scores`); their attrs say how they were scored.
    alpha : float, "entropy", mapping or xarray.DataArray, default 0.1
        See :func:`qe_nb.core.frozen.fit_alpha`: a number, ``"entropy"`` (calibrated without
        ground truth), a mapping group -> alpha over the one ``by`` dim, or a DataArray.
    by : str or sequence of str, optional
        The dims alpha varies over (e.g. ``"label"``).
    mad_scale : float or "normal", default 1.0
        See :func:`qe_nb.thresholds`.
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`qe_nb.thresholds`.

    Returns
    -------
    QualityModel
        Thresholds equal to ``qe_nb.thresholds(scores, alpha, mad_scale=mad_scale, pool=pool)``.

    Raises
    ------
    InputError
        For scores that are not a scores Dataset with its settings, or a bad alpha, by, pool
        or mad_scale.

    Warns
    -----
    UnreliableThresholdWarning
        As :func:`qe_nb.thresholds` (few cases, groups without spread).

    Examples
    --------
    >>> model = fit(_example_scores(), 0.1)
    >>> model.thresholds.sel(algorithm="z", label="foreground").values.round(3).tolist()
    [0.842, 1.357]
    """
    if isinstance(scores, (str, os.PathLike)):
        from qe_nb.pipeline.scores_file import load_scores

        scores = load_scores(scores)
    if not isinstance(scores, xr.Dataset) or "fusion" not in scores.attrs:
        raise InputError(
            "`scores` must be the scores Dataset of qe_nb.score (or its file): its attrs record the fusion, "
            f"metrics and label scheme the model must keep; got {type(scores).__name__}"
            + (" without a 'fusion' attr." if isinstance(scores, xr.Dataset) else ".")
        )
    sim = check_scores(scores)
    scale = check_mad_scale(mad_scale)
    pool = check_pool(pool)
    value, dims, method = fit_alpha(sim, alpha, by=by, mad_scale=scale, pool=pool)
    limits = fit_thresholds(sim, value, mad_scale=scale, pool=pool).transpose(*GROUP_DIMS)
    n_failed = int(sum(1 for e in scores["error"].values if str(e))) if "error" in scores else 0
    summary = reference_summary(sim, limits, mad_scale=scale, pool=pool, n_failed_cases=n_failed)
    settings = scores_settings(scores)
    from qe_nb import __version__

    return QualityModel(
        thresholds=limits.reset_coords(drop=True).assign_coords(higher_is_better=("metric", metric_directions(sim))),
        alpha=value, by=dims, alpha_method=method, mad_scale=scale, pool=pool,
        fusion=settings["fusion"], metrics=tuple(settings["metrics"]), labels=label_settings(scores),
        label_scheme=settings["label_scheme"], nsd_tolerance=settings["nsd_tolerance"],
        similarity_mode=settings["similarity_mode"], distance_units=settings["distance_units"],
        reference=summary, qe_nb_version=__version__, created=_now(),
    )


def load_model(path: str | os.PathLike) -> QualityModel:
    """Read a model written by :meth:`QualityModel.save`, validated.

    Raises
    ------
    InputError
        Naming the file: it is missing, not JSON (truncated), of an unknown format version,
        lacks a field, or its content does not match its ``content_sha256`` (edited).
        Nothing is half-loaded.

    Examples
    --------
    >>> import tempfile, os
    >>> bad = os.path.join(tempfile.mkdtemp(), "m.json")
    >>> _ = open(bad, "w").write('{"format": "qe_nb.QualityModel", "format_version": 99}')
    >>> load_model(bad)
    Traceback (most recent call last):
    ...
    qe_nb.exceptions.InputError: model file '...m.json' has format_version 99; this qe_nb reads version 1 only. ...
    """
    data = read_model_dict(path)
    return QualityModel(**parts_from_dict(data))


def _example_scores() -> xr.Dataset:
    """A tiny scored reference cohort for the docstrings (three members, eight cases)."""
    rng = np.random.default_rng(0)
    dice = np.clip(0.85 + 0.1 * rng.standard_normal((8, 3, 1, 1)), 0, 1)
    hd = np.abs(1 + rng.standard_normal((8, 3, 1, 1)))
    return xr.Dataset(
        {"similarity": (("case", "algorithm", "label", "metric"), np.concatenate([dice, hd], axis=3)),
         "error": ("case", np.array([""] * 8, dtype=object))},
        coords={"case": [f"c{i}" for i in range(8)], "algorithm": ["x", "y", "z"], "label": ["foreground"],
                "label_values": ("label", ["nonzero"]), "metric": ["dice", "hd95"],
                "higher_is_better": ("metric", [True, False])},
        attrs={"fusion": "mav", "similarity_mode": "fusion", "distance_units": "mm", "label_scheme": "binary",
               "metrics": "dice,hd95", "nsd_tolerance_mm": 1.0},
    )

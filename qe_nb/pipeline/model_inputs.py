"""What a :class:`qe_nb.QualityModel` assesses: new cases as scores, and their settings checked.

:func:`scores_of` turns whatever ``model.assess`` receives -- a catalogue of files, a scores
cube, one case's label maps in memory -- into a scores Dataset over ``case`` scored with the
model's settings; :func:`scores_settings` reads the settings a scores Dataset records, and
:func:`settings_differences` words every way they differ from the model's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError

if TYPE_CHECKING:
    from qe_nb.pipeline.model import QualityModel

__all__ = ["scores_settings", "label_settings", "settings_differences", "scores_of"]


def label_settings(data: xr.Dataset) -> dict[str, str]:
    """Structure name -> label values text (``"1,2,4"``, ``"nonzero"``) of a catalogue or scores Dataset.

    Without a ``label_values`` coordinate the values are ``""`` (unknown).

    Examples
    --------
    >>> ds = xr.Dataset(coords={"label": ["wt", "et"], "label_values": ("label", ["1,2,4", "4"])})
    >>> label_settings(ds)
    {'wt': '1,2,4', 'et': '4'}
    """
    names = [str(v) for v in data["label"].values]
    values = [str(v) for v in data["label_values"].values] if "label_values" in data.coords else [""] * len(names)
    return dict(zip(names, values))


def scores_settings(scores: xr.Dataset) -> dict[str, Any]:
    """The settings a scores Dataset records (attrs and coords), with qe_nb's defaults for absent ones.

    Examples
    --------
    >>> ds = xr.Dataset({"similarity": (("algorithm", "label", "metric"), np.zeros((1, 1, 1)))},
    ...                 coords={"algorithm": ["a"], "label": ["t"], "metric": ["dice"]}, attrs={"fusion": "mav"})
    >>> s = scores_settings(ds)
    >>> s["fusion"], s["metrics"], s["similarity_mode"], s["algorithms"]
    ('mav', ['dice'], 'fusion', ['a'])
    """
    attrs = scores.attrs
    return {
        "fusion": str(attrs.get("fusion", "")),
        "metrics": [str(m) for m in scores["metric"].values],
        "algorithms": [str(a) for a in scores["algorithm"].values],
        "labels": label_settings(scores),
        "label_scheme": str(attrs.get("label_scheme", "")),
        "nsd_tolerance": float(attrs.get("nsd_tolerance_mm", 1.0)),
        "similarity_mode": str(attrs.get("similarity_mode", "fusion")),
        "distance_units": str(attrs.get("distance_units", "mm")),
    }


def settings_differences(model: QualityModel, settings: Mapping[str, Any]) -> list[str]:
    """Every way ``settings`` (:func:`scores_settings`) differ from the model's, in words.

    Metric and member order do not matter; their sets do. The NSD tolerance matters only when
    the model has ``nsd``; label values ``""`` (unknown) match any.

    Examples
    --------
    >>> from qe_nb.pipeline.model import _example_scores, fit
    >>> model = fit(_example_scores(), 0.1)
    >>> settings_differences(model, {"fusion": "simple", "metrics": ["hd95", "dice"], "algorithms": ["x", "y"]})
    ["fusion 'simple' (the model's: 'mav')", "members ['x', 'y'] (lacking ['z']; the model's: ['x', 'y', 'z'])"]
    """
    out = []

    def differ(what: str, have: Any, want: Any) -> None:
        out.append(f"{what} {have!r} (the model's: {want!r})")

    if "fusion" in settings and settings["fusion"] != model.fusion:
        differ("fusion", settings["fusion"], model.fusion)
    if "metrics" in settings and set(settings["metrics"]) != set(model.metrics):
        differ("metrics", list(settings["metrics"]), list(model.metrics))
    if "algorithms" in settings and set(settings["algorithms"]) != set(model.algorithms):
        have, want = list(settings["algorithms"]), list(model.algorithms)
        extra = [a for a in have if a not in want]
        lacking = [a for a in want if a not in have]
        parts = ([f"unknown {extra}"] if extra else []) + ([f"lacking {lacking}"] if lacking else [])
        out.append(f"members {have} ({', '.join(parts)}; the model's: {want})")
    if "labels" in settings:
        have_labels, want_labels = dict(settings["labels"]), model.labels
        if set(have_labels) != set(want_labels):
            differ("labels", list(have_labels), list(want_labels))
        else:
            changed = {k: v for k, v in have_labels.items() if v and v != want_labels[k]}
            if changed:
                out.append("label values " + ", ".join(f"{k}={v} (the model's: {want_labels[k]})"
                                                       for k, v in changed.items()))
    if "similarity_mode" in settings and settings["similarity_mode"] != model.similarity_mode:
        differ("similarity mode", settings["similarity_mode"], model.similarity_mode)
    if "distance_units" in settings and settings["distance_units"] != model.distance_units:
        differ("distance units", settings["distance_units"], model.distance_units)
    if "nsd" in model.metrics and "nsd_tolerance" in settings \
            and float(settings["nsd_tolerance"]) != float(model.nsd_tolerance):
        differ("NSD tolerance (mm)", float(settings["nsd_tolerance"]), float(model.nsd_tolerance))
    return out


def scores_of(
    model: QualityModel,
    new: Any,
    *,
    cases: Sequence[str] | None = None,
    spacing: Sequence[float] | None = None,
    n_jobs: int | None = 1,
    progress: bool = False,
) -> xr.Dataset:
    """New cases as a scores Dataset over ``case`` (see :meth:`qe_nb.QualityModel.assess`)."""
    if isinstance(new, xr.Dataset) and "mask" in new:
        return _score_catalogue(model, new, cases=cases, n_jobs=n_jobs, progress=progress)
    if isinstance(new, xr.Dataset):
        if "similarity" not in new:
            raise InputError(
                "`new` must be a catalogue (qe_nb.open_ensemble), a scores Dataset (qe_nb.score) or label maps; "
                f"got a Dataset with variables {sorted(map(str, new.data_vars))}."
            )
        if "case" not in new["similarity"].dims:
            name = _one_case_name(cases)
            new = new.expand_dims(case=[name])
            new["similarity"] = new["similarity"].transpose("case", "algorithm", "label", "metric")
            if "error" not in new:
                new["error"] = ("case", np.array([""], dtype=object))
        elif cases is not None:
            wanted = [str(c) for c in cases]
            unknown = [c for c in wanted if c not in new.indexes["case"]]
            if unknown:
                raise InputError(f"`cases` names cases not in the scores: {unknown[:5]}.")
            new = new.sel(case=wanted)
        return new
    if spacing is None:
        raise InputError("`spacing` (z, y, x) is needed to assess label maps in memory; e.g. spacing=(1.0, 1.0, 1.0).")
    return _score_maps(model, new, name=_one_case_name(cases), spacing=spacing)


def _one_case_name(cases: Sequence[str] | None) -> str:
    if cases is None:
        return "case"
    names = [cases] if isinstance(cases, str) else [str(c) for c in cases]
    if len(names) != 1:
        raise InputError(f"`cases` must name the one case of label maps or a one-case scores Dataset; got {names}.")
    return names[0]


def _score_catalogue(model: QualityModel, ensemble: xr.Dataset, *, cases: Sequence[str] | None,
                     n_jobs: int | None, progress: bool) -> xr.Dataset:
    from qe_nb.pipeline.scoring import score

    present = [str(a) for a in ensemble["algorithm"].values]
    # files of other algorithms (a reference caught by the masks pattern, a member the model does
    # not know) are not scored; a member of the model without any file is refused
    settings = {"algorithms": [a for a in present if a in model.algorithms] if set(model.algorithms) <= set(present)
                else present, "labels": label_settings(ensemble)}
    differences = settings_differences(model, settings)
    if differences:
        raise InputError(
            "the catalogue does not match the model: " + "; ".join(differences)
            + ". Open it with the model's labels (open_ensemble(..., labels=model.scheme)) and members."
        )
    if present != list(model.algorithms):
        ensemble = ensemble.sel(algorithm=list(model.algorithms))
    if n_jobs != 1:
        return score(ensemble, fusion=model.fusion, metrics=model.metrics, nsd_tolerance=model.nsd_tolerance,
                     similarity=model.similarity_mode, cases=cases, n_jobs=n_jobs, progress=progress)
    return _score_serial(model, ensemble, cases)


def _score_serial(model: QualityModel, ensemble: xr.Dataset, cases: Sequence[str] | None) -> xr.Dataset:
    """The cases scored here, one by one, by the pipeline's unit of work (no process, no progress bar).

    The lean path of one new case: :func:`qe_nb.pipeline.one_case.score_case_safe` records a case
    whose files cannot be used in ``error``, as :func:`qe_nb.score` does; a case read in other
    distance units than the model's is an error of that case.
    """
    import warnings

    from qe_nb.core.case import metric_coords
    from qe_nb.exceptions import LabelValueWarning
    from qe_nb.pipeline.one_case import case_settings, score_case_safe
    from qe_nb.pipeline.scoring import label_value_summary

    index = {str(c): i for i, c in enumerate(ensemble["case"].values)}
    wanted = list(index)
    if cases is not None:  # in the catalogue's order, as qe_nb.score
        asked = {str(c) for c in cases}
        unknown = sorted(asked - set(index))
        if unknown:
            raise InputError(f"`cases` names cases not in the ensemble: {unknown[:5]}.")
        wanted = [c for c in wanted if c in asked]
    settings = case_settings(ensemble, model.fusion, tuple(model.metrics), model.nsd_tolerance,
                             similarity=model.similarity_mode)
    shape = (len(model.algorithms), len(model.labels), len(model.metrics))
    similarity = np.full((len(wanted), *shape), np.nan)
    errors, messages, ndim = [], [], 3
    for k, case in enumerate(wanted):
        # one case at a time in this process: its files are read in threads (no process start-up)
        result = score_case_safe(ensemble.isel(case=[index[case]]), case, settings, "record",
                                 threads=os.cpu_count() or 1)
        error = result["error"]
        if not error and result["units"] != model.distance_units:
            error = (f"case {case!r}: its distances are in {result['units']}, the model's in "
                     f"{model.distance_units}; a threshold in one unit cannot judge the other.")
        if not error:
            similarity[k] = result["similarity"]
            ndim = result["ndim"] or ndim
        errors.append(error)
        messages.extend(result.get("warnings", ()))
    if messages:
        warnings.warn(label_value_summary(messages, settings["label_scheme_text"]), LabelValueWarning, stacklevel=4)
    paths = ensemble["mask"].isel(case=[index[c] for c in wanted]).values
    return xr.Dataset(
        {
            "similarity": (("case", "algorithm", "label", "metric"), similarity),
            "error": ("case", np.array(errors, dtype=str)),
            "missing": (("case", "algorithm"), (paths == "") | pd.isna(paths)),
        },
        # plain str arrays: xarray inspects every element of an object array (a few ms per case)
        coords={"case": np.array(wanted, dtype=str), "algorithm": np.array(model.algorithms, dtype=str),
                "label": np.array(list(model.labels), dtype=str),
                "label_values": ("label", np.array(list(model.labels.values()), dtype=str)),
                **metric_coords(model.metrics, units=model.distance_units, ndim=ndim)},
        attrs={"fusion": model.fusion, "similarity_mode": model.similarity_mode,
               "distance_units": model.distance_units, "nsd_tolerance_mm": float(model.nsd_tolerance),
               "label_scheme": model.label_scheme},
    )


def _score_maps(model: QualityModel, maps: Any, *, name: str, spacing: Sequence[float]) -> xr.Dataset:
    from qe_nb.core.case import score_arrays

    members = list(model.algorithms)
    if isinstance(maps, Mapping):
        keys = [str(k) for k in maps]
        if set(keys) != set(members):
            extra = [k for k in keys if k not in members]
            lacking = [m for m in members if m not in keys]
            raise InputError(
                f"the label maps name members {keys}, the model {members}"
                + (f"; unknown: {extra}" if extra else "") + (f"; lacking: {lacking}" if lacking else "")
                + ". Pass None for a member without a segmentation (its rows are NaN and alarm)."
            )
        ordered = [maps[k] for k in members]
    elif isinstance(maps, xr.DataArray) and "algorithm" in maps.dims:
        ordered = {str(a): maps.sel(algorithm=a).values for a in maps["algorithm"].values}
        return _score_maps(model, ordered, name=name, spacing=spacing)
    else:
        ordered = list(maps) if isinstance(maps, (list, tuple)) else list(np.asarray(maps))
        if len(ordered) != len(members):
            raise InputError(
                f"got {len(ordered)} label maps; the model has {len(members)} members {members} (in that order)."
            )
    scores = score_arrays(ordered, spacing=spacing, labels=model.scheme, fusion=model.fusion, metrics=model.metrics,
                          nsd_tolerance=model.nsd_tolerance, algorithms=members, similarity=model.similarity_mode,
                          units=model.distance_units)
    scores = scores.expand_dims(case=[name])
    scores["similarity"] = scores["similarity"].transpose("case", "algorithm", "label", "metric")
    scores["missing"] = (("case", "algorithm"), np.array([[m is None for m in ordered]]))
    scores["error"] = ("case", np.array([""], dtype=object))
    return scores

"""One alpha per run: settle it once, store it with the scores, read it everywhere.

A scores file used to get a different alpha in every consumer (the demo's entropy calibration
of the label-mean cube, the worklist's of the full cube, the app's Pearson calibration). Now
:func:`settle_alpha` chooses the alpha of a run -- given, or calibrated -- and records it in the
scores' attrs, which :func:`qe_nb.save_scores` writes to the NetCDF file:

- ``alpha`` (float): the global alpha (for a per-group alpha, the mean of the groups'),
- ``alpha_method``: ``"given"``, ``"entropy"``, or ``"pearson:<metric>"`` /
  ``"combined:<metric>"`` (the quality metric of the fusion used),
- ``alpha_label_mean`` (0 or 1): whether the alarms are raised on the mean over the
  structures (:func:`qe_nb.label_mean`, the paper's MR setting) or per structure,
- ``alpha_pool`` (``"algorithm"`` or ``"all"``), ``alpha_mad_scale`` (float),
- ``alpha_by`` (``""`` or e.g. ``"label"``) and ``alpha_groups`` (``""`` or the per-group alpha
  as JSON: ``{"dims": [...], "coords": {...}, "values": [...]}``).

:func:`run_alpha` is what every consumer (sweep, worklist, apps, notebooks, report, CLI) calls:
the stored alpha when there is one (and it was settled for the same label-mean and pool
settings), otherwise the documented default -- alpha calibrated now by the entropy of the
alarm counts (:func:`qe_nb.calibrate` with ``objective="entropy"``, which needs no ground
truth), per structure, ``pool="algorithm"``. The default is deterministic, so consumers of a
file without a stored alpha still agree. :class:`RunAlpha` says in words which alpha it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.calibration import calibrate
from qe_nb.core.checks import (
    check_alpha,
    check_mad_scale,
    check_objective,
    check_pool,
    check_scores,
)
from qe_nb.core.statistics import case_quality
from qe_nb.core.statistics import label_mean as mean_over_labels
from qe_nb.exceptions import InputError

__all__ = ["RunAlpha", "settle_alpha", "run_alpha", "DEFAULT_ALPHA_METHOD"]

DEFAULT_ALPHA_METHOD = "entropy"
"""How :func:`run_alpha` settles the alpha of scores that store none: ground-truth free."""

_ATTRS = ("alpha", "alpha_method", "alpha_label_mean", "alpha_pool", "alpha_mad_scale", "alpha_by",
          "alpha_groups")


@dataclass(frozen=True)
class RunAlpha:
    """The alpha of a run and how it was chosen (see :func:`run_alpha`).

    Unpacks as ``alpha, how = run_alpha(scores)``.

    Attributes
    ----------
    alpha : float or xarray.DataArray
        What to pass as ``alpha`` to :func:`qe_nb.alarms`, :func:`qe_nb.worklist`, ...
    method : str
        ``"given"``, ``"entropy"``, ``"pearson:dice"``, ...
    label_mean : bool
        Whether ``alpha`` applies to the label-mean cube (use :meth:`similarity`).
    pool : str
        The ``pool=`` to pass with it.
    mad_scale : float
        The ``mad_scale=`` to pass with it.
    stored : bool
        True when read from the scores' attrs; False when calibrated now (the default).
    note : str
        Why a stored alpha was not used, or ``""``.
    """

    alpha: float | xr.DataArray
    method: str
    label_mean: bool
    pool: str = "algorithm"
    mad_scale: float = 1.0
    stored: bool = False
    note: str = ""

    def __iter__(self):
        yield self.alpha
        yield self.how

    @property
    def value_text(self) -> str:
        """``"α = 0.25"``, or ``"α per label: wt 0.10, et -0.30"`` for a per-group alpha."""
        if isinstance(self.alpha, xr.DataArray):
            parts = [f"{_name(k)} {float(v):.2f}" for k, v in _items(self.alpha)]
            return f"α per {', '.join(map(str, self.alpha.dims))}: " + ", ".join(parts)
        return f"α = {self.alpha:.2f}"

    @property
    def how(self) -> str:
        """How the alpha was chosen, in words (one line)."""
        kind = self.method.split(":", 1)
        what = {
            "given": "given",
            "entropy": "calibrated by the entropy of the alarm counts",
            "pearson": f"calibrated by Pearson r of the alarm count with the fusion's {kind[-1]}",
            "combined": f"calibrated by entropy and Pearson r with the fusion's {kind[-1]}",
        }.get(kind[0], self.method)
        cube = "the mean over the structures" if self.label_mean else "every structure"
        pool = "" if self.pool == "algorithm" else ", thresholds pooled over the members"
        where = "stored with the scores" if self.stored else "not stored with the scores: the default"
        note = f"; {self.note}" if self.note else ""
        return f"{what}, alarms on {cube}{pool}; {where}{note}"

    @property
    def text(self) -> str:
        """``value_text (how)``: what a table, figure or report header shows."""
        return f"{self.value_text} ({self.how})"

    def similarity(self, scores: xr.Dataset | xr.DataArray) -> xr.DataArray:
        """The cube this alpha applies to: ``scores["similarity"]``, or its label mean."""
        sim = check_scores(scores)
        return mean_over_labels(sim) if self.label_mean else sim


def _name(key: tuple) -> str:
    return "/".join(map(str, key))


def _items(alpha: xr.DataArray) -> list[tuple[tuple, float]]:
    flat = alpha.stack(_g=alpha.dims) if alpha.ndim > 1 else alpha
    keys = flat.indexes[flat.dims[0]]
    return [((k if isinstance(k, tuple) else (k,)), float(v)) for k, v in zip(keys, flat.values)]


def _groups_json(alpha: xr.DataArray) -> str:
    return json.dumps({
        "dims": [str(d) for d in alpha.dims],
        "coords": {str(d): [str(c) for c in alpha[d].values] for d in alpha.dims},
        "values": np.asarray(alpha.values, float).tolist(),
    })


def _groups_from_json(text: str) -> xr.DataArray:
    try:
        data = json.loads(text)
        return xr.DataArray(np.asarray(data["values"], float), dims=data["dims"],
                            coords={d: data["coords"][d] for d in data["dims"]}, name="alpha")
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"the scores' attr `alpha_groups` is not the JSON settle_alpha writes ({exc}); got "
            f"{text[:80]!r}. Settle the alpha again with qe_nb.settle_alpha(scores)."
        ) from None


def _quality(scores: xr.Dataset, metric: str, objective: str) -> xr.DataArray:
    if not isinstance(scores, xr.Dataset) or "quality" not in scores:
        raise InputError(
            f"`objective={objective!r}` needs the fusion's quality against a reference, but the "
            "scores hold no `quality` (no reference was catalogued); use objective='entropy'."
        )
    return case_quality(scores["quality"], metric, skipna=True)


def settle_alpha(
    scores: xr.Dataset,
    alpha: float | xr.DataArray | None = None,
    *,
    objective: str = DEFAULT_ALPHA_METHOD,
    quality_metric: str = "dice",
    label_mean: bool = False,
    pool: str = "algorithm",
    by: str | tuple[str, ...] | None = None,
    mad_scale: float | str = 1.0,
) -> xr.Dataset:
    """Choose the alpha of a run and record it in the scores' attrs (returns a new Dataset).

    Parameters
    ----------
    scores : xarray.Dataset
        The output of :func:`qe_nb.score` (or :func:`qe_nb.load_scores`).
    alpha : float or xarray.DataArray, optional
        The alpha to record (``alpha_method="given"``); by default it is calibrated.
    objective : {"entropy", "pearson", "combined"}, default "entropy"
        See :func:`qe_nb.calibrate`; ``"pearson"`` and ``"combined"`` use the fusion's
        ``quality_metric`` against the reference (``scores["quality"]``).
    quality_metric : str, default "dice"
        The quality metric for ``"pearson"`` / ``"combined"`` (recorded in the method).
    label_mean : bool, default False
        Raise the alarms on the mean over the structures (the paper's MR setting).
    pool : {"algorithm", "all"}, default "algorithm"
        See :func:`qe_nb.thresholds`.
    by : str or tuple of str, optional
        Calibrate one alpha per group (see :func:`qe_nb.calibrate`).
    mad_scale : float or "normal", default 1.0
        See :func:`qe_nb.thresholds`.

    Returns
    -------
    xarray.Dataset
        ``scores`` (the same variables, not copied) with the attrs ``alpha``, ``alpha_method``,
        ``alpha_label_mean``, ``alpha_pool``, ``alpha_mad_scale``, ``alpha_by``,
        ``alpha_groups`` (see the module docstring); :func:`qe_nb.save_scores` keeps them.

    Raises
    ------
    InputError
        For scores without ``similarity``, a bad alpha, objective, pool or mad_scale, or a
        quality-based objective without ``quality`` in the scores.

    Examples
    --------
    >>> sim = xr.DataArray(np.linspace(0.5, 0.95, 10).reshape(10, 1, 1, 1),
    ...                    dims=("case", "algorithm", "label", "metric"),
    ...                    coords={"case": [f"c{i}" for i in range(10)], "algorithm": ["x"],
    ...                            "label": ["t"], "metric": ["dice"]})
    >>> settled = settle_alpha(xr.Dataset({"similarity": sim}))
    >>> settled.attrs["alpha"], settled.attrs["alpha_method"]
    (0.0, 'entropy')
    >>> run_alpha(settled).text
    'α = 0.00 (calibrated by the entropy of the alarm counts, alarms on every structure; stored with the scores)'
    """
    if not isinstance(scores, xr.Dataset):
        raise InputError(f"`scores` must be the Dataset from qe_nb.score; got {type(scores).__name__}.")
    pool = check_pool(pool)
    scale = check_mad_scale(mad_scale)
    if not isinstance(label_mean, (bool, np.bool_)):
        raise InputError(f"`label_mean` must be True or False; got {label_mean!r}.")
    settings = RunAlpha(0.0, "given", bool(label_mean), pool, scale)
    sim = settings.similarity(scores)
    if alpha is not None:
        value, method = check_alpha(alpha, sim), "given"
    else:
        objective = check_objective(objective)
        quality = None if objective == "entropy" else _quality(scores, quality_metric, objective)
        value = calibrate(sim, objective=objective, quality=quality, by=by, mad_scale=scale, pool=pool)
        method = objective if objective == "entropy" else f"{objective}:{quality_metric}"
    grouped = isinstance(value, xr.DataArray)
    out = scores.copy()
    out.attrs = {k: v for k, v in scores.attrs.items() if k not in _ATTRS}
    out.attrs.update({
        "alpha": float(value.mean()) if grouped else float(value),
        "alpha_method": method,
        "alpha_label_mean": int(bool(label_mean)),
        "alpha_pool": pool,
        "alpha_mad_scale": float(scale),
        "alpha_by": ",".join(map(str, value.dims)) if grouped else "",
        "alpha_groups": _groups_json(value) if grouped else "",
    })
    return out


def _stored(attrs: dict[str, Any]) -> RunAlpha | None:
    if "alpha" not in attrs or "alpha_method" not in attrs:
        return None
    alpha = float(attrs["alpha"])
    groups = str(attrs.get("alpha_groups", "") or "")
    if not math.isfinite(alpha):
        return None
    return RunAlpha(
        _groups_from_json(groups) if groups else alpha,
        str(attrs["alpha_method"]),
        bool(int(attrs.get("alpha_label_mean", 0))),
        str(attrs.get("alpha_pool", "algorithm") or "algorithm"),
        float(attrs.get("alpha_mad_scale", 1.0)),
        stored=True,
    )


def run_alpha(
    scores: xr.Dataset, *, label_mean: bool | None = None, pool: str | None = None
) -> RunAlpha:
    """The alpha every consumer of a scores cube uses, and how it was chosen.

    Parameters
    ----------
    scores : xarray.Dataset
        Scores, with or without the attrs of :func:`settle_alpha`.
    label_mean, pool : optional
        What the caller will raise alarms on (``--label-mean``, ``--pool``); None: whatever
        the stored alpha was settled for (default: per structure, ``"algorithm"``). A stored
        alpha settled for other settings is not used (its number means something else); the
        default is calibrated for the asked settings instead, and :attr:`RunAlpha.note` says so.

    Returns
    -------
    RunAlpha
        ``alpha, how = run_alpha(scores)``; ``.similarity(scores)`` is the cube it applies
        to, ``.pool`` and ``.mad_scale`` the options to pass with it, ``.text`` the line to
        show (``"α = 0.25 (calibrated by the entropy of the alarm counts, ...)"``).

    Raises
    ------
    InputError
        For anything but a scores Dataset, or malformed stored attrs.

    Notes
    -----
    Without a usable stored alpha: :func:`qe_nb.calibrate` of the cube (its label mean when
    ``label_mean``) with ``objective="entropy"``, ``mad_scale=1``, the given ``pool``.
    """
    if not isinstance(scores, xr.Dataset):
        raise InputError(f"`scores` must be the Dataset from qe_nb.score; got {type(scores).__name__}.")
    stored = _stored(scores.attrs)
    note = ""
    if stored is not None:
        wrong = []
        if label_mean is not None and bool(label_mean) != stored.label_mean:
            wrong.append("the mean over the structures" if stored.label_mean else "every structure")
        if pool is not None and check_pool(pool) != stored.pool:
            wrong.append(f"pool={stored.pool!r}")
        if not wrong:
            return stored
        note = f"the stored {stored.value_text} is for {' and '.join(wrong)}"
    mean = bool(label_mean) if label_mean is not None else False
    pooled = check_pool(pool) if pool is not None else "algorithm"
    sim = RunAlpha(0.0, "given", mean).similarity(scores)
    value = calibrate(sim, objective=DEFAULT_ALPHA_METHOD, pool=pooled)
    return RunAlpha(float(value), DEFAULT_ALPHA_METHOD, mean, pooled, 1.0, stored=False, note=note)

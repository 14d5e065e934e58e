"""The alarm rate of a stream of assessed cases over time, against the reference, with the drift flag.

A frozen :class:`~qe_nb.QualityModel` judges each new case as it arrives
(:meth:`~qe_nb.QualityModel.assess`); :meth:`~qe_nb.QualityModel.drift` says whether the recent
cases alarm more often than the reference cohort did. :func:`plot_alarm_rate` shows both over
the order of arrival: per member, the share of its checks (structure x metric) that alarmed in
the last ``window`` cases, the same share in the reference cohort as a dashed line, and the
stretch where ``model.drift`` over the last ``last`` cases flags the member drawn thick, with a dot at each flagged case.
:func:`rolling_alarm_rate`, :func:`reference_alarm_rate` and :func:`drift_flags` return the
numbers the figure draws. The figure is built without ``pyplot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from qe_nb.exceptions import InputError
from qe_nb.ui.style import CANDIDATE_COLORS, MARKERS, new_axes

if TYPE_CHECKING:
    from qe_nb.pipeline.model import QualityModel

__all__ = ["plot_alarm_rate", "rolling_alarm_rate", "reference_alarm_rate", "drift_flags", "stack_assessments"]

_GROUP_DIMS = ("algorithm", "label", "metric")
_FLAG_WIDTH = 8.0  # points: the translucent band under a flagged stretch of a line


def stack_assessments(assessments: xr.Dataset | Sequence[xr.Dataset]) -> xr.Dataset:
    """One Dataset over ``case`` (arrival order) from one assessment or a list of them.

    Parameters
    ----------
    assessments : xarray.Dataset or sequence of them
        Outputs of :meth:`QualityModel.assess` (or :func:`qe_nb.pipeline.watch.stored_assessments`),
        in arrival order.

    Returns
    -------
    xarray.Dataset
        The assessments concatenated over ``case`` (the per-model ``threshold`` dropped).

    Raises
    ------
    InputError
        For an empty list, something that is not an assessment Dataset, or one without
        ``alarms`` and ``error``.
    """
    if isinstance(assessments, xr.Dataset):
        stacked = assessments
    else:
        items = list(assessments) if isinstance(assessments, Sequence) and not isinstance(assessments, str) else None
        if not items or not all(isinstance(a, xr.Dataset) for a in items):
            raise InputError("`assessments` must be the Dataset of model.assess or a non-empty list of them; "
                             f"got {type(assessments).__name__}.")
        stacked = xr.concat([a.drop_vars("threshold", errors="ignore") for a in items], dim="case")
    for name in ("alarms", "error"):
        if name not in stacked:
            raise InputError(f"`assessments` lacks {name!r}; pass what model.assess returned.")
    if "case" not in stacked["alarms"].dims:
        raise InputError(f"`assessments`' alarms must have a 'case' dim; got dims {stacked['alarms'].dims}.")
    return stacked


def _check_by(by: str | Sequence[str]) -> tuple[str, ...]:
    dims = (by,) if isinstance(by, str) else tuple(by)
    if "algorithm" not in dims or not set(dims) <= set(_GROUP_DIMS) or len(set(dims)) != len(dims):
        raise InputError(
            "`by` must be 'algorithm' or a sequence of distinct dims from ('algorithm', 'label', 'metric') that "
            f"includes 'algorithm' (one line per member, or per member x label / metric); got {by!r}."
        )
    return tuple(d for d in _GROUP_DIMS if d in dims)


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"`{name}` must be a positive int (a number of cases); got {value!r}.")
    return int(value)


def _columns(keys: list[tuple[str, ...]], by: tuple[str, ...]) -> pd.Index:
    if len(by) == 1:
        return pd.Index([k[0] for k in keys], name=by[0])
    return pd.MultiIndex.from_tuples(keys, names=list(by))


def _line_keys(alarms: xr.DataArray, by: tuple[str, ...]) -> list[tuple[str, ...]]:
    stacked = alarms.stack(_line=list(by)) if len(by) > 1 else alarms.rename({by[0]: "_line"})
    values = stacked.indexes["_line"]
    return [tuple(str(v) for v in (k if isinstance(k, tuple) else (k,))) for k in values]


def rolling_alarm_rate(
    assessments: xr.Dataset | Sequence[xr.Dataset], *, window: int = 10, by: str | Sequence[str] = "algorithm"
) -> pd.DataFrame:
    """The share of checks that alarmed over the last ``window`` arrivals, per member (or finer).

    Parameters
    ----------
    assessments : xarray.Dataset or sequence of them
        Outputs of :meth:`QualityModel.assess`, in arrival order.
    window : int, default 10
        Number of arrivals in the window (cases that failed count as arrivals but not in the
        rate).
    by : str or sequence of str, default "algorithm"
        The dims that keep their own line: ``"algorithm"`` (a member's alarms over its
        structures and metrics), or ``("algorithm", "metric")``, ``("algorithm", "label")``,
        ``("algorithm", "label", "metric")``.

    Returns
    -------
    pandas.DataFrame
        Index ``case`` (arrival order), one column per line (a MultiIndex over ``by`` when it
        has more than one dim): the number of alarming checks divided by the number of checks
        of the cases in the window that could be scored (those with an empty ``error``). NaN
        until ``window`` cases have arrived and for a window of failed cases only.

    Raises
    ------
    InputError
        For a bad ``window`` or ``by``, or ``assessments`` that are not assessments.

    Examples
    --------
    >>> alarms = np.zeros((4, 2, 1, 1), bool); alarms[2:, 1] = True
    >>> ds = xr.Dataset({"alarms": (("case", "algorithm", "label", "metric"), alarms),
    ...                  "error": ("case", ["", "", "", ""])},
    ...                 coords={"case": ["c1", "c2", "c3", "c4"], "algorithm": ["a", "b"], "label": ["t"],
    ...                         "metric": ["dice"]})
    >>> rolling_alarm_rate(ds, window=2)["b"].tolist()
    [nan, 0.0, 0.5, 1.0]
    """
    ds = stack_assessments(assessments)
    window = _check_count(window, "window")
    by = _check_by(by)
    alarms = ds["alarms"].transpose("case", *_GROUP_DIMS)
    rest = [d for d in _GROUP_DIMS if d not in by]
    share = alarms.astype(float).mean(rest) if rest else alarms.astype(float)
    keys = _line_keys(share, by)
    per_case = share.transpose("case", *by).values.reshape(ds.sizes["case"], len(keys))
    valid = np.array([not str(e) for e in ds["error"].values], dtype=bool)
    per_case = np.where(valid[:, None], per_case, 0.0)
    kernel = np.ones(window)
    total = np.stack([np.convolve(per_case[:, k], kernel)[: len(valid)] for k in range(len(keys))], axis=1)
    scored = np.convolve(valid.astype(float), kernel)[: len(valid)]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(scored[:, None] > 0, total / scored[:, None], np.nan)
    rate[: window - 1] = np.nan
    index = pd.Index([str(c) for c in ds["case"].values], name="case")
    return pd.DataFrame(rate, index=index, columns=_columns(keys, by))


def reference_alarm_rate(model: QualityModel, *, by: str | Sequence[str] = "algorithm") -> pd.Series:
    """The share of checks that alarmed in the model's reference cohort, per line of :func:`rolling_alarm_rate`.

    Parameters
    ----------
    model : QualityModel
        The frozen model (its ``reference["alarm_rate"]`` per algorithm x label x metric).
    by : str or sequence of str, default "algorithm"
        As for :func:`rolling_alarm_rate`.

    Returns
    -------
    pandas.Series
        The mean of the reference alarm rates over the dims not in ``by``, indexed like the
        columns of :func:`rolling_alarm_rate`.
    """
    by = _check_by(by)
    rate = model.reference["alarm_rate"].transpose(*_GROUP_DIMS)
    rest = [d for d in _GROUP_DIMS if d not in by]
    rate = rate.mean(rest) if rest else rate
    keys = _line_keys(rate, by)
    return pd.Series(rate.transpose(*by).values.ravel(), index=_columns(keys, by), name="reference_rate")


def drift_flags(
    assessments: xr.Dataset | Sequence[xr.Dataset],
    model: QualityModel,
    *,
    last: int = 20,
    by: str | Sequence[str] = "algorithm",
    level: float = 0.01,
) -> pd.DataFrame:
    """Whether ``model.drift`` flagged each line as each case arrived.

    Parameters
    ----------
    assessments : xarray.Dataset or sequence of them
        Outputs of :meth:`QualityModel.assess`, in arrival order.
    model : QualityModel
        The model that assessed them.
    last : int, default 20
        After each arrival, ``model.drift(cases so far, last=last, level=level)``: the drift
        test over the most recent ``last`` cases (all of them while fewer have arrived).
    by : str or sequence of str, default "algorithm"
        As for :func:`rolling_alarm_rate`. A line is flagged when a drifted row of the table
        matches it: for ``"algorithm"`` any row of the member (its ``flagged_members``), for
        finer lines the rows of that member's label and / or metric.
    level : float, default 0.01
        As for :meth:`QualityModel.drift`.

    Returns
    -------
    pandas.DataFrame
        bool, shaped like :func:`rolling_alarm_rate` (index ``case``, one column per line).
        False while no case could be scored yet.

    Raises
    ------
    InputError
        For a bad ``last``, ``level`` or ``by`` (the messages of :meth:`QualityModel.drift`).
    """
    ds = stack_assessments(assessments)
    last = _check_count(last, "last")
    by = _check_by(by)
    keys = list(reference_alarm_rate(model, by=by).index)
    keys = [k if isinstance(k, tuple) else (k,) for k in keys]
    n = ds.sizes["case"]
    flags = np.zeros((n, len(keys)), dtype=bool)
    valid = np.array([not str(e) for e in ds["error"].values], dtype=bool)
    for i in range(n):
        if not valid[max(0, i + 1 - last): i + 1].any():
            continue  # nothing scored in the window: the drift test has no case
        table = model.drift(ds.isel(case=slice(0, i + 1)), last=last, level=level)
        drifted = table[table["drifted"]]
        if len(by) > 1:
            drifted = drifted[drifted["label"] != "*"]
        hit = set(drifted[list(by)].itertuples(index=False, name=None))
        flags[i] = [k in hit for k in keys]
    index = pd.Index([str(c) for c in ds["case"].values], name="case")
    return pd.DataFrame(flags, index=index, columns=_columns(keys, by))


def plot_alarm_rate(
    assessments: xr.Dataset | Sequence[xr.Dataset],
    model: QualityModel | None = None,
    *,
    window: int = 10,
    by: str | Sequence[str] = "algorithm",
    last: int = 20,
    level: float = 0.01,
    ax: Axes | None = None,
) -> Figure:
    """The rolling alarm rate of each member over the order of arrival, with its reference rate and drift flag.

    Parameters
    ----------
    assessments : xarray.Dataset or sequence of them
        Outputs of :meth:`QualityModel.assess` (or
        :func:`qe_nb.pipeline.watch.stored_assessments`), in arrival order.
    model : QualityModel, optional
        The model that assessed them. With it, each line's reference rate is drawn dashed in
        the line's colour and the stretch where ``model.drift`` flags the line is drawn thick with dots at
        the flagged cases (:func:`drift_flags`), its first flag annotated.
    window : int, default 10
        Arrivals in the rolling window of the rate (:func:`rolling_alarm_rate`).
    by : str or sequence of str, default "algorithm"
        One line per member (``"algorithm"``), or per member x metric / label (markers tell
        the metrics or labels apart).
    last : int, default 20
        Cases in the drift test after each arrival (:func:`drift_flags`).
    level : float, default 0.01
        Family-wise error level of the drift flag.
    ax : matplotlib.axes.Axes, optional
        Draw here; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        x: the new cases in order of arrival (1, 2, ...); y: share of checks that alarm. Lines
        carry ``gid`` ``"rate:<line>"``, ``"reference:<line>"`` and ``"flagged:<line>"``, where
        ``<line>`` is the member (or ``member/metric``, ...).

    Raises
    ------
    InputError
        For a bad ``window``, ``last``, ``by`` or ``ax``, assessments that are not
        assessments, or members the model does not know.

    Examples
    --------
    >>> alarms = np.zeros((12, 2, 1, 1), bool); alarms[6:, 1] = True
    >>> ds = xr.Dataset({"alarms": (("case", "algorithm", "label", "metric"), alarms),
    ...                  "error": ("case", [""] * 12)},
    ...                 coords={"case": [f"c{i}" for i in range(12)], "algorithm": ["a", "b"], "label": ["t"],
    ...                         "metric": ["dice"]})
    >>> fig = plot_alarm_rate(ds, window=4)
    >>> [line.get_gid() for line in fig.axes[0].get_lines()]
    ['rate:a', 'rate:b']
    """
    ds = stack_assessments(assessments)
    by = _check_by(by)
    rates = rolling_alarm_rate(ds, window=window, by=by)
    last = _check_count(last, "last")
    ax = new_axes(ax, (8.0, 4.0))
    keys = [k if isinstance(k, tuple) else (k,) for k in rates.columns]
    reference = flags = None
    if model is not None:
        members = [str(a) for a in ds["algorithm"].values]
        unknown = sorted(set(members) - set(model.algorithms))
        if unknown:
            raise InputError(f"`assessments` have members the model does not know: {unknown}; the model's are "
                             f"{list(model.algorithms)}. Pass the model that assessed them.")
        reference = reference_alarm_rate(model, by=by)
        flags = drift_flags(ds, model, last=last, by=by, level=level)
    x = np.arange(1, len(rates) + 1)
    algorithms = list(dict.fromkeys(k[0] for k in keys))
    subkeys = list(dict.fromkeys(k[1:] for k in keys))
    step = max(1, len(x) // 8)
    for column, key in zip(rates.columns, keys):
        name = "/".join(key)
        color = CANDIDATE_COLORS[algorithms.index(key[0]) % len(CANDIDATE_COLORS)]
        marker = MARKERS[subkeys.index(key[1:]) % len(MARKERS)] if len(by) > 1 else None
        y = rates[column].to_numpy(float)
        ax.plot(x, y, color=color, linewidth=1.8, marker=marker, markevery=step, label=" · ".join(key),
                gid=f"rate:{name}", zorder=3)
        if reference is not None:
            ax.axhline(float(reference[column]), color=color, linestyle="dashed", linewidth=1.0,
                       gid=f"reference:{name}", zorder=2)
        if flags is not None and flags[column].any():
            on = flags[column].to_numpy(bool)
            ax.plot(x, np.where(on, y, np.nan), color=to_rgba(color, 0.35), linewidth=_FLAG_WIDTH,
                    solid_capstyle="round", marker="o", markersize=4, markerfacecolor=color,
                    markeredgecolor="black", markeredgewidth=0.6, gid=f"flagged:{name}", zorder=4)
            first = int(np.argmax(on))
            if np.isfinite(y[first]):
                ax.annotate(f"{' · '.join(key)} flagged\n(case {first + 1}: {rates.index[first]})",
                            xy=(x[first], y[first]), xytext=(-24, -34 if y[first] > 0.6 else 22),
                            textcoords="offset points", ha="right", va="center", fontsize="small", color=color,
                            arrowprops={"arrowstyle": "-", "color": color},
                            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    handles, labels = ax.get_legend_handles_labels()
    if reference is not None:
        handles += [Line2D([], [], color="0.4", linestyle="dashed", linewidth=1.0),
                    Line2D([], [], color=to_rgba("0.4", 0.35), linewidth=_FLAG_WIDTH, marker="o", markersize=4,
                           markerfacecolor="0.4", markeredgecolor="black", markeredgewidth=0.6)]
        labels += ["reference rate", f"drift flagged\n(last {last} cases)"]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set_xlim(0.5, len(x) + 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("new case, in order of arrival")
    what = "member's checks" if by == ("algorithm",) else "checks"
    ax.set_ylabel(f"share of the {what}\nthat alarm (last {window} cases)")
    ax.set_title(f"Alarm rate over the last {window} cases" + ("" if model is None else ", against the reference"),
                 fontsize="medium")
    ax.grid(axis="y", color="0.9", linewidth=0.8)
    return ax.figure

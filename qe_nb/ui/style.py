"""Colours, line styles and the small figure helpers every figure module shares.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common forms
of colour blindness; as in Kofler et al. 2021 the fusion is drawn in *bluish green* and the
ground truth in *reddish purple*. Figures are built with :class:`matplotlib.figure.Figure`
directly (never ``pyplot``), so they leave no global state behind.

References
----------
Okabe M, Ito K (2008). Color Universal Design (CUD): how to make figures and presentations
that are friendly to colorblind people. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from qe_nb.exceptions import InputError

__all__ = [
    "OKABE_ITO",
    "TOL_BRIGHT",
    "FUSION_COLOR",
    "REFERENCE_COLOR",
    "CANDIDATE_COLORS",
    "HIGHLIGHT_COLOR",
    "POINT_COLOR",
    "LINESTYLES",
    "MARKERS",
    "new_figure",
    "new_axes",
    "plural",
    "count_ticks",
    "units_text",
    "metric_units",
    "APP_FONT_SIZE",
    "app_text",
]

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
"""The eight colours of Okabe & Ito (2008), by name."""

FUSION_COLOR = OKABE_ITO["bluish_green"]
"""The fusion's colour, as in the paper's Figures 2-3."""

REFERENCE_COLOR = OKABE_ITO["reddish_purple"]
"""The ground truth's colour, as in the paper's Figure 2."""

TOL_BRIGHT: dict[str, str] = {
    "blue": "#4477AA",
    "cyan": "#66CCEE",
    "green": "#228833",
    "yellow": "#CCBB44",
    "red": "#EE6677",
    "purple": "#AA3377",
    "grey": "#BBBBBB",
}
"""Paul Tol's colour-blind-safe "bright" scheme (Tol 2021, Colour Schemes, SRON/EPS/TN/09-002)."""

CANDIDATE_COLORS: tuple[str, ...] = (
    TOL_BRIGHT["blue"],
    TOL_BRIGHT["yellow"],
    TOL_BRIGHT["red"],
    TOL_BRIGHT["grey"],
    OKABE_ITO["black"],
    TOL_BRIGHT["cyan"],
)
"""Colours of the candidates (and of other series): Tol's bright scheme without its green and
purple, which are too close to the fusion's bluish green and the reference's reddish purple.
Five members get three distinct hues and light grey and black (not two oranges and two
blues); a sixth gets cyan, and line styles vary after that."""

LINESTYLES: tuple[str, ...] = ("solid", "dashed", "dotted", "dashdot")
"""Line styles, cycled once the six candidate colours are used up, so a 7th+ candidate differs."""

MARKERS: tuple[str, ...] = ("o", "s", "D", "^", "v", "P", "X")
"""Marker shapes of the series (labels in the thresholds plot, r curves in the sweep)."""

POINT_COLOR = OKABE_ITO["blue"]
"""The colour of one-per-case points and bars (Figure 4, the alarm histogram)."""

HIGHLIGHT_COLOR = OKABE_ITO["reddish_purple"]
"""The colour that marks the chosen α (sweep line and heatmap row, sweep table row)."""


APP_FONT_SIZE = 12.5
"""The base font size (points) of the apps' figures. The apps render at 72 dpi, where a point
is a pixel, so the smallest text the figures use ("small", 0.833 of the base) is 10.4 px and tick
labels, axis labels and titles ("medium") are 12.5 px. matplotlib's own 10 pt base would make
the legends and heatmap numbers 8 px (and "x-small" 7 px)."""


@contextlib.contextmanager
def app_text() -> Iterator[None]:
    """Build and draw an app's figure with :data:`APP_FONT_SIZE` as the base font size.

    Relative sizes ("small", "medium") are resolved against it when a text or tick is
    created, and tick labels are created while drawing, so both must happen inside. The
    previous rcParams are restored on exit (figures never change them for good).
    """
    with matplotlib.rc_context({"font.size": APP_FONT_SIZE}):
        yield


def new_figure(fig: Figure | None, figsize: tuple[float, float]) -> Figure:
    """The caller's figure, cleared, or a new constrained-layout figure (no pyplot)."""
    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    if not isinstance(fig, Figure):
        raise InputError(f"`fig` must be a matplotlib Figure or None; got {type(fig).__name__}.")
    fig.clear()
    return fig


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """The caller's axes, or the axes of a new constrained-layout figure (no pyplot)."""
    if ax is None:
        return Figure(figsize=figsize, layout="constrained").add_subplot()
    if not isinstance(ax, Axes):
        raise InputError(f"`ax` must be a matplotlib Axes or None; got {type(ax).__name__}.")
    return ax


def plural(n: int, word: str) -> str:
    """``"1 case"``, ``"2 cases"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def count_ticks(ax: Axes, top: int) -> None:
    """A tick at every alarm count up to 10; beyond that, at most 11 whole-number ticks.

    Every tick label is a text artist to lay out and draw, so a cohort with 30 possible
    alarms gets a tick every 5 (or 2), not 31 labels.
    """
    if top <= 10:
        ax.set_xticks(range(top + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True, steps=[1, 2, 5, 10]))


def units_text(units: str) -> str:
    """A metric's units for an axis label: ``"1"`` (a ratio) reads "dimensionless"."""
    return "dimensionless" if units in {"1", ""} else units


def metric_units(cube: Any, metric: str) -> str:
    """The units of ``metric`` in a scores cube: never a hard-coded "mm".

    Parameters
    ----------
    cube : xarray.Dataset or xarray.DataArray
        A scores cube or one of its variables (``similarity``, ``quality``, thresholds).
    metric : str
        A metric id.

    Returns
    -------
    str
        The ``metric`` coord ``units`` of ``metric`` when the cube carries it; else the
        registry's units (:data:`qe_nb.core.metric_specs.METRICS`), with "mm" read as the
        cube's ``distance_units`` attribute ("px" for images without spacing) when it has
        one; "1" for an unknown metric.

    Examples
    --------
    >>> import xarray as xr
    >>> sim = xr.DataArray([0.9, 4.0], dims="metric", coords={"metric": ["dice", "hd95"],
    ...                    "units": ("metric", ["1", "px"])})
    >>> metric_units(sim, "hd95"), metric_units(sim, "dice")
    ('px', '1')
    >>> metric_units(xr.Dataset(attrs={"distance_units": "px"}), "assd")
    'px'
    """
    from qe_nb.core.metric_specs import METRICS

    coords = getattr(cube, "coords", {})
    if "units" in coords and "metric" in coords and metric in list(coords["metric"].values):
        metrics = [str(m) for m in coords["metric"].values]
        return str(coords["units"].values[metrics.index(metric)])
    spec = METRICS.get(metric)
    units = "1" if spec is None else spec.units
    distance_units = str(getattr(cube, "attrs", {}).get("distance_units", "") or "")
    if distance_units and units.startswith("mm"):
        units = distance_units + units[2:]
    return units

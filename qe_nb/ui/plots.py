"""All matplotlib figures of qe_nb in one namespace (``from qe_nb.ui import plots``).

The figures live in :mod:`qe_nb.ui.figures` (Figure 4, the alarm histogram),
:mod:`qe_nb.ui.sweep_figures` (α sweep, thresholds), :mod:`qe_nb.ui.overlay` (a case's
outlines on a slice), :mod:`qe_nb.ui.render` (figure to PNG) and :mod:`qe_nb.ui.style`
(colours); this module re-exports their public names for notebooks and scripts.
"""

from __future__ import annotations

from qe_nb.ui.figures import (
    alarm_count_vs_quality,
    alarm_histogram,
    save_figures,
    update_alarm_count_vs_quality,
)
from qe_nb.ui.overlay import OverlayOptions, case_overlay, center_of_mass_index
from qe_nb.ui.render import figure_png
from qe_nb.ui.style import CANDIDATE_COLORS, FUSION_COLOR, OKABE_ITO, REFERENCE_COLOR
from qe_nb.ui.sweep_figures import sweep_plot, threshold_plot

__all__ = [
    "OKABE_ITO",
    "FUSION_COLOR",
    "REFERENCE_COLOR",
    "CANDIDATE_COLORS",
    "alarm_count_vs_quality",
    "update_alarm_count_vs_quality",
    "figure_png",
    "alarm_histogram",
    "sweep_plot",
    "threshold_plot",
    "case_overlay",
    "center_of_mass_index",
    "OverlayOptions",
    "save_figures",
]

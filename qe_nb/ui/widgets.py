"""The ipywidgets apps in one namespace (``from qe_nb.ui.widgets import CalibrationExplorer``).

- :class:`CalibrationExplorer` (:mod:`qe_nb.ui.explorer`) -- calibrate α by hand or
  automatically and watch alarms, thresholds and the worklist follow;
- :class:`CaseViewer` (:mod:`qe_nb.ui.viewer`) -- one case's outlines on a slice;
- :func:`combine_alpha` (:mod:`qe_nb.ui.controls`) -- global α plus per-group offsets.

Without ipywidgets the apps raise an :class:`ImportError` with the install hint
``pip install "qe-nb[notebook]"``.
"""

from __future__ import annotations

from qe_nb.ui.controls import OVERRIDE_DIMS, combine_alpha
from qe_nb.ui.explorer import CalibrationExplorer
from qe_nb.ui.viewer import CaseViewer

__all__ = ["CalibrationExplorer", "CaseViewer", "combine_alpha", "OVERRIDE_DIMS"]

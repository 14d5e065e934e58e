"""The α controls of the calibration app: the global α, per-group offsets (Δα), and which
metrics, labels and algorithms count; :func:`combine_alpha` turns them into the α that
:func:`qe_nb.alarms` takes.

The slider's range and step are the core's (:data:`qe_nb.core.calibration.ALPHA_RANGE`,
:data:`qe_nb.core.calibration.ALPHA_STEP`), the range :func:`qe_nb.calibrate` searches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from qe_nb.core.calibration import ALPHA_RANGE, ALPHA_STEP
from qe_nb.exceptions import InputError
from qe_nb.ui.common import check_number, ipywidgets

__all__ = ["AlphaControls", "combine_alpha", "OVERRIDE_DIMS", "SELECTION_DIMS"]

OVERRIDE_DIMS: tuple[str, ...] = ("label", "algorithm", "metric")
"""The dims along which α can be overridden, in the order of the Accordion's sections."""

SELECTION_DIMS: tuple[str, ...] = ("metric", "label", "algorithm")
"""The dims whose names can be checked or unchecked, in the order of their columns."""

def combine_alpha(
    global_alpha: float,
    overrides: Mapping[str, Mapping[str, float | None]] | None = None,
    *,
    coords: Mapping[str, Sequence[str]] | None = None,
) -> float | xr.DataArray:
    """The α passed to :func:`qe_nb.alarms`: the global α plus the per-group offsets.

    Parameters
    ----------
    global_alpha : float
        The global α.
    overrides : mapping dim -> (mapping name -> float or None), optional
        Per-``label``, per-``algorithm`` and per-``metric`` offsets (Δα). ``None`` (or a
        name left out) means "no override": that group uses the global α.
    coords : mapping dim -> sequence of str, optional
        The names of each dim that the result covers (the selected sub-cube's coords); by
        default the names of the overrides. Overrides of names not listed are ignored.

    Returns
    -------
    float or xarray.DataArray
        ``float(global_alpha)`` when no override is set, else a DataArray named ``alpha``
        over the overridden dims (in the order ``algorithm, label, metric``) holding
        ``global + Δ(label) + Δ(algorithm) + Δ(metric)``.

    Raises
    ------
    InputError
        For an unknown dim or a non-finite number.

    Notes
    -----
    Overrides *add up*: the α of group (a, l, m) is ``α + Δ_label[l] + Δ_algorithm[a] +
    Δ_metric[m]``, an unset override contributing 0. This is unambiguous when several
    overrides touch one group (no rule is needed for which one is "more specific"), and a
    per-group α is an ordinary DataArray that :func:`qe_nb.alarms` broadcasts.

    Examples
    --------
    >>> combine_alpha(0.1)
    0.1
    >>> a = combine_alpha(0.1, {"label": {"edema": 0.5, "necrosis": None},
    ...                         "metric": {"hd95": -0.1}},
    ...                   coords={"label": ["edema", "necrosis"], "metric": ["dice", "hd95"]})
    >>> a.dims, a.values.round(2).tolist()
    (('label', 'metric'), [[0.6, 0.5], [0.1, 0.0]])
    """
    base = check_number(global_alpha, "global_alpha")
    alpha: float | xr.DataArray = base
    overrides = overrides or {}
    unknown = [d for d in overrides if d not in OVERRIDE_DIMS]
    if unknown:
        raise InputError(
            f"`overrides` has unknown dim(s) {unknown}; expected a subset of {list(OVERRIDE_DIMS)}."
        )
    parts = []
    for dim in ("algorithm", "label", "metric"):
        given = {str(k): v for k, v in (overrides.get(dim) or {}).items() if v is not None}
        names = [str(n) for n in (coords[dim] if coords and dim in coords else given)]
        offsets = [check_number(given[n], f"overrides[{dim!r}][{n!r}]") if n in given else 0.0
                   for n in names]
        if any(n in given for n in names):
            parts.append(xr.DataArray(np.asarray(offsets, float), dims=dim, coords={dim: names}))
    for part in parts:
        alpha = alpha + part
    if isinstance(alpha, xr.DataArray):
        alpha.name = "alpha"
    return alpha



CALIBRATE_BY: dict[str, str | None] = {
    "global": None,
    "per label": "label",
    "per algorithm": "algorithm",
    "per metric": "metric",
}
"""What *Calibrate* calibrates: one global α (the Δα offsets are cleared, and the app says
so), or one α per group (:func:`qe_nb.calibrate` with ``by=``), shown as the global α (their
median) plus a Δα per group."""


class AlphaControls:
    """The controls of α and of what counts: one part of :class:`CalibrationExplorer`.

    Parameters
    ----------
    names : mapping dim -> list of str
        The names of ``metric``, ``label`` and ``algorithm`` in the cube.
    alpha : float
        The initial global α (the slider widens to include it).
    objectives : sequence of str
        The calibration objectives offered (``"entropy"`` first).

    Attributes
    ----------
    alpha_slider, alpha_readout, summary, objective_dropdown, calibrate_button
        The global α, its readout, the one-line summary, and the calibration controls.
    by_dropdown, calibration_note
        What *Calibrate* calibrates (:data:`CALIBRATE_BY`) and what it did, in words.
    checkboxes : dict dim -> (dict name -> Checkbox)
        Which metrics, labels and algorithms count.
    override_checkboxes, override_sliders : dict dim -> (dict name -> widget)
        Per-group Δα: on/off and value.
    overrides_accordion : ipywidgets.Accordion
    """

    def __init__(self, names: Mapping[str, list[str]], *, alpha: float,
                 objectives: Sequence[str]) -> None:
        w = ipywidgets()
        lo, hi = ALPHA_RANGE
        self.alpha_slider = w.FloatSlider(
            value=alpha, min=min(lo, alpha), max=max(hi, alpha), step=ALPHA_STEP,
            readout_format=".2f", continuous_update=False, description="α",
            layout=w.Layout(width="420px"),
        )
        self.alpha_slider.add_class("qe-alpha-slider")
        self.alpha_readout = w.HTML()
        self.alpha_readout.add_class("qe-alpha-readout")
        self.checkboxes: dict[str, dict[str, Any]] = {
            dim: {n: w.Checkbox(value=True, description=n, indent=False,
                                layout=w.Layout(width="auto")) for n in names[dim]}
            for dim in SELECTION_DIMS
        }
        self.override_checkboxes: dict[str, dict[str, Any]] = {}
        self.override_sliders: dict[str, dict[str, Any]] = {}
        sections = []
        for dim in OVERRIDE_DIMS:
            self.override_checkboxes[dim], self.override_sliders[dim] = {}, {}
            rows = []
            for n in names[dim]:
                box = w.Checkbox(value=False, description=n, indent=False,
                                 layout=w.Layout(width="160px"))
                slider = w.FloatSlider(value=0.0, min=lo, max=hi, step=ALPHA_STEP,
                                       readout_format="+.2f", continuous_update=False,
                                       description="Δα", disabled=True)
                slider.add_class("qe-override-slider")
                self.override_checkboxes[dim][n], self.override_sliders[dim][n] = box, slider
                rows.append(w.HBox([box, slider]))
            sections.append(w.VBox(rows))
        self.overrides_accordion = w.Accordion(children=sections, selected_index=None)
        for i, dim in enumerate(OVERRIDE_DIMS):
            self.overrides_accordion.set_title(i, f"α per {dim} (Δα added to the global α)")
        self.objective_dropdown = w.Dropdown(options=list(objectives), value=objectives[0],
                                             description="objective")
        self.calibrate_button = w.Button(description="Calibrate", icon="magic",
                                         tooltip="set α to qe_nb.calibrate(...) of the selection")
        self.calibrate_button.add_class("qe-calibrate")
        self.by_dropdown = w.Dropdown(options=list(CALIBRATE_BY), value="global",
                                      description="calibrate", layout=w.Layout(width="auto"))
        self.by_dropdown.add_class("qe-calibrate-by")
        self.calibration_note = w.HTML()
        self.calibration_note.add_class("qe-calibration-note")
        self.summary = w.HTML()
        self.summary.add_class("qe-alarm-summary")
        self.selection_box = w.HBox([
            w.VBox([w.HTML(f"<b>{dim}s that count</b>"), *self.checkboxes[dim].values()])
            for dim in SELECTION_DIMS
        ])

    @property
    def selection(self) -> dict[str, list[str]]:
        """The checked names per dim (``metric``, ``label``, ``algorithm``)."""
        return {dim: [n for n, box in boxes.items() if box.value]
                for dim, boxes in self.checkboxes.items()}

    @property
    def overrides(self) -> dict[str, dict[str, float | None]]:
        """The Δα per dim and name; ``None`` where the override is off (use the global α)."""
        return {
            dim: {n: (float(self.override_sliders[dim][n].value) if box.value else None)
                  for n, box in self.override_checkboxes[dim].items()}
            for dim in OVERRIDE_DIMS
        }

    def observe(self, *, on_alpha: Any, on_selection: Any, on_calibrate: Any) -> None:
        """Call ``on_alpha`` when α or a Δα changes, ``on_selection(change)`` when a box of
        what counts is toggled, ``on_calibrate`` when the button is pressed."""
        def toggle(change: Any) -> None:
            for dim in OVERRIDE_DIMS:
                for n, box in self.override_checkboxes[dim].items():
                    self.override_sliders[dim][n].disabled = not box.value
            on_alpha(change)

        self.alpha_slider.observe(on_alpha, names="value")
        for dim in OVERRIDE_DIMS:
            for n, box in self.override_checkboxes[dim].items():
                box.observe(toggle, names="value")
                self.override_sliders[dim][n].observe(on_alpha, names="value")
        for boxes in self.checkboxes.values():
            for box in boxes.values():
                box.observe(on_selection, names="value")
        self.calibrate_button.on_click(on_calibrate)

    def clear_overrides(self) -> None:
        """Every Δα off and back to 0."""
        for dim in OVERRIDE_DIMS:
            for n, box in self.override_checkboxes[dim].items():
                box.value = False
                self.override_sliders[dim][n].value = 0.0

    def set_offsets(self, dim: str, offsets: Mapping[str, float]) -> None:
        """Turn on the Δα of ``dim`` with these values (widening the sliders if needed)."""
        for n, value in offsets.items():
            slider = self.override_sliders[dim][n]
            slider.min, slider.max = min(slider.min, value), max(slider.max, value)
            self.override_checkboxes[dim][n].value = True
            slider.value = value

    def active_offsets(self) -> int:
        """How many Δα are on."""
        return sum(box.value for boxes in self.override_checkboxes.values() for box in boxes.values())

    def set_global(self, alpha: float) -> None:
        """Set the global α, widening the slider if needed."""
        self.alpha_slider.min = min(self.alpha_slider.min, alpha)
        self.alpha_slider.max = max(self.alpha_slider.max, alpha)
        self.alpha_slider.value = alpha

    def restore_one_of_each(self) -> None:
        """A dim left without any checked name gets its first one back."""
        for dim, names in self.selection.items():
            if not names:
                next(iter(self.checkboxes[dim].values())).value = True

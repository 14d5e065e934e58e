"""One case on screen: the fusion's and the candidates' outlines on a slice (the paper's
Figures 2-3) -- or on the whole image of a 2-D case --, with the case's scores and alarms.

:class:`CaseViewer` reads a case with the public data API (:func:`qe_nb.load_label_maps`,
:func:`qe_nb.load_images`, :func:`qe_nb.load_reference`) and fuses it with the core's
per-case kernel (:func:`qe_nb.core.case.score_arrays` with ``keep_fusion=True``); moving the
slider only cuts another slice. A 2-D case (y, x) has no slice slider and no view buttons
(they are hidden). Apps that embed it (the triage app) drive it through its
public methods: :meth:`CaseViewer.set_case`, :meth:`CaseViewer.set_alpha`,
:meth:`CaseViewer.redraw` and the properties :attr:`~CaseViewer.index`,
:attr:`~CaseViewer.axis`, :attr:`~CaseViewer.structure`, :attr:`~CaseViewer.alarms`. The
case's scores table and the legend's values come from its :class:`CaseScoresView`; its
arguments are checked by :mod:`qe_nb.ui.app_inputs`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError
from qe_nb.ui.app_inputs import check_catalogue, check_optional_scores
from qe_nb.ui.common import (
    TABLE_CSS,
    WidgetApp,
    alpha_text,
    check_number,
    figure_png_at,
    html_table,
    ipywidgets,
    show_png,
)

__all__ = ["CaseViewer", "CaseScoresView", "VIEWS", "STARTS", "case_scores_html", "disagreement",
           "most_disagreeing_slice", "opening_structure", "opening_slice"]

VIEWS: dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}
"""The slice orientations and the (z, y, x) axis each cuts across."""

PREFERRED_MODALITIES: tuple[str, ...] = ("t1c", "t1ce", "ct")
"""The image shown first when the catalogue has it (contrast-enhanced T1, CT)."""

NO_IMAGE = "(none)"

ZOOM_MARGIN = 0.05
"""A zoomed image shows the outlines plus this fraction of the image's larger side."""

STARTS = ("disagreement", "fusion")
"""Where a case opens: the structure and slice where the members disagree most, or the first
structure of the fusion on its centre-of-mass slice."""


def disagreement(masks: np.ndarray) -> np.ndarray:
    """Where the members disagree: voxels some, but not all, of them include.

    Parameters
    ----------
    masks : ndarray of bool, (algorithm, *grid)
        One structure's mask per member.

    Returns
    -------
    ndarray of bool, the grid

    Examples
    --------
    >>> m = np.array([[1, 1, 0], [1, 0, 0]], bool)
    >>> disagreement(m).tolist()
    [False, True, False]
    """
    votes = np.asarray(masks).sum(axis=0)
    return (votes > 0) & (votes < len(masks))


def most_disagreeing_slice(masks: np.ndarray, axis: int) -> int | None:
    """The slice along ``axis`` with the most voxels the members disagree on (None when they
    agree everywhere). ``masks`` is (algorithm, z, y, x) of one structure."""
    where = disagreement(masks)
    if not where.any():
        return None
    per_slice = where.sum(axis=tuple(a for a in range(where.ndim) if a != axis))
    return int(np.argmax(per_slice))


def opening_structure(fused: Sequence[np.ndarray], members: Sequence[np.ndarray], names: Sequence[str],
                      alarms: xr.DataArray | None = None, *, start: str = "disagreement") -> int | None:
    """The structure a case opens on: its index in ``names``, or None (nothing to choose).

    ``fused[k]`` is structure k of the fusion, ``members[k]`` of every member (algorithm,
    *grid); ``alarms`` the case's alarm count per ``label``. ``start="disagreement"``: the
    most alarms, then the largest share of the members' union they disagree on;
    ``"fusion"``: the first structure present in the fusion.
    """
    present = [i for i, m in enumerate(fused) if m.any()]
    if start == "fusion":
        return present[0] if present else None
    shares = []
    for masks in members:
        union = masks.any(axis=0).sum()
        shares.append(float(disagreement(masks).sum() / union) if union else 0.0)
    counts = np.zeros(len(names))
    if alarms is not None:
        labels = [str(v) for v in alarms["label"].values]
        counts = np.array([float(alarms.values[labels.index(n)]) if n in labels else 0.0 for n in names])
    if not any(shares) and not counts.any():
        return present[0] if present else None
    return max(range(len(names)), key=lambda k: (counts[k], shares[k]))


def opening_slice(fused: np.ndarray, members: np.ndarray, axis: int, *,
                  start: str = "disagreement") -> int | None:
    """The slice a structure opens on: with ``start="disagreement"`` the one with the most
    voxels the members disagree on; when they agree everywhere (or ``start="fusion"``) the
    centre of mass of the fusion, or of the candidates when the fusion is empty
    ("disagreement" only); None when there is nothing."""
    from qe_nb.ui.overlay import center_of_mass_index

    index = most_disagreeing_slice(members, axis) if start == "disagreement" else None
    if index is not None:
        return index
    mask = fused if fused.any() or start == "fusion" else members.any(axis=0)
    return center_of_mass_index(mask, axis) if mask.any() else None


class CaseScoresView:
    """One case's scores and alarms: the table of :func:`case_scores_html` in its panel, and
    each candidate's Dice and alarm count for the overlay's legend.

    Parameters
    ----------
    scores : xarray.Dataset or None
        The scores cube; without it the panel stays empty and the legend has no values.
    alpha : float or xarray.DataArray
        The α of the alarms.
    pool : {"algorithm", "all"}, default "algorithm"
        Thresholds per member (the paper) or over all members (:func:`qe_nb.alarms`).

    Attributes
    ----------
    panel : ipywidgets.Output
        The table (CSS class ``qe-case-scores``).
    alpha : float or xarray.DataArray
    alarms : xarray.DataArray or None
        :func:`qe_nb.alarms` of the whole cube at ``alpha``; None without scores.
    """

    def __init__(self, scores: xr.Dataset | None, alpha: float | xr.DataArray, *,
                 pool: str = "algorithm") -> None:
        from qe_nb.core.checks import check_pool

        self.scores = scores
        self.pool = check_pool(pool)
        self.panel = ipywidgets().Output()
        self.panel.add_class("qe-case-scores")
        self.set_alpha(alpha)

    def set_alpha(self, alpha: float | xr.DataArray) -> None:
        """Recompute the alarms at ``alpha`` (over the whole cube, as the worklist does)."""
        from qe_nb.core.alarms import alarms

        self.alpha = alpha
        self.alarms = (None if self.scores is None
                       else alarms(self.scores["similarity"], alpha, pool=self.pool))

    def alarms_per_label(self, case: str) -> xr.DataArray | None:
        """The case's alarm count per ``label`` (None without scores or the case)."""
        if self.alarms is None or not self.has(case) or "label" not in self.alarms.dims:
            return None
        one = self.alarms.sel(case=case)
        return one.sum([d for d in one.dims if d != "label"])

    def has(self, case: str) -> bool:
        """Whether the scores hold ``case``."""
        return self.scores is not None and case in [str(c) for c in self.scores["case"].values]

    def legend_values(self, case: str, structure: str,
                      names: list[str]) -> tuple[dict | None, dict | None]:
        """Dice of ``structure`` and the alarm count of each candidate in ``names``; (None,
        None) when the scores do not hold the case or one of the candidates."""
        if self.scores is None or self.alarms is None or not self.has(case):
            return None, None
        sim = self.scores["similarity"]
        if not all(n in [str(a) for a in sim["algorithm"].values] for n in names):
            return None, None
        dice = None
        if "dice" in sim["metric"].values and structure in sim["label"].values:
            d = sim.sel(case=case, label=structure, metric="dice")
            dice = {n: float(d.sel(algorithm=n)) for n in names}
        counts = self.alarms.sel(case=case).sum(("label", "metric"))
        return dice, {n: int(counts.sel(algorithm=n)) for n in names}

    def draw(self, case: str) -> None:
        """Show ``case``'s table (or say it is not in the scores); nothing without scores."""
        from IPython.display import HTML

        self.panel.outputs = ()
        if self.scores is None or self.alarms is None:
            return
        if not self.has(case):
            self.panel.append_display_data(
                HTML(f"<p>case {html.escape(case)} is not in the scores.</p>"))
            return
        self.panel.append_display_data(HTML(case_scores_html(
            self.scores["similarity"].sel(case=case), self.alarms.sel(case=case), self.alpha)))


def case_scores_html(similarity: xr.DataArray, flags: xr.DataArray, alpha: float | xr.DataArray) -> str:
    """The scores of one case as an HTML table: algorithms x (label, metric), alarms marked.

    Parameters
    ----------
    similarity, flags : xarray.DataArray over (algorithm, label, metric)
        One case's similarity and its alarms (:func:`qe_nb.alarms`).
    alpha : float or xarray.DataArray
        The α of the alarms, for the caption.
    """
    values = similarity.transpose("algorithm", "label", "metric")
    flags = flags.transpose("algorithm", "label", "metric")
    n_alg, n_lab, n_met = values.shape
    frame = pd.DataFrame(
        values.values.reshape(n_alg, n_lab * n_met),
        index=pd.Index([str(a) for a in values["algorithm"].values], name="algorithm"),
        columns=[f"{lab} {m}" for lab in values["label"].values for m in _metric_names(values)],
    )
    frame["alarms"] = flags.values.reshape(n_alg, -1).sum(axis=1)
    cells = np.where(flags.values.reshape(n_alg, -1), "qe-alarm", "")
    cells = np.concatenate([cells, np.full((n_alg, 1), "")], axis=1)
    table = html_table(frame, css_class="qe-case-scores-table", cell_classes=cells)
    return (f"<p>similarity to the fusion; alarms (α = {alpha_text(alpha)}) highlighted, "
            f"{int(flags.values.sum())} in all</p>" + table)


def _metric_names(values: xr.DataArray) -> list[str]:
    """Metric ids, with their units from the ``metric`` coord ``units`` when they have any:
    ``hd95 (px)``, ``hd95 (mm)``; ``dice``."""
    metrics = [str(m) for m in values["metric"].values]
    if "units" not in values.coords:
        return metrics
    units = [str(u) for u in np.atleast_1d(values["units"].values)]
    return [m if u in ("", "1") else f"{m} ({u})" for m, u in zip(metrics, units, strict=True)]


class CaseViewer(WidgetApp):
    """One case on screen: the fusion's and the candidates' outlines on a slice (Figures 2-3).

    The case is read and fused once; moving the slider only cuts another slice. A 2-D case
    (y, x) is drawn whole over its image (or a blank frame), without the slice slider and the
    view buttons.

    Parameters
    ----------
    ensemble : xarray.Dataset
        The catalogue (:func:`qe_nb.open_ensemble`, :func:`qe_nb.synthetic_cohort`).
    case : str
        The case to show first.
    scores : xarray.Dataset, optional
        The scores cube; adds a table of the case's similarity per algorithm, label and
        metric (alarms highlighted) and each candidate's Dice and alarm count to the legend.
    alpha : float or xarray.DataArray, default 0.0
        The α of those alarms (:func:`qe_nb.alarms` over the whole cube).
    fusion : {"mav", "simple", "brats-simple", "staple"}, default "mav"
        How the candidates are fused (:func:`qe_nb.fuse`).
    pool : {"algorithm", "all"}, default "algorithm"
        The alarms' thresholds: per member (the paper) or one per label and metric over all
        members (:func:`qe_nb.alarms`).
    dpi : float, default 72
        Resolution of the overlay.
    start : {"disagreement", "fusion"}, default "disagreement"
        Where a case (a new structure, a new view) opens: see :func:`opening_structure` and
        :func:`opening_slice`. The view zooms to the outlines plus a margin ("zoom" box).

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app.
    case : str
        The case shown.
    label_maps, fused, images, reference
        The loaded case: candidates (algorithm, z, y, x), the fused label map (z, y, x), the
        images (modality, z, y, x) or None (also for a case without image files), the
        reference masks (label, z, y, x) or None; (y, x) in place of (z, y, x) for a 2-D case.
    is_2d : bool
        Whether the case shown is 2-D.
    spacing, units
        The case's voxel (pixel) spacing and its units ("mm"; "px" for formats that store no
        spacing).
    figure : Figure or None
        The overlay's figure.

    Raises
    ------
    InputError
        For a catalogue that is not one, an unknown case, fusion method or ``pool``, or
        ``scores`` that are not a scores Dataset.
    ImportError
        Without ipywidgets.
    """

    def __init__(
        self,
        ensemble: xr.Dataset,
        case: str,
        *,
        scores: xr.Dataset | None = None,
        alpha: float | xr.DataArray = 0.0,
        fusion: str = "mav",
        pool: str = "algorithm",
        dpi: float = 72,
        start: str = "disagreement",
    ) -> None:
        w = ipywidgets()
        from qe_nb.data.loading import ensemble_labels

        if start not in STARTS:
            raise InputError(f"`start` must be one of {list(STARTS)}; got {start!r}.")
        self.start = start

        self.ensemble = check_catalogue(ensemble, fusion=fusion)
        self.fusion = fusion
        self._dpi = check_number(dpi, "dpi")
        self._scheme = ensemble_labels(ensemble)
        self._cases = [str(c) for c in np.atleast_1d(ensemble["case"].values)]
        self.scores = check_optional_scores(scores)
        self.scores_view = CaseScoresView(self.scores, alpha, pool=pool)
        self.scores_panel = self.scores_view.panel
        self._hold = False
        self._ax: Any = None
        self._build(w)
        self.set_case(case)

    def _build(self, w: Any) -> None:
        ensemble = self.ensemble
        algorithms = [str(a) for a in np.atleast_1d(ensemble["algorithm"].values)]
        self.axis_buttons = w.ToggleButtons(options=list(VIEWS), value="axial", description="view")
        self.slice_slider = w.IntSlider(value=0, min=0, max=1, description="slice",
                                        continuous_update=False, layout=w.Layout(width="420px"))
        self.slice_slider.add_class("qe-slice-slider")
        self.axis_buttons.add_class("qe-view-buttons")
        self.structure_dropdown = w.Dropdown(options=list(self._scheme.names),
                                             description="structure")
        has_images = "image" in ensemble.data_vars and "modality" in ensemble.dims
        modalities = [str(m) for m in np.atleast_1d(ensemble["modality"].values)] if has_images else []
        preferred = [m for m in PREFERRED_MODALITIES if m in modalities] + modalities
        self.modality_dropdown = w.Dropdown(options=modalities + [NO_IMAGE],
                                            value=preferred[0] if preferred else NO_IMAGE,
                                            description="image")
        self.candidate_checkboxes = {
            a: w.Checkbox(value=True, description=a, indent=False, layout=w.Layout(width="auto"))
            for a in algorithms
        }
        self.reference_checkbox = w.Checkbox(value=True, description="reference", indent=False,
                                             layout=w.Layout(width="auto"))
        # small objects (a lesion, cells) on a large frame are zoomed to by default
        self.zoom_checkbox = w.Checkbox(value=True, description="zoom to the outlines", indent=False,
                                        layout=w.Layout(width="auto"))
        self.zoom_checkbox.add_class("qe-zoom")
        self.case_label = w.HTML()
        self.overlay_panel = w.Output()
        self.overlay_panel.add_class("qe-overlay")
        self.widget = w.VBox([
            w.HTML(TABLE_CSS),
            self.case_label,
            w.HBox([self.axis_buttons, self.structure_dropdown, self.modality_dropdown]),
            self.slice_slider,
            w.HBox([w.HTML("<b>outlines:</b>&nbsp;"), *self.candidate_checkboxes.values(),
                    self.reference_checkbox, self.zoom_checkbox]),
            self.overlay_panel,
            self.scores_panel,
        ])
        self.widget.add_class("qe-case-viewer")
        self.slice_slider.observe(self._on_change, names="value")
        for control in (self.modality_dropdown, self.reference_checkbox, self.zoom_checkbox,
                        *self.candidate_checkboxes.values()):
            control.observe(self._on_change, names="value")
        self.axis_buttons.observe(self._on_view, names="value")
        self.structure_dropdown.observe(self._on_view, names="value")

    # ---- state

    @property
    def index(self) -> int:
        """The slice shown, along :attr:`axis` (0 for a 2-D case)."""
        return int(self.slice_slider.value)

    @property
    def axis(self) -> int:
        """0 (axial), 1 (coronal) or 2 (sagittal); 0 for a 2-D case."""
        return VIEWS[self.axis_buttons.value]

    @property
    def is_2d(self) -> bool:
        """Whether the case shown is 2-D (y, x): no slices to choose."""
        return self.fused.ndim == 2

    @property
    def structure(self) -> str:
        """The structure (a ``label`` of the catalogue) outlined."""
        return str(self.structure_dropdown.value)

    @property
    def shown_candidates(self) -> list[str]:
        """The candidates whose outlines are drawn."""
        return [a for a, box in self.candidate_checkboxes.items() if box.value]

    @property
    def alpha(self) -> float | xr.DataArray:
        """The α of the alarms (:meth:`set_alpha`)."""
        return self.scores_view.alpha

    @property
    def alarms(self) -> xr.DataArray | None:
        """:func:`qe_nb.alarms` of the whole scores cube at :attr:`alpha` (None without scores)."""
        return self.scores_view.alarms

    @property
    def figure(self) -> Any:
        """The overlay's figure (None before the first drawing)."""
        return None if self._ax is None else self._ax.figure

    def set_case(self, case: str) -> None:
        """Load, fuse and show another case (on its fusion's centre-of-mass slice)."""
        from qe_nb.core.case import score_arrays
        from qe_nb.core.labels import structure_masks
        from qe_nb.data.loading import load_images, load_label_maps, load_reference

        if not isinstance(case, str) or case not in self._cases:
            raise InputError(
                f"Unknown case {case!r}; the ensemble holds {len(self._cases)} case(s), e.g. "
                f"{self._cases[:5]}."
            )
        maps = load_label_maps(self.ensemble, case)
        ndim = maps.ndim - 1
        self.spacing = tuple(float(s) for s in maps.attrs.get("spacing", (1.0,) * ndim))
        self.units = _grid_units(maps, self.scores)
        # the fused map only: Dice is the cheapest metric the kernel must compute
        fused = score_arrays(maps, spacing=self.spacing, labels=self._scheme, fusion=self.fusion,
                             metrics=("dice",), keep_fusion=True)["fused"].values
        images = None
        if self.modality_dropdown.options != (NO_IMAGE,):
            # cases without an image file (BU-BIL: 8 of 47) show a blank frame
            images = load_images(self.ensemble, case, geometry=maps, missing="skip")
        self.case, self.label_maps, self.fused, self.images = case, maps, fused, images
        self.reference = load_reference(self.ensemble, case, geometry=maps)
        self._fused_masks = structure_masks(fused, self._scheme)
        self._member_masks = [structure_masks(m, self._scheme) for m in maps.values]
        self._hold = True
        try:
            first = opening_structure(self._fused_masks, [self._members(k) for k in range(len(self._fused_masks))],
                                      self._scheme.names, self.scores_view.alarms_per_label(case),
                                      start=self.start)
            if first is not None:
                self.structure_dropdown.value = self._scheme.names[first]
            self.reference_checkbox.disabled = self.reference is None
            hidden = "none" if fused.ndim == 2 else None
            self.axis_buttons.layout.display = self.slice_slider.layout.display = hidden
            if fused.ndim == 2:
                self.axis_buttons.value = "axial"
            self._centre_slice()
        finally:
            self._hold = False
        self.case_label.value = (f"<b>case {html.escape(case)}</b> · fusion {self.fusion} · "
                                 f"grid {' x '.join(map(str, fused.shape))}"
                                 + (f" {html.escape(self.units)}" if self.is_2d else ""))
        self.scores_view.draw(case)
        self.redraw()

    def set_alpha(self, alpha: float | xr.DataArray) -> None:
        """Show the alarms at another α (the case stays loaded) and redraw."""
        self.scores_view.set_alpha(alpha)
        self.scores_view.draw(self.case)
        self.redraw()

    def _members(self, k: int) -> np.ndarray:
        """Structure ``k`` of every member, (algorithm, *grid)."""
        return np.stack([masks[k] for masks in self._member_masks])

    def _centre_slice(self) -> None:
        if self.is_2d:
            self.slice_slider.max, self.slice_slider.value = 0, 0
            return
        n, k = self.fused.shape[self.axis], self._scheme.names.index(self.structure)
        index = opening_slice(self._fused_masks[k], self._members(k), self.axis, start=self.start)
        self.slice_slider.max = n - 1
        self.slice_slider.value = n // 2 if index is None else index

    # ---- callbacks

    def _on_change(self, change: Any = None) -> None:
        if not self._hold:
            self.redraw()

    def _on_view(self, change: Any = None) -> None:
        if self._hold:
            return
        self._hold = True
        try:
            self._centre_slice()
        finally:
            self._hold = False
        self.redraw()

    # ---- drawing

    def redraw(self) -> None:
        """Draw the overlay of the current slice."""
        from qe_nb.core.labels import structure_masks
        from qe_nb.ui.overlay import OverlayOptions, case_overlay

        axis, index, flat = self.axis, self.index, self.is_2d
        k = self._scheme.names.index(self.structure)

        # Cut a one-voxel slab first: structure masks and outlines of one slice, not the volume.
        # A 2-D case is drawn whole.
        def slab(volume: np.ndarray) -> np.ndarray:
            return volume if flat else np.take(volume, [index], axis=axis)

        names = self.shown_candidates
        algorithms = [str(a) for a in self.label_maps["algorithm"].values]
        candidates = {a: structure_masks(slab(self.label_maps.values[algorithms.index(a)]),
                                         self._scheme)[k] for a in names}
        modality = self.modality_dropdown.value
        if self.images is not None and modality in self.images["modality"].values:
            image = slab(self.images.sel(modality=modality).values)
        else:
            image = np.zeros(slab(self.fused).shape, np.float32)
        reference = None
        if self.reference is not None and self.reference_checkbox.value:
            reference = slab(self.reference.values[k])
        dice, alarm_counts = self.scores_view.legend_values(self.case, self.structure, names)
        crop = None
        if self.zoom_checkbox.value:
            crop = ZOOM_MARGIN * max(n * d for n, d in zip(self.fused.shape, self.spacing, strict=True))
        if self._ax is not None:
            self._ax.clear()
        ax = case_overlay(
            image, slab(self._fused_masks[k]), candidates, dice=dice, alarms=alarm_counts,
            reference=reference, ax=self._ax,
            options=OverlayOptions(axis=axis, index=None if flat else 0, spacing=self.spacing,
                                   units=self.units, fused_name=self.fusion, crop=crop),
        )
        where = "" if flat else f" · slice {'zyx'[axis]} = {index}"
        ax.set_title(f"{self.case} · {self.structure}{where}", loc="left", fontsize="medium")
        self._ax = ax
        show_png(self.overlay_panel, figure_png_at(ax.figure, self._dpi))


def _grid_units(maps: xr.DataArray, scores: xr.Dataset | None) -> str:
    """A case's grid units: the files' (``units`` attr), else the scores', else mm."""
    units = maps.attrs.get("units")
    if units is None and scores is not None:
        units = scores.attrs.get("distance_units")
    return str(units or "mm")

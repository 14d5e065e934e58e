"""The ipywidgets apps: state as data, equal to the core functions' outputs (no browser)."""

from __future__ import annotations

import base64
import re
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

import qe_nb  # noqa: E402
from qe_nb.core.calibration import DEFAULT_ALPHAS  # noqa: E402
from qe_nb.exceptions import InputError  # noqa: E402
from qe_nb.ui.widgets import CalibrationExplorer, CaseViewer, combine_alpha  # noqa: E402

ALGORITHMS = ["alg-a", "alg-b", "alg-c", "alg-d"]
LABELS = ["whole_tumor", "tumor_core", "enhancing_tumor"]
METRICS = ["dice", "hd95"]

pytestmark = pytest.mark.filterwarnings("ignore::qe_nb.exceptions.QeNbWarning")


def fake_scores(n_cases: int = 40, *, seed: int = 3, quality: bool = True) -> xr.Dataset:
    """A scores cube whose disagreement tracks a hidden per-case quality; some hd95 are inf."""
    rng = np.random.default_rng(seed)
    true_dice = np.clip(rng.beta(6, 1.5, n_cases), 0.05, 0.99)
    shape = (n_cases, len(ALGORITHMS), len(LABELS))
    spread = (1 - true_dice)[:, None, None]
    dice = np.clip(true_dice[:, None, None] + spread * rng.normal(0, 0.6, shape), 0, 1)
    hd95 = np.abs(rng.normal(2 + 25 * spread, 1 + 10 * spread, shape))
    empty = rng.random(shape) < 0.04
    dice[empty], hd95[empty] = 0.0, np.inf
    cases = [f"case-{i:03d}" for i in range(n_cases)]
    coords = {
        "case": cases, "algorithm": ALGORITHMS, "label": LABELS, "metric": METRICS,
        "higher_is_better": ("metric", [True, False]), "units": ("metric", ["1", "mm"]),
    }
    data = {"similarity": (("case", "algorithm", "label", "metric"), np.stack([dice, hd95], -1)),
            "error": (("case",), np.array([""] * n_cases, dtype=object))}
    if quality:
        q_dice = np.clip(true_dice[:, None] + rng.normal(0, 0.03, (n_cases, len(LABELS))), 0, 1)
        q_hd = 30 * (1 - q_dice) + rng.random((n_cases, len(LABELS)))
        q_hd[0, 2] = np.inf
        data["quality"] = (("case", "label", "metric"), np.stack([q_dice, q_hd], -1))
    return xr.Dataset(data, coords=coords, attrs={"fusion": "mav"})


@pytest.fixture(scope="module")
def scores() -> xr.Dataset:
    return fake_scores()


@pytest.fixture(scope="module")
def app(scores) -> CalibrationExplorer:
    return CalibrationExplorer(scores)


@pytest.fixture
def fresh(app):
    """The shared app reset to α 0, no overrides, everything selected (one redraw)."""
    with app.hold_redraws():
        for boxes in app.checkboxes.values():
            for box in boxes.values():
                box.value = True
        app.objective_dropdown.value = "entropy"
        app.set_alpha(0.0)
    return app


def _expected_quality(scores, labels=LABELS, metric="dice"):
    return scores["quality"].sel(metric=metric, label=labels).mean("label")


def _assert_result(app, similarity, alpha):
    expected = qe_nb.alarms(similarity, alpha)
    xr.testing.assert_identical(app.result["alarms"], expected)
    xr.testing.assert_identical(app.result["risk"], qe_nb.risk(expected))


def _png_bytes(out) -> bytes:
    data = out.outputs[-1]["data"]["image/png"]
    return data if isinstance(data, bytes) else base64.b64decode(data)


# ----------------------------------------------------------------------------- combine_alpha


def test_combine_alpha_adds_offsets_per_group():
    alpha = combine_alpha(0.2, {"algorithm": {"x": -0.2}, "label": {"t": 0.5, "u": None}},
                          coords={"algorithm": ["x", "y"], "label": ["t", "u"]})
    assert alpha.dims == ("algorithm", "label")
    np.testing.assert_allclose(alpha.values, [[0.5, 0.0], [0.7, 0.2]])
    assert combine_alpha(0.3, {"label": {"t": None}}) == 0.3
    # overrides of names outside the selection are ignored
    assert combine_alpha(0.3, {"label": {"t": 1.0}}, coords={"label": ["u"]}) == 0.3


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("high",), {}, r"`global_alpha` must be a finite number; got 'high'"),
        ((np.nan,), {}, r"`global_alpha` must be a finite number; got nan"),
        ((0.1, {"case": {"a": 1.0}}), {}, r"`overrides` has unknown dim\(s\) \['case'\]; expected a subset"),
        ((0.1, {"label": {"t": np.inf}}), {}, r"`overrides\['label'\]\['t'\]` must be a finite number"),
    ],
)
def test_combine_alpha_errors(args, kwargs, match):
    with pytest.raises(InputError, match=match):
        combine_alpha(*args, **kwargs)


# ----------------------------------------------------------------------------- explorer state


def test_initial_result_equals_core(fresh, scores):
    assert fresh.alpha == 0.0
    xr.testing.assert_identical(fresh.similarity, scores["similarity"])
    _assert_result(fresh, scores["similarity"], 0.0)


def test_slider_sets_alpha_and_result(fresh, scores):
    for value in (0.4, -1.25, 2.0):
        fresh.alpha_slider.value = value
        assert fresh.alpha == value
        _assert_result(fresh, scores["similarity"], value)
        assert np.isfinite(fresh.redraw_seconds) and fresh.redraw_seconds > 0
        assert sum(fresh.panel_seconds.values()) <= fresh.redraw_seconds


def test_hold_redraws_batches_changes(fresh, scores):
    with fresh.hold_redraws():
        fresh.alpha_slider.value = 0.3
        fresh.checkboxes["metric"]["dice"].value = False
        fresh.checkboxes["metric"]["hd95"].value = False  # emptied: the first is checked again
        assert fresh.alpha_slider.value == 0.3 and fresh.result.attrs["alpha"] == 0.0
    assert fresh.selection["metric"] == ["dice"]
    _assert_result(fresh, scores["similarity"].sel(metric=["dice"]), 0.3)


def test_overrides_add_to_global_alpha(fresh, scores):
    fresh.alpha_slider.value = 0.4
    fresh.override_sliders["label"]["tumor_core"].value = 0.5  # no effect while unchecked
    assert fresh.alpha == 0.4
    fresh.override_checkboxes["label"]["tumor_core"].value = True
    with fresh.hold_redraws():
        fresh.override_checkboxes["algorithm"]["alg-b"].value = True
        fresh.override_sliders["algorithm"]["alg-b"].value = -0.3
    expected = (
        0.4
        + xr.DataArray([0.0, -0.3, 0.0, 0.0], dims="algorithm", coords={"algorithm": ALGORITHMS})
        + xr.DataArray([0.0, 0.5, 0.0], dims="label", coords={"label": LABELS})
    )
    assert fresh.overrides["label"] == {"whole_tumor": None, "tumor_core": 0.5, "enhancing_tumor": None}
    xr.testing.assert_allclose(fresh.alpha, expected.rename("alpha"))
    _assert_result(fresh, scores["similarity"], fresh.alpha)
    _assert_result(fresh, scores["similarity"], expected)
    assert not fresh.override_sliders["label"]["tumor_core"].disabled
    assert fresh.override_sliders["label"]["whole_tumor"].disabled
    # an override switched off is None again: back to one global alpha
    with fresh.hold_redraws():
        fresh.override_checkboxes["label"]["tumor_core"].value = False
        fresh.override_checkboxes["algorithm"]["alg-b"].value = False
    assert fresh.alpha == 0.4
    _assert_result(fresh, scores["similarity"], 0.4)


def test_metric_override(fresh, scores):
    fresh.override_sliders["metric"]["hd95"].value = 1.0
    fresh.override_checkboxes["metric"]["hd95"].value = True
    expected = xr.DataArray([0.0, 1.0], dims="metric", coords={"metric": METRICS}, name="alpha")
    xr.testing.assert_allclose(fresh.alpha, expected)
    _assert_result(fresh, scores["similarity"], expected)


def test_checkboxes_select_the_sub_cube(fresh, scores):
    fresh.checkboxes["metric"]["hd95"].value = False
    with fresh.hold_redraws():
        fresh.checkboxes["algorithm"]["alg-c"].value = False
        fresh.checkboxes["label"]["enhancing_tumor"].value = False
        fresh.alpha_slider.value = 0.1
    sub = scores["similarity"].sel(metric=["dice"], algorithm=["alg-a", "alg-b", "alg-d"],
                                   label=["whole_tumor", "tumor_core"])
    xr.testing.assert_identical(fresh.similarity.reset_coords(drop=True), sub.reset_coords(drop=True))
    _assert_result(fresh, sub, 0.1)
    # the sweep follows the selection (computed once per selection, with its quality)
    expected = qe_nb.sweep_table(sub, DEFAULT_ALPHAS,
                                 quality=_expected_quality(scores, ["whole_tumor", "tumor_core"]))
    pd.testing.assert_frame_equal(fresh.sweep, expected)
    # overrides apply within the selection only
    with fresh.hold_redraws():
        fresh.override_checkboxes["algorithm"]["alg-c"].value = True
        fresh.override_sliders["algorithm"]["alg-c"].value = 2.0
    assert fresh.alpha == 0.1
    with fresh.hold_redraws():
        fresh.override_checkboxes["algorithm"]["alg-b"].value = True
        fresh.override_sliders["algorithm"]["alg-b"].value = 0.5
    assert fresh.alpha["algorithm"].values.tolist() == ["alg-a", "alg-b", "alg-d"]
    _assert_result(fresh, sub, fresh.alpha)


def test_last_checkbox_of_a_dim_stays_checked(fresh):
    fresh.checkboxes["metric"]["hd95"].value = False
    fresh.checkboxes["metric"]["dice"].value = False
    assert fresh.checkboxes["metric"]["dice"].value is True
    assert fresh.selection["metric"] == ["dice"]
    assert "keep at least one metric checked" in fresh.summary.value


def test_sweep_is_computed_once_per_selection(fresh, scores):
    first = fresh.sweep
    fresh.alpha_slider.value = 0.25
    fresh.alpha_slider.value = 0.5
    assert fresh.sweep is first
    fresh.checkboxes["label"]["tumor_core"].value = False
    assert fresh.sweep is not first
    fresh.checkboxes["label"]["tumor_core"].value = True  # a selection seen before: cached
    assert fresh.sweep is first
    pd.testing.assert_frame_equal(
        first, qe_nb.sweep_table(scores["similarity"], DEFAULT_ALPHAS,
                                 quality=_expected_quality(scores)))


# ----------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("objective", ["entropy", "pearson", "combined"])
def test_calibrate_button_sets_alpha(fresh, scores, objective):
    with fresh.hold_redraws():
        fresh.override_checkboxes["label"]["tumor_core"].value = True
        fresh.override_sliders["label"]["tumor_core"].value = 0.7
        fresh.checkboxes["algorithm"]["alg-d"].value = False
    fresh.objective_dropdown.value = objective
    fresh.calibrate_button.click()
    sub = scores["similarity"].sel(algorithm=["alg-a", "alg-b", "alg-c"])
    quality = None if objective == "entropy" else _expected_quality(scores)
    expected = qe_nb.calibrate(sub, objective=objective, quality=quality)
    assert fresh.alpha == expected
    assert fresh.alpha_slider.value == expected
    assert all(v is None for d in fresh.overrides.values() for v in d.values())
    _assert_result(fresh, sub, expected)


def test_objectives_without_ground_truth():
    app = CalibrationExplorer(fake_scores(24, seed=5, quality=False))
    assert list(app.objective_dropdown.options) == ["entropy"]
    assert app.triage_panel is None and "triage" not in app.panels
    app.calibrate_button.click()
    assert app.alpha == qe_nb.calibrate(app.similarity, objective="entropy")
    assert "r =" not in app.summary.value
    # the alarm-count histogram stands in for Figure 4
    assert _png_bytes(app.quality_panel).startswith(b"\x89PNG")


def test_objectives_with_ground_truth(app):
    assert list(app.objective_dropdown.options) == ["entropy", "pearson", "combined"]


# ----------------------------------------------------------------------------- panels


def test_panels_hold_outputs_and_follow_changes(fresh, scores):
    before = {name: out.outputs for name, out in fresh.panels.items()}
    assert set(fresh.panels) == {"quality", "sweep", "sweep_table", "thresholds", "worklist", "triage"}
    for name, out in fresh.panels.items():
        assert len(out.outputs) == 1, name
        data = out.outputs[0]["data"]
        assert "image/png" in data or "text/html" in data, name
    fresh.alpha_slider.value = 0.75
    for name in ("quality", "sweep", "thresholds", "worklist", "triage"):
        assert len(fresh.panels[name].outputs) == 1
        assert fresh.panels[name].outputs != before[name], name
    for name in ("quality", "sweep"):
        assert _png_bytes(fresh.panels[name]).startswith(b"\x89PNG")
    # the thresholds panel shows qe_nb.threshold_table's numbers
    table = qe_nb.threshold_table(scores["similarity"], 0.75)
    html_text = fresh.threshold_panel.outputs[0]["data"]["text/html"]
    assert f"{table.iloc[0, 0]:.3f}" in html_text
    # the worklist shows the top 20 of qe_nb.worklist, in its order
    wl = qe_nb.worklist(scores["similarity"], 0.75, quality=_expected_quality(scores))
    wl_html = fresh.worklist_panel.outputs[0]["data"]["text/html"]
    shown = re.findall(r"case-\d{3}", wl_html)
    assert shown[:20] == [str(c) for c in _case_ids(wl)[:20]]
    # the sweep-table row of the current alpha is highlighted
    fresh.alpha_slider.value = 0.5
    assert wl_html != fresh.worklist_panel.outputs[0]["data"]["text/html"]
    sweep_html = fresh.sweep_table_panel.outputs[0]["data"]["text/html"]
    assert sweep_html.count('class="qe-current"') == 1


def _case_ids(worklist: pd.DataFrame) -> list:
    if "case" in worklist.columns:
        return list(worklist["case"])
    return list(worklist.index.get_level_values("case") if "case" in worklist.index.names
                else worklist.index)


def test_summary_line(fresh, scores):
    fresh.alpha_slider.value = 0.1
    counts = qe_nb.risk(qe_nb.alarms(scores["similarity"], 0.1))
    text = fresh.summary.value
    assert text.startswith("α = 0.10 · ")
    assert f"{int(counts.sum())} alarms" in text
    assert f"{int((counts > 0).sum())} of 40 cases with ≥ 1 alarm" in text
    r = np.corrcoef(counts.values, _expected_quality(scores).values)[0, 1]
    assert f"r = {r:.2f}" in text
    assert fresh.alpha_readout.value == "<code>0.10</code>"


def test_sweep_marker_is_painted_not_redrawn(fresh):
    fig = fresh.sweep_view.figure
    fresh.alpha_slider.value = 0.25
    png_a = _png_bytes(fresh.sweep_panel)
    fresh.alpha_slider.value = -0.5
    png_b = _png_bytes(fresh.sweep_panel)
    assert fresh.sweep_view.figure is fig and png_a != png_b



def _figure4_data(fig) -> list[tuple]:
    """What Figure 4 shows per panel: points, mean bars, title, x and y limits, x ticks."""
    from matplotlib.collections import LineCollection, PathCollection

    out = []
    for ax in fig.axes:
        (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        (bars,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        out.append((np.asarray(points.get_offsets()).tolist(),
                    [np.asarray(seg).tolist() for seg in bars.get_segments()],
                    ax.get_title(loc="left"), ax.get_xlim(), ax.get_ylim(),
                    ax.get_xticks().tolist(), [t.get_text() for t in ax.texts]))
    return out


def test_figure4_is_updated_in_place_and_shows_a_fresh_figure(fresh, scores):
    from qe_nb.ui import plots

    fresh.alpha_slider.value = 0.1
    fig = fresh.quality_view.figure
    points = [ax.collections[0] for ax in fig.axes]
    possible = len(ALGORITHMS) * len(LABELS) * len(METRICS)
    for value in (0.6, -0.8, 1.5):
        fresh.alpha_slider.value = value
        assert fresh.quality_view.figure is fig and [ax.collections[0] for ax in fig.axes] == points
        counts = qe_nb.risk(qe_nb.alarms(scores["similarity"], value))
        expected = plots.alarm_count_vs_quality(
            counts, _expected_quality(scores), _expected_quality(scores, metric="hd95"),
            max_count=possible)
        assert _figure4_data(fig) == _figure4_data(expected)
        assert fig.axes[0].get_xlim() == (-0.6, possible + 0.6)  # every possible count
        # the PNG shown is the figure as a full Agg draw would render it
        shown = _png_bytes(fresh.quality_panel)
        assert _pixels(shown).shape == _pixels(plots.figure_png(fig)).shape
        np.testing.assert_array_equal(_pixels(shown), _pixels(plots.figure_png(fig)))
    # a new selection draws the figure afresh, for the selected labels' quality
    fresh.checkboxes["label"]["enhancing_tumor"].value = False
    labels = ["whole_tumor", "tumor_core"]
    counts = fresh.result["risk"]
    expected = plots.alarm_count_vs_quality(
        counts, _expected_quality(scores, labels), _expected_quality(scores, labels, "hd95"),
        max_count=len(ALGORITHMS) * 2 * len(METRICS))
    assert _figure4_data(fresh.quality_view.figure) == _figure4_data(expected)


def _pixels(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("top", [5, 20, 60])
def test_worklist_panel_equals_the_head_of_qe_nb_worklist(scores, top):
    def _worklist_top(sim, flags, limits, quality, top):  # the panel's call
        return qe_nb.worklist(sim, quality=quality, top=top, alarms=flags, thresholds=limits)

    sim = scores["similarity"]
    quality = _expected_quality(scores)
    for alpha in (0.0, 0.75, xr.DataArray([0.0, 1.0], dims="metric", coords={"metric": METRICS})):
        flags = qe_nb.alarms(sim, alpha)
        got = _worklist_top(sim, flags, qe_nb.thresholds(sim, alpha), quality, top)
        pd.testing.assert_frame_equal(got, qe_nb.worklist(sim, alpha, quality=quality).head(top))
        got = _worklist_top(sim, flags, qe_nb.thresholds(sim, alpha), None, top)
        pd.testing.assert_frame_equal(got, qe_nb.worklist(sim, alpha).head(top))
    # dims in another order: the same table
    other = sim.transpose("metric", "case", "label", "algorithm")
    flags = qe_nb.alarms(other, 0.3)
    pd.testing.assert_frame_equal(
        _worklist_top(other, flags, qe_nb.thresholds(other, 0.3), quality, top),
        qe_nb.worklist(other, 0.3, quality=quality).head(top))


def test_worklist_and_threshold_panels_show_the_core_tables(fresh, scores):
    from qe_nb.ui.common import html_table as _html_table

    def _threshold_frame(limits):  # the panel's call
        return qe_nb.threshold_table(None, thresholds=limits)

    fresh.alpha_slider.value = 0.35
    sim = scores["similarity"]
    table = qe_nb.worklist(sim, 0.35, quality=_expected_quality(scores)).head(20)
    assert fresh.worklist_panel.outputs[0]["data"]["text/html"] == _html_table(
        table, css_class="qe-worklist-table")
    th = qe_nb.threshold_table(sim, 0.35)
    pd.testing.assert_frame_equal(_threshold_frame(qe_nb.thresholds(sim, 0.35)), th)
    assert fresh.threshold_panel.outputs[0]["data"]["text/html"] == _html_table(
        th, css_class="qe-thresholds")
    # an output as append_display_data(IPython.display.HTML(...)) makes it, in one assignment
    assert fresh.worklist_panel.outputs[0]["output_type"] == "display_data"
    assert fresh.worklist_panel.outputs[0]["data"]["text/plain"] == "<IPython.core.display.HTML object>"


def test_panel_timings_in_wall_and_cpu_seconds(fresh):
    fresh.alpha_slider.value = 0.45
    assert set(fresh.panel_cpu_seconds) == set(fresh.panel_seconds) == {
        "result", "summary", "quality", "sweep", "sweep_table", "thresholds", "worklist", "triage"}
    assert all(v >= 0 for v in fresh.panel_cpu_seconds.values())
    assert np.isfinite(fresh.redraw_cpu_seconds) and fresh.redraw_cpu_seconds > 0


def test_sweep_images_are_kept_per_alpha(fresh):
    fresh.alpha_slider.value = 0.2
    first = _png_bytes(fresh.sweep_panel)
    fresh.alpha_slider.value = 0.4
    assert _png_bytes(fresh.sweep_panel) != first
    kept = fresh.sweep_view.pngs
    fresh.alpha_slider.value = 0.2
    assert _png_bytes(fresh.sweep_panel) == first and kept[0.2] == first


def test_css_classes_and_display(app):
    assert "qe-alpha-slider" in app.alpha_slider._dom_classes
    assert "qe-alarm-summary" in app.summary._dom_classes
    assert "qe-worklist" in app.worklist_panel._dom_classes
    assert "qe-calibrate" in app.calibrate_button._dom_classes
    assert "qe-alpha-readout" in app.alpha_readout._dom_classes
    slider = app.alpha_slider
    assert (slider.min, slider.max, slider.step, slider.readout_format, slider.continuous_update) == (
        -3.0, 3.0, 0.05, ".2f", False)
    bundle = app._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == app.widget.model_id


# ----------------------------------------------------------------------------- explorer errors


@pytest.mark.parametrize(
    ("scores_arg", "kwargs", "match"),
    [
        ([1, 2], {}, r"`scores` must be a scores Dataset with a 'similarity' variable .* got list"),
        (xr.Dataset({"quality": ("case", [0.9])}), {}, r"`scores` must be .*'similarity'"),
        (None, {"quality_metric": "nsd"}, r"`quality_metric` 'nsd' is not in the scores' quality; expected one of \['dice', 'hd95'\]"),
        (None, {"alpha": "high"}, r"`alpha` must be a finite number; got 'high'"),
        (None, {"top": 0}, r"`top` must be a whole number >= 1; got 0"),
    ],
)
def test_explorer_errors(scores, scores_arg, kwargs, match):
    with pytest.raises(InputError, match=match):
        CalibrationExplorer(scores if scores_arg is None else scores_arg, **kwargs)


def test_set_alpha_error(app):
    with pytest.raises(InputError, match=r"`alpha` must be a finite number; got inf"):
        app.set_alpha(np.inf)


def test_import_error_without_ipywidgets(monkeypatch, scores):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match=r'pip install "qe-nb\[notebook\]"'):
        CalibrationExplorer(scores)
    with pytest.raises(ImportError, match=r'pip install "qe-nb\[notebook\]"'):
        CaseViewer(xr.Dataset(), "x")


# ----------------------------------------------------------------------------- case viewer


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return qe_nb.synthetic_cohort(tmp_path_factory.mktemp("cohort"), n_cases=3, n_algorithms=3,
                                  shape=(16, 24, 20), seed=2)


@pytest.fixture(scope="module")
def cohort_scores(cohort):
    rng = np.random.default_rng(11)
    cases = [str(c) for c in cohort["case"].values]
    algorithms = [str(a) for a in cohort["algorithm"].values]
    labels = [str(lab) for lab in cohort["label"].values]
    sim = rng.random((len(cases), len(algorithms), len(labels), 2))
    sim[..., 1] *= 10
    return xr.Dataset({"similarity": xr.DataArray(
        sim, dims=("case", "algorithm", "label", "metric"),
        coords={"case": cases, "algorithm": algorithms, "label": labels, "metric": METRICS})})


def _fused_structures(cohort, case):
    from qe_nb.core.labels import structure_masks
    from qe_nb.data.ensemble import load_label_maps

    maps = load_label_maps(cohort, case)
    return structure_masks(qe_nb.fuse(maps.values, method="mav"), "brats-regions")


def _legend_texts(viewer) -> list[str]:
    return [t.get_text() for t in viewer.figure.axes[0].get_legend().get_texts()]


def test_viewer_opens_on_the_centre_of_mass_slice(cohort):
    case = str(cohort["case"].values[1])
    viewer = CaseViewer(cohort, case, start="fusion")  # issue 14: the default opens where members disagree
    masks = _fused_structures(cohort, case)
    first = next(i for i, m in enumerate(masks) if m.any())
    assert viewer.case == case
    assert viewer.structure == str(cohort["label"].values[first])
    assert viewer.index == int(np.floor(ndimage.center_of_mass(masks[first])[0] + 0.5))
    assert viewer.slice_slider.max == 15
    assert _png_bytes(viewer.overlay_panel).startswith(b"\x89PNG")
    assert viewer.modality_dropdown.value == "t1c"
    assert viewer.images.sizes["modality"] == 4 and viewer.reference is not None
    assert viewer.scores_panel.outputs == ()


def test_viewer_toggles(cohort):
    case = str(cohort["case"].values[0])
    viewer = CaseViewer(cohort, case, start="fusion")
    masks = _fused_structures(cohort, case)
    k = list(cohort["label"].values).index(viewer.structure)
    viewer.axis_buttons.value = "coronal"
    assert viewer.axis == 1 and viewer.slice_slider.max == 23
    assert viewer.index == int(np.floor(ndimage.center_of_mass(masks[k])[1] + 0.5))
    viewer.axis_buttons.value = "sagittal"
    assert viewer.axis == 2 and viewer.slice_slider.max == 19
    before = _png_bytes(viewer.overlay_panel)
    viewer.slice_slider.value = 3
    assert viewer.index == 3 and _png_bytes(viewer.overlay_panel) != before
    assert viewer.figure.axes[0].get_title(loc="left").endswith("slice x = 3")
    algorithms = [str(a) for a in cohort["algorithm"].values]
    assert len(_legend_texts(viewer)) == 2 + len(algorithms)  # fusion, reference, candidates
    viewer.candidate_checkboxes[algorithms[1]].value = False
    viewer.reference_checkbox.value = False
    assert viewer.shown_candidates == [algorithms[0], algorithms[2]]
    texts = _legend_texts(viewer)
    assert len(texts) == 3 and not any(t.startswith(algorithms[1]) for t in texts)
    viewer.modality_dropdown.value = "(none)"
    assert len(viewer.overlay_panel.outputs) == 1
    other = next(lab for lab in ("tumor_core", "whole_tumor") if lab != viewer.structure)
    viewer.structure_dropdown.value = other
    mask = masks[list(cohort["label"].values).index(other)]
    expected = int(np.floor(ndimage.center_of_mass(mask)[2] + 0.5)) if mask.any() else 10
    assert viewer.index == expected


def test_viewer_set_case_and_scores(cohort, cohort_scores):
    cases = [str(c) for c in cohort["case"].values]
    viewer = CaseViewer(cohort, cases[0], scores=cohort_scores, alpha=0.2, fusion="simple")
    viewer.set_case(cases[2])
    from qe_nb.data.ensemble import load_label_maps

    maps = load_label_maps(cohort, cases[2])
    np.testing.assert_array_equal(viewer.label_maps.values, maps.values)
    np.testing.assert_array_equal(viewer.fused, qe_nb.fuse(maps.values, method="simple"))
    flags = qe_nb.alarms(cohort_scores["similarity"], 0.2).sel(case=cases[2])
    table = viewer.scores_panel.outputs[0]["data"]["text/html"]
    assert table.count('class="qe-alarm"') == int(flags.sum())
    assert f"{int(flags.sum())} in all" in table
    # the legend carries each candidate's Dice and alarm count
    k = viewer.structure
    texts = _legend_texts(viewer)
    for a in cohort["algorithm"].values:
        d = float(cohort_scores["similarity"].sel(case=cases[2], algorithm=a, label=k, metric="dice"))
        n = int(flags.sel(algorithm=a).sum())
        assert any(t.startswith(f"{a}: Dice {d:.2f}, {n} alarm") for t in texts), texts


def test_viewer_without_images(cohort):
    bare = cohort.drop_vars("image").drop_dims("modality")
    viewer = CaseViewer(bare, str(cohort["case"].values[0]))
    assert viewer.images is None
    assert list(viewer.modality_dropdown.options) == ["(none)"]
    assert _png_bytes(viewer.overlay_panel).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((xr.Dataset(), "case-000"), {}, r"`ensemble` must be the catalogue from qe_nb.open_ensemble .* got Dataset"),
        ((None, "nope"), {}, r"Unknown case 'nope'; the ensemble holds 3 case\(s\), e.g. \['case-000'"),
        ((None, 7), {}, r"Unknown case 7"),
        ((None, "case-000"), {"fusion": "vote"}, r"Unknown fusion 'vote'; expected one of \['mav', 'simple', 'brats-simple', 'staple'\]"),
        ((None, "case-000"), {"scores": [1]}, r"`scores` must be None or a scores Dataset .* got list"),
    ],
)
def test_viewer_errors(cohort, args, kwargs, match):
    ensemble = cohort if args[0] is None else args[0]
    with pytest.raises(InputError, match=match):
        CaseViewer(ensemble, args[1], **kwargs)


def test_viewer_set_case_unknown(cohort):
    viewer = CaseViewer(cohort, "case-000")
    with pytest.raises(InputError, match=r"Unknown case 'case-999'"):
        viewer.set_case("case-999")
    assert viewer.case == "case-000"


# ----------------------------------------------------------------------------- units (issue 13)


def test_explorer_labels_distances_in_the_cubes_units():
    """A cohort read from PNG files has distances in pixels: Figure 4 and the thresholds say "px"."""
    px = fake_scores(20).assign_coords(units=("metric", ["1", "px"]))
    px.attrs["distance_units"] = "px"
    app = CalibrationExplorer(px)
    labels = [ax.get_ylabel() for ax in app.quality_view.figure.axes]
    assert "hd95 of the fusion to the reference (px)" in labels and not any("mm" in t for t in labels)
    assert app.threshold_units.value == "<p>hd95 in px</p>"
    mm = CalibrationExplorer(fake_scores(20))
    assert "hd95 of the fusion to the reference (mm)" in [ax.get_ylabel() for ax in mm.quality_view.figure.axes]
    assert mm.threshold_units.value == "<p>hd95 in mm</p>"


# ----------------------------------------------------------------------------- issue 14


def test_calibrate_says_it_cleared_the_offsets(fresh, scores):
    with fresh.hold_redraws():
        fresh.override_checkboxes["label"]["tumor_core"].value = True
        fresh.override_sliders["label"]["tumor_core"].value = 0.7
    fresh.calibrate_button.click()
    note = fresh.controls.calibration_note.value
    assert "the 1 Δα offset(s) were cleared" in note and "per label" in note


def test_calibrate_per_label_keeps_one_alpha_per_label(fresh, scores):
    fresh.controls.by_dropdown.value = "per label"
    fresh.objective_dropdown.value = "entropy"
    fresh.calibrate_button.click()
    expected = qe_nb.calibrate(scores["similarity"], objective="entropy", by="label")
    got = fresh.alpha
    for label in expected["label"].values:
        assert float(got.sel(label=label).max()) == pytest.approx(float(expected.sel(label=label)))
    assert all(v is not None for v in fresh.overrides["label"].values())
    note = fresh.controls.calibration_note.value
    assert "one α per label" in note and "Δα" in note


def test_exported_notebooks_show_a_static_snapshot(app):
    """The explorer's bundle carries a text/html fallback with its PNGs, which nbconvert keeps."""
    bundle = app._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    snapshot = data["text/html"]
    assert snapshot.count('<img src="data:image/png;base64,') >= 2
    assert "static snapshot" in snapshot and "α = " in snapshot


# --------------------------------------------------------------------------- text size (issue 14)


def _text_pixels(fig, dpi: float) -> list[tuple[float, str]]:
    """(size in px at ``dpi``, text) of every visible, non-empty text artist of ``fig``."""
    from matplotlib.text import Text

    fig.canvas.draw()  # tick labels are made while drawing
    return sorted((t.get_fontsize() * dpi / 72, t.get_text()) for t in fig.findobj(Text)
                  if t.get_visible() and t.get_text().strip())


@pytest.mark.parametrize("quality", [True, False], ids=["figure4", "histogram"])
def test_explorer_figures_text_is_at_least_10_px(quality):
    """Every text of the explorer's figures (Figure 4 or the histogram, the sweep with its
    heatmap numbers) is >= 10 px as rendered at the app's dpi (it was 7-8 px), and the app
    leaves matplotlib's rcParams as it found them."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    app = CalibrationExplorer(fake_scores(quality=quality))
    app.alpha_slider.value = 0.5
    dpi = app._dpi
    for name, fig in {"quality": app.quality_view.figure, "sweep": app.sweep_view.figure}.items():
        sizes = _text_pixels(fig, dpi)
        assert sizes and sizes[0][0] >= 10.0, f"{name}: smallest text {sizes[0]} at {dpi} dpi"
        assert any(text == "alarm count" for _, text in sizes)
    assert dict(matplotlib.rcParams) == before


def test_app_text_sets_the_base_size_only_inside():
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.font_manager import font_scalings

    from qe_nb.ui.style import APP_FONT_SIZE, app_text

    size = matplotlib.rcParams["font.size"]
    with app_text():
        fig = Figure()
        label = fig.add_subplot().set_xlabel("x", fontsize="small")
    assert label.get_fontsize() == pytest.approx(APP_FONT_SIZE * font_scalings["small"])
    assert label.get_fontsize() >= 10
    assert matplotlib.rcParams["font.size"] == size

"""The case viewer and the overlay on 2-D cases (y, x): PNG cohorts in pixels, 2-D NIfTI in mm, and
the real BU-BIL cell images (skipped only when ../shared is absent)."""

from __future__ import annotations

import base64

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import xarray as xr  # noqa: E402

pytest.importorskip("ipywidgets")

import qe_nb  # noqa: E402
from qe_nb.ui import plots  # noqa: E402
from qe_nb.ui.viewer import ZOOM_MARGIN, CaseViewer  # noqa: E402

from .conftest import SHARED  # noqa: E402

BU_BIL = SHARED / "data" / "bu-bil-fibroblasts"
CROWD = "{case}/crowd_mturk_annotation3-{algorithm}.png"

pytestmark = pytest.mark.filterwarnings("ignore::qe_nb.exceptions.QeNbWarning")


def _disc(shape, centre, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _write(array, path, spacing=None):
    image = sitk.GetImageFromArray(array)
    if spacing is not None:
        image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK: (x, y)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def png_cohort(tmp_path_factory):
    """Three cases of a 60 x 80 frame with one cell, three annotators (0/255 PNG), a gold standard
    and a 16-bit image in the first two cases only."""
    root = tmp_path_factory.mktemp("cells")
    shape = (60, 80)
    rng = np.random.default_rng(5)
    for i in range(3):
        case = root / f"m{i + 1:02d}"
        case.mkdir()
        gold = _disc(shape, (30, 40), 10)
        _write(gold.astype(np.uint8) * 255, case / "gold.png")
        for k, (dy, dx, r) in enumerate([(0, 0, 10), (1, -1, 9), (0, 3 + 2 * i, 11)]):
            _write(_disc(shape, (30 + dy, 40 + dx), r).astype(np.uint8) * 255, case / f"ann-{k + 1}.png")
        if i < 2:
            image = (1000 + 400 * gold + rng.normal(0, 50, shape)).clip(0).astype(np.uint16)
            _write(image, case / "image.png")
    return root


@pytest.fixture(scope="module")
def png_ensemble(png_cohort):
    return qe_nb.open_ensemble(png_cohort, masks="{case}/ann-{algorithm}.png", reference="{case}/gold.png",
                               images="{case}/image.png", labels="binary")


@pytest.fixture(scope="module")
def png_scores(png_ensemble):
    return qe_nb.score(png_ensemble, metrics=("dice", "hd95"), n_jobs=1, progress=False)


def _png(output_widget) -> bytes:
    return base64.b64decode(output_widget.outputs[0]["data"]["image/png"])


def _legend(viewer) -> list[str]:
    return [t.get_text() for t in viewer.figure.axes[0].get_legend().get_texts()]


def _extent(ax, color):
    rgba = matplotlib.colors.to_rgba(color)
    for c in ax.collections:
        colors = c.get_edgecolor()
        if len(colors) and np.allclose(colors[0][:3], rgba[:3]):
            v = np.concatenate([p.vertices for p in c.get_paths()])
            return v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()
    raise AssertionError(f"no outline in {color}")


def test_viewer_on_a_2d_case_has_no_slice_controls(png_ensemble, png_scores):
    viewer = CaseViewer(png_ensemble, "m01", scores=png_scores, alpha=0.0)
    assert viewer.is_2d and viewer.label_maps.dims == ("algorithm", "y", "x")
    assert viewer.fused.shape == (60, 80) and viewer.images.dims == ("modality", "y", "x")
    # no slice slider and no view buttons: hidden; the zoom is offered instead
    assert viewer.slice_slider.layout.display == "none" and viewer.axis_buttons.layout.display == "none"
    assert viewer.zoom_checkbox.layout.display is None and viewer.zoom_checkbox.value
    assert viewer.index == 0 and viewer.axis == 0
    assert viewer.units == "px" and viewer.spacing == (1.0, 1.0)
    assert "grid 60 x 80 px" in viewer.case_label.value
    ax = viewer.figure.axes[0]
    assert ax.get_title(loc="left") == "m01 · foreground"  # no "slice z = ..."
    assert ax.get_xlabel() == "x (pixels)" and ax.get_ylabel() == "y (pixels)"
    # every member, the fusion and the reference, with Dice and alarms from the scores
    texts = _legend(viewer)
    assert texts[:2] == ["mav", "reference"] and len(texts) == 5
    flags = qe_nb.alarms(png_scores["similarity"], 0.0).sel(case="m01")
    for a in ("1", "2", "3"):
        d = float(png_scores["similarity"].sel(case="m01", algorithm=a, label="foreground", metric="dice"))
        n = int(flags.sel(algorithm=a).sum())
        assert any(t.startswith(f"{a}: Dice {d:.2f}, {n} alarm") for t in texts), texts
    # the scores table names the distance units
    table = viewer.scores_panel.outputs[0]["data"]["text/html"]
    assert "foreground hd95 (px)" in table and "foreground dice (" not in table
    assert _png(viewer.overlay_panel).startswith(b"\x89PNG")


def test_viewer_2d_outlines_lie_on_the_masks(png_ensemble):
    from skimage import measure

    viewer = CaseViewer(png_ensemble, "m02")
    viewer.zoom_checkbox.value = False
    ax = viewer.figure.axes[0]
    assert ax.get_xlim() == pytest.approx((-0.5, 79.5))  # the whole frame
    for mask, color in ((viewer.fused > 0, plots.FUSION_COLOR),
                        (viewer.reference.values[0], plots.REFERENCE_COLOR),
                        (viewer.label_maps.values[2] > 0, plots.CANDIDATE_COLORS[2])):
        rows_cols = np.concatenate(measure.find_contours(mask.astype(float), 0.5))
        expected = (rows_cols[:, 1].min(), rows_cols[:, 1].max(), rows_cols[:, 0].min(), rows_cols[:, 0].max())
        assert _extent(ax, color) == pytest.approx(expected, abs=1e-9)
    # zoomed: the outlines plus ZOOM_MARGIN of the larger side (80 px -> 4 px)
    viewer.zoom_checkbox.value = True
    ax = viewer.figure.axes[0]
    footprint = (viewer.label_maps.values > 0).any(0) | viewer.reference.values[0]
    cols = np.flatnonzero(footprint.any(0))
    margin = ZOOM_MARGIN * 80
    assert ax.get_xlim() == pytest.approx((cols[0] - margin - 0.5, cols[-1] + margin + 0.5))


def test_viewer_2d_toggles_and_blank_frame(png_ensemble):
    viewer = CaseViewer(png_ensemble, "m01")
    viewer.candidate_checkboxes["2"].value = False
    viewer.reference_checkbox.value = False
    assert _legend(viewer) == ["mav", "1", "3"]
    before = _png(viewer.overlay_panel)
    viewer.modality_dropdown.value = "(none)"  # outlines over a blank frame
    assert _png(viewer.overlay_panel) != before
    assert float(np.ptp(viewer.figure.axes[0].images[0].get_array())) == 0.0
    # m03 has no image file: a blank frame, the same outlines
    viewer.modality_dropdown.value = "image"
    viewer.set_case("m03")
    assert viewer.case == "m03" and viewer.is_2d
    assert len(viewer.figure.axes[0].images) == 1 and _legend(viewer) == ["mav", "1", "3"]


def test_viewer_2d_nifti_in_mm(tmp_path):
    """A 2-D NIfTI stores spacing: the labels read mm and the aspect follows the pixel size."""
    shape = (40, 50)
    for case in ("a", "b"):
        (tmp_path / case).mkdir()
        for k, r in enumerate((8, 9, 10)):
            _write(_disc(shape, (20, 25), r).astype(np.uint8), tmp_path / case / f"alg{k}.nii.gz",
                   spacing=(0.5, 0.25))
    ensemble = qe_nb.open_ensemble(tmp_path, labels="binary")
    scores = qe_nb.score(ensemble, metrics=("dice", "hd95"), n_jobs=1, progress=False)
    viewer = CaseViewer(ensemble, "a", scores=scores)
    assert viewer.is_2d and viewer.units == "mm" and viewer.spacing == (0.5, 0.25)
    ax = viewer.figure.axes[0]
    assert ax.get_xlabel() == "x (0.25 mm pixels)" and ax.get_ylabel() == "y (0.5 mm pixels)"
    assert ax.get_aspect() == pytest.approx(2.0)
    assert "foreground hd95 (mm)" in viewer.scores_panel.outputs[0]["data"]["text/html"]


def test_viewer_2d_units_from_the_scores_when_the_maps_have_none(png_ensemble, png_scores, monkeypatch):
    from qe_nb.data import loading

    original = loading.load_label_maps

    def without_units(*args, **kwargs):
        maps = original(*args, **kwargs)
        maps.attrs.pop("units", None)
        return maps

    monkeypatch.setattr(loading, "load_label_maps", without_units)
    assert CaseViewer(png_ensemble, "m01", scores=png_scores).units == "px"
    assert CaseViewer(png_ensemble, "m01").units == "mm"


def test_viewer_pool_all_uses_one_threshold_per_label_and_metric(png_ensemble, png_scores):
    viewer = CaseViewer(png_ensemble, "m01", scores=png_scores, alpha=0.0, pool="all")
    expected = qe_nb.alarms(png_scores["similarity"], 0.0, pool="all")
    xr.testing.assert_equal(viewer.alarms, expected)
    with pytest.raises(qe_nb.InputError, match=r"`pool` must be one of \['algorithm', 'all'\].* got 'member'"):
        CaseViewer(png_ensemble, "m01", scores=png_scores, pool="member")


# ------------------------------------------------------------------ the real cohort


@pytest.fixture(scope="module")
def bu_bil():
    if not (BU_BIL / "m01" / "gold.png").is_file():
        pytest.skip(f"BU-BIL is not at {BU_BIL} (../shared is absent; set QE_NB_SHARED to point at it)")
    return qe_nb.open_ensemble(BU_BIL, masks=CROWD, reference="{case}/gold.png", images="{case}/image.png",
                               labels="binary")


def test_bu_bil_case_in_the_viewer(bu_bil):
    scores = qe_nb.score(bu_bil, metrics=("dice", "hd95"), cases=["m01", "m02", "m03", "m26"], n_jobs=1,
                         progress=False)
    assert scores.attrs["distance_units"] == "px"
    viewer = CaseViewer(bu_bil, "m01", scores=scores, alpha=0.0)
    assert viewer.is_2d and viewer.fused.shape == (1030, 1300) and viewer.units == "px"
    assert viewer.slice_slider.layout.display == "none"
    assert viewer.images is not None and viewer.modality_dropdown.value == "image"
    texts = _legend(viewer)
    assert texts[:2] == ["mav", "reference"] and len(texts) == 2 + 7
    assert not any("not on this slice" in t for t in texts)
    # the outlines lie on the cell, which the zoom frames with its margin
    ax = viewer.figure.axes[0]
    x0, x1 = ax.get_xlim()
    assert x1 - x0 < 1300 / 2
    gold = viewer.reference.values[0]
    cols = np.flatnonzero(gold.any(0))
    assert x0 < cols[0] and cols[-1] < x1
    # a case without image.png (m26): a blank frame
    viewer.set_case("m26")
    assert float(np.ptp(viewer.figure.axes[0].images[0].get_array())) == 0.0

"""The case viewer goes to the problem (issue 14): the structure and slice where the members
disagree most, zoomed to the lesion, distinct colour-blind-safe colours with the fusion on top,
a legend that is never clipped; checked on the real BraTS case."""

from __future__ import annotations

import warnings

import matplotlib.colors
import numpy as np
import pytest

import qe_nb
from qe_nb.exceptions import InputError
from qe_nb.ui import style
from qe_nb.ui.common import figure_png_at
from qe_nb.ui.overlay import case_overlay
from qe_nb.ui.viewer import CaseViewer, disagreement, most_disagreeing_slice

pytest.importorskip("ipywidgets")


def test_most_disagreeing_slice():
    masks = np.zeros((3, 6, 4, 4), bool)
    masks[:, 1] = True            # slice 1: all agree
    masks[0, 4, :2] = True        # slice 4: one member alone, 8 voxels
    masks[1, 2, 0, 0] = True      # slice 2: 1 voxel
    assert disagreement(masks).sum() == 9
    assert most_disagreeing_slice(masks, 0) == 4
    assert most_disagreeing_slice(masks[:, 1:2], 0) is None  # full agreement


def test_start_is_checked(tmp_path):
    ens = qe_nb.synthetic_cohort(tmp_path / "c", n_cases=2, n_algorithms=3, shape=(16, 20, 20), seed=1)
    with pytest.raises(InputError, match=r"`start` must be one of \['disagreement', 'fusion'\]; got 'middle'"):
        CaseViewer(ens, "case-000", start="middle")


@pytest.fixture(scope="module")
def brats(brats_case_dir):
    root = brats_case_dir.parent
    ens = qe_nb.open_ensemble(root, masks="{case}/segmentation/{algorithm}.nii.gz",
                              images="{case}/images/{modality}.nii.gz", labels="brats-regions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = qe_nb.score(ens, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False)
    return ens, scores


def test_real_case_opens_where_the_members_disagree(brats):
    """TCGA-DU-7294: the enhancing tumour is in 2 of 5 members and not in the fusion; the
    viewer used to open on slice 77 (the middle: no centre of mass), where no outline is."""
    ens, scores = brats
    viewer = CaseViewer(ens, "TCGA-DU-7294", scores=scores, alpha=0.0)
    assert viewer.structure == "enhancing_tumor"
    assert 100 <= viewer.index <= 125
    texts = [t.get_text() for t in viewer.figure.axes[0].get_legend().get_texts()]
    on_slice = [t for t in texts if "(not on this slice)" not in t]
    assert len(on_slice) == 2, texts  # the two members that see an enhancing tumour
    # switching structure goes to that structure's disagreement
    viewer.structure_dropdown.value = "whole_tumor"
    masks = viewer._members(0)
    per_slice = disagreement(masks).sum(axis=(1, 2))
    assert viewer.index == int(np.argmax(per_slice))
    # the old behaviour, kept as an option
    old = CaseViewer(ens, "TCGA-DU-7294", start="fusion")
    assert old.structure == "whole_tumor"


def test_real_case_zooms_to_the_lesion_and_the_legend_fits(brats):
    ens, scores = brats
    viewer = CaseViewer(ens, "TCGA-DU-7294", scores=scores, alpha=0.0)
    ax = viewer.figure.axes[0]
    x0, x1 = sorted(ax.get_xlim())
    assert x1 - x0 < 120  # zoomed: the lesion plus a 12 mm margin, not the 240 mm slice
    figure_png_at(viewer.figure, 72)
    legend = ax.get_legend().get_window_extent()
    assert legend.x1 <= viewer.figure.bbox.width and legend.y0 >= 0
    viewer.zoom_checkbox.value = False
    x0, x1 = sorted(ax.get_xlim())
    assert x1 - x0 == pytest.approx(240)


def test_colours_are_distinct_and_the_fusion_is_on_top():
    hexes = [c.lower() for c in style.CANDIDATE_COLORS[:5]]
    assert len(set(hexes)) == 5
    assert style.FUSION_COLOR.lower() not in hexes and style.REFERENCE_COLOR.lower() not in hexes
    # no two candidate colours of the same hue family (the old palette: two oranges, two blues):
    # the coloured ones differ in hue, the others are a light and a dark grey
    hsv = [matplotlib.colors.rgb_to_hsv(matplotlib.colors.to_rgb(c)) for c in hexes]
    hues = [h for h, s, v in hsv if s > 0.2]
    assert len(hues) == 3
    gaps = [abs(a - b) for i, a in enumerate(hues) for b in hues[i + 1:]]
    assert min(min(g, 1 - g) for g in gaps) > 0.1
    greys = sorted(v for h, s, v in hsv if s <= 0.2)
    assert greys[1] - greys[0] > 0.5
    img = np.zeros((3, 12, 12))
    fused = np.zeros((3, 12, 12), bool)
    fused[1, 3:8, 3:8] = True
    ax = case_overlay(img, fused, {f"m{i}": fused for i in range(5)}, reference=fused)
    zorders = {matplotlib.colors.to_hex(c.get_edgecolor()[0]): c.get_zorder() for c in ax.collections
               if len(c.get_edgecolor())}
    fusion_z = zorders[style.FUSION_COLOR.lower()]
    assert all(fusion_z > z for colour, z in zorders.items() if colour != style.FUSION_COLOR.lower())


def test_long_legends_are_never_clipped():
    img = np.zeros((3, 40, 40))
    fused = np.zeros((3, 40, 40), bool)
    fused[1, 10:20, 10:20] = True
    names = {f"a-very-long-member-name-{i}": fused for i in range(7)}
    ax = case_overlay(img, fused, names, dice=[0.5] * 7, alarms=[10] * 7)
    figure_png_at(ax.figure, 72)
    legend = ax.get_legend().get_window_extent()
    assert legend.x1 <= ax.figure.bbox.width
    label = ax.yaxis.label.get_window_extent()
    assert label.x0 >= 0

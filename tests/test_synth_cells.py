"""The synthetic 2-D cell cohort (kind="cells"): PNG masks in pixels, crowd-like failures."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

import qe_nb
from qe_nb.data.loading import load_case, load_reference, read_label_maps
from qe_nb.data.synth import synthetic_cohort
from qe_nb.data.synth_cells import CELL_FAILURES, cells_case
from qe_nb.exceptions import InputError, UnreliableThresholdWarning

SHAPE = (96, 112)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells") / "cohort"
    ens = synthetic_cohort(root, kind="cells", n_cases=10, n_algorithms=5, shape=SHAPE, seed=3)
    return root, ens


def test_catalogue_is_2d_png_in_pixels_with_ground_truth(cells):
    root, ens = cells
    assert dict(ens.sizes) == {"case": 10, "algorithm": 5, "modality": 1, "label": 1}
    assert list(ens.algorithm.values) == [f"worker-{i:02d}" for i in range(1, 6)]
    assert ens.attrs["masks"] == "{case}/{algorithm}.png" and ens.attrs["label_scheme"] == "binary"
    assert all(str(p) for p in ens["reference"].values)
    arrays, grid = read_label_maps(ens, "case-000")
    assert grid.shape == SHAPE and grid.units == "px" and grid.spacing == (1.0, 1.0)
    # checked against SimpleITK's own reading of the PNG
    png = sitk.ReadImage(str(root / "case-000" / "worker-01.png"))
    assert png.GetDimension() == 2
    np.testing.assert_array_equal(arrays["worker-01"], sitk.GetArrayFromImage(png))
    assert set(np.unique(arrays["worker-01"])) <= {0, 255}
    reference = load_reference(ens, "case-000")
    assert reference.dims == ("label", "y", "x") and reference.attrs["units"] == "px"
    assert 0.01 < float(reference.mean()) < 0.5
    image = qe_nb.load_images(ens, "case-000")
    assert image.dims == ("modality", "y", "x") and list(image.modality.values) == ["phase"]


def test_same_seed_same_bytes_other_seed_other_masks(tmp_path):
    a = synthetic_cohort(tmp_path / "a", kind="cells", n_cases=2, n_algorithms=3, shape=(48, 64), seed=7)
    b = synthetic_cohort(tmp_path / "b", kind="cells", n_cases=2, n_algorithms=3, shape=(48, 64), seed=7)
    c = synthetic_cohort(tmp_path / "c", kind="cells", n_cases=2, n_algorithms=3, shape=(48, 64), seed=8)
    for case in ("case-000", "case-001"):
        for name in ("reference.png", "worker-01.png", "worker-03.png", "images/phase.png"):
            assert (tmp_path / "a" / case / name).read_bytes() == (tmp_path / "b" / case / name).read_bytes()
    assert (tmp_path / "a" / "case-000" / "reference.png").read_bytes() != (
        tmp_path / "c" / "case-000" / "reference.png").read_bytes()
    assert len(a.case) == len(b.case) == len(c.case) == 2


def test_failures_recorded_and_visible_against_the_ground_truth(tmp_path):
    """A generated failure costs the mask Dice with the truth; a clean mask is the truth."""
    rng = np.random.default_rng(0)
    skill = np.array([0.99, 0.05, 0.05, 0.05, 0.05, 0.05])
    seen: set[str] = set()
    for _ in range(6):
        case = cells_case(rng, (128, 128), skill, np.zeros(6), images=False)
        truth = case["reference"] > 0
        for mask, failures in zip(case["candidates"], case["failures"]):
            assert set(failures) <= set(CELL_FAILURES)
            seen.update(failures)
            dice = 2 * (truth & (mask > 0)).sum() / (truth.sum() + (mask > 0).sum())
            if failures:
                assert dice < 1.0, failures
            else:
                assert dice == 1.0
    assert seen == set(CELL_FAILURES)


def test_missed_object_lowers_candidate_dice_in_the_scores(cells):
    root, ens = cells
    record = json.loads((root / "cohort.json").read_text())
    assert record["kind"] == "cells" and record["label_values"] == {"cell": 255}
    cube = qe_nb.score(ens, metrics=["dice", "hd95"], progress=False)
    assert cube.attrs["distance_units"] == "px"
    assert dict(zip(cube.metric.values, cube["units"].values)) == {"dice": "1", "hd95": "px"}
    quality = cube["candidate_quality"].sel(metric="dice").squeeze("label", drop=True)
    for case in record["cases"]:
        for worker, failures in case["failures"].items():
            value = float(quality.sel(case=case["case"], algorithm=worker))
            if "missed" in failures or "offset" in failures:
                assert value < 1.0
            if not failures:
                assert value == 1.0


def test_cohort_scores_end_to_end_and_alarms_track_quality(tmp_path):
    ens = synthetic_cohort(tmp_path / "c", kind="cells", n_cases=24, n_algorithms=5, shape=(128, 128), seed=0)
    cube = qe_nb.score(ens, progress=False)
    dice = cube["quality"].sel(metric="dice").squeeze("label", drop=True)
    assert float(dice.min()) < 0.95 < float(dice.max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableThresholdWarning)  # small cohort: some MAD 0
        risk = qe_nb.alarms(cube["similarity"], 0.1).sum(("algorithm", "label", "metric"))
    assert np.corrcoef(risk, dice)[0, 1] < -0.3
    masks = load_case(ens, "case-001")
    assert masks.dims == ("algorithm", "label", "y", "x")


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((32, 32, 32), r"`shape` must be 2 positive integers \(y, x\) for kind='cells', each >= 32; got \(32, 32, 32\)"),
        ((16, 64), r"`shape` must be 2 positive integers \(y, x\) .*got \(16, 64\)"),
        ((64.0, 64), r"`shape` must be 2 positive integers .*got \(64.0, 64\)"),
        (64, r"`shape` must be 2 positive integers .*got 64"),
    ],
)
def test_cells_shape_must_be_2d(tmp_path, shape, match):
    with pytest.raises(InputError, match=match):
        synthetic_cohort(tmp_path / "x", kind="cells", n_cases=1, shape=shape)
    assert not (tmp_path / "x").exists()

"""``scores.qe`` and ``similarity.qe``: each forward equals the function it forwards to."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import qe_nb
import qe_nb.core.accessor  # noqa: F401  (registers .qe)


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    sim = rng.uniform(0.5, 1.0, size=(30, 3, 2, 2))
    sim[..., 1] = rng.uniform(0.0, 8.0, size=(30, 3, 2))
    sim[4, 1, 0, 0] = np.nan
    coords = {"case": [f"c{i:02d}" for i in range(30)], "algorithm": ["a", "b", "c"], "label": ["wt", "et"],
              "metric": ["dice", "hd95"], "higher_is_better": ("metric", [True, False]),
              "units": ("metric", ["1", "mm"])}
    similarity = xr.DataArray(sim, dims=("case", "algorithm", "label", "metric"), coords=coords, name="similarity")
    quality = xr.DataArray(rng.uniform(0.3, 1.0, size=(30, 2, 2)), dims=("case", "label", "metric"),
                           coords={k: coords[k] for k in ("case", "label", "metric")})
    return xr.Dataset({"similarity": similarity, "quality": quality})


def _same(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, (xr.DataArray, xr.Dataset)):
        xr.testing.assert_identical(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("on", ["dataset", "dataarray"])
def test_each_forward_equals_the_function(scores, on):
    sim = scores["similarity"]
    quality = scores["quality"].sel(metric="dice").mean("label")
    obj = scores if on == "dataset" else sim
    alpha = xr.DataArray([0.5, 1.0], dims="metric", coords={"metric": ["dice", "hd95"]})
    _same(obj.qe.thresholds(0.5), qe_nb.thresholds(sim, 0.5))
    _same(obj.qe.thresholds(alpha, mad_scale="normal"), qe_nb.thresholds(sim, alpha, mad_scale="normal"))
    _same(obj.qe.alarms(0.5), qe_nb.alarms(sim, 0.5))
    _same(obj.qe.alarms(alpha), qe_nb.alarms(sim, alpha))
    _same(obj.qe.risk(0.5), qe_nb.risk(qe_nb.alarms(sim, 0.5)))
    _same(obj.qe.risk(0.5, mad_scale=2.0), qe_nb.risk(qe_nb.alarms(sim, 0.5, mad_scale=2.0)))
    _same(obj.qe.threshold_table(0.5), qe_nb.threshold_table(sim, 0.5))
    _same(obj.qe.threshold_table(0.5, label="wt"), qe_nb.threshold_table(sim, 0.5, label="wt"))
    _same(obj.qe.worklist(0.5), qe_nb.worklist(sim, 0.5))
    _same(obj.qe.worklist(0.5, quality=quality), qe_nb.worklist(sim, 0.5, quality=quality))
    _same(obj.qe.sweep(), qe_nb.sweep(sim))
    _same(obj.qe.sweep([0.0, 0.5, 1.0], quality=quality), qe_nb.sweep(sim, [0.0, 0.5, 1.0], quality=quality))
    _same(obj.qe.risk_scores(), qe_nb.risk_scores(obj))
    _same(obj.qe.risk_scores(alpha=0.5, level="candidate"), qe_nb.risk_scores(obj, alpha=0.5, level="candidate"))
    _same(obj.qe.calibrate(), qe_nb.calibrate(sim))
    _same(obj.qe.calibrate(objective="pearson", quality=quality, by="metric"),
          qe_nb.calibrate(sim, objective="pearson", quality=quality, by="metric"))


def test_risk_scores_forward_uses_the_member_variables(scores):
    rng = np.random.default_rng(5)
    volume = xr.DataArray(rng.uniform(10, 20, size=(30, 3, 2)), dims=("case", "algorithm", "label"),
                          coords={k: scores[k].values for k in ("case", "algorithm", "label")})
    full = scores.assign(volume=volume)
    _same(full.qe.risk_scores(alpha=0.1), qe_nb.risk_scores(full, alpha=0.1))
    assert "volume_cv" in full.qe.risk_scores() and "volume_cv" not in scores.qe.risk_scores()


def test_errors_are_the_functions_errors(scores):
    with pytest.raises(qe_nb.InputError, match="`alpha` must be"):
        scores.qe.alarms("high")
    with pytest.raises(KeyError):
        xr.Dataset().qe.alarms(0.1)  # no similarity: plain xarray behaviour, no logic of its own


def test_the_accessor_holds_no_state(scores):
    assert scores.qe.similarity is not None
    assert not [k for k in vars(scores.qe) if k != "_obj"]

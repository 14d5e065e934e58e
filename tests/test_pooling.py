"""pool="all": one threshold per label and metric over every member, checked against numpy.

The pooled thresholds are computed here independently (plain numpy over the flattened
case x algorithm values), and every entry point that takes thresholds (alarms, thresholds,
threshold_table, worklist, sweep, sweep_table, calibrate) is compared with them; the default
``pool="algorithm"`` must give exactly what the functions gave without the keyword.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from qe_nb.core.alarms import alarms, risk, threshold_table, thresholds
from qe_nb.core.calibration import calibrate, sweep, sweep_table
from qe_nb.core.triage import worklist
from qe_nb.exceptions import InputError, UnreliableThresholdWarning

DIMS = ("case", "algorithm", "label", "metric")


def crowd_cube(seed: int = 0, n_cases: int = 25) -> xr.DataArray:
    """Dice and hd95 of 4 members x 2 labels whose quality differs by member, with inf/NaN."""
    rng = np.random.default_rng(seed)
    shape = (n_cases, 4, 2)
    dice = np.clip(rng.normal(0.8, 0.1, shape) - np.array([0, 0.05, 0.2, 0.3])[None, :, None], 0, 1)
    hd95 = rng.gamma(2.0, 3.0, shape) * np.array([1, 1.5, 2, 4])[None, :, None]
    hd95[rng.random(shape) < 0.05] = np.inf
    dice[rng.random(shape) < 0.03] = np.nan
    return xr.DataArray(
        np.stack([dice, hd95], axis=-1),
        dims=DIMS,
        coords={
            "case": [f"c{i:02d}" for i in range(n_cases)],
            "algorithm": ["w1", "w2", "w3", "w4"],
            "label": ["cell", "nucleus"],
            "metric": ["dice", "hd95"],
        },
    )


def numpy_pooled_thresholds(sim: xr.DataArray, alpha: float, scale: float = 1.0) -> np.ndarray:
    """(label, metric) thresholds from every member's finite values, by hand."""
    values = sim.transpose(*DIMS).values
    out = np.empty(values.shape[2:])
    for lab in range(values.shape[2]):
        for m, metric in enumerate(sim.metric.values):
            sign = 1.0 if metric == "dice" else -1.0
            x = values[:, :, lab, m].ravel()
            x = sign * x[np.isfinite(x)]
            med = np.median(x)
            mad = scale * np.median(np.abs(x - med))
            out[lab, m] = sign * (med - alpha * mad)
    return out


def numpy_alarms(sim: xr.DataArray, limits: np.ndarray) -> np.ndarray:
    """Alarm cube (case, algorithm, label, metric) for per-(label, metric) limits."""
    values = sim.transpose(*DIMS).values
    higher = np.array([m == "dice" for m in sim.metric.values])
    with np.errstate(invalid="ignore"):
        below = np.where(higher, values < limits, values > limits)
    return below | ~np.isfinite(values)


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("mad_scale", [1.0, "normal"])
def test_pooled_thresholds_and_alarms_match_numpy(alpha, mad_scale):
    sim = crowd_cube()
    scale = 1.4826 if mad_scale == "normal" else 1.0
    expected = numpy_pooled_thresholds(sim, alpha, scale)
    got = thresholds(sim, alpha, mad_scale=mad_scale, pool="all")
    assert got.dims == ("algorithm", "label", "metric") and got.attrs["pool"] == "all"
    for a in range(sim.sizes["algorithm"]):  # broadcast: every member the same
        np.testing.assert_allclose(got.values[a], expected, rtol=0, atol=1e-12)
    flags = alarms(sim, alpha, mad_scale=mad_scale, pool="all")
    np.testing.assert_array_equal(flags.values, numpy_alarms(sim, expected))
    # and pooling changes the answer on this cohort (members differ in quality)
    assert not np.array_equal(flags.values, alarms(sim, alpha, mad_scale=mad_scale).values)


def test_pooled_threshold_ignores_member_order_and_identity():
    """Shuffling the members independently per case (readers in arbitrary order) changes
    nothing pooled, but changes the per-member result."""
    sim = crowd_cube(seed=3)
    rng = np.random.default_rng(1)
    values = sim.values.copy()
    for c in range(values.shape[0]):
        values[c] = values[c, rng.permutation(values.shape[1])]
    shuffled = sim.copy(data=values)
    np.testing.assert_array_equal(
        thresholds(sim, 0.3, pool="all").values, thresholds(shuffled, 0.3, pool="all").values
    )
    np.testing.assert_array_equal(
        risk(alarms(sim, 0.3, pool="all")).values, risk(alarms(shuffled, 0.3, pool="all")).values
    )
    assert not np.array_equal(thresholds(sim, 0.3).values, thresholds(shuffled, 0.3).values)


def test_default_pool_is_per_algorithm_and_unchanged():
    sim = crowd_cube()
    for alpha in (0.0, 0.7):
        np.testing.assert_array_equal(alarms(sim, alpha).values, alarms(sim, alpha, pool="algorithm").values)
        np.testing.assert_array_equal(
            thresholds(sim, alpha).values, thresholds(sim, alpha, pool="algorithm").values
        )
    # per member by hand: member w3, label cell, dice
    x = sim.sel(algorithm="w3", label="cell", metric="dice").values
    x = x[np.isfinite(x)]
    med = np.median(x)
    expected = med - 0.7 * np.median(np.abs(x - med))
    got = float(thresholds(sim, 0.7).sel(algorithm="w3", label="cell", metric="dice"))
    assert got == pytest.approx(expected, abs=1e-12)


def test_pooled_with_per_member_alpha():
    sim = crowd_cube()
    alpha = xr.DataArray([0.0, 0.5, 1.0, 2.0], dims="algorithm", coords={"algorithm": sim.algorithm.values})
    got = thresholds(sim, alpha, pool="all")
    for a, value in enumerate(alpha.values):
        np.testing.assert_allclose(got.values[a], numpy_pooled_thresholds(sim, value), atol=1e-12)


def test_threshold_table_and_worklist_pool():
    sim = crowd_cube()
    expected = numpy_pooled_thresholds(sim, 0.1)
    table = threshold_table(sim, 0.1, pool="all")
    for a in sim.algorithm.values:
        np.testing.assert_allclose(table.xs(a, level="algorithm").values, expected, atol=1e-12)
    np.testing.assert_array_equal(threshold_table(sim, 0.1).values, threshold_table(sim, 0.1, pool="algorithm").values)
    work = worklist(sim, 0.1, pool="all").set_index("case")
    counts = numpy_alarms(sim, expected).sum(axis=(1, 2, 3))
    np.testing.assert_array_equal(work.loc[sim.case.values, "risk"].values, counts)
    assert worklist(sim, 0.1).equals(worklist(sim, 0.1, pool="algorithm"))


def test_sweep_and_calibrate_pool():
    sim = crowd_cube()
    grid = [-1.0, 0.0, 0.25, 1.0]
    ds = sweep(sim, grid, pool="all")
    for k, alpha in enumerate(grid):
        counts = numpy_alarms(sim, numpy_pooled_thresholds(sim, alpha)).sum(axis=(1, 2, 3))
        np.testing.assert_array_equal(ds["risk"].values[k], counts)
    assert ds.attrs["pool"] == "all"
    assert "pool" not in sweep(sim, grid).attrs  # the paper's sweep keeps its attrs
    table = sweep_table(sim, grid, pool="all")
    np.testing.assert_array_equal(table["entropy"].values, ds["entropy"].values)
    assert sweep(sim, grid).equals(sweep(sim, grid, pool="algorithm"))
    # calibrate's exact search over pooled thresholds finds the best alpha of the grid too
    best = calibrate(sim, alphas=grid, pool="all")
    assert best == grid[int(np.argmax(ds["entropy"].values))]
    assert calibrate(sim) == calibrate(sim, pool="algorithm")


@pytest.mark.parametrize("bad", ["member", "ALL", None, 1])
def test_bad_pool_is_refused(bad):
    sim = crowd_cube()
    pattern = r"`pool` must be one of \['algorithm', 'all'\] .*; got "
    for call in (
        lambda: alarms(sim, 0.1, pool=bad),
        lambda: thresholds(sim, 0.1, pool=bad),
        lambda: threshold_table(sim, 0.1, pool=bad),
        lambda: worklist(sim, 0.1, pool=bad),
        lambda: sweep(sim, [0.0], pool=bad),
        lambda: calibrate(sim, pool=bad),
    ):
        with pytest.raises(InputError, match=pattern):
            call()


def test_pooled_mad_zero_warns():
    sim = crowd_cube()
    sim = sim.copy(data=np.where(sim.metric.values == "dice", 1.0, sim.values))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnreliableThresholdWarning, match=r"group\(s\) have a MAD of 0"):
            thresholds(sim, 0.1, pool="all")

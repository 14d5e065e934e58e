"""Tests of qe_nb.ui.drift_figures: the rolling alarm rate drawn, the reference lines, the drift flag.

The numbers are recomputed independently (plain loops over the alarms, ``model.drift`` called
case by case) and compared with what the figure draws. The model is fitted on a synthetic
scores cube (no files): three members, 40 reference cases; 40 new cases arrive, and from the
21st on member ``b`` segments worse.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import qe_nb  # noqa: E402
from qe_nb.exceptions import InputError  # noqa: E402
from qe_nb.ui.drift_figures import (  # noqa: E402
    drift_flags,
    plot_alarm_rate,
    reference_alarm_rate,
    rolling_alarm_rate,
    stack_assessments,
)

MEMBERS = ["a", "b", "c"]
LABELS = ["whole_tumor", "tumor_core"]
N_REF, N_NEW, CHANGE = 40, 40, 20


def _scores(n: int, seed: int, *, prefix: str, worse: str | None = None, start: int = 0) -> xr.Dataset:
    """A scores cube as qe_nb.score makes it: Dice ~ 0.85 and HD95 ~ 2 mm, ``worse`` degraded from ``start``."""
    rng = np.random.default_rng(seed)
    dice = np.clip(0.85 + 0.05 * rng.standard_normal((n, 3, 2, 1)), 0, 1)
    hd = np.abs(2.0 + 0.5 * rng.standard_normal((n, 3, 2, 1)))
    if worse is not None:
        i = MEMBERS.index(worse)
        dice[start:, i] -= 0.2
        hd[start:, i] += 3.0
    return xr.Dataset(
        {"similarity": (("case", "algorithm", "label", "metric"), np.concatenate([dice, hd], axis=3)),
         "error": ("case", np.array([""] * n, dtype=object))},
        coords={"case": [f"{prefix}-{k:03d}" for k in range(n)], "algorithm": MEMBERS, "label": LABELS,
                "label_values": ("label", ["1,2,4", "1,4"]), "metric": ["dice", "hd95"],
                "higher_is_better": ("metric", [True, False])},
        attrs={"fusion": "mav", "similarity_mode": "fusion", "distance_units": "mm", "label_scheme": "brats",
               "metrics": "dice,hd95", "nsd_tolerance_mm": 1.0},
    )


@pytest.fixture(scope="module")
def model():
    return qe_nb.fit(_scores(N_REF, 0, prefix="ref"), 0.1)


@pytest.fixture(scope="module")
def stream(model):
    """The new cases assessed one at a time, as they arrive; ``b`` degrades from arrival 21 on."""
    new = _scores(N_NEW, 1, prefix="new", worse="b", start=CHANGE)
    return [model.assess(new, cases=[str(c)]) for c in new["case"].values]


def _plain_rolling(alarms: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Rolling share of alarming checks per member (case, member), a loop over the windows."""
    n, members = alarms.shape[:2]
    out = np.full((n, members), np.nan)
    for i in range(window - 1, n):
        rows = [j for j in range(i - window + 1, i + 1) if valid[j]]
        if rows:
            out[i] = [alarms[rows, m].mean() for m in range(members)]
    return out


def test_stack_assessments_concatenates_in_arrival_order(stream):
    ds = stack_assessments(stream)
    assert [str(c) for c in ds["case"].values] == [f"new-{k:03d}" for k in range(N_NEW)]
    assert "threshold" not in ds
    assert stack_assessments(ds) is ds


@pytest.mark.parametrize("window", [1, 5, 10])
def test_rolling_rate_is_the_share_of_alarming_checks_in_the_window(stream, window):
    ds = stack_assessments(stream)
    alarms = ds["alarms"].transpose("case", "algorithm", "label", "metric").values
    got = rolling_alarm_rate(stream, window=window)
    assert list(got.columns) == MEMBERS and list(got.index) == [str(c) for c in ds["case"].values]
    expected = _plain_rolling(alarms, np.ones(N_NEW, bool), window)
    np.testing.assert_allclose(got.to_numpy(), expected, equal_nan=True)
    assert got.iloc[: window - 1].isna().all().all() and got.iloc[window - 1:].notna().all().all()


def test_rolling_rate_leaves_failed_cases_out(stream):
    ds = stack_assessments(stream)
    errors = np.array([""] * N_NEW, dtype=object)
    errors[[3, 4, 5, 6, 7]] = "case-x: unreadable file"
    ds = ds.assign(error=("case", errors))
    # a failed case's alarms (all True for NaN rows) must not count
    ds["alarms"] = ds["alarms"].where(xr.DataArray(errors == "", dims="case"), True)
    got = rolling_alarm_rate(ds, window=5)
    alarms = ds["alarms"].transpose("case", "algorithm", "label", "metric").values
    np.testing.assert_allclose(got.to_numpy(), _plain_rolling(alarms, errors == "", 5), equal_nan=True)
    assert got.iloc[7].isna().all()  # a window of failed cases only has no rate
    assert got.iloc[8].notna().all()


def test_rolling_rate_per_member_and_metric(stream):
    ds = stack_assessments(stream)
    got = rolling_alarm_rate(stream, window=4, by=("metric", "algorithm"))
    assert got.columns.names == ["algorithm", "metric"]
    assert len(got.columns) == len(MEMBERS) * 2
    for member in MEMBERS:
        for metric in ("dice", "hd95"):
            flags = ds["alarms"].sel(algorithm=member, metric=metric).transpose("case", "label").values
            expected = pd.Series(flags.mean(axis=1)).rolling(4).mean().to_numpy()
            np.testing.assert_allclose(got[(member, metric)].to_numpy(), expected, equal_nan=True)


def test_reference_rate_is_the_mean_of_the_reference_cells(model):
    ref = model.reference["alarm_rate"]
    got = reference_alarm_rate(model)
    for member in MEMBERS:
        assert got[member] == pytest.approx(float(ref.sel(algorithm=member).mean()))
    finer = reference_alarm_rate(model, by=("algorithm", "label", "metric"))
    assert finer[("b", "tumor_core", "hd95")] == pytest.approx(
        float(ref.sel(algorithm="b", label="tumor_core", metric="hd95")))


def test_drift_flags_are_model_drift_after_each_arrival(model, stream):
    flags = drift_flags(stream, model, last=15)
    assert list(flags.columns) == MEMBERS
    for i in (5, CHANGE, CHANGE + 6, N_NEW - 1):
        table = model.drift(stream[: i + 1], last=15)
        assert [m for m in MEMBERS if flags.iloc[i][m]] == table.attrs["flagged_members"], i
    assert not flags[["a", "c"]].any().any()
    assert not flags["b"].iloc[: CHANGE + 1].any()  # no flag before the change
    assert flags["b"].iloc[-5:].all()  # and flagged once the recent cases are mostly degraded
    # per member x metric: the drifted rows of that metric
    finer = drift_flags(stream, model, last=15, by=("algorithm", "metric"))
    table = model.drift(stream, last=15)
    drifted = table[table["drifted"] & (table["label"] != "*")]
    expected = {(a, m) for a, m in zip(drifted["algorithm"], drifted["metric"])}
    assert {k for k in finer.columns if finer[k].iloc[-1]} == expected and expected


def test_undegraded_stream_flags_nothing(model):
    new = _scores(N_NEW, 2, prefix="new")
    flags = drift_flags(model.assess(new), model, last=20)
    assert not flags.any().any()


def test_figure_draws_the_rates_the_references_and_the_flagged_stretch(model, stream):
    fig = plot_alarm_rate(stream, model, window=8, last=15)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    rates = rolling_alarm_rate(stream, window=8)
    reference = reference_alarm_rate(model)
    flags = drift_flags(stream, model, last=15)
    for member in MEMBERS:
        x, y = lines[f"rate:{member}"].get_data()
        np.testing.assert_array_equal(x, np.arange(1, N_NEW + 1))
        np.testing.assert_allclose(y, rates[member].to_numpy(), equal_nan=True)
        assert lines[f"reference:{member}"].get_linestyle() == "--"
        np.testing.assert_allclose(lines[f"reference:{member}"].get_ydata(), reference[member])
        assert lines[f"reference:{member}"].get_color() == lines[f"rate:{member}"].get_color()
    assert "flagged:a" not in lines and "flagged:c" not in lines
    _, y = lines["flagged:b"].get_data()
    on = flags["b"].to_numpy()
    np.testing.assert_allclose(y[on], rates["b"].to_numpy()[on])
    assert np.isnan(y[~on]).all()
    texts = [t.get_text() for t in ax.texts]
    first = int(np.argmax(on))
    assert texts == [f"b flagged\n(case {first + 1}: new-{first:03d})"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == MEMBERS + ["reference rate", "drift flagged\n(last 15 cases)"]
    # the degraded member's rate ends well above its reference, the others near theirs
    assert rates["b"].iloc[-1] > reference["b"] + 0.3
    assert all(abs(rates[m].iloc[-1] - reference[m]) < 0.3 for m in ("a", "c"))


def test_figure_without_a_model_draws_only_the_rates_and_uses_a_given_axes(stream):
    host = Figure()
    ax = host.add_subplot()
    fig = plot_alarm_rate(stream, window=5, by=["algorithm", "metric"], ax=ax)
    assert fig is host
    gids = [line.get_gid() for line in ax.get_lines()]
    assert gids == [f"rate:{m}/{k}" for m in MEMBERS for k in ("dice", "hd95")]
    assert not ax.texts
    assert ax.get_ylabel().startswith("share of the checks")


@pytest.mark.parametrize("call, message", [
    (lambda s, m: rolling_alarm_rate(s, window=0), r"`window` must be a positive int.*got 0"),
    (lambda s, m: rolling_alarm_rate(s, window=True), r"`window` must be a positive int"),
    (lambda s, m: rolling_alarm_rate(s, by="label"), r"`by` must be 'algorithm' or .*got 'label'"),
    (lambda s, m: rolling_alarm_rate(s, by=("algorithm", "algorithm")), r"`by` must be .*distinct"),
    (lambda s, m: rolling_alarm_rate([]), r"non-empty list.*got list"),
    (lambda s, m: rolling_alarm_rate("scores.nc"), r"`assessments` must be .*got str"),
    (lambda s, m: rolling_alarm_rate(s[0].drop_vars("alarms")), r"lacks 'alarms'"),
    (lambda s, m: drift_flags(s, m, last=0), r"`last` must be a positive int"),
    (lambda s, m: plot_alarm_rate(s, m, level=2), r"`level` must be a number in \(0, 1\)"),
    (lambda s, m: plot_alarm_rate(s, ax="axes"), r"`ax` must be a matplotlib Axes or None; got str"),
    (lambda s, m: plot_alarm_rate([x.assign_coords(algorithm=["a", "b", "z"])
                                   for x in s], m), r"members the model does not know: \['z'\]"),
])
def test_bad_arguments_are_refused_with_a_message(model, stream, call, message):
    with pytest.raises(InputError, match=message):
        call(stream, model)

"""Tests of qe_nb.ui.plots: structure of the figures, numbers drawn, and every error message."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from scipy import ndimage, stats  # noqa: E402

from qe_nb.exceptions import InputError  # noqa: E402
from qe_nb.ui import plots, render  # noqa: E402
from qe_nb.ui.overlay import OverlayOptions  # noqa: E402

# ----------------------------------------------------------------------------- data

# The paper's Table 1 (MR, 68 cases) and Table 2 (CT, 46 cases); "NA" is NaN.
TABLE1 = pd.DataFrame(
    [
        [-3.00, -0.00, np.nan, np.nan, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 68],
        [-2.00, 0.22, np.nan, 0.04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 64],
        [-1.00, 1.28, -0.27, -0.2, 0, 0, 0, 1, 0, 2, 2, 5, 5, 13, 40],
        [-0.75, 1.80, -0.55, -0.27, 0, 0, 1, 3, 4, 2, 10, 5, 4, 14, 25],
        [-0.50, 2.02, -0.63, -0.3, 0, 6, 1, 3, 5, 4, 11, 1, 10, 8, 19],
        [-0.25, 2.33, -0.7, -0.38, 3, 5, 4, 5, 7, 4, 6, 7, 8, 7, 12],
        [-0.10, 2.37, -0.73, -0.41, 7, 4, 4, 6, 4, 7, 7, 8, 7, 6, 8],
        [0.00, 2.35, -0.76, -0.45, 9, 5, 7, 4, 4, 6, 6, 8, 8, 3, 8],
        [0.10, 2.30, -0.77, -0.46, 9, 6, 10, 3, 6, 7, 2, 9, 5, 3, 8],
        [0.25, 2.28, -0.77, -0.51, 11, 7, 12, 3, 2, 7, 3, 8, 5, 5, 5],
        [0.50, 2.23, -0.78, -0.59, 15, 11, 8, 3, 2, 4, 5, 8, 4, 4, 4],
        [0.75, 2.06, -0.73, -0.59, 18, 13, 7, 3, 1, 5, 6, 7, 2, 6, 0],
        [1.00, 1.97, -0.72, -0.58, 23, 12, 3, 3, 2, 6, 8, 6, 3, 2, 0],
        [2.00, 1.71, -0.66, -0.55, 30, 10, 6, 4, 3, 8, 2, 5, 0, 0, 0],
        [3.00, 1.40, -0.65, -0.52, 37, 11, 4, 1, 3, 10, 1, 1, 0, 0, 0],
    ],
    columns=["alpha", "entropy", "r:dice", "r:hd"] + [f"{k}a" for k in range(11)],
)
TABLE2 = pd.DataFrame(
    {
        "alpha": [-1.0, 0.0, 0.1, 1.0],
        "entropy": [0.58, 1.37, 1.37, 1.13],
        "r:dice": [-0.45, -0.7, -0.7, -0.71],
        "0a": [0, 13, 15, 26],
        "1a": [3, 8, 10, 10],
        "2a": [5, 14, 11, 6],
        "3a": [38, 11, 10, 4],
    }
)
# The paper's Table 3 (thresholds at alpha = 0.1, MR experiment).
TABLE3 = xr.DataArray(
    [[0.9055, 10.2277], [0.9092, 8.9835], [0.9147, 8.8292], [0.9084, 10.4850], [0.9293, 8.4451]],
    dims=("algorithm", "metric"),
    coords={
        "algorithm": ["micdkfz", "xfeng", "scan2019", "scan", "ZYX"],
        "metric": ["dice", "hd"],
        "higher_is_better": ("metric", [True, False]),
        "units": ("metric", ["1", "mm"]),
    },
)


def fake_cohort(n_cases: int = 40, seed: int = 3, n_inf: int = 3):
    """Risk, mean Dice and HD95 over cases as DataArrays; ``n_inf`` infinite distances."""
    rng = np.random.default_rng(seed)
    cases = [f"c{i:02d}" for i in range(n_cases)]
    risk = xr.DataArray(rng.integers(0, 7, n_cases), dims="case", coords={"case": cases},
                        name="risk")
    dice = np.clip(0.9 - 0.08 * risk.values + rng.normal(0, 0.05, n_cases), 0, 1)
    hd = np.exp(1.0 + 0.3 * risk.values + rng.normal(0, 0.3, n_cases))
    hd[rng.choice(n_cases, n_inf, replace=False)] = np.inf
    coords = {"case": cases}
    return (
        risk,
        xr.DataArray(dice, dims="case", coords=coords),
        xr.DataArray(hd, dims="case", coords=coords),
    )


def scatter_points(ax) -> np.ndarray:
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    return np.asarray(points.get_offsets())


def mean_bars(ax) -> np.ndarray:
    (bars,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    return np.array([seg[0] for seg in bars.get_segments()])  # left end: (x0, y)


# ------------------------------------------------------------- alarm count vs quality


def test_figure4_structure_labels_and_caption():
    risk, dice, hd = fake_cohort(n_inf=3)
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    assert isinstance(fig, Figure)
    a, b = fig.axes
    assert a.get_xlabel() == b.get_xlabel() == "alarm count"
    assert a.get_ylabel() == "Dice with reference"
    assert b.get_ylabel() == "HD95 to reference (mm)"
    assert b.get_title(loc="left").splitlines()[-1] == "3 cases with infinite distance not shown"
    assert "infinite" not in a.get_title(loc="left")
    assert len(scatter_points(a)) == 40 and len(scatter_points(b)) == 37
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["case", "group mean"]


def test_figure4_one_panel_without_distance_and_singular_caption():
    risk, dice, hd = fake_cohort(n_inf=1)
    assert len(plots.alarm_count_vs_quality(risk, dice).axes) == 1
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    assert "1 case with infinite distance not shown" in fig.axes[1].get_title(loc="left")


def test_figure4_pearson_matches_scipy_over_finite_cases():
    risk, dice, hd = fake_cohort()
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    r, p = stats.pearsonr(risk.values, dice.values)
    assert f"Pearson r = {r:.2f}, p = {p:.3g} (n = 40)" in fig.axes[0].get_title(loc="left")
    ok = np.isfinite(hd.values)
    r, p = stats.pearsonr(risk.values[ok], hd.values[ok])
    assert f"Pearson r = {r:.2f}, p = {p:.3g} (n = 37)" in fig.axes[1].get_title(loc="left")


def test_figure4_group_means_are_black_bars_at_the_group_means():
    risk, dice, hd = fake_cohort()
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    for ax, y in zip(fig.axes, (dice.values, hd.values), strict=True):
        ok = np.isfinite(y)
        groups = np.unique(risk.values[ok])
        expected = [y[ok & (risk.values == k)].mean() for k in groups]
        bars = mean_bars(ax)
        np.testing.assert_allclose(bars[:, 0], groups - 0.3)
        np.testing.assert_allclose(bars[:, 1], expected, rtol=1e-12)
        (collection,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert tuple(collection.get_colors()[0][:3]) == (0.0, 0.0, 0.0)


def test_figure4_jitter_is_seeded_and_bounded():
    risk, dice, hd = fake_cohort()
    x1 = scatter_points(plots.alarm_count_vs_quality(risk, dice, seed=5).axes[0])[:, 0]
    x2 = scatter_points(plots.alarm_count_vs_quality(risk, dice, seed=5).axes[0])[:, 0]
    x3 = scatter_points(plots.alarm_count_vs_quality(risk, dice, seed=6).axes[0])[:, 0]
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, x3)
    assert np.all(np.abs(x1 - risk.values) <= 0.2)
    assert np.any(x1 != risk.values)
    x0 = scatter_points(plots.alarm_count_vs_quality(risk, dice, jitter=0).axes[0])[:, 0]
    np.testing.assert_array_equal(x0, risk.values)


def test_figure4_distance_axis_ends_at_the_95_percent_quantile():
    risk, dice, hd = fake_cohort()
    hd = hd.where(~hd.case.isin(["c05", "c06"]), 500.0)  # two far outliers
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    finite = hd.values[np.isfinite(hd.values)]
    q95 = np.quantile(finite, 0.95)
    low, high = fig.axes[1].get_ylim()
    assert low == 0.0
    assert q95 <= high <= q95 * 1.05
    above = int((finite > high).sum())
    assert above >= 2
    notes = [t.get_text() for t in fig.axes[1].texts]
    assert notes == [f"y-axis ends at the 95% quantile: {above} cases above not shown"]


def test_figure4_aligns_by_case_label():
    risk, dice, hd = fake_cohort()
    order = np.random.default_rng(0).permutation(risk.sizes["case"])
    fig1 = plots.alarm_count_vs_quality(risk, dice, hd)
    fig2 = plots.alarm_count_vs_quality(risk, dice.isel(case=order), hd.isel(case=order))
    for a1, a2 in zip(fig1.axes, fig2.axes, strict=True):
        np.testing.assert_array_equal(scatter_points(a1), scatter_points(a2))
        assert a1.get_title(loc="left") == a2.get_title(loc="left")


def test_figure4_constant_alarm_count_gives_undefined_r_not_an_error():
    fig = plots.alarm_count_vs_quality([2, 2, 2, 2], [0.9, 0.8, 0.7, 0.6], [1.0, 2.0, 3.0, 4.0])
    assert "Pearson r undefined" in fig.axes[0].get_title(loc="left")
    assert "Pearson r undefined" in fig.axes[1].get_title(loc="left")


def test_figure4_missing_dice_is_counted():
    fig = plots.alarm_count_vs_quality([0, 1, 2, 3], [0.9, np.nan, 0.7, 0.6])
    assert "1 case with missing value not shown" in fig.axes[0].get_title(loc="left")


def test_figure4_draws_into_a_given_figure():
    risk, dice, hd = fake_cohort()
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    out = plots.alarm_count_vs_quality(risk, dice, hd, fig=fig)
    assert out is fig and len(fig.axes) == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0, 1], [[0.9, 0.8]]), {}, r"`quality_dice` must be 1-d over cases; got an array of shape \(1, 2\)"),
        (
            ([0, 1], xr.DataArray([[0.9, 0.8]], dims=("label", "case"))),
            {},
            r"`quality_dice` must be a DataArray over \(case,\); got dims \('label', 'case'\)",
        ),
        (([0, 1], xr.Dataset({"q": ("case", [0.9, 0.8])})), {}, r"`quality_dice` must be a DataArray .* got a Dataset"),
        (([0, 1], ["a", "b"]), {}, r"`quality_dice` must be a DataArray over \(case,\) or a 1-d array of numbers; got list"),
        (([0, 1, 2], [0.9, 0.8]), {}, r"`quality_dice` has 2 values but `risk` has 3 cases"),
        (([0, 1], [0.9, 0.8], [1.0]), {}, r"`quality_distance` has 1 values but `risk` has 2 cases"),
        (([0, 1.5], [0.9, 0.8]), {}, r"`risk` must hold non-negative whole alarm counts; got 1.5"),
        (([0, -1], [0.9, 0.8]), {}, r"`risk` must hold non-negative whole alarm counts; got -1.0"),
        (([], []), {}, r"`risk` holds no case"),
        (([0, 1], [0.9, 0.8]), {"jitter": 0.5}, r"`jitter` must be a number in \[0, 0.5\); got 0.5"),
        (([0, 1], [0.9, 0.8]), {"quantile": 0}, r"`quantile` must be a number in \(0, 1\]; got 0"),
        (([0, 1], [0.9, 0.8]), {"fig": "figure"}, r"`fig` must be a matplotlib Figure or None; got str"),
    ],
)
def test_figure4_errors(args, kwargs, match):
    with pytest.raises(InputError, match=match):
        plots.alarm_count_vs_quality(*args, **kwargs)


def test_figure4_error_for_missing_case():
    risk, dice, _ = fake_cohort()
    with pytest.raises(InputError, match=r"`quality_dice` lacks 1 case\(s\) of `risk`, e.g. 'c00'"):
        plots.alarm_count_vs_quality(risk, dice.isel(case=slice(1, None)))



def figure4_picture(fig) -> list[dict]:
    """Everything Figure 4 shows, per panel: points, mean bars, title, limits, ticks, notes."""
    return [
        {
            "points": scatter_points(ax),
            "bars": np.array(mean_bars(ax)) if len(mean_bars(ax)) else np.empty((0, 2)),
            "title": ax.get_title(loc="left"),
            "xlim": ax.get_xlim(),
            "ylim": ax.get_ylim(),
            "xticks": ax.get_xticks().tolist(),
            "notes": [t.get_text() for t in ax.texts],
            "legend": [t.get_text() for t in ax.get_legend().get_texts()],
            "ylabel": ax.get_ylabel(),
        }
        for ax in fig.axes
    ]


def assert_same_picture(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            else:
                assert a[key] == b[key], key


def test_figure4_update_in_place_shows_what_a_fresh_figure_shows():
    risk, dice, hd = fake_cohort(n_cases=60, n_inf=2)
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    axes, points = list(fig.axes), [c for ax in fig.axes for c in ax.collections]
    rng = np.random.default_rng(1)
    outliers = hd.where(~hd.case.isin(["c05", "c06"]), 900.0)
    tame = xr.ones_like(hd)  # no value above the 95 % quantile: no note under the panel
    for top, distance in ((3, hd), (25, outliers), (0, tame), (12, outliers), (40, tame)):
        new_risk = risk.copy(data=rng.integers(0, top + 1, risk.size))
        out = plots.update_alarm_count_vs_quality(fig, new_risk, dice, distance)
        assert out is fig and list(fig.axes) == axes  # the same artists, updated
        assert [c for ax in fig.axes for c in ax.collections] == points
        assert_same_picture(figure4_picture(fig),
                            figure4_picture(plots.alarm_count_vs_quality(new_risk, dice, distance)))
    assert figure4_picture(fig)[1]["notes"] == []  # the note went with the outliers


def test_figure4_update_one_panel_with_options():
    risk, dice, _ = fake_cohort()
    fig = plots.alarm_count_vs_quality(risk, dice, seed=4, jitter=0.1)
    new_risk = (risk + 2).rename("risk")
    plots.update_alarm_count_vs_quality(fig, new_risk, dice, seed=4, jitter=0.1)
    assert_same_picture(figure4_picture(fig),
                        figure4_picture(plots.alarm_count_vs_quality(new_risk, dice, seed=4, jitter=0.1)))


def test_figure4_at_most_eleven_count_ticks_and_fixed_legends():
    risk, dice, hd = fake_cohort()
    fig = plots.alarm_count_vs_quality(risk, dice, hd)  # counts 0..6: one tick per count
    assert fig.axes[0].get_xticks().tolist() == list(range(int(risk.max()) + 1))
    many = risk * 5  # counts up to 30
    plots.update_alarm_count_vs_quality(fig, many, dice, hd)
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if -0.6 <= t <= int(many.max()) + 0.6]
        assert 4 <= len(ticks) <= 11 and all(float(t).is_integer() for t in ticks)
    assert [ax.get_legend()._loc for ax in fig.axes] == [3, 2]  # lower left, upper left



def test_figure4_max_count_keeps_the_x_axis_still():
    risk, dice, hd = fake_cohort()  # counts 0..6
    fig = plots.alarm_count_vs_quality(risk, dice, hd, max_count=30)
    expected = figure4_picture(fig)
    for ax in fig.axes:
        assert ax.get_xlim() == (-0.6, 30.6)
        shown = [t for t in ax.get_xticks().tolist() if -0.6 <= t <= 30.6]
        assert shown == [0, 5, 10, 15, 20, 25, 30]
    smaller = (risk // 2).rename("risk")
    plots.update_alarm_count_vs_quality(fig, smaller, dice, hd, max_count=30)
    got = figure4_picture(fig)
    assert [p["xlim"] for p in got] == [p["xlim"] for p in expected]
    assert [p["xticks"] for p in got] == [p["xticks"] for p in expected]
    assert_same_picture(got, figure4_picture(
        plots.alarm_count_vs_quality(smaller, dice, hd, max_count=30)))
    # max_count equal to the largest count is the default picture
    assert_same_picture(figure4_picture(plots.alarm_count_vs_quality(risk, dice, max_count=6)),
                        figure4_picture(plots.alarm_count_vs_quality(risk, dice)))


@pytest.mark.parametrize("max_count", [5, 6.0, True, "30"])
def test_figure4_max_count_errors(max_count):
    risk, dice, _ = fake_cohort()  # largest count 6
    match = rf"`max_count` must be a whole number >= the largest alarm count \(6\); got {max_count!r}"
    with pytest.raises(InputError, match=match):
        plots.alarm_count_vs_quality(risk, dice, max_count=max_count)
    fig = plots.alarm_count_vs_quality(risk, dice)
    with pytest.raises(InputError, match=match):
        plots.update_alarm_count_vs_quality(fig, risk, dice, max_count=max_count)

@pytest.mark.parametrize(
    ("fig", "args", "match"),
    [
        ("figure", (), r"`fig` must be a matplotlib Figure drawn by alarm_count_vs_quality; got str"),
        (Figure, (), r"`fig` was not drawn by alarm_count_vs_quality \(or was cleared since\)"),
        ("cleared", (), r"`fig` was not drawn by alarm_count_vs_quality \(or was cleared since\)"),
        ("two panels", (), r"`fig` has 2 panel\(s\) but this call has 1; pass `quality_distance`"),
        ("one panel", ([1.0, 2.0, 3.0, 4.0],), r"`fig` has 1 panel\(s\) but this call has 2"),
        ("one panel", ([1.0, 2.0],), r"`quality_distance` has 2 values but `risk` has 4 cases"),
    ],
)
def test_figure4_update_errors(fig, args, match):
    risk, dice = [0, 1, 2, 2], [0.9, 0.8, 0.5, 0.6]
    if fig is Figure:
        fig = Figure()
    elif fig == "cleared":
        fig = plots.alarm_count_vs_quality(risk, dice)
        fig.clear()
    elif fig == "two panels":
        fig = plots.alarm_count_vs_quality(risk, dice, [1.0, 2.0, 3.0, 4.0])
    elif fig == "one panel":
        fig = plots.alarm_count_vs_quality(risk, dice)
    with pytest.raises(InputError, match=match):
        plots.update_alarm_count_vs_quality(fig, risk, dice, *args)


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def test_figure_png_size_and_dpi_restored():
    risk, dice, hd = fake_cohort()
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    before = fig.dpi
    pixels = _pixels(plots.figure_png(fig, dpi=50))
    width, height = fig.get_size_inches() * 50
    assert pixels.shape == (round(height), round(width), 3)
    assert fig.dpi == before
    assert pixels.min() < 100 and pixels.max() == 255  # something drawn on white


def test_figure_png_with_reused_background_matches_a_full_draw_pixel_for_pixel():
    risk, dice, hd = fake_cohort(n_cases=200, n_inf=4)
    hd = hd.where(~hd.case.isin(["c05", "c06"]), 900.0)  # points clipped at the top spine
    fig = plots.alarm_count_vs_quality(risk, dice, hd)
    fig.set_layout_engine("constrained")
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # the background is reused only for a frozen layout
    rng = np.random.default_rng(2)
    for top in (6, 6, 20, 6, 9):  # a new background, the same one again, another, ...
        plots.update_alarm_count_vs_quality(fig, risk.copy(data=rng.integers(0, top + 1, 200)), dice, hd)
        fast = _pixels(plots.figure_png(fig, reuse_background=True))
        np.testing.assert_array_equal(fast, _pixels(plots.figure_png(fig)))
    assert len(fig._qe_nb_backgrounds) == 3
    # with an active layout engine it is an ordinary full draw: no background is kept
    other = plots.alarm_count_vs_quality(risk, dice, hd)
    assert _pixels(plots.figure_png(other, reuse_background=True)).shape == fast.shape
    assert not hasattr(other, "_qe_nb_backgrounds")



@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (64, 33)])
def test_rgb_png_decodes_with_pillow_to_the_same_pixels(shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    png = render.encode_png(pixels)
    np.testing.assert_array_equal(_pixels(png), pixels)
    np.testing.assert_array_equal(_pixels(render.encode_png(pixels[:, ::-1])), pixels[:, ::-1])

@pytest.mark.parametrize(
    ("fig", "dpi", "match"),
    [
        ("figure", 72, r"`fig` must be a matplotlib Figure; got str"),
        (None, 0, r"`dpi` must be a positive number; got 0"),
        (None, "72", r"`dpi` must be a positive number; got '72'"),
        (None, np.inf, r"`dpi` must be a positive number; got inf"),
    ],
)
def test_figure_png_errors(fig, dpi, match):
    with pytest.raises(InputError, match=match):
        plots.figure_png(Figure() if fig is None else fig, dpi=dpi)


# ------------------------------------------------------------------------ histogram


@pytest.mark.parametrize(
    ("row", "entropy"),
    [([9, 5, 7, 4, 4, 6, 6, 8, 8, 3, 8], "2.35"), ([13, 8, 14, 11], "1.37")],
)
def test_histogram_bars_and_entropy_of_the_paper_rows(row, entropy):
    risk = np.repeat(np.arange(len(row)), row)
    ax = plots.alarm_histogram(np.random.default_rng(0).permutation(risk))
    assert [int(b.get_height()) for b in ax.patches] == row
    assert ax.get_title() == f"{sum(row)} cases, entropy {entropy} nats"
    assert f"{stats.entropy(row):.2f}" == entropy  # conformance with scipy's Shannon entropy
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("alarm count", "cases")


def test_histogram_max_count_and_given_axes():
    ax = Figure().add_subplot()
    out = plots.alarm_histogram(xr.DataArray([0, 1, 1], dims="case"), max_count=4, ax=ax)
    assert out is ax
    assert [int(b.get_height()) for b in ax.patches] == [1, 2, 0, 0, 0]
    assert ax.get_title() == "3 cases, entropy 0.64 nats"


@pytest.mark.parametrize(
    ("risk", "kwargs", "match"),
    [
        ([0, 3], {"max_count": 2}, r"`max_count` must be a whole number >= the largest alarm count \(3\); got 2"),
        ([0, 3], {"max_count": 4.0}, r"`max_count` must be a whole number .* got 4.0"),
        ([0, 3], {"ax": "axes"}, r"`ax` must be a matplotlib Axes or None; got str"),
        ([[0, 3]], {}, r"`risk` must be 1-d over cases"),
        ([0, np.nan], {}, r"`risk` must hold non-negative whole alarm counts; got nan"),
    ],
)
def test_histogram_errors(risk, kwargs, match):
    with pytest.raises(InputError, match=match):
        plots.alarm_histogram(risk, **kwargs)


# ---------------------------------------------------------------------------- sweep


def test_sweep_plot_of_table1():
    fig = plots.sweep_plot(TABLE1, chosen_alpha=0.1)
    line_ax, heat, twin = fig.axes  # the twin axes is created last
    assert line_ax.get_ylabel() == "entropy of the alarm-count distribution (nats)"
    assert twin.get_ylabel() == "Pearson r, alarm count vs quality (dimensionless)"
    assert heat.get_xlabel() == "alarm count" and heat.get_ylabel() == "α"
    # entropy and r are drawn in alpha units on a scale that spaces the grid evenly
    (entropy_line,) = [ln for ln in line_ax.get_lines() if ln.get_label() == "entropy"]
    np.testing.assert_array_equal(entropy_line.get_xdata(), TABLE1["alpha"])
    px = line_ax.transData.transform(np.c_[TABLE1["alpha"], np.zeros(15)])[:, 0]
    np.testing.assert_allclose(np.diff(px), np.diff(px)[0])
    np.testing.assert_array_equal(entropy_line.get_ydata(), TABLE1["entropy"])
    r_lines = {ln.get_label(): ln.get_ydata() for ln in twin.get_lines()}
    assert set(r_lines) == {"r:dice", "r:hd"}
    np.testing.assert_array_equal(r_lines["r:hd"], TABLE1["r:hd"])
    assert [t.get_text() for t in line_ax.get_xticklabels()][:3] == ["-3", "-2", "-1"]
    # chosen alpha 0.1 is row 8: vertical line there, frame around the heatmap row
    (vline,) = [ln for ln in line_ax.get_lines() if ln.get_label() == "chosen α = 0.1"]
    assert list(vline.get_xdata()) == [0.1, 0.1]
    (frame,) = [p for p in heat.patches if isinstance(p, Rectangle)]
    assert frame.get_y() == 7.5 and frame.get_width() == 11
    # heatmap: every count annotated, image equals the table
    np.testing.assert_array_equal(heat.images[0].get_array(), TABLE1[[f"{k}a" for k in range(11)]])
    texts = [t.get_text() for t in heat.texts]
    assert len(texts) == 15 * 11 and texts[10] == "68"
    legend = [t.get_text() for t in line_ax.get_legend().get_texts()]
    assert legend == ["entropy", "r:dice", "r:hd", "chosen α = 0.1"]


def test_sweep_plot_without_r_columns_and_without_chosen_alpha():
    table = TABLE2.drop(columns="r:dice")
    fig = plots.sweep_plot(table)
    assert len(fig.axes) == 2
    assert not [p for p in fig.axes[1].patches if isinstance(p, Rectangle)]


def test_sweep_plot_uniform_grid_keeps_plain_alpha_label():
    table = TABLE2.assign(alpha=[0.0, 0.1, 0.2, 0.3])
    assert plots.sweep_plot(table).axes[0].get_xlabel() == "α"
    assert "not to scale" in plots.sweep_plot(TABLE2).axes[0].get_xlabel()


def test_sweep_plot_chosen_alpha_between_grid_values():
    fig = plots.sweep_plot(TABLE2, chosen_alpha=0.55)
    ax = fig.axes[0]
    (vline,) = [ln for ln in ax.get_lines() if ln.get_label() == "chosen α = 0.55"]
    assert vline.get_xdata()[0] == 0.55
    # grid -1, 0, 0.1, 1 at even steps; 0.55 half way between 0.1 and 1
    px = ax.transData.transform([(a, 0.0) for a in (0.1, 0.55, 1.0, 3.0)])[:, 0]
    assert px[1] == pytest.approx((px[0] + px[2]) / 2)
    assert px[3] > px[2]  # beyond the grid the scale extends linearly


def test_sweep_plot_reads_a_sweep_dataset_like_the_table():
    counts = TABLE2[["0a", "1a", "2a", "3a"]].to_numpy()
    ds = xr.Dataset(
        {
            "entropy": ("alpha", TABLE2["entropy"].to_numpy()),
            "r": (("metric", "alpha"), TABLE2[["r:dice"]].to_numpy().T),
            "histogram": (("alpha", "count"), counts),
            "risk": (("alpha", "case"), np.zeros((4, 5), int)),  # ignored
        },
        coords={"alpha": TABLE2["alpha"].to_numpy(), "metric": ["dice"], "count": [0, 1, 2, 3]},
    )
    from_ds = plots.sweep_plot(ds, chosen_alpha=0.1)
    from_table = plots.sweep_plot(TABLE2, chosen_alpha=0.1)
    assert len(from_ds.axes) == 3
    np.testing.assert_array_equal(from_ds.axes[1].images[0].get_array(), counts)
    np.testing.assert_array_equal(from_ds.axes[2].get_lines()[0].get_ydata(),
                                  from_table.axes[2].get_lines()[0].get_ydata())


def test_sweep_plot_sorts_rows_by_alpha():
    fig = plots.sweep_plot(TABLE2.iloc[::-1])
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["-1", "0", "0.1", "1"]


@pytest.mark.parametrize(
    ("table", "kwargs", "match"),
    [
        (TABLE2.drop(columns="alpha"), {}, r"lacks column\(s\) \['alpha'\]; expected alpha, entropy"),
        (TABLE2.drop(columns=["0a", "1a", "2a", "3a"]), {}, r"has no alarm-count columns \(0a, 1a, ...\)"),
        (TABLE2.iloc[:0], {}, r"has no row; expected one row per alpha"),
        (TABLE2.assign(alpha=[0.0, 0.0, 0.1, 1.0]), {}, r"alpha values must be finite and distinct; got \[0.0, 0.0, 0.1, 1.0\]"),
        (TABLE2.to_numpy(), {}, r"`sweep_ds_or_table` must be a DataFrame .* got ndarray"),
        (TABLE2, {"chosen_alpha": np.nan}, r"`chosen_alpha` must be a finite number or None; got nan"),
        (TABLE2, {"chosen_alpha": "0.1"}, r"`chosen_alpha` must be a finite number or None; got '0.1'"),
        (xr.Dataset({"h": ("alpha", [1])}), {}, r"a sweep Dataset must have an `alpha` dim and an `entropy` variable"),
        (
            xr.Dataset({"entropy": ("alpha", [1.0])}, coords={"alpha": [0.0]}),
            {},
            r"a sweep Dataset needs the alarm-count histogram as `histogram` over \(alpha, count\)",
        ),
    ],
)
def test_sweep_plot_errors(table, kwargs, match):
    with pytest.raises(InputError, match=match):
        plots.sweep_plot(table, **kwargs)


# ------------------------------------------------------------------------ thresholds


def test_threshold_plot_of_table3():
    fig = plots.threshold_plot(TABLE3)
    dice_ax, hd_ax = fig.axes
    assert dice_ax.get_ylabel() == "dice threshold (dimensionless)"
    assert hd_ax.get_ylabel() == "hd threshold (mm)"
    assert dice_ax.get_title(loc="left") == "dice: alarm below"
    assert hd_ax.get_title(loc="left") == "hd: alarm above"
    for ax, metric in ((dice_ax, "dice"), (hd_ax, "hd")):
        np.testing.assert_allclose(scatter_points(ax)[:, 1], TABLE3.sel(metric=metric))
        assert [t.get_text() for t in ax.get_xticklabels()] == list(TABLE3["algorithm"].values)
    assert not fig.legends  # one structure: no label legend


def test_threshold_plot_shows_negated_distance_thresholds_as_distances():
    negated = TABLE3.copy(data=TABLE3.values * np.array([1.0, -1.0]))
    fig = plots.threshold_plot(negated)
    np.testing.assert_allclose(scatter_points(fig.axes[1])[:, 1], TABLE3.sel(metric="hd"))


def test_threshold_plot_labels_units_from_metric_ids_and_missing_values():
    rng = np.random.default_rng(1)
    values = rng.uniform(0.7, 0.95, (3, 2, 2))
    values[..., 1] = rng.uniform(2, 9, (3, 2))
    values[1, 0, 1] = np.nan
    th = xr.DataArray(
        values, dims=("algorithm", "label", "metric"),
        coords={"algorithm": ["a", "b", "c"], "label": ["whole_tumor", "tumor_core"],
                "metric": ["nsd", "hd95"]},
    )
    fig = plots.threshold_plot(th)
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "nsd threshold (dimensionless)", "hd95 threshold (mm)"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["whole_tumor", "tumor_core"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["no finite threshold: b/whole_tumor"]
    assert len(scatter_points_all(fig.axes[1])) == 5


def scatter_points_all(ax) -> np.ndarray:
    return np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (TABLE3.values, r"`thresholds` must be a DataArray over \(algorithm, label, metric\); got ndarray"),
        (TABLE3.expand_dims(case=["x"]), r"got dims \('case', 'algorithm', 'metric'\)\. Select one value"),
        (TABLE3.isel(algorithm=0), r"got dims \('metric',\)"),
    ],
)
def test_threshold_plot_errors(value, match):
    with pytest.raises(InputError, match=match):
        plots.threshold_plot(value)


# --------------------------------------------------------------------------- overlay


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_center_of_mass_index_matches_scipy(rng, axis):
    for _ in range(5):
        mask = rng.random((9, 11, 13)) < rng.uniform(0.01, 0.3)
        expected = int(np.floor(ndimage.center_of_mass(mask)[axis] + 0.5))
        assert plots.center_of_mass_index(mask, axis) == expected


def test_center_of_mass_index_of_label_map():
    m = np.zeros((4, 3, 3), np.uint8)
    m[3, 0, 0] = 4
    assert plots.center_of_mass_index(m, 0) == 3


@pytest.mark.parametrize(
    ("mask", "axis", "match"),
    [
        (np.zeros((3, 3, 3), bool), 0, r"`mask` is empty, so it has no centre of mass along axis 0; pass `index=`"),
        (np.ones((3, 3), bool), 0, r"`mask` must be a 3-d array \(z, y, x\); got shape \(3, 3\)"),
        (np.ones((3, 3, 3), bool), 3, r"`axis` must be 0, 1 or 2; got 3"),
        (np.ones((3, 3, 3), bool), True, r"`axis` must be 0, 1 or 2; got True"),
    ],
)
def test_center_of_mass_index_errors(mask, axis, match):
    with pytest.raises(InputError, match=match):
        plots.center_of_mass_index(mask, axis)


def toy_case():
    """A 5 x 12 x 16 image, a fused box, two candidates and a reference."""
    image = np.arange(5 * 12 * 16, dtype=float).reshape(5, 12, 16)
    fused = np.zeros((5, 12, 16), bool)
    fused[1:4, 2:6, 3:9] = True  # centre of mass (2, 3.5, 5.5)
    wide = fused.copy()
    wide[1:4, 2:6, 9:11] = True
    lower = np.zeros_like(fused)
    lower[4, 7:10, 10:14] = True
    return image, fused, {"wide": wide, "lower": lower}


def contour_extent(ax, color):
    """(x min, x max, y min, y max) of the contour lines drawn in ``color``."""
    rgba = matplotlib.colors.to_rgba(color)
    for c in ax.collections:
        if isinstance(c, PathCollection):
            continue
        colors = c.get_edgecolor()
        if len(colors) and np.allclose(colors[0][:3], rgba[:3]):
            v = np.concatenate([p.vertices for p in c.get_paths()])
            return v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()
    raise AssertionError(f"no contour in {color}")


def test_case_overlay_legend_names_dice_and_alarms():
    image, fused, candidates = toy_case()
    ax = plots.case_overlay(image, fused, candidates, dice={"wide": 0.857, "lower": 0.0},
                            alarms=[0, 3], reference=fused)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["fusion", "reference", "wide: Dice 0.86, 0 alarms",
                     "lower: Dice 0.00, 3 alarms (not on this slice)"]
    lines = ax.get_legend().get_lines()
    assert matplotlib.colors.to_hex(lines[0].get_color()) == plots.FUSION_COLOR.lower() == "#009e73"
    assert matplotlib.colors.to_hex(lines[1].get_color()) == plots.REFERENCE_COLOR.lower() == "#cc79a7"
    assert lines[0].get_linewidth() > lines[2].get_linewidth()  # the fusion is thicker
    assert matplotlib.colors.to_hex(lines[2].get_color()) == plots.CANDIDATE_COLORS[0].lower()
    assert ax.get_title(loc="left") == "slice z = 2"


def test_case_overlay_outlines_lie_on_the_masks():
    image, fused, candidates = toy_case()
    ax = plots.case_overlay(image, fused, candidates)
    x0, x1, y0, y1 = contour_extent(ax, plots.FUSION_COLOR)
    # fused rows 2..5, columns 3..8: the 0.5-level outline runs half a voxel outside the centres
    assert (x0, x1, y0, y1) == pytest.approx((2.5, 8.5, 1.5, 5.5), abs=0.51)
    assert 1.5 <= y0 < 2.5 and 4.5 < y1 <= 5.5  # not mirrored upside down
    assert ax.yaxis_inverted()  # axial: first row on top, like the image
    x0, x1, *_ = contour_extent(ax, plots.CANDIDATE_COLORS[0])
    assert 9.5 < x1 <= 10.5


def test_case_overlay_coronal_cut_with_anisotropic_spacing():
    image, fused, candidates = toy_case()
    ax = plots.case_overlay(image, fused, candidates,
                            options=OverlayOptions(axis=1, spacing=(3.0, 1.0, 0.5)))
    assert ax.get_aspect() == pytest.approx(6.0)  # rows are z (3 mm), columns x (0.5 mm)
    assert ax.get_title(loc="left") == "slice y = 4"  # round(3.5) -> 4
    assert ax.get_xlabel() == "x (0.5 mm voxels)" and ax.get_ylabel() == "z (3 mm voxels)"
    assert not ax.yaxis_inverted()  # z points up
    _, _, y0, y1 = contour_extent(ax, plots.FUSION_COLOR)
    assert 0.5 <= y0 < 1.5 and 2.5 < y1 <= 3.5


def test_case_overlay_index_structure_crop_and_fallback_slice():
    image, fused, candidates = toy_case()
    labels = fused.astype(np.uint8) * 4
    labels[fused & (np.arange(16) < 5)] = 2
    ax = plots.case_overlay(image, labels, candidates,
                            options=OverlayOptions(structure=[4], index=4, crop=1.0))
    assert ax.get_title(loc="left") == "slice z = 4"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == "fusion (not on this slice)"
    # crop to the only outline on slice 4 (rows 7-9, columns 10-13) plus one voxel
    assert ax.get_xlim() == pytest.approx((8.5, 14.5))
    assert ax.get_ylim() == pytest.approx((10.5, 5.5))
    # structure 4 only: columns 5..8 of the box
    ax = plots.case_overlay(image, labels, [], options=OverlayOptions(structure=4))
    x0, x1, _, _ = contour_extent(ax, plots.FUSION_COLOR)
    assert 4.5 <= x0 < 5.5
    # an empty fusion falls back to the candidates' centre of mass
    ax = plots.case_overlay(image, np.zeros_like(fused), {"lower": candidates["lower"]})
    assert ax.get_title(loc="left") == "slice z = 4"


def test_case_overlay_accepts_4d_candidates_dataarray_dice_and_given_axes():
    image, fused, candidates = toy_case()
    stack = np.stack(list(candidates.values()))
    ax = Figure().add_subplot()
    dice = xr.DataArray([0.5, 0.25], dims="algorithm", coords={"algorithm": ["p", "q"]})
    out = plots.case_overlay(image, fused, stack, names=["p", "q"], dice=dice, ax=ax,
                             options=OverlayOptions(legend=True))
    assert out is ax
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[1:] == ["p: Dice 0.50", "q: Dice 0.25 (not on this slice)"]
    assert plots.case_overlay(image, fused, stack, options=OverlayOptions(legend=False)).get_legend() is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"image": np.zeros((4, 4))}, r"`image` must be a 3-d array \(z, y, x\); got shape \(4, 4\)"),
        ({"fused": np.zeros((5, 12, 15))}, r"`fused` has shape \(5, 12, 15\); expected the image's shape \(5, 12, 16\)"),
        ({"candidates": {"a": np.zeros((5, 12))}}, r"`candidates\['a'\]` has shape \(5, 12\); expected"),
        ({"candidates": np.zeros((5, 12, 16))}, r"`candidates` must be a mapping .* got an array of shape \(5, 12, 16\)"),
        ({"names": ["only one"]}, r"`names` has 1 entries but there are 2 candidates"),
        ({"dice": {"wide": 0.9}}, r"`dice` lacks candidate\(s\) \['lower'\]; got keys \['wide'\]"),
        ({"alarms": [1]}, r"`alarms` has 1 values but there are 2 candidates"),
        ({"dice": xr.DataArray([[0.9]], dims=("a", "b"))}, r"`dice` must be a DataArray over \(algorithm,\); got dims \('a', 'b'\)"),
        ({"axis": 3}, r"`axis` must be 0, 1 or 2; got 3"),
        ({"index": 5}, r"`index` must be a whole number in \[0, 5\) along axis 0; got 5"),
        ({"index": 1.0}, r"`index` must be a whole number .* got 1.0"),
        ({"spacing": (1.0, 0.0, 1.0)}, r"`spacing` must be three positive numbers \(z, y, x\) in mm; got \(1.0, 0.0, 1.0\)"),
        ({"spacing": (1.0, 1.0)}, r"`spacing` must be three positive numbers"),
        ({"crop": -1}, r"`crop` must be a margin in mm \(a number >= 0\) or None; got -1"),
        ({"structure": "tumor_core"}, r"`structure` must be a label value or a list of label values; got 'tumor_core'"),
        ({"structure": []}, r"`structure` must be a label value or a list of label values; got \[\]"),
        ({"ax": "axes"}, r"`ax` must be a matplotlib Axes or None; got str"),
    ],
)
def test_case_overlay_errors(change, match):
    image, fused, candidates = toy_case()
    kwargs = {"image": image, "fused": fused, "candidates": candidates} | change
    # where and how the slice is cut is one OverlayOptions value, checked when it is made
    view = {k: kwargs.pop(k) for k in ("axis", "index", "spacing", "crop", "structure") if k in kwargs}
    with pytest.raises(InputError, match=match):
        plots.case_overlay(**kwargs, options=OverlayOptions(**view))


def test_case_overlay_real_brats_case(brats_case_dir, brats_candidates):
    """The real case: slice at the mav fusion's tumour-core centre of mass, five outlines."""
    import SimpleITK as sitk

    fused = sitk.GetArrayFromImage(sitk.ReadImage(str(brats_case_dir / "fusion-brats-toolkit" / "mav.nii.gz")))
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(brats_case_dir / "images" / "t1c.nii.gz")))
    core = np.isin(fused, (1, 4))
    expected = int(np.floor(ndimage.center_of_mass(core)[0] + 0.5))
    ax = plots.case_overlay(image, fused, brats_candidates,
                            options=OverlayOptions(structure=(1, 4), crop=10.0, fused_name="mav"))
    assert ax.get_title(loc="left") == f"slice z = {expected}" == "slice z = 113"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["mav", *brats_candidates]
    x0, x1, y0, y1 = contour_extent(ax, plots.FUSION_COLOR)
    rows = np.flatnonzero(core[expected].any(axis=1))
    cols = np.flatnonzero(core[expected].any(axis=0))
    assert rows[0] - 0.5 <= y0 < rows[0] and rows[-1] < y1 <= rows[-1] + 0.5
    assert cols[0] - 0.5 <= x0 < cols[0] and cols[-1] < x1 <= cols[-1] + 0.5


def toy_image_2d():
    """A 12 x 16 image (y, x), a fused box, two candidates (one not on the image) and a reference."""
    image, fused, candidates = toy_case()
    reference = fused[2].copy()
    reference[2:7, 3:9] = True
    return image[2], fused[2], {"wide": candidates["wide"][2], "lower": candidates["lower"][2]}, reference


def test_case_overlay_2d_draws_the_whole_image_with_every_outline():
    image, fused, candidates, reference = toy_image_2d()
    ax = plots.case_overlay(image, fused, candidates, reference=reference, dice={"wide": 0.8, "lower": 0.0},
                            alarms={"wide": 1, "lower": 2})
    assert ax.get_title(loc="left") == ""  # no slice to name
    assert ax.get_xlabel() == "x (1 mm pixels)" and ax.get_ylabel() == "y (1 mm pixels)"
    assert ax.yaxis_inverted()  # first row on top, like the image
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["fusion", "reference", "wide: Dice 0.80, 1 alarm", "lower: Dice 0.00, 2 alarms (not on this slice)"]
    # the same drawing as the one-slice volume (1, y, x)
    flat = plots.case_overlay(image[None], fused[None], {k: v[None] for k, v in candidates.items()},
                              reference=reference[None])
    for color in (plots.FUSION_COLOR, plots.REFERENCE_COLOR, plots.CANDIDATE_COLORS[0]):
        assert contour_extent(ax, color) == pytest.approx(contour_extent(flat, color))
    assert ax.images[0].get_array().shape == (12, 16)


def test_case_overlay_2d_outlines_match_scikit_image():
    """The outlines are the 0.5 iso-lines of the masks: scikit-image's marching squares agrees."""
    from skimage import measure

    rng = np.random.default_rng(4)
    blob = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((40, 50)), 3) > 0.5, iterations=2)
    ax = plots.case_overlay(np.zeros((40, 50)), blob, {"same": blob})
    contours = np.concatenate(measure.find_contours(blob.astype(float), 0.5))  # (row, col)
    expected = (contours[:, 1].min(), contours[:, 1].max(), contours[:, 0].min(), contours[:, 0].max())
    assert contour_extent(ax, plots.FUSION_COLOR) == pytest.approx(expected, abs=1e-9)
    assert contour_extent(ax, plots.CANDIDATE_COLORS[0]) == pytest.approx(expected, abs=1e-9)


def test_case_overlay_2d_pixels_spacing_and_crop():
    image, fused, candidates, _ = toy_image_2d()
    ax = plots.case_overlay(image, fused, candidates, options=OverlayOptions(units="px"))
    assert ax.get_xlabel() == "x (pixels)" and ax.get_ylabel() == "y (pixels)"
    ax = plots.case_overlay(image, fused, candidates, options=OverlayOptions(spacing=(2.0, 0.5), units="mm"))
    assert ax.get_aspect() == pytest.approx(4.0)
    assert ax.get_xlabel() == "x (0.5 mm pixels)" and ax.get_ylabel() == "y (2 mm pixels)"
    # crop: the outlines (rows 2-5, columns 3-10) plus 1 px
    ax = plots.case_overlay(image, fused, {"wide": candidates["wide"]}, options=OverlayOptions(crop=1.0, units="px"))
    assert ax.get_xlim() == pytest.approx((1.5, 11.5)) and ax.get_ylim() == pytest.approx((6.5, 0.5))
    # a blank frame (no image) and a stacked (algorithm, y, x) array of candidates
    stack = np.stack(list(candidates.values()))
    ax = plots.case_overlay(np.zeros_like(image), fused, stack, names=["p", "q"])
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == ["p", "q (not on this slice)"]


def test_case_overlay_3d_labels_in_pixels():
    image, fused, candidates = toy_case()
    ax = plots.case_overlay(image, fused, candidates, options=OverlayOptions(units="px"))
    assert ax.get_xlabel() == "x (voxels)" and ax.get_title(loc="left") == "slice z = 2"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"axis": 1}, r"a 2-d image \(y, x\) is drawn whole: leave `axis` at 0 and `index` at None; got axis=1, index=None"),
        ({"index": 0}, r"a 2-d image \(y, x\) is drawn whole: .* got axis=0, index=0"),
        ({"spacing": (1.0, 1.0, 1.0)}, r"`spacing` must be two positive numbers \(y, x\) for a 2-d image; got \(1.0, 1.0, 1.0\)"),
        ({"fused": np.zeros((5, 12, 16))}, r"`image` must be a 3-d array \(z, y, x\); got shape \(12, 16\), while `fused` has shape \(5, 12, 16\)"),
        ({"fused": np.zeros((12, 15))}, r"`fused` has shape \(12, 15\); expected the image's shape \(12, 16\)"),
        ({"candidates": np.zeros((12, 16))}, r"`candidates` must be a mapping name -> 2-d array, a list of 2-d arrays or a 3-d array \(algorithm, y, x\); got an array of shape \(12, 16\)"),
        ({"image": np.zeros(16)}, r"`image` must be a 3-d array \(z, y, x\) or a 2-d image \(y, x\); got shape \(16,\)"),
    ],
)
def test_case_overlay_2d_errors(change, match):
    image, fused, candidates, _ = toy_image_2d()
    kwargs = {"image": image, "fused": fused, "candidates": candidates} | change
    view = {k: kwargs.pop(k) for k in ("axis", "index", "spacing") if k in kwargs}
    with pytest.raises(InputError, match=match):
        plots.case_overlay(**kwargs, options=OverlayOptions(**view))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"units": ""}, r"`units` must be the name of the spacing's units, e.g. 'mm' or 'px'; got ''"),
        ({"units": None}, r"`units` must be the name .* got None"),
        ({"spacing": (1.0, 2.0, 3.0, 4.0)}, r"`spacing` must be three positive numbers \(z, y, x\) in mm; got \(1.0, 2.0, 3.0, 4.0\)\. \(A 2-D image takes two"),
        ({"crop": -2, "units": "px"}, r"`crop` must be a margin in px \(a number >= 0\) or None; got -2"),
    ],
)
def test_overlay_options_units_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        OverlayOptions(**kwargs)


@pytest.mark.filterwarnings("ignore::qe_nb.exceptions.UndefinedValueWarning")
def test_save_figures_label_distances_in_the_cubes_units(tmp_path, monkeypatch):
    """Figure 4's distance axis reads the cube's units ("px" for PNG cohorts), never a fixed "mm"."""
    from qe_nb.ui import figures

    rng = np.random.default_rng(2)
    cases = [f"c{i}" for i in range(12)]
    coords = {"case": cases, "algorithm": ["a", "b", "c"], "label": ["cell"], "metric": ["dice", "hd95"],
              "higher_is_better": ("metric", [True, False]), "units": ("metric", ["1", "px"])}
    sim = np.stack([rng.uniform(0.6, 1, (12, 3, 1)), rng.uniform(1, 30, (12, 3, 1))], -1)
    quality = np.stack([rng.uniform(0.6, 1, (12, 1)), rng.uniform(1, 30, (12, 1))], -1)
    scores = xr.Dataset({"similarity": (("case", "algorithm", "label", "metric"), sim),
                         "quality": (("case", "label", "metric"), quality)}, coords=coords,
                        attrs={"distance_units": "px"})
    labels = []
    original = figures.alarm_count_vs_quality

    def spy(*args, **kwargs):
        fig = original(*args, **kwargs)
        labels.extend(ax.get_ylabel() for ax in fig.axes)
        return fig

    monkeypatch.setattr(figures, "alarm_count_vs_quality", spy)
    written = figures.save_figures(scores, 0.1, tmp_path, dpi=40)
    assert [p.name for p in written][0] == "figure4_alarms_vs_quality.png"
    assert "HD95 to reference (px)" in labels and not any("mm" in label for label in labels)
    import qe_nb

    fig = plots.threshold_plot(qe_nb.thresholds(scores["similarity"], 0.1))
    assert any(ax.get_ylabel() == "hd95 threshold (px)" for ax in fig.axes)


# ------------------------------------------------------------------- no global state


def test_no_pyplot_figures_and_no_rcparams_changes():
    import matplotlib.pyplot as plt

    before = dict(matplotlib.rcParams)
    open_before = plt.get_fignums()
    risk, dice, hd = fake_cohort()
    plots.alarm_count_vs_quality(risk, dice, hd)
    plots.sweep_plot(TABLE1, chosen_alpha=0.1)
    plots.threshold_plot(TABLE3)
    plots.alarm_histogram(risk)
    image, fused, candidates = toy_case()
    plots.case_overlay(image, fused, candidates)
    assert plt.get_fignums() == open_before
    assert dict(matplotlib.rcParams) == before


# ------------------------------------------------------- with the core's own outputs


def fake_similarity(seed: int = 11, n_cases: int = 30) -> xr.DataArray:
    """A (case, algorithm, label, metric) cube of seeded random scores, a few of them inf."""
    rng = np.random.default_rng(seed)
    dice = np.clip(rng.beta(8, 1.5, (n_cases, 3, 2)), 0, 1)
    hd = np.exp(rng.normal(1.2, 0.6, (n_cases, 3, 2)))
    hd[rng.integers(n_cases, size=3), rng.integers(3, size=3), 1] = np.inf
    return xr.DataArray(
        np.stack([dice, hd], axis=-1),
        dims=("case", "algorithm", "label", "metric"),
        coords={
            "case": [f"c{i:02d}" for i in range(n_cases)],
            "algorithm": ["a", "b", "c"],
            "label": ["whole_tumor", "tumor_core"],
            "metric": ["dice", "hd95"],
            "higher_is_better": ("metric", [True, False]),
            "units": ("metric", ["1", "mm"]),
        },
    )


@pytest.mark.filterwarnings("ignore::qe_nb.exceptions.QeNbWarning")
def test_core_sweep_dataset_and_sweep_table_draw_the_same_figure():
    import qe_nb

    sim = fake_similarity()
    quality = sim.sel(metric="dice").mean(("algorithm", "label"))
    alphas = [-1.0, 0.0, 0.1, 0.5, 2.0]
    table = qe_nb.sweep_table(sim, alphas, quality=quality)
    ds = qe_nb.sweep(sim, alphas, quality=quality)
    from_table = plots.sweep_plot(table, chosen_alpha=0.1)
    from_ds = plots.sweep_plot(ds, chosen_alpha=0.1)
    np.testing.assert_array_equal(from_ds.axes[1].images[0].get_array(),
                                  from_table.axes[1].images[0].get_array())
    assert from_ds.axes[1].images[0].get_array().shape == (5, 3 * 2 * 2 + 1)
    for a, b in zip(from_ds.axes[2].get_lines(), from_table.axes[2].get_lines(), strict=True):
        assert a.get_label() == b.get_label()
        np.testing.assert_array_equal(a.get_ydata(), b.get_ydata())


@pytest.mark.filterwarnings("ignore::qe_nb.exceptions.QeNbWarning")
def test_core_thresholds_risk_and_entropy():
    import qe_nb

    sim = fake_similarity()
    th = qe_nb.thresholds(sim, 0.1)
    fig = plots.threshold_plot(th)
    assert [ax.get_ylabel() for ax in fig.axes] == ["dice threshold (dimensionless)",
                                                    "hd95 threshold (mm)"]
    for ax, metric in zip(fig.axes, ["dice", "hd95"], strict=True):
        drawn = np.sort(scatter_points_all(ax)[:, 1])
        np.testing.assert_allclose(drawn, np.sort(th.sel(metric=metric).values.ravel()))
    risk = qe_nb.risk(qe_nb.alarms(sim, 0.1))
    ax = plots.alarm_histogram(risk, max_count=12)
    assert ax.get_title().endswith(f"entropy {qe_nb.alarm_entropy(risk, max_count=12):.2f} nats")
    quality = sim.sel(metric="dice").mean(("algorithm", "label"))
    fig = plots.alarm_count_vs_quality(risk, quality)
    np.testing.assert_array_equal(np.round(scatter_points(fig.axes[0])[:, 0]), risk.values)


# ----------------------------------------------------------------------------- issue 14


def test_sweep_legend_says_which_alpha():
    fig = plots.sweep_plot(TABLE1, chosen_alpha=0.245075)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[-1] == "chosen α = 0.25"  # not 0.245075
    fig = plots.sweep_plot(TABLE1, chosen_alpha=0.245075, chosen_label="α = 0.25 (entropy)")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][-1] == "α = 0.25 (entropy)"


def test_threshold_plot_of_one_named_label_has_no_one_entry_legend():
    mean = TABLE3.expand_dims(label=["mean"]).transpose("algorithm", "label", "metric")
    fig = plots.threshold_plot(mean)
    assert not fig.legends
    assert fig.get_suptitle() == "thresholds of mean"


def test_save_figures_say_which_alpha(tmp_path):
    import qe_nb
    from qe_nb.ui.figures import save_figures

    ens = qe_nb.synthetic_cohort(tmp_path / "c", n_cases=8, n_algorithms=3, shape=(16, 20, 20), seed=3)
    scores = qe_nb.score(ens, metrics=("dice", "hd95"), n_jobs=1, progress=False)
    import matplotlib.figure

    made = []
    original = matplotlib.figure.Figure.savefig

    def keep(self, *args, **kwargs):
        made.append(self)
        return original(self, *args, **kwargs)

    matplotlib.figure.Figure.savefig = keep
    try:
        save_figures(scores, 0.25, tmp_path, alpha_text="α = 0.25 (entropy)")
    finally:
        matplotlib.figure.Figure.savefig = original
    assert made[0].get_suptitle() == "Alarm counts at α = 0.25 (entropy)"
    assert [t.get_text() for t in made[1].axes[0].get_legend().get_texts()][-1] == "α = 0.25 (entropy)"

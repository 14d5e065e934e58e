"""qe_nb.core.statistics: the one Pearson r, entropy, median/MAD and per-case quality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from qe_nb.core.calibration import alarm_entropy
from qe_nb.core.statistics import (
    case_quality,
    count_entropy,
    entropy_rows,
    label_mean,
    median_mad,
    pearson_r,
    pearson_rows,
    pearson_test,
)
from qe_nb.exceptions import InputError

# ---- entropy


def test_count_entropy_paper_table1_alpha0():
    counts = np.repeat(np.arange(11), [9, 5, 7, 4, 4, 6, 6, 8, 8, 3, 8])
    assert counts.size == 68
    assert round(count_entropy(counts, max_count=10), 2) == 2.35


def test_count_entropy_paper_table2_alpha0():
    counts = np.repeat([0, 1, 2, 3], [13, 8, 14, 11])
    assert round(count_entropy(counts, max_count=3), 2) == 1.37


def test_count_entropy_by_hand():
    assert count_entropy([0, 1]) == pytest.approx(math.log(2))
    assert count_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))
    assert count_entropy([2, 2, 2]) == 0.0
    # empty bins add nothing: the same with a larger max_count
    assert count_entropy([0, 3], max_count=30) == pytest.approx(math.log(2))


def test_alarm_entropy_delegates():
    counts = np.random.default_rng(1).integers(0, 9, 50)
    assert alarm_entropy(counts, max_count=8) == count_entropy(counts, max_count=8)


def test_count_entropy_errors():
    with pytest.raises(InputError, match=r"`risk` holds a count of 3, above `max_count` = 2"):
        count_entropy([0, 3], max_count=2)
    with pytest.raises(InputError, match=r"`max_count` must be a non-negative int or None; got -1"):
        count_entropy([0, 1], max_count=-1)
    with pytest.raises(InputError, match=r"non-negative whole numbers\) over cases; got 0.5 among them"):
        count_entropy([0.5, 1])


def test_entropy_rows():
    hist = np.array([[2, 2, 0], [4, 0, 0], [1, 1, 2], [0, 0, 0]])
    out = entropy_rows(hist)
    assert out[:3] == pytest.approx([math.log(2), 0.0, 1.5 * math.log(2)])
    assert math.isnan(out[3])  # no case at all: undefined
    assert not np.signbit(out[1])


# ---- Pearson r


def test_pearson_by_hand():
    # x centred -1, 0, 1; y centred -4/3, -1/3, 5/3: r = 3 / sqrt(2 * 42 / 9) = 9 / sqrt(84)
    assert pearson_r([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))
    assert pearson_r([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_pearson_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 40).astype(float)
    y = rng.normal(size=40)
    ref = scipy.stats.pearsonr(x, y)
    r, p, n = pearson_test(x, y)
    assert (r, n) == (pytest.approx(ref.statistic, rel=1e-12), 40)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_pearson_uses_finite_pairs_only():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([0.9, np.nan, 0.7, np.inf, 0.4, 0.2])
    r, p, n = pearson_test(x, y)
    ref = scipy.stats.pearsonr(x[[0, 2, 4, 5]], y[[0, 2, 4, 5]])
    assert n == 4
    assert r == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert pearson_r(x, y) == r


@pytest.mark.parametrize(
    ("x", "y", "n"),
    [
        ([2, 2, 2, 2], [0.9, 0.8, 0.7, 0.6], 4),  # constant count
        ([0, 1, 2, 3], [0.5, 0.5, 0.5, 0.5], 4),  # constant quality
        ([1.0], [0.3], 1),  # fewer than two pairs
        ([], [], 0),
        ([0, 1, 2], [np.nan, 0.5, np.nan], 1),  # one finite pair left
    ],
)
def test_pearson_undefined_is_nan_not_an_error(x, y, n):
    r, p, m = pearson_test(x, y)
    assert math.isnan(r) and math.isnan(p) and m == n
    assert math.isnan(pearson_r(x, y))


def test_pearson_two_pairs_is_plus_minus_one_with_p_one():
    assert pearson_test([0, 1], [0.9, 0.5]) == (pytest.approx(-1.0), 1.0, 2)


def test_pearson_shape_error():
    with pytest.raises(InputError, match=r"`x` and `y` must be 1-D and of the same length; got shapes \(3,\) and \(2,\)"):
        pearson_r([1, 2, 3], [1, 2])


def test_pearson_rows_matches_single():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (5, 2, 30)).astype(float)
    x[0, 0] = 1.0  # a constant row
    q = rng.normal(size=30)
    r, p = pearson_rows(x, q)
    assert r.shape == p.shape == (5, 2)
    assert math.isnan(r[0, 0]) and math.isnan(p[0, 0])
    for i, j in [(1, 0), (4, 1)]:
        ref = scipy.stats.pearsonr(x[i, j], q)
        assert r[i, j] == pytest.approx(ref.statistic) and p[i, j] == pytest.approx(ref.pvalue, rel=1e-9)


# ---- median / MAD


def test_median_mad_finite_only():
    values = np.array([[0.9, 1.0], [0.8, np.nan], [0.7, np.inf], [0.85, -np.inf], [0.6, np.nan]])
    median, mad = median_mad(values)
    assert median.tolist() == pytest.approx([0.8, 1.0])
    assert mad.tolist() == pytest.approx([0.1, 0.0])
    _, scaled = median_mad(values, scale=1.4826)
    assert scaled[0] == pytest.approx(0.14826)


def test_median_mad_without_finite_values_is_nan_silently(recwarn):
    median, mad = median_mad(np.array([[np.nan], [np.inf]]))
    assert np.isnan(median).all() and np.isnan(mad).all()
    assert not recwarn.list


# ---- label_mean / case_quality


def _quality():
    values = np.array([
        [[0.9, 2.0], [np.nan, 5.0]],
        [[0.8, 1.0], [0.6, 3.0]],
        [[0.5, np.inf], [0.7, 1.0]],
    ])
    return xr.DataArray(values, dims=("case", "label", "metric"),
                        coords={"case": ["a", "b", "c"], "label": ["wt", "et"], "metric": ["dice", "hd95"]})


def test_label_mean_skipna():
    da = xr.DataArray([[1.0, np.nan], [0.5, 0.25]], dims=("case", "label"),
                      coords={"label": ["a", "b"], "label_values": ("label", ["1", "2"])}, name="s")
    strict = label_mean(da)
    assert strict.dims == ("case", "label") and strict.name == "s"
    assert strict.sel(label="mean").values.tolist() == pytest.approx([np.nan, 0.375], nan_ok=True)
    assert strict.label_values.values.tolist() == ["mean of a,b"]
    assert label_mean(da, skipna=True, name="avg").sel(label="avg").values.tolist() == [1.0, 0.375]


def test_label_mean_error():
    with pytest.raises(InputError, match=r"`similarity` must be a DataArray with a 'label' dim; got \('case',\)"):
        label_mean(xr.DataArray([1.0], dims="case"))


def test_case_quality_nan_policy():
    q = _quality()
    strict = case_quality(q)
    assert strict.dims == ("case",) and strict.name == "dice"
    assert strict.values.tolist() == pytest.approx([np.nan, 0.7, 0.6], nan_ok=True)
    assert case_quality(q, skipna=True).values.tolist() == pytest.approx([0.9, 0.7, 0.6])
    # inf is never skipped: an infinite distance stays infinite
    assert case_quality(q, "hd95", skipna=True).values.tolist() == [3.5, 2.0, np.inf]
    assert case_quality(q, labels=["et"]).values.tolist() == pytest.approx([np.nan, 0.6, 0.7], nan_ok=True)
    assert case_quality(q, labels="wt").values.tolist() == [0.9, 0.8, 0.5]


def test_case_quality_matches_the_callers_expressions():
    q = _quality()
    xr.testing.assert_identical(case_quality(q, "dice", skipna=False),
                                q.sel(metric="dice").mean("label", skipna=False).rename("dice").drop_vars("metric"))
    np.testing.assert_array_equal(case_quality(q, "dice", skipna=True).values,
                                  q.sel(metric="dice").mean("label").values)


def test_case_quality_errors():
    q = _quality()
    with pytest.raises(InputError, match=r"Unknown `metric` 'nsd' in `quality`; expected one of \['dice', 'hd95'\]"):
        case_quality(q, "nsd")
    with pytest.raises(InputError, match=r"Unknown `labels` \['tc'\]; expected some of \['wt', 'et'\]"):
        case_quality(q, labels=["tc"])
    with pytest.raises(InputError, match=r"`quality` must be a DataArray over \(case, label, metric\), e.g. scores\['quality'\]; got \('case',\)"):
        case_quality(q.isel(label=0, metric=0, drop=True))
    with pytest.raises(InputError, match=r"Select or reduce \['algorithm'\] first"):
        case_quality(q.expand_dims(algorithm=["x"]))

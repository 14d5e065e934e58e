"""Label schemes: predefined ones, resolving, inferring, and label maps -> structure masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qe_nb.core.labels import (
    BINARY,
    BRATS,
    BRATS_2023_REGIONS,
    BRATS_REGIONS,
    LabelScheme,
    check_label_map,
    infer_labels,
    resolve_labels,
    structure_masks,
)
from qe_nb.exceptions import InputError, LabelError


def test_predefined_schemes():
    assert BRATS.structures == {"necrosis": (1,), "edema": (2,), "enhancing": (4,)}
    assert BRATS_REGIONS.structures["tumor_core"] == (1, 4)
    assert BRATS_2023_REGIONS.structures["enhancing_tumor"] == (3,)
    assert BINARY.values == ()
    assert BRATS_REGIONS.values_text() == ["1,2,4", "1,4", "4"]


@pytest.mark.parametrize("name", ["brats", "BraTS_Regions", "brats2023", "brats2023-regions", "binary"])
def test_resolve_by_name(name):
    assert isinstance(resolve_labels(name), LabelScheme)


def test_resolve_mapping_and_errors():
    assert resolve_labels({"lesion": [2, 1, 2]}).structures == {"lesion": (1, 2)}
    with pytest.raises(InputError, match=r"Unknown label scheme 'kidney'; expected one of \["):
        resolve_labels("kidney")
    with pytest.raises(InputError, match="label values must be positive integers; got 0"):
        resolve_labels({"x": [0, 1]})
    with pytest.raises(InputError, match="label values must be an int or a list of ints; got 'a'"):
        resolve_labels({"x": "a"})
    with pytest.raises(InputError, match="names no structure"):
        LabelScheme("empty", {})
    with pytest.raises(InputError, match="`labels` must be a scheme name"):
        resolve_labels(3.5)


@pytest.mark.parametrize("values, expected", [
    ([0, 1, 2, 4], "brats-regions"), ([0, 2, 4], "brats-regions"), ([0, 4], "binary"), ([0, 1, 2, 3], "brats2023-regions"),
    ([0, 1], "binary"), ([0], "binary"), ([0, 1, 5], "inferred"),
])
def test_infer_labels(values, expected):
    assert infer_labels(values).name == expected


def test_check_label_map_errors():
    assert check_label_map(np.array([0.0, 4.0])).dtype == np.uint8
    assert check_label_map(np.array([True, False])).dtype == np.uint8
    with pytest.raises(LabelError, match=r"non-integral values \(e\.g\. 0\.5\)"):
        check_label_map(np.array([0.5, 1.0]))
    with pytest.raises(LabelError, match=r"negative labels \(e\.g\. -2\)"):
        check_label_map(np.array([0, -2]))
    with pytest.raises(LabelError, match="NaN or infinite voxels"):
        check_label_map(np.array([np.nan, 1.0]))
    with pytest.raises(LabelError, match="must be an integer"):
        check_label_map(np.array(["a"]))


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, (4, 5, 6), elements=st.sampled_from([0, 1, 2, 3, 4, 7])),
       st.sampled_from(["brats", "brats-regions", "brats2023-regions", "binary"]))
def test_structure_masks_equal_isin(label_map, scheme_name):
    scheme = resolve_labels(scheme_name)
    masks = structure_masks(label_map, scheme)
    assert masks.shape == (len(scheme.structures),) + label_map.shape
    for i, values in enumerate(scheme.structures.values()):
        expected = np.isin(label_map, values) if values else label_map != 0
        np.testing.assert_array_equal(masks[i], expected)


def test_structure_masks_many_values_and_large_labels():
    scheme = LabelScheme("many", {"a": (1, 2, 3, 4, 5, 6), "big": (70000,)})
    m = np.array([0, 3, 6, 7, 70000], dtype=np.int64)
    np.testing.assert_array_equal(structure_masks(m, scheme), [[0, 1, 1, 0, 0], [0, 0, 0, 0, 1]])


# -- parse_label_values: the inverse of LabelScheme.values_text ---------------------------


def test_parse_label_values():
    from qe_nb.core.labels import BRATS_REGIONS, parse_label_values

    assert parse_label_values("1,2,4") == (1, 2, 4)
    assert parse_label_values(" 4, 1 ,1") == (1, 4)
    assert parse_label_values("nonzero") == ()
    for scheme in ("brats", "brats-regions", "brats2023-regions", "binary"):
        from qe_nb.core.labels import resolve_labels

        s = resolve_labels(scheme)
        assert tuple(parse_label_values(t) for t in s.values_text()) == tuple(s.structures.values())
    assert BRATS_REGIONS.values_text()[0] == "1,2,4"


@pytest.mark.parametrize("text", ["", "1,,2", "a", "0,1", "-1"])
def test_parse_label_values_errors(text):
    from qe_nb.core.labels import parse_label_values

    with pytest.raises(InputError, match=r"label values must be comma-separated positive integers such as '1,2,4', or 'nonzero'; got "):
        parse_label_values(text)


def test_parse_label_values_needs_text():
    from qe_nb.core.labels import parse_label_values

    with pytest.raises(InputError, match=r"label values must be text such as '1,2,4' or 'nonzero'; got int 4"):
        parse_label_values(4)


def test_float_labels_too_large_for_int64_are_refused_not_wrapped():
    """1e30 cast to int64 wraps to -2**63; it must be named as too large instead."""
    import qe_nb

    big = np.zeros((4, 4, 4), dtype=np.float32)
    big[1, 1, 1] = 1e30
    with pytest.raises(LabelError, match=r"too large to be labels \(e\.g\. 1e\+30\).*below 2\*\*53"):
        check_label_map(big)
    ok = np.zeros((4, 4, 4), dtype=np.uint8)
    ok[1:3, 1:3, 1:3] = 1
    with pytest.raises(LabelError, match="too large to be labels"):
        qe_nb.score_arrays({"a": ok, "b": big}, spacing=(1, 1, 1), labels="binary")

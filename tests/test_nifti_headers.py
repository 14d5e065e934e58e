"""Conformance over generated NIfTI-1 headers: qe_nb's readers against ``sitk.ReadImage``.

Hypothesis writes single-file NIfTI-1 files (2-D and 3-D sizes, every integer and float
datatype, both byte orders, pixdim with negative, zero, NaN, infinite and implausible
values, vox_offset, qform/sform codes and matrices, scl_slope/scl_inter, truncation, gzip
or not) and reads each the way label maps are read (``read_image_view(..., mask=True)``: the
fast in-memory path for gzip'd integer volumes, SimpleITK otherwise). Both readers must agree
on voxels and geometry, or qe_nb must refuse for a reason of its own that is true of the file:
the data are truncated (SimpleITK pads them with zeros), or the header declares more voxels
than the limit (which is set tiny here, so no generated file may allocate more than it).
Where SimpleITK refuses, qe_nb refuses too.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from qe_nb.data.images import read_image_view
from qe_nb.data.limits import voxel_limit
from qe_nb.exceptions import ImageReadError

DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
PIXDIMS = [1.0, 0.5, 2.5, -0.8, 0.0, math.nan, math.inf, 1e-5, 500.0]
LIMIT = 40  # voxels: most 3-D sizes (up to 6 x 6 x 6) cross it


@st.composite
def nifti_files(draw):
    ndim = draw(st.sampled_from([2, 3]))
    size = [draw(st.integers(1, 6)) for _ in range(ndim)]  # x, y(, z)
    datatype = draw(st.sampled_from(sorted(DTYPES)))
    endian = draw(st.sampled_from("<>"))
    pixdim = [draw(st.sampled_from(PIXDIMS)) for _ in range(3)]
    vox_offset = draw(st.sampled_from([352, 368, 400]))
    qform, sform = draw(st.sampled_from([0, 1, 2])), draw(st.sampled_from([0, 1, 4]))
    quatern = [draw(st.sampled_from([0.0, 0.5, -0.5, 1.0])) for _ in range(3)]
    offsets = [draw(st.sampled_from([0.0, -10.0, 33.3])) for _ in range(3)]
    srow_scale = draw(st.sampled_from([1.0, -1.0, 2.0]))
    slope, inter = draw(st.sampled_from([(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (1.0, 5.0), (0.5, -1.0)]))
    truncate = draw(st.sampled_from([None, None, None, 0.5, 0.99, 348]))
    compress = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))

    dims = [ndim, *size, *([1] * (7 - ndim))]
    dtype = np.dtype(DTYPES[datatype]).newbyteorder(endian)
    head = bytearray(vox_offset)
    struct.pack_into(endian + "i", head, 0, 348)
    struct.pack_into(endian + "8h", head, 40, *dims)
    struct.pack_into(endian + "2h", head, 70, datatype, dtype.itemsize * 8)
    struct.pack_into(endian + "8f", head, 76, -1.0 if draw(st.booleans()) else 1.0, *pixdim, 1.0, 0, 0, 0)
    struct.pack_into(endian + "3f", head, 108, float(vox_offset), slope, inter)
    struct.pack_into(endian + "2h", head, 252, qform, sform)
    struct.pack_into(endian + "6f", head, 256, *quatern, *offsets)
    srow = np.diag([srow_scale * p if math.isfinite(p) else 1.0 for p in pixdim]).astype(np.float32)
    struct.pack_into(endian + "12f", head, 280, *np.column_stack([srow, offsets]).ravel())
    head[344:348] = b"n+1\x00"
    count = math.prod(size)
    data = bytes(head) + np.random.default_rng(seed).bytes(count * dtype.itemsize)
    needed = len(data)
    if truncate is not None:
        data = data[: int(truncate)] if truncate > 1 else data[: int(len(data) * truncate)]
    return (gzip.compress(data) if compress else data), compress, size, len(data) < needed


_COUNT: list[int] = []


def _sitk(path: str):
    try:
        image = sitk.ReadImage(path)
    except RuntimeError:
        return None
    return image


@settings(max_examples=int(os.environ.get('QE_NB_HEADER_EXAMPLES', 250)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nifti_files(), st.sampled_from([LIMIT, 10**9]))
def test_qe_nb_and_simpleitk_agree_or_both_refuse(tmp_path, generated, limit):
    data, compress, size, truncated = generated
    _COUNT.append(1)  # a new file name per example: nothing is left from the one before
    path = tmp_path / (f"a{len(_COUNT)}.nii.gz" if compress else f"a{len(_COUNT)}.nii")
    path.write_bytes(data)
    declared_voxels = math.prod(size)
    warning_display = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        with voxel_limit(limit), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ours = read_image_view(path, mask=True)
            except ImageReadError as exc:
                ours = exc
        image = _sitk(str(path))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warning_display)
    if isinstance(ours, ImageReadError):
        text = str(ours)
        event(f"qe_nb refuses: {text.split(': ', 1)[-1][:40]}")
        if "more than the limit" in text:
            assert declared_voxels > limit, text
        elif "truncated" in text:
            assert truncated, text
        else:
            assert image is None, f"qe_nb refused what SimpleITK reads: {text}"
        return
    array, geometry = ours
    event("both read")
    assert array.size <= limit, "a file larger than the limit was read"
    assert image is not None, "qe_nb read what SimpleITK refuses"
    expected = sitk.GetArrayFromImage(image)
    assert array.shape == expected.shape and array.dtype == expected.dtype
    same = array == expected
    if array.dtype.kind == "f":
        # A NaN voxel stays NaN in qe_nb; SimpleITK turns it into 0, then applies scl_slope
        # and scl_inter (giving scl_inter).
        same |= np.isnan(array)
    assert same.all(), (array, expected)
    n = image.GetDimension()
    assert np.allclose(geometry.spacing, image.GetSpacing()[::-1])
    assert np.allclose(geometry.origin, image.GetOrigin()[::-1])
    d = np.asarray(image.GetDirection()).reshape(n, n)[::-1, ::-1]
    assert np.allclose(geometry.direction, d.ravel())


@pytest.mark.parametrize("compress", [True, False])
def test_a_truncated_file_is_refused_where_simpleitk_pads_it(tmp_path, compress):
    """The one deliberate disagreement: SimpleITK reads a truncated file, padded with zeros."""
    head = bytearray(352)
    struct.pack_into("<i", head, 0, 348)
    struct.pack_into("<8h", head, 40, 3, 4, 4, 4, 1, 1, 1, 1)
    struct.pack_into("<2h", head, 70, 2, 8)
    struct.pack_into("<4f", head, 76, 1, 1, 1, 1)
    struct.pack_into("<2f", head, 108, 352.0, 1.0)
    head[344:348] = b"n+1\x00"
    data = bytes(head) + bytes(range(1, 33))  # 32 of the 64 voxels
    path = tmp_path / ("a.nii.gz" if compress else "a.nii")
    path.write_bytes(gzip.compress(data) if compress else data)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).shape == (4, 4, 4)
    with pytest.raises(ImageReadError, match=r"the NIfTI data are truncated: it holds 384 bytes, its header promises 416"):
        read_image_view(path, mask=True)

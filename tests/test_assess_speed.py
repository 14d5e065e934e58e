"""Speed changes of the one-case path (issue 16), each checked against what it replaced.

Reading one case's files in threads, inflating with the trailer's size as the first limit, and
neighbour codes built axis by axis: the arrays, grids, errors and codes must be those of the
serial read, of inflating with the header's cap as the only limit, and of the 2**ndim-pass codes.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from qe_nb.core.masks import mask_features
from qe_nb.data import nifti
from qe_nb.data.ensemble import open_ensemble
from qe_nb.data.images import write_image
from qe_nb.data.loading import read_label_maps
from qe_nb.exceptions import ImageReadError, LabelError
from qe_nb.pipeline.one_case import case_settings, score_case


def _case(root, n=4, shape=(12, 14, 16), seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root / "c1", exist_ok=True)
    maps = []
    for k in range(n):
        m = np.zeros(shape, np.uint8)
        lo = rng.integers(1, 4, size=3)
        m[lo[0]:lo[0] + 6, lo[1]:lo[1] + 7, lo[2]:lo[2] + 8] = rng.choice([1, 2, 4], size=(6, 7, 8))
        write_image(m, root / "c1" / f"alg{k}.nii.gz")
        maps.append(m)
    return maps


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_threaded_read_gives_the_serial_arrays_and_grid(tmp_path, threads):
    maps = _case(tmp_path)
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}.nii.gz", labels="brats-regions")
    serial, grid = read_label_maps(ens, "c1")
    arrays, grid_t = read_label_maps(ens, "c1", threads=threads)
    assert list(arrays) == list(serial) == [f"alg{k}" for k in range(4)]
    for k, name in enumerate(arrays):
        assert np.array_equal(arrays[name], serial[name]) and np.array_equal(arrays[name], maps[k])
    assert grid_t == grid


def test_threaded_score_case_equals_serial(tmp_path):
    _case(tmp_path, seed=3)
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}.nii.gz", labels="brats-regions")
    settings = case_settings(ens, "mav", ("dice", "hd95", "nsd"), 1.0)
    one = score_case(ens, "c1", settings)
    two = score_case(ens, "c1", settings, threads=2)
    assert np.array_equal(one["similarity"], two["similarity"], equal_nan=True)
    assert np.array_equal(one["volume"], two["volume"], equal_nan=True)


def test_threaded_read_raises_the_first_bad_candidate_in_catalogue_order(tmp_path):
    _case(tmp_path)
    (tmp_path / "c1" / "alg1.nii.gz").write_bytes(b"\x1f\x8b" + b"not a gzip stream at all")
    bad = np.full((12, 14, 16), -1, np.int16)
    write_image(bad, tmp_path / "c1" / "alg3.nii.gz")
    ens = open_ensemble(tmp_path, masks="{case}/{algorithm}.nii.gz", labels="brats-regions")
    errors = []
    for threads in (1, 2):
        with pytest.raises((ImageReadError, LabelError)) as info:
            read_label_maps(ens, "c1", threads=threads)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
    assert "alg1" in errors[0][1] and errors[0][0] is ImageReadError


def _old_inflate_whole(path):
    """The inflating before the trailer's size was tried first: the header's cap the only limit."""
    raw = open(path, "rb").read()
    if len(raw) < 18:
        return None
    (size,) = struct.unpack("<I", raw[-4:])
    try:
        head = nifti._inflate.decompressobj(wbits=31).decompress(raw, 544)
    except nifti._inflate.error:
        return None
    cap = nifti._cap(head)
    d = nifti._inflate.decompressobj(wbits=31)
    try:
        data = d.decompress(raw, cap + 1)
    except nifti._inflate.error:
        return None
    if len(data) > cap:
        return "too large"
    if not d.eof or d.unused_data or len(data) % (1 << 32) != size:
        return None
    return data


def _new_inflate_whole(path):
    try:
        return nifti._inflate_whole(path)
    except nifti.SizeRefused:
        return "too large"


def test_trailer_size_first_gives_what_the_cap_alone_gives(tmp_path):
    m = np.zeros((10, 11, 12), np.uint8)
    m[2:6, 3:8, 4:9] = 4
    good = tmp_path / "good.nii.gz"
    write_image(m, good)
    raw = good.read_bytes()
    inner = gzip.decompress(raw)
    (size,) = struct.unpack("<I", raw[-4:])
    variants = {
        "good": raw,
        "trailer says less": raw[:-4] + struct.pack("<I", size - 100),
        "trailer says one less": raw[:-4] + struct.pack("<I", size - 1),
        "trailer says more": raw[:-4] + struct.pack("<I", size + 100),
        "trailer says zero": raw[:-4] + struct.pack("<I", 0),
        "two members": raw + gzip.compress(b"x" * 50),
        "trailing bytes": raw + b"\0\0\0",
        "inflates beyond the cap": gzip.compress(inner + bytes(2 << 20)),
        "beyond the cap, trailer lies": (lambda b: b[:-4] + struct.pack("<I", size))(gzip.compress(inner + bytes(2 << 20))),
        "corrupt": raw[:20] + bytes(len(raw) - 28) + raw[-8:],
        "truncated": raw[: len(raw) // 2],
    }
    seen = {}
    for k, (name, data) in enumerate(variants.items()):
        path = tmp_path / f"v{k}.nii.gz"
        path.write_bytes(data)
        seen[name] = _new_inflate_whole(str(path))
        assert seen[name] == _old_inflate_whole(str(path)), name
    # every outcome is exercised: the data, the streaming path's None, the refusal
    assert seen["inflates beyond the cap"] == seen["beyond the cap, trailer lies"] == "too large"
    assert seen["trailer says less"] is None and seen["two members"] is None and seen["truncated"] is None
    assert _new_inflate_whole(str(good)) == inner


def _codes_by_corner(voxels):
    """Neighbour codes as surface-distance's correlate kernel: one pass per corner voxel."""
    v = voxels.view(np.uint8)
    nd = v.ndim
    codes = np.zeros(tuple(n - 1 for n in v.shape), dtype=np.uint8)
    for flat in range(2**nd):
        d = [(flat >> (nd - 1 - ax)) & 1 for ax in range(nd)]
        codes += v[tuple(slice(k, k + n) for k, n in zip(d, codes.shape))] << np.uint8(2**nd - 1 - flat)
    return codes


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 1, 4), (9, 8), (1, 5), (20, 30, 25)])
def test_codes_axis_by_axis_equal_the_corner_passes(shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    for p in (0.1, 0.5, 0.95):
        m = rng.random(shape) < p
        m.flat[0] = True
        f = mask_features(m, (1.0,) * len(shape))
        assert f.codes.dtype == np.uint8 and f.codes.flags.c_contiguous
        assert np.array_equal(f.codes, _codes_by_corner(f.voxels))


def test_shared_header_read_once_and_each_file_keeps_its_own_grid(tmp_path):
    import SimpleITK as sitk

    from qe_nb.data.geometry import Geometry, geometry_of
    from qe_nb.data.images import read_image

    m = np.zeros((6, 7, 8), np.uint8)
    m[1:4, 2:5, 3:6] = 2
    same = Geometry((6, 7, 8), spacing=(2.5, 0.9, 1.1), origin=(3.0, -4.0, 5.5))
    other = Geometry((6, 7, 8), spacing=(2.5, 0.9, 1.2), origin=(3.0, -4.0, 5.5))
    paths = []
    for k, geometry in enumerate([same, same, other, same]):
        paths.append(tmp_path / f"m{k}.nii.gz")
        write_image(m * (k + 1), paths[-1], geometry=geometry)
    nifti._HEADER_READERS.clear()
    grids = [read_image(p)[1] for p in paths]
    for p, grid in zip(paths, grids):
        assert grid == geometry_of(sitk.ReadImage(str(p)))  # as SimpleITK reads each file whole
    assert grids[0] == grids[1] == grids[3] != grids[2]
    assert len(nifti._HEADER_READERS) == 2  # one header read per distinct header
    for k, p in enumerate(paths):
        assert np.array_equal(read_image(p)[0], m * (k + 1))

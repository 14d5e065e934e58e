"""Resource limits of reading images (qe_nb.data.limits): nothing explodes, nothing hangs.

Memory is measured in a child process (its peak RSS), so that a regression shows as a number
instead of taking the test run down; FIFOs are read in a child process with a timeout.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from qe_nb.data.images import Geometry, read_image, write_image
from qe_nb.data.limits import MAX_VOXELS_ENV, max_voxels, voxel_limit
from qe_nb.data.loading import read_label_map
from qe_nb.exceptions import ImageReadError, InputError, LabelError, QeNbWarning

REPO = Path(__file__).resolve().parents[1]

_PEAK = """
import json, resource, sys
from qe_nb.data.images import read_image
try:
    read_image(sys.argv[1], case="c1", role="algorithm 'a'")
    error = ""
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"error": error, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _read_in_child(path: Path, *, env: dict | None = None, timeout: float = 120) -> dict:
    """read_image in a fresh process: its error and peak RSS (kB)."""
    done = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _baseline_kb() -> int:
    return _read_in_child(Path("/nonexistent.nii.gz"))["peak_kb"]


def _header(shape_xyz=(18, 16, 14), datatype=2, bitpix=8) -> bytearray:
    head = bytearray(352)
    struct.pack_into("<i", head, 0, 348)
    struct.pack_into("<8h", head, 40, len(shape_xyz), *shape_xyz, *([1] * (7 - len(shape_xyz))))
    struct.pack_into("<2h", head, 70, datatype, bitpix)
    struct.pack_into("<8f", head, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)
    struct.pack_into("<f", head, 108, 352.0)
    struct.pack_into("<f", head, 112, 1.0)  # scl_slope
    head[344:348] = b"n+1\x00"
    return head


def _zeros_gzip(header: bytes, size: int, path: Path) -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(z.compress(header))
        block = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(z.compress(block))
        f.write(z.compress(bytes(size % (1 << 20))))
        f.write(z.flush())


@pytest.fixture(scope="module")
def baseline():
    return _baseline_kb()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_header_bomb_is_refused_before_allocating(tmp_path, baseline, suffix):
    path = tmp_path / f"bomb{suffix}"
    data = bytes(_header((1000, 1500, 2000))) + bytes(4000)
    path.write_bytes(gzip.compress(data) if suffix == ".nii.gz" else data)
    seen = _read_in_child(path)
    assert "its header declares 1000 x 1500 x 2000 = 3000000000 voxels, more than the limit of " \
           "1000000000 voxels" in seen["error"] and "QE_NB_MAX_VOXELS=4000000000" in seen["error"]
    assert "case 'c1', algorithm 'a': cannot read" in seen["error"]
    assert seen["peak_kb"] < baseline + 50_000, seen
    raised = _read_in_child(path, env={MAX_VOXELS_ENV: "4e9"})  # the limit is not the only guard
    assert "the NIfTI data are truncated: it holds 4352 bytes, its header promises 3000000352" in raised["error"]
    assert raised["peak_kb"] < baseline + 50_000, raised


def test_gzip_bomb_stops_inflating_at_the_declared_size(tmp_path, baseline):
    path = tmp_path / "bomb.nii.gz"
    _zeros_gzip(bytes(_header()) + bytes(18 * 16 * 14), 200 << 20, path)
    assert path.stat().st_size < 400_000
    seen = _read_in_child(path)
    assert "its gzip data inflate to more than the 4384 bytes its NIfTI header declares" in seen["error"]
    assert seen["peak_kb"] < baseline + 30_000, seen


def test_multi_member_gzip_bomb_is_stopped_too(tmp_path):
    path = tmp_path / "bomb.nii.gz"
    member = gzip.compress(bytes(8 << 20), 9)
    path.write_bytes(gzip.compress(bytes(_header()) + bytes(18 * 16 * 14)) + member * 4)
    with pytest.raises(ImageReadError, match=r"its gzip data inflate to more than the 4384 bytes .*gzip bomb"):
        read_image(path)


def test_lowered_limit_refuses_a_declared_large_gzip(tmp_path, baseline):
    path = tmp_path / "big.nii.gz"
    _zeros_gzip(bytes(_header((400, 500, 1000))), 400 * 500 * 1000, path)
    seen = _read_in_child(path, env={MAX_VOXELS_ENV: "1000000"})
    assert "declares 400 x 500 x 1000 = 200000000 voxels, more than the limit of 1000000 voxels" in seen["error"]
    assert seen["peak_kb"] < baseline + 30_000, seen


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".png"])
def test_other_formats_are_checked_on_their_header(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    shape = (40, 50) if suffix == ".png" else (10, 20, 30)
    write_image(np.zeros(shape, np.uint8), path)
    with voxel_limit(1000), pytest.raises(ImageReadError, match=r"declares .* voxels, more than the limit of 1000"):
        read_image(path)
    assert read_image(path)[0].shape == shape


def test_max_voxels_reads_the_environment(monkeypatch):
    monkeypatch.delenv(MAX_VOXELS_ENV, raising=False)
    assert max_voxels() == 1_000_000_000
    monkeypatch.setenv(MAX_VOXELS_ENV, "2.5e9")
    assert max_voxels() == 2_500_000_000
    for bad in ("lots", "0", "-5", "1.5", "inf"):
        monkeypatch.setenv(MAX_VOXELS_ENV, bad)
        with pytest.raises(InputError, match=r"QE_NB_MAX_VOXELS must be a positive whole number"):
            max_voxels()


_FIFO = """
import sys
from qe_nb.data.images import read_image
try:
    read_image(sys.argv[1], case="c1", role="algorithm 'a'")
except Exception as exc:
    print(exc)
"""


def test_fifo_is_refused_without_opening_it(tmp_path):
    path = tmp_path / "a.nii.gz"
    os.mkfifo(path)
    done = subprocess.run([sys.executable, "-c", _FIFO, str(path)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert "case 'c1', algorithm 'a': cannot read" in done.stdout
    assert "it is a named pipe (FIFO), not a regular file" in done.stdout


def test_score_command_does_not_block_on_a_fifo(tmp_path):
    from .bad_inputs import make_cohort

    root = make_cohort(tmp_path / "cohort", n_cases=4)
    (root / "case-01" / "alg-b.nii.gz").unlink()
    os.mkfifo(root / "case-01" / "alg-b.nii.gz")
    done = subprocess.run(["qe-nb", "score", str(root), "--reference", "{case}/reference.nii.gz",
                           "--labels", "brats", "--out", str(tmp_path / "s.nc"), "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "it is a named pipe (FIFO)" in done.stdout + done.stderr
    assert (tmp_path / "s.nc").exists()


def _nifti(path: Path, pixdim_x: float) -> None:
    write_image(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), path,
                geometry=Geometry((2, 3, 4), spacing=(3.0, 1.0, 0.5)))
    data = path.read_bytes()
    raw = bytearray(gzip.decompress(data) if path.suffix == ".gz" else data)
    struct.pack_into("<f", raw, 80, pixdim_x)
    path.write_bytes(gzip.compress(bytes(raw)) if path.suffix == ".gz" else bytes(raw))


@pytest.mark.parametrize("pixdim, note", [
    (-0.5, r"pixdim\[1\] is -0\.5 and is read as 0\.5 with that axis flipped"),
    (0.0, r"pixdim\[1\] is 0 and is read as 1\.0"),
    (math.nan, r"pixdim\[1\] is nan and is read as 1\.0"),
    (math.inf, r"pixdim\[1\] is inf and is read as 1\.0"),
    (500.0, r"voxel size \(3\.0, 1\.0, 500\.0\) mm has values outside \[0\.001, 100\] mm"),
    (1e-5, r"voxel size \(3\.0, 1\.0, 1e-05\) mm has values outside"),
])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_odd_pixdim_reads_as_simpleitk_reads_it_and_warns(tmp_path, pixdim, note, suffix):
    path = tmp_path / f"odd{suffix}"
    _nifti(path, pixdim)
    with pytest.warns(QeNbWarning, match=rf"odd{suffix.replace('.', chr(92) + '.')}': the header's voxel size looks wrong: {note}"):
        array, geometry = read_image(path)
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(image))
    assert np.allclose(geometry.spacing, image.GetSpacing()[::-1])
    d = np.asarray(image.GetDirection()).reshape(3, 3)[::-1, ::-1]
    assert np.allclose(geometry.direction, d.ravel())


def test_huge_float_labels_name_the_file(tmp_path):
    path = tmp_path / "a.nii.gz"
    write_image(np.array([[[0, 1, 1e30]]], np.float32), path)
    with pytest.raises(LabelError, match=r"case 'c1', algorithm 'a', file '.*a\.nii\.gz': `label_map` holds "
                                         r"values too large to be labels \(e\.g\. 1e\+30\)"):
        read_label_map(str(path), case="c1", role="algorithm 'a'")

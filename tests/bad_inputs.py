"""Broken inputs a researcher's folder really holds, each applied to one file of a clean cohort.

Used by ``tests/test_bad_input.py`` (one test per fault, asserting the message the user sees)
and by ``docs/bad_input_table.py`` (prints the table input -> message for the docs).
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (14, 16, 18)
SPACING = (2.0, 1.0, 0.8)  # z, y, x
ALGORITHMS = ("alg-a", "alg-b", "alg-c")


def write(arr: np.ndarray, path: Path, *, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=None) -> None:
    img = sitk.GetImageFromArray(np.asarray(arr))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    img.SetOrigin(tuple(float(o) for o in origin[::-1]))
    if direction is not None:
        img.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def sphere(center, radius, shape=SHAPE) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return ((zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2) <= radius**2


def make_cohort(root: Path, n_cases: int = 6, seed: int = 0, suffix: str = ".nii.gz") -> Path:
    """Spheres with labels 1 (core) and 2 (rim) per case and algorithm, and a reference."""
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        case = root / f"case-{i:02d}"
        center = np.array([7, 8, 9]) + rng.integers(-1, 2, 3)
        ref = sphere(center, 5).astype(np.uint8) * 2
        ref[sphere(center, 3)] = 1
        write(ref, case / f"reference{suffix}")
        for a, name in enumerate(ALGORITHMS):
            c = center + rng.integers(-1, 2, 3) * (a % 2)
            m = sphere(c, 5 - (i + a) % 2).astype(np.uint8) * 2
            m[sphere(c, 3)] = 1
            write(m, case / f"{name}{suffix}")
    return root


@dataclass(frozen=True)
class Fault:
    """One kind of broken input: how to make it, and what the user must be told."""

    id: str
    description: str
    apply: Callable[[Path], None]  # gets the file of (victim case, victim algorithm)
    message: str  # regex the case's recorded error (or the raised error) must match
    outcome: str = "error"  # "error": case recorded as failed; "scored": case scored (with a warning)
    suffix: str = ".nii.gz"  # file format of the cohort the fault is applied to
    warning: str = ""  # regex of a QeNbWarning the run must also give
    max_voxels: int | None = None  # run with QE_NB_MAX_VOXELS lowered to this


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate_float(path: Path) -> None:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    write(arr, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40] = b"\x00" * 40
    path.write_bytes(bytes(data))


def _not_an_image(path: Path) -> None:
    path.write_bytes(gzip.compress(b"patient,notes\n1,this is a spreadsheet\n"))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _two_d(path: Path) -> None:
    write(np.zeros(SHAPE[1:], np.uint8), path, spacing=SPACING[1:], origin=(0.0, 0.0))


def _other_shape(path: Path) -> None:
    write(np.zeros((SHAPE[0] + 2, SHAPE[1], SHAPE[2]), np.uint8), path)


def _rewrite(path: Path, **kw) -> None:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    write(arr, path, **kw)


def _other_spacing(path: Path) -> None:
    _rewrite(path, spacing=(3.0, 1.0, 0.8))


def _other_origin(path: Path) -> None:
    _rewrite(path, origin=(0.0, 0.0, 25.0))


def _other_direction(path: Path) -> None:
    _rewrite(path, direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))


def _non_integral(path: Path) -> None:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    arr[arr == 1] = 0.73  # a probability map saved where a label map belongs
    write(arr, path)


def _negative(path: Path) -> None:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int16)
    arr[0, 0, :3] = -1
    write(arr, path)


def _nan(path: Path) -> None:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    arr[0, 0, 0] = np.nan
    write(arr, path)


def _outside_scheme(path: Path) -> None:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    arr[0, 0, :2] = 7
    write(arr, path)


def _missing(path: Path) -> None:
    path.unlink()


def _broken_symlink(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "moved-away.nii.gz")


def _nifti_header(path: Path) -> bytearray:
    """The 352 bytes before the voxels of a (gzip'd) single-file NIfTI-1."""
    data = path.read_bytes()
    return bytearray((gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)[:352])


def _header_bomb(path: Path) -> None:
    """A 4 kB .nii.gz whose header declares 2000 x 1500 x 1000 voxels (uint8: 3 GB)."""
    head = _nifti_header(path)
    struct.pack_into("<8h", head, 40, 3, 2000, 1500, 1000, 1, 1, 1, 1)
    struct.pack_into("<2h", head, 70, 2, 8)
    path.write_bytes(gzip.compress(bytes(head) + bytes(4000)))


@functools.cache
def _zeros_gzip(header: bytes, size: int) -> bytes:
    """One gzip member: ``header`` then ``size`` zero bytes (about 1 kB per MiB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [z.compress(header)] + [z.compress(block) for _ in range(size >> 20)]
    parts.append(z.compress(bytes(size % (1 << 20))))
    return b"".join(parts) + z.flush()


def _gzip_bomb(path: Path) -> None:
    """A 200 kB .nii.gz that inflates to 200 MB, its header declaring the 14 x 16 x 18 of the others."""
    path.write_bytes(_zeros_gzip(bytes(_nifti_header(path)), 200 << 20))


def _gzip_bomb_declared(path: Path) -> None:
    """A 200 kB .nii.gz holding 200 MB of voxels (uint8 1000 x 500 x 400), as its header declares."""
    head = _nifti_header(path)
    struct.pack_into("<8h", head, 40, 3, 400, 500, 1000, 1, 1, 1, 1)
    struct.pack_into("<2h", head, 70, 2, 8)
    path.write_bytes(_zeros_gzip(bytes(head), 400 * 500 * 1000))


def _fifo(path: Path) -> None:
    """A named pipe where the file belongs.

    A watchdog thread opens the pipe's write end as soon as anything waits to read it, and
    closes it at once, so that a regression (a reader opening the pipe) fails with another
    message instead of hanging the test run.
    """
    path.unlink()
    os.mkfifo(path)

    def rescue() -> None:
        end = time.monotonic() + 600
        while time.monotonic() < end and path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader (ENXIO), or the pipe is gone
                time.sleep(0.2)
                continue
            os.close(fd)
            time.sleep(0.2)

    threading.Thread(target=rescue, daemon=True).start()


def _float_huge(path: Path) -> None:
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    arr[0, 0, 0] = 1e30
    write(arr, path)


def _pixdim(value: float) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = bytearray(gzip.decompress(path.read_bytes()))
        struct.pack_into("<f", data, 80, value)  # pixdim[1]: the x spacing
        path.write_bytes(gzip.compress(bytes(data)))
    return apply


FAULTS: tuple[Fault, ...] = (
    Fault("truncated", "a .nii.gz cut off half-way (interrupted copy)", _truncate,
          r"case 'case-03', algorithm 'alg-b': .*alg-b\.nii\.gz.*(truncated|incomplete|ends early)"),
    Fault("truncated-float-nii", "an uncompressed float32 .nii cut off (interrupted copy)", _truncate_float,
          r"case 'case-03', algorithm 'alg-b': .*alg-b\.nii.*the NIfTI data are truncated", suffix=".nii"),
    Fault("corrupt-gzip", "a .nii.gz with zeroed bytes in the middle", _corrupt,
          r"case 'case-03', algorithm 'alg-b': .*alg-b\.nii\.gz.*(corrupt|CRC|invalid|damaged)"),
    Fault("not-an-image", "a spreadsheet saved as .nii.gz", _not_an_image,
          r"case 'case-03', algorithm 'alg-b': .*alg-b\.nii\.gz.*not .*image"),
    Fault("empty-file", "a 0-byte file", _empty,
          r"case 'case-03', algorithm 'alg-b': .*alg-b\.nii\.gz.*empty"),
    Fault("2-d", "a 2-D image among 3-D ones", _two_d,
          r"case 'case-03', algorithm 'alg-b': .*2-D.*3-D"),
    Fault("other-shape", "a candidate of another shape", _other_shape,
          r"case 'case-03', algorithm 'alg-b': shape \(16, 16, 18\) differs"),
    Fault("other-spacing", "same shape, other spacing", _other_spacing,
          r"case 'case-03', algorithm 'alg-b': spacing \(3\.0, 1\.0, 0\.8\) differs .*resample=True"),
    Fault("other-origin", "same shape, other origin", _other_origin,
          r"case 'case-03', algorithm 'alg-b': origin .* differs .*resample=True"),
    Fault("other-direction", "same shape, other direction", _other_direction,
          r"case 'case-03', algorithm 'alg-b': direction .* differs .*resample=True"),
    Fault("non-integral", "floats with non-integral values (a probability map)", _non_integral,
          r"case 'case-03', algorithm 'alg-b'.*non-integral values \(e\.g\. 0\.73"),
    Fault("negative-labels", "negative label values", _negative,
          r"case 'case-03', algorithm 'alg-b'.*negative labels"),
    # ITK's NIfTI reader turns NaN voxels into 0 silently; qe_nb finds them in the raw data.
    Fault("nan-voxels", "NaN voxels (float NIfTI)", _nan,
          r"case 'case-03', algorithm 'alg-b'.*NaN"),
    Fault("nan-voxels-nrrd", "NaN voxels (NRRD)", _nan,
          r"case 'case-03', algorithm 'alg-b'.*NaN", suffix=".nrrd"),
    Fault("label-outside-scheme", "label value 7 where the scheme knows 1 and 2", _outside_scheme,
          r"case 'case-03', algorithm 'alg-b': label values \[7\] are outside the label scheme",
          outcome="scored"),
    Fault("missing-candidate", "one algorithm's file absent", _missing,
          r"", outcome="nan-row"),
    Fault("broken-symlink", "a symlink whose target was moved", _broken_symlink,
          r"case 'case-03', algorithm 'alg-b': .*broken symbolic link"),
    Fault("header-bomb", "a 4 kB .nii.gz whose header declares 2000 x 1500 x 1000 voxels", _header_bomb,
          r"case 'case-03', algorithm 'alg-b': cannot read .*alg-b\.nii\.gz': its header declares "
          r"2000 x 1500 x 1000 = 3000000000 voxels, more than the limit of 1000000000 voxels; .*QE_NB_MAX_VOXELS"),
    Fault("gzip-bomb", "a 200 kB .nii.gz inflating to 200 MB beyond what its header declares", _gzip_bomb,
          r"case 'case-03', algorithm 'alg-b': cannot read .*alg-b\.nii\.gz': its gzip data inflate to "
          r"more than the 4384 bytes its NIfTI header declares .*gzip bomb"),
    Fault("gzip-bomb-limit", "a 200 kB .nii.gz holding 200 MB of voxels, `QE_NB_MAX_VOXELS=1000000`",
          _gzip_bomb_declared,
          r"case 'case-03', algorithm 'alg-b': cannot read .*alg-b\.nii\.gz': its header declares "
          r"400 x 500 x 1000 = 200000000 voxels, more than the limit of 1000000 voxels",
          max_voxels=1_000_000),
    Fault("fifo", "a named pipe (FIFO) in place of a candidate file", _fifo,
          r"case 'case-03', algorithm 'alg-b': cannot read .*alg-b\.nii\.gz': it is a named pipe \(FIFO\)"),
    Fault("float-1e30", "a float label map holding 1e30", _float_huge,
          r"case 'case-03', algorithm 'alg-b', file '.*alg-b\.nii\.gz': .*too large to be labels \(e\.g\. 1e\+30\)"),
    Fault("negative-pixdim", "a negative pixdim (x) in an integer .nii.gz", _pixdim(-0.8),
          r"case 'case-03', algorithm 'alg-b': direction \(1\.0, 0\.0, 0\.0, 0\.0, 1\.0, 0\.0, 0\.0, 0\.0, -1\.0\) differs",
          warning=r"alg-b\.nii\.gz': the header's voxel size looks wrong: pixdim\[1\] is -0\.8 and is read as "
                  r"0\.8 with that axis flipped"),
    Fault("nan-pixdim", "a NaN pixdim (x) in an integer .nii.gz", _pixdim(float("nan")),
          r"case 'case-03', algorithm 'alg-b': spacing \(2\.0, 1\.0, 1\.0\) differs",
          warning=r"alg-b\.nii\.gz': the header's voxel size looks wrong: pixdim\[1\] is nan and is read as 1\.0"),
)


def fault(fault_id: str) -> Fault:
    return next(f for f in FAULTS if f.id == fault_id)


def victim(root: Path, suffix: str = ".nii.gz") -> Path:
    return root / "case-03" / f"alg-b{suffix}"

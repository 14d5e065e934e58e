"""Broken inputs a researcher's folder really holds, each applied to one file of a clean cohort.

Used by ``tests/test_bad_input.py`` (one test per fault, asserting the message the user sees)
and by ``docs/bad_input_table.py`` (prints the table input -> message for the docs).
"""

from __future__ import annotations

import gzip
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
)


def fault(fault_id: str) -> Fault:
    return next(f for f in FAULTS if f.id == fault_id)


def victim(root: Path, suffix: str = ".nii.gz") -> Path:
    return root / "case-03" / f"alg-b{suffix}"

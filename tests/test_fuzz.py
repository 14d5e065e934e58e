"""Fuzz: randomly corrupted files of a small cohort through ``qe_nb.score(on_error="record")``.

200 variants (seeded): bit flips, truncations, headers swapped with another file's, zeroed
blocks, applied to the gzip bytes or to the NIfTI bytes inside (re-compressed, so that they
get past the checksum into the header and voxel parsing). Four files of four different
cases are corrupted per run, 50 runs. Every failure must be recorded in ``scores.error``
naming its file (or, for a grid that differs, its case and algorithm), without traceback
text; no run may hang (a run over its time bound kills the test process with a traceback
instead of hanging); every case left intact must score exactly as in the clean run.
"""

from __future__ import annotations

import faulthandler
import gzip
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import xarray as xr

import qe_nb

from .bad_inputs import sphere, write

SHAPE = (32, 32, 32)
CASES = [f"case-{i}" for i in range(6)]
ROLES = ("alg-a", "alg-b", "alg-c", "reference")
RUNS, PER_RUN = int(os.environ.get("QE_NB_FUZZ_RUNS", 50)), 4
RUN_SECONDS = 60  # a run's time bound (a clean run takes about 0.2 s)
KINDS = ("bit-flips", "truncation", "swapped-header", "zeroed-block")


def _cohort(root: Path) -> None:
    rng = np.random.default_rng(0)
    for case in CASES:
        c = np.array([16, 16, 16]) + rng.integers(-3, 4, 3)
        ref = sphere(c, 9, SHAPE).astype(np.uint8) * 2
        ref[sphere(c, 5, SHAPE)] = 1
        write(ref, root / case / "reference.nii.gz", spacing=(1.0, 1.0, 1.0))
        for name in ROLES[:3]:
            cc = c + rng.integers(-1, 2, 3)
            m = sphere(cc, 9 - int(rng.integers(0, 2)), SHAPE).astype(np.uint8) * 2
            m[sphere(cc, 5, SHAPE)] = 1
            write(m, root / case / f"{name}.nii.gz", spacing=(1.0, 1.0, 1.0))


def _donors(root: Path) -> list[bytes]:
    """Decompressed NIfTI files of other sizes, types and grids, whose headers are swapped in."""
    out = []
    for arr, spacing in (
        (np.zeros((16, 16, 16), np.uint8), (1.0, 1.0, 1.0)),
        (np.zeros((32, 32, 32), np.float32), (1.0, 1.0, 1.0)),
        (np.zeros((32, 32, 32), np.int16), (2.0, 0.5, 0.5)),
        (np.zeros((32, 32), np.uint8), (1.0, 1.0)),
    ):
        path = root / "donor.nii"
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing[::-1])
        sitk.WriteImage(img, str(path))
        out.append(path.read_bytes())
        path.unlink()
    return out


def _corrupt(data: bytes, kind: str, rng: np.random.Generator, donors: list[bytes]) -> bytes:
    inner = rng.random() < 0.5 or kind == "swapped-header"
    buf = bytearray(gzip.decompress(data) if inner else data)
    if kind == "bit-flips":
        span = 352 if inner and rng.random() < 0.7 else len(buf)  # mostly the header
        for _ in range(int(rng.integers(1, 9))):
            k = int(rng.integers(0, span))
            buf[k] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncation":
        buf = buf[: int(rng.integers(0, len(buf)))]
    elif kind == "swapped-header":
        donor = donors[int(rng.integers(0, len(donors)))]
        n = int(rng.choice([348, 352, int(rng.integers(16, 352))]))
        buf[:n] = donor[:n]
    else:
        start = int(rng.integers(0, len(buf)))
        size = int(rng.integers(1, 4096))
        buf[start : start + size] = bytes(len(buf[start : start + size]))
    return gzip.compress(bytes(buf), 1) if inner else bytes(buf)


def test_fuzzed_cohort_records_every_failure_and_keeps_intact_cases(tmp_path):
    root = tmp_path / "cohort"
    _cohort(root)
    donors = _donors(tmp_path)
    ensemble = qe_nb.open_ensemble(root, masks="{case}/{algorithm}.nii.gz",
                                   reference="{case}/reference.nii.gz", labels="brats")

    def run() -> xr.Dataset:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return qe_nb.score(ensemble, metrics=("dice", "hd95"), progress=False, n_jobs=1, on_error="record")

    clean = run()
    rng = np.random.default_rng(int(os.environ.get("QE_NB_FUZZ_SEED", 15)))
    counts = {"variants": 0, "failures recorded": 0, "scored anyway": 0, "intact cases identical": 0,
              "hangs": 0}
    slowest = 0.0
    started = time.perf_counter()
    for _ in range(RUNS):
        victims = {}
        for case in rng.choice(CASES, PER_RUN, replace=False):
            role = ROLES[int(rng.integers(0, len(ROLES)))]
            path = root / str(case) / f"{role}.nii.gz"
            original = path.read_bytes()
            kind = KINDS[int(rng.integers(0, len(KINDS)))]
            path.write_bytes(_corrupt(original, kind, rng, donors))
            victims[str(case)] = (path, role, kind, original)
        faulthandler.dump_traceback_later(RUN_SECONDS, exit=True)
        t0 = time.perf_counter()
        try:
            scores = run()
        finally:
            faulthandler.cancel_dump_traceback_later()
        slowest = max(slowest, time.perf_counter() - t0)
        for case, (path, role, kind, original) in victims.items():
            counts["variants"] += 1
            error = str(scores["error"].sel(case=case).item())
            if error:
                counts["failures recorded"] += 1
                if os.environ.get("QE_NB_FUZZ_SHOW"):
                    print(kind, "|", re.sub(r"'/[^']*/", "'…/", error)[:220])
                assert "Traceback" not in error and '\n  File "' not in error, error
                assert f"case {case!r}" in error, error
                named = str(path) in error or (role != "reference" and f"algorithm {role!r}" in error) \
                    or (role == "reference" and "reference" in error)
                assert named, f"{kind}: {error}"
                assert scores["similarity"].sel(case=case).isnull().all()
            else:
                counts["scored anyway"] += 1
            path.write_bytes(original)
        intact = [c for c in CASES if c not in victims]
        xr.testing.assert_identical(scores["similarity"].sel(case=intact), clean["similarity"].sel(case=intact))
        xr.testing.assert_identical(scores["quality"].sel(case=intact), clean["quality"].sel(case=intact))
        counts["intact cases identical"] += len(intact)
    counts["seconds"] = round(time.perf_counter() - started, 1)
    counts["slowest run (s)"] = round(slowest, 2)
    print("fuzz:", counts)
    assert counts["variants"] == RUNS * PER_RUN
    assert counts["failures recorded"] > 100

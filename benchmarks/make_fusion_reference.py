"""Regenerate tests/data/fusion_reference/*.npz with BraTS Toolkit's own Fusionator.

Run by hand, never by pytest, in a scratch environment that has BraTS Toolkit. BraTS
Toolkit is AGPL-licensed: it must never become a dependency of qe_nb, so keep it out of the
project's environment::

    python -m venv /tmp/btk-venv
    /tmp/btk-venv/bin/pip install brats-toolkit numpy SimpleITK
    /tmp/btk-venv/bin/python benchmarks/make_fusion_reference.py

Every case is a set of random candidate label maps (about 30^3 voxels, 1 to 7 candidates,
labels 0, 1, 2, 4; one case 12 candidates) that this script generates from a fixed seed and stores together with
BraTS Toolkit's fusions, so the tests need neither this script nor BraTS Toolkit. The
fusions come from the public entry point ``Fusionator.fuse(paths, output, method=...,
weights=..., labels=...)`` on NIfTI files, as a user calls it; ``fuse`` does not pass
``labels`` to SIMPLE, so the ``simple_labels`` outputs call ``Fusionator._simple(...,
labels=...)`` directly.

Keys of every ``<case>.npz``: ``candidates`` (n, z, y, x) uint8; ``weights`` (n,) float64 (all
ones when the case passes none, see ``weights_given``); ``labels`` int64 (empty when not
given); ``mav``, ``simple``, ``brats_simple`` and, when ``labels`` is given, ``mav_labels``,
``simple_labels``, each uint8 (z, y, x); ``generator`` and ``btk_version`` strings.
``real_case_brats_simple.npz`` holds BraTS Toolkit's brats-simple fusion of the real case in
``../shared/data/brats-example`` (whose mav and simple fusions ship with the data).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import SimpleITK as sitk

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fusion_reference"

# name: (seed, shape, number of candidates, kind, weights or None, labels or None)
CASES = {
    "tumour_n3": (0, (30, 30, 30), 3, "tumour", None, None),
    "tumour_n4_ties": (1, (30, 30, 30), 4, "tumour", None, None),
    "tumour_n5_int_weights": (2, (30, 30, 30), 5, "tumour", [1, 2, 1, 3, 1], None),
    "noise_n6_ties": (3, (30, 30, 30), 6, "noise", None, None),
    "tumour_n7_float_weights": (4, (30, 30, 30), 7, "tumour-bad", "random", None),
    "noise_n3_rounding_weights": (5, (30, 30, 30), 3, "noise", [0.1, 0.2, 0.3], None),
    "tumour_n5_labels_1_4": (6, (30, 30, 30), 5, "tumour", None, [1, 4]),
    "tumour_n3_extra_label_3": (7, (24, 32, 28), 3, "tumour-extra", None, None),
    "tumour_n2_ties": (8, (30, 30, 30), 2, "tumour", None, None),
    "noisy_tumour_n6_weights": (9, (28, 30, 32), 6, "tumour-noisy", [2, 1, 1, 1, 1, 2], [2, 1]),
    "tumour_n1": (10, (20, 20, 20), 1, "tumour", None, None),
    # 4**12 possible label patterns: qe_nb finds them by sorting instead of counting
    "noisy_tumour_n12": (11, (20, 22, 24), 12, "tumour-noisy", None, None),
}

# The real case of ../shared: BraTS Toolkit's own mav and simple fusions ship with it;
# its brats-simple fusion is stored here (candidates in alphabetical order of algorithm).
SHARED_CASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats-example" / "TCGA-DU-7294"
ALGORITHMS = ("hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20")


def _ball(shape, centre, radius):
    grid = np.indices(shape, dtype=float)
    dist2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
    return dist2 <= radius**2


def _tumour(shape, centre, r_whole, r_core, r_enh, shift_core):
    lab = np.zeros(shape, dtype=np.uint8)
    core_centre = tuple(c + s for c, s in zip(centre, shift_core))
    lab[_ball(shape, centre, r_whole)] = 2
    lab[_ball(shape, core_centre, r_core)] = 1
    lab[_ball(shape, core_centre, r_enh) & ~_ball(shape, core_centre, r_enh - 2.0)] = 4
    return lab


def make_candidates(seed, shape, n, kind):
    """Random candidates of one case (the generator the stored references come from)."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(n, *shape), p=[0.4, 0.2, 0.2, 0.2])
    centre = np.array(shape) / 2 + rng.uniform(-2, 2, 3)
    r_whole, r_core = rng.uniform(8, 11), rng.uniform(4.5, 6.5)
    r_enh = r_core - rng.uniform(0.0, 1.0)
    shift_core = rng.uniform(-1.5, 1.5, 3)
    out = []
    for i in range(n):
        jitter = rng.uniform(-1.5, 1.5, 3)
        cand = _tumour(
            shape,
            centre + jitter,
            r_whole + rng.uniform(-1.5, 1.5),
            r_core + rng.uniform(-1.0, 1.0),
            r_enh + rng.uniform(-1.0, 1.0),
            shift_core + rng.uniform(-1, 1, 3),
        )
        flip_rate = 0.15 if kind == "tumour-noisy" else 0.02
        near = _ball(shape, centre, r_whole + 3)
        flip = near & (rng.random(shape) < flip_rate)
        cand[flip] = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=int(flip.sum()))
        if kind == "tumour-bad" and i in (1, 4):
            cand[cand == 4] = 1 if i == 1 else 0  # a candidate that misses the enhancing part
            if i == 4:
                cand = np.roll(cand, 5, axis=0)  # and one that is badly misplaced
        if kind == "tumour-extra" and i == 0:
            cand[(cand == 2) & (rng.random(shape) < 0.3)] = 3
        out.append(cand)
    return np.stack(out)


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def main() -> None:
    from brats_toolkit.fusionator import Fusionator

    logging.disable(logging.CRITICAL)
    np.seterr(all="ignore")  # BraTS Toolkit divides by zero on empty masks, on purpose
    fusionator = _quiet(Fusionator, verbose=False)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (seed, shape, n, kind, weights, labels) in CASES.items():
            cands = make_candidates(seed, shape, n, kind)
            if isinstance(weights, str):
                weights = np.round(np.random.default_rng(seed + 100).uniform(0.2, 2.0, n), 3).tolist()
            paths = []
            for i, cand in enumerate(cands):
                path = str(Path(tmp) / f"{name}_{i}.nii.gz")
                sitk.WriteImage(sitk.GetImageFromArray(cand), path)
                paths.append(path)

            def run(method, lab=None, _paths=paths, _name=name, _weights=weights):
                out = str(Path(tmp) / f"{_name}_{method}_fused.nii.gz")
                _quiet(fusionator.fuse, _paths, out, method=method, weights=_weights, labels=lab)
                return sitk.GetArrayFromImage(sitk.ReadImage(out)).astype(np.uint8)

            record = {
                "candidates": cands,
                "weights": np.asarray(weights if weights is not None else [1.0] * n, float),
                "weights_given": np.array(weights is not None),
                "labels": np.asarray(labels if labels is not None else [], np.int64),
                "mav": run("mav"),
                "simple": run("simple"),
                "brats_simple": run("brats-simple"),
                "generator": np.array(f"make_candidates({seed}, {shape}, {n}, {kind!r})"),
                "btk_version": np.array(f"brats-toolkit {version('brats-toolkit')}"),
            }
            if labels is not None:
                record["mav_labels"] = run("mav", list(labels))
                w = list(weights) if weights is not None else [1] * n
                record["simple_labels"] = _quiet(
                    fusionator._simple, list(cands), w, labels=list(labels)
                ).astype(np.uint8)
            np.savez_compressed(OUT / f"{name}.npz", **record)
            print(name, {k: v.shape for k, v in record.items()}, file=sys.stderr)

        if SHARED_CASE.is_dir():
            paths = [str(SHARED_CASE / "segmentation" / f"{a}.nii.gz") for a in ALGORITHMS]
            out = str(Path(tmp) / "real_brats_simple.nii.gz")
            _quiet(fusionator.fuse, paths, out, method="brats-simple")
            fused = sitk.GetArrayFromImage(sitk.ReadImage(out)).astype(np.uint8)
            np.savez_compressed(
                OUT / "real_case_brats_simple.npz",
                brats_simple=fused,
                algorithms=np.array(ALGORITHMS),
                btk_version=np.array(f"brats-toolkit {version('brats-toolkit')}"),
            )
            print("real_case_brats_simple", fused.shape, file=sys.stderr)
        else:
            print(f"{SHARED_CASE} is absent: real_case_brats_simple.npz not regenerated", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Time Dice + HD95 + HD on the real BraTS case: qe_nb vs surface-distance (+ SimpleITK).

Run from the repository root: ``python benchmarks/bench_metrics.py``. Needs ../shared (or
QE_NB_SHARED) and the test extras (surface-distance, SimpleITK). Reports the best of a few
repeats, in wall-clock and CPU seconds (CPU time is the fairer figure on a shared machine).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import surface_distance

from qe_nb.core.labels import structure_masks
from qe_nb.core.metrics import compute_metrics_many

SHARED = Path(os.environ.get("QE_NB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CASE = SHARED / "data" / "brats-example" / "TCGA-DU-7294"
ALGORITHMS = ("hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20")
METRICS = ("dice", "hd95", "hd")


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _best(fn, repeats: int = 5) -> tuple[float, float, object]:
    wall = cpu = float("inf")
    result = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - w)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu, result


def main() -> None:
    fused = structure_masks(_read(CASE / "fusion-brats-toolkit" / "mav.nii.gz"), "brats-regions")
    candidates = np.stack(
        [structure_masks(_read(CASE / "segmentation" / f"{a}.nii.gz"), "brats-regions") for a in ALGORITHMS],
        axis=1,
    )  # (region, algorithm, z, y, x)
    spacing = (1.0, 1.0, 1.0)

    def ours():
        return [compute_metrics_many(fused[r], candidates[r], METRICS, spacing=spacing) for r in range(3)]

    def theirs():
        rows = []
        for r in range(3):
            for c in candidates[r]:
                if not fused[r].any() or not c.any():
                    continue  # surface-distance cannot score an empty mask
                sd = surface_distance.compute_surface_distances(fused[r], c, spacing)
                rows.append(
                    (
                        surface_distance.compute_dice_coefficient(fused[r], c),
                        surface_distance.compute_robust_hausdorff(sd, 95),
                        surface_distance.compute_robust_hausdorff(sd, 100),
                    )
                )
        return rows

    w1, c1, _ = _best(ours)
    w2, c2, rows = _best(theirs)
    print(f"qe_nb compute_metrics_many {METRICS}, 5 candidates x 3 regions: {w1:.3f} s wall, {c1:.3f} s CPU")
    print(f"surface-distance, same {len(rows)} non-empty pairs:          {w2:.3f} s wall, {c2:.3f} s CPU")
    print(f"speed-up: {w2 / w1:.1f}x wall, {c2 / c1:.1f}x CPU")


if __name__ == "__main__":
    main()

"""Check the synthetic cohorts against the paper's figures (run by hand, not a unit test).

For glioma (68 cases x 5 algorithms) and lung (46 x 3), seeds 0..2: the distribution of the
majority-vote fusion's Dice with the ground truth (mean over the BraTS regions for glioma) and
the Pearson r between it and the alarm count at alpha = 0.1 (Dice and HD95 alarms, thresholds
per algorithm/label/metric, median - alpha * MAD over cases, distances negated, non-finite
values alarm) -- the paper's r is -0.72 (MR, 68 x 5) and -0.70 (CT, 46 x 3).

    python benchmarks/synth_check.py [glioma] [lung] [seed ...] [--timing]

The cases are generated in memory (the same arrays synthetic_cohort writes) and scored with
qe_nb.fusion.fuse, qe_nb.metrics.compute_metrics and qe_nb.alarms. ``--timing`` also times
writing the default 68-case glioma cohort with images.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import xarray as xr

from qe_nb.core.alarms import alarms, risk
from qe_nb.core.fusion import fuse
from qe_nb.core.labels import structure_masks
from qe_nb.core.metrics import compute_metrics
from qe_nb.data.synth import _LABELS, KINDS, _algorithm_names, _check_arguments, _generate


def cohort_scores(kind: str, n_cases: int, n_algorithms: int, seed: int, shape=None):
    """similarity (case, algorithm, label, metric) and the fusion's mean Dice per case."""
    kind, n_cases, n_algorithms, shape, seed = _check_arguments(kind, n_cases, n_algorithms, shape, seed)
    _, cases = _generate(kind, n_cases, n_algorithms, shape, seed, images=False)
    labels = _LABELS[kind]
    n_labels = 3 if kind == "glioma" else 1
    similarity = np.zeros((n_cases, n_algorithms, n_labels, 2))
    quality = np.zeros(n_cases)
    for i, case in enumerate(cases):
        fused = fuse(case["candidates"], method="mav")
        ref_m = structure_masks(case["reference"], labels)
        fus_m = structure_masks(fused, labels)
        quality[i] = np.mean([compute_metrics(r, f, "dice")["dice"] for r, f in zip(ref_m, fus_m)])
        for a, cand in enumerate(case["candidates"]):
            for j, c in enumerate(structure_masks(cand, labels)):
                m = compute_metrics(fus_m[j], c, ("dice", "hd95"), spacing=case["spacing"])
                similarity[i, a, j] = m["dice"], m["hd95"]
    cube = xr.DataArray(
        similarity,
        dims=("case", "algorithm", "label", "metric"),
        coords={
            "case": [f"case-{i:03d}" for i in range(n_cases)],
            "algorithm": _algorithm_names(kind, n_algorithms),
            "label": list(range(n_labels)),
            "metric": ["dice", "hd95"],
        },
    )
    return cube, quality


def main() -> None:
    args = sys.argv[1:]
    kinds = [a for a in args if a in KINDS] or list(KINDS)
    seeds = [int(a) for a in args if a.isdigit()] or [0, 1, 2]
    if "--timing" in args:
        from qe_nb.data.synth import _write_cohort

        with tempfile.TemporaryDirectory() as folder:
            t = time.perf_counter()
            _write_cohort(folder, n_cases=68)
            print(f"68-case glioma cohort, default shape, with images: {time.perf_counter() - t:.1f} s")
    for kind in kinds:
        n_cases, n_algorithms = (68, 5) if kind == "glioma" else (46, 3)
        for seed in seeds:
            t = time.perf_counter()
            cube, q = cohort_scores(kind, n_cases, n_algorithms, seed)
            count = risk(alarms(cube, 0.1)).values
            count_dice = risk(alarms(cube.sel(metric=["dice"]), 0.1)).values
            r = np.corrcoef(count, q)[0, 1]
            r_dice = np.corrcoef(count_dice, q)[0, 1]
            qs = np.quantile(q, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1])
            print(
                f"{kind} {n_cases}x{n_algorithms} seed {seed}: r={r:+.3f} (Dice alarms only {r_dice:+.3f}); "
                f"fusion Dice mean {q.mean():.3f} sd {q.std(ddof=1):.3f} "
                f"quantiles 0/.1/.25/.5/.75/.9/1 = {np.round(qs, 2).tolist()}; "
                f"max alarms {count.max()} ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()

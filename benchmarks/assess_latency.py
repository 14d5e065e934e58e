"""Latency of assessing one BraTS-size case with a frozen model, next to reading its files (issue 16).

Not part of the test suite; run by hand::

    python benchmarks/assess_latency.py                  # 7 repeats, metrics dice,hd95
    python benchmarks/assess_latency.py --repeat 11 --metrics dice,hd95,hd

On the real case of ``../shared/data/brats-example/`` (``$QE_NB_SHARED``): 5 candidates,
155 x 240 x 240 voxels, BraTS regions. In one process (no worker start-up on the path; the case's five files are read in a thread per core, SimpleITK entered one at a time):

- ``read``: SimpleITK reads the five candidate files into arrays (``sitk.ReadImage`` +
  ``GetArrayFromImage``): the floor any tool pays for one case;
- ``assess``: ``model.assess(catalogue, cases=[case])`` -- reading the same five files, fusing
  (mav), measuring every candidate against the fusion on the model's metrics and judging the
  result against the frozen thresholds (alarms, risk, reasons, percentile).

The model is fitted on the case's own scores (a one-case reference: the thresholds equal the
case's values; which thresholds are used does not change the work of ``assess``). The two are
timed alternately, ``--repeat`` times each after one warm-up, and the medians are printed with
their ratio. Goal: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = Path(os.environ.get("QE_NB_SHARED", REPO.parent / "shared")) / "data" / "brats-example"
CASE = "TCGA-DU-7294"
ALGORITHMS = ("hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20")


def read_five(paths: list[str]) -> list:
    import SimpleITK as sitk

    return [sitk.GetArrayFromImage(sitk.ReadImage(p)) for p in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--metrics", default="dice,hd95")
    parser.add_argument("--fusion", default="mav")
    args = parser.parse_args(argv)
    if not (REAL / CASE).is_dir():
        print(f"the real case is not at {REAL / CASE}; set QE_NB_SHARED", file=sys.stderr)
        return 2

    import numpy as np

    import qe_nb
    from qe_nb.pipeline.model import fit

    paths = [str(REAL / CASE / "segmentation" / f"{a}.nii.gz") for a in ALGORITHMS]
    ens = qe_nb.open_ensemble(REAL, masks="{case}/segmentation/{algorithm}.nii.gz", labels="brats-regions")
    metrics = tuple(m for m in args.metrics.split(",") if m)
    scores = qe_nb.score(ens, fusion=args.fusion, metrics=metrics, n_jobs=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qe_nb.UnreliableThresholdWarning)  # a one-case reference
        model = fit(scores, 0.1)
    shape = read_five(paths)[0].shape
    print(f"qe_nb {qe_nb.__version__}; case {CASE}: {len(paths)} candidates of {shape[0]} x {shape[1]} x {shape[2]}; "
          f"model fitted on the case's own scores (fusion {model.fusion}, metrics {','.join(model.metrics)}, "
          f"{len(model.labels)} regions); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    assessed = model.assess(ens, cases=[CASE])  # warm-up (imports, caches)
    read_five(paths)
    read_times, assess_times, read_cpu, assess_cpu = [], [], [], []
    for _ in range(max(1, args.repeat)):
        t0, c0 = time.perf_counter(), time.process_time()
        read_five(paths)
        read_times.append(time.perf_counter() - t0)
        read_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        assessed = model.assess(ens, cases=[CASE])
        assess_times.append(time.perf_counter() - t0)
        assess_cpu.append(time.process_time() - c0)
    read_ms = 1000 * statistics.median(read_times)
    assess_ms = 1000 * statistics.median(assess_times)
    same = np.array_equal(assessed["similarity"].values, scores["similarity"].values, equal_nan=True)
    print(f"read   (SimpleITK, 5 files -> arrays)       median {read_ms:8.1f} ms  "
          f"(min {1000 * min(read_times):.1f}, max {1000 * max(read_times):.1f}, n={len(read_times)})")
    print(f"assess (model.assess of the case, in process)median {assess_ms:8.1f} ms  "
          f"(min {1000 * min(assess_times):.1f}, max {1000 * max(assess_times):.1f}, n={len(assess_times)})")
    print(f"ratio assess / read: {assess_ms / read_ms:.2f} (goal <= 1.5); risk {int(assessed['risk'].item())}, "
          f"similarity identical to qe_nb.score's: {same}")
    cpu_read, cpu_assess = (1000 * statistics.median(v) for v in (read_cpu, assess_cpu))
    print(f"process CPU time (less sensitive to other load on the machine): read {cpu_read:.1f} ms, assess "
          f"{cpu_assess:.1f} ms, ratio {cpu_assess / cpu_read:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark qe_nb's scoring side by side with the I/O floor, BraTS Toolkit and the metric peers.

Not part of the test suite; run by hand (see benchmarks/README.md)::

    python benchmarks/bench_scoring.py                       # everything
    python benchmarks/bench_scoring.py --part fusion,peers   # some parts
    python benchmarks/bench_scoring.py --cases 10 --scale-cases 200   # quicker

Parts (``--part``):

``io``      the I/O floor: SimpleITK reading the real case's five candidate files.
``fusion``  mav and SIMPLE: ``qe_nb.fuse`` vs BraTS Toolkit's ``Fusionator`` on the real case
            (its kernels ``_mav``/``_simple`` on the same arrays, and ``fuse()`` on the files),
            outputs compared voxel for voxel.
``score``   ``qe_nb.score`` of the real case (mav; Dice, HD95, HD on the three BraTS regions).
``chain``   the authors' chain on the same case: BraTS Toolkit's ``Fusionator.fuse(mav)`` on the
            files, then pymia's Dice and HD95 and SimpleITK's Hausdorff filter (DESIGN's ``hd``)
            on every fusion-candidate pair; values compared with ``score``'s.
``peers``   the metric kernels alone on every fusion-candidate pair of the real case: qe_nb,
            DeepMind's surface-distance, MedPy, SimpleITK's filters, pymia.
``cohort``  a BraTS-size synthetic cohort (``--cases``, default 68, 155 x 240 x 240): reading
            every file once vs ``qe_nb.score`` with all cores.
``scale``   ``--scale-cases`` (default 1000) small synthetic cases (48 x 64 x 64): time, cases
            per second, and peak memory (RSS) for 100 and for all cases, each in a fresh process.
``dask``    the same small cases through a ``LocalCluster`` of 2 workers and of 1 worker.

BraTS Toolkit (AGPL, heavy) is never imported here: the BraTS Toolkit parts run this same
file with ``--btk-worker`` under another interpreter that has it (``--btk-python``, default
``$QE_NB_BTK_PYTHON`` or ``/tmp/btk-venv/bin/python``), on the same files, and report their
timings and outputs back as JSON. Without it, those rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REAL = Path(os.environ.get("QE_NB_SHARED", REPO.parent / "shared")) / "data" / "brats-example"
CASE = "TCGA-DU-7294"
ALGORITHMS = ("hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20")
METRICS = ("dice", "hd95", "hd")
PARTS = ("io", "fusion", "score", "chain", "peers", "cohort", "scale", "dask")


# ---------------------------------------------------------------------------------------------
# BraTS Toolkit, in its own interpreter


def btk_worker(spec_file: str) -> None:
    """Run BraTS Toolkit's Fusionator on the files named in ``spec_file``; print JSON timings."""
    import contextlib
    import io
    import logging

    import numpy as np
    import SimpleITK as sitk
    from brats_toolkit.fusionator import Fusionator

    spec = json.loads(Path(spec_file).read_text())
    logging.disable(logging.CRITICAL)
    np.seterr(all="ignore")  # BraTS Toolkit divides by zero on empty masks
    quiet = contextlib.redirect_stdout(io.StringIO())  # it prints per label and iteration
    out: dict = {"version": "", "fuse": {}, "kernel": {}, "outputs": {}}
    from importlib.metadata import version

    out["version"] = version("brats-toolkit")
    with quiet:
        fusionator = Fusionator(verbose=False)
        arrays = [sitk.GetArrayFromImage(sitk.ReadImage(p)) for p in spec["paths"]]
        for method in spec["methods"]:
            target = str(Path(spec["out"]) / f"btk-{method}.nii.gz")
            times = []
            for _ in range(spec["repeat_files"]):
                t0 = time.perf_counter()
                fusionator.fuse(spec["paths"], target, method=method)
                times.append(time.perf_counter() - t0)
            out["fuse"][method] = times
            out["outputs"][method] = target
            kernel = {"mav": fusionator._mav, "simple": fusionator._simple}[method]
            times = []
            for _ in range(spec["repeat_kernel"]):
                t0 = time.perf_counter()
                kernel(list(arrays), weights=[1] * len(arrays))
                times.append(time.perf_counter() - t0)
            out["kernel"][method] = times
    print("BTK-JSON " + json.dumps(out))


def run_btk(args, paths: list[str], methods: list[str], workdir: Path) -> dict | None:
    python = args.btk_python
    if not python or not Path(python).exists():
        print(f"  (BraTS Toolkit skipped: no interpreter at {python!r}; see benchmarks/README.md)")
        return None
    spec = {"paths": paths, "methods": methods, "out": str(workdir), "repeat_files": args.repeat,
            "repeat_kernel": max(1, args.repeat)}
    spec_file = workdir / "btk-spec.json"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ)
    if args.btk_path:
        env["PYTHONPATH"] = os.pathsep.join([args.btk_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([python, __file__, "--btk-worker", str(spec_file)], capture_output=True,
                          text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BTK-JSON ")]
    if proc.returncode or not lines:
        print(f"  (BraTS Toolkit failed, exit {proc.returncode}: {proc.stderr.strip()[-500:]})")
        return None
    return json.loads(lines[-1][len("BTK-JSON "):])


# ---------------------------------------------------------------------------------------------
# helpers


def timed(fn, repeat: int):
    """(median seconds, last result) of ``repeat`` calls."""
    times, result = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def row(name: str, seconds: float, *, base: float | None = None, note: str = "") -> None:
    ratio = f"{seconds / base:8.2f}x" if base else " " * 9
    print(f"  {name:<52s} {seconds * 1000:11.1f} ms {ratio}  {note}")


def real_paths() -> list[str]:
    return [str(REAL / CASE / "segmentation" / f"{a}.nii.gz") for a in ALGORITHMS]


def real_ensemble():
    import qe_nb

    return qe_nb.open_ensemble(REAL, masks="{case}/segmentation/{algorithm}.nii.gz",
                               labels="brats-regions")


def read_maps(paths):
    import numpy as np
    import SimpleITK as sitk

    return np.stack([sitk.GetArrayFromImage(sitk.ReadImage(p)) for p in paths])


def synthetic(workdir: Path, n: int, shape: tuple[int, int, int]):
    """A synthetic glioma cohort, generated once into ``workdir`` and reused."""
    import qe_nb
    from qe_nb.data import synth

    root = workdir / f"glioma-{n}-{'x'.join(map(str, shape))}"
    marker = root / "cohort.json"
    if marker.is_file():
        params = json.loads(marker.read_text())
        if params["n_cases"] == n and tuple(params["shape"]) == shape and params["seed"] == 0:
            return qe_nb.open_ensemble(root, masks=synth.MASKS, reference=synth.REFERENCE,
                                       labels=params["labels"])
    t0 = time.perf_counter()
    ens = qe_nb.synthetic_cohort(root, n_cases=n, shape=shape, images=False, seed=0, overwrite=True)
    print(f"  (generated {n} synthetic cases {shape} in {time.perf_counter() - t0:.0f} s: {root})")
    return ens


def cohort_files(ens) -> list[str]:
    import numpy as np

    files = [str(p) for p in np.asarray(ens["mask"].values).ravel() if str(p)]
    if "reference" in ens:
        files += [str(p) for p in ens["reference"].values if str(p)]
    return files


def read_all(files) -> None:
    import SimpleITK as sitk

    for p in files:
        sitk.ReadImage(p)


# ---------------------------------------------------------------------------------------------
# parts


def part_io(args, state):
    _, _ = timed(lambda: read_all(real_paths()), args.repeat)
    t, _ = timed(lambda: read_all(real_paths()), args.repeat)
    state["io_real"] = t
    row("SimpleITK reads the 5 candidate files", t, note="(the I/O floor of one case)")


def part_fusion(args, state):
    import numpy as np
    import SimpleITK as sitk

    import qe_nb

    maps = read_maps(real_paths())
    btk = run_btk(args, real_paths(), ["mav", "simple"], state["tmp"])
    state["btk"] = btk
    for method in ("mav", "simple"):
        t, ours = timed(lambda m=method: qe_nb.fuse(maps, method=m), args.repeat)
        state[f"fuse_{method}"] = t
        shipped = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL / CASE / "fusion-brats-toolkit" / f"{method}.nii.gz")))
        row(f"qe_nb.fuse(method={method!r}) on arrays", t,
            note=f"identical to the shipped BraTS Toolkit file: {np.array_equal(ours, shipped)}")
        if btk:
            kernel = statistics.median(btk["kernel"][method])
            files = statistics.median(btk["fuse"][method])
            live = sitk.GetArrayFromImage(sitk.ReadImage(btk["outputs"][method]))
            state[f"btk_kernel_{method}"] = kernel
            state[f"btk_fuse_{method}"] = files
            state[f"btk_identical_{method}"] = bool(np.array_equal(ours, live))
            row(f"BraTS Toolkit Fusionator._{method} on arrays", kernel, base=t,
                note=f"identical voxels: {np.array_equal(ours, live)} ({int((ours != live).sum())} differ)")
            row(f"BraTS Toolkit Fusionator.fuse({method!r}) files->file", files, base=t)


def part_score(args, state):
    import qe_nb

    ens = real_ensemble()
    qe_nb.score(ens, metrics=METRICS, n_jobs=1, progress=False)  # warm imports
    t, scores = timed(lambda: qe_nb.score(ens, metrics=METRICS, n_jobs=1, progress=False), args.repeat)
    state["score_real"] = t
    state["scores_real"] = scores
    base = state.get("io_real")
    row("qe_nb.score: 1 case, read+mav+Dice/HD95/HD x 3 regions", t, base=base,
        note="(ratio to the I/O floor)" if base else "")


def _pymia():
    """pymia's evaluator and metrics; pymia 0.3 calls ``np.in1d``, which numpy 2.4 removed."""
    import numpy as np
    from pymia.evaluation import evaluator, metric

    if not hasattr(np, "in1d"):
        np.in1d = lambda a, b, assume_unique=False: np.isin(a, b, assume_unique=assume_unique)  # noqa: NPY201
    return evaluator, metric


def _region_masks(label_map):
    import qe_nb

    return qe_nb.structure_masks(label_map, "brats-regions")


def part_chain(args, state):
    import warnings

    import numpy as np
    import SimpleITK as sitk

    import qe_nb

    pe, pm = _pymia()
    btk = state.get("btk") or run_btk(args, real_paths(), ["mav"], state["tmp"])
    if "scores_real" not in state:
        part_score(args, state)
    scores = state["scores_real"]["similarity"].sel(case=CASE)
    if not btk:
        return
    fused_file = btk["outputs"]["mav"]
    regions = ("whole_tumor", "tumor_core", "enhancing_tumor")

    def metrics_chain():
        fused = _region_masks(sitk.GetArrayFromImage(sitk.ReadImage(fused_file)))
        values = {}
        evaluator = pe.SegmentationEvaluator([pm.DiceCoefficient(), pm.HausdorffDistance(95, "HDRFDST95")],
                                             {1: "region"})
        hd_filter = sitk.HausdorffDistanceImageFilter()
        for a, path in zip(ALGORITHMS, real_paths()):
            cand = _region_masks(sitk.GetArrayFromImage(sitk.ReadImage(path)))
            for j, region in enumerate(regions):
                f, c = fused[j], cand[j]
                evaluator.clear()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    evaluator.evaluate(c.astype(np.uint8), f.astype(np.uint8), f"{a}/{region}")
                got = {r.metric: r.value for r in evaluator.results}
                if f.any() and c.any():
                    hd_filter.Execute(sitk.GetImageFromArray(f.astype(np.uint8)),
                                      sitk.GetImageFromArray(c.astype(np.uint8)))
                    hd = hd_filter.GetHausdorffDistance()
                else:
                    hd = 0.0 if not (f.any() or c.any()) else np.inf
                values[a, region] = (got["DICE"], got["HDRFDST95"], hd)
        return values

    t_metrics, values = timed(metrics_chain, args.repeat)
    t_fuse = statistics.median(btk["fuse"]["mav"])
    total = t_fuse + t_metrics
    state["chain_real"] = total
    diffs = {m: 0.0 for m in METRICS}
    mismatches = 0
    for (a, region), vals in values.items():
        for m, theirs in zip(METRICS, vals):
            ours = float(scores.sel(algorithm=a, label=region, metric=m))
            if np.isfinite(ours) and np.isfinite(theirs):
                diffs[m] = max(diffs[m], abs(ours - theirs))
            elif not (np.isinf(ours) and np.isinf(theirs)) and not (m == "dice"):
                # pymia: HD95 of two empty masks is inf (qe_nb: 0 by the BraTS rule)
                mismatches += not (ours == 0.0 and np.isinf(theirs))
    state["chain_diffs"] = diffs
    ours_t = state["score_real"]
    row("authors' chain: BTK fuse(mav) files + pymia Dice/HD95 + SITK HD", total, base=ours_t,
        note=f"(ratio to qe_nb.score) BTK fuse {t_fuse * 1000:.0f} ms + metrics {t_metrics * 1000:.0f} ms")
    print(f"    values vs qe_nb.score over {len(values)} pairs: max |diff| "
          + ", ".join(f"{m} {d:.2e}" for m, d in diffs.items())
          + f"; both-empty pairs: pymia HD95 inf vs qe_nb 0 (BraTS rule); other mismatches {mismatches}")
    del qe_nb


def part_peers(args, state):
    import warnings

    import numpy as np
    import SimpleITK as sitk

    import qe_nb
    from qe_nb.core.metrics import compute_metrics_many

    maps = read_maps(real_paths())
    fused = _region_masks(qe_nb.fuse(maps, method="mav"))
    cands = np.stack([_region_masks(m) for m in maps])  # (algorithm, region, z, y, x)
    pairs = [(j, i) for j in range(fused.shape[0]) for i in range(cands.shape[0])
             if fused[j].any() and cands[i, j].any()]
    n_pairs = len(pairs)
    spacing = (1.0, 1.0, 1.0)
    regions = sorted({j for j, _ in pairs})

    def ours():
        out = {}
        for j in regions:
            idx = [i for jj, i in pairs if jj == j]
            vals = compute_metrics_many(fused[j], cands[idx, j], METRICS, spacing=spacing)
            out.update({(j, i): v for i, v in zip(idx, vals)})
        return out

    t_ours, v_ours = timed(ours, args.repeat)
    state["peers_ours"] = t_ours
    row(f"qe_nb compute_metrics_many: Dice+HD95+HD, {n_pairs} pairs", t_ours,
        note=f"({len(pairs)} of {fused.shape[0] * cands.shape[0]} pairs where both masks are non-empty)")

    peers = {}
    try:
        import surface_distance as sd

        def sd_run():
            out = {}
            for j, i in pairs:
                d = sd.compute_surface_distances(fused[j], cands[i, j], spacing)
                out[j, i] = (sd.compute_dice_coefficient(fused[j], cands[i, j]),
                             sd.compute_robust_hausdorff(d, 95), sd.compute_robust_hausdorff(d, 100))
            return out

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peers["surface-distance (Dice, HD95, its HD100)"] = timed(sd_run, args.repeat)
    except ImportError:
        print("  (surface-distance not installed: pip install 'qe-nb[compare]')")
    try:
        from medpy.metric import binary as mb

        def medpy_run():
            return {(j, i): (mb.dc(cands[i, j], fused[j]), mb.hd95(cands[i, j], fused[j], spacing),
                             mb.hd(cands[i, j], fused[j], spacing)) for j, i in pairs}

        peers["MedPy (dc, hd95, hd)"] = timed(medpy_run, args.repeat)
    except ImportError:
        print("  (MedPy not installed)")

    def sitk_run():
        out = {}
        overlap, hd = sitk.LabelOverlapMeasuresImageFilter(), sitk.HausdorffDistanceImageFilter()
        for j, i in pairs:
            f = sitk.GetImageFromArray(fused[j].astype(np.uint8))
            c = sitk.GetImageFromArray(cands[i, j].astype(np.uint8))
            overlap.Execute(f, c)
            hd.Execute(f, c)
            out[j, i] = (overlap.GetDiceCoefficient(), np.nan, hd.GetHausdorffDistance())
        return out

    peers["SimpleITK (LabelOverlapMeasures, HausdorffDistance)"] = timed(sitk_run, args.repeat)
    try:
        pe, pm = _pymia()

        def pymia_run():
            ev = pe.SegmentationEvaluator([pm.DiceCoefficient(), pm.HausdorffDistance(95, "HD95"),
                                           pm.HausdorffDistance(100, "HD")], {1: "region"})
            out = {}
            for j, i in pairs:
                ev.clear()
                ev.evaluate(cands[i, j].astype(np.uint8), fused[j].astype(np.uint8), "x")
                got = {r.metric: r.value for r in ev.results}
                out[j, i] = (got["DICE"], got["HD95"], got["HD"])
            return out

        peers["pymia (Dice, HD95, its HD100)"] = timed(pymia_run, args.repeat)
    except ImportError:
        print("  (pymia not installed)")

    for name, (t, values) in peers.items():
        diffs = []
        for k, m in enumerate(METRICS):
            d = max(abs(v_ours[p][k] - values[p][k]) for p in pairs)
            diffs.append(f"{m} {d:.2e}" if np.isfinite(d) else f"{m} n/a")
        if name.startswith("surface-distance"):
            state["peers_sd"] = t
            state["peers_sd_diff"] = (max(abs(v_ours[p][0] - values[p][0]) for p in pairs),
                                      max(abs(v_ours[p][1] - values[p][1]) for p in pairs))
        row(name, t, base=t_ours, note="max |diff| vs qe_nb: " + ", ".join(diffs))
    print("    (HD: qe_nb's hd is the exact voxel-set Hausdorff = SimpleITK's filter; surface-distance,"
          " MedPy and pymia\n     take theirs between surfaces and overestimate when one mask lies"
          " inside the other; DESIGN s2)")
    try:
        from medpy.metric import binary as mb

        d = max(abs(compute_metrics_many(fused[j], cands[[i], j], ["hd95_medpy"], spacing=spacing)[0, 0]
                    - mb.hd95(cands[i, j], fused[j], spacing)) for j, i in pairs)
        print(f"    qe_nb hd95_medpy vs medpy.metric.binary.hd95: max |diff| {d:.2e}")
    except ImportError:
        pass


def part_cohort(args, state):
    import qe_nb

    shape = (155, 240, 240)
    ens = synthetic(args.workdir, args.cases, shape)
    files = cohort_files(ens)
    # Warm SimpleITK and the page cache with every file: the floor is reading from memory,
    # the strictest one.
    read_all(files)
    t_io, _ = timed(lambda: read_all(files), 1)
    t0 = time.perf_counter()
    scores = qe_nb.score(ens, metrics=METRICS, progress=False)
    t_score = time.perf_counter() - t0
    t_io2, _ = timed(lambda: read_all(files), 1)
    io = min(t_io, t_io2)
    state["cohort_io"], state["cohort_score"] = io, t_score
    n = ens.sizes["case"]
    row(f"SimpleITK reads all {len(files)} files of {n} cases {shape}", io,
        note=f"{io / n * 1000:.0f} ms per case")
    row(f"qe_nb.score, {n} cases, all {os.cpu_count()} cores", t_score, base=io,
        note=f"(ratio to the I/O floor) {t_score / n * 1000:.0f} ms per case; "
             f"failed cases {scores.attrs['n_failed_cases']}; similarity, quality, candidate_quality")
    # Where the time goes: the same run without the reference (the run-time job: 15 pairs
    # per case instead of 33), and with Dice alone (reading, fusion and masks, no distances).
    for what, cohort, metrics in (
        ("without the reference (similarity only)", ens.drop_vars("reference"), METRICS),
        ("with Dice alone (no distances)", ens, ("dice",)),
    ):
        t0 = time.perf_counter()
        qe_nb.score(cohort, metrics=metrics, progress=False)
        t = time.perf_counter() - t0
        row(f"  the same {what}", t, base=io, note=f"{t / n * 1000:.0f} ms per case")


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident memory (MB) of a live process: ``VmHWM`` from ``/proc`` (Linux), or None.

    Not ``getrusage``: Linux carries a process's ``ru_maxrss`` across ``exec`` from the forked
    copy of its parent, so a fresh interpreter started by a big process reports the parent's
    size. ``VmHWM`` belongs to the process's own address space.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_worker(root: str, n: int) -> None:
    """Score the first ``n`` cases of a cohort; print the peak RSS of this process and of its
    largest worker process (sampled every 50 ms while they live)."""
    import multiprocessing
    import threading

    import qe_nb
    from qe_nb.data import synth

    params = json.loads((Path(root) / "cohort.json").read_text())
    ens = qe_nb.open_ensemble(root, masks=synth.MASKS, reference=synth.REFERENCE, labels=params["labels"])
    ens = ens.isel(case=slice(0, n))
    workers: dict[int, float] = {}
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            for proc in multiprocessing.active_children():
                peak = peak_rss_mb(proc.pid)
                if peak is not None:
                    workers[proc.pid] = max(workers.get(proc.pid, 0.0), peak)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    scores = qe_nb.score(ens, metrics=METRICS, progress=False)
    t = time.perf_counter() - t0
    done.set()
    sampler.join()
    print("RSS-JSON " + json.dumps({"seconds": t, "main_mb": peak_rss_mb(), "n_workers": len(workers),
                                    "child_mb": max(workers.values(), default=0.0),
                                    "n": int(scores.sizes["case"]), "failed": scores.attrs["n_failed_cases"]}))


def part_scale(args, state):
    shape = (48, 64, 64)
    ens = synthetic(args.workdir, args.scale_cases, shape)
    root = str(ens.attrs["root"])
    for n in sorted({min(100, args.scale_cases), args.scale_cases}):
        proc = subprocess.run([sys.executable, __file__, "--rss-worker", root, str(n)],
                              capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RSS-JSON ")]
        if not lines:
            print(f"  (scale run of {n} cases failed: {proc.stderr.strip()[-500:]})")
            continue
        r = json.loads(lines[-1][len("RSS-JSON "):])
        state[f"scale_{n}"] = r
        row(f"qe_nb.score, {n} cases {shape}, all cores (fresh process)", r["seconds"],
            note=f"{n / r['seconds']:.1f} cases/s; peak RSS main {r['main_mb']:.0f} MB, "
                 f"largest of {r['n_workers']} workers {r['child_mb']:.0f} MB; failed {r['failed']}")


def part_dask(args, state):
    from dask.distributed import Client, LocalCluster

    import qe_nb

    ens = synthetic(args.workdir, args.scale_cases, (48, 64, 64))
    rates = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=50) as cluster, Client(cluster) as client:
            client.run(lambda: __import__("qe_nb.scoring") and None)  # import once before timing
            t0 = time.perf_counter()
            scores = qe_nb.score(ens, metrics=METRICS, client=client, progress=False)
            t = time.perf_counter() - t0
        n = scores.sizes["case"]
        rates[workers] = n / t
        row(f"LocalCluster {workers} worker(s) x 1 thread, {n} cases", t,
            note=f"{n / t:.1f} cases/s; failed {scores.attrs['n_failed_cases']}")
    state["dask_rates"] = rates
    print(f"    speed-up of 2 workers over 1: {rates[2] / rates[1]:.2f}x (on {os.cpu_count()} cores)")


# ---------------------------------------------------------------------------------------------


def goals(state) -> None:
    print("\nGoals (ratios from this run)")

    def line(text, ok):
        print(f"  [{'met' if ok else 'NOT met' if ok is not None else 'n/a'}] {text}")

    if "btk_kernel_simple" in state:
        r = state["btk_kernel_simple"] / state["fuse_simple"]
        line(f"SIMPLE >= 50x faster than BraTS Toolkit's _simple, identical: {r:.0f}x, "
             f"identical {state['btk_identical_simple']}", r >= 50 and state["btk_identical_simple"])
    if "chain_real" in state:
        r = state["chain_real"] / state["score_real"]
        d = state["chain_diffs"]
        line(f"scoring >= 20x faster per case than BraTS Toolkit + pymia/SimpleITK: {r:.1f}x; max |diff| "
             + ", ".join(f"{m} {v:.1e}" for m, v in d.items()), r >= 20 and max(d.values()) <= 1e-6)
    if "peers_sd" in state:
        r = state["peers_sd"] / state["peers_ours"]
        dd, dh = state["peers_sd_diff"]
        line(f"Dice+HD95+HD of all pairs >= 2x faster than surface-distance: {r:.1f}x; max |diff| dice "
             f"{dd:.1e}, hd95 {dh:.1e}", r >= 2 and dd <= 1e-12 and dh <= 1e-6)
    if "cohort_score" in state:
        r = state["cohort_score"] / state["cohort_io"]
        line(f"synthetic BraTS-size cohort scored in <= 2x its read time: {r:.2f}x", r <= 2)
    runs = sorted((state[k] for k in state if k.startswith("scale_")), key=lambda r: r["n"])
    if len(runs) == 2:
        # Per process: the cohort must not pile up in any of them. (A short cohort is scored
        # in the main process alone, a long one in workers: their sum depends on the workers.)
        a, b = runs
        largest = [max(r["main_mb"], r["child_mb"]) for r in runs]
        line(f"peak RSS independent of cases: largest process {largest[0]:.0f} MB ({a['n']} cases: "
             f"main {a['main_mb']:.0f}, {a['n_workers']} workers {a['child_mb']:.0f}) vs {largest[1]:.0f} MB "
             f"({b['n']} cases: main {b['main_mb']:.0f}, {b['n_workers']} workers {b['child_mb']:.0f} each)",
             largest[1] <= 1.25 * largest[0] and b["main_mb"] <= 1.25 * a["main_mb"])
    if "dask_rates" in state:
        r = state["dask_rates"]
        line(f"LocalCluster of 2 workers: {r[2]:.1f} cases/s, {r[2] / r[1]:.2f}x one worker", None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    p.add_argument("--cases", type=int, default=68, help="cases of the BraTS-size cohort (default 68)")
    p.add_argument("--scale-cases", type=int, default=1000, help="small cases of the scale runs (default 1000)")
    p.add_argument("--repeat", type=int, default=3, help="repeats per timing; medians are shown (default 3)")
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("QE_NB_BENCH_DIR", Path(tempfile.gettempdir()) / "qe-nb-bench")),
                   help="where synthetic cohorts are generated once and reused")
    p.add_argument("--btk-python", default=os.environ.get("QE_NB_BTK_PYTHON", "/tmp/btk-venv/bin/python"),
                   help="an interpreter that can import brats_toolkit")
    p.add_argument("--btk-path", default=os.environ.get("QE_NB_BTK_PATH", ""),
                   help="extra PYTHONPATH for that interpreter (optional)")
    p.add_argument("--btk-worker", help=argparse.SUPPRESS)
    p.add_argument("--rss-worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.btk_worker:
        btk_worker(args.btk_worker)
        return 0
    if args.rss_worker:
        rss_worker(args.rss_worker[0], int(args.rss_worker[1]))
        return 0
    parts = [s.strip() for s in args.part.split(",") if s.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {unknown}; expected some of {list(PARTS)}")
    import platform

    import numpy as np

    import qe_nb

    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"qe_nb {qe_nb.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; medians of {args.repeat}")
    print(f"real case: {REAL / CASE} (5 candidates, 155 x 240 x 240)\n")
    print(f"  {'what':<52s} {'time':>14s} {'ratio':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        state: dict = {"tmp": Path(tmp)}
        for part in PARTS:
            if part in parts:
                if part in ("io", "fusion", "score", "chain", "peers") and not (REAL / CASE).is_dir():
                    print(f"[{part}] skipped: {REAL} is absent")
                    continue
                print(f"[{part}]")
                globals()[f"part_{part}"](args, state)
        goals(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())

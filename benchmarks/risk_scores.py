"""Every ground-truth-free risk score on every cohort at hand, measured against independent references.

Not part of the test suite; run by hand (several minutes on two cores; the synthetic cohorts
are written once to ``--workdir`` and reused)::

    python benchmarks/risk_scores.py
    python benchmarks/risk_scores.py --lidc ~/.cache/qe_nb/lidc-idri-readers   # all 897 nodules
    python benchmarks/risk_scores.py --n-boot 200 --csv /tmp/risk.csv          # quicker, and saved

Cohorts (all fused by majority vote, scored with Dice and HD95, ``pairwise=True`` and
``staple_performance=True`` so that every score of :func:`qe_nb.risk_scores` exists):

``bubil-crowd``    BU-BIL fibroblasts, 47 real phase-contrast images x 7 crowd workers, against
                   the gold standard (``../shared/data/bu-bil-fibroblasts``; skipped if absent).
``bubil-experts``  the same images x 10 expert segmentations, against the gold standard.
``cells``          synthetic 2-D cells (``synthetic_cohort(kind="cells")``), 60 images of
                   256 x 256 px x 7 crowd-like workers, against their ground truth.
``glioma``         synthetic glioma, 68 cases x 5 algorithms on (64, 80, 64) voxels (the size of
                   the paper's MR experiment, volumes as in notebook 04), BraTS regions.
``lung``           synthetic lung CT, 46 cases x 3 algorithms on (32, 96, 112) voxels (the size
                   of the paper's CT experiment).
``lidc``           LIDC-IDRI nodules x 4 radiologists (``--lidc``: a ``lidc-idri-readers``
                   build; default the committed 120-nodule subset). There is no independent
                   reference: agreement among the readers is what every score is built from, so
                   it cannot also judge them. Only which nodules and readers are flagged is shown.

Every score is evaluated with :func:`qe_nb.evaluate_risk` at case level (does the score find
the cases whose *fusion* is worst?) and candidate level (does it find the *member* whose
segmentation is worst?): AUROC for the worst quarter and Spearman's rho against the true Dice,
with 95 % bootstrap intervals over cases. The two alpha-dependent scores (``alarm_count``,
``soft_count``) are shown at the paper's hand-picked alpha = 0.1 and at the alpha that
maximises the entropy of the alarm counts (:func:`qe_nb.calibrate`, no ground truth); alpha is
never tuned on the truth. Threshold pooling follows one rule fixed in advance, not tuned:
``pool="algorithm"`` where a member is the same rater or algorithm in every case (synthetic
cohorts, BU-BIL experts), ``pool="all"`` where a member slot is not (BU-BIL crowd workers,
LIDC readers). On BU-BIL the script also compares ``pool="all"`` with ``pool="algorithm"`` and
``similarity="leave-one-out"`` with the full fusion, and times the scoring per image.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import xarray as xr

import qe_nb

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QE_NB_SHARED", REPO.parent / "shared"))
BUBIL = SHARED / "data" / "bu-bil-fibroblasts"
LIDC_SUBSET = REPO / "notebooks" / "data" / "lidc-idri-readers-subset"
PAPER_ALPHA = 0.1
METRICS = ("dice", "hd95")
ALPHA_SCORES = ("alarm_count", "soft_count")


# --------------------------------------------------------------------------- scoring


def score_cohort(ensemble: xr.Dataset, *, n_jobs: int, similarity: str = "fusion") -> xr.Dataset:
    """Score with everything the risk scores need (pairwise, volumes, STAPLE)."""
    scores = qe_nb.score(ensemble, fusion="mav", metrics=METRICS, n_jobs=n_jobs, progress=False,
                         similarity=similarity, pairwise=True, staple_performance=True)
    failed = [f"{c}: {e}" for c, e in zip(scores["case"].values, scores["error"].values) if e]
    if failed:  # left out of the evaluation (NaN); say so rather than shrink n silently
        print(f"WARNING {len(failed)} case(s) of {ensemble.attrs.get('root')} could not be scored, e.g. "
              f"{failed[0]}", flush=True)
    return scores


def entropy_alpha(scores: xr.Dataset, pool: str) -> float:
    """The alpha maximising the entropy of the case alarm counts: needs no ground truth."""
    return float(qe_nb.calibrate(scores["similarity"], objective="entropy", pool=pool))


def all_risk_scores(scores: xr.Dataset, *, level: str, pool: str, alpha_entropy: float) -> xr.Dataset:
    """Every score at alpha 0.1, plus the alpha-dependent ones at the entropy alpha."""
    at_paper = qe_nb.risk_scores(scores, alpha=PAPER_ALPHA, level=level, pool=pool)
    at_entropy = qe_nb.risk_scores(scores, alpha=alpha_entropy, level=level, pool=pool)
    out = {}
    for name, variable in at_paper.data_vars.items():
        if name in ALPHA_SCORES:
            out[f"{name} (a=0.1)"] = variable
            out[f"{name} (a=entropy)"] = at_entropy[name]
        else:
            out[name] = variable
    return xr.Dataset(out, attrs={"level": level})


def evaluate(scores: xr.Dataset, *, cohort: str, pool: str, n_boot: int, extra: dict | None = None) -> pd.DataFrame:
    """Long table: one row per (cohort, level, score) with AUROC and rho and their CIs."""
    a_entropy = entropy_alpha(scores, pool)
    rows = []
    for level in ("case", "candidate"):
        risk = all_risk_scores(scores, level=level, pool=pool, alpha_entropy=a_entropy)
        table = qe_nb.evaluate_risk(risk, scores, level=level, n_boot=n_boot, seed=0)
        for name in risk.data_vars:
            auroc, rho = table.loc[(name, "auroc")], table.loc[(name, "spearman_rho")]
            rows.append({
                "cohort": cohort, "level": level, "score": name, "pool": pool,
                "alpha_entropy": a_entropy, "n": int(auroc["n"]),
                "auroc": auroc["value"], "auroc_low": auroc["ci_low"], "auroc_high": auroc["ci_high"],
                "rho": rho["value"], "rho_low": rho["ci_low"], "rho_high": rho["ci_high"],
                **(extra or {}),
            })
    return pd.DataFrame(rows)


def ci(value: float, low: float, high: float) -> str:
    return f"{value:5.2f} [{low:5.2f}, {high:5.2f}]"


def show(table: pd.DataFrame, columns: list[str]) -> str:
    view = table.assign(
        AUROC=[ci(*r) for r in table[["auroc", "auroc_low", "auroc_high"]].to_numpy()],
        rho=[ci(*r) for r in table[["rho", "rho_low", "rho_high"]].to_numpy()],
    )
    if "alpha_entropy" in view:
        view["alpha_entropy"] = view["alpha_entropy"].round(2)
    return view[columns + ["AUROC", "rho"]].to_string(index=False)


def summary(table: pd.DataFrame) -> str:
    """Per cohort and level: the best score by AUROC and by rho, beside the paper's alarm count."""
    rows = []
    for (cohort, level), part in table.groupby(["cohort", "level"], sort=False):
        paper = part[part["score"] == "alarm_count (a=0.1)"].iloc[0]
        best_auroc = part.loc[part["auroc"].idxmax()]
        best_rho = part.loc[part["rho"].idxmin()]
        rows.append({
            "cohort": cohort, "level": level,
            "alarm_count (a=0.1)": f"{paper['auroc']:.2f} / {paper['rho']:.2f}",
            "rank of alarm count by AUROC": f"{int((part['auroc'] > paper['auroc']).sum()) + 1} of {len(part)}",
            "best AUROC": f"{best_auroc['score']} {best_auroc['auroc']:.2f}",
            "best rho": f"{best_rho['score']} {best_rho['rho']:.2f}",
        })
    return pd.DataFrame(rows).to_string(index=False)


# --------------------------------------------------------------------------- cohorts


def synthetic(workdir: Path, kind: str, **kw) -> xr.Dataset:
    """Write (once) and open a synthetic cohort; reused when its cohort.json is there."""
    return qe_nb.synthetic_cohort(workdir / kind, kind=kind, images=False, seed=0, **kw)


SYNTHETIC = {
    "cells": {"n_cases": 60, "n_algorithms": 7, "shape": (256, 256)},
    "glioma": {"n_cases": 68, "n_algorithms": 5, "shape": (64, 80, 64)},
    "lung": {"n_cases": 46, "n_algorithms": 3, "shape": (32, 96, 112)},
}
POOL = {"bubil-crowd": "all", "bubil-experts": "algorithm", "cells": "algorithm", "glioma": "algorithm",
        "lung": "algorithm", "lidc": "all"}


def time_per_image(ensemble: xr.Dataset) -> dict[str, float]:
    """Seconds per BU-BIL image in this process (n_jobs=1): plain scoring and with every extra."""
    n = ensemble.sizes["case"]
    out = {}
    for label, kw in (("dice+hd95", {}), ("+pairwise+STAPLE", {"pairwise": True, "staple_performance": True})):
        start = time.perf_counter()
        qe_nb.score(ensemble, fusion="mav", metrics=METRICS, n_jobs=1, progress=False, **kw)
        out[label] = (time.perf_counter() - start) / n
    return out


def bubil_variants(ensemble: xr.Dataset, full: xr.Dataset, *, cohort: str, n_jobs: int, n_boot: int) -> pd.DataFrame:
    """pool="all" vs "algorithm", and leave-one-out vs the full fusion, for the alpha scores."""
    loo = score_cohort(ensemble, n_jobs=n_jobs, similarity="leave-one-out")
    parts = []
    for mode, scores in (("fusion", full), ("leave-one-out", loo)):
        for pool in ("algorithm", "all"):
            table = evaluate(scores, cohort=cohort, pool=pool, n_boot=n_boot, extra={"similarity": mode})
            keep = table["score"].str.startswith(ALPHA_SCORES) | (table["score"] == "mean_similarity")
            parts.append(table[keep])
    return pd.concat(parts, ignore_index=True)


def lidc_report(folder: Path, *, n_jobs: int) -> str:
    """Which nodules and readers are flagged; no accuracy, since there is no independent reference."""
    ensemble = qe_nb.open_ensemble(folder, masks="{case}/{algorithm}.nii.gz", labels="binary")
    start = time.perf_counter()
    scores = score_cohort(ensemble, n_jobs=n_jobs)
    seconds = time.perf_counter() - start
    pool = POOL["lidc"]
    a_entropy = entropy_alpha(scores, pool)
    case = qe_nb.risk_scores(scores, alpha=PAPER_ALPHA, level="case", pool=pool).to_dataframe()
    cand = qe_nb.risk_scores(scores, alpha=PAPER_ALPHA, level="candidate", pool=pool)
    case_e = qe_nb.risk_scores(scores, alpha=a_entropy, level="case", pool=pool)
    n = len(case)
    lines = [
        f"LIDC-IDRI readers: {n} nodules x {ensemble.sizes['algorithm']} readers from {folder.name} "
        f"(scored in {seconds:.0f} s), pool='all' (reader-1 is not the same radiologist in every nodule).",
        "No independent reference: the scores are built from the readers' agreement, so that agreement "
        "cannot also judge them. Shown: what is flagged, not whether the flags are right.",
        f"alpha: 0.1 (paper) and {a_entropy:.2f} (entropy, no ground truth).",
        "alarm count per nodule (alpha 0.1): "
        + ", ".join(f"{int(k)}: {v}" for k, v in case["alarm_count"].value_counts().sort_index().items()),
        "alarm count per nodule (entropy alpha): "
        + ", ".join(f"{int(k)}: {v}" for k, v in
                    case_e["alarm_count"].to_series().value_counts().sort_index().items()),
    ]
    flagged_readers = (cand["alarm_count"] > 0).sum("algorithm").to_series()
    lines.append("readers with at least one alarm per nodule (alpha 0.1): "
                 + ", ".join(f"{int(k)}: {v}" for k, v in flagged_readers.value_counts().sort_index().items()))
    top = case.sort_values(["alarm_count", "soft_count"], ascending=False).head(10)
    worst_reader = cand["soft_count"].idxmax("algorithm").to_series()
    top = top.assign(most_flagged_reader=worst_reader.loc[top.index])
    lines.append("the ten most flagged nodules (alpha 0.1):")
    lines.append(top.round(3).to_string())
    rank = case.drop(columns=[c for c in case.columns if case[c].nunique() <= 1]).corr(method="spearman")
    lines.append("how the scores agree with each other (Spearman, case level; agreement, not accuracy):")
    lines.append(rank.round(2).to_string())
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        default=Path(os.environ.get("QE_NB_BENCH_DIR", Path(tempfile.gettempdir()) / "qe-nb-bench"))
                        / "risk-scores")
    parser.add_argument("--lidc", type=Path, default=LIDC_SUBSET, help="a lidc-idri-readers build (or the subset)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--csv", type=Path, help="also write the long table here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", qe_nb.UndefinedValueWarning)
    pd.set_option("display.width", 220)
    tables, variants = [], []
    started = time.perf_counter()

    if BUBIL.is_dir():
        for cohort, name in (("bubil-crowd", "bu-bil-fibroblasts-crowd"), ("bubil-experts", "bu-bil-fibroblasts-experts")):
            ensemble = qe_nb.open_dataset(name)
            per_image = time_per_image(ensemble)
            print(f"{cohort}: seconds per 1030 x 1300 image (1 process): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in per_image.items()), flush=True)
            scores = score_cohort(ensemble, n_jobs=args.n_jobs)
            tables.append(evaluate(scores, cohort=cohort, pool=POOL[cohort], n_boot=args.n_boot))
            variants.append(bubil_variants(ensemble, scores, cohort=cohort, n_jobs=args.n_jobs, n_boot=args.n_boot))
    else:
        print(f"BU-BIL is not at {BUBIL} (set QE_NB_SHARED): its rows are skipped.")

    for kind, kw in SYNTHETIC.items():
        start = time.perf_counter()
        scores = score_cohort(synthetic(args.workdir, kind, **kw), n_jobs=args.n_jobs)
        print(f"{kind}: {kw} scored in {time.perf_counter() - start:.0f} s", flush=True)
        tables.append(evaluate(scores, cohort=kind, pool=POOL[kind], n_boot=args.n_boot))

    table = pd.concat(tables, ignore_index=True)
    print()
    print(f"AUROC (worst quarter vs the rest) and Spearman rho (score vs true Dice), 95 % bootstrap CIs "
          f"({args.n_boot} resamples of cases). Higher score = riskier; good: AUROC near 1, rho near -1.")
    alphas = table.groupby("cohort", sort=False)[["pool", "alpha_entropy"]].first()
    print("pool and entropy alpha per cohort:",
          "; ".join(f"{c}: pool={r.pool}, alpha={r.alpha_entropy:.2f}" for c, r in alphas.iterrows()))
    print(show(table, ["cohort", "level", "score", "n"]))
    print()
    print("Summary: the paper's alarm count (AUROC / rho) beside the best score of each cohort and level")
    print(summary(table))

    if variants:
        print()
        print("BU-BIL: pool='algorithm' vs 'all', and similarity='leave-one-out' vs the full fusion")
        print(show(pd.concat(variants, ignore_index=True),
                   ["cohort", "level", "similarity", "pool", "score", "alpha_entropy"]))

    print()
    if args.lidc.is_dir():
        print(lidc_report(args.lidc, n_jobs=args.n_jobs))
    else:
        print(f"no LIDC readers at {args.lidc}: run `qe-nb fetch lidc-idri-readers` and pass --lidc.")
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

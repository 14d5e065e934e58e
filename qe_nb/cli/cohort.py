"""The cohort commands of ``qe-nb``: demo, score, sweep, worklist, report and fetch."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from qe_nb.cli.common import (
    PAPER_ALPHAS,
    POOL_HELP,
    POOLS,
    CommandError,
    float_list,
    format_table,
    say,
    write_csv,
)
from qe_nb.exceptions import QeNbError

__all__ = ["add_commands"]


# ---------------------------------------------------------------------------------------------
# demo


def _cmd_demo(args: argparse.Namespace) -> int:
    import qe_nb
    from qe_nb.core.statistics import case_quality, label_mean, pearson_r

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    say(f"qe-nb demo: a synthetic glioma cohort of {args.cases} cases x {args.algorithms} algorithms "
           f"(seed {args.seed}) in {out / 'cohort'}")
    ensemble = qe_nb.synthetic_cohort(
        out / "cohort", kind="glioma", n_cases=args.cases, n_algorithms=args.algorithms,
        seed=args.seed, overwrite=True, progress=not args.quiet,
    )
    t1 = time.perf_counter()
    say(f"  written in {t1 - t0:.1f} s; scoring (majority-vote fusion, Dice + HD95, BraTS regions) ...")
    scores = qe_nb.score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=args.jobs,
                         progress=not args.quiet)
    t2 = time.perf_counter()
    # As in the paper's MR experiment: one value per algorithm and metric (mean over the
    # tumour structures), alpha calibrated by entropy -- stored with the scores, so that sweep,
    # worklist, app and report use the same one; quality = the fusion's mean Dice with the
    # ground truth.
    scores = qe_nb.settle_alpha(scores, objective="entropy", label_mean=True)
    qe_nb.save_scores(scores, out / "scores.nc")
    say(f"  scored in {t2 - t1:.1f} s -> {out / 'scores.nc'}")
    run = qe_nb.run_alpha(scores)
    similarity = label_mean(scores["similarity"])
    quality = case_quality(scores["quality"], "dice", skipna=True)
    alpha = float(run.alpha)
    say(_wrap(f"  the run's alpha, stored with the scores: {run.text}"))
    say()
    say(f"Alpha sweep (the paper's Table 1 layout; entropy-calibrated alpha = {alpha:.2f}):")
    with warnings.catch_warnings():
        # r is undefined where every case has the same count; the table shows NA, as the paper does.
        warnings.simplefilter("ignore", qe_nb.UndefinedValueWarning)
        table = qe_nb.sweep_table(similarity, alphas=sorted(set(PAPER_ALPHAS) | {round(alpha, 2)}),
                                  quality=quality)
    say(format_table(table))
    say()
    say(f"Thresholds per algorithm at alpha = {alpha:.2f} (the paper's Table 3):")
    say(qe_nb.threshold_table(similarity, alpha).to_string(float_format=lambda v: f"{v:.4f}"))
    say()
    for label, a in (("the paper's alpha", 0.1), ("the calibrated alpha", alpha)):
        risk = qe_nb.risk(qe_nb.alarms(similarity, a))
        r = pearson_r(risk.values, quality.sel(case=risk.case).values)
        say(f"Pearson r between alarm count and the fusion's true Dice at {label} {a:.2f}: {r:.2f}")
    say("(the paper, 68 real glioma cases at alpha 0.1: r = -0.72)")
    # `risk` is now the calibrated alpha's, which the figures show.
    worklist = qe_nb.worklist(similarity, alpha, quality=quality)
    write_csv(out / "worklist.csv", worklist)
    say()
    say(f"Top of the worklist (all {len(worklist)} cases in {out / 'worklist.csv'}):")
    from qe_nb.ui.terminal import fit_reasons

    short = qe_nb.worklist(similarity, alpha, quality=quality, max_reasons=2, top=args.top)
    cols = [c for c in ("case", "risk", "quality", "reasons") if c in short.columns]
    say(format_table(fit_reasons(short[cols])))
    written = _write_demo_figures(out, scores, alpha, similarity, table)
    if written:
        say()
        say("Figures: " + ", ".join(str(p) for p in written))
    say()
    say(f"Done in {time.perf_counter() - t0:.1f} s.")
    return 0


def _write_demo_figures(out: Path, scores, alpha: float, similarity, table) -> list[Path]:
    """The demo's figures (qe_nb.ui.figures.save_figures); none without matplotlib."""
    try:
        from qe_nb.ui.figures import save_figures
    except ImportError:
        return []
    import qe_nb

    run = qe_nb.run_alpha(scores)
    said = f"{run.value_text} ({run.method})" if float(run.alpha) == alpha else None
    return save_figures(scores, alpha, out, similarity=similarity, sweep=table, alpha_text=said)


# ---------------------------------------------------------------------------------------------
# score, sweep, worklist, fetch


def _client(scheduler: str | None):
    if not scheduler:
        return None
    try:
        from dask.distributed import Client
    except ImportError:
        raise CommandError('--scheduler needs dask.distributed: pip install "qe-nb[dask]"') from None
    return Client(scheduler)


def _cmd_score(args: argparse.Namespace) -> int:
    import qe_nb

    ensemble = qe_nb.open_ensemble(
        args.root, masks=args.masks, reference=args.reference, images=args.images, labels=args.labels,
    )
    say(f"{ensemble.sizes['case']} cases x {ensemble.sizes['algorithm']} algorithms "
           f"({', '.join(map(str, ensemble.algorithm.values))}); structures: "
           f"{ensemble.attrs.get('label_scheme_text', '')}"
           + (" (inferred)" if int(ensemble.attrs.get("labels_inferred", 0)) else ""))
    # the new options are passed only when asked for, so a default run calls score() as before
    extra = {}
    if args.similarity != "fusion":
        extra["similarity"] = args.similarity
    if args.pairwise:
        extra["pairwise"] = True
    client = _client(args.scheduler)
    try:
        scores = qe_nb.score(
            ensemble, fusion=args.fusion, metrics=args.metrics, client=client, n_jobs=args.jobs,
            progress=not args.quiet, on_error="raise" if args.strict else "record", cache=args.cache,
            **extra,
        )
    finally:
        if client is not None:
            client.close()
    scores = _settle(scores)
    qe_nb.save_scores(scores, args.out)
    failed = [(str(c), str(e)) for c, e in zip(scores.case.values, scores["error"].values) if str(e)]
    say(f"wrote {args.out}: {scores.sizes['case'] - len(failed)} cases scored"
           + (f", {len(failed)} failed" if failed else ""))
    say(_wrap(f"the run's alpha: {qe_nb.run_alpha(scores).text}"))
    status = 0
    if failed:
        say("failed cases:")
        for case, err in failed:
            say(f"  {case}: {err}")
        status = 1
    missing = qe_nb.missing_summary(scores)
    if missing:
        say(_wrap("missing: " + missing))
        if not args.allow_missing:
            print("qe-nb score: error: candidate files are missing (listed above); add the files, fix "
                  "--masks, or pass --allow-missing to accept scores with those members absent",
                  file=sys.stderr)
            status = 1
    return status


def _settle(scores):
    """Record the run's alpha in the scores (the default: entropy, per structure), so that
    sweep, worklist, app and report show the same one; without alarms to count, nothing."""
    import qe_nb

    try:
        return qe_nb.settle_alpha(scores)
    except QeNbError as exc:  # e.g. every case failed: nothing to calibrate on
        say(f"no alpha stored with the scores: {exc}")
        return scores


def _wrap(text: str, width: int = 100) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width, subsequent_indent="  ", break_on_hyphens=False))


def _run_alpha(scores, args):
    """The run's alpha (:func:`qe_nb.run_alpha`: stored, else the default) or ``--alpha``, and
    the line that says which it is and how it was chosen."""
    import qe_nb

    label_mean = True if getattr(args, "label_mean", False) else None
    run = qe_nb.run_alpha(scores, label_mean=label_mean, pool=args.pool)
    given = getattr(args, "alpha", None)
    if given is None:
        return run, run.alpha, run.text
    return run, float(given), f"α = {float(given):.2f} (given with --alpha; the run's: {run.text})"


def _similarity_for(scores, args):
    sim = scores["similarity"]
    if getattr(args, "label_mean", False):
        from qe_nb.core.statistics import label_mean

        sim = label_mean(sim)
    return sim


def _quality_for(scores, metric: str = "dice"):
    from qe_nb.core.statistics import case_quality

    if "quality" not in scores or metric not in scores["quality"]["metric"].values:
        return None
    return case_quality(scores["quality"], metric, skipna=True)


def _cmd_sweep(args: argparse.Namespace) -> int:
    import qe_nb

    scores = qe_nb.load_scores(args.scores)
    run, _, text = _run_alpha(scores, args)
    sim = run.similarity(scores)
    quality = _quality_for(scores)
    table = qe_nb.sweep_table(sim, alphas=args.alphas or PAPER_ALPHAS, quality=quality, pool=run.pool,
                              mad_scale=run.mad_scale)
    say(_wrap(f"the run's alpha: {text}"))
    if args.wide:
        say(format_table(table))
    else:
        from qe_nb.ui.terminal import compact_sweep

        shown = compact_sweep(table)
        say(format_table(shown))
        if shown.shape[1] < table.shape[1]:
            say("(columns Na: the number of cases with N alarms, binned; --wide shows every count, "
                   "--csv writes them)")
    if args.csv:
        write_csv(args.csv, table)
    return 0


def _cmd_worklist(args: argparse.Namespace) -> int:
    import qe_nb

    scores = qe_nb.load_scores(args.scores)
    run, alpha, text = _run_alpha(scores, args)
    if args.alpha is None and not run.stored and run.method == "entropy":
        say(f"alpha calibrated by entropy: {float(run.alpha):.2f}")
    say(_wrap(f"worklist at {text}"))
    missing = scores["missing"] if "missing" in scores else None
    sim = run.similarity(scores)
    table = qe_nb.worklist(sim, alpha, quality=_quality_for(scores), pool=run.pool, mad_scale=run.mad_scale,
                           missing=missing)
    if args.csv:
        write_csv(args.csv, table)
        say(f"wrote {args.csv} ({len(table)} cases)")
    shown = table.head(args.top) if args.top else table
    if not args.wide:
        from qe_nb.ui.terminal import fit_reasons

        short = qe_nb.worklist(sim, alpha, quality=_quality_for(scores), pool=run.pool,
                               mad_scale=run.mad_scale, missing=missing, max_reasons=args.reasons,
                               top=len(shown))
        # the per-metric counts are in the CSV; the terminal gives their room to the reasons
        shown = fit_reasons(short.drop(columns=[c for c in short.columns if str(c).startswith("n_alarms:")]))
    say(format_table(shown))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import qe_nb
    from qe_nb.ui.report import write_report

    given = [f"--{k}" for k in ("masks", "reference", "images", "labels") if getattr(args, k)]
    if given and not args.ensemble:
        raise CommandError(f"{', '.join(given)} describe the cohort's files: give its folder with --ensemble ROOT too")
    ensemble = None
    if args.ensemble:
        labels = args.labels or str(qe_nb.load_scores(args.scores).attrs.get("label_scheme", "")) or None
        ensemble = qe_nb.open_ensemble(args.ensemble, masks=args.masks or "{case}/{algorithm}.nii.gz",
                                       reference=args.reference, images=args.images, labels=labels)
    t0 = time.perf_counter()
    path = write_report(args.scores, args.out, ensemble=ensemble, verdicts=args.verdicts, top=args.top,
                        label_mean=True if args.label_mean else None, pool=args.pool)
    size = path.stat().st_size
    say(f"wrote {path} ({size / 1e6:.2f} MB, one self-contained HTML file; "
           f"{time.perf_counter() - t0:.1f} s)")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    import qe_nb

    path = qe_nb.fetch_dataset(args.name, manifest=args.manifest, cache=args.cache,
                               base_url=args.base_url, progress=not args.quiet,
                               timeout=args.timeout, stall=args.stall)
    say(str(path))
    return 0



def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register demo, score, sweep, worklist, report and fetch."""
    p = sub.add_parser("demo", help="run the whole method on a synthetic glioma cohort",
                       description="Make a synthetic glioma cohort with ground truth, score it, calibrate "
                       "alpha by entropy, print the alpha sweep (Table 1), the thresholds (Table 3) and the "
                       "top of the worklist, and write scores.nc, worklist.csv and figures to --out.")
    p.add_argument("--out", default="qe-nb-demo", help="output folder (default: %(default)s)")
    p.add_argument("--cases", type=int, default=68, help="number of cases (default: %(default)s)")
    p.add_argument("--algorithms", type=int, default=5, help="number of algorithms (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--top", type=int, default=10, help="worklist rows to print (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("score", help="score a folder of segmentations",
                       description="Fuse each case's candidates, measure each candidate against the fusion "
                       "(and the fusion against the reference, when given) and write the scores cube. "
                       "3-D images (NIfTI, MHA, NRRD, DICOM SEG .dcm) and 2-D images (PNG, TIFF, BMP, 2-D NIfTI) are read; "
                       "masks stored as 0/255 work with --labels binary. Distances are in mm, or in pixels "
                       "(px) for formats that store no spacing (PNG); the scores file says which.",
                       epilog="example (2-D PNG, crowd annotations of a cell image): qe-nb score ROOT "
                       "--masks '{case}/crowd_mturk_annotation3-{algorithm}.png' --reference "
                       "'{case}/gold.png' --labels binary --out s.nc")
    p.add_argument("root", help="the folder holding the cohort")
    p.add_argument("--masks", default="{case}/{algorithm}.nii.gz",
                   help="pattern of candidate files, with {case} and {algorithm} (default: %(default)s)")
    p.add_argument("--reference", default=None, help="pattern of reference files, with {case}")
    p.add_argument("--images", default=None,
                   help="pattern of image files, with {case} (and {modality} when a case has several)")
    p.add_argument("--labels", default=None,
                   help="label scheme: brats, brats-regions, brats2023, brats2023-regions, binary "
                   "(default: inferred from the files)")
    p.add_argument("--fusion", default="mav", choices=["mav", "simple", "brats-simple", "staple"])
    p.add_argument("--metrics", default="dice,hd95", help="comma-separated metric ids (default: %(default)s)")
    p.add_argument("--similarity", default="fusion", choices=["fusion", "leave-one-out"],
                   help="measure each candidate against the fusion of all candidates (fusion, the paper) "
                   "or of the other candidates (leave-one-out, for small ensembles of 3-5 members) "
                   "(default: %(default)s)")
    p.add_argument("--pairwise", action="store_true",
                   help="also measure every pair of members against each other (for the pairwise "
                   "disagreement risk score)")
    p.add_argument("--out", default="scores.nc", help="output NetCDF file (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--cache", default=None, help="folder to cache per-case results (resume after a crash)")
    p.add_argument("--strict", action="store_true", help="stop at the first case that fails")
    p.add_argument("--allow-missing", action="store_true",
                   help="exit 0 although candidate files are missing (they are listed either way; their "
                   "scores are NaN and count as alarms)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("sweep", help="alarm counts, entropy and correlation over a grid of alpha",
                       description="Print the alpha sweep of a scores file in the layout of the paper's "
                       "Tables 1-2 (r columns only when the scores hold a reference).")
    p.add_argument("scores", help="a scores file written by `qe-nb score`")
    p.add_argument("--alphas", type=float_list, default=None,
                   help="comma-separated alphas, e.g. -1,0,0.1,1 (default: the paper's)")
    p.add_argument("--label-mean", action="store_true", help="one value per algorithm and metric (mean over labels)")
    p.add_argument("--pool", default="algorithm", choices=POOLS, help=POOL_HELP)
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--wide", action="store_true",
                   help="one column per alarm count (default: counts binned to fit 100 columns)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("worklist", help="cases sorted by risk",
                       description="Print (and optionally save) the cases sorted by their alarm count.")
    p.add_argument("scores", help="a scores file written by `qe-nb score`")
    p.add_argument("--alpha", type=float, default=None,
                   help="alpha (default: the one stored with the scores by `qe-nb score`, else calibrated by "
                   "entropy)")
    p.add_argument("--label-mean", action="store_true", help="one value per algorithm and metric (mean over labels)")
    p.add_argument("--pool", default="algorithm", choices=POOLS, help=POOL_HELP)
    p.add_argument("--csv", default=None, help="write the worklist to this CSV file")
    p.add_argument("--top", type=int, default=20, help="rows to print, 0 for all (default: %(default)s)")
    p.add_argument("--wide", action="store_true",
                   help="print the reasons whole (default: cut to fit 100 columns; --csv keeps them whole)")
    p.add_argument("--reasons", type=int, default=2,
                   help="reasons printed per case, worst first, then '+N more' (default: %(default)s)")
    p.set_defaults(func=_cmd_worklist)

    p = sub.add_parser("report", help="one self-contained HTML report of a scored run, to share",
                       description="Write one HTML file (figures embedded, no server needed): the run's "
                       "settings, its alpha and how it was chosen, Figure 4, the alpha sweep, the thresholds, "
                       "the top of the worklist with its reasons and a thumbnail per case (with --ensemble, or "
                       "when the scores record where the files are) and the verdicts of the triage app.")
    p.add_argument("scores", help="a scores file written by `qe-nb score`")
    p.add_argument("--out", default="report.html", help="the HTML file (default: %(default)s)")
    p.add_argument("--ensemble", default=None, help="the cohort folder (thumbnails of the top cases)")
    p.add_argument("--masks", default=None,
                   help="pattern of candidate files, with {case} and {algorithm} (default: {case}/{algorithm}.nii.gz)")
    p.add_argument("--reference", default=None, help="pattern of reference files, with {case}")
    p.add_argument("--images", default=None, help="pattern of image files, with {case} (and {modality})")
    p.add_argument("--labels", default=None, help="label scheme (default: the scores')")
    p.add_argument("--verdicts", default=None,
                   help="the review database or an old verdict CSV (default: SCORES.reviews.db, else SCORES.verdicts.csv, "
                   "beside the scores, when it exists)")
    p.add_argument("--top", type=int, default=10, help="worklist cases shown (default: %(default)s)")
    p.add_argument("--label-mean", action="store_true", help="alarms on the mean over the labels")
    p.add_argument("--pool", default=None, choices=POOLS, help=POOL_HELP + " (default: the run's)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("fetch", help="download a data set named in data_manifest.yml",
                       description="Download a data set with sha256 verification into a cache and print "
                       "its folder.")
    p.add_argument("name", help="data set name, e.g. brats-example")
    p.add_argument("--manifest", default=None, help="manifest file (default: the package's data_manifest.yml)")
    p.add_argument("--cache", default=None, help="cache folder (default: QE_NB_CACHE or the user cache)")
    p.add_argument("--base-url", default=None, help="override the base URL (or set QE_NB_DATA_URL)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds the whole download may take (default 1800); nothing partial is kept")
    p.add_argument("--stall", type=float, default=60.0,
                   help="stop a download when no byte arrives for this many seconds (default 60)")
    p.set_defaults(func=_cmd_fetch)


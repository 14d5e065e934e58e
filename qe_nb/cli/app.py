"""``qe-nb app``: serve the triage app with Voila."""

from __future__ import annotations

import argparse
import os
import sys

from qe_nb.cli.common import POOL_HELP, POOLS, CommandError, say

__all__ = ["add_commands"]


def _check_app_inputs(args: argparse.Namespace) -> None:
    """Read the scores and match the cohort's patterns now, so that a wrong pattern is a
    one-line error here, before the server starts, and not a failure in the page."""
    import qe_nb

    given = [f"--{k}" for k in ("masks", "reference", "images", "labels") if getattr(args, k)]
    if given and not args.ensemble:
        raise CommandError(f"{', '.join(given)} describe the cohort's files: give its folder with "
                           "--ensemble ROOT too (or leave them out to serve the worklist only)")
    qe_nb.load_scores(args.scores)
    if args.ensemble:
        qe_nb.open_ensemble(args.ensemble, masks=args.masks or "{case}/{algorithm}.nii.gz",
                            reference=args.reference, images=args.images, labels=args.labels)


def _cmd_app(args: argparse.Namespace) -> int:
    import importlib.util
    import subprocess

    from qe_nb.ui.triage_app import voila_command

    if importlib.util.find_spec("voila") is None:
        raise CommandError('the triage app needs Voila: pip install "qe-nb[browser]"')
    _check_app_inputs(args)
    argv, env = voila_command(
        args.scores, ensemble_root=args.ensemble, masks=args.masks, reference=args.reference,
        images=args.images, labels=args.labels, verdicts=args.verdicts, alpha=args.alpha,
        label_mean=args.label_mean, rows=args.rows, pool=args.pool, port=args.port,
        open_browser=args.browser,
    )
    say(f"qe-nb app: serving the triage app on http://127.0.0.1:{args.port}/ (Ctrl+C to stop)")
    if os.name != "posix":  # pragma: no cover - Windows
        return subprocess.call(argv, env=env)
    # become Voila, so that a SIGTERM to this process reaches Voila and shuts its kernels down
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
    return 0  # not reached: execve does not return



def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register app."""
    p = sub.add_parser("app", help="serve the triage app (worklist, case viewer, verdicts) with Voila",
                       description="Serve notebooks/triage_app.ipynb with Voila on 127.0.0.1: the worklist "
                       "sorted by risk, alpha (preset to the calibrated value), the case viewer and a "
                       "verdict per case, saved at once to a CSV beside the scores.")
    p.add_argument("scores", help="a scores file written by `qe-nb score`")
    p.add_argument("--ensemble", default=None, help="the cohort folder (enables the case viewer)")
    p.add_argument("--masks", default=None,
                   help="pattern of candidate files, with {case} and {algorithm} (default: {case}/{algorithm}.nii.gz)")
    p.add_argument("--reference", default=None, help="pattern of reference files, with {case}")
    p.add_argument("--images", default=None,
                   help="pattern of image files, with {case} (and {modality} when a case has several)")
    p.add_argument("--labels", default=None, help="label scheme (default: inferred from the files)")
    p.add_argument("--verdicts", default=None, help="verdict CSV file (default: SCORES.verdicts.csv beside the scores)")
    p.add_argument("--alpha", type=float, default=None, help="initial alpha (default: calibrated)")
    p.add_argument("--label-mean", action="store_true", help="one value per algorithm and metric (mean over labels)")
    p.add_argument("--rows", type=int, default=None, help="worklist rows shown (default: 30)")
    p.add_argument("--pool", default="algorithm", choices=POOLS, help=POOL_HELP)
    p.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default: %(default)s)")
    p.add_argument("--browser", action="store_true", help="open a web browser")
    p.set_defaults(func=_cmd_app)

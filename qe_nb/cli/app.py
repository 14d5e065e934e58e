"""``qe-nb app``: serve the triage app with Voila."""

from __future__ import annotations

import argparse
import os
import sys

from qe_nb.cli.common import POOL_HELP, POOLS, CommandError, say

__all__ = ["add_commands"]


def _check_app_inputs(args: argparse.Namespace) -> None:
    """Read the scores, match the cohort's patterns and open the review database now, so that a
    wrong pattern or database is a one-line error here, before the server starts, and not a
    failure in the page."""
    import qe_nb
    from qe_nb.ui.verdicts import default_database_path

    given = [f"--{k}" for k in ("masks", "reference", "images", "labels") if getattr(args, k)]
    if given and not args.ensemble:
        raise CommandError(f"{', '.join(given)} describe the cohort's files: give its folder with "
                           "--ensemble ROOT too (or leave them out to serve the worklist only)")
    if args.model is not None:
        _check_stream_inputs(args)
        return
    if args.scores is None:
        raise CommandError("give a scores file (qe-nb app SCORES), or the model and the database of "
                           "`qe-nb watch` (qe-nb app --model MODEL.json --db qe-nb.db)")
    qe_nb.load_scores(args.scores)
    if args.ensemble:
        qe_nb.open_ensemble(args.ensemble, masks=args.masks or "{case}/{algorithm}.nii.gz",
                            reference=args.reference, images=args.images, labels=args.labels)
    from qe_nb.store.review import ReviewStore

    with ReviewStore(args.db or default_database_path(args.scores)):
        pass


def _check_stream_inputs(args: argparse.Namespace) -> None:
    """``--model``: the model file reads, the database exists and holds assessments with this model."""
    import qe_nb
    from qe_nb.store.review import ReviewStore

    if args.scores is not None:
        raise CommandError(f"give a scores file ({args.scores}) or --model (the watched assessments), not both")
    unused = [f"--{k.replace('_', '-')}" for k in ("alpha", "label_mean", "verdicts") if getattr(args, k)]
    if unused:
        raise CommandError(f"{', '.join(unused)}: not with --model, whose thresholds and α are frozen")
    if not args.db:
        raise CommandError("--model needs --db, the database `qe-nb watch` writes")
    if "://" not in args.db and not args.db.startswith("sqlite:") and not os.path.isfile(args.db):
        raise CommandError(f"the database {args.db!r} does not exist; `qe-nb watch FOLDER --model "
                           f"{args.model} --db {args.db}` creates it")
    model = qe_nb.load_model(args.model)
    if args.ensemble:
        qe_nb.open_ensemble(args.ensemble, masks=args.masks or "{case}/{algorithm}.nii.gz",
                            reference=args.reference, images=args.images, labels=args.labels)
    with ReviewStore(args.db) as store:
        if not store.assessed_cases(model.content_hash):
            others = len(store.assessed_cases())
            raise CommandError(f"the database {args.db!r} holds no assessment made with {args.model} (sha256 "
                               f"{model.content_hash[:12]}){f'; it holds {others} of other models' if others else ''}"
                               f"; run `qe-nb watch FOLDER --model {args.model} --db {args.db}` first")


def _cmd_app(args: argparse.Namespace) -> int:
    import importlib.util
    import subprocess

    from qe_nb.ui.access import app_url, new_token, token_required
    from qe_nb.ui.serve import voila_command

    if importlib.util.find_spec("voila") is None:
        raise CommandError('the triage app needs Voila: pip install "qe-nb[browser]"')
    if args.token == "" and token_required(args.host):
        raise CommandError(f"--host {args.host} is reachable from other machines: it needs a token "
                           "(leave --token out to get a new one)")
    _check_app_inputs(args)
    token = args.token if args.token is not None else (new_token() if token_required(args.host) else None)
    argv, env = voila_command(
        args.scores, model=args.model, ensemble_root=args.ensemble, masks=args.masks, reference=args.reference,
        images=args.images, labels=args.labels, db=args.db, verdicts=args.verdicts, reviewer=args.reviewer,
        alpha=args.alpha, label_mean=args.label_mean, rows=args.rows, pool=args.pool, refresh=args.refresh,
        host=args.host, port=args.port, token=token or None, allow_hosts=args.allow_host,
        open_browser=args.browser,
    )
    # a generated token is printed in full (the only way to learn it); a given one is not repeated
    shown = token if args.token is None else (token and "...")
    say(f"qe-nb app: serving the triage app on {app_url(args.host, args.port, shown)} (Ctrl+C to stop)")
    if token:
        say("qe-nb app: open that address (with its token) once; the browser then keeps a login cookie")
    if os.name != "posix":  # pragma: no cover - Windows
        return subprocess.call(argv, env=env)
    # become Voila, so that a SIGTERM to this process reaches Voila and shuts its kernels down
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
    return 0  # not reached: execve does not return


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register app."""
    p = sub.add_parser(
        "app", help="serve the triage app (worklist, case viewer, verdicts by reviewer) with Voila",
        description="Serve the triage app with Voila: the worklist sorted by risk, alpha (preset to the "
        "calibrated value), the case viewer and a verdict per case and reviewer, saved at once to a review "
        "database (SQLite beside the scores, or PostgreSQL with --db) that several reviewers share. On an "
        "address other than loopback (--host 0.0.0.0) a token is required: given with --token, or generated "
        "and printed with the URL. Requests whose Host or Origin is not this server are refused.")
    p.add_argument("scores", nargs="?", default=None,
                   help="a scores file written by `qe-nb score` (or leave it out and give --model and --db)")
    p.add_argument("--model", default=None, metavar="MODEL.json",
                   help="serve the assessments `qe-nb watch` recorded with this model in --db instead: risk, "
                        "reasons and alarms as the model froze them (no alpha to set), new cases on refresh; "
                        "--ensemble FOLDER (the watched folder) and --masks enable the case viewer")
    p.add_argument("--ensemble", default=None, help="the cohort folder (enables the case viewer)")
    p.add_argument("--masks", default=None,
                   help="pattern of candidate files, with {case} and {algorithm} (default: {case}/{algorithm}.nii.gz)")
    p.add_argument("--reference", default=None, help="pattern of reference files, with {case}")
    p.add_argument("--images", default=None,
                   help="pattern of image files, with {case} (and {modality} when a case has several)")
    p.add_argument("--labels", default=None, help="label scheme (default: inferred from the files)")
    p.add_argument("--db", default=os.environ.get("QE_NB_DB") or None, metavar="URL",
                   help="review database: a SQLite file or sqlite:///PATH, or postgresql://USER:PASSWORD@HOST/DB "
                        "(default: $QE_NB_DB, which keeps a password out of the process list, else "
                        "SCORES.reviews.db beside the scores)")
    p.add_argument("--verdicts", default=None, metavar="CSV",
                   help="an old verdict CSV to import into the database once (default: SCORES.verdicts.csv "
                        "beside the scores, when it exists)")
    p.add_argument("--reviewer", default=None,
                   help="the reviewer's name for everyone using this server (default: each reviewer gives "
                        "theirs in the page, or opens it with ?reviewer=NAME)")
    p.add_argument("--alpha", type=float, default=None, help="initial alpha (default: calibrated)")
    p.add_argument("--label-mean", action="store_true", help="one value per algorithm and metric (mean over labels)")
    p.add_argument("--rows", type=int, default=None, help="worklist rows shown (default: 30)")
    p.add_argument("--pool", default="algorithm", choices=POOLS, help=POOL_HELP)
    p.add_argument("--refresh", type=float, default=None,
                   help="seconds between reads of the other reviewers' verdicts (default: 15; 0: only the button)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every "
                        "interface, token required)")
    p.add_argument("--port", type=int, default=8866, help="port (default: %(default)s)")
    p.add_argument("--token", default=None,
                   help="the token a browser must bring once (?token=...); default: none on loopback, a new "
                        "random one otherwise (printed with the URL)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another host name the server answers to (a DNS alias, a reverse proxy); repeatable")
    p.add_argument("--browser", action="store_true", help="open a web browser")
    p.set_defaults(func=_cmd_app)

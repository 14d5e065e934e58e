"""``qe-nb watch``: assess each new case of a folder once, when complete, into a review database."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from qe_nb.cli.common import CommandError

__all__ = ["add_commands"]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and Ctrl-C set ``stop`` (the case in progress is finished and recorded first); a second
    Ctrl-C interrupts at once. Returns the previous handlers."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        # set from another thread: the main thread may hold the event's lock at this instant
        threading.Thread(target=stop.set, daemon=True).start()
        _log(f"qe-nb watch: {signal.Signals(signum).name}: stopping after the case in progress")

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _cmd_watch(args: argparse.Namespace) -> int:
    from qe_nb.pipeline.model import load_model
    from qe_nb.pipeline.watch import FolderWatcher
    from qe_nb.store.review import ReviewStore

    if args.interval <= 0:
        raise CommandError(f"--interval must be a positive number of seconds; got {args.interval:g}")
    model = load_model(args.model)
    stop = threading.Event()
    previous = _stop_on_signals(stop) if threading.current_thread() is threading.main_thread() else {}
    try:
        with ReviewStore(args.db) as store:
            watcher = FolderWatcher(args.folder, model, store, masks=args.masks, labels=args.labels,
                                    settle=args.settle, missing_after=args.missing_after, log=_log)
            members = ", ".join(watcher.members)
            _log(f"qe-nb watch: {'assessing' if args.once else 'watching'} {watcher.folder} "
                 f"({args.masks}; members {members}) with model {watcher.model_hash[:12]} into {store.url}; "
                 f"{len(watcher.done)} case(s) already assessed with this model; settle {args.settle:g} s"
                 + ("" if args.once else f", every {args.interval:g} s; Ctrl-C or SIGTERM stops"))
            summary = watcher.run(interval=args.interval, once=args.once, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = f" ({len(summary.failed)} with an error)" if summary.failed else ""
    pending = f"; {len(summary.pending)} not complete yet: {', '.join(summary.pending[:5])}" if summary.pending else ""
    pending += " ..." if len(summary.pending) > 5 else ""
    _log(f"qe-nb watch: {'done' if args.once else 'stopped'}; {len(summary.assessed)} case(s) assessed{failed}"
         f"{pending}")
    return 1 if args.once and summary.failed else 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register watch."""
    p = sub.add_parser(
        "watch", help="assess each new case of a folder once, when its files are complete",
        description="Poll FOLDER for case folders; assess each case with the frozen model once all the files "
        "the --masks pattern names for the model's members exist and have not changed for --settle seconds, "
        "and record the result (risk, alarms, reasons, error) in the review database, one row per case and "
        "model: a restarted or killed watcher assesses no case twice and misses none. A case whose files "
        "cannot be read is recorded with its error and not retried. Progress lines go to stderr.",
        epilog="example: qe-nb watch incoming/ --model model.json --db qe-nb.db --settle 5")
    p.add_argument("folder", help="the folder new cases arrive in")
    p.add_argument("--model", required=True, help="a model file written by `qe-nb fit`")
    p.add_argument("--db", default="qe-nb.db",
                   help="the review database: an SQLite file (WAL) or a postgresql:// URL (default: %(default)s)")
    p.add_argument("--masks", default="{case}/{algorithm}.nii.gz",
                   help="pattern of candidate files, with {case} and {algorithm} (default: %(default)s)")
    p.add_argument("--labels", default=None, help="label scheme to read the files with (default: the model's)")
    p.add_argument("--settle", type=_seconds, default=3.0,
                   help="seconds a case's files must stay unchanged before it is assessed (default: %(default)s)")
    p.add_argument("--interval", type=_seconds, default=1.0,
                   help="seconds between two looks at the folder (default: %(default)s)")
    p.add_argument("--missing-after", type=_seconds, default=None,
                   help="assess a case still missing members after its files have not changed for this many "
                   "seconds (their rows alarm; default: wait for every member)")
    p.add_argument("--once", action="store_true",
                   help="assess the cases that are complete now and exit (1 when one was recorded with an error)")
    p.set_defaults(func=_cmd_watch)

"""The ``qe-nb`` command: batch runs over folders of segmentations.

``qe-nb demo``      synthetic glioma cohort -> scores -> calibrated alpha -> tables, worklist, figures
``qe-nb score``     a folder of segmentations (NIfTI, MHA, NRRD, DICOM SEG; 2-D PNG, TIFF, BMP) -> scores.nc
``qe-nb sweep``     the alpha sweep of a scores file (the paper's Tables 1-2)
``qe-nb worklist``  cases sorted by risk at a given alpha
``qe-nb fetch``     download a data set of data_manifest.yml, verifying checksums
``qe-nb app``       serve the triage app (worklist, case viewer, verdicts by reviewer) with Voila
``qe-nb report``    one self-contained HTML report of a scored run, to share
``qe-nb fit``       freeze the thresholds of a reference cohort into a model file
``qe-nb assess``    assess new cases with a model file
``qe-nb watch``     assess each new case of a folder once, when complete, into a review database
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from qe_nb.cli import app, cohort, model, watch
from qe_nb.cli.common import CommandError, negative_values
from qe_nb.exceptions import QeNbError

__all__ = ["build_parser", "main"]

# each command module has `add_commands(sub)` and registers its sub-commands there; a new command
# is a new module in qe_nb/cli/ added here, in the order `qe-nb --help` lists them
COMMAND_MODULES = (cohort, model, app, watch)


def build_parser() -> argparse.ArgumentParser:
    """The ``qe-nb`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="qe-nb",
        description="Unsupervised quality estimation for segmentation ensembles (Kofler et al. 2021).",
    )
    from qe_nb import __version__

    parser.add_argument("--version", action="version", version=f"qe-nb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qe-nb`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(negative_values(list(sys.argv[1:] if argv is None else argv)))
    for stream in (sys.stdout, sys.stderr):
        # a case folder whose name is not valid UTF-8 prints escaped, never as an encoding error
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"qe-nb {args.command}: warning: {message}", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except (QeNbError, CommandError, FileNotFoundError, PermissionError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"qe-nb {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qe-nb {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader left (`qe-nb worklist s.nc | head -1`): not an error; point stdout at
        # /dev/null so that flushing it at exit does not raise a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

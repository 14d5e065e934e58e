"""The continuous-QA commands of ``qe-nb``: fit a frozen model, assess new cases with it.

``qe-nb fit SCORES.nc --alpha A [--by label] [--pool P] --out MODEL.json`` freezes the thresholds
of a reference cohort's scores (:func:`qe_nb.pipeline.model.fit`); ``qe-nb assess ROOT --model
MODEL.json --masks PATTERN`` scores the cases of a folder with the model's settings and judges
them against its thresholds: a table, or with ``--json`` one JSON object per line and case
(``case``, ``risk``, ``percentile``, ``alarms`` per member, ``reasons``, ``error``). The exit
status is 0, or 1 when a case could not be assessed (2 for a usage or input error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from qe_nb.cli.common import POOL_HELP, POOLS, CommandError, format_table, say

__all__ = ["add_commands", "parse_alpha", "case_records"]


def parse_alpha(text: str, by: str | None) -> float | str | dict[str, float]:
    """``--alpha``: a number, ``entropy``, or ``wt=0.1,et=0.3`` (one per group of ``--by``).

    Examples
    --------
    >>> parse_alpha("0.25", None), parse_alpha("entropy", "label")
    (0.25, 'entropy')
    >>> parse_alpha("wt=0.1,et=-0.3", "label")
    {'wt': 0.1, 'et': -0.3}
    """
    text = text.strip()
    if text == "entropy":
        return text
    if "=" not in text:
        try:
            value = float(text)
        except ValueError:
            raise CommandError(f"--alpha must be a number, 'entropy' or group=value pairs; got {text!r}.") from None
        if not math.isfinite(value):
            raise CommandError(f"--alpha must be finite; got {text!r}.")
        return value
    if not by:
        raise CommandError(f"--alpha {text!r} gives one alpha per group; say which groups with --by (e.g. --by label).")
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise CommandError(f"--alpha: {part!r} is not group=number.") from None
    return out


def _cmd_fit(args: argparse.Namespace) -> int:
    import warnings

    from qe_nb.exceptions import UnreliableThresholdWarning
    from qe_nb.pipeline.model import fit
    from qe_nb.pipeline.scores_file import load_scores

    scores = load_scores(args.scores)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreliableThresholdWarning)
        model = fit(scores, parse_alpha(args.alpha, args.by), by=args.by, mad_scale=_mad_scale(args.mad_scale),
                    pool=args.pool)
    for w in caught:
        say(f"qe-nb fit: warning: {w.message}")
    path = model.save(args.out)
    ref = model.reference
    say(f"fitted on {ref.attrs['n_cases']} reference cases ({ref.attrs['n_failed_cases']} failed) of {args.scores}: "
        f"{len(model.algorithms)} members x {len(model.labels)} labels x {len(model.metrics)} metrics, "
        f"fusion {model.fusion}, alpha {_alpha_text(model)}, pool {model.pool}")
    if not args.quiet:
        from qe_nb.core.alarms import threshold_table

        say("thresholds (the paper's Table 3 layout):")
        say(threshold_table(None, thresholds=model.thresholds).to_string(float_format=lambda v: f"{v:.4f}"))
    say(f"wrote {path} (sha256 {model.content_hash[:16]}...)")
    return 0


def _mad_scale(text: str) -> float | str:
    if text == "normal":
        return text
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"--mad-scale must be a number or 'normal'; got {text!r}.") from None


def _alpha_text(model: Any) -> str:
    if isinstance(model.alpha, float):
        return f"{model.alpha:g} ({model.alpha_method})"
    series = model.alpha.to_series()
    values = ", ".join(f"{'/'.join(map(str, k)) if isinstance(k, tuple) else k} {float(v):g}" for k, v in series.items())
    return f"per {', '.join(model.by)}: {values} ({model.alpha_method})"


def case_records(assessed: Any) -> list[dict[str, Any]]:
    """One plain dict per assessed case: case, risk, percentile, alarms per member, reasons, error."""
    records = []
    members = [str(a) for a in assessed["algorithm"].values]
    per_member = assessed["alarms"].sum(("label", "metric")).transpose("case", "algorithm").values
    for i, case in enumerate(assessed["case"].values):
        error = str(assessed["error"].values[i])
        reasons = str(assessed["reasons"].values[i])
        records.append({
            "case": str(case),
            "risk": None if error else int(assessed["risk"].values[i]),
            "percentile": None if error else round(float(assessed["percentile"].values[i]), 2),
            "alarms": None if error else {m: int(n) for m, n in zip(members, per_member[i])},
            "reasons": [] if error or not reasons else reasons.split("; "),
            "error": error,
        })
    return records


def _cmd_assess(args: argparse.Namespace) -> int:
    import warnings

    import qe_nb
    from qe_nb.exceptions import QeNbWarning
    from qe_nb.pipeline.model import load_model

    model = load_model(args.model)
    cases = None if not args.cases else [c for part in args.cases for c in part.split(",") if c]
    with warnings.catch_warnings():
        # files of other algorithms (a reference the pattern catches) are not read: say so below instead
        warnings.filterwarnings("ignore", message="the `masks` pattern .* takes", category=QeNbWarning)
        ensemble = qe_nb.open_ensemble(args.root, masks=args.masks, labels=args.labels or model.scheme)
    others = [str(a) for a in ensemble["algorithm"].values if str(a) not in model.algorithms]
    if others:
        print(f"qe-nb assess: note: not read, not members of the model: files of {others}",
              file=sys.stderr if args.json else sys.stdout, flush=True)
    assessed = model.assess(ensemble, cases=cases, n_jobs=args.jobs, progress=False)
    records = case_records(assessed)
    if args.json:
        for record in records:
            print(json.dumps({**record, "model_sha256": model.content_hash}, ensure_ascii=False), flush=True)
    else:
        import pandas as pd

        table = pd.DataFrame([
            {"case": r["case"], "risk": "" if r["error"] else r["risk"],
             "percentile": "" if r["error"] else f"{r['percentile']:.0f}",
             "reasons / error": r["error"] or "; ".join(r["reasons"][:3])
             + (f"; +{len(r['reasons']) - 3} more" if len(r["reasons"]) > 3 else "")}
            for r in records
        ])
        say(f"{len(records)} case(s) assessed with {args.model} (sha256 {model.content_hash[:12]}..., "
            f"alpha {_alpha_text(model)}); percentile: of the risk among the {model.reference.attrs['n_cases']} "
            "reference cases")
        say(format_table(table))
    missing = qe_nb.missing_summary(assessed.assign_attrs(source=str(args.root), masks_pattern=args.masks))
    if missing:
        print(f"qe-nb assess: note: {missing}", file=sys.stderr if args.json else sys.stdout, flush=True)
    failed = sum(1 for r in records if r["error"])
    if failed and not args.json:
        say(f"{failed} case(s) could not be assessed (see the table).")
    return 1 if failed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``fit`` and ``assess`` on the ``qe-nb`` sub-command parser."""
    p = sub.add_parser("fit", help="freeze the thresholds of a reference cohort into a model file",
                       description="Fit a frozen quality model on the scores of a reviewed reference cohort: the "
                       "thresholds median - alpha * MAD per member, label and metric (exactly those of qe_nb.alarms "
                       "on that cohort), the settings it was scored with and a summary of it, in one JSON file.",
                       epilog="examples: qe-nb fit ref.nc --alpha 0.1 --out model.json; qe-nb fit ref.nc --alpha "
                       "entropy --by label --out model.json; qe-nb fit ref.nc --by label --alpha "
                       "whole_tumor=0.1,tumor_core=0.3,enhancing_tumor=0 --out model.json")
    p.add_argument("scores", help="the reference cohort's scores file (qe-nb score)")
    p.add_argument("--alpha", default="0.1",
                   help="a number, 'entropy' (calibrated by the entropy of the alarm counts, no ground truth), or "
                   "group=value pairs with --by (default: %(default)s)")
    p.add_argument("--by", default=None, choices=["algorithm", "label", "metric"],
                   help="one alpha per algorithm, label or metric")
    p.add_argument("--pool", default="algorithm", choices=POOLS, help=POOL_HELP)
    p.add_argument("--mad-scale", default="1", help="factor on the MAD, or 'normal' (1.4826) (default: %(default)s)")
    p.add_argument("--out", required=True, help="the model file to write (JSON)")
    p.add_argument("--quiet", action="store_true", help="do not print the thresholds")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("assess", help="assess new cases with a model file",
                       description="Score the cases of a folder with a model's settings and judge them against its "
                       "frozen thresholds: risk (alarm count), its percentile among the reference cases, the reasons "
                       "in words, or why a case could not be assessed. Exit status 1 when a case failed.",
                       epilog="example: qe-nb assess incoming/ --model model.json --masks '{case}/{algorithm}.nii.gz' "
                       "--json")
    p.add_argument("root", help="the folder holding the new cases")
    p.add_argument("--model", required=True, help="a model file written by `qe-nb fit`")
    p.add_argument("--masks", default="{case}/{algorithm}.nii.gz",
                   help="pattern of candidate files, with {case} and {algorithm} (default: %(default)s); files of "
                   "algorithms the model does not know are not read")
    p.add_argument("--labels", default=None, help="label scheme (default: the model's)")
    p.add_argument("--cases", nargs="+", default=None, help="only these cases (space- or comma-separated)")
    p.add_argument("--json", action="store_true", help="one JSON object per line and case")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default: %(default)s, in this process)")
    p.set_defaults(func=_cmd_assess)

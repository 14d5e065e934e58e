"""A report to share: one self-contained HTML file of a scored run (``qe-nb report``).

What a researcher sends to a clinician: the run's settings, the α and how it was chosen
(:func:`qe_nb.run_alpha`), Figure 4 (or, without ground truth, the alarm-count histogram),
the α sweep, the thresholds, the top of the worklist with its reasons
(:func:`qe_nb.worklist`, :func:`qe_nb.reasons`), a thumbnail of each top case where its
members disagree most (when the cohort's files can be read) and the verdicts recorded in the
triage app. Every figure is an embedded PNG (``data:`` URI); nothing is fetched: the file
opens from disk, without a server. Every string from the data is escaped.

No science happens here: every number comes from :mod:`qe_nb.core`.
"""

from __future__ import annotations

import base64
import html
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from qe_nb.exceptions import InputError
from qe_nb.ui.common import html_table

__all__ = ["report_html", "write_report", "REPORT_CSS"]

REPORT_CSS = """
body {font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
  max-width: 1100px; color: #222; line-height: 1.4; padding: 0 16px}
h1 {font-size: 24px; margin-bottom: 4px} h2 {font-size: 18px; margin-top: 28px;
  border-bottom: 1px solid #ddd; padding-bottom: 2px}
.qe-meta {color: #555; font-size: 13px}
.qe-alpha {background: #f3f7fb; border-left: 4px solid #4477AA; padding: 6px 10px; font-size: 14px}
.qe-warn {background: #fff4e5; border-left: 4px solid #E69F00; padding: 6px 10px; font-size: 14px}
.qe-table {border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums;
  margin: 6px 0}
.qe-table th, .qe-table td {padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right;
  vertical-align: top}
.qe-table th {background: #f4f4f4}
.qe-table td.qe-text, .qe-table th.qe-text {text-align: left}
figure {margin: 10px 0} figure img {max-width: 100%; height: auto; border: 1px solid #eee}
figcaption {font-size: 13px; color: #444}
.qe-case {display: flex; gap: 16px; align-items: flex-start; border-top: 1px solid #eee;
  padding: 10px 0; flex-wrap: wrap}
.qe-case h3 {margin: 0 0 4px 0; font-size: 15px}
.qe-case .qe-reasons {flex: 1 1 420px; min-width: 320px}
.qe-case img {max-width: 520px}
"""
"""The report's style sheet (inline: the file needs nothing else)."""


def _png_tag(fig: Any, dpi: float, alt: str) -> str:
    from qe_nb.ui.render import figure_png

    png = figure_png(fig, dpi=dpi)
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}">'


def _figure(fig: Any, dpi: float, caption: str) -> str:
    return f"<figure>{_png_tag(fig, dpi, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _settings_table(scores: xr.Dataset, scores_path: str | None) -> str:
    sim = scores["similarity"]
    attrs = scores.attrs
    rows = [
        ("scores file", scores_path or "(in memory)"),
        ("cases", f"{sim.sizes['case']}"),
        ("members (algorithms)", ", ".join(map(str, sim["algorithm"].values))),
        ("structures", str(attrs.get("label_scheme_text") or ", ".join(map(str, sim["label"].values)))),
        ("metrics", ", ".join(map(str, sim["metric"].values))),
        ("fusion", str(attrs.get("fusion", ""))),
        ("similarity", str(attrs.get("similarity_mode", "fusion"))),
        ("distance units", str(attrs.get("distance_units", "mm"))),
        ("cohort folder", str(attrs.get("source", ""))),
        ("candidate files", str(attrs.get("masks_pattern", ""))),
        ("ground truth", "yes (quality)" if "quality" in scores else "no"),
        ("scored", f"{attrs.get('created', '')} with qe-nb {attrs.get('qe_nb_version', '')}"),
    ]
    body = "".join(f'<tr><th class="qe-text">{html.escape(k)}</th><td class="qe-text">{html.escape(v)}</td></tr>'
                   for k, v in rows if v)
    return f'<table class="qe-table">{body}</table>'


def _short_alpha(run: Any) -> str:
    """``α = 0.25 (entropy)``: what a figure title says."""
    return f"{run.value_text} ({run.method.replace(':', ' vs ')})"


def _quality_figures(scores: xr.Dataset, sim: xr.DataArray, run: Any, dpi: float) -> str:
    from qe_nb.core.alarms import alarms, risk
    from qe_nb.core.statistics import case_quality
    from qe_nb.ui.figures import alarm_count_vs_quality, alarm_histogram
    from qe_nb.ui.style import metric_units

    counts = risk(alarms(sim, run.alpha, pool=run.pool, mad_scale=run.mad_scale))
    what = _short_alpha(run)
    if "quality" in scores and "dice" in scores["quality"]["metric"].values:
        quality = case_quality(scores["quality"], "dice", skipna=True)
        distance = None
        dist_label = "distance"
        for metric in ("hd95", "assd", "hd"):
            if metric in scores["quality"]["metric"].values:
                distance = case_quality(scores["quality"], metric, skipna=True)
                dist_label = f"{metric.upper()} to reference ({metric_units(scores['quality'], metric)})"
                break
        fig = alarm_count_vs_quality(counts, quality, distance, distance_label=dist_label)
        fig.suptitle(f"Alarm counts at {what}", fontsize="medium")
        return _figure(fig, dpi, f"Figure 4: the fusion's quality against the alarm count per case, at {what}.")
    ax = alarm_histogram(counts)
    ax.set_title(f"Alarm counts at {what}", fontsize="medium")
    return _figure(ax.figure, dpi, f"Cases per alarm count at {what} (no ground truth: no Figure 4).")


def _sweep_section(scores: xr.Dataset, sim: xr.DataArray, run: Any, dpi: float) -> str:
    import warnings

    from qe_nb.core.calibration import sweep_table
    from qe_nb.core.statistics import case_quality
    from qe_nb.exceptions import UndefinedValueWarning
    from qe_nb.ui.sweep_figures import sweep_plot
    from qe_nb.ui.terminal import compact_sweep

    quality = (case_quality(scores["quality"], "dice", skipna=True)
               if "quality" in scores and "dice" in scores["quality"]["metric"].values else None)
    chosen = None if isinstance(run.alpha, xr.DataArray) else round(float(run.alpha), 2)
    alphas = sorted({-3.0, -2.0, -1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0}
                    | ({chosen} if chosen is not None else set()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedValueWarning)
        table = sweep_table(sim, alphas=alphas, quality=quality, pool=run.pool, mad_scale=run.mad_scale)
    fig = sweep_plot(table, chosen_alpha=chosen, chosen_label=_short_alpha(run))
    shown = compact_sweep(table).set_index("alpha")
    current = [i for i, a in enumerate(shown.index) if chosen is not None and round(a, 2) == chosen]
    return (_figure(fig, dpi, "Entropy of the alarm counts and Pearson r against α (left); cases per "
                    "alarm count per α (right).")
            + "<p>The sweep (the paper's Tables 1-2; <i>N</i>a: cases with <i>N</i> alarms; the run's α "
              "highlighted):</p>"
            + html_table(shown, current_rows=current, digits=2))


def _thresholds_section(sim: xr.DataArray, run: Any) -> str:
    from qe_nb.core.alarms import threshold_table

    table = threshold_table(sim, run.alpha, pool=run.pool, mad_scale=run.mad_scale)
    return (f"<p>An alarm is raised when a member's similarity to the fusion is worse than its "
            f"threshold (the paper's Table 3), at {html.escape(_short_alpha(run))}:</p>"
            + html_table(table, digits=3))


def _reasons_table(rows: pd.DataFrame, limit: int = 6) -> str:
    shown = rows.head(limit)
    cols = [c for c in ("algorithm", "label", "metric", "value", "direction", "threshold", "excess") if c in shown]
    frame = shown[cols].copy()
    if "excess" in frame:
        frame["excess"] = [("∞" if not np.isfinite(v) else f"{v:.1f}") for v in frame["excess"]]
        frame = frame.rename(columns={"excess": "MADs past"})
    more = len(rows) - len(shown)
    tail = f"<p class='qe-meta'>+{more} more alarm(s) (all of them in the worklist CSV)</p>" if more > 0 else ""
    return html_table(frame, index=False, digits=3) + tail


def _worklist_section(scores: xr.Dataset, sim: xr.DataArray, run: Any, top: int, thumbs: dict[str, str],
                      verdicts: pd.DataFrame | None) -> str:
    from qe_nb.core.reasons import reasons
    from qe_nb.core.statistics import case_quality
    from qe_nb.core.triage import worklist

    missing = scores["missing"] if "missing" in scores else None
    quality = (case_quality(scores["quality"], "dice", skipna=True)
               if "quality" in scores and "dice" in scores["quality"]["metric"].values else None)
    table = worklist(sim, run.alpha, quality=quality, pool=run.pool, mad_scale=run.mad_scale, missing=missing,
                     max_reasons=3, top=top)
    cases = [str(c) for c in table["case"]]
    why = reasons(sim, run.alpha, pool=run.pool, mad_scale=run.mad_scale, cases=cases, missing=missing)
    stored = {} if verdicts is None else {str(r["case"]): r for _, r in verdicts.iterrows()}
    parts = []
    for rank, (_, row) in enumerate(table.iterrows(), start=1):
        case = str(row["case"])
        head = f"#{rank} · {html.escape(case)} · {int(row['risk'])} alarm(s)"
        if "quality" in table and np.isfinite(row.get("quality", np.nan)):
            head += f" · fusion Dice with the reference {float(row['quality']):.2f}"
        verdict = stored.get(case)
        if verdict is not None:
            head += f" · verdict: {html.escape(str(verdict['verdict']))}"
            if str(verdict.get("note", "") or ""):
                head += f" ({html.escape(str(verdict['note']))})"
        rows = why[why["case"] == case]
        body = _reasons_table(rows) if len(rows) else "<p class='qe-meta'>no alarm</p>"
        parts.append(f"<div class='qe-case'><div class='qe-reasons'><h3>{head}</h3>{body}</div>"
                     f"{thumbs.get(case, '')}</div>")
    return (f"<p>The {len(table)} cases with the most alarms at {html.escape(_short_alpha(run))}, "
            "each with its worst alarms first (how many MADs past the threshold) and, when the "
            "files could be read, the slice where its members disagree most.</p>" + "".join(parts))


def _thumbnails(ensemble: xr.Dataset | None, cases: list[str], scores: xr.Dataset, run: Any,
                dpi: float) -> tuple[dict[str, str], str]:
    """PNG ``<figure>`` per case (where members disagree most), and a note when none could be made."""
    if ensemble is None:
        return {}, ("No thumbnails: the cohort's files are not known (pass --ensemble ROOT, with "
                    "--masks/--images as for `qe-nb app`).")
    thumbs = {}
    failed = []
    for case in cases:
        try:
            thumbs[case] = _thumbnail(ensemble, case, scores, run, dpi)
        except (InputError, OSError, KeyError, ValueError) as exc:
            failed.append(f"{case}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    note = ("Thumbnails not drawn for " + "; ".join(failed)) if failed else ""
    return thumbs, note


def _thumbnail(ensemble: xr.Dataset, case: str, scores: xr.Dataset, run: Any, dpi: float) -> str:
    from qe_nb.core.alarms import alarms
    from qe_nb.core.case import score_arrays
    from qe_nb.core.labels import structure_masks
    from qe_nb.data.loading import ensemble_labels, load_images, load_label_maps
    from qe_nb.ui.overlay import OverlayOptions, case_overlay
    from qe_nb.ui.viewer import PREFERRED_MODALITIES, ZOOM_MARGIN, opening_slice, opening_structure

    scheme = ensemble_labels(ensemble)
    maps = load_label_maps(ensemble, case)
    ndim = maps.ndim - 1
    spacing = tuple(float(s) for s in maps.attrs.get("spacing", (1.0,) * ndim))
    fusion = str(scores.attrs.get("fusion", "mav"))
    fused = score_arrays(maps, spacing=spacing, labels=scheme, fusion=fusion, metrics=("dice",),
                         keep_fusion=True)["fused"].values
    fused_masks = structure_masks(fused, scheme)
    scored = {str(a) for a in scores["similarity"]["algorithm"].values}
    names = [str(a) for a in maps["algorithm"].values if str(a) in scored]  # e.g. not a reference
    keep = [i for i, a in enumerate(maps["algorithm"].values) if str(a) in scored]
    members = [np.stack([structure_masks(maps.values[i], scheme)[k] for i in keep])
               for k in range(len(scheme.names))]
    sim = scores["similarity"]
    per_label = None
    if "label" in sim.dims and not run.label_mean:
        flags = alarms(sim, run.alpha, pool=run.pool, mad_scale=run.mad_scale).sel(case=case)
        per_label = flags.sum([d for d in flags.dims if d != "label"])
    k = opening_structure(fused_masks, members, scheme.names, per_label) or 0
    index = None if ndim == 2 else opening_slice(fused_masks[k], members[k], 0)
    if ndim == 3 and index is None:
        index = fused.shape[0] // 2

    def slab(volume: np.ndarray) -> np.ndarray:
        return volume if ndim == 2 else volume[[index]]

    image = np.zeros(slab(fused).shape, np.float32)
    if "image" in ensemble.data_vars and "modality" in ensemble.dims:
        images = load_images(ensemble, case, geometry=maps, missing="skip")
        if images is not None:
            mods = [str(m) for m in images["modality"].values]
            pick = next((m for m in PREFERRED_MODALITIES if m in mods), mods[0] if mods else None)
            if pick is not None:
                image = slab(images.sel(modality=pick).values)
    crop = ZOOM_MARGIN * max(n * d for n, d in zip(fused.shape, spacing, strict=True))
    units = str(maps.attrs.get("units") or scores.attrs.get("distance_units") or "mm")
    ax = case_overlay(image, slab(fused_masks[k]), {a: slab(members[k][i]) for i, a in enumerate(names)},
                      options=OverlayOptions(index=None if ndim == 2 else 0, spacing=spacing, units=units,
                                             fused_name=fusion, crop=crop))
    where = "" if ndim == 2 else f" · slice z = {index}"
    ax.set_title(f"{case} · {scheme.names[k]}{where}", loc="left", fontsize="medium")
    return _figure(ax.figure, dpi, f"{case}: {scheme.names[k]}{where}, where the members disagree most.")


def report_html(
    scores: xr.Dataset | str | os.PathLike,
    *,
    ensemble: xr.Dataset | None = None,
    verdicts: str | os.PathLike | None = None,
    top: int = 10,
    dpi: float = 80,
    thumbnail_dpi: float = 72,
    label_mean: bool | None = None,
    pool: str | None = None,
) -> str:
    """The report of a scored run as one self-contained HTML page.

    Parameters
    ----------
    scores : xarray.Dataset or str or path-like
        The scores cube or its file (:func:`qe_nb.save_scores`).
    ensemble : xarray.Dataset, optional
        The catalogue (:func:`qe_nb.open_ensemble`): adds a thumbnail per top case. By
        default the scores' recorded cohort folder and candidate pattern are tried.
    verdicts : str or path-like, optional
        The triage app's review database (a file or URL) or an old verdict CSV; default
        ``SCORES.reviews.db`` beside the scores file, else ``SCORES.verdicts.csv``, when it exists
        (:func:`qe_nb.ui.verdicts.verdicts_for_report`).
    top : int, default 10
        Worklist cases shown.
    dpi, thumbnail_dpi : float
        Resolution of the figures and of the thumbnails.
    label_mean, pool : optional
        Passed to :func:`qe_nb.run_alpha` (default: what the run's α was settled for).

    Returns
    -------
    str
        The HTML page: figures as ``data:`` PNGs, no scripts, no external resources.

    Raises
    ------
    InputError
        For scores that are not a scores cube, or ``top`` < 1.
    """
    from qe_nb import __version__
    from qe_nb.core.run_alpha import run_alpha
    from qe_nb.pipeline.scores_file import load_scores
    from qe_nb.pipeline.scoring import missing_summary
    from qe_nb.ui.verdicts import verdicts_for_report

    scores_path = None
    if not isinstance(scores, xr.Dataset):
        scores_path = str(Path(os.fspath(scores)).resolve())
        scores = load_scores(scores)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError(f"`top` must be a whole number >= 1; got {top!r}.")
    run = run_alpha(scores, label_mean=label_mean, pool=pool)
    sim = run.similarity(scores)
    if ensemble is None:
        ensemble = _recorded_ensemble(scores)
    table, verdict_path = verdicts_for_report(verdicts, scores_path)

    from qe_nb.core.triage import worklist

    top_cases = [str(c) for c in worklist(sim, run.alpha, pool=run.pool, mad_scale=run.mad_scale, top=top)["case"]]
    thumbs, thumb_note = _thumbnails(ensemble, top_cases, scores, run, thumbnail_dpi)
    title = f"qe-nb report: {Path(scores_path).name if scores_path else 'scores'}"
    missing = missing_summary(scores)
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='qe-meta'>Made {datetime.now(timezone.utc).isoformat(timespec='seconds')} by qe-nb "
        f"{html.escape(__version__)}: unsupervised quality estimation of a segmentation ensemble "
        "(Kofler et al. 2021). An alarm: a member far from the fusion compared with the same member "
        "on the other cases.</p>",
        f"<p class='qe-alpha'><b>The run's α</b>: {html.escape(run.text)}</p>",
        f"<p class='qe-warn'>{html.escape(missing)}</p>" if missing else "",
        "<h2>Run settings</h2>", _settings_table(scores, scores_path),
        "<h2>Alarms and quality</h2>", _quality_figures(scores, sim, run, dpi),
        "<h2>Choosing α</h2>", _sweep_section(scores, sim, run, dpi),
        "<h2>Thresholds</h2>", _thresholds_section(sim, run),
        "<h2>Worklist: the cases to look at first</h2>",
        f"<p class='qe-meta'>{html.escape(thumb_note)}</p>" if thumb_note else "",
        _worklist_section(scores, sim, run, top, thumbs, table),
    ]
    if table is not None:
        sections += ["<h2>Verdicts</h2>",
                     f"<p class='qe-meta'>{len(table)} verdict(s) from {html.escape(str(verdict_path))}</p>",
                     html_table(table, index=False)]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>"
            + "".join(sections) + "</body></html>\n")


def _recorded_ensemble(scores: xr.Dataset) -> xr.Dataset | None:
    """The cohort the scores record (``source`` and ``masks_pattern``), when it is still there."""
    import warnings

    from qe_nb.data.ensemble import open_ensemble

    root, masks = str(scores.attrs.get("source", "")), str(scores.attrs.get("masks_pattern", ""))
    if not root or not masks or not Path(root).is_dir():
        return None
    images = str(scores.attrs.get("images_pattern", "")) or None
    labels = str(scores.attrs.get("label_scheme", "")) or None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return open_ensemble(root, masks=masks, images=images, labels=labels)
    except (InputError, OSError):
        return None


def write_report(scores: xr.Dataset | str | os.PathLike, out: str | os.PathLike, **options: Any) -> Path:
    """Write :func:`report_html` to ``out`` (atomically) and return its path."""
    from qe_nb.data.files import atomic_write_text

    path = Path(os.fspath(out))
    atomic_write_text(path, report_html(scores, **options))
    return path

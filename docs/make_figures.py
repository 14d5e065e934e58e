"""Save a PNG of every figure kind of :mod:`qe_nb.ui.plots` to ``docs/figures/``.

Run by hand from the repository root (it takes a few seconds)::

    python docs/make_figures.py

Cohort figures (``figure4``, ``sweep``, ``thresholds``, ``histogram``) come from a seeded fake
scores cube built here with xarray: 68 cases (as in the paper's MR experiment), five
algorithms, two BraTS regions, Dice and HD95, with a latent per-case difficulty that drives
both the candidates' disagreement and the fusion's quality, and a few empty structures
(infinite distances). ``--synthetic N`` scores a real synthetic cohort of N cases instead
(``qe_nb.synthetic_cohort`` + ``qe_nb.score``; slower, about a second per case). Either way
``qe_nb.thresholds``, ``qe_nb.alarms``, ``qe_nb.risk`` and ``qe_nb.sweep_table`` compute the
thresholds, alarms and the sweep, at the paper's alpha grid and chosen alpha 0.1.

The overlay (``overlay``) is the real BraTS case in ``../shared/data/brats-example``: the T1c
image, the five candidates and BraTS Toolkit's majority-vote fusion, tumour core (labels 1
and 4), at the fusion's centre of mass. Dice is each candidate's with the fusion; this single
case has no cohort, so no alarm count is shown for it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qe_nb.ui import plots  # noqa: E402
from qe_nb.ui.style import metric_units  # noqa: E402

OUT = REPO / "docs" / "figures"
SHARED = Path(os.environ.get("QE_NB_SHARED", REPO.parent / "shared"))
CASE = SHARED / "data" / "brats-example" / "TCGA-DU-7294"
ALGORITHMS = ("hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20")
ALPHAS = (-3.0, -2.0, -1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0)
CHOSEN_ALPHA = 0.1
DPI = 100


def fake_scores(seed: int = 7, n_cases: int = 68) -> xr.Dataset:
    """A scores cube with the dims and coords of DESIGN §3, from seeded random numbers."""
    rng = np.random.default_rng(seed)
    cases = [f"case-{i:03d}" for i in range(n_cases)]
    labels = ["whole_tumor", "tumor_core"]
    metrics = ["dice", "hd95"]
    difficulty = rng.beta(1.3, 3.0, n_cases)  # most cases easy, a tail of hard ones
    skill = np.array([0.02, 0.03, 0.0, 0.05, 0.01])  # per-algorithm offset from the fusion
    label_hard = np.array([0.0, 0.08])  # tumour core is harder than whole tumour

    n_alg, n_lab = len(ALGORITHMS), len(labels)
    spread = difficulty[:, None, None] * rng.gamma(2.0, 0.25, (n_cases, n_alg, n_lab))
    sim_dice = np.clip(
        0.97 - skill[None, :, None] - label_hard[None, None, :] - spread
        + rng.normal(0, 0.01, (n_cases, n_alg, n_lab)),
        0.0, 1.0,
    )
    sim_hd = np.exp(0.3 + 3.0 * (1 - sim_dice) + rng.normal(0, 0.25, sim_dice.shape))
    q_dice = np.clip(
        0.93 - label_hard[None, :] - 0.75 * difficulty[:, None]
        + rng.normal(0, 0.04, (n_cases, n_lab)),
        0.0, 1.0,
    )
    q_hd = np.exp(0.8 + 3.5 * (1 - q_dice) + rng.normal(0, 0.3, q_dice.shape))

    # Empty structures: a missed tumour core in a candidate, and in three fusions.
    hard = np.argsort(difficulty)[-6:]
    for c in hard[:3]:
        a = rng.integers(n_alg)
        sim_dice[c, a, 1], sim_hd[c, a, 1] = 0.0, np.inf
    for c in hard[3:]:
        q_dice[c, 1], q_hd[c, 1] = 0.0, np.inf

    coords = {
        "case": cases,
        "algorithm": list(ALGORITHMS),
        "label": labels,
        "metric": metrics,
        "higher_is_better": ("metric", np.array([True, False])),
        "units": ("metric", np.array(["1", "mm"], dtype=object)),
    }
    return xr.Dataset(
        {
            "similarity": (("case", "algorithm", "label", "metric"),
                           np.stack([sim_dice, sim_hd], axis=-1)),
            "quality": (("case", "label", "metric"), np.stack([q_dice, q_hd], axis=-1)),
        },
        coords=coords,
        attrs={"fusion": "fake", "label_scheme": "brats-regions", "source": "docs/make_figures.py"},
    )


def cohort_results(scores: xr.Dataset):
    """Thresholds at the chosen alpha, the risk per case and the sweep table, by the core."""
    import qe_nb

    similarity = scores["similarity"]
    quality_dice = scores["quality"].sel(metric="dice").mean("label")
    with warnings.catch_warnings():
        # r is undefined at alpha -3 / -2 (every case alarms everywhere): NaN in the table.
        warnings.simplefilter("ignore", qe_nb.UndefinedValueWarning)
        table = qe_nb.sweep_table(similarity, ALPHAS, quality=quality_dice)
    thresholds = qe_nb.thresholds(similarity, CHOSEN_ALPHA)
    risk = qe_nb.risk(qe_nb.alarms(similarity, CHOSEN_ALPHA))
    return thresholds, risk, table


def synthetic_scores(n_cases: int) -> xr.Dataset:
    """A real run: qe_nb.synthetic_cohort written to a temporary folder, then qe_nb.score."""
    import tempfile

    import qe_nb

    with tempfile.TemporaryDirectory() as tmp:
        ensemble = qe_nb.synthetic_cohort(Path(tmp) / "cohort", n_cases=n_cases, seed=1,
                                          images=False)
        return qe_nb.score(ensemble, fusion="mav", metrics=("dice", "hd95"), progress=False).load()


def brats_overlay():
    import SimpleITK as sitk

    def read(path: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))

    image = sitk.ReadImage(str(CASE / "images" / "t1c.nii.gz"))
    spacing = image.GetSpacing()[::-1]  # SimpleITK (x, y, z) -> numpy (z, y, x)
    t1c = sitk.GetArrayFromImage(image)
    fused = read(CASE / "fusion-brats-toolkit" / "mav.nii.gz")
    candidates = {a: read(CASE / "segmentation" / f"{a}.nii.gz") for a in ALGORITHMS}
    core = (1, 4)
    from matplotlib.figure import Figure

    from qe_nb.core.metrics import dice as dice_of

    f = np.isin(fused, core)
    dice = {a: dice_of(np.isin(c, core), f) for a, c in candidates.items()}
    fig = Figure(figsize=(12.5, 5.4), layout="constrained")
    whole, zoom = fig.subplots(1, 2, width_ratios=[1.0, 1.0])
    common = dict(structure=core, spacing=spacing, fused_name="mav fusion (BraTS Toolkit)")
    plots.case_overlay(t1c, fused, candidates, ax=whole,
                       options=plots.OverlayOptions(legend=False, **common))
    plots.case_overlay(t1c, fused, candidates, ax=zoom, dice=dice,
                       options=plots.OverlayOptions(crop=15.0, **common))
    whole.set_title(f"TCGA-DU-7294, T1c, {whole.get_title(loc='left')}\n"
                    "tumour core (labels 1, 4) at the fusion's centre of mass",
                    loc="left", fontsize="medium")
    zoom.set_title("zoom (15 mm margin); legend: Dice of each\ncandidate's tumour core "
                   "with the fusion's", loc="left", fontsize="medium")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--synthetic", type=int, metavar="N_CASES", default=0,
        help="score a real synthetic cohort of N_CASES (qe_nb.synthetic_cohort + qe_nb.score; "
             "about a second per case) instead of the fake cube",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        scores, source = synthetic_scores(args.synthetic), f"a synthetic cohort of {args.synthetic} cases"
    else:
        scores, source = fake_scores(), "a seeded fake scores cube"
    thresholds, risk, table = cohort_results(scores)
    quality = scores["quality"]
    figures = {
        "figure4": plots.alarm_count_vs_quality(
            risk,
            quality.sel(metric="dice").mean("label"),
            quality.sel(metric="hd95", label="tumor_core"),
            distance_label=f"tumour core HD95 to reference ({metric_units(quality, 'hd95')})",
            dice_label="mean Dice with reference",
        ),
        "sweep": plots.sweep_plot(table, chosen_alpha=CHOSEN_ALPHA),
        "thresholds": plots.threshold_plot(thresholds),
        "histogram": plots.alarm_histogram(risk).figure,
    }
    if CASE.is_dir():
        figures["overlay"] = brats_overlay()
    else:
        print(f"skipping overlay.png: the real BraTS case is not at {CASE}")
    for name, fig in figures.items():
        path = OUT / f"{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")
    print(f"cohort figures from {source} (thresholds, alarms, sweep by qe_nb); "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

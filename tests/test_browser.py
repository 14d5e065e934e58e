"""The widgets in a real headless Chromium: the calibration notebook in JupyterLab, the triage app in Voila.

Expected values come from the core (``qe_nb.alarms``, ``qe_nb.worklist``, ``qe_nb.calibrate``)
computed in this process on the same deterministic data the served notebook builds.
Recipe and pitfalls: ../shared/BROWSER-TESTING.md. Screenshots go to $QE_NB_SCREENSHOTS (docs/screenshots/ to refresh the docs' copies).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from .browser_util import (
    Server,
    browser_page,
    chromium,
    copy_notebooks,
    free_port,
    jupyter_env,
    lab_run_all,
    no_widget_errors,
    start_jupyterlab,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # about 25 s each: servers, kernels, a cohort
    pytest.mark.filterwarnings("ignore::qe_nb.exceptions.UnreliableThresholdWarning"),
]
__all__ = ["browser_page", "chromium"]  # fixtures, imported for pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# Screenshots go to a temporary folder, so a test run leaves the tree clean; set
# QE_NB_SCREENSHOTS=docs/screenshots to refresh the ones the docs show.
SHOTS = Path(os.environ.get("QE_NB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "qe_nb-screenshots")
SHOTS.mkdir(parents=True, exist_ok=True)
CALIBRATE_NB = "02_calibrate_alpha.ipynb"


def _expect():
    from playwright.sync_api import expect

    return expect


# ------------------------------------------------------------------------------- JupyterLab


def _notebook_data(path: Path) -> dict:
    """Run the notebook's code cells in this process up to the one that builds the explorer.

    Those cells make the synthetic cohort and its scores with a fixed seed, so this yields the
    very cube the kernel in JupyterLab holds (line magics such as %matplotlib are dropped).
    """
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    namespace: dict = {"__name__": "__notebook__"}
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if "CalibrationExplorer(" in source:
            namespace["_explorer_source"] = source
            return namespace
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))
        exec(compile(code, f"{path.name}", "exec"), namespace)
    raise AssertionError(f"{path.name} never builds a CalibrationExplorer")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    served = copy_notebooks(NOTEBOOKS, root / "notebooks")
    server = start_jupyterlab(served, root, jupyter_env(root))
    yield server.url.rsplit("/api/", 1)[0]
    server.stop()


def test_calibration_explorer_in_jupyterlab(browser_page, lab):
    """Run 02_calibrate_alpha in JupyterLab; slider and Calibrate agree with the core."""
    import qe_nb

    expect = _expect()
    assert (NOTEBOOKS / CALIBRATE_NB).is_file(), f"{CALIBRATE_NB} is missing from notebooks/"
    data = _notebook_data(NOTEBOOKS / CALIBRATE_NB)
    assert "CalibrationExplorer(scores" in data["_explorer_source"], "the explorer is built from `scores`"
    similarity = data["scores"]["similarity"]

    page = browser_page
    lab_run_all(page, lab, CALIBRATE_NB)
    app = page.locator(".qe-calibration-explorer").first
    expect(app).to_be_visible(timeout=60_000)
    summary = app.locator(".qe-alarm-summary")
    readout = app.locator(".qe-alpha-readout")
    expect(readout).to_have_text(re.compile(r"^-?\d+\.\d\d$"))
    alpha0 = float(readout.inner_text())
    n0 = int(qe_nb.alarms(similarity, alpha0).sum())
    expect(summary).to_contain_text(f"α = {alpha0:.2f} · {n0} alarms")

    # one keyboard step (0.05) to the right
    app.locator(".qe-alpha-slider .noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    alpha1 = round(alpha0 + 0.05, 2)
    n1 = int(qe_nb.alarms(similarity, alpha1).sum())
    expect(readout).to_have_text(f"{alpha1:.2f}")
    expect(summary).to_contain_text(f"α = {alpha1:.2f} · {n1} alarms")
    flagged = int((qe_nb.risk(qe_nb.alarms(similarity, alpha1)).values > 0).sum())
    expect(summary).to_contain_text(f"{flagged} of {similarity.sizes['case']} cases with ≥ 1 alarm")

    app.get_by_role("tab", name=re.compile(r"^worklist")).click()
    table = app.locator(".qe-worklist .qe-worklist-table")
    expect(table).to_be_visible()
    expected = qe_nb.worklist(similarity, alpha1, quality=data.get("quality"))
    first_cells = table.locator("tbody tr > td:first-of-type")
    expect(first_cells.first).to_be_visible()
    n_rows = first_cells.count()
    assert n_rows >= 1
    # expect() retries until the table shows α1's worklist: on a busy machine the tab may still
    # hold the rows of the previous α for a moment after it becomes visible
    expect(first_cells).to_have_text(expected["case"].head(n_rows).tolist())
    expect(table.locator("tbody tr > td:nth-of-type(2)")).to_have_text(
        [str(r) for r in expected["risk"].head(n_rows).tolist()])
    no_widget_errors(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    # the slider at the top of the view: summary, Figure 4 and the worklist tab below it
    app.locator(".qe-alpha-slider").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(SHOTS / "explorer_after_slider.png"))

    # Calibrate (objective entropy, the dropdown's default) sets α to qe_nb.calibrate's
    calibrated = float(qe_nb.calibrate(similarity, objective="entropy"))
    expect(app.locator(".widget-dropdown select").first).to_have_value("entropy")
    app.locator(".qe-calibrate").click()
    expect(readout).to_have_text(f"{calibrated:.2f}")
    n_cal = int(qe_nb.alarms(similarity, calibrated).sum())
    expect(summary).to_contain_text(f"α = {calibrated:.2f} · {n_cal} alarms")
    # the slider's own readout formats with d3, whose minus sign is U+2212
    expect(app.locator(".qe-alpha-slider .widget-readout")).to_have_text(
        f"{calibrated:.2f}".replace("-", "\N{MINUS SIGN}"))


# ------------------------------------------------------------------------------- Voila app


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A small synthetic cohort with images and ground truth, scored and saved."""
    import qe_nb
    from qe_nb.data.synth import IMAGES, MASKS, REFERENCE

    root = tmp_path_factory.mktemp("triage")
    ensemble = qe_nb.synthetic_cohort(root / "cohort", kind="glioma", n_cases=10, n_algorithms=3,
                                      shape=(24, 32, 32), seed=4)
    scores = qe_nb.score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False)
    path = qe_nb.save_scores(scores, root / "scores.nc")
    return {"root": root, "scores_path": path, "scores": scores,
            "args": ["--ensemble", str(root / "cohort"), "--masks", MASKS, "--reference", REFERENCE,
                     "--images", IMAGES]}


def _start_app(cohort, name: str) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "qe_nb.cli", "app", str(cohort["scores_path"]), *cohort["args"],
           "--port", str(port)]
    env = jupyter_env(cohort["root"] / "jupyter")
    return Server(cmd, f"http://127.0.0.1:{port}/", env, cohort["root"] / f"{name}.log", port=port)


def _open_app(page, server: Server):
    expect = _expect()
    page.goto(server.url, timeout=180_000)  # 'load' fires once Voila has run every cell
    app = page.locator(".qe-triage-app")
    expect(app).to_be_visible(timeout=60_000)
    return app


def test_triage_app_in_voila(browser_page, cohort):
    """Open the top case, record a verdict, restart the app: the verdict is still there."""
    import qe_nb
    from qe_nb.store import ReviewStore

    expect = _expect()
    page = browser_page
    scores = cohort["scores"]
    similarity = scores["similarity"]
    quality = scores["quality"].sel(metric="dice").mean("label")
    calibrated = float(qe_nb.calibrate(similarity, objective="pearson", quality=quality))
    expected = qe_nb.worklist(similarity, calibrated, quality=quality)
    database = cohort["scores_path"].with_name("scores.reviews.db")
    assert not database.exists()

    server = _start_app(cohort, "voila-1")
    try:
        app = _open_app(page, server)
        expect(app.locator(".qe-alpha-readout")).to_have_text(f"{calibrated:.2f}")
        rows = app.locator(".qe-worklist-case")
        expect(rows).to_have_count(len(expected))
        assert [t.strip() for t in rows.all_inner_texts()] == expected["case"].tolist()
        n = int(qe_nb.alarms(similarity, calibrated).sum())
        expect(app.locator(".qe-alarm-summary")).to_contain_text(f"α = {calibrated:.2f} · {n} alarms")

        top = str(expected["case"].iloc[0])
        rows.first.click()
        expect(app.locator(".qe-case-title")).to_have_text(top)
        viewer = app.locator(".qe-case-viewer")
        expect(viewer).to_contain_text(f"case {top}")
        expect(viewer.locator(".qe-overlay img")).to_be_visible()
        expect(viewer.locator(".qe-case-scores-table")).to_be_visible()
        expect(app.locator(".qe-case-header")).to_contain_text(f"{int(expected['risk'].iloc[0])} alarms")

        app.locator(".qe-verdict-note input").fill("enhancing rim missed")
        expect(app.locator(".qe-verdict-reject")).to_be_disabled()  # who is reviewing?
        app.locator(".qe-reviewer input").fill("Ana")
        app.locator(".qe-verdict-reject").click()
        expect(app.locator(".qe-verdict-status")).to_contain_text(f"saved: {top} → reject by Ana")
        expect(app.locator(".qe-worklist-info").first).to_contain_text("reject")
        stored = ReviewStore(database).history()
        assert stored[["case", "verdict", "note", "reviewer"]].values.tolist() == [
            [top, "reject", "enhancing rim missed", "Ana"]]

        # the second case, to check that selecting a row switches the viewer
        second = str(expected["case"].iloc[1])
        rows.nth(1).click()
        expect(viewer).to_contain_text(f"case {second}")
        rows.first.click()
        expect(viewer).to_contain_text(f"case {top}")
        expect(app.locator(".qe-case-title")).to_have_text(top)  # drawn last
        expect(rows.first).to_have_text(f"▶ {top}")
        expect(page.locator(".jp-OutputArea-output[data-mime-type*='stderr']")).to_have_count(0)
        no_widget_errors(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "triage_app_case_open.png"), full_page=True)

        # α moves the worklist to what qe_nb.worklist says
        app.locator(".qe-alpha-slider .noUi-handle").focus()
        page.keyboard.press("ArrowLeft")
        alpha = round(calibrated - 0.05, 2)
        expect(app.locator(".qe-alpha-readout")).to_have_text(f"{alpha:.2f}")
        moved = qe_nb.worklist(similarity, alpha, quality=quality)
        expect(app.locator(".qe-alarm-summary")).to_contain_text(
            f"α = {alpha:.2f} · {int(qe_nb.alarms(similarity, alpha).sum())} alarms")
        expect(rows.first).to_contain_text(str(moved["case"].iloc[0]))
        assert [t.strip().lstrip("▶ ") for t in rows.all_inner_texts()] == moved["case"].tolist()
    finally:
        server.stop()
    assert server.proc.returncode is not None

    # a new app process reads the verdict back
    server = _start_app(cohort, "voila-2")
    try:
        app = _open_app(page, server)
        row = app.locator(".qe-worklist-row", has=page.locator(".qe-worklist-case", has_text=top))
        expect(row.locator(".qe-worklist-info")).to_contain_text("reject")
        row.locator(".qe-worklist-case").click()
        expect(app.locator(".qe-case-header")).to_contain_text("verdict: reject (enhancing rim missed) by Ana")
        expect(app.locator(".qe-verdict-note input")).to_have_value("enhancing rim missed")
        expect(app).to_contain_text("1 reviewed")
        assert np.isfinite(calibrated)
    finally:
        server.stop()


# ------------------------------------------------------------------------------- BU-BIL (2-D)

BU_BIL = REPO.parent / "shared" / "data" / "bu-bil-fibroblasts"
if os.environ.get("QE_NB_SHARED"):
    BU_BIL = Path(os.environ["QE_NB_SHARED"]) / "data" / "bu-bil-fibroblasts"
BU_BIL_FILES = ["--masks", "{case}/crowd_mturk_annotation3-{algorithm}.png", "--reference", "{case}/gold.png"]


def test_bu_bil_scored_by_the_cli_and_opened_in_the_case_viewer(browser_page, tmp_path):
    """The real 2-D cohort end to end: `qe-nb score` on its 47 PNG cases, then `qe-nb app` in Voila;
    case m08 (11 alarms at the paper's α = 0.1, thresholds pooled over the crowd workers) opens in the
    viewer with its cell image, every annotator's outline and no slice slider."""
    import subprocess

    import qe_nb

    if not (BU_BIL / "m01" / "gold.png").is_file():
        pytest.skip(f"BU-BIL is not at {BU_BIL} (../shared is absent; set QE_NB_SHARED to point at it)")
    expect = _expect()
    page = browser_page
    scores_path = tmp_path / "bu-bil.nc"
    done = subprocess.run([sys.executable, "-m", "qe_nb.cli", "score", str(BU_BIL), *BU_BIL_FILES,
                           "--labels", "binary", "--out", str(scores_path), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "47 cases scored" in done.stdout
    scores = qe_nb.load_scores(scores_path)
    assert scores.attrs["distance_units"] == "px"

    port = free_port()
    cmd = [sys.executable, "-m", "qe_nb.cli", "app", str(scores_path), "--ensemble", str(BU_BIL), *BU_BIL_FILES,
           "--images", "{case}/image.png", "--labels", "binary", "--pool", "all", "--alpha", "0.1", "--rows", "47",
           "--port", str(port)]
    server = Server(cmd, f"http://127.0.0.1:{port}/", jupyter_env(tmp_path / "jupyter"), tmp_path / "voila.log",
                    port=port)
    try:
        app = _open_app(page, server)
        expect(app).to_contain_text("thresholds pooled over all members")
        expect(app).to_contain_text("hd95 (px)")
        flags = qe_nb.alarms(scores["similarity"], 0.1, pool="all").sel(case="m08")
        app.locator(".qe-worklist-case", has_text=re.compile(r"^\W*m08$")).click()
        expect(app.locator(".qe-case-header")).to_contain_text(f"{int(flags.sum())} alarms at α = 0.10")
        viewer = app.locator(".qe-case-viewer")
        expect(viewer).to_contain_text("case m08")
        expect(viewer).to_contain_text(f"{int(flags.sum())} in all")
        expect(viewer).to_contain_text("grid 1030 x 1300 px")
        expect(viewer.locator(".qe-overlay img")).to_be_visible()
        # 2-D: no slice slider, no view buttons; the zoom box instead
        expect(viewer.locator(".qe-slice-slider")).to_be_hidden()
        expect(viewer.locator(".qe-view-buttons")).to_be_hidden()
        expect(viewer.locator(".qe-zoom")).to_be_visible()
        expect(viewer.locator(".qe-case-scores-table")).to_contain_text("foreground hd95 (px)")
        expect(page.locator(".jp-OutputArea-output[data-mime-type*='stderr']")).to_have_count(0)
        no_widget_errors(page)
        box = viewer.locator(".qe-overlay img").bounding_box()
        assert box["width"] > 300 and box["height"] > 200
        SHOTS.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(path=str(SHOTS / "bu-bil-case-viewer.png"))
    finally:
        server.stop()


# ------------------------------------------------------------------------------- issue 14


def test_worklist_rows_at_the_default_30_rows(browser_page, tmp_path):
    """`qe-nb app` at its default --rows 30 over 40 cases: every row is a full row (button and
    text readable), not a sliver; the worklist scrolls instead."""
    import qe_nb
    from qe_nb.data.synth import IMAGES, MASKS

    expect = _expect()
    page = browser_page
    ensemble = qe_nb.synthetic_cohort(tmp_path / "cohort", kind="glioma", n_cases=40, n_algorithms=3,
                                      shape=(16, 24, 24), seed=5)
    scores = qe_nb.score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False)
    path = qe_nb.save_scores(scores, tmp_path / "scores.nc")
    port = free_port()
    cmd = [sys.executable, "-m", "qe_nb.cli", "app", str(path), "--ensemble", str(tmp_path / "cohort"),
           "--masks", MASKS, "--images", IMAGES, "--port", str(port)]
    server = Server(cmd, f"http://127.0.0.1:{port}/", jupyter_env(tmp_path / "jupyter"), tmp_path / "voila.log",
                    port=port)
    try:
        app = _open_app(page, server)
        rows = app.locator(".qe-worklist-row")
        expect(rows).to_have_count(30)
        heights = [rows.nth(i).bounding_box()["height"] for i in range(30)]
        assert min(heights) >= 28, heights  # a button's height: no row squeezed
        buttons = app.locator(".qe-worklist-case")
        assert min(buttons.nth(i).bounding_box()["height"] for i in range(30)) >= 24
        box = app.locator(".qe-worklist").bounding_box()
        assert box["height"] <= 660  # the list scrolls inside its box
        no_widget_errors(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "triage_app_30_rows.png"))
    finally:
        server.stop()


def test_app_errors_in_the_page_are_one_line(browser_page, tmp_path):
    """A failure while the app builds (here: a verdict file that is not one) shows one line in the
    page, no Python traceback."""
    import qe_nb

    expect = _expect()
    page = browser_page
    ensemble = qe_nb.synthetic_cohort(tmp_path / "cohort", kind="glioma", n_cases=4, n_algorithms=3,
                                      shape=(16, 16, 16), seed=6)
    scores = qe_nb.score(ensemble, fusion="mav", metrics=("dice",), n_jobs=1, progress=False)
    path = qe_nb.save_scores(scores, tmp_path / "scores.nc")
    bad = tmp_path / "verdicts.csv"
    bad.write_text("not,a\nverdict,file\n")
    port = free_port()
    cmd = [sys.executable, "-m", "qe_nb.cli", "app", str(path), "--verdicts", str(bad), "--port", str(port)]
    server = Server(cmd, f"http://127.0.0.1:{port}/", jupyter_env(tmp_path / "jupyter"), tmp_path / "voila.log",
                    port=port)
    try:
        page.goto(server.url, timeout=180_000)
        error = page.locator(".qe-error")
        expect(error).to_be_visible(timeout=60_000)
        expect(error).to_contain_text("verdicts.csv")
        assert "Traceback" not in page.content()
    finally:
        server.stop()


def test_report_opens_from_disk_in_chromium(chromium, tmp_path):
    """`qe-nb report` of a 20-case demo: opened from file:// (no server), every figure decodes,
    nothing is requested from anywhere; screenshot report.png."""
    import qe_nb
    from qe_nb.data.synth import IMAGES, MASKS, REFERENCE

    expect = _expect()
    # a page of its own: browser_page's route aborts everything not on 127.0.0.1, file:// too
    context = chromium.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    qe_nb.synthetic_cohort(tmp_path / "cohort", kind="glioma", n_cases=20, n_algorithms=5, shape=(24, 32, 32),
                           seed=0)
    scores = tmp_path / "scores.nc"
    from qe_nb.cli import main

    assert main(["score", str(tmp_path / "cohort"), "--masks", MASKS, "--reference", REFERENCE, "--labels",
                 "brats-regions", "--out", str(scores), "--quiet", "--jobs", "1"]) == 0
    out = tmp_path / "report.html"
    assert main(["report", str(scores), "--out", str(out), "--ensemble", str(tmp_path / "cohort"), "--masks",
                 MASKS, "--reference", REFERENCE, "--images", IMAGES, "--top", "5"]) == 0
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    expect(page.locator("h1")).to_have_text("qe-nb report: scores.nc")
    expect(page.locator(".qe-alpha")).to_contain_text("The run's α: α = ")
    images = page.locator("img")
    expect(images).to_have_count(2 + 5)
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 100)")
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "report.png"))
    context.close()

"""A reading room in a real headless Chromium: two reviewers in two browser contexts on one
token-protected `qe-nb app`, a context without the token, and markup in a note.

One server for the module (``qe-nb app --token ... --refresh 2``, a small synthetic cohort with
its files). Recipe and pitfalls: ../shared/BROWSER-TESTING.md. The screenshot of the two
reviewers' verdicts goes to $QE_NB_SCREENSHOTS (default a temporary folder) and, when the
folder exists, to ../notes/two_reviewers.png.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

from .browser_util import (
    OFF_HOST,
    Server,
    browser_page,
    chromium,
    free_port,
    jupyter_env,
    no_widget_errors,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::qe_nb.exceptions.UnreliableThresholdWarning"),
]
__all__ = ["browser_page", "chromium"]  # fixtures, imported for pytest

REPO = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("QE_NB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "qe_nb-screenshots")
NOTES = REPO.parent / "notes"
TOKEN = "reading-room-test-token"
EVIL = "<img src=x onerror=alert(1)>"


def _expect():
    from playwright.sync_api import expect

    return expect


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """A scored synthetic cohort and one token-protected app server over it."""
    import qe_nb
    from qe_nb.data.synth import IMAGES, MASKS, REFERENCE

    root = tmp_path_factory.mktemp("room")
    ensemble = qe_nb.synthetic_cohort(root / "cohort", kind="glioma", n_cases=8, n_algorithms=3,
                                      shape=(16, 24, 24), seed=11)
    scores = qe_nb.score(ensemble, fusion="mav", metrics=("dice", "hd95"), n_jobs=1, progress=False)
    path = qe_nb.save_scores(scores, root / "scores.nc")
    port = free_port()
    cmd = [sys.executable, "-m", "qe_nb.cli", "app", str(path), "--ensemble", str(root / "cohort"),
           "--masks", MASKS, "--reference", REFERENCE, "--images", IMAGES, "--labels", "brats-regions",
           "--port", str(port), "--token", TOKEN, "--refresh", "2"]
    server = Server(cmd, f"http://127.0.0.1:{port}/", jupyter_env(root / "jupyter"), root / "app.log", port=port)
    try:
        yield {"server": server, "base": f"http://127.0.0.1:{port}", "db": root / "scores.reviews.db",
               "scores": scores}
    finally:
        server.stop()


def _context(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.route(OFF_HOST, lambda route: route.abort())
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return context, page, dialogs


def _open(page, url: str):
    expect = _expect()
    page.goto(url, timeout=180_000)  # 'load' fires once Voila has run the notebook
    app = page.locator(".qe-triage-app")
    expect(app).to_be_visible(timeout=90_000)
    return app


def _row(app, case: str):
    return app.locator(".qe-worklist-row", has=app.page.locator(".qe-worklist-case", has_text=re.compile(
        rf"^\W*{re.escape(case)}$")))


def test_two_reviewers_at_once_see_each_others_verdicts(chromium, room):
    """Ana K (name typed in the page) and Ben (name in the URL) record verdicts on different cases at
    the same time; Ben's page shows Ana's after the refresh button, Ana's shows Ben's by the
    periodic refresh; both with the right names, and the history of each case says who."""
    from qe_nb.store import ReviewStore

    expect = _expect()
    ctx_a, page_a, dialogs_a = _context(chromium)
    ctx_b, page_b, dialogs_b = _context(chromium)
    try:
        app_a = _open(page_a, f"{room['base']}/?token={TOKEN}")
        app_b = _open(page_b, f"{room['base']}/?token={TOKEN}&reviewer=Ben")
        cases = [t.strip() for t in app_a.locator(".qe-worklist-case").all_inner_texts()]
        first, second = cases[0], cases[1]

        # Ana: no name yet -> the buttons wait, with a hint
        _row(app_a, first).locator(".qe-worklist-case").click()
        expect(app_a.locator(".qe-case-title")).to_have_text(first)
        expect(app_a.locator(".qe-reviewer-hint")).to_contain_text("enter your name")
        expect(app_a.locator(".qe-verdict-reject")).to_be_disabled()
        app_a.locator(".qe-reviewer input").press_sequentially("Ana K", delay=30)  # key by key, a space inside
        expect(app_a.locator(".qe-verdict-reject")).to_be_enabled()
        expect(app_a.locator(".qe-reviewer input")).to_have_value("Ana K")
        app_a.locator(".qe-verdict-note input").fill("rim missed")

        # Ben: named by the URL
        expect(app_b.locator(".qe-reviewer input")).to_have_value("Ben")
        _row(app_b, second).locator(".qe-worklist-case").click()
        expect(app_b.locator(".qe-case-title")).to_have_text(second)
        expect(app_b.locator(".qe-verdict-accept")).to_be_enabled()

        # both at once
        app_a.locator(".qe-verdict-reject").click()
        app_b.locator(".qe-verdict-accept").click()
        expect(app_a.locator(".qe-verdict-status")).to_contain_text(f"saved: {first} → reject by Ana")
        expect(app_b.locator(".qe-verdict-status")).to_contain_text(f"saved: {second} → accept by Ben")

        app_b.locator(".qe-refresh").click()  # Ben: the button
        for app in (app_b, app_a):  # Ana: the periodic refresh (2 s), no click
            expect(_row(app, first).locator(".qe-worklist-info")).to_contain_text("reject", timeout=20_000)
            expect(_row(app, first).locator(".qe-verdict-by")).to_contain_text("Ana", timeout=20_000)
            expect(_row(app, second).locator(".qe-worklist-info")).to_contain_text("accept", timeout=20_000)
            expect(_row(app, second).locator(".qe-verdict-by")).to_contain_text("Ben", timeout=20_000)
            expect(app.locator(".qe-worklist").locator("xpath=..")).to_contain_text("2 reviewed", timeout=20_000)
        # presence: each sees the case the other has open
        expect(_row(app_a, second).locator(".qe-opened-by")).to_contain_text("open by Ben", timeout=20_000)
        expect(_row(app_b, first).locator(".qe-opened-by")).to_contain_text("open by Ana", timeout=20_000)
        # Ben opens Ana's case: its history names her
        _row(app_b, first).locator(".qe-worklist-case").click()
        history = app_b.locator(".qe-verdict-history")
        expect(history.locator(".qe-history-reviewer")).to_have_text(["Ana K"])
        expect(history.locator(".qe-history-note")).to_have_text(["rim missed"])
        expect(app_b.locator(".qe-case-header")).to_contain_text("by Ana")
        no_widget_errors(page_a)
        no_widget_errors(page_b)
        assert dialogs_a == dialogs_b == []

        current = ReviewStore(room["db"]).current().set_index("case")
        assert current.loc[first, ["verdict", "reviewer", "note"]].tolist() == ["reject", "Ana K", "rim missed"]
        assert current.loc[second, ["verdict", "reviewer"]].tolist() == ["accept", "Ben"]
        assert current.loc[first, "seconds"] > 0 and current.loc[first, "scores_file"].endswith("scores.nc")

        _row(app_a, second).locator(".qe-worklist-case").click()  # Ana looks at Ben's case
        expect(app_a.locator(".qe-verdict-history .qe-history-reviewer")).to_have_text(["Ben"])
        SHOTS.mkdir(parents=True, exist_ok=True)
        for folder in (SHOTS, NOTES):
            if folder.is_dir():
                page_a.screenshot(path=str(folder / "two_reviewers.png"), full_page=False)
    finally:
        ctx_a.close()
        ctx_b.close()


def test_a_context_without_the_token_gets_no_app(chromium, room):
    expect = _expect()
    context, page, _ = _context(chromium)
    try:
        response = page.goto(f"{room['base']}/", timeout=60_000)
        assert response is not None and "/login" in page.url
        expect(page.locator("#password_input")).to_be_visible()
        assert page.locator(".qe-triage-app").count() == 0
        response = page.goto(f"{room['base']}/?token=not-{TOKEN}", timeout=60_000)
        assert "/login" in page.url and page.locator(".qe-triage-app").count() == 0
        # the login form with the token lets the same context in
        page.locator("#password_input").fill(TOKEN)
        page.locator("#login_submit").click()
        expect(page.locator(".qe-triage-app")).to_be_visible(timeout=90_000)
    finally:
        context.close()


def test_markup_in_a_note_and_a_name_is_text(chromium, room):
    """A note and a reviewer name holding `<img src=x onerror=alert(1)>` show as text: no dialog,
    no <img src=x> in the page; the history and the row show the characters."""
    expect = _expect()
    context, page, dialogs = _context(chromium)
    try:
        app = _open(page, f"{room['base']}/?token={TOKEN}")
        case = [t.strip() for t in app.locator(".qe-worklist-case").all_inner_texts()][2]
        _row(app, case).locator(".qe-worklist-case").click()
        app.locator(".qe-reviewer input").fill(EVIL)
        app.locator(".qe-verdict-note input").fill(EVIL)
        app.locator(".qe-verdict-needs-correction").click()
        expect(app.locator(".qe-verdict-status")).to_contain_text(f"saved: {case} → needs correction by {EVIL}")
        expect(app.locator(".qe-verdict-history .qe-history-note").last).to_have_text(EVIL)
        expect(app.locator(".qe-verdict-history .qe-history-reviewer").last).to_have_text(EVIL)
        expect(app.locator(".qe-case-header")).to_contain_text(f"({EVIL})")
        expect(_row(app, case).locator(".qe-verdict-by")).to_contain_text(EVIL)
        page.wait_for_timeout(500)
        assert page.locator("img[src='x']").count() == 0
        assert dialogs == []
    finally:
        context.close()

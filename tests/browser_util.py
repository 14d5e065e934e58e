"""Helpers for the browser tests: Chromium, free ports, servers we start and stop ourselves.

The recipe is ../shared/BROWSER-TESTING.md: Playwright's sync API driving Debian's
``/usr/bin/chromium`` (``playwright install`` cannot download here), JupyterLab and Voila started
on a free port of 127.0.0.1 in their own process group, stopped with SIGTERM to their own PID
(never by name), and every request off 127.0.0.1 aborted so nothing waits on a CDN.

Without Chromium or Playwright the browser tests skip with a one-line reason, unless
``QE_NB_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OFF_HOST = re.compile(r"^(?!https?://127\.0\.0\.1[:/]|data:|blob:|about:).*")


def browser_required() -> bool:
    """True when a missing browser must fail the tests (CI), not skip them."""
    return os.environ.get("QE_NB_REQUIRE_BROWSER", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if browser_required():
        pytest.fail(f"QE_NB_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def missing_requirement() -> str | None:
    """Why the browser tests cannot run here, in one line, or None."""
    import importlib.util

    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"),
                            ("voila", "voila"), ("ipywidgets", "ipywidgets")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install {package}, or pip install -e '.[browser]')"
    return None


_RUNNING: dict[str, object] = {}


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """A headless Debian Chromium driven by Playwright (skips, or fails in CI, without one).

    Every test module imports this fixture, so pytest makes one per module; Playwright's sync API
    runs once per thread, so the first one starts the browser and the others share it.
    """
    if "browser" in _RUNNING:
        yield _RUNNING["browser"]
        return
    reason = missing_requirement()
    if reason:
        _unavailable(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        except Exception as exc:  # Playwright raises its own Error types
            _unavailable(f"Chromium at {CHROMIUM} did not start: {str(exc).splitlines()[0]}")
        _RUNNING["browser"] = browser
        try:
            yield browser
        finally:
            _RUNNING.clear()
            browser.close()


@pytest.fixture
def browser_page(chromium, request, tmp_path) -> Iterator[object]:
    """A fresh page (1280 x 1400) whose requests off 127.0.0.1 are aborted.

    When the test fails, a screenshot of the page is left in the test's tmp_path.
    """
    context = chromium.new_context(viewport={"width": 1280, "height": 1400})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.route(OFF_HOST, lambda route: route.abort())
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        shot = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            print(f"browser screenshot of the failure: {shot}")
        except Exception:  # the page may be gone
            pass
    context.close()


# ------------------------------------------------------------------------------- servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment whose Jupyter config, runtime, settings and IPython dirs live under ``root``.

    JupyterLab's "get notified about Jupyter news?" toast is switched off in the user settings.
    """
    settings = root / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / "cfg"), "JUPYTER_RUNTIME_DIR": str(root / "rt"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / "lab-ws"), "IPYTHONDIR": str(root / "ipy"),
           "JUPYTER_PLATFORM_DIRS": "1", "MPLBACKEND": "Agg"}
    env.update(extra or {})
    return env


class Server:
    """A server process we started (its own session), with its log file; stop() stops only it.

    Ready when ``url`` answers over HTTP, or, with ``port``, as soon as the port accepts a
    connection (Voila serving one notebook would run it for a probing GET).
    """

    def __init__(self, cmd: Sequence[str], url: str, env: Mapping[str, str], log: Path,
                 *, port: int | None = None, cwd: Path | None = None, timeout: float = 120) -> None:
        self.url = url
        self.port = port
        self.log = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self._wait(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early with {self.proc.returncode}; log:\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            try:
                if self.port is not None:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                        return
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except OSError:
                time.sleep(0.25)
        raise TimeoutError(f"{self.url} did not answer within {timeout} s")

    def stop(self) -> None:
        """SIGTERM to our PID (the server shuts its kernels down), then our process group."""
        proc = self.proc
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group we created
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


def start_jupyterlab(root_dir: Path, workdir: Path, env: Mapping[str, str]) -> Server:
    """JupyterLab on a free port of 127.0.0.1, token-less, serving ``root_dir``."""
    import sys

    port = free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser",
           "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", "--ServerApp.token=", "--ServerApp.password=",
           "--IdentityProvider.token=", f"--ServerApp.root_dir={root_dir}"]
    return Server(cmd, f"http://127.0.0.1:{port}/api/status", env, workdir / "lab.log")


def copy_notebooks(source: Path, target: Path) -> Path:
    """Copy a notebook folder (JupyterLab writes checkpoints and autosaves beside what it opens)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return target


# ------------------------------------------------------------------------------- pages


def lab_run_all(page, base_url: str, notebook: str, *, timeout: float = 180_000) -> None:
    """Open a notebook in JupyterLab, wait for the kernel, Run All Cells, wait until all ran."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/lab/tree/{notebook}?reset", timeout=60_000)
    # The status bar's "| Idle" appears only once the kernel is connected (the toolbar's
    # indicator says idle before the kernel has even started; Run All then runs nothing).
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).wait_for(timeout=90_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    expect(prompts.last).to_have_text(re.compile(r"^\[\d+\]:$"), timeout=timeout)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
        1, timeout=timeout)


def no_widget_errors(page) -> None:
    """No 'Loading widget' or 'Error displaying widget' text is left on the page."""
    from playwright.sync_api import expect

    expect(page.get_by_text("Loading widget")).to_have_count(0)
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)

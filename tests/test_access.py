"""Access control of `qe-nb app`'s server, with real HTTP requests to real servers.

The servers are :mod:`qe_nb.ui.voila_server` started with the command line and environment of
:func:`qe_nb.ui.serve.voila_command` (only the notebook is a tiny one, so each page renders fast):
one on loopback with a token, one on loopback without, one on 0.0.0.0 (every interface) with a
token. Requests go through ``http.client`` with the headers a browser, a script or an attacker's
page would send.
"""

from __future__ import annotations

import http.client
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import xarray as xr

from qe_nb.exceptions import InputError
from qe_nb.ui.access import (
    app_url,
    host_allowed,
    is_loopback,
    new_token,
    origin_allowed,
    refusal,
    server_names,
    split_host,
    token_required,
)

from .browser_util import Server, free_port, jupyter_env

TOKEN = "t0ken-for-the-tests"
SECRET = "secret-detail-7f3a"

# ------------------------------------------------------------------------------- the checks alone


def test_loopback_and_token_required():
    for address in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"):
        assert is_loopback(address) and not token_required(address)
    for address in ("0.0.0.0", "::", "", "10.0.0.5", "reading-room.example"):
        assert not is_loopback(address) and token_required(address)


def test_host_check():
    local = server_names("127.0.0.1")
    wide = server_names("0.0.0.0", ["pacs-review.example"])
    for host in ("127.0.0.1:8866", "localhost:8866", "[::1]:8866", "LOCALHOST"):
        assert host_allowed(host, address="127.0.0.1", names=local)
    for host in ("evil.example:8866", "10.1.2.3:8866", "pacs-review.example", "", None):
        assert not host_allowed(host, address="127.0.0.1", names=local)
    # off loopback: any IP literal (the server reached by an address), its own names, the allowed ones
    for host in ("10.1.2.3:8866", "127.0.0.1:8866", "pacs-review.example:8866", "localhost"):
        assert host_allowed(host, address="0.0.0.0", names=wide), host
    assert not host_allowed("evil.example:8866", address="0.0.0.0", names=wide)
    assert split_host("[fe80::1]:99") == ("fe80::1", 99)


def test_origin_check():
    assert origin_allowed(None, "127.0.0.1:8866")
    assert origin_allowed("http://127.0.0.1:8866", "127.0.0.1:8866")
    assert origin_allowed("HTTPS://Example.org:1", "example.org:1")
    for origin in ("http://evil.example", "http://127.0.0.1:9999", "null", "", "file://"):
        assert not origin_allowed(origin, "127.0.0.1:8866"), origin
    names = server_names("127.0.0.1")
    assert refusal({"Host": "127.0.0.1:1"}, address="127.0.0.1", names=names) is None
    assert "Host" in refusal({"Host": "evil.example"}, address="127.0.0.1", names=names)
    assert "Origin" in refusal({"Host": "127.0.0.1:1", "Origin": "http://evil.example"},
                               address="127.0.0.1", names=names)


def test_new_token_and_url():
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20 and all(len(t) >= 40 and re.fullmatch(r"[\w-]+", t) for t in tokens)
    assert app_url("127.0.0.1", 8866) == "http://127.0.0.1:8866/"
    assert app_url("::1", 8866, "a b") == "http://[::1]:8866/?token=a%20b"
    assert app_url("0.0.0.0", 1, "x").endswith(":1/?token=x") and "0.0.0.0" not in app_url("0.0.0.0", 1)
    with pytest.raises(InputError, match="`port` must be an integer in 1..65535"):
        app_url("127.0.0.1", 0)


# ------------------------------------------------------------------------------- real servers


def _tiny_notebook(folder: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "import os\n"
        "if 'boom' in os.environ.get('QUERY_STRING', ''):\n"
        f"    raise RuntimeError('{SECRET}')\n"
        "print('token in the kernel:', os.environ.get('QE_NB_APP_TOKEN', 'none'))\n")]
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Three servers started at once: loopback + token, loopback without, 0.0.0.0 + token."""
    pytest.importorskip("voila")
    from qe_nb.pipeline.scoring import save_scores
    from qe_nb.ui.serve import voila_command

    root = tmp_path_factory.mktemp("access")
    sim = xr.DataArray(np.random.default_rng(0).random((4, 2, 1, 1)), dims=("case", "algorithm", "label", "metric"),
                       coords={"case": list("abcd"), "algorithm": ["x", "y"], "label": ["l"], "metric": ["dice"]})
    scores = save_scores(xr.Dataset({"similarity": sim}), root / "scores.nc")
    notebook = _tiny_notebook(root)
    env0 = jupyter_env(root / "jupyter")
    started, out = [], {}
    try:
        for name, host, token in (("token", "127.0.0.1", TOKEN), ("open", "127.0.0.1", None),
                                  ("wide", "0.0.0.0", TOKEN)):
            port = free_port()
            argv, env = voila_command(scores, host=host, port=port, token=token, environ=env0)
            argv[3] = str(notebook)  # the tiny notebook instead of the app's
            started.append((name, port, argv, env))
        procs = {}
        for name, port, argv, env in started:
            procs[name] = Server(argv, f"http://127.0.0.1:{port}/", env, root / f"{name}.log", port=port,
                                 timeout=180)
            out[name] = procs[name]
        yield out
    finally:
        for server in out.values():
            server.stop()


def _request(server: Server, path: str = "/", headers: dict | None = None, method: str = "GET"):
    port = urlsplit(server.url).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _port(server: Server) -> int:
    return urlsplit(server.url).port


@pytest.mark.slow
def test_no_token_no_app(servers):
    server = servers["token"]
    status, headers, body = _request(server, "/")
    assert status == 302 and headers["Location"].startswith("/login"), (status, headers)
    assert "token in the kernel" not in body
    status, headers, _ = _request(server, f"/?token=wrong-{TOKEN}")
    assert status == 302 and headers["Location"].startswith("/login")
    status, _, body = _request(server, "/login")
    assert status == 200 and "token" in body.lower()  # the login page asks for the token
    assert _request(server, "/api/kernels")[0] in (302, 401, 403)
    # off loopback the same: the token is required
    status, headers, _ = _request(servers["wide"], "/")
    assert status == 302 and headers["Location"].startswith("/login")


@pytest.mark.slow
def test_the_right_token_serves_the_page_and_sets_a_cookie(servers):
    server = servers["token"]
    status, headers, body = _request(server, f"/?token={TOKEN}")
    assert status == 200 and "token in the kernel: none" in body  # the kernel does not see the token
    cookie = headers.get("Set-Cookie", "").split(";")[0]
    assert cookie.startswith("username-"), headers
    status, _, body = _request(server, "/", headers={"Cookie": cookie})
    assert status == 200 and "token in the kernel" in body
    assert _request(server, "/", headers={"Authorization": f"token {TOKEN}"})[0] == 200
    assert _request(servers["wide"], f"/?token={TOKEN}")[0] == 200
    assert _request(servers["open"], "/")[0] == 200  # loopback without a token: open to this machine


@pytest.mark.slow
@pytest.mark.parametrize("name", ["token", "open", "wide"])
def test_a_foreign_host_is_refused(servers, name):
    """DNS rebinding: the attacker's name points at this machine; the Host header gives it away."""
    server = servers[name]
    port = _port(server)
    for path in (f"/?token={TOKEN}", "/voila/static/voila.js", "/login", "/api/kernels"):
        status, _, body = _request(server, path, headers={"Host": f"evil.example:{port}"})
        assert status == 403, (name, path, status)
        assert "token in the kernel" not in body
    # an IP literal: refused on loopback, this server's address off it
    status = _request(server, f"/?token={TOKEN}", headers={"Host": f"10.1.2.3:{port}"})[0]
    assert status == (200 if name == "wide" else 403)


def _websocket_status(server: Server, path: str, origin: str, cookie: str = "") -> int:
    port = _port(server)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={
            "Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
            "Origin": origin, **({"Cookie": cookie} if cookie else {})})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["token", "open"])
def test_a_foreign_websocket_origin_is_refused(servers, name):
    """A page of evil.example opening the kernel's websocket (its widget messages) is refused; the
    page's own origin gets 101 Switching Protocols, so the refusal is the origin's doing."""
    server = servers[name]
    port = _port(server)
    status, headers, body = _request(server, f"/?token={TOKEN}" if name == "token" else "/")
    assert status == 200
    kernel = re.search(r'"kernelId": "([0-9a-f-]{36})"', body).group(1)
    cookie = headers.get("Set-Cookie", "").split(";")[0]
    path = f"/api/kernels/{kernel}/channels?session_id=test"
    assert _websocket_status(server, path, "http://evil.example", cookie) == 403
    assert _websocket_status(server, path, f"http://evil.example:{port}", cookie) == 403
    assert _websocket_status(server, path, f"http://127.0.0.1:{port}", cookie) == 101
    if name == "token":  # and without the login cookie, the right origin is not enough
        assert _websocket_status(server, path, f"http://127.0.0.1:{port}") == 403


@pytest.mark.slow
def test_tracebacks_stay_in_the_server_log(servers):
    server = servers["open"]
    status, _, body = _request(server, "/?boom=1")
    assert SECRET not in body and "Traceback" not in body and "RuntimeError" not in body
    assert status in (200, 500)
    time.sleep(0.5)
    assert SECRET in server.log.read_text(errors="replace")


def test_a_wide_server_without_token_does_not_start(tmp_path):
    pytest.importorskip("voila")
    import subprocess

    notebook = _tiny_notebook(tmp_path)
    env = {k: v for k, v in jupyter_env(tmp_path / "j").items() if k != "QE_NB_APP_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "qe_nb.ui.voila_server", str(notebook), "--Voila.ip=0.0.0.0",
                           f"--port={free_port()}", "--no-browser"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "needs a token" in done.stderr + done.stdout

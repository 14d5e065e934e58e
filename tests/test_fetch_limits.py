"""Downloads under limits (issue 15): a trickling server, an endless stream, a file too big.

Each test starts its own HTTP server on 127.0.0.1 in a thread, with short limits, so that every
test ends in a few seconds: nothing hangs, nothing partial stays in the cache.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from qe_nb.data import manifest as mf
from qe_nb.data.download import DEFAULT_MAX_BYTES, DownloadLimitError
from qe_nb.exceptions import InputError

PAYLOAD = b"sixteen bytes!!\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        mode = self.path.strip("/").split("/")[-1]
        try:
            self.send_response(200)
            if mode == "normal":
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD)
            elif mode == "announced-big":
                self.send_header("Content-Length", str(10**12))
                self.end_headers()
                self.wfile.write(PAYLOAD)
            elif mode == "trickle":  # one byte every 0.3 s, for ever
                self.end_headers()
                while not self.server.stopping.is_set():
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)
            elif mode == "endless":  # as fast as it goes, no length
                self.end_headers()
                block = b"y" * 65536
                while not self.server.stopping.is_set():
                    self.wfile.write(block)
            elif mode == "silent":  # headers, then nothing
                self.end_headers()
                self.wfile.flush()
                self.server.stopping.wait(30)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for var in (mf.MANIFEST_ENV, mf.CACHE_ENV, mf.DATA_URL_ENV):
        monkeypatch.delenv(var, raising=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.stopping = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.stopping.set()
    httpd.shutdown()
    httpd.server_close()


def _entries(url, mode, *, size=None, sha=None):
    file = {"path": f"sub/{mode}", "sha256": sha or hashlib.sha256(PAYLOAD).hexdigest()}
    if size is not None:
        file["size"] = size
    entry = {"name": "hostile", "description": "d", "licence": "l", "citation": "c", "kind": "remote",
             "base_url": url, "files": [file], "layout": {"masks": "{case}/{algorithm}.nii.gz"},
             "labels": "binary"}
    return mf.parse_manifest(yaml.safe_dump({"version": 1, "datasets": [entry]}), source="m.yml")


def _leftovers(cache):
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))


def test_normal_download_within_limits(server, tmp_path):
    root = mf.fetch_dataset("hostile", manifest=_entries(server, "normal", size=16), cache=tmp_path,
                            timeout=5, stall=2)
    assert (root / "sub" / "normal").read_bytes() == PAYLOAD


def test_trickling_server_stops_at_the_overall_timeout(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadLimitError, match=r"data set 'hostile': file 'sub/trickle': download stopped: .*trickle was still downloading when the overall timeout ran out \(\d+ bytes received\); nothing was kept\. Raise `timeout=`"):
        mf.fetch_dataset("hostile", manifest=_entries(server, "trickle"), cache=tmp_path, timeout=1.5, stall=1)
    assert time.monotonic() - start < 4
    assert _leftovers(tmp_path) == []


def test_silent_server_stops_at_the_stall_rule(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadLimitError, match=r"silent sent nothing for 0\.5 s \(after 0 bytes\)"):
        mf.fetch_dataset("hostile", manifest=_entries(server, "silent"), cache=tmp_path, timeout=10, stall=0.5)
    assert time.monotonic() - start < 4
    assert _leftovers(tmp_path) == []


def test_endless_stream_stops_at_the_manifest_size(server, tmp_path):
    with pytest.raises(DownloadLimitError, match=r"endless sent more than the 16 bytes allowed.*fix the file's `size` in m\.yml"):
        mf.fetch_dataset("hostile", manifest=_entries(server, "endless", size=16), cache=tmp_path, timeout=10, stall=2)
    assert _leftovers(tmp_path) == []


def test_endless_stream_without_size_stops_at_the_default_cap(server, tmp_path, monkeypatch):
    import qe_nb.data.manifest as module

    assert DEFAULT_MAX_BYTES == 4 * 1024**3
    monkeypatch.setattr(module, "DEFAULT_MAX_BYTES", 1_000_000)
    with pytest.raises(DownloadLimitError, match=r"sent more than the 1,000,000 bytes allowed"):
        mf.fetch_dataset("hostile", manifest=_entries(server, "endless"), cache=tmp_path, timeout=10, stall=2)
    assert _leftovers(tmp_path) == []


def test_announced_size_over_the_cap_is_refused_before_reading(server, tmp_path):
    with pytest.raises(DownloadLimitError, match=r"announces 1,000,000,000,000 bytes, more than the 16 allowed"):
        mf.fetch_dataset("hostile", manifest=_entries(server, "announced-big", size=16), cache=tmp_path)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("value", [0, -1, "10", True, float("nan")])
def test_bad_timeout_is_refused(value, tmp_path):
    with pytest.raises(InputError, match=r"`timeout` must be a positive number of seconds; got"):
        mf.fetch_dataset("hostile", manifest=_entries("https://example.org/", "normal"), cache=tmp_path, timeout=value)


def test_size_in_the_schema():
    with pytest.raises(mf.ManifestError, match=r"`size` must be a whole number of bytes \(0 or more\); got -3"):
        _entries("https://example.org/", "normal", size=-3)
    assert _entries("https://example.org/", "normal", size=16)["hostile"].files[0].size == 16


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics of POSIX")
def test_sigterm_during_a_download_leaves_nothing(server, tmp_path):
    cache = tmp_path / "cache"
    code = textwrap.dedent(f"""
        import yaml, sys
        from qe_nb.data import manifest as mf
        entry = {{"name": "hostile", "description": "d", "licence": "l", "citation": "c", "kind": "remote",
                  "base_url": {server!r}, "files": [{{"path": "sub/trickle", "sha256": "ab" * 32}}],
                  "layout": {{"masks": "{{{{case}}}}/{{{{algorithm}}}}.nii.gz"}}, "labels": "binary"}}
        entries = mf.parse_manifest(yaml.safe_dump({{"version": 1, "datasets": [entry]}}))
        print("start", flush=True)
        mf.fetch_dataset("hostile", manifest=entries, cache={str(cache)!r}, timeout=60, stall=10)
    """)
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline().strip()
        assert line == b"start", proc.stderr.read().decode()[-2000:] if proc.poll() is not None else line
        deadline = time.monotonic() + 20
        while not any(p.is_file() for p in cache.rglob("*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(p.is_file() for p in cache.rglob("*")), "the download never started"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [p for p in cache.rglob("*") if p.is_file()] == []

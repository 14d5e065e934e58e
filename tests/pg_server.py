"""A real PostgreSQL server for the store tests, started from Debian's ``postgresql`` package.

``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin`` (the newest version found)
set up a cluster in a temporary folder listening on 127.0.0.1 on a free port, with password
(SCRAM) authentication over TCP. initdb refuses to run as root, so as root every binary runs as
the ``postgres`` system user (created by the Debian package) via ``runuser``, with the folder
chowned to it. The server is stopped with ``pg_ctl stop -m fast`` and the folder removed at the
end of the session. Debian's own cluster (port 5432), running or not, is never touched.

Without the binaries the PostgreSQL tests skip with the reason, unless
``QE_NB_REQUIRE_POSTGRES=1`` (set by ``.ci/run``): then that is a failure.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN_GLOB = os.environ.get("QE_NB_PG_BIN_GLOB", "/usr/lib/postgresql/*/bin")
PASSWORD = "qe-nb-test-pw"
USER = "postgres"


def postgres_required() -> bool:
    """True when missing PostgreSQL binaries must fail the tests (CI), not skip them."""
    return os.environ.get("QE_NB_REQUIRE_POSTGRES", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail when ``QE_NB_REQUIRE_POSTGRES=1``."""
    if postgres_required():
        pytest.fail(f"QE_NB_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit()) or (0,)


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb, pg_ctl and postgres."""
    found = [d for d in glob.glob(PG_BIN_GLOB)
             if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres"))]
    return Path(max(found, key=_version_key)) if found else None


def missing_requirement() -> str | None:
    """Why a PostgreSQL server cannot be started or reached here, in one line, or None."""
    if importlib.util.find_spec("pg8000") is None:
        return "the PostgreSQL driver pg8000 is not installed (pip install -e '.[postgres]')"
    if find_pg_bin() is None:
        return (f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) in {PG_BIN_GLOB} "
                "(apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return "running as root and there is no `postgres` system user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing (util-linux)"
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A throw-away PostgreSQL cluster in ``folder`` on 127.0.0.1:``port``."""

    def __init__(self, folder: Path) -> None:
        self.bin = find_pg_bin()
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = free_port()
        self.start_seconds = float("nan")
        self._databases = itertools.count(1)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", USER, "--", *command]
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n"
                               f"{out.stderr[-2000:]}\n{log}")
        return out

    def start(self) -> None:
        """initdb, start on 127.0.0.1:port (waiting until it accepts connections)."""
        started = time.perf_counter()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(USER)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.folder.chmod(0o700)
        pwfile = self.folder / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam(USER).pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.folder}' "
                   "-c max_connections=60")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.start_seconds = time.perf_counter() - started

    def stop(self) -> None:
        """``pg_ctl stop -m fast``."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres") -> str:
        """The ``postgresql://`` URL of ``database`` (with the password)."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its URL."""
        name = f"qe_nb_test_{next(self._databases)}"
        self._run("createdb", "-h", str(self.folder), "-p", str(self.port), "-U", USER, name)
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the session (skips, or fails in CI, without the binaries)."""
    reason = missing_requirement()
    if reason:
        unavailable(reason)
    # under /tmp: the postgres user can reach it (a TMPDIR under /root cannot be), and the socket
    # path stays short (at most 107 bytes)
    folder = Path(tempfile.mkdtemp(prefix="qe_nb-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    server = PostgresServer(folder)
    try:
        server.start()
        print(f"\nPostgreSQL {server.bin.parent.name} started on 127.0.0.1:{server.port} "
              f"in {server.start_seconds:.2f} s (initdb + pg_ctl start)")
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

"""What only PostgreSQL has: URLs, connection errors, a shared database, and the test server itself.

The store's behaviour is tested on PostgreSQL by tests/test_review_store.py (every test there runs
on SQLite and on PostgreSQL); these tests cover the server fixture (tests/pg_server.py) and the
PostgreSQL-specific paths of :class:`qe_nb.ReviewStore`.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import sqlalchemy as sa

from qe_nb.exceptions import InputError
from qe_nb.store import ReviewStore, StoreError

from . import pg_server


def test_the_server_runs_on_loopback_with_password_authentication(postgres_server):
    assert math.isfinite(postgres_server.start_seconds) and postgres_server.start_seconds > 0
    print(f"\nPostgreSQL test server: started in {postgres_server.start_seconds:.2f} s")
    url = postgres_server.new_database()
    assert url.startswith("postgresql://postgres:") and "@127.0.0.1:" in url
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+pg8000://", 1))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
        assert conn.execute(sa.text("SHOW server_encoding")).scalar() == "UTF8"
    engine.dispose()
    bad = url.replace(pg_server.PASSWORD, "wrong-password")
    with pytest.raises(StoreError, match="could not open the database") as raised:
        ReviewStore(bad)
    assert "wrong-password" not in str(raised.value) and "***" in str(raised.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+pg8000"])
def test_postgres_urls_are_driven_by_pg8000_and_shown_without_the_password(postgres_server, scheme):
    url = postgres_server.new_database().replace("postgresql://", f"{scheme}://", 1)
    with ReviewStore(url) as store:
        assert store.backend == "postgresql"
        assert store.url.startswith("postgresql+pg8000://postgres:***@127.0.0.1:")
        assert pg_server.PASSWORD not in store.url and pg_server.PASSWORD not in repr(store)
        store.record("c1", "accept", reviewer="ana")
        assert len(store.history()) == 1


def test_the_store_shares_a_database_with_other_tables(postgres_server):
    url = postgres_server.new_database()
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+pg8000://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE verdicts (case_id text, verdict text)"))
        conn.execute(sa.text("INSERT INTO verdicts VALUES ('theirs', 'kept')"))
    with ReviewStore(url) as store:
        store.record("ours", "reject", reviewer="ana")
        assert store.history()["case"].tolist() == ["ours"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT case_id, verdict FROM verdicts")).all() == [("theirs", "kept")]
        tables = set(sa.inspect(conn).get_table_names())
    assert {"qe_nb_schema", "qe_nb_verdicts", "qe_nb_assessments", "qe_nb_presence"} <= tables
    engine.dispose()


def test_a_server_that_does_not_answer_is_a_store_error_naming_it():
    if importlib.util.find_spec("pg8000") is None:
        pg_server.unavailable("the PostgreSQL driver pg8000 is not installed (pip install -e '.[postgres]')")
    port = pg_server.free_port()  # nothing listens there
    with pytest.raises(StoreError, match=rf"127\.0\.0\.1:{port}/reviews.*could not open") as raised:
        ReviewStore(f"postgresql://someone:secret-pw@127.0.0.1:{port}/reviews", timeout=5)
    assert "secret-pw" not in str(raised.value)


def test_a_postgres_url_without_a_database_is_an_input_error():
    with pytest.raises(InputError, match="names no database"):
        ReviewStore("postgresql://someone:pw@127.0.0.1:5432")


def test_missing_binaries_skip_or_fail_when_postgres_is_required(monkeypatch, tmp_path):
    monkeypatch.setattr(pg_server, "PG_BIN_GLOB", str(tmp_path / "no-postgresql" / "*" / "bin"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # as if pg8000 were there
    reason = pg_server.missing_requirement()
    assert reason and "no PostgreSQL server binaries" in reason and "apt-get install postgresql" in reason
    monkeypatch.delenv("QE_NB_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL"):
        pg_server.unavailable(reason)
    monkeypatch.setenv("QE_NB_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="QE_NB_REQUIRE_POSTGRES=1 but no PostgreSQL"):
        pg_server.unavailable(reason)


def test_the_newest_installed_version_is_chosen(monkeypatch, tmp_path):
    for version in ("9.6", "15", "13"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres"):
            (folder / name).write_text("#!/bin/sh\n")
            (folder / name).chmod(0o755)
    monkeypatch.setattr(pg_server, "PG_BIN_GLOB", str(tmp_path / "*" / "bin"))
    assert pg_server.find_pg_bin() == tmp_path / "15" / "bin"


def test_without_pg8000_a_postgres_url_is_a_store_error_saying_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pg8000" else real(name, *a))
    with pytest.raises(StoreError, match=r"pg8000 driver, which is not installed \(pip install 'qe-nb\[postgres\]'\)"):
        ReviewStore("postgresql://me:secret@127.0.0.1:5432/reviews")

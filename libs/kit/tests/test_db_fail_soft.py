"""kit.db on PostgreSQL: dead pooled connections are replaced before a request
uses them, and a database that cannot answer is ``Unavailable`` (503), never a
raw ``OperationalError`` (500)."""

from __future__ import annotations

import logging
import socket
import time
import urllib.parse
import uuid

import psycopg
import pytest
from sqlalchemy import text

from kit.db import DATABASE_UNAVAILABLE, make_engine
from kit.errors import Unavailable

pytestmark = pytest.mark.integration


def _admin_url(url: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/postgres"))


def _terminate(url: str) -> int:
    """Ends every backend connected to ``url``'s database (not ours)."""
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    # the backends exit asynchronously: wait until they are gone
    deadline = time.monotonic() + 10
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()[0]
            if not left:
                break
            time.sleep(0.05)
    return len(rows)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def url(pg_database):
    return pg_database("kitdb")


def test_terminated_backends_are_replaced_without_failing_a_request(url):
    engine = make_engine(url)
    try:
        held = [engine.connect() for _ in range(5)]
        pids = {c.execute(text("SELECT pg_backend_pid()")).scalar() for c in held}
        for c in held:
            c.close()
        assert _terminate(url) >= 5
        answers, new_pids = [], set()
        for _ in range(8):  # more than the pool held: every dead one is met
            with engine.connect() as conn:
                answers.append(conn.execute(text("SELECT 41 + 1")).scalar())
                new_pids.add(conn.execute(text("SELECT pg_backend_pid()")).scalar())
        assert answers == [42] * 8
        assert not pids & new_pids
    finally:
        engine.dispose()


def test_terminated_backends_with_concurrent_checkouts(url):
    """Several workers at once after a mass termination (eventlet, as in a service)."""
    import eventlet

    engine = make_engine(url)
    try:
        held = [engine.connect() for _ in range(10)]
        for c in held:
            c.execute(text("SELECT 1"))
            c.close()
        _terminate(url)

        def query(i):
            with engine.connect() as conn:
                return conn.execute(text("SELECT :i"), {"i": i}).scalar()

        pool = eventlet.GreenPool(10)
        assert sorted(pool.imap(query, range(20))) == list(range(20))
    finally:
        engine.dispose()


def test_a_connection_lost_during_a_transaction_is_unavailable(url, caplog):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            _terminate(url)
            with caplog.at_level(logging.WARNING, logger="kit.db"):
                with pytest.raises(Unavailable) as raised:
                    conn.execute(text("SELECT 1"))
        assert raised.value.code == DATABASE_UNAVAILABLE
        assert raised.value.status == 503
        assert raised.value.details["retry_after"] > 0
        assert "indisponible" in raised.value.message
        assert [r.levelno for r in caplog.records if r.name == "kit.db"] == [logging.WARNING]
        with engine.connect() as conn:  # the pool recovered
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_a_stopped_database_is_unavailable_with_one_warning(url, caplog):
    """Nothing listens on the port (a stopped server): connection refused."""
    parts = urllib.parse.urlsplit(url)
    down = urllib.parse.urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{_closed_port()}"))
    engine = make_engine(down)
    try:
        with caplog.at_level(logging.INFO, logger="kit.db"):
            for _ in range(3):
                with pytest.raises(Unavailable) as raised:
                    with engine.connect() as conn:
                        conn.execute(text("SELECT 1"))
                assert raised.value.code == DATABASE_UNAVAILABLE
                assert raised.value.details["retry_after"] >= 1
        # one line, not one per request, and no traceback
        lines = [r for r in caplog.records if r.name == "kit.db"]
        assert len(lines) == 1 and lines[0].levelno == logging.WARNING
        assert lines[0].exc_info is None
    finally:
        engine.dispose()


def test_too_many_connections_is_unavailable(url):
    role = f"kitdb_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.split("@")[-1]
        engine = make_engine(urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@{host}")))
        try:
            with pytest.raises(Unavailable):
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    finally:
        with psycopg.connect(_admin_url(url), autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_statement_error_is_not_unavailable(url):
    """A bug stays a bug: only "cannot answer" errors become 503."""
    from sqlalchemy.exc import ProgrammingError

    engine = make_engine(url)
    try:
        with pytest.raises(ProgrammingError):
            with engine.connect() as conn:
                conn.execute(text("SELECT * FROM no_such_table"))
    finally:
        engine.dispose()


def test_an_idle_connection_is_pinged(url):
    """With a 0 s idle bound every checkout pings (like pool_pre_ping); the
    connection is left with no open transaction (read_only can switch it)."""
    engine = make_engine(url, idle_ping=0)
    try:
        for _ in range(3):
            with engine.connect() as conn:
                conn.connection.dbapi_connection.autocommit = True  # not INTRANS after the ping
                conn.connection.dbapi_connection.autocommit = False
                assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()

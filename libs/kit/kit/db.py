"""Database plumbing shared by every service: engine from the environment,
one session per worker, the outbox and the inbox tables.

One transaction per entrypoint call: the session is rolled back at worker
teardown unless the use case committed it.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

from nameko.extensions import DependencyProvider
from sqlalchemy import JSON, DateTime, String, TypeDecorator, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def database_url(service: str) -> str:
    """``<SERVICE>_DB_URL``, else a SQLite file under ``DATA_DIR``."""
    url = os.environ.get(f"{service.upper()}_DB_URL")
    if url:
        return url
    data_dir = Path(os.environ.get("DATA_DIR", "data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / f'{service}.db').resolve()}"


def make_engine(url: str):
    """An engine that behaves under eventlet (see STACK.md #7, #8)."""
    if url.startswith("postgresql"):
        os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        # no pre-ping: it costs a round trip per checkout on every call; stale
        # connections are recycled instead, and a dropped one fails one call
        return create_engine(url, pool_recycle=300, pool_size=10, max_overflow=10)
    if url in ("sqlite://", "sqlite:///:memory:"):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    return engine


def read_only(session) -> None:
    """For a read-only use case: no BEGIN/ROLLBACK round trips (each statement
    commits by itself). Only a session that has not started a transaction yet
    (each nameko worker gets a fresh one) is switched."""
    if not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


class TZDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes everywhere (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(dt.UTC)
        return value

    def process_result_value(self, value, dialect):
        return aware(value)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes: they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class OutboxMixin:
    """Columns of a service's outbox: events written in the same transaction
    as the change they announce, relayed after commit (kit.outbox)."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_type: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(
        TZDateTime(), nullable=True, index=True
    )


class InboxMixin:
    """Event ids a consumer has already handled (one side effect, not two)."""

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handler: Mapped[str] = mapped_column(String(80), primary_key=True)
    handled_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


def make_base():
    class Base(DeclarativeBase):
        pass

    return Base


class Database(DependencyProvider):
    """Gives each worker a fresh SQLAlchemy session, closed (and so rolled
    back unless committed) at teardown."""

    def __init__(self, service: str):
        self.service = service
        self.engine = None
        self.sessionmaker = None
        self.sessions = {}

    def setup(self):
        url = self.container.config.get(f"{self.service.upper()}_DB_URL") or database_url(
            self.service
        )
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    def stop(self):
        if self.engine is not None:
            self.engine.dispose()

    def get_dependency(self, worker_ctx):
        session = self.sessionmaker()
        self.sessions[worker_ctx] = session
        return session

    def worker_teardown(self, worker_ctx):
        session = self.sessions.pop(worker_ctx, None)
        if session is not None:
            session.close()

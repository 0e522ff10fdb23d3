"""Database plumbing shared by every service: engine from the environment,
one session per worker, the outbox and the inbox tables.

One transaction per entrypoint call: the session is rolled back at worker
teardown unless the use case committed it.

Dependencies fail soft (docs/architecture.md §9). On PostgreSQL:

- A pooled connection whose backend is gone (``pg_terminate_backend``, a
  restart, a failover) is replaced at checkout, before the request uses it:
  a backend that ends its connection sends a FATAL message and closes the
  socket, so an idle connection whose socket is readable is dead. That check
  is one ``poll()`` system call (no round trip); a real ping (``;``) is done
  only for a connection idle for more than ``DB_IDLE_PING_SECONDS`` (default
  30; 0 pings on every checkout, like ``pool_pre_ping``), which catches links
  that died silently (a dropped NAT entry). One dead connection invalidates
  the whole pool: after a restart every pooled connection is dead.
- A database that cannot answer (refused, too many connections, shutting
  down or starting up, a connection lost during a statement, a statement
  cancelled) raises ``kit.errors.Unavailable`` (``service.database_unavailable``,
  503 with ``retry_after``) instead of SQLAlchemy's ``OperationalError``,
  which the gateway would map to 500. One WARNING line per engine at most
  every 10 seconds, and ``db_unavailable_total{database}`` counts them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid
from pathlib import Path

from nameko.extensions import DependencyProvider
from prometheus_client import Counter
from sqlalchemy import JSON, DateTime, String, TypeDecorator, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from kit.errors import Unavailable

try:  # a poll() that never yields to the eventlet hub (timeout 0: never blocks)
    from eventlet.patcher import original as _original

    _select = _original("select")
except ImportError:  # pragma: no cover - eventlet is always installed with nameko
    import select as _select

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "service.database_unavailable"
DATABASE_UNAVAILABLE_MESSAGE = (
    "La base de données est momentanément indisponible, réessayez dans quelques instants."
)
# seconds: a lost connection is replaced at once; a database down takes longer
RETRY_AFTER_LOST = 2
RETRY_AFTER_DOWN = 5
WARN_EVERY = 10.0

DB_UNAVAILABLE = Counter(
    "db_unavailable_total",
    "Statements or connections that failed because the database could not answer "
    "(answered as service.database_unavailable), by database.",
    ["database"],
)
DB_CONNECTIONS_REPLACED = Counter(
    "db_connections_replaced_total",
    "Pooled connections found dead at checkout and replaced, by database.",
    ["database"],
)


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


def make_engine(url: str, idle_ping: float | None = None):
    """An engine that behaves under eventlet (see docs/stack-pitfalls.md §7, §8) and, on
    PostgreSQL, replaces dead connections and answers 503 when the database
    cannot (see the module's docstring)."""
    if url.startswith("postgresql"):
        os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        # no pool_pre_ping (a round trip per checkout): the socket check below
        # costs a system call, and only idle connections are pinged
        engine = create_engine(url, pool_recycle=300, pool_size=10, max_overflow=10)
        if idle_ping is None:
            idle_ping = float(os.environ.get("DB_IDLE_PING_SECONDS", "30"))
        _fail_soft(engine, idle_ping)
        return engine
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


def _socket_readable(dbapi_conn) -> bool:
    """Whether the server sent something to a connection nobody is using: a
    FATAL message before closing it, or the end of the stream."""
    try:
        fd = dbapi_conn.fileno()
    except Exception:  # closed: psycopg raises OperationalError
        return True
    poller = _select.poll()
    poller.register(fd, _select.POLLIN | _select.POLLPRI)
    return bool(poller.poll(0))


def _database_name(engine) -> str:
    return engine.url.database or "?"


def _fail_soft(engine, idle_ping: float) -> None:
    name = _database_name(engine)
    last_warning = [0.0]

    @event.listens_for(engine, "checkin")
    def _stamp(dbapi_conn, record):
        if record is not None:
            record.info["kit_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn, record, proxy):
        since = record.info.get("kit_idle_since")
        if since is None:  # a fresh connection
            return
        if getattr(dbapi_conn, "closed", False) or getattr(dbapi_conn, "broken", False):
            dead = True
        else:
            dead = _socket_readable(dbapi_conn)
        if not dead and time.monotonic() - since >= idle_ping:
            try:
                cur = dbapi_conn.cursor()
                try:
                    cur.execute(";")
                finally:
                    cur.close()
                dbapi_conn.rollback()
            except Exception:
                dead = True
        if dead:
            DB_CONNECTIONS_REPLACED.labels(name).inc()
            log.info("database %s: a pooled connection was dead, replaced", name)
            # the pool retries the checkout with a new connection; the others
            # (checked in before now) are replaced as they are next checked out
            raise sa_exc.InvalidatePoolError("pooled connection found dead at checkout")

    @event.listens_for(engine, "handle_error")
    def _unavailable(ctx):
        if ctx.is_pre_ping:
            return None
        if not (ctx.is_disconnect or _database_cannot_answer(ctx.original_exception)):
            return None
        DB_UNAVAILABLE.labels(name).inc()
        now = time.monotonic()
        summary = (str(ctx.original_exception).strip().splitlines() or ["?"])[0]
        if now - last_warning[0] >= WARN_EVERY:
            last_warning[0] = now
            log.warning(
                "database %s unavailable (%s: %s); answering %s",
                name,
                type(ctx.original_exception).__name__,
                summary,
                DATABASE_UNAVAILABLE,
            )
        retry_after = RETRY_AFTER_LOST if ctx.is_disconnect else RETRY_AFTER_DOWN
        return Unavailable(
            DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE, {"retry_after": retry_after}
        )


# SQLSTATE classes and codes meaning "the database cannot answer now" (not a bug
# in the statement): connection exceptions, insufficient resources (too many
# connections, disk full), operator intervention (shutdown, cannot connect now,
# statement cancelled), system errors.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


def _database_cannot_answer(error: BaseException | None) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a requirement
        return False
    if not isinstance(error, psycopg.OperationalError):
        return False
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate is None:  # raised by the client: refused, timed out, lost
        return True
    return sqlstate[:2] in _UNAVAILABLE_CLASSES


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
        # info["service"]: kit.outbox.emit tells the events no one consumes
        self.sessionmaker = sessionmaker(
            self.engine, expire_on_commit=False, info={"service": self.service}
        )

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
            try:
                session.close()
            except Exception as exc:  # noqa: BLE001 - never kill the container for it
                # the rollback of a connection that died: it is already
                # invalidated (replaced at the next checkout); an error raised
                # from a dependency's teardown would make nameko kill the service
                log.info("worker session not closed cleanly (%s): discarded", type(exc).__name__)
                try:
                    session.invalidate()
                except Exception:  # noqa: BLE001
                    pass

"""The system under test: the platform plus the trivial service, on a fresh
RabbitMQ vhost and fresh PostgreSQL databases, removed again at the end.

Same approach as ``tests/e2e/conftest.py``: a vhost created through the
management API, one database per service, ``deploy.launcher.System`` for
the processes. The bench's settings: no rate limiter (it would answer 429
to a closed loop), two gunicorn workers. ``bench_trivial`` is started as
its own ``nameko run`` process through the same System, so it is stopped
with everything else.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from deploy import sandbox
from deploy.launcher import ROOT, SERVICES, Config, LaunchError, System

PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URI = os.environ.get("BENCH_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
RABBIT_API = os.environ.get("BENCH_RABBIT_API", "http://guest:guest@127.0.0.1:15672")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# the benchmarks sign the seeded agency administrator in without a TOTP code
BENCH_ENV = {"RATELIMIT_ENABLED": "false", "WEB_CONCURRENCY": "2", "STAFF_TOTP_REQUIRED": "0"}
TRIVIAL_SERVICE = "bench_trivial"


@dataclass
class Platform:
    """What the measurements need to reach the running system."""

    system: System
    amqp_uri: str
    db_prefix: str
    trivial_pid: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        return self.system.gateway_url or ""


def require_loopback(uri: str) -> None:
    host = urllib.parse.urlsplit(uri).hostname or ""
    if host not in LOOPBACK:
        raise LaunchError(f"the bench only runs on loopback addresses, not {host!r}")


# --- a vhost and databases of the bench's own (deploy.sandbox) ----------------


def create_vhost(name: str) -> str:
    """A vhost of the bench's own; returns the AMQP URI pointing at it."""
    return sandbox.create_vhost(name, AMQP_URI, RABBIT_API)


def delete_vhost(name: str) -> None:
    sandbox.delete_vhost(name, RABBIT_API)


def create_databases(prefix: str, created: list[str]) -> dict[str, str]:
    return sandbox.create_databases(prefix, created, PG_ADMIN_DSN)


def drop_databases(names: list[str]) -> None:
    sandbox.drop_databases(names, PG_ADMIN_DSN)


# --- the processes -------------------------------------------------------------


def start_trivial(system: System, amqp_uri: str) -> int:
    """``nameko run bench.trivial`` on the system's broker and vhost."""
    env = dict(os.environ)
    # nameko run adds the working directory (the root); kit for nameko.yaml's log format
    env["PYTHONPATH"] = str(ROOT / "libs" / "kit")
    env.update({"AMQP_URI": amqp_uri, "PYTHONUNBUFFERED": "1"})
    process = system.spawn(
        TRIVIAL_SERVICE,
        [
            system.config.python,
            "-m",
            "nameko",
            "run",
            "--config",
            "deploy/nameko.yaml",
            "bench.trivial",
        ],
        env,
    )
    return process.popen.pid


def wait_trivial(system: System, amqp_uri: str, timeout: float = 60.0) -> None:
    """Until ``bench_trivial.ping()`` answers (its queue exists)."""
    from bench.clients import rpc_proxy

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        system.check_alive()
        try:
            with rpc_proxy(amqp_uri, timeout=2) as proxy:
                proxy.bench_trivial.ping()
                return
        except Exception as exc:  # noqa: BLE001 - UnknownService until it is up
            last = exc
        time.sleep(0.3)
    raise LaunchError(f"{TRIVIAL_SERVICE} did not answer within {timeout:.0f} s ({last!r})")


@contextmanager
def platform(
    ready_timeout: float = 180.0,
    services: tuple[str, ...] = SERVICES,
    log=print,
    env: dict[str, str] | None = None,
) -> Iterator[Platform]:
    """The running platform (``services``: which nameko services to start;
    identity is the one measured; ``env``: more settings for the processes,
    e.g. ``FILES_CLAMD``); vhost, databases, processes and data
    folder are removed on the way out, whatever happened (exception, Ctrl-C)."""
    for uri in (AMQP_URI, RABBIT_API, PG_ADMIN_DSN):
        require_loopback(uri)
    token = uuid.uuid4().hex[:10]
    vhost = prefix = f"bench_{token}"
    created: list[str] = []
    data_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    system: System | None = None
    vhost_made = False
    try:
        amqp_uri = create_vhost(vhost)
        vhost_made = True
        env = create_databases(prefix, created) | BENCH_ENV | (env or {})
        config = Config(
            data_dir=data_dir,
            amqp_uri=amqp_uri,
            env=env,
            web_concurrency=2,
            ready_timeout=ready_timeout,
            services=tuple(services),
            python=sys.executable,
            root=ROOT,
        )
        system = System(config)
        log("starting the platform (services, gateway, helpers)…")
        system.start()
        log("starting bench_trivial…")
        running = Platform(system, amqp_uri, prefix)
        running.trivial_pid = start_trivial(system, amqp_uri)
        wait_trivial(system, amqp_uri)
        yield running
    finally:
        _cleanup(system, vhost if vhost_made else None, created, data_dir, log)


def _cleanup(system, vhost, databases, data_dir, log) -> None:
    """Each step runs even if another one fails; a second Ctrl-C is ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        log("stopping the platform and removing the vhost and databases…")
        if system is not None:
            with suppress(Exception):
                system.stop()
        if vhost:
            try:
                delete_vhost(vhost)
            except Exception as exc:  # noqa: BLE001
                log(f"warning: vhost {vhost} was not deleted ({exc})")
        try:
            drop_databases(databases)
        except Exception as exc:  # noqa: BLE001
            log(f"warning: databases {databases} were not dropped ({exc})")
        shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        signal.signal(signal.SIGINT, previous)

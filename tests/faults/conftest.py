"""Fault tests: the running system on real parts, with faults injected.

Like tests/e2e, each system gets its own RabbitMQ vhost (management API) and
one fresh PostgreSQL database per service, started by
``deploy.launcher.System`` exactly as ``bash deploy/run.sh`` starts it. Unlike
tests/e2e, a system lives for one test module at most (faults leave it in a
state other tests should not inherit), and a module may start only the
services it needs.

Fixtures:

- ``launch_system(services=..., env=..., seed=True)``: starts a System (a
  vhost and databases of its own) and returns it; everything is stopped and
  removed at the end of the module. Call it once per module (or more, for
  several independent systems).
- ``system``: every service, the gateway and the helpers (module scope).
- ``gateway``: a fresh ``GatewaySession`` (no cookies) on ``system``.

Settings as in tests/e2e: ``TEST_PG_DSN``, ``TEST_AMQP_URI``,
``TEST_RABBIT_API``, ``E2E_READY_TIMEOUT``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

from deploy import sandbox
from deploy.launcher import SERVICES, Config, LaunchError, System

# the same settings as tests/e2e (TEST_PG_DSN, TEST_AMQP_URI, …), read there once
from tests.e2e.conftest import (  # noqa: F401 - re-exported
    AMQP_URI,
    PG_ADMIN_DSN,
    RABBIT_API,
    READY_TIMEOUT,
    GatewaySession,
    Mailbox,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Every test under tests/faults is marked ``faults``."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.faults)


class _Launched:
    """What one module started, undone in reverse order."""

    def __init__(self) -> None:
        self.systems: list[System] = []
        self.vhosts: list[str] = []
        self.databases: list[str] = []

    def close(self) -> None:
        for running in reversed(self.systems):
            running.stop()
        for name in self.vhosts:
            sandbox.delete_vhost(name, RABBIT_API)
        sandbox.drop_databases(self.databases, PG_ADMIN_DSN)


@pytest.fixture(scope="module")
def launch_system(tmp_path_factory) -> Callable[..., System]:
    """Factory: ``launch_system(services=("identity", "survey"), env={...})``."""
    launched = _Launched()

    def launch(
        services: Iterable[str] = SERVICES,
        env: Mapping[str, str] | None = None,
        *,
        seed: bool = True,
        ready_timeout: float = READY_TIMEOUT,
        **config: object,
    ) -> System:
        prefix = f"faults_{uuid.uuid4().hex[:10]}"
        try:
            amqp_uri = sandbox.create_vhost(prefix, AMQP_URI, RABBIT_API)
            launched.vhosts.append(prefix)
            databases = sandbox.create_databases(prefix, launched.databases, PG_ADMIN_DSN)
        except LaunchError as exc:
            pytest.fail(str(exc), pytrace=False)
        running = System(
            Config(
                data_dir=tmp_path_factory.mktemp("faults"),
                amqp_uri=amqp_uri,
                # each test client presents its own address (GatewaySession)
                # the seeded administrator signs in without a TOTP code, as in e2e
                env=dict(
                    databases, TRUSTED_PROXIES="1", STAFF_TOTP_REQUIRED="0", **dict(env or {})
                ),
                services=tuple(services),
                seed=seed,
                ready_timeout=ready_timeout,
                **config,
            )
        )
        launched.systems.append(running)
        error = None
        try:
            running.start()
        except LaunchError as exc:
            error = str(exc)
        if error:  # outside the except: no chained traceback before the log tail
            pytest.fail(f"the system did not start: {error}", pytrace=False)
        return running

    yield launch
    launched.close()


@pytest.fixture(scope="module")
def system(launch_system) -> System:
    """Every service, the gateway, the mail catcher and the SIRENE stand-in."""
    return launch_system()


@pytest.fixture
def gateway(system):
    """A fresh client (no cookies) per test: ``gateway.get("/health/live")``."""
    with GatewaySession(system.gateway_url) as session:
        yield session

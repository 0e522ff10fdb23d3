"""The whole system, started once per test session on real parts.

Each session gets its own RabbitMQ vhost (created through the management
API, docs/stack-pitfalls.md §4) and one fresh PostgreSQL database per service, free ports
and a temporary data folder; all are removed at the end. The processes are
the ones ``bash deploy/run.sh`` starts (``deploy.launcher.System``), so these
tests exercise the way the platform really runs.

Fixtures: ``system`` (the running System), ``gateway`` (a requests session
on the gateway's URL), ``mailbox`` (reads the mail catcher), ``admin`` (the
agency administrator's credentials).

Settings: ``TEST_PG_DSN`` (an admin connection to PostgreSQL),
``TEST_AMQP_URI`` (the broker, without vhost), ``TEST_RABBIT_API`` (its
management API), ``E2E_READY_TIMEOUT`` (seconds, default 180).
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from deploy import sandbox
from deploy.launcher import Config, LaunchError, System

PG_ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URI = os.environ.get("TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
RABBIT_API = os.environ.get("TEST_RABBIT_API", "http://guest:guest@127.0.0.1:15672")
READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "180"))


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e is marked ``e2e`` (``-m "not e2e"`` skips them)."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


# --- real parts: a vhost and databases --------------------------------------


@pytest.fixture(scope="session")
def e2e_vhost():
    """A vhost of its own: queues left by other runs cannot steal messages."""
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    try:
        uri = sandbox.create_vhost(name, AMQP_URI, RABBIT_API)
    except LaunchError as exc:
        error = str(exc)
    else:
        error = None
    if error:
        pytest.fail(error, pytrace=False)
    yield uri
    sandbox.delete_vhost(name, RABBIT_API)


@pytest.fixture(scope="session")
def e2e_databases():
    """``{"IDENTITY_DB_URL": "postgresql://…/e2e_…_identity", …}``, dropped at the end."""
    created: list[str] = []
    try:
        env = sandbox.create_databases(f"e2e_{uuid.uuid4().hex[:10]}", created, PG_ADMIN_DSN)
    except LaunchError as exc:
        sandbox.drop_databases(created, PG_ADMIN_DSN)
        pytest.fail(f"{exc} (TEST_PG_DSN)", pytrace=False)
    yield env
    sandbox.drop_databases(created, PG_ADMIN_DSN)


@pytest.fixture(scope="session")
def e2e_partner_vhost():
    """The partners' own vhost (their exchange, queues and users)."""
    name = f"e2e_{uuid.uuid4().hex[:10]}_partners"
    try:
        uri = sandbox.create_vhost(name, AMQP_URI, RABBIT_API)
    except LaunchError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield uri
    sandbox.delete_vhost(name, RABBIT_API)


# partners' webhooks on the loopback (the SSRF guard refuses it otherwise),
# retried within seconds instead of hours
PARTNER_ENV = {
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.0/8",
    "WEBHOOK_RETRY_SCHEDULE": "0.5,1,2,2,2,2,2,2,2,2",
    "WEBHOOK_TIMEOUT": "3",
}


@pytest.fixture(scope="session")
def e2e_clamd():
    """A real clamd with a signature database written by the test (EICAR;
    ``files.clamd_sandbox``), stopped by its pid at the end; None where
    clamd is not installed (the tests that need it skip, saying so)."""
    from files import clamd_sandbox

    if not clamd_sandbox.available():
        yield None
        return
    with clamd_sandbox.running() as clamd:
        yield clamd


def require_clamd(clamd) -> None:
    if clamd is None:
        pytest.skip("clamd is not installed (apt-get install clamav-daemon): no malware scan")


# --- the system --------------------------------------------------------------


@pytest.fixture(scope="session")
def system(e2e_vhost, e2e_partner_vhost, e2e_databases, e2e_clamd, tmp_path_factory):
    """Every service, the gateway, the mail catcher and the SIRENE stand-in;
    files scans uploads with the test clamd when there is one."""
    config = Config(
        data_dir=tmp_path_factory.mktemp("system"),
        amqp_uri=e2e_vhost,
        clamd=e2e_clamd.address if e2e_clamd is not None else None,
        # the gateway trusts one proxy hop: each test client below presents its
        # own address, so per-address rate limits hold without tests sharing one
        env=dict(
            e2e_databases,
            TRUSTED_PROXIES="1",
            # staff must enrol in TOTP by default (identity/totp.py); the journeys
            # sign the seeded administrator in many times a minute, which a code
            # usable once per 30-s step cannot follow: the second factor is
            # tested end to end on an organisation manager
            # (test_accounts_security_totp.py), staff enforcement by the
            # identity and gateway tests
            STAFF_TOTP_REQUIRED="0",
            PARTNER_AMQP_URI=e2e_partner_vhost,
            PARTNER_RABBIT_API=RABBIT_API,
            **PARTNER_ENV,
        ),
        ready_timeout=READY_TIMEOUT,
    )
    running = System(config)
    error = None
    try:
        running.start()
    except LaunchError as exc:
        error = str(exc)
    if error:  # outside the except: no chained traceback before the log tail
        pytest.fail(f"the system did not start: {error}", pytrace=False)
    yield running
    running.stop()


class GatewaySession(requests.Session):
    """A requests session whose relative URLs go to the gateway, seen by it as
    a client of its own (a distinct loopback address in X-Forwarded-For)."""

    def __init__(self, base_url: str, timeout: float = 30) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        octets = uuid.uuid4().bytes[:3]
        self.client_address = "127.{}.{}.{}".format(*octets)
        self.headers["X-Forwarded-For"] = self.client_address

    def url(self, path: str) -> str:
        return urllib.parse.urljoin(self.base_url, path.lstrip("/"))

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, self.url(url), *args, **kwargs)


@pytest.fixture
def gateway(system):
    """A fresh client (no cookies) per test: ``gateway.get("/health/live")``."""
    with GatewaySession(system.gateway_url) as session:
        yield session


class Mailbox:
    """Reads what the platform sent through the mail catcher's HTTP API."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url

    def messages(self, to: str | None = None) -> list[dict]:
        """Newest first: ``{"id", "from", "to", "subject", "date", "text", "html"}``."""
        params = {"to": to} if to else None
        response = requests.get(self.api_url, params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_for(
        self, to: str, *, subject: str | None = None, timeout: float = 20, interval: float = 0.25
    ) -> dict:
        """The newest message to ``to`` (whose subject contains ``subject``),
        waiting at most ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages(to):
                if subject is None or subject.lower() in (message.get("subject") or "").lower():
                    return message
            if time.monotonic() >= deadline:
                seen = [m.get("subject") for m in self.messages()][:10]
                raise AssertionError(
                    f"no e-mail to {to!r} (subject ~ {subject!r}) within "
                    f"{timeout:.0f} s; latest subjects: {seen}"
                )
            time.sleep(interval)

    def link(
        self,
        to: str,
        pattern: str = r"https?://\S+",
        *,
        subject: str | None = None,
        timeout: float = 20,
    ) -> str:
        """The first match of ``pattern`` in the text (else HTML) body of
        the newest message to ``to``: ``mailbox.link(email, r"https?://\\S+/confirm\\S*")``."""
        message = self.wait_for(to, subject=subject, timeout=timeout)
        for body in (message.get("text"), message.get("html")):
            match = re.search(pattern, body or "")
            if match:
                return match.group(0).rstrip(".,;)>\"'")
        raise AssertionError(
            f"no link matching {pattern!r} in the e-mail to {to!r}: "
            f"{(message.get('text') or message.get('html') or '')[:500]}"
        )


@pytest.fixture
def mailbox(system):
    if not system.mail_api_url:
        pytest.skip("the platform sends through an external SMTP server")
    return Mailbox(system.mail_api_url)


@pytest.fixture
def admin(system):
    """``{"email": …, "password": …}`` of the agency administrator (identity.seed)."""
    if not system.admin:
        pytest.fail(f"no admin account: {system.skipped.get('seed', 'identity.seed failed')}")
    return dict(system.admin)


@pytest.fixture
def unique():
    """A short unique suffix for ids and e-mail addresses of one test."""
    return uuid.uuid4().hex[:10]

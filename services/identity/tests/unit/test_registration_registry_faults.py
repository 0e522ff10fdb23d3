"""Registrations when the SIRENE registry hangs or another registration for the
same SIRET commits first (docs/architecture.md §9: never a 500)."""

import socket
import threading
import time

import pytest
from sqlalchemy import func, select

from identity import use_cases as uc
from identity.models import Organisation, Outbox, User
from identity.sirene import RegistryUnavailable, SireneClient

PASSWORD = "correct horse 42"
SIRET = "41816609600051"


def form(email):
    return {
        "account_type": "OFA",
        "siret": SIRET,
        "nda": "11930882293",
        "apprentice_count": 12,
        "last_name": "Martin",
        "first_name": "Claire",
        "email": email,
        "email_confirm": email,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }


class RacingSirene:
    """While this registration waits for the registry, another one for the
    same SIRET is committed (what concurrent workers do on PostgreSQL)."""

    def __init__(self, session, down=True):
        self.session, self.down, self.raced = session, down, False

    def lookup(self, siret):
        if not self.raced:
            self.raced = True
            other = self.session.get_bind()
            from sqlalchemy.orm import Session

            with Session(other) as s:
                uc.register(s, form("first@example.org"), [], _Down())
        raise RegistryUnavailable("hangs")


class _Down:
    def lookup(self, siret):
        raise RegistryUnavailable("down")


def test_a_registration_that_loses_the_siret_race_joins_the_organisation(session):
    answer = uc.register(session, form("second@example.org"), [], RacingSirene(session))
    assert answer == uc.REGISTERED
    assert session.scalar(select(func.count()).select_from(Organisation)) == 1
    users = session.scalars(select(User).order_by(User.email)).all()
    assert [u.email for u in users] == ["first@example.org", "second@example.org"]
    assert len({u.org_id for u in users}) == 1
    org = session.scalar(select(Organisation))
    assert org.sirene_status == "pending"  # checked again later by retry_sirene
    # both get their confirmation e-mail
    registered = session.scalars(select(Outbox).where(Outbox.event_type == "user_registered"))
    assert len(registered.all()) == 2


@pytest.fixture
def hanging_registry():
    """A TCP server that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_hanging_registry_is_bounded_then_skipped_by_the_breaker(hanging_registry, caplog):
    now = [100.0]
    client = SireneClient(hanging_registry, timeout=0.5, breaker_seconds=30, clock=lambda: now[0])
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        client.lookup(SIRET)
    assert time.monotonic() - started < 3
    assert client.breaker_open
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        client.lookup(SIRET)  # at once: the breaker is open
    assert time.monotonic() - started < 0.1
    assert [r.levelname for r in caplog.records if r.name == "identity.sirene"] == ["WARNING"]
    now[0] += 31  # half-open: asks again (and fails again)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        client.lookup(SIRET)
    assert time.monotonic() - started >= 0.4

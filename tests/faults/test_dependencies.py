"""Dependencies fail soft (docs/architecture.md §9), on the running system (identity,
files, notify and the gateway on PostgreSQL):

- the PostgreSQL backends of identity and notify are terminated (twice)
  during a burst of registrations and reads: no 500 and no 504; a 503 (a
  statement in flight when its backend died) only with Retry-After, and the
  client's retry succeeds; every address gets exactly one confirmation e-mail;
- the SIRENE registry hangs while three registrations for one SIRET arrive
  at once: no 500, all three accepted (202), all three confirmation e-mails;
- the SMTP server is down for longer than the old retry window (5 attempts;
  the schedule is shortened here to 0.5 s and 1 s waits, ticks of 1 s): every
  e-mail written meanwhile is delivered once it is back, exactly once.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.e2e.journeys import PDF, registration, sign_in
from tests.faults.conftest import PG_ADMIN_DSN, GatewaySession, Mailbox

# SIRETs of the SIRENE stand-in (several registrations may share one: they join it)
SIRETS = [
    "35600000000048",
    "40300920200025",
    "41816609600028",
    "45837220800017",
    "57128327400017",
    "61956458600011",
    "64739542500018",
    "72656521100018",
]
HANG_SIRET = "73282932000074"
SIRENE_TIMEOUT = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ctx(launch_system):
    system = launch_system(
        services=("identity", "files", "notify"),
        env={
            "EMAIL_RETRY_SCHEDULE": "0.5,1",
            "EMAIL_RETRY_TICK_SECONDS": "1",
            "SIRENE_TIMEOUT": str(SIRENE_TIMEOUT),
            "SIRENE_BREAKER_SECONDS": "5",
        },
        # fixed ports: the mail catcher restarted keeps notify's SMTP_URL
        smtp_port=_free_port(),
        mail_http_port=_free_port(),
    )
    with GatewaySession(system.gateway_url) as gateway:
        admin = sign_in(gateway, system.admin["email"], system.admin["password"])
    return {"system": system, "mailbox": Mailbox(system.mail_api_url), "admin": admin}


def register(url: str, email: str, siret: str) -> requests.Response:
    with GatewaySession(url, timeout=20) as gateway:
        return gateway.post(
            "/api/v1/registrations",
            data=registration(email, siret),
            files={"habilitation": ("habilitation.pdf", PDF, "application/pdf")},
        )


def confirmations(mailbox: Mailbox, email: str) -> int:
    return sum("confirmez" in (m.get("subject") or "").lower() for m in mailbox.messages(email))


def wait_confirmed(mailbox: Mailbox, emails: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = {e: confirmations(mailbox, e) for e in emails}
        if all(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.3)


def _terminate(db_url: str) -> int:
    name = urllib.parse.urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        return len(
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
        )


def test_backends_terminated_during_a_burst_give_no_500(ctx):
    system, mailbox = ctx["system"], ctx["mailbox"]
    env = system.config.env
    tag = uuid.uuid4().hex[:8]
    emails = [f"coupure.{tag}.{i}@example.org" for i in range(16)]
    answers: list[tuple[str, int, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def reads():
        with GatewaySession(system.gateway_url, timeout=20) as gateway:
            while not stop.is_set():
                r = gateway.get("/api/v1/registrations", headers=ctx["admin"])
                with lock:
                    answers.append(("read", r.status_code, r.headers.get("Retry-After")))

    def one(i):
        # as a client should: a 503 is retried after a short wait (the same
        # address again is safe: a second registration sends nothing more)
        for _attempt in range(4):
            r = register(system.gateway_url, emails[i], SIRETS[i % len(SIRETS)])
            with lock:
                answers.append(("register", r.status_code, r.headers.get("Retry-After")))
            if r.status_code != 503:
                break
            time.sleep(0.5)
        return r.status_code

    killed = 0
    readers = [threading.Thread(target=reads) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(one, i) for i in range(len(emails))]
            for _ in range(2):
                time.sleep(0.7)
                killed += _terminate(env["IDENTITY_DB_URL"]) + _terminate(env["NOTIFY_DB_URL"])
            statuses = [f.result(timeout=60) for f in futures]
    finally:
        stop.set()
        for t in readers:
            t.join(30)
    assert killed > 0
    summary = {}
    for kind, status, _ in answers:
        summary[(kind, status)] = summary.get((kind, status), 0) + 1
    print("answers during the terminations:", summary, "backends terminated:", killed)
    assert not [a for a in answers if a[1] >= 500 and a[1] != 503], summary
    assert all(a[2] for a in answers if a[1] == 503), "a 503 without Retry-After"
    assert sum(a[0] == "read" and a[1] == 200 for a in answers) > 0
    assert statuses == [202] * len(emails), statuses
    counts = wait_confirmed(mailbox, emails, timeout=20)
    assert all(n == 1 for n in counts.values()), counts


def test_a_hanging_registry_and_one_siret_registered_three_times_at_once(ctx):
    system, mailbox = ctx["system"], ctx["mailbox"]
    control = f"{system.sirene_url}/_standin/mode"
    assert requests.post(control, params={"mode": "hang"}, timeout=5).json()["mode"] == "hang"
    tag = uuid.uuid4().hex[:8]
    emails = [f"registre.{tag}.{i}@example.org" for i in range(3)]
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            responses = list(
                pool.map(lambda e: register(system.gateway_url, e, HANG_SIRET), emails)
            )
        elapsed = time.monotonic() - started
    finally:
        requests.post(control, params={"mode": "normal"}, timeout=5)
    assert [r.status_code for r in responses] == [202, 202, 202], [r.text for r in responses]
    assert elapsed < SIRENE_TIMEOUT + 8  # one bounded wait, not one per registration in a row
    counts = wait_confirmed(mailbox, emails, timeout=20)
    assert counts == {e: 1 for e in emails}


def test_smtp_down_longer_than_the_old_retry_window_then_every_email_is_sent_once(ctx):
    system, mailbox = ctx["system"], ctx["mailbox"]
    tag = uuid.uuid4().hex[:8]
    emails = [f"panne.smtp.{tag}.{i}@example.org" for i in range(4)]
    system.kill("mailcatcher")
    try:
        for i, email in enumerate(emails):
            assert register(system.gateway_url, email, SIRETS[i]).status_code == 202
        # 0.5 s, then 1 s waits on 1 s ticks: 8 s is more than the old 5 attempts
        time.sleep(8)
    finally:
        system.restart("mailcatcher")
    deadline = time.monotonic() + 15
    while True:
        try:
            requests.get(system.mail_api_url, timeout=2)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the mail catcher did not come back"
            time.sleep(0.2)
    counts = wait_confirmed(mailbox, emails, timeout=15)
    time.sleep(2)  # two more ticks: nothing is sent twice
    assert {e: confirmations(mailbox, e) for e in emails} == {e: 1 for e in emails}, counts

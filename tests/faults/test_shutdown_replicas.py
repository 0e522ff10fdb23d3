"""Shutdown and replicas (DESIGN.md §9, issue 10), on the running system
(identity, survey, files, notify and the gateway on PostgreSQL), with
transmissions built as people build them (the locked form downloaded, then
filled; each one with its own figures, so that no two carry the same bytes):

- SIGTERM to survey, its only replica, while 20 transmissions of five
  organisations are in flight, two more sent while it is gone, then survey
  started again: every request ends with its 201/200, or with a retryable
  503/504 (or 429) that the client retries with the same Idempotency-Key
  until it is answered 201/200 (while survey is gone: a 503 with
  Retry-After within seconds, never a hang); each organisation then lists
  exactly the transmissions it was told were recorded (none lost, none
  doubled); the SIGTERMed process drained (it finished the transmissions it
  had started, killed no worker, left no event in its outbox, no step of its
  stop failed) and exited 0 within its grace period; every
  ``survey.response_submitted`` reached notify once (a partner's feed holds
  each transmission exactly once);
- every AMQP connection of the system's vhost closed by the broker
  (management API), twice, while transmissions are in flight: every request
  ends with success or a retryable answer whose retry with the same key
  succeeds, nothing is doubled, every event reaches the feed once, and the
  services reconnect (the gateway's readiness and a new transmission succeed
  within seconds);
- three replicas of survey and two of notify (``Config(replicas=...)``)
  during a burst of transmissions and registrations: each transmission
  recorded once and in the feed once, each confirmation e-mail sent once,
  and the work spread over the replicas (their own logs: more than one
  survey replica served ``survey.transmit``, more than one notify replica
  handled events).

What was seen is printed (``-s``): answers by status, retries, exit code and
time after SIGTERM, calls per replica.
"""

from __future__ import annotations

import collections
import re
import signal
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from survey.testing import fill_form, workbook_bytes
from tests.e2e.journeys import (
    CERTIFICATION_HEADER,
    GUIDE_CERTIFICATIONS,
    PDF,
    create_campaign,
    download_form,
    make_ready,
    manager_of,
    registration,
    sign_in,
    survey_of,
    transmit,
)
from tests.faults.conftest import PG_ADMIN_DSN, RABBIT_API, GatewaySession, Mailbox

SERVICES = ("identity", "survey", "files", "notify")
GRACE = 10.0  # SHUTDOWN_GRACE_SECONDS of the SIGTERMed survey
GUIDE_LIST = workbook_bytes({"Certifications": [CERTIFICATION_HEADER, *GUIDE_CERTIFICATIONS]})
# active head offices and establishments of the SIRENE stand-in: one organisation each
SIRETS = [
    "91129745500014",
    "86403373300014",
    "93850004800013",
    "64739542500018",
    "61956458600011",
    "86903209400011",
    "57128327400017",
    "88321991700019",
]
RETRYABLE = {503, 504, 429}
BURST_THREADS = 8
CALL_TIMEOUT = 40  # seconds of one HTTP request (the gateway's heavy RPC waits 30 s)
REQUEST_DEADLINE = 75  # seconds a client keeps retrying one transmission


# ---------------------------------------------------------------- helpers


class Tally:
    """What the clients of a burst were answered, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: list[tuple[str, int, str | None]] = []  # (what, status, code)
        self.retries = 0
        self.max_attempts = 0
        self.retry_after: set[str | None] = set()

    def add(self, what: str, response: requests.Response | None, error: str | None = None):
        with self.lock:
            if response is None:
                self.answers.append((what, 0, error))
                return
            code = None
            if response.status_code >= 400:
                try:
                    code = response.json().get("code")
                except ValueError:
                    code = response.text[:80]
            self.answers.append((what, response.status_code, code))
            if response.status_code in RETRYABLE:
                self.retry_after.add(response.headers.get("Retry-After"))

    def attempts(self, n: int) -> None:
        with self.lock:
            self.retries += n - 1
            self.max_attempts = max(self.max_attempts, n)

    def summary(self) -> dict:
        with self.lock:
            counts = collections.Counter((w, s, c) for w, s, c in self.answers)
        return {
            f"{w} {s}{' ' + c if c else ''}": n
            for (w, s, c), n in sorted(
                counts.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")
            )
        }

    def unexpected(self) -> list[tuple[str, int, str | None]]:
        with self.lock:
            return [a for a in self.answers if a[1] not in {200, 201, 202} | RETRYABLE]


def send_until_recorded(url: str, org: dict, content: bytes, key: str, tally: Tally) -> dict:
    """One transmission as a careful client sends it: a retryable answer (or
    a connection cut) is retried after a short wait (Retry-After, at most
    1.5 s here) with the same Idempotency-Key, until 201/200; anything else is
    the final answer. Returns {status, id, attempts}."""
    deadline = time.monotonic() + REQUEST_DEADLINE
    attempt = 0
    with GatewaySession(url, timeout=CALL_TIMEOUT) as gateway:
        while True:
            attempt += 1
            try:
                response = transmit(gateway, org["headers"], org["sid"], content, key=key)
            except requests.RequestException as exc:  # the gateway itself never drops one
                tally.add("transmit", None, type(exc).__name__)
                response = None
            else:
                tally.add("transmit", response)
            if response is not None and response.status_code not in RETRYABLE:
                tally.attempts(attempt)
                body = response.json() if response.content else {}
                return {
                    "status": response.status_code,
                    "id": body.get("id"),
                    "attempts": attempt,
                    "code": body.get("code"),
                }
            if time.monotonic() > deadline:
                tally.attempts(attempt)
                return {
                    "status": response.status_code if response is not None else 0,
                    "id": None,
                    "attempts": attempt,
                    "code": "client.gave_up",
                }
            wait = 1.0
            if response is not None:
                try:
                    wait = float(response.headers.get("Retry-After") or 1)
                except ValueError:
                    pass
            time.sleep(min(max(wait, 0.3), 1.5))


def burst(url: str, jobs: list[tuple[dict, bytes, str]], tally: Tally):
    """Starts every transmission on BURST_THREADS client threads; returns the futures."""
    pool = ThreadPoolExecutor(BURST_THREADS)
    futures = [
        pool.submit(send_until_recorded, url, org, content, key, tally)
        for org, content, key in jobs
    ]
    pool.shutdown(wait=False)
    return futures


def figures(n: int, salt: int) -> Callable[[str, int, int], float]:
    """The amounts of the n-th filled form: distinct bytes for each transmission."""
    return lambda sheet, row, col: (row * 7 + col * 3 + salt) % 50 + 0.5 + n


def recorded(gateway, org: dict) -> list[dict]:
    response = gateway.get(f"/api/v1/surveys/{org['sid']}/transmissions", headers=org["headers"])
    assert response.status_code == 200, response.text
    return response.json()["items"]


def partner_key(gateway, agency: dict, tag: str) -> str:
    """A partner that reads ``survey.response_submitted`` in its feed only."""
    response = gateway.post(
        "/api/v1/partners",
        headers=agency,
        json={
            "name": f"Observatoire {tag}",
            "contact_email": f"si.{tag}@observatoire.example.fr",
            "event_types": ["survey.response_submitted"],
            "scope": {"account_types": ["OFA"]},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


def feed_after(gateway, key: str, cursor: str | None) -> tuple[list[dict], str | None]:
    items = []
    while True:
        params = {"limit": 500, **({"after": cursor} if cursor else {})}
        response = gateway.get(
            "/api/v1/partner/events", params=params, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"] or cursor
        if not page["has_more"]:
            return items, cursor


def feed_counts(
    gateway, key: str, cursor: str | None, expected: set[str], timeout: float = 25
) -> collections.Counter:
    """transmission_id -> times it is in the feed after ``cursor``, once every
    expected id arrived (or the timeout passed), plus two seconds more to see
    a late duplicate."""
    deadline = time.monotonic() + timeout
    while True:
        items, _ = feed_after(gateway, key, cursor)
        counts = collections.Counter(e["data"].get("transmission_id") for e in items)
        if expected <= set(counts) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(2)
    items, _ = feed_after(gateway, key, cursor)
    return collections.Counter(e["data"].get("transmission_id") for e in items)


def ready_organisations(system, agency: dict, campaign_id: str, sirets: list[str], tag: str):
    """Validated organisations whose manager downloaded the form: [{headers, sid, form}]."""
    mailbox = Mailbox(system.mail_api_url)

    def one(i_siret):
        i, siret = i_siret
        with GatewaySession(system.gateway_url, timeout=30) as gateway:
            email = f"gestion.{tag}.{i}@example.org"
            headers, org_id = manager_of(gateway, mailbox, agency, email, siret)
            sid = survey_of(gateway, headers, campaign_id)["id"]
            make_ready(gateway, headers, sid, GUIDE_LIST)
            return {
                "i": i,
                "siret": siret,
                "headers": headers,
                "org_id": org_id,
                "sid": sid,
                "form": download_form(gateway, headers, sid),
            }

    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(one, enumerate(sirets)))


def vhost_of(system) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(system.config.amqp_uri).path[1:])


def close_connections(vhost: str) -> int:
    """Every AMQP connection of ``vhost`` closed by the broker; how many."""
    base = RABBIT_API.rstrip("/")
    parts = urllib.parse.urlsplit(base)
    auth = (parts.username or "guest", parts.password or "guest")
    base = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.hostname}:{parts.port}"))
    listed = requests.get(
        f"{base}/api/vhosts/{urllib.parse.quote(vhost, safe='')}/connections", auth=auth, timeout=10
    )
    listed.raise_for_status()
    closed = 0
    for connection in listed.json():
        name = urllib.parse.quote(connection["name"], safe="")
        response = requests.delete(
            f"{base}/api/connections/{name}",
            auth=auth,
            timeout=10,
            headers={"X-Reason": "fault test: connection closed"},
        )
        closed += response.status_code in (200, 204)
    return closed


def register(url: str, email: str, siret: str, tally: Tally | None = None) -> requests.Response:
    """A registration (retried after a retryable answer, at most 5 times)."""
    with GatewaySession(url, timeout=CALL_TIMEOUT) as gateway:
        for _attempt in range(5):
            response = gateway.post(
                "/api/v1/registrations",
                data=registration(email, siret),
                files={"habilitation": ("habilitation.pdf", PDF, "application/pdf")},
            )
            if tally is not None:
                tally.add("register", response)
            if response.status_code not in RETRYABLE:
                break
            time.sleep(1)
        return response


def confirmations(mailbox: Mailbox, emails: list[str], timeout: float = 20) -> dict[str, int]:
    """The number of « Confirmez » e-mails to each address, once each got one
    (or the timeout passed), plus two seconds more to see a late duplicate."""

    def count():
        return {
            e: sum("confirmez" in (m.get("subject") or "").lower() for m in mailbox.messages(e))
            for e in emails
        }

    deadline = time.monotonic() + timeout
    while not all(count().values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(2)
    return count()


def access_lines(path, pattern: str) -> int:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    return len(re.findall(pattern, text))


def pending_events(system, service: str) -> int:
    """Rows of ``service``'s outbox not published yet (read in its database)."""
    url = system.config.env[f"{service.upper()}_DB_URL"]
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN_DSN, dbname=name, connect_timeout=10) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]


def partner_handler_runs(system) -> int:
    """How many times notify ran its response_submitted handler (every replica,
    every run of each): at least once per event; a redelivery adds one."""
    return sum(
        access_lines(path, r"event notify\.on_partner_response_submitted ")
        for path in system.logs_dir.glob("notify*.log")
    )


# ---------------------------------------------------------------- systems


@pytest.fixture(scope="module")
def single(launch_system):
    """One replica of each service; survey drains within GRACE seconds."""
    system = launch_system(services=SERVICES, env={"SHUTDOWN_GRACE_SECONDS": str(GRACE)})
    tag = uuid.uuid4().hex[:8]
    with GatewaySession(system.gateway_url) as gateway:
        agency = sign_in(gateway, system.admin["email"], system.admin["password"])
        campaign = create_campaign(gateway, agency, f"Enquête arrêt {tag}")
        key = partner_key(gateway, agency, tag)
    orgs = ready_organisations(system, agency, campaign["id"], SIRETS[:5], tag)
    return {"system": system, "agency": agency, "orgs": orgs, "key": key, "tag": tag}


@pytest.fixture(scope="module")
def replicated(launch_system):
    system = launch_system(services=SERVICES, replicas={"survey": 3, "notify": 2})
    tag = uuid.uuid4().hex[:8]
    with GatewaySession(system.gateway_url) as gateway:
        agency = sign_in(gateway, system.admin["email"], system.admin["password"])
        campaign = create_campaign(gateway, agency, f"Enquête répliques {tag}")
        key = partner_key(gateway, agency, tag)
    orgs = ready_organisations(system, agency, campaign["id"], SIRETS[:4], tag)
    return {"system": system, "agency": agency, "orgs": orgs, "key": key, "tag": tag}


def check_recorded(gateway, orgs, before: dict, results: list[tuple[dict, dict]]):
    """Each organisation lists exactly what it was told was recorded."""
    told: dict[str, set] = collections.defaultdict(set)
    for org, result in results:
        told[org["sid"]].add(result["id"])
    recorded_ids = {}
    for org in orgs:
        items = recorded(gateway, org)
        new = [t["id"] for t in items if t["id"] not in before[org["sid"]]]
        assert len(new) == len(set(new))
        assert set(new) == told[org["sid"]], (org["siret"], new, told[org["sid"]])
        recorded_ids[org["sid"]] = new
    return recorded_ids


# ---------------------------------------------------------------- tests


def test_sigterm_to_the_only_survey_during_a_burst_loses_and_doubles_nothing(single):
    system, orgs, tag = single["system"], single["orgs"], single["tag"]
    with GatewaySession(system.gateway_url) as gateway:
        _, cursor = feed_after(gateway, single["key"], None)
        before = {o["sid"]: {t["id"] for t in recorded(gateway, o)} for o in orgs}
    jobs = [
        (org, fill_form(org["form"], figures(n, org["i"])), f"arret-{tag}-{org['i']}-{n}")
        for n in range(4)
        for org in orgs
    ]  # 20, the organisations interleaved
    # two more, sent while survey is gone
    late = [
        (org, fill_form(org["form"], figures(9, org["i"])), f"arret-{tag}-{org['i']}-absent")
        for org in orgs[:2]
    ]
    assert len({content for _, content, _ in jobs + late}) == len(jobs + late)
    tally = Tally()
    runs_before = partner_handler_runs(system)
    old_log = system.logs_dir / "survey.log"
    started = time.monotonic()
    futures = burst(system.gateway_url, jobs, tally)
    # SIGTERM once survey is busy with the burst (a few transmissions answered)
    while len(tally.answers) < 3 and time.monotonic() - started < 20:
        time.sleep(0.05)
    process = system.send_signal("survey", signal.SIGTERM)
    signalled = time.monotonic()
    code = system.wait_exit(process, GRACE + 10)
    exit_after = time.monotonic() - signalled
    pending = pending_events(system, "survey")  # the stopped replica flushed its outbox
    # no survey at all now: a transmission is a fast 503 with Retry-After
    # (after the second the gateway trusts a consumer count), retried below
    time.sleep(1.2)

    def while_absent(job):
        org, content, key = job
        with GatewaySession(system.gateway_url, timeout=CALL_TIMEOUT) as gateway:
            at = time.monotonic()
            response = transmit(gateway, org["headers"], org["sid"], content, key=key)
        tally.add("transmit", response)
        code = response.json().get("code") if response.status_code >= 400 else None
        retry = response.headers.get("Retry-After")
        return response.status_code, code, retry, round(time.monotonic() - at, 2)

    with ThreadPoolExecutor(len(late)) as pool:
        absent = list(pool.map(while_absent, late))
    system.restart("survey")
    restarted = time.monotonic() - signalled
    futures += burst(system.gateway_url, late, tally)
    jobs += late
    results = [f.result(timeout=REQUEST_DEADLINE + CALL_TIMEOUT + 10) for f in futures]
    elapsed = time.monotonic() - started

    log = old_log.read_text(encoding="utf-8", errors="replace")
    stop_line = re.search(r"stopped survey in ([\d.]+) s \((\d+) worker\(s\) killed\)", log)
    after_term = log.split("SIGTERM received", 1)[-1]
    finished_in_drain = len(re.findall(r"rpc survey\.transmit ok", after_term))
    statuses = collections.Counter(r["status"] for r in results)
    print(
        f"\nSIGTERM: exit code {code} after {exit_after:.2f} s (grace {GRACE:.0f} s), "
        f"restart spawned {restarted:.2f} s after SIGTERM; while absent {absent}; "
        f"survey outbox rows pending after the exit: {pending}; "
        f"{stop_line.group(0) if stop_line else 'no stop line'}; "
        f"transmissions finished while draining: {finished_in_drain}; "
        f"answers: {tally.summary()}; final: {dict(statuses)}; "
        f"retries {tally.retries}, max attempts {tally.max_attempts}, "
        f"Retry-After {sorted(map(str, tally.retry_after))}; burst {elapsed:.1f} s"
    )

    assert code == 0, f"survey exited with {code}"
    assert exit_after <= GRACE, f"survey took {exit_after:.1f} s to exit"
    assert stop_line and stop_line.group(2) == "0", "the drain killed workers"
    assert finished_in_drain >= 1, "nothing was in flight at SIGTERM: the drain was not tested"
    # answered at once (no consumer: service.unavailable) or after the gateway's
    # 2 s wait for a heavy slot (survey.busy), never held until a timeout
    assert all(status == 503 and retry and took < 3.5 for status, _, retry, took in absent), absent
    assert pending == 0, f"{pending} events left in the outbox by the stopped survey"
    assert not tally.unexpected(), tally.summary()
    assert all(r["status"] in (200, 201) for r in results), results
    with GatewaySession(system.gateway_url) as gateway:
        ids = check_recorded(
            gateway, orgs, before, list(zip([j[0] for j in jobs], results, strict=True))
        )
        assert sum(map(len, ids.values())) == len(jobs)
        expected = {t for new in ids.values() for t in new}
        counts = feed_counts(gateway, single["key"], cursor, expected)
    print(
        f"notify ran on_partner_response_submitted {partner_handler_runs(system) - runs_before}"
        f" times for {len(expected)} transmissions; feed entries {sum(counts.values())}"
    )
    assert set(counts) == expected and set(counts.values()) == {1}, counts
    # the stop itself went as designed: no step of it failed (kit.runner logs
    # "shutdown step failed" with a traceback when one does)
    failed = after_term.find("shutdown step failed")
    assert failed < 0, after_term[failed : failed + 600]


def test_broker_closes_every_connection_while_writes_are_in_flight(single):
    system, orgs, tag = single["system"], single["orgs"], single["tag"]
    vhost = vhost_of(system)
    with GatewaySession(system.gateway_url) as gateway:
        _, cursor = feed_after(gateway, single["key"], None)
        before = {o["sid"]: {t["id"] for t in recorded(gateway, o)} for o in orgs}
    jobs = [
        (org, fill_form(org["form"], figures(10 + n, org["i"])), f"coupe-{tag}-{org['i']}-{n}")
        for n in range(4)
        for org in orgs
    ]
    tally = Tally()
    runs_before = partner_handler_runs(system)
    started = time.monotonic()
    futures = burst(system.gateway_url, jobs, tally)
    closed = []
    for wanted in (3, 10):  # twice, each time with writes in flight
        while len(tally.answers) < wanted and time.monotonic() - started < 30:
            time.sleep(0.05)
        closed.append(close_connections(vhost))
    last_cut = time.monotonic()
    results = [f.result(timeout=REQUEST_DEADLINE + CALL_TIMEOUT + 10) for f in futures]

    # the services are back: readiness, then a new transmission of each organisation
    ready_after = None
    with GatewaySession(system.gateway_url, timeout=10) as gateway:
        while time.monotonic() - last_cut < 30:
            if gateway.get("/health/ready").status_code == 200:
                ready_after = time.monotonic() - last_cut
                break
            time.sleep(0.2)
        later = [
            transmit(
                gateway,
                org["headers"],
                org["sid"],
                fill_form(org["form"], figures(30, org["i"])),
                key=f"apres-{tag}-{org['i']}",
            )
            for org in orgs
        ]
        later_after = time.monotonic() - last_cut
        # identity's outbox and notify's e-mail handler are back too: one e-mail
        email = f"apres.coupure.{tag}@example.org"
        registered = register(system.gateway_url, email, SIRETS[5])
        mails = confirmations(Mailbox(system.mail_api_url), [email])
    statuses = collections.Counter(r["status"] for r in results)
    print(
        f"\nconnections closed: {closed}; answers: {tally.summary()}; final: {dict(statuses)}; "
        f"retries {tally.retries}, max attempts {tally.max_attempts}; ready "
        f"{ready_after if ready_after is None else round(ready_after, 2)} s after the last cut; "
        f"later transmissions {[r.status_code for r in later]} {later_after:.2f} s after it"
    )

    assert all(n > 0 for n in closed), closed
    assert not tally.unexpected(), tally.summary()
    assert all(r["status"] in (200, 201) for r in results), results
    assert ready_after is not None and ready_after < 10, ready_after
    assert [r.status_code for r in later] == [201] * len(orgs), [r.text for r in later]
    assert later_after < 15, later_after
    assert registered.status_code == 202, registered.text
    assert mails == {email: 1}, mails
    pairs = list(zip([j[0] for j in jobs], results, strict=True))
    pairs += [(org, {"id": r.json()["id"]}) for org, r in zip(orgs, later, strict=True)]
    with GatewaySession(system.gateway_url) as gateway:
        ids = check_recorded(gateway, orgs, before, pairs)
        assert sum(map(len, ids.values())) == len(jobs) + len(orgs)
        expected = {t for new in ids.values() for t in new}
        counts = feed_counts(gateway, single["key"], cursor, expected)
    print(
        f"notify ran on_partner_response_submitted {partner_handler_runs(system) - runs_before}"
        f" times for {len(expected)} transmissions; feed entries {sum(counts.values())}"
    )
    assert set(counts) == expected and set(counts.values()) == {1}, counts


def test_three_survey_and_two_notify_replicas_share_a_burst(replicated):
    system, orgs, tag = replicated["system"], replicated["orgs"], replicated["tag"]
    assert len(system.replicas("survey")) == 3 and len(system.replicas("notify")) == 2
    mailbox = Mailbox(system.mail_api_url)
    logs = {p.name: p.log for p in system.processes if p.service in ("survey", "notify")}
    transmit_before = {n: access_lines(p, r"rpc survey\.transmit ") for n, p in logs.items()}
    events_before = {n: access_lines(p, r"event notify\.on_") for n, p in logs.items()}
    with GatewaySession(system.gateway_url) as gateway:
        _, cursor = feed_after(gateway, replicated["key"], None)
        before = {o["sid"]: {t["id"] for t in recorded(gateway, o)} for o in orgs}
    jobs = [
        (org, fill_form(org["form"], figures(n, org["i"])), f"rep-{tag}-{org['i']}-{n}")
        for n in range(5)
        for org in orgs
    ]  # 20
    emails = [f"nouveau.{tag}.{i}@example.org" for i in range(8)]
    tally = Tally()

    futures = burst(system.gateway_url, jobs, tally)
    with ThreadPoolExecutor(2) as pool:
        statuses = [
            r.status_code
            for r in pool.map(
                lambda i: register(system.gateway_url, emails[i], SIRETS[4 + i % 4], tally),
                range(len(emails)),
            )
        ]
    results = [f.result(timeout=REQUEST_DEADLINE + CALL_TIMEOUT + 10) for f in futures]

    mails = confirmations(mailbox, emails)
    with GatewaySession(system.gateway_url) as gateway:
        ids = check_recorded(
            gateway, orgs, before, list(zip([j[0] for j in jobs], results, strict=True))
        )
        expected = {t for new in ids.values() for t in new}
        counts = feed_counts(gateway, replicated["key"], cursor, expected)
    served = {
        n: access_lines(p, r"rpc survey\.transmit ") - transmit_before[n]
        for n, p in logs.items()
        if n.startswith("survey")
    }
    handled = {
        n: access_lines(p, r"event notify\.on_") - events_before[n]
        for n, p in logs.items()
        if n.startswith("notify")
    }
    print(
        f"\nreplicas: survey.transmit per survey replica {served}, events per notify "
        f"replica {handled}; answers: {tally.summary()}; registrations {statuses}; "
        f"retries {tally.retries}; confirmation e-mails per address "
        f"{dict(collections.Counter(mails.values()))}"
    )

    assert not tally.unexpected(), tally.summary()
    assert all(r["status"] in (200, 201) for r in results), results
    assert statuses == [202] * len(emails), statuses
    assert sum(map(len, ids.values())) == len(jobs)
    assert set(counts) == expected and set(counts.values()) == {1}, counts
    assert mails == {e: 1 for e in emails}, mails
    assert sum(served.values()) >= len(jobs)
    assert sum(n > 0 for n in served.values()) >= 2, served
    assert sum(n > 0 for n in handled.values()) >= 2, handled

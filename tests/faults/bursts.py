"""Bursts of writes against a running system, shared by the fault tests that
disturb it while clients write (``test_shutdown_replicas.py``,
``test_cluster.py``); a plain module, no fixtures.

It offers:

- the setting: ``prepare`` (an agency, a campaign, a partner reading
  ``survey.response_submitted`` from ``partner_key``, and organisations made
  ready by ``ready_organisations``, each with its locked form downloaded),
  ``SIRETS`` and ``GUIDE_LIST``;
- the clients: ``Tally`` (what they were answered, thread-safe),
  ``until_answered`` (one request sent again after a retryable answer or a
  cut connection, after Retry-After), ``transmit_until_answered`` (a
  transmission so retried with the same Idempotency-Key), ``register``, and
  ``figures`` (distinct amounts for each filled form, so that no two
  transmissions carry the same bytes);
- what the system holds afterwards: ``recorded`` (an organisation's
  transmissions), ``feed_after`` / ``feed_counts`` (a partner's feed),
  ``snapshot`` (both, before a burst) and ``confirmations`` (the « Confirmez »
  e-mails).
"""

from __future__ import annotations

import collections
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from services.survey.tests.support import workbook_bytes
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
from tests.faults.conftest import GatewaySession, Mailbox

GUIDE_LIST = workbook_bytes({"Certifications": [CERTIFICATION_HEADER, *GUIDE_CERTIFICATIONS]})
# active head offices and establishments of the SIRENE stand-in: one organisation
# (or registration) each
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
CALL_TIMEOUT = 40  # seconds of one HTTP request (the gateway's heavy RPC waits 30 s)


# ---------------------------------------------------------------- the setting


def _named(kind: str, tag: str) -> list[str]:
    return [word for word in (kind, tag) if word]


def partner_key(gateway, agency: dict, tag: str, kind: str = "") -> str:
    """A partner that reads ``survey.response_submitted`` in its feed only
    (« Observatoire <kind> <tag> »)."""
    words = _named(kind, tag)
    response = gateway.post(
        "/api/v1/partners",
        headers=agency,
        json={
            "name": "Observatoire " + " ".join(words),
            "contact_email": f"si.{'.'.join(words)}@observatoire.example.fr",
            "event_types": ["survey.response_submitted"],
            "scope": {"account_types": ["OFA"]},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


def ready_organisations(
    system, agency: dict, campaign_id: str, sirets: list[str], tag: str, threads: int = 3
) -> list[dict]:
    """Validated organisations whose manager downloaded the form (made ready on
    ``threads`` threads): [{i, siret, headers, org_id, sid, form}]."""
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

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, enumerate(sirets)))


def prepare(system, campaign: str, organisations: int, *, kind: str = "", threads: int = 3) -> dict:
    """A fresh tag, the campaign « <campaign> <tag> », a partner (``partner_key``
    with ``kind``) and the first ``organisations`` of SIRETS made ready:
    {system, agency, orgs, key, tag}."""
    tag = uuid.uuid4().hex[:8]
    with GatewaySession(system.gateway_url) as gateway:
        agency = sign_in(gateway, system.admin["email"], system.admin["password"])
        created = create_campaign(gateway, agency, f"{campaign} {tag}")
        key = partner_key(gateway, agency, tag, kind)
    orgs = ready_organisations(
        system,
        agency,
        created["id"],
        SIRETS[:organisations],
        ".".join(_named(kind, tag)),
        threads,
    )
    return {"system": system, "agency": agency, "orgs": orgs, "key": key, "tag": tag}


# ---------------------------------------------------------------- clients


class Tally:
    """What the clients of a burst were answered, thread-safe: ``answers``
    (when, what, status, code), ``retries`` per kind of request, the most
    attempts one request took and the Retry-After values seen. ``enough`` is
    set once ``enough_after`` answers came; no client retries past ``within``
    seconds after the tally was made (``deadline``)."""

    def __init__(self, *, enough_after: int | None = None, within: float | None = None) -> None:
        self.lock = threading.Lock()
        self.answers: list[tuple[float, str, int, str | None]] = []
        self.retries: collections.Counter[str] = collections.Counter()
        self.max_attempts = 0
        self.retry_after: set[str | None] = set()
        self.enough = threading.Event()
        self.enough_after = enough_after
        self.deadline = math.inf if within is None else time.monotonic() + within

    def add(self, what: str, response: requests.Response | None, error: str | None = None):
        status, code = (0, error) if response is None else (response.status_code, None)
        if response is not None and status >= 400:
            try:
                code = response.json().get("code")
            except ValueError:
                code = response.text[:80]
        with self.lock:
            self.answers.append((time.monotonic(), what, status, code))
            if response is not None and status in RETRYABLE:
                self.retry_after.add(response.headers.get("Retry-After"))
            if self.enough_after is not None and len(self.answers) >= self.enough_after:
                self.enough.set()

    def attempts(self, what: str, n: int) -> None:
        with self.lock:
            self.retries[what] += n - 1
            self.max_attempts = max(self.max_attempts, n)

    def total_retries(self) -> int:
        with self.lock:
            return sum(self.retries.values())

    def summary(self) -> dict[str, int]:
        with self.lock:
            counts = collections.Counter((w, s, c) for _, w, s, c in self.answers)
        return {
            f"{w} {s}{' ' + c if c else ''}": n
            for (w, s, c), n in sorted(
                counts.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")
            )
        }

    def unexpected(self) -> list[tuple[float, str, int, str | None]]:
        with self.lock:
            return [a for a in self.answers if a[2] not in {200, 201, 202} | RETRYABLE]


def until_answered(
    what: str, send: Callable[[], requests.Response], tally: Tally, within: float
) -> tuple[requests.Response | None, int]:
    """``send()`` again after a retryable answer or a cut connection (after
    Retry-After, at most 1.5 s here), until another answer, ``within`` seconds
    or the tally's deadline; (the last response or None, attempts)."""
    deadline = min(time.monotonic() + within, tally.deadline)
    attempt = 0
    while True:
        attempt += 1
        try:
            response = send()
        except requests.RequestException as exc:  # the gateway itself never drops one
            tally.add(what, None, type(exc).__name__)
            response = None
        else:
            tally.add(what, response)
        if response is not None and response.status_code not in RETRYABLE:
            break
        if time.monotonic() > deadline:
            break
        try:
            wait = float(response.headers.get("Retry-After") or 1) if response is not None else 1
        except ValueError:
            wait = 1
        time.sleep(min(max(wait, 0.3), 1.5))
    tally.attempts(what, attempt)
    return response, attempt


def transmit_until_answered(
    gateway, org: dict, content: bytes, key: str, tally: Tally, within: float
) -> dict:
    """One transmission as a careful client sends it (``until_answered``, the
    same Idempotency-Key each time): {status, id, attempts, code}, with id None
    and code ``client.gave_up`` when it was still retryable at the end."""
    response, attempts = until_answered(
        "transmit",
        lambda: transmit(gateway, org["headers"], org["sid"], content, key=key),
        tally,
        within,
    )
    if response is not None and response.status_code not in RETRYABLE:
        body = response.json() if response.content else {}
        return {
            "status": response.status_code,
            "id": body.get("id"),
            "attempts": attempts,
            "code": body.get("code"),
        }
    return {
        "status": response.status_code if response is not None else 0,
        "id": None,
        "attempts": attempts,
        "code": "client.gave_up",
    }


def register(
    url: str, email: str, siret: str, tally: Tally | None = None, attempts: int = 1
) -> requests.Response:
    """A registration, sent again (after 1 s) after a retryable answer, at most
    ``attempts`` times in all; each answer is added to ``tally`` if given."""
    with GatewaySession(url, timeout=CALL_TIMEOUT) as gateway:
        for attempt in range(1, attempts + 1):
            response = gateway.post(
                "/api/v1/registrations",
                data=registration(email, siret),
                files={"habilitation": ("habilitation.pdf", PDF, "application/pdf")},
            )
            if tally is not None:
                tally.add("register", response)
            if response.status_code not in RETRYABLE or attempt == attempts:
                break
            time.sleep(1)
        return response


def figures(n: int, salt: int) -> Callable[[str, int, int], float]:
    """The amounts of the n-th filled form: distinct bytes for each transmission."""
    return lambda sheet, row, col: (row * 7 + col * 3 + salt) % 50 + 0.5 + n


# ---------------------------------------------------------------- what the system holds


def recorded(gateway, org: dict) -> list[str]:
    """The ids of the transmissions the organisation lists."""
    response = gateway.get(f"/api/v1/surveys/{org['sid']}/transmissions", headers=org["headers"])
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


def feed_after(gateway, key: str, cursor: str | None) -> tuple[list[dict], str | None]:
    """The partner's feed after ``cursor`` (every page), and the cursor after it."""
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


def snapshot(url: str, key: str, orgs: list[dict]) -> tuple[str | None, dict[str, set[str]]]:
    """Before a burst: the partner's feed cursor now, and each organisation's
    transmissions now (sid -> ids)."""
    with GatewaySession(url) as gateway:
        _, cursor = feed_after(gateway, key, None)
        return cursor, {o["sid"]: set(recorded(gateway, o)) for o in orgs}


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


def confirmations(
    mailbox: Mailbox, emails: list[str], timeout: float = 20, poll: float = 0.3
) -> dict[str, int]:
    """The number of « Confirmez » e-mails to each address, once each got one
    (or the timeout passed; looked at every ``poll`` seconds), plus two seconds
    more to see a late duplicate."""

    def count():
        return {
            e: sum("confirmez" in (m.get("subject") or "").lower() for m in mailbox.messages(e))
            for e in emails
        }

    deadline = time.monotonic() + timeout
    while not all(count().values()) and time.monotonic() < deadline:
        time.sleep(poll)
    time.sleep(2)
    return count()

"""The partner interface on the running system (issue 7): the agency declares
partners → an organisation is validated and transmits its survey → each
partner receives the same CloudEvents, with the same ids, on its signed
webhook, on its AMQP queue and in its pull feed, and reads the transmission
and its file through its key, within its scope (404 outside). Then a burst of
200 events with notify killed (SIGKILL) and restarted in the middle: every
event is in the feed once and reaches the webhook, by id."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import amqp.exceptions
import kombu
import kombu.exceptions
import pytest
import requests

from deploy.webhook_receiver import Receiver
from services.survey.tests.support import fill_form, workbook_bytes
from tests.e2e.conftest import RABBIT_API
from tests.e2e.journeys import (
    CERTIFICATION_HEADER,
    GUIDE_CERTIFICATIONS,
    create_campaign,
    download_form,
    make_ready,
    manager_of,
    sign_in,
    survey_of,
    transmit,
)

# SIRETs of the SIRENE stand-in used by no other test
SIRET_PARTNERED, SIRET_OTHER = "45837220800017", "64739542500018"
GUIDE_LIST = workbook_bytes({"Certifications": [CERTIFICATION_HEADER, *GUIDE_CERTIFICATIONS]})
SURVEY_TYPES = ["survey.response_submitted", "survey.survey_blocked", "survey.survey_unblocked"]


def key_headers(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def create_partner(gateway, agency, **data) -> dict:
    response = gateway.post("/api/v1/partners", headers=agency, json=data)
    assert response.status_code == 201, response.text
    return response.json()


def feed(gateway, key: str, after: str | None = None, wait: int = 0) -> dict:
    params = {"limit": 500, "wait": wait}
    if after:
        params["after"] = after
    response = gateway.get("/api/v1/partner/events", headers=key_headers(key), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def whole_feed(gateway, key: str) -> list[dict]:
    items, cursor = [], None
    while True:
        page = feed(gateway, key, cursor)
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


@pytest.fixture
def partners(gateway, admin):
    """Creates partners through the agency API; deletes them (and their
    RabbitMQ users) at the end."""
    agency = sign_in(gateway, admin["email"], admin["password"])
    made: list[str] = []

    def make(**data):
        created = create_partner(gateway, agency, **data)
        made.append(created["partner"]["id"])
        return created

    yield agency, make
    for partner_id in made:
        gateway.delete(f"/api/v1/partners/{partner_id}", headers=agency)


def test_partners_receive_the_same_events_on_every_channel_and_read_within_their_scope(
    gateway, mailbox, partners, unique
):
    agency, make = partners
    with Receiver() as receiver:
        region = make(
            name=f"Région {unique}",
            contact_email=f"si.{unique}@region.example.fr",
            event_types=["identity.organisation_validated", *SURVEY_TYPES],
            scope={"account_types": ["OFA"]},
            webhook_url=receiver.url,
            amqp=True,
        )
        receiver.secret = region["webhook_secret"]
        other = make(
            name=f"Rectorat {unique}",
            contact_email=f"dsi.{unique}@ac.example.fr",
            event_types=SURVEY_TYPES,
            scope={"sirets": [SIRET_OTHER]},
        )
        key, other_key = region["api_key"], other["api_key"]
        credentials = region["amqp_credentials"]
        start = feed(gateway, key)["next_cursor"]

        # a long poll waits for what comes next
        polled: dict = {}
        poller = threading.Thread(
            target=lambda: polled.update(feed(gateway, key, start, wait=30)), daemon=True
        )
        poller.start()

        manager, _org = manager_of(
            gateway, mailbox, agency, f"gestion.{unique}@example.org", SIRET_PARTNERED
        )
        campaign = create_campaign(gateway, agency, f"Enquête partenaires {unique}")
        sid = survey_of(gateway, manager, campaign["id"])["id"]
        make_ready(gateway, manager, sid, GUIDE_LIST)
        filled = fill_form(download_form(gateway, manager, sid))
        sent = transmit(gateway, manager, sid, filled)
        assert sent.status_code == 201, sent.text
        transmission_id = sent.json()["id"]

        poller.join(timeout=35)
        assert polled.get("items"), "the long poll came back empty"
        assert polled["items"][0]["type"] == "fr.formation.identity.organisation_validated.v1"

        # the webhook: two signed events, in order
        received = receiver.wait_for(2, timeout=30)
        assert all(r.verified for r in received), [r.headers for r in received]
        by_type = {r.event["type"]: r for r in received}
        submitted = by_type["fr.formation.survey.response_submitted.v1"].event
        validated = by_type["fr.formation.identity.organisation_validated.v1"].event
        assert submitted["data"]["transmission_id"] == transmission_id
        assert submitted["data"]["siret"] == SIRET_PARTNERED
        assert submitted["data"]["sha256"] == hashlib.sha256(filled).hexdigest()
        assert submitted["subject"] == f"transmissions/{transmission_id}"
        assert validated["data"]["siret"] == SIRET_PARTNERED
        text = json.dumps(submitted)
        assert f"gestion.{unique}" not in text and "submitted_by" not in text
        for r in received:
            assert r.webhook_id == r.event["id"]

        # the feed: the same events, the same ids
        events = [e for e in whole_feed(gateway, key) if e["data"].get("siret") == SIRET_PARTNERED]
        assert [e["id"] for e in events] == [validated["id"], submitted["id"]]

        # AMQP: the same ids on the partner's own queue, with its own credentials
        got = []
        with kombu.Connection(credentials["uri"], connect_timeout=5) as conn:
            queue = kombu.Queue(credentials["queue"], no_declare=True)
            with conn.SimpleQueue(queue) as simple:
                for _ in range(2):
                    message = simple.get(timeout=20)
                    got.append(json.loads(message.body))
                    message.ack()
        assert {e["id"] for e in got} == {validated["id"], submitted["id"]}

        # its credentials open nothing else: not the internal vhost
        internal = credentials["uri"].rsplit("/", 1)[0] + "/"
        refused_errors = (amqp.exceptions.ConnectionError, kombu.exceptions.OperationalError)
        with pytest.raises(refused_errors), kombu.Connection(internal, connect_timeout=5) as conn:
            conn.connect()

        # the transmission and its file, through the links of the event
        path = submitted["data"]["links"]["transmission"].split("/api/v1/", 1)[1]
        found = gateway.get(f"/api/v1/{path}", headers=key_headers(key))
        assert found.status_code == 200, found.text
        assert found.json()["sha256"] == submitted["data"]["sha256"]
        assert "contact" not in found.json().get("values", {})
        file = gateway.get(f"/api/v1/{path}/file", headers=key_headers(key))
        assert file.status_code == 200
        assert hashlib.sha256(file.content).hexdigest() == submitted["data"]["sha256"]

        # outside its scope: nothing in the feed, 404 on the object
        assert not [e for e in whole_feed(gateway, other_key)
                    if e["data"].get("siret") == SIRET_PARTNERED]  # fmt: skip
        hidden = gateway.get(f"/api/v1/{path}", headers=key_headers(other_key))
        assert hidden.status_code == 404
        assert hidden.json()["code"] == "survey.transmission_not_found"
        hidden_file = gateway.get(f"/api/v1/{path}/file", headers=key_headers(other_key))
        assert hidden_file.status_code == 404

        # a key is no session, a session no key
        assert gateway.get("/api/v1/surveys", headers=key_headers(key)).status_code == 401
        assert gateway.get("/api/v1/partner/events", headers=agency).status_code == 401

        # the agency sees each delivery, by channel
        log = gateway.get(
            "/api/v1/partner-deliveries",
            headers=agency,
            params={"partner_id": region["partner"]["id"], "state": "delivered"},
        )
        assert log.status_code == 200
        assert {(d["event_id"], d["channel"]) for d in log.json()["items"]} >= {
            (submitted["id"], "webhook"),
            (submitted["id"], "amqp"),
        }

        # a revoked key opens nothing any more
        revoked = gateway.delete(
            f"/api/v1/partners/{region['partner']['id']}/keys/{region['key']['id']}",
            headers=agency,
        )
        assert revoked.status_code == 200
        refused = gateway.get("/api/v1/partner/events", headers=key_headers(key))
        assert refused.status_code == 401 and refused.json()["code"] == "partner.key_invalid"

    # deleting the partner removes its RabbitMQ user
    gateway.delete(f"/api/v1/partners/{region['partner']['id']}", headers=agency)
    base = RABBIT_API.split("://", 1)
    user = requests.get(
        f"{base[0]}://{base[1].split('@', 1)[1]}/api/users/{credentials['username']}",
        auth=tuple(base[1].split("@", 1)[0].split(":", 1)),
        timeout=10,
    )
    assert user.status_code == 404


def test_a_burst_of_200_events_survives_notify_killed_and_restarted(
    system, gateway, mailbox, partners, unique
):
    agency, make = partners
    manager, _org = manager_of(
        gateway, mailbox, agency, f"rafale.{unique}@example.org", SIRET_OTHER
    )
    campaign = create_campaign(gateway, agency, f"Enquête rafale {unique}")
    sid = survey_of(gateway, manager, campaign["id"])["id"]
    with Receiver() as receiver:
        burst = make(
            name=f"Rafale {unique}",
            contact_email=f"rafale.{unique}@partenaire.example.fr",
            event_types=["survey.survey_blocked", "survey.survey_unblocked"],
            scope={"sirets": [SIRET_OTHER]},
            webhook_url=receiver.url,
        )
        receiver.secret = burst["webhook_secret"]
        key = burst["api_key"]

        started = time.monotonic()
        for n in range(200):
            action = "block" if n % 2 == 0 else "unblock"
            response = gateway.post(f"/api/v1/surveys/{sid}/{action}", headers=agency)
            assert response.status_code == 200, response.text
            if n == 60:
                system.kill("notify")  # SIGKILL: deliveries and events in flight
            if n == 140:
                system.restart("notify")
        published = time.monotonic() - started
        # notify restarted may still be starting: the gateway answers 503 at
        # once (no consumer) until it consumes again
        wait_until(
            lambda: (
                gateway.get(
                    "/api/v1/partner/events", headers=key_headers(key), params={"limit": 1}
                ).status_code
                == 200
            ),  # fmt: skip
            60,
            "notify consuming again",
        )

        ours = wait_until(
            lambda: (
                found
                if len(
                    found := [
                        e for e in whole_feed(gateway, key) if e["subject"] == f"surveys/{sid}"
                    ]
                )
                >= 200  # fmt: skip
                else None
            ),
            90,
            "200 events in the feed",
        )
        ids = [e["id"] for e in ours]
        assert len(ids) == len(set(ids)) == 200  # each event once in the feed
        wait_until(lambda: set(ids) <= set(receiver.ids()), 90, "every event on the webhook")
        received = receiver.ids()
        duplicates = len(received) - len(set(received))
        assert all(r.verified for r in receiver.received)
        # at least once: a push in flight when notify died may come twice,
        # never more than the pushes in flight per partner (4)
        assert duplicates <= 4, duplicates
        print(
            f"\nburst: 200 events published in {published:.1f} s with notify killed at 61 "
            f"and restarted at 141; feed 200 unique, webhook {len(set(received))} unique, "
            f"{duplicates} duplicate(s), all signatures verified"
        )


SIRET_RETRIED = "72656521100026"


def test_a_webhook_down_for_a_while_gets_the_event_again_with_the_same_id_and_queues_stay_private(
    gateway, mailbox, partners, unique
):
    agency, make = partners
    manager, _org = manager_of(
        gateway, mailbox, agency, f"reprise.{unique}@example.org", SIRET_RETRIED
    )
    campaign = create_campaign(gateway, agency, f"Enquête reprise {unique}")
    sid = survey_of(gateway, manager, campaign["id"])["id"]
    with Receiver() as receiver:
        receiver.down()  # the partner's endpoint is away when the event comes
        first = make(
            name=f"DREETS {unique}",
            contact_email=f"si.{unique}@dreets.example.fr",
            event_types=["survey.survey_blocked"],
            scope={"sirets": [SIRET_RETRIED]},
            webhook_url=receiver.url,
            amqp=True,
        )
        second = make(
            name=f"OPCO {unique}",
            contact_email=f"si.{unique}@opco.example.fr",
            event_types=["survey.survey_blocked"],
            scope={"sirets": [SIRET_RETRIED]},
            amqp=True,
        )
        receiver.secret = first["webhook_secret"]
        key = first["api_key"]
        blocked = gateway.post(f"/api/v1/surveys/{sid}/block", headers=agency)
        assert blocked.status_code == 200, blocked.text

        def failed_attempts():
            page = gateway.get(
                "/api/v1/partner/deliveries",
                headers=key_headers(key),
                params={"channel": "webhook"},
            ).json()["items"]
            return [d for d in page if d["attempts"] >= 2 and d["state"] == "pending"]

        pending = wait_until(failed_attempts, 30, "two refused attempts")[0]
        assert receiver.attempts == 0  # nothing listened: every attempt was refused
        receiver.up()
        got = receiver.wait_for(1, timeout=30)[0]
        assert got.verified and got.webhook_id == pending["event_id"] == got.event["id"]

        # the partner sees its own delivery log, attempts included
        detail = wait_until(
            lambda: (
                d
                if (
                    d := gateway.get(
                        f"/api/v1/partner/deliveries/{pending['id']}", headers=key_headers(key)
                    ).json()
                )["state"]
                == "delivered"
                else None
            ),
            15,
            "the delivery recorded as delivered",
        )
        statuses = [a["status"] for a in detail["attempts_log"]]
        assert statuses[-1] == 204 and all(s is None for s in statuses[:-1]), statuses
        assert all(a["error"] for a in detail["attempts_log"][:-1])
        # another partner's delivery is not found by this key
        other = gateway.get(
            f"/api/v1/partner/deliveries/{pending['id']}",
            headers=key_headers(second["api_key"]),
        )
        assert other.status_code == 404

        # the feed: the event, then nothing more from the last cursor
        page = feed(gateway, key)
        assert [e["id"] for e in page["items"]] == [pending["event_id"]]
        assert feed(gateway, key, page["next_cursor"])["items"] == []

    # AMQP: each partner reads its own queue, not another partner's, and writes nothing
    mine, theirs = first["amqp_credentials"], second["amqp_credentials"]
    with kombu.Connection(mine["uri"], connect_timeout=5) as conn:
        with conn.SimpleQueue(kombu.Queue(mine["queue"], no_declare=True)) as simple:
            message = simple.get(timeout=20)
            assert json.loads(message.body)["id"] == pending["event_id"]
            message.ack()

    def read_theirs(conn):
        with conn.SimpleQueue(kombu.Queue(theirs["queue"], no_declare=True)) as simple:
            simple.get(timeout=5)

    def declare_a_queue(conn):
        kombu.Queue(f"{mine['queue']}.mine", channel=conn.channel()).declare()

    def publish(conn):
        kombu.Producer(conn.channel()).publish(
            {"id": "faux"}, exchange=mine["exchange"], routing_key="survey.survey_blocked"
        )

    for forbidden in (read_theirs, declare_a_queue, publish):
        # publisher confirms: a refused publish is an error, not a silent drop
        options = {"confirm_publish": True}
        with kombu.Connection(mine["uri"], connect_timeout=5, transport_options=options) as conn:
            with pytest.raises(amqp.exceptions.AccessRefused):
                forbidden(conn)


def test_bad_partner_input_is_refused_with_a_stable_code_and_nothing_is_created(
    gateway, partners, unique
):
    agency, make = partners
    before = gateway.get("/api/v1/partners", headers=agency).json()
    base = {
        "name": f"Refus {unique}",
        "contact_email": f"refus.{unique}@partenaire.example.fr",
        "event_types": ["survey.response_submitted"],
    }
    for change, field in (
        ({"webhook_url": "http://10.0.0.1/hook"}, "webhook_url"),
        ({"webhook_url": "https://169.254.169.254/latest/meta-data"}, "webhook_url"),
        ({"webhook_url": "ftp://partenaire.example.fr/"}, "webhook_url"),
        ({"event_types": ["survey.inconnu"]}, "event_types"),
        ({"scope": {"sirets": ["123"]}}, "scope.sirets"),
        ({"contact_email": "pas-une-adresse"}, "contact_email"),
    ):
        refused = gateway.post("/api/v1/partners", headers=agency, json=base | change)
        assert refused.status_code == 422, (change, refused.text)
        body = refused.json()
        assert body["code"].startswith("partner.") or body["code"] == "invalid_input", body
        assert field in json.dumps(body.get("errors") or body), body
    assert gateway.get("/api/v1/partners", headers=agency).json() == before

    key = make(**base)["api_key"]
    for params, status, code in (
        ({"after": "pas-un-curseur"}, 400, "partner.cursor_invalid"),
        ({"limit": 0}, 400, None),
        ({"limit": 501}, 400, None),
        ({"wait": 31}, 400, None),
    ):
        answer = gateway.get("/api/v1/partner/events", headers=key_headers(key), params=params)
        assert answer.status_code == status, (params, answer.text)
        assert code is None or answer.json()["code"] == code
        assert answer.json()["title"]  # French, for the partner's logs
    unknown = gateway.get("/api/v1/partner/events", headers=key_headers("fpk_abcdefgh_" + "x" * 43))
    assert unknown.status_code == 401 and unknown.json()["code"] == "partner.key_invalid"
    missing = gateway.get("/api/v1/partner/transmissions/0000", headers=key_headers(key))
    assert missing.status_code == 404

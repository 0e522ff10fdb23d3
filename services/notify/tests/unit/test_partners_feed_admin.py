"""The partner interface on SQLite in memory: the feed (ingestion, cursors,
retention, scope), the agency's administration (validation, keys, secrets,
audit, roles) and the push dispatcher against a real webhook receiver."""

from __future__ import annotations

import base64
import datetime as dt
import json

import eventlet
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from deploy.webhook_receiver import Receiver
from kit import audit as kit_audit
from kit.context import AGENCY_ADMIN, MANAGER, Caller
from kit.db import make_engine
from kit.errors import BadRequest, Forbidden, Gone, InvalidInput, Unauthenticated
from notify.models import (
    AMQP,
    DELIVERY_DELIVERED,
    DELIVERY_DISABLED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DISABLED,
    FAILED,
    WEBHOOK,
    Base,
    Delivery,
    DeliveryAttempt,
    Partner,
    PartnerAudit,
    PartnerAuditChain,
    PartnerDelivery,
    PartnerEvent,
    PartnerKey,
)
from notify.partners import admin, catalogue, feed, keys, ssrf
from notify.partners.dispatcher import Dispatcher
from notify.partners.settings import PartnerSettings

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
SUBMITTED = catalogue.CATALOGUE["survey.response_submitted"]
BLOCKED = catalogue.CATALOGUE["survey.survey_blocked"]
CARTE = catalogue.CATALOGUE["carte.request_validated"]
SIRET, OTHER_SIRET = "41816609600051", "13002526500013"
AGENCY = Caller(user_id="agent-1", roles=(AGENCY_ADMIN,))
LOOPBACK = PartnerSettings(allowed=ssrf.Allowed.parse("127.0.0.0/8"))


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += dt.timedelta(**delta)


@pytest.fixture
def db():
    """A sessionmaker on one empty in-memory SQLite database (shared connection)."""
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def session(db):
    with db() as s:
        yield s


def submitted(n, siret=SIRET, account_type="OFA"):
    return {
        "event_id": f"evt-{n}",
        "transmission_id": f"tr-{n}",
        "siret": siret,
        "account_type": account_type,
        "occurred_at": "2025-03-01T08:00:00+00:00",
    }


def carte(n, academy):
    return {"event_id": f"carte-{n}", "request_id": f"rq-{n}", "academy": academy}


def partner(session, name, types=("survey.response_submitted",), **columns):
    row = Partner(
        name=name,
        contact_email=f"{name.lower()}@partenaire.test",
        event_types=list(types),
        scope=columns.pop("scope", {}),
        **columns,
    )
    session.add(row)
    session.commit()
    return row


def count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# ---------------------------------------------------------------- the feed


def test_an_event_gets_one_delivery_per_subscribed_partner_and_channel_and_none_for_others(
    session,
):
    both = partner(session, "Both", webhook_url="https://a.test/h", webhook_state="enabled")
    both.amqp_username = "partner-both"
    session.commit()
    partner(session, "Elsewhere", scope={"sirets": [OTHER_SIRET]}, webhook_url="https://b.test/h")
    partner(session, "Og", scope={"account_types": ["OG"]}, amqp_username="partner-og")
    partner(session, "Unsubscribed", types=("survey.survey_blocked",), amqp_username="x")
    partner(session, "Off", state=DISABLED, amqp_username="partner-off")
    paused = partner(session, "Paused", webhook_url="https://c.test/h", webhook_state="disabled")
    created = feed.ingest(session, SUBMITTED, submitted(1), LOOPBACK, T0)
    assert count(session, PartnerEvent) == 1
    rows = session.scalars(select(PartnerDelivery)).all()
    assert len(created) == len(rows) == 3
    seen = {(r.partner_id, r.channel): r for r in rows}
    assert set(seen) == {(both.id, WEBHOOK), (both.id, AMQP), (paused.id, WEBHOOK)}
    assert seen[both.id, WEBHOOK].state == DELIVERY_PENDING
    assert seen[both.id, WEBHOOK].next_attempt_at == T0
    # a disabled endpoint keeps its delivery, idle, for a later re-enable
    assert seen[paused.id, WEBHOOK].state == DELIVERY_DISABLED
    assert seen[paused.id, WEBHOOK].next_attempt_at is None


def test_a_second_ingest_of_the_same_event_id_changes_nothing(session):
    partner(session, "A", amqp_username="partner-a")
    assert len(feed.ingest(session, SUBMITTED, submitted(1), LOOPBACK, T0)) == 1
    again = dict(submitted(1), siret=OTHER_SIRET)
    assert feed.ingest(session, SUBMITTED, again, LOOPBACK, T0 + dt.timedelta(hours=1)) is None
    assert count(session, PartnerEvent) == 1
    assert count(session, PartnerDelivery) == 1
    assert session.scalar(select(PartnerEvent.siret)) == SIRET


def test_the_feed_is_read_in_seq_order_page_by_page_and_is_empty_after_its_last_cursor(session):
    reader = partner(session, "Reader")
    for n in range(5):
        feed.ingest(session, SUBMITTED, submitted(n), LOOPBACK, T0 + dt.timedelta(seconds=n))
    now = T0 + dt.timedelta(minutes=1)
    first = feed.read(session, reader, None, 2, LOOPBACK, now)
    assert [e["id"] for e in first["items"]] == ["evt-0", "evt-1"]
    assert first["has_more"] is True
    second = feed.read(session, reader, first["next_cursor"], "2", LOOPBACK, now)
    assert [e["id"] for e in second["items"]] == ["evt-2", "evt-3"]
    last = feed.read(session, reader, second["next_cursor"], 2, LOOPBACK, now)
    assert [e["id"] for e in last["items"]] == ["evt-4"]
    assert last["has_more"] is False
    assert feed.decode_cursor(last["next_cursor"])[0] == session.scalar(
        select(PartnerEvent.seq).where(PartnerEvent.event_id == "evt-4")
    )
    empty = feed.read(session, reader, last["next_cursor"], 2, LOOPBACK, now)
    assert empty == {"items": [], "next_cursor": last["next_cursor"], "has_more": False}
    # the envelope is the CloudEvent the partner is promised
    event = first["items"][0]
    assert event["type"] == "fr.formation.survey.response_submitted.v1"
    assert event["data"]["siret"] == SIRET


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "a" * 65, cursor_of("v2.1.1740819600"), cursor_of("v1.x.1"), cursor_of("v1.1"), 12],
)
def test_a_malformed_cursor_is_a_bad_request_with_the_cursor_invalid_code(session, cursor):
    reader = partner(session, "Reader")
    with pytest.raises(BadRequest) as caught:
        feed.read(session, reader, cursor, 10, LOOPBACK, T0)
    assert caught.value.status == 400
    assert caught.value.code == "partner.cursor_invalid"
    assert "Curseur invalide" in caught.value.message


def test_an_expired_cursor_is_gone_with_a_french_message(session):
    reader = partner(session, "Reader")
    feed.ingest(session, SUBMITTED, submitted(1), LOOPBACK, T0)
    now = T0 + dt.timedelta(days=10)
    stale = feed.encode_cursor(1, now - dt.timedelta(days=LOOPBACK.retention_days, seconds=1))
    with pytest.raises(Gone) as caught:
        feed.read(session, reader, stale, 10, LOOPBACK, now)
    assert caught.value.status == 410
    assert caught.value.code == "partner.cursor_expired"
    assert "durée de conservation du flux (90 jours)" in caught.value.message
    # just inside the retention, the same position still reads
    fresh = feed.encode_cursor(0, now - dt.timedelta(days=LOOPBACK.retention_days - 1))
    assert [e["id"] for e in feed.read(session, reader, fresh, 10, LOOPBACK, now)["items"]] == [
        "evt-1"
    ]


@pytest.mark.parametrize("limit", [0, -1, 501, "abc", "2.5"])
def test_a_limit_out_of_bounds_is_refused(session, limit):
    reader = partner(session, "Reader")
    with pytest.raises(BadRequest) as caught:
        feed.read(session, reader, None, limit, LOOPBACK, T0)
    assert caught.value.code == "partner.limit_invalid"
    assert "entre 1 et 500" in caught.value.message
    assert feed.parse_limit(None) == feed.parse_limit("") == 100
    assert feed.parse_limit(500) == 500


def test_purge_removes_the_events_past_retention_with_their_deliveries_and_attempts(session):
    partner(session, "A", amqp_username="partner-a")
    (old,) = feed.ingest(session, SUBMITTED, submitted(1), LOOPBACK, T0)
    session.add(DeliveryAttempt(delivery_id=old.id, at=T0, status=None, error="x"))
    session.commit()
    now = T0 + dt.timedelta(days=LOOPBACK.retention_days, hours=1)
    feed.ingest(session, SUBMITTED, submitted(2), LOOPBACK, now - dt.timedelta(days=1))
    assert feed.purge(session, LOOPBACK, now) == 1
    assert session.scalars(select(PartnerEvent.event_id)).all() == ["evt-2"]
    assert session.scalars(select(PartnerDelivery.event_id)).all() == ["evt-2"]
    assert count(session, DeliveryAttempt) == 0
    assert feed.purge(session, LOOPBACK, now) == 0


def test_a_partner_only_sees_the_events_within_its_scope(session):
    types = ("survey.response_submitted", "carte.request_validated")
    narrow = partner(
        session, "Narrow", types=types, scope={"account_types": ["OFA"], "academies": ["toulouse"]}
    )
    sirets = partner(session, "Sirets", scope={"sirets": [OTHER_SIRET]})
    nothing = partner(session, "Nothing", types=types, scope={"sirets": [], "academies": []})
    feed.ingest(session, SUBMITTED, submitted(1), LOOPBACK, T0)
    feed.ingest(session, SUBMITTED, submitted(2, OTHER_SIRET, "OG"), LOOPBACK, T0)
    feed.ingest(session, CARTE, carte(3, "toulouse"), LOOPBACK, T0)
    feed.ingest(session, CARTE, carte(4, "montpellier"), LOOPBACK, T0)
    feed.ingest(session, BLOCKED, dict(submitted(5), survey_id="s5"), LOOPBACK, T0)

    def ids(p):
        return [e["id"] for e in feed.read(session, p, None, 50, LOOPBACK, T0)["items"]]

    assert ids(narrow) == ["evt-1", "carte-3"]
    assert ids(sirets) == ["evt-2"]
    assert ids(nothing) == []
    # the dict the gateway passes after authentication reads the same
    assert ids({"event_types": list(types), "scope": narrow.scope}) == ["evt-1", "carte-3"]


# ---------------------------------------------------------------- administration


def new_partner(session, settings=LOOPBACK, now=T0, **data):
    body = {
        "name": "Région Occitanie",
        "contact_email": "Flux@Occitanie.test",
        "event_types": ["survey.response_submitted"],
        "scope": {"account_types": ["ofa"]},
        **data,
    }
    return admin.create_partner(session, AGENCY, body, settings, None, now)


def nothing_stored(session):
    return [count(session, m) for m in (Partner, PartnerKey, PartnerAudit)] == [0, 0, 0]


def test_an_unknown_event_type_is_refused_with_its_code_and_nothing_is_stored(session):
    with pytest.raises(InvalidInput) as caught:
        new_partner(session, event_types=["survey.response_submitted", "survey.deleted"])
    assert caught.value.status == 422
    assert caught.value.code == "partner.event_type_unknown"
    assert "survey.deleted" in caught.value.details["fields"]["event_types"][0]
    assert nothing_stored(session)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/",
        "https://192.168.1.20/hook",
        "https://[::1]/hook",
        "ftp://partenaire.test/hook",
        "https://user:pw@93.184.216.34/hook",
    ],
)
def test_a_private_or_invalid_webhook_url_is_refused_and_nothing_is_stored(session, url):
    with pytest.raises(InvalidInput) as caught:
        new_partner(session, settings=PartnerSettings(), webhook_url=url)
    assert 400 <= caught.value.status < 500
    assert caught.value.code == "partner.webhook_url_invalid"
    assert caught.value.details["fields"]["webhook_url"]
    assert nothing_stored(session)


def test_creating_a_partner_returns_the_api_key_once_and_stores_only_its_hash(session):
    made = new_partner(session, webhook_url="http://127.0.0.1:9/hook")
    key = made["api_key"]
    assert keys.parse(key) == made["key"]["prefix"]
    assert made["webhook_secret"].startswith("whsec_")
    row = session.scalar(select(PartnerKey))
    assert row.key_hash == keys.digest(key) != key
    assert made["partner"]["contact_email"] == "flux@occitanie.test"
    assert made["partner"]["scope"] == {"account_types": ["OFA"]}
    again = admin.get_partner(session, AGENCY, made["partner"]["id"])
    assert key not in json.dumps(again)
    assert made["webhook_secret"] not in json.dumps(again)
    stored = session.get(Partner, made["partner"]["id"])
    assert key not in json.dumps(
        [getattr(stored, c.key) for c in Partner.__table__.columns], default=str
    )


def test_an_unknown_malformed_or_revoked_key_is_refused_as_unauthenticated(session):
    made = new_partner(session)
    key = made["api_key"]
    prefix = made["key"]["prefix"]
    assert admin.authenticate(session, key, T0)["partner_id"] == made["partner"]["id"]
    unknown = f"fpk_zzzzzzzz_{'A' * 43}"
    wrong_secret = f"fpk_{prefix}_{'B' * 43}"
    admin.revoke_key(session, AGENCY, made["partner"]["id"], made["key"]["id"], T0)
    for candidate in (unknown, wrong_secret, "not-a-key", None, key):
        with pytest.raises(Unauthenticated) as caught:
            admin.authenticate(session, candidate, T0)
        assert caught.value.status == 401
        assert caught.value.code == "partner.key_invalid"


def test_the_key_of_a_disabled_partner_is_refused(session):
    made = new_partner(session)
    admin.update_partner(
        session, AGENCY, made["partner"]["id"], {"state": DISABLED}, LOOPBACK, None, T0
    )
    with pytest.raises(Unauthenticated):
        admin.authenticate(session, made["api_key"], T0)


def test_several_keys_work_at_once_and_revoking_one_keeps_the_other_working(session):
    made = new_partner(session)
    pid = made["partner"]["id"]
    second = admin.create_key(session, AGENCY, pid, "rotation", T0)
    assert second["api_key"] != made["api_key"]
    for key in (made["api_key"], second["api_key"]):
        assert admin.authenticate(session, key, T0)["partner_id"] == pid
    revoked = admin.revoke_key(session, AGENCY, pid, made["key"]["id"], T0)
    assert revoked["revoked_at"] == T0.isoformat()
    with pytest.raises(Unauthenticated):
        admin.authenticate(session, made["api_key"], T0)
    assert admin.authenticate(session, second["api_key"], T0)["key_id"] == second["key"]["id"]


def test_the_last_use_of_a_key_is_recorded_at_most_once_a_minute(session):
    made = new_partner(session)
    row = session.get(PartnerKey, made["key"]["id"])
    assert row.last_used_at is None
    admin.authenticate(session, made["api_key"], T0)
    assert session.get(PartnerKey, row.id).last_used_at == T0
    admin.authenticate(session, made["api_key"], T0 + dt.timedelta(seconds=30))
    assert session.get(PartnerKey, row.id).last_used_at == T0
    later = T0 + dt.timedelta(minutes=2)
    admin.authenticate(session, made["api_key"], later)
    session.expire_all()
    assert session.get(PartnerKey, row.id).last_used_at == later


def test_during_a_secret_rotation_both_secrets_sign_and_only_the_new_one_after_the_overlap(
    session,
):
    made = new_partner(session, webhook_url="http://127.0.0.1:9/hook")
    old = made["webhook_secret"]
    rotated = admin.rotate_secret(session, AGENCY, made["partner"]["id"], LOOPBACK, T0)
    new = rotated["webhook_secret"]
    assert new != old and new.startswith("whsec_")
    assert rotated["previous_valid_until"] == (T0 + dt.timedelta(hours=24)).isoformat()
    session.expire_all()
    stored = session.get(Partner, made["partner"]["id"])
    assert admin.signing_secrets(stored, T0 + dt.timedelta(hours=23)) == [new, old]
    assert admin.signing_secrets(stored, T0 + dt.timedelta(hours=24)) == [new]


def test_every_change_is_written_to_the_partner_audit_trail(session):
    made = new_partner(session, webhook_url="http://127.0.0.1:9/hook")
    pid = made["partner"]["id"]
    later = T0 + dt.timedelta(minutes=5)
    admin.update_partner(session, AGENCY, pid, {"name": "Région Occitanie"}, LOOPBACK, None, later)
    assert count(session, PartnerAudit) == 1  # no change, no row
    admin.update_partner(session, AGENCY, pid, {"name": "Occitanie"}, LOOPBACK, None, later)
    extra = admin.create_key(session, AGENCY, pid, None, later)
    admin.revoke_key(session, AGENCY, pid, extra["key"]["id"], later)
    admin.revoke_key(session, AGENCY, pid, extra["key"]["id"], later)  # already: no row
    admin.rotate_secret(session, AGENCY, pid, LOOPBACK, later)
    rows = session.scalars(select(PartnerAudit).order_by(PartnerAudit.at, PartnerAudit.id)).all()
    assert sorted(r.action for r in rows) == sorted(
        ["created", "updated", "key_created", "key_revoked", "secret_rotated"]
    )
    assert {r.actor for r in rows} == {"agent-1"}
    assert {r.partner_id for r in rows} == {pid}
    updated = next(r for r in rows if r.action == "updated")
    assert updated.details == {"name": "Occitanie"}
    admin.delete_partner(session, AGENCY, pid, None)
    assert count(session, PartnerAudit, PartnerAudit.action == "deleted") == 1
    assert count(session, Partner) == count(session, PartnerKey) == 0


@pytest.mark.parametrize(
    ("caller", "error"),
    [
        (Caller(), Unauthenticated),
        (Caller(user_id="u1", org_id="o1", roles=(MANAGER,)), Forbidden),
        (Caller(user_id="partner:p1", roles=("partner",)), Forbidden),
    ],
)
def test_a_caller_who_is_not_an_agency_admin_is_refused_everywhere(session, caller, error):
    made = new_partner(session, webhook_url="http://127.0.0.1:9/hook")
    pid, kid = made["partner"]["id"], made["key"]["id"]
    body = {"name": "X", "contact_email": "x@x.test", "event_types": ["survey.survey_blocked"]}
    attempts = [
        lambda: admin.create_partner(session, caller, body, LOOPBACK, None, T0),
        lambda: admin.update_partner(session, caller, pid, {"name": "Y"}, LOOPBACK, None, T0),
        lambda: admin.create_key(session, caller, pid, None, T0),
        lambda: admin.revoke_key(session, caller, pid, kid, T0),
        lambda: admin.rotate_secret(session, caller, pid, LOOPBACK, T0),
        lambda: admin.delete_partner(session, caller, pid, None),
        lambda: admin.list_partners(session, caller),
    ]
    for attempt in attempts:
        with pytest.raises(error) as caught:
            attempt()
        if error is Forbidden:
            assert caught.value.code == "forbidden.agency_only"
            assert caught.value.status == 403
    session.expire_all()
    assert count(session, Partner) == 1
    assert count(session, PartnerKey, PartnerKey.revoked_at.is_(None)) == 1
    assert count(session, PartnerAudit) == 1
    assert session.get(Partner, pid).name == "Région Occitanie"


# ---------------------------------------------------------------- the dispatcher


def now_s():
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def settings(**changes):
    base = {"allowed": ssrf.Allowed.parse("127.0.0.0/8"), "schedule": (60.0, 120.0)}
    return PartnerSettings(**{"webhook_timeout": 3.0, **base, **changes})


def hooked(db, url, name="Hook", s=None, now=T0):
    with db() as session:
        made = admin.create_partner(
            session,
            AGENCY,
            {
                "name": name,
                "contact_email": f"{name.lower()}@partenaire.test",
                "event_types": ["survey.response_submitted"],
                "webhook_url": url,
            },
            s or settings(),
            None,
            now,
        )
    return made["partner"]["id"], made["webhook_secret"]


def ingest(db, n, s, now):
    with db() as session:
        return [d.id for d in feed.ingest(session, SUBMITTED, submitted(n), s, now)]


def run(dispatcher):
    sent = dispatcher.tick()
    dispatcher.pool.waitall()
    dispatcher.flush()
    return sent


def load(db, model, ident):
    with db() as session:
        return session.get(model, ident)


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def test_a_2xx_answer_marks_the_delivery_delivered_with_one_signed_attempt(db, receiver):
    clock, s = Clock(now_s()), settings()
    pid, secret = hooked(db, receiver.url, s=s, now=clock.now)
    receiver.secret = secret
    (did,) = ingest(db, 1, s, clock.now)
    dispatcher = Dispatcher(db, s, clock=clock)
    assert run(dispatcher) == 1
    (got,) = receiver.received
    assert got.verified is True
    assert got.webhook_id == "evt-1"
    assert got.event["data"]["transmission_id"] == "tr-1"
    row = load(db, PartnerDelivery, did)
    assert (row.state, row.attempts, row.last_status) == (DELIVERY_DELIVERED, 1, 204)
    assert row.delivered_at == clock.now and row.locked_until is None
    with db() as session:
        (attempt,) = session.scalars(select(DeliveryAttempt)).all()
    assert attempt.delivery_id == did and attempt.status == 204 and attempt.error is None
    assert run(dispatcher) == 0
    assert receiver.attempts == 1
    assert dispatcher.inflight == {(pid, WEBHOOK): 0}


def test_a_failure_is_retried_per_the_schedule_then_the_delivery_fails(db, receiver):
    clock, s = Clock(now_s()), settings()
    receiver.mode = "fail"
    pid, _ = hooked(db, receiver.url, s=s, now=clock.now)
    (did,) = ingest(db, 1, s, clock.now)
    first = clock.now
    dispatcher = Dispatcher(db, s, clock=clock)
    assert run(dispatcher) == 1
    row = load(db, PartnerDelivery, did)
    assert (row.state, row.attempts, row.last_status) == (DELIVERY_PENDING, 1, 503)
    assert row.last_error == "réponse HTTP 503"
    wait = (row.next_attempt_at - clock.now).total_seconds()
    assert 60 * 0.9 <= wait <= 60 * 1.1
    assert load(db, Partner, pid).webhook_failing_since == first
    assert run(dispatcher) == 0  # not due yet
    clock.advance(seconds=67)
    assert run(dispatcher) == 1
    row = load(db, PartnerDelivery, did)
    assert (row.state, row.attempts) == (DELIVERY_PENDING, 2)
    assert 120 * 0.9 <= (row.next_attempt_at - clock.now).total_seconds() <= 120 * 1.1
    clock.advance(seconds=133)
    assert run(dispatcher) == 1
    row = load(db, PartnerDelivery, did)
    assert (row.state, row.attempts, row.next_attempt_at) == (DELIVERY_FAILED, 3, None)
    with db() as session:
        attempts = session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.at)).all()
    assert [a.status for a in attempts] == [503, 503, 503]
    assert all(a.response_excerpt == '{"error": "indisponible"}' for a in attempts)
    clock.advance(days=1)
    assert run(dispatcher) == 0
    assert receiver.attempts == 3


def test_a_stalled_partner_fills_only_its_own_slots_and_another_is_still_sent(db, receiver):
    clock, s = Clock(now_s()), settings(per_partner=1)
    receiver.mode, receiver.delay = "slow", 1.0
    with Receiver() as fast:
        slow_id, _ = hooked(db, receiver.url, "Slow", s, clock.now)
        fast_id, _ = hooked(db, fast.url, "Fast", s, clock.now)
        ingest(db, 1, s, clock.now)
        ingest(db, 2, s, clock.now)
        dispatcher = Dispatcher(db, s, clock=clock)
        assert dispatcher.tick() == 2  # one per partner: the slots are full
        with eventlet.Timeout(5):
            while len(fast.received) < 1 or not dispatcher.done:
                eventlet.sleep(0.02)
        assert receiver.received == []  # the slow one is still answering
        assert dispatcher.flush() == 1
        assert dispatcher.tick() == 1  # the fast partner's second event, not the slow one's
        assert dispatcher.inflight == {(slow_id, WEBHOOK): 1, (fast_id, WEBHOOK): 1}
        with eventlet.Timeout(5):
            while len(fast.received) < 2:
                eventlet.sleep(0.02)
        assert receiver.received == []
        assert fast.ids() == ["evt-1", "evt-2"]
        dispatcher.pool.waitall()
        dispatcher.flush()
        assert run(dispatcher) == 1  # the slow partner's second, once its slot is free
    with db() as session:
        states = session.execute(select(PartnerDelivery.partner_id, PartnerDelivery.state)).all()
    assert sorted(states) == sorted(
        [(p, DELIVERY_DELIVERED) for p in (slow_id, slow_id, fast_id, fast_id)]
    )


def test_a_partner_that_is_down_does_not_stop_another_from_being_sent(db, receiver):
    clock, s = Clock(now_s()), settings(per_partner=1)
    down = Receiver().up()
    down.down()  # nothing listens on its port
    down_id, _ = hooked(db, down.url, "Down", s, clock.now)
    up_id, _ = hooked(db, receiver.url, "Up", s, clock.now)
    ingest(db, 1, s, clock.now)
    assert run(Dispatcher(db, s, clock=clock)) == 2
    assert receiver.ids() == ["evt-1"]
    with db() as session:
        rows = {d.partner_id: d for d in session.scalars(select(PartnerDelivery))}
    assert rows[up_id].state == DELIVERY_DELIVERED
    assert rows[down_id].state == DELIVERY_PENDING
    assert rows[down_id].last_error == "connexion refusée"
    assert rows[down_id].last_status is None


def test_a_webhook_failing_longer_than_disable_after_days_is_disabled_with_audit_and_emails(
    db, receiver
):
    clock = Clock(now_s())
    s = settings(per_partner=1, schedule=(60000.0,) * 4, disable_after_days=1.0)
    receiver.mode = "fail"
    pid, _ = hooked(db, receiver.url, s=s, now=clock.now)
    (first,) = ingest(db, 1, s, clock.now)
    dispatcher = Dispatcher(db, s, clock=clock)
    assert run(dispatcher) == 1
    assert load(db, Partner, pid).webhook_state == "enabled"
    clock.advance(hours=20)  # the retry is due, failing for less than a day
    assert run(dispatcher) == 1
    assert load(db, Partner, pid).webhook_state == "enabled"
    with db() as session:
        assert count(session, Delivery) == count(session, PartnerAudit) - 1 == 0
    clock.advance(hours=20)
    (second,) = ingest(db, 2, s, clock.now)
    assert run(dispatcher) == 1  # the first event's third try: failing for 40 h
    stored = load(db, Partner, pid)
    assert stored.webhook_state == "disabled"
    assert stored.webhook_disabled_reason.startswith("échecs continus depuis le")
    assert "réponse HTTP 503" in stored.webhook_disabled_reason
    with db() as session:
        (audit,) = session.scalars(
            select(PartnerAudit).where(PartnerAudit.action == "webhook_disabled")
        ).all()
        mails = session.scalars(select(Delivery).order_by(Delivery.to)).all()
        assert session.get(PartnerDelivery, second).state == DELIVERY_DISABLED
        assert session.get(PartnerDelivery, first).state == DELIVERY_DISABLED
    assert audit.partner_id == pid and audit.actor is None
    assert audit.details["reason"] == stored.webhook_disabled_reason
    with db() as session:  # the push loop's entry is chained after the agency's
        report = kit_audit.verify(session, PartnerAudit, PartnerAuditChain)
    assert report.ok and report.entries == 2 and audit.seq == 2, report.line()
    assert [m.to for m in mails] == ["agence@localhost", "hook@partenaire.test"]
    assert {m.template for m in mails} == {"partner_webhook_disabled"}
    assert all(m.status == FAILED and receiver.url in m.body for m in mails)
    clock.advance(days=3)
    before = receiver.attempts
    assert run(dispatcher) == 0
    assert receiver.attempts == before == 3

"""The notify service on a real broker, a real PostgreSQL and the mail catcher."""

import datetime as dt
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy, ServiceRpcProxy
from nameko.testing.services import entrypoint_waiter
from sqlalchemy import select

from kit import events
from kit.context import SYSTEM, Caller
from kit.db import make_engine
from kit.migrate import upgrade
from notify.models import FAILED, SENT, Base, Delivery
from notify.service import NotifyService

pytestmark = pytest.mark.integration

PUBLIC_URL = "http://front.example.test"


@pytest.fixture
def db_url(pg_database):
    url = pg_database("notify")
    upgrade("notify", url)  # an empty database upgrades to the models' schema
    return url


@pytest.fixture
def config(rabbit_config, db_url, mailcatcher):
    return dict(
        rabbit_config,
        NOTIFY_DB_URL=db_url,
        SMTP_URL=mailcatcher.smtp_url,
        PUBLIC_URL=PUBLIC_URL,
        MAIL_FROM="Plateforme formations <no-reply@example.test>",
    )


def deliveries(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Delivery.__table__)).mappings().all()
    finally:
        engine.dispose()


def test_the_migrated_database_matches_the_models(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(
                    conn, opts={"compare_type": True, "version_table": "alembic_version_notify"}
                ),
                Base.metadata,
            )
    finally:
        engine.dispose()
    assert diff == []


def test_a_registration_delivered_twice_sends_one_confirmation_email(
    container_factory, config, rabbit_config, mailcatcher, db_url
):
    container = container_factory(NotifyService, config)
    container.start()
    to = f"{uuid.uuid4().hex[:10]}@example.test"
    payload = {
        "event_id": uuid.uuid4().hex,
        "user_id": "u1",
        "org_id": "o1",
        "email": to,
        "first_name": "Inès",
        "last_name": "Garnier",
        "confirm_token": "tok-abc",
        "self_registered": True,
        "for_existing_org": False,
        "occurred_at": "2025-03-01T09:00:00+00:00",
    }
    dispatch = event_dispatcher(rabbit_config)
    for _ in range(2):
        with entrypoint_waiter(container, "on_user_registered", timeout=10):
            dispatch(events.IDENTITY, events.USER_REGISTERED, payload)

    [message] = mailcatcher.messages()
    assert message["to"] == [to]
    assert message["subject"] == "Confirmez votre adresse électronique"
    assert message["from"] == "Plateforme formations <no-reply@example.test>"
    assert f"{PUBLIC_URL}/inscription/confirmer?token=tok-abc" in message["text"]
    [row] = deliveries(db_url)
    assert (row["status"], row["to"], row["source_event_id"]) == ("sent", to, payload["event_id"])


def test_a_mail_server_down_logs_the_failure_and_announces_notify_email_failed(
    container_factory, config, rabbit_config, db_url
):
    class Listener:
        name = "notify_failure_listener"
        received = []

        @event_handler(events.NOTIFY, events.EMAIL_FAILED)
        def on_email_failed(self, payload):
            self.received.append(payload)

    listener = container_factory(Listener, rabbit_config)
    listener.start()
    container = container_factory(NotifyService, dict(config, SMTP_URL="smtp://127.0.0.1:9"))
    container.start()
    event_id = uuid.uuid4().hex
    payload = {
        "event_id": event_id,
        "user_id": "u2",
        "email": "reset@example.test",
        "first_name": "Hugo",
        "last_name": "Blanc",
        "reset_token": "rst-1",
    }

    with entrypoint_waiter(listener, "on_email_failed", timeout=10):
        event_dispatcher(rabbit_config)(events.IDENTITY, events.PASSWORD_RESET_REQUESTED, payload)

    [failure] = Listener.received
    assert failure["source_event_id"] == event_id
    assert failure["template"] == "password_reset_requested"
    assert failure["will_retry"] is True
    [row] = deliveries(db_url)
    assert row["status"] == FAILED and row["attempts"] == 1 and row["last_error"]


def test_health_answers_over_rpc(container_factory, config):
    container = container_factory(NotifyService, config)
    container.start()
    with ServiceRpcProxy("notify", config) as notify:
        assert notify.health() == {"service": "notify", "status": "ok"}


def add_deliveries(db_url, *rows):
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            for row in rows:
                conn.execute(Delivery.__table__.insert().values(**row))
    finally:
        engine.dispose()


def sent_mail(to, days_ago, now):
    at = now - dt.timedelta(days=days_ago)
    return dict(id=uuid.uuid4().hex, source_event_id="e", template="user_validated", to=to,
                subject="Votre compte est validé", body="Bonjour", status=SENT, attempts=1,
                created_at=at, last_attempt_at=at, sent_at=at)  # fmt: skip


def test_identity_person_anonymised_erases_the_emails_once(
    container_factory, config, rabbit_config, db_url
):
    now = dt.datetime.now(dt.UTC)
    add_deliveries(db_url, sent_mail("claire@example.test", 2, now),
                   sent_mail("paul@example.test", 2, now))  # fmt: skip
    container = container_factory(NotifyService, config)
    container.start()
    payload = {
        "event_id": uuid.uuid4().hex,
        "occurred_at": now.isoformat(),
        "user_id": "u" * 32,
        "emails": ["claire@example.test"],
        "reason": "retention",
    }
    dispatch = event_dispatcher(rabbit_config)
    with entrypoint_waiter(container, "on_person_anonymised", timeout=10):
        dispatch(events.IDENTITY, "person_anonymised", payload)
    add_deliveries(db_url, sent_mail("claire@example.test", 0, now))  # the address reused
    with entrypoint_waiter(container, "on_person_anonymised", timeout=10):
        dispatch(events.IDENTITY, "person_anonymised", payload)  # redelivered
    assert sorted(r["to"] for r in deliveries(db_url)) == [
        "anonyme@anonyme.invalid",
        "claire@example.test",
        "paul@example.test",
    ]


def test_a_system_caller_runs_the_email_retention_over_rpc(container_factory, config, db_url):
    now = dt.datetime.now(dt.UTC)
    add_deliveries(db_url, sent_mail("old@example.test", 91, now),
                   sent_mail("new@example.test", 1, now))  # fmt: skip
    container = container_factory(NotifyService, config)
    container.start()
    system = {"caller": Caller(roles=(SYSTEM,)).to_header()}
    with ClusterRpcProxy(config, context_data=system, timeout=10) as rpc:
        assert rpc.notify.run_retention(now.isoformat()) == {"emails_purged": 1}
        later = (now + dt.timedelta(days=90)).isoformat()
        assert rpc.notify.run_retention(later) == {"emails_purged": 1}
    assert deliveries(db_url) == []

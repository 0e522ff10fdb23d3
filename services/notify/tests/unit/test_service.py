"""The entrypoints, through nameko's worker_factory (no broker)."""

from nameko.events import EventHandler
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.testing.services import worker_factory
from nameko.timer import Timer
from sqlalchemy import select

from kit import events
from notify import templates
from notify.mailer import SendFailed
from notify.models import FAILED, SENT, Delivery
from notify.service import NotifyService
from notify.templates import Settings


def entrypoints(method):
    return getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, set())


def test_every_templated_event_has_its_on_event_handler():
    for event_type in templates.TEMPLATES:
        method = getattr(NotifyService, f"on_{event_type}")
        [handler] = entrypoints(method)
        assert isinstance(handler, EventHandler)
        assert (handler.source_service, handler.event_type) == (
            templates.SOURCES[event_type],
            event_type,
        )


def test_failed_deliveries_are_retried_by_a_30_second_timer():
    [timer] = entrypoints(NotifyService.retry_deliveries)
    assert isinstance(timer, Timer) and timer.interval == 30


def invitation(event_id="evt-inv"):
    return {
        "event_id": event_id,
        "user_id": "u",
        "org_id": "o",
        "email": "sam@example.test",
        "first_name": "Sam",
        "last_name": "Petit",
        "invite_token": "inv-1",
        "org_name": "CFA Exemple",
    }


def test_handler_sends_the_invitation_once(session):
    sent = []
    service = worker_factory(
        NotifyService,
        db=session,
        send=sent.append,
        settings=Settings(public_url="http://front.test"),
    )
    service.on_user_invited(invitation())
    service.on_user_invited(invitation())
    assert [m.to for m in sent] == ["sam@example.test"]
    assert "http://front.test/invitation?token=inv-1" in sent[0].text
    assert session.scalars(select(Delivery.status)).all() == [SENT]
    service.dispatch.assert_not_called()
    service.outbox_dispatch.assert_not_called()


def test_handler_publishes_email_failed_after_a_failed_send(session):
    def down(email):
        raise SendFailed("serveur SMTP injoignable")

    service = worker_factory(NotifyService, db=session, send=down, settings=Settings())
    service.on_user_invited(invitation())
    assert session.scalars(select(Delivery.status)).all() == [FAILED]
    [call] = service.dispatch.call_args_list
    event_type, payload = call.args
    assert event_type == events.EMAIL_FAILED
    assert payload["source_event_id"] == "evt-inv" and payload["template"] == "user_invited"


def test_retry_timer_sends_what_failed_once_due(session):
    attempts = []

    def flaky(email):
        attempts.append(email)
        if len(attempts) == 1:
            raise SendFailed("temporairement indisponible")

    service = worker_factory(NotifyService, db=session, send=flaky, settings=Settings())
    service.on_user_invited(invitation())
    row = session.scalars(select(Delivery)).one()
    row.next_attempt_at = row.next_attempt_at.replace(year=2000)  # its wait is over
    session.commit()
    service.retry_deliveries()
    assert len(attempts) == 2
    session.expire_all()
    assert session.scalars(select(Delivery.status)).all() == [SENT]

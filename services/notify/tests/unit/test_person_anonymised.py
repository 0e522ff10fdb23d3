"""identity.person_anonymised: the e-mails sent to the anonymised account's
addresses are erased as by the agency's erasure, once per event."""

import pytest
from nameko.events import EventHandler
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.testing.services import worker_factory
from sqlalchemy import func, select

from kit import events
from kit.errors import InvalidInput
from notify import personal_data as pd
from notify.models import FAILED, SENT, UNDELIVERED, Delivery, Inbox
from notify.service import NotifyService
from notify.templates import Settings

HANDLER = "on_person_anonymised"


def anonymised(event_id="evt-anon-1", emails=("claire@example.org",), reason="retention"):
    return {
        "event_id": event_id,
        "occurred_at": "2025-09-01T12:00:00+00:00",
        "user_id": "u" * 32,
        "emails": list(emails),
        "reason": reason,
    }


def add(session, to, status=SENT, body="Bonjour Claire, votre lien : https://front.test/x"):
    row = Delivery(source_event_id="e", template="user_validated", to=to,
                   subject="Votre compte est validé", body=body, status=status)  # fmt: skip
    session.add(row)
    session.commit()
    return row


def by_address(session):
    rows = session.scalars(select(Delivery).order_by(Delivery.to, Delivery.status)).all()
    return [(d.to, d.status, d.body == pd.ERASED) for d in rows]


def test_the_emails_to_the_anonymised_addresses_are_erased_and_unsent_ones_given_up(session):
    add(session, "claire@example.org")
    add(session, "claire@example.org", status=FAILED)
    add(session, "claire.contact@example.org")
    add(session, "paul@example.org")
    result = pd.person_anonymised(
        session, anonymised(emails=["claire@example.org", "claire.contact@example.org"]), HANDLER
    )
    assert result == {"emails_erased": 3}
    assert by_address(session) == [
        (pd.ERASED_ADDRESS, SENT, True),
        (pd.ERASED_ADDRESS, SENT, True),
        (pd.ERASED_ADDRESS, UNDELIVERED, True),
        ("paul@example.org", SENT, False),
    ]


def test_a_redelivered_event_changes_nothing_more(session):
    add(session, "claire@example.org")
    assert pd.person_anonymised(session, anonymised(), HANDLER) == {"emails_erased": 1}
    # the address is free again: a new account gets it and is sent an e-mail
    add(session, "claire@example.org", body="Bienvenue")
    assert pd.person_anonymised(session, anonymised(), HANDLER) is None
    assert ("claire@example.org", SENT, False) in by_address(session)
    assert session.scalar(select(func.count()).select_from(Inbox)) == 1


def test_an_event_with_no_address_erases_nothing_and_is_recorded(session):
    add(session, "claire@example.org")
    assert pd.person_anonymised(session, anonymised(emails=[]), HANDLER) == {"emails_erased": 0}
    assert by_address(session) == [("claire@example.org", SENT, False)]
    assert session.get(Inbox, ("evt-anon-1", HANDLER)) is not None


def test_a_malformed_event_raises_for_a_retry_and_records_nothing(session):
    add(session, "claire@example.org")
    payload = dict(anonymised(), emails="claire@example.org")  # not a list
    with pytest.raises(InvalidInput):
        pd.person_anonymised(session, payload, HANDLER)
    assert session.scalar(select(func.count()).select_from(Inbox)) == 0
    assert by_address(session) == [("claire@example.org", SENT, False)]


def test_the_handler_consumes_identity_person_anonymised():
    [handler] = getattr(NotifyService.on_person_anonymised, ENTRYPOINT_EXTENSIONS_ATTR)
    assert isinstance(handler, EventHandler)
    assert (handler.source_service, handler.event_type) == (
        events.IDENTITY,
        "person_anonymised",
    )


def test_the_handler_erases_once_per_event(session):
    add(session, "claire@example.org")
    service = worker_factory(NotifyService, db=session, settings=Settings())
    service.on_person_anonymised(anonymised(reason="request"))
    add(session, "claire@example.org", body="Bienvenue")
    service.on_person_anonymised(anonymised(reason="request"))
    assert by_address(session) == [
        ("anonyme@anonyme.invalid", SENT, True),
        ("claire@example.org", SENT, False),
    ]
    service.on_person_anonymised(anonymised(event_id="evt-anon-2"))  # another event: erased
    assert [to for to, _s, _e in by_address(session)] == [pd.ERASED_ADDRESS] * 2

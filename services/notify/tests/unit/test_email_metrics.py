"""emails_total counts every send attempt by outcome (kit.metrics)."""

from prometheus_client import REGISTRY

from kit import events
from notify import use_cases
from notify.mailer import SendFailed
from notify.templates import Settings

SETTINGS = Settings(public_url="http://front.test")


def registered(event_id: str) -> dict:
    return {
        "event_id": event_id,
        "user_id": "u1",
        "org_id": "o1",
        "email": "nina.roux@example.test",
        "first_name": "Nina",
        "last_name": "Roux",
        "confirm_token": "tok-1",
        "self_registered": True,
        "for_existing_org": False,
    }


def emails(outcome: str) -> float:
    return REGISTRY.get_sample_value("emails_total", {"outcome": outcome}) or 0.0


def test_a_sent_and_a_failed_email_are_counted_by_outcome(session):
    def refuse(email):
        raise SendFailed("serveur SMTP injoignable")

    before = emails("sent"), emails("failed")
    sent = use_cases.notify_event(
        session, lambda email: None, SETTINGS, events.USER_REGISTERED, registered("m-1"), "h"
    )
    failed = use_cases.notify_event(
        session, refuse, SETTINGS, events.USER_REGISTERED, registered("m-2"), "h"
    )

    assert (len(sent), len(failed)) == (1, 1)
    assert (emails("sent") - before[0], emails("failed") - before[1]) == (1, 1)

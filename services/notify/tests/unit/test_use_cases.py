"""Sending once per event, recording failures and retrying them (SQLite in memory)."""

import datetime as dt

import pytest
from sqlalchemy import func, select

from kit import events
from notify import repository, use_cases
from notify.mailer import SendFailed
from notify.models import FAILED, PENDING, SENT, Delivery, Inbox, Outbox
from notify.templates import Settings

SETTINGS = Settings(public_url="http://front.test")
T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += dt.timedelta(**delta)


class FakeSmtp:
    """Records what would have been sent; fails while ``down``."""

    def __init__(self):
        self.sent = []
        self.down = False

    def __call__(self, email):
        if self.down:
            raise SendFailed("serveur SMTP injoignable : ConnectionRefusedError")
        self.sent.append(email)


def registered(event_id="evt-1", email="nina.roux@example.test"):
    return {
        "event_id": event_id,
        "user_id": "u1",
        "org_id": "o1",
        "email": email,
        "first_name": "Nina",
        "last_name": "Roux",
        "confirm_token": "tok-1",
        "self_registered": True,
        "for_existing_org": False,
    }


def notify(session, smtp, payload, clock=None, event_type=events.USER_REGISTERED):
    return use_cases.notify_event(
        session,
        smtp,
        SETTINGS,
        event_type,
        payload,
        handler=f"on_{event_type}",
        clock=clock or Clock(),
    )


@pytest.fixture(autouse=True)
def _no_jitter(monkeypatch):
    """The waits below are the schedule's exact values (jitter: test_email_retry_window)."""
    monkeypatch.setenv("EMAIL_RETRY_JITTER", "0")


def outbox_events(session):
    return [(row.event_type, row.payload) for row in session.scalars(select(Outbox))]


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_an_event_sends_its_email_and_logs_it_as_sent(session):
    smtp = FakeSmtp()
    [delivery] = notify(session, smtp, registered())
    assert [m.to for m in smtp.sent] == ["nina.roux@example.test"]
    assert "http://front.test/inscription/confirmer?token=tok-1" in smtp.sent[0].text
    session.expire_all()
    row = session.get(Delivery, delivery.id)
    assert (row.status, row.attempts, row.source_event_id, row.template) == (
        SENT,
        1,
        "evt-1",
        "user_registered",
    )
    assert row.sent_at == T0
    assert outbox_events(session) == []


def test_the_same_event_delivered_twice_sends_one_email(session):
    smtp = FakeSmtp()
    assert len(notify(session, smtp, registered())) == 1
    assert notify(session, smtp, registered()) == []
    assert len(smtp.sent) == 1
    assert count(session, Delivery) == 1
    assert count(session, Inbox) == 1


def test_different_events_each_send_their_email(session):
    smtp = FakeSmtp()
    notify(session, smtp, registered("evt-1"))
    notify(session, smtp, registered("evt-2"))
    assert len(smtp.sent) == 2


def test_an_event_without_id_is_still_sent_once(session):
    smtp = FakeSmtp()
    payload = registered()
    del payload["event_id"]
    notify(session, smtp, payload)
    notify(session, smtp, dict(payload))
    assert len(smtp.sent) == 1


def test_one_event_for_several_managers_sends_one_email_each_once(session):
    smtp = FakeSmtp()
    payload = dict(registered(), manager_emails=["a@example.test", "b@example.test"])
    notify(session, smtp, payload, event_type=events.EMAIL_CONFIRMED)
    notify(session, smtp, payload, event_type=events.EMAIL_CONFIRMED)
    assert sorted(m.to for m in smtp.sent) == ["a@example.test", "b@example.test"]


def test_a_failed_send_is_logged_with_its_error_and_announced(session):
    smtp = FakeSmtp()
    smtp.down = True
    [delivery] = notify(session, smtp, registered())
    session.expire_all()
    row = session.get(Delivery, delivery.id)
    assert row.status == FAILED
    assert row.attempts == 1
    assert "injoignable" in row.last_error
    assert row.body and "tok-1" in row.body  # kept for the retry
    [(event_type, payload)] = outbox_events(session)
    assert event_type == events.EMAIL_FAILED
    assert payload["source_event_id"] == "evt-1"
    assert payload["template"] == "user_registered"
    assert "injoignable" in payload["error"]
    assert payload["delivery_id"] == delivery.id
    assert payload["will_retry"] is True
    assert payload["event_id"] and payload["occurred_at"]


def test_an_unexpected_error_of_the_sender_is_recorded_as_a_failure_too(session):
    def broken(email):
        raise RuntimeError("bug")

    [delivery] = notify(session, broken, registered())
    assert session.get(Delivery, delivery.id).last_error == "RuntimeError: bug"


def test_a_failed_event_delivered_again_is_not_sent_again_by_the_handler(session):
    smtp = FakeSmtp()
    smtp.down = True
    notify(session, smtp, registered())
    smtp.down = False
    assert notify(session, smtp, registered()) == []
    assert smtp.sent == []


def test_retry_waits_then_sends_a_failed_delivery(session):
    smtp, clock = FakeSmtp(), Clock()
    smtp.down = True
    [delivery] = notify(session, smtp, registered(), clock)
    smtp.down = False
    clock.advance(seconds=29)
    assert use_cases.retry_deliveries(session, smtp, clock) == []
    clock.advance(seconds=1)
    assert [d.id for d in use_cases.retry_deliveries(session, smtp, clock)] == [delivery.id]
    assert len(smtp.sent) == 1 and "tok-1" in smtp.sent[0].text
    row = session.get(Delivery, delivery.id)
    assert (row.status, row.attempts, row.sent_at) == (SENT, 2, clock.now)
    clock.advance(hours=1)
    assert use_cases.retry_deliveries(session, smtp, clock) == []
    assert len(smtp.sent) == 1


def test_retry_goes_on_past_the_old_five_attempts(session):
    smtp, clock = FakeSmtp(), Clock()
    smtp.down = True
    [delivery] = notify(session, smtp, registered(), clock)
    for _ in range(10):
        clock.advance(minutes=10)
        use_cases.retry_deliveries(session, smtp, clock)
    row = session.get(Delivery, delivery.id)
    assert row.status == FAILED and row.attempts == 8  # waits of 30 s… 30 min by then
    announced = [p for t, p in outbox_events(session) if t == events.EMAIL_FAILED]
    assert [p["attempts"] for p in announced] == list(range(1, 9))
    assert all(p["will_retry"] for p in announced)


def test_retry_backs_off_between_attempts(session):
    smtp, clock = FakeSmtp(), Clock()
    smtp.down = True
    notify(session, smtp, registered(), clock)
    clock.advance(seconds=30)
    assert len(use_cases.retry_deliveries(session, smtp, clock)) == 1  # 2nd attempt
    clock.advance(seconds=59)
    assert use_cases.retry_deliveries(session, smtp, clock) == []  # waits 1 min now
    clock.advance(seconds=1)
    assert len(use_cases.retry_deliveries(session, smtp, clock)) == 1


def test_a_delivery_left_pending_by_a_crash_is_sent_by_the_retry(session):
    smtp, clock = FakeSmtp(), Clock()
    session.add(
        Delivery(
            source_event_id="evt-9",
            template="user_registered",
            to="x@example.test",
            subject="S",
            body="B",
            status=PENDING,
            attempts=1,
            created_at=T0,
            last_attempt_at=T0,
        )
    )
    session.commit()
    clock.advance(minutes=5)
    assert use_cases.retry_deliveries(session, smtp, clock) == []  # may still be sending
    clock.advance(minutes=6)
    assert len(use_cases.retry_deliveries(session, smtp, clock)) == 1
    assert [m.to for m in smtp.sent] == ["x@example.test"]
    [(event_type, payload)] = outbox_events(session)
    assert event_type == events.EMAIL_FAILED and "interrompu" in payload["error"]


def test_a_delivery_claimed_by_another_worker_is_not_sent_twice(session):
    smtp, clock = FakeSmtp(), Clock()
    smtp.down = True
    [delivery] = notify(session, smtp, registered(), clock)
    smtp.down = False
    clock.advance(minutes=1)
    stale = session.get(Delivery, delivery.id)
    assert repository.claim(session, stale, FAILED, clock.now)  # the other worker
    session.commit()
    assert not repository.claim(session, stale, FAILED, clock.now)
    session.rollback()


def test_an_unusable_payload_sends_nothing_and_records_nothing(session):
    smtp = FakeSmtp()
    with pytest.raises(ValueError):
        notify(session, smtp, {"event_id": "evt-x", "email": "a@example.test"})
    session.rollback()
    assert smtp.sent == [] and count(session, Inbox) == 0


def _link_lost_after(session, commits_that_succeed_then_fail: int):
    """The next commits go through, the last one's answer is lost (the
    server committed, then the link died: a terminated backend)."""
    from sqlalchemy.exc import OperationalError

    real = session.commit
    calls = {"n": 0}

    def commit():
        calls["n"] += 1
        real()
        if calls["n"] == commits_that_succeed_then_fail:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    session.commit = commit
    return calls


def test_a_commit_whose_answer_was_lost_still_sends_the_email_once(session):
    smtp = FakeSmtp()
    _link_lost_after(session, 1)  # the inbox and delivery commit
    [delivery] = notify(session, smtp, registered())
    assert [m.to for m in smtp.sent] == ["nina.roux@example.test"]
    session.expire_all()
    assert session.get(Delivery, delivery.id).status == SENT
    # the event again (its handler was told the commit failed): nothing more
    assert notify(session, smtp, registered()) == []
    assert len(smtp.sent) == 1


def test_a_sent_email_whose_status_commit_was_lost_is_recorded_sent(session):
    smtp = FakeSmtp()
    _link_lost_after(session, 2)  # the commit after the send
    [delivery] = notify(session, smtp, registered())
    session.expire_all()
    row = session.get(Delivery, delivery.id)
    assert (row.status, row.sent_at) == (SENT, T0)
    assert len(smtp.sent) == 1


def test_a_commit_that_really_failed_is_left_to_the_event_retry(session):
    from sqlalchemy.exc import OperationalError

    def commit():
        session.rollback()
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    real = session.commit
    session.commit = commit
    with pytest.raises(OperationalError):
        notify(session, FakeSmtp(), registered())
    session.commit = real
    assert count(session, Inbox) == 0
    smtp = FakeSmtp()
    notify(session, smtp, registered())
    assert len(smtp.sent) == 1

"""E-mail deliveries are retried for a day with capped exponential backoff and
jitter, then marked undelivered (never dropped), listed for the agency and
sent again on demand (SQLite in memory)."""

import datetime as dt
import logging

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from kit import events
from kit.context import Caller
from kit.errors import Forbidden, NotFound
from notify import use_cases
from notify.mailer import SendFailed
from notify.models import FAILED, SENT, UNDELIVERED, Delivery, Outbox
from notify.templates import Settings
from notify.use_cases import RetryPolicy

SETTINGS = Settings(public_url="http://front.test")
T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
AGENT = Caller(user_id="agent-1", org_id=None, roles=("agency_admin",))


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


class Smtp:
    def __init__(self):
        self.down, self.sent, self.tries = True, [], 0

    def __call__(self, email):
        self.tries += 1
        if self.down:
            raise SendFailed("serveur SMTP injoignable : ConnectionRefusedError")
        self.sent.append(email)


def registered(event_id="evt-1"):
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


def notify(session, smtp, clock, policy=None, event_id="evt-1"):
    return use_cases.notify_event(
        session,
        smtp,
        SETTINGS,
        events.USER_REGISTERED,
        registered(event_id),
        handler="on_user_registered",
        clock=clock,
        policy=policy,
    )


def sample(name, labels=None):
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def run_until(session, smtp, clock, until, step, policy=None):
    while clock.now < until:
        clock.now += step
        use_cases.retry_deliveries(session, smtp, clock, policy=policy)


def test_the_default_schedule_backs_off_to_an_hour_and_retries_for_a_day():
    policy = RetryPolicy.from_env({})
    assert policy.window == dt.timedelta(hours=24)
    waits = [policy.wait(n, rand=lambda: 0.5).total_seconds() for n in range(1, 40)]
    assert waits[:3] == [30, 60, 120]
    assert waits == sorted(waits) and max(waits) == 3600  # capped
    # jitter: ±20 % around the schedule
    assert policy.wait(1, rand=lambda: 0.0).total_seconds() == pytest.approx(24)
    assert policy.wait(1, rand=lambda: 0.999999).total_seconds() == pytest.approx(36, abs=0.01)


@pytest.mark.parametrize(
    "env",
    [
        {"EMAIL_RETRY_SCHEDULE": "1,x"},
        {"EMAIL_RETRY_SCHEDULE": "-1"},
        {"EMAIL_RETRY_SCHEDULE": "nan"},
        {"EMAIL_RETRY_WINDOW": "inf"},
        {"EMAIL_RETRY_JITTER": "1.5"},
    ],
)
def test_a_bad_setting_is_refused(env):
    with pytest.raises(ValueError):
        RetryPolicy.from_env(env)


def test_a_day_long_outage_is_retried_until_the_window_then_sent_when_back(session):
    """An outage of 23 h (far beyond the old 5 attempts over 7.5 min): the
    e-mail is still sent once the server is back, exactly once."""
    smtp, clock = Smtp(), Clock()
    policy = RetryPolicy.from_env({})
    [delivery] = notify(session, smtp, clock, policy)
    run_until(session, smtp, clock, T0 + dt.timedelta(hours=23), dt.timedelta(minutes=1), policy)
    row = session.get(Delivery, delivery.id)
    assert row.status == FAILED
    # backoff: far fewer attempts than minutes (about 6 in the first hour, then hourly)
    assert 20 <= smtp.tries <= 35
    smtp.down = False
    run_until(
        session,
        smtp,
        clock,
        T0 + dt.timedelta(hours=24, minutes=30),
        dt.timedelta(minutes=1),
        policy,
    )
    assert len(smtp.sent) == 1
    assert session.get(Delivery, delivery.id).status == SENT


def test_after_the_window_it_is_undelivered_counted_logged_listed_and_resent(session, caplog):
    smtp, clock = Smtp(), Clock()
    policy = RetryPolicy.from_env({"EMAIL_RETRY_SCHEDULE": "10,20", "EMAIL_RETRY_WINDOW": "60"})
    before = sample("emails_total", {"outcome": "undelivered"})
    [delivery] = notify(session, smtp, clock, policy)
    with caplog.at_level(logging.WARNING, logger="notify.use_cases"):
        run_until(
            session, smtp, clock, T0 + dt.timedelta(seconds=300), dt.timedelta(seconds=5), policy
        )
    row = session.get(Delivery, delivery.id)
    assert row.status == UNDELIVERED and row.next_attempt_at is None
    # 0 s, then waits of 8–12 s and 16–24 s (the last one repeated) within 60 s
    assert 3 <= row.attempts <= 5
    tries = smtp.tries
    run_until(session, smtp, clock, T0 + dt.timedelta(hours=2), dt.timedelta(minutes=5), policy)
    assert smtp.tries == tries  # given up: no more attempts
    undelivered_lines = [r for r in caplog.records if "undelivered" in r.getMessage()]
    assert len(undelivered_lines) == 1 and undelivered_lines[0].levelno == logging.WARNING
    assert sample("emails_total", {"outcome": "undelivered"}) - before == 1
    assert sample("emails_undelivered") == 1
    last = [
        p
        for t, p in ((o.event_type, o.payload) for o in session.scalars(select(Outbox)))
        if t == events.EMAIL_FAILED
    ][-1]
    assert last["will_retry"] is False

    listed = use_cases.list_undelivered(session, AGENT)
    assert listed["total"] == 1
    [item] = listed["items"]
    assert (item["id"], item["to"], item["template"]) == (
        delivery.id,
        "nina.roux@example.test",
        "user_registered",
    )
    assert "injoignable" in item["last_error"]

    smtp.down = False
    assert use_cases.resend_undelivered(session, AGENT, delivery.id, clock, policy)["status"] == (
        FAILED
    )
    assert sample("emails_undelivered") == 0
    with pytest.raises(NotFound):  # not undelivered any more
        use_cases.resend_undelivered(session, AGENT, delivery.id, clock, policy)
    use_cases.retry_deliveries(session, smtp, clock, policy=policy)
    assert len(smtp.sent) == 1
    assert session.get(Delivery, delivery.id).status == SENT
    assert use_cases.list_undelivered(session, AGENT) == {"items": [], "total": 0}


def test_only_the_agency_lists_and_resends(session):
    user = Caller(user_id="u1", org_id="o1", roles=("user",))
    with pytest.raises(Forbidden):
        use_cases.list_undelivered(session, user)
    with pytest.raises(Forbidden):
        use_cases.resend_undelivered(session, user, "x")


def test_rows_written_before_the_window_existed_are_retried(session):
    """Failed rows from before the migration have no next_attempt_at/give_up_at."""
    smtp, clock = Smtp(), Clock()
    smtp.down = False
    session.add(
        Delivery(
            source_event_id="old",
            template="user_registered",
            to="x@example.test",
            subject="S",
            body="B",
            status=FAILED,
            attempts=5,
            created_at=T0,
            last_attempt_at=T0,
        )
    )
    session.commit()
    clock.now += dt.timedelta(seconds=1)
    assert len(use_cases.retry_deliveries(session, smtp, clock)) == 1
    assert [m.to for m in smtp.sent] == ["x@example.test"]

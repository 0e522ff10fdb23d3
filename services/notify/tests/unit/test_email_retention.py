"""E-mails are kept NOTIFY_EMAIL_RETENTION_DAYS (90) after they were sent or
given up, then deleted; an e-mail still waiting for its outcome is never
deleted. SQLite in memory, and PostgreSQL for the replicas (SKIP LOCKED)."""

import datetime as dt
import logging
import threading

import pytest
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.testing.services import worker_factory
from nameko.timer import Timer
from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from kit.context import AGENCY_ADMIN, SYSTEM, Caller
from kit.db import make_engine
from kit.errors import Forbidden, InvalidInput
from kit.migrate import upgrade
from notify import personal_data as pd
from notify.models import FAILED, PENDING, SENT, UNDELIVERED, Delivery
from notify.service import NotifyService

NOW = dt.datetime(2025, 9, 1, 12, 0, tzinfo=dt.UTC)
KEEP = pd.Retention()  # 90 days


def days_ago(days):
    return NOW - dt.timedelta(days=days)


def mail(status, days, to="claire@example.org", **dates):
    """A delivery whose last event (send, last attempt) was ``days`` ago."""
    at = days_ago(days)
    fields = dict(created_at=at - dt.timedelta(hours=1), last_attempt_at=at)
    if status == SENT:
        fields["sent_at"] = at
    fields.update(dates)
    return Delivery(
        source_event_id=f"evt-{status}-{days}",
        template="user_validated",
        to=to,
        subject="Votre compte est validé",
        body="Bonjour Claire, https://front.test/connexion?token=abc",
        status=status,
        **fields,
    )


def stored(session):
    return sorted((d.status, d.source_event_id) for d in session.scalars(select(Delivery)))


def test_sent_and_undelivered_emails_older_than_90_days_are_deleted(session):
    session.add_all([mail(SENT, 91), mail(UNDELIVERED, 120), mail(SENT, 89), mail(UNDELIVERED, 3)])
    session.commit()
    assert pd.run_retention(session, KEEP, NOW) == {"emails_purged": 2}
    assert stored(session) == [(SENT, "evt-sent-89"), (UNDELIVERED, "evt-undelivered-3")]


def test_an_email_waiting_for_its_outcome_is_kept_whatever_its_age(session):
    session.add_all([mail(PENDING, 400), mail(FAILED, 400), mail(SENT, 400)])
    session.commit()
    assert pd.run_retention(session, KEEP, NOW) == {"emails_purged": 1}
    assert stored(session) == [(FAILED, "evt-failed-400"), (PENDING, "evt-pending-400")]


def test_a_sent_email_counts_from_when_it_was_sent_not_when_it_was_written(session):
    # written 100 days ago, retried for days, sent 80 days ago: kept 10 more days
    session.add(mail(SENT, 80, created_at=days_ago(100), last_attempt_at=days_ago(80)))
    session.commit()
    assert pd.run_retention(session, KEEP, NOW) == {"emails_purged": 0}
    assert pd.run_retention(session, KEEP, NOW + dt.timedelta(days=11)) == {"emails_purged": 1}


def test_an_email_sent_back_to_the_retry_queue_is_no_longer_final(session):
    row = mail(UNDELIVERED, 200)
    session.add(row)
    session.commit()
    session.execute(update(Delivery).values(status=FAILED, next_attempt_at=NOW))
    session.commit()
    assert pd.run_retention(session, KEEP, NOW) == {"emails_purged": 0}


def test_the_purge_goes_in_batches_until_nothing_is_left(session):
    session.add_all([mail(SENT, 100 + i) for i in range(7)] + [mail(SENT, 1)])
    session.commit()
    assert pd.purge_emails(session, KEEP, NOW, batch=3) == 7
    assert stored(session) == [(SENT, "evt-sent-1")]


def test_the_counts_are_logged(session, caplog):
    session.add(mail(SENT, 95))
    session.commit()
    with caplog.at_level(logging.INFO, logger="notify.personal_data"):
        pd.run_retention(session, KEEP, NOW)
    [line] = [r for r in caplog.records if "notify retention" in r.getMessage()]
    assert line.getMessage() == "notify retention (90 days): emails_purged=1"
    assert line.retention == {"emails_purged": 1}


def test_the_retention_is_read_from_notify_email_retention_days():
    assert pd.Retention.read(lambda key, default: default).days == 90
    assert pd.Retention.read(lambda key, default: "30").ttl == dt.timedelta(days=30)
    with pytest.raises(ValueError, match="NOTIFY_EMAIL_RETENTION_DAYS"):
        pd.Retention.read(lambda key, default: "trois mois")
    with pytest.raises(ValueError, match="NOTIFY_EMAIL_RETENTION_DAYS"):
        pd.Retention.read(lambda key, default: "-1")


def test_a_shorter_retention_deletes_earlier(session):
    session.add_all([mail(SENT, 40), mail(SENT, 20)])
    session.commit()
    assert pd.run_retention(session, pd.Retention(30), NOW) == {"emails_purged": 1}


# ---------------------------------------------------------------- entrypoints


def entrypoints(method):
    return getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, set())


def test_the_retention_runs_every_hour():
    [timer] = entrypoints(NotifyService.apply_retention)
    assert isinstance(timer, Timer) and timer.interval == 3600


def test_a_system_caller_runs_the_retention_as_of_a_given_time(session):
    session.add_all([mail(SENT, 10), mail(SENT, 100)])
    session.commit()
    service = worker_factory(
        NotifyService, db=session, retention=KEEP, caller=Caller(roles=(SYSTEM,))
    )
    assert service.run_retention(NOW.isoformat()) == {"emails_purged": 1}
    later = (NOW + dt.timedelta(days=81)).replace(tzinfo=None).isoformat()  # naive: UTC
    assert service.run_retention(later) == {"emails_purged": 1}
    assert stored(session) == []


def test_only_a_system_caller_may_run_the_retention(session):
    agent = Caller(user_id="a" * 32, roles=(AGENCY_ADMIN,))
    service = worker_factory(NotifyService, db=session, retention=KEEP, caller=agent)
    with pytest.raises(Forbidden) as caught:
        service.run_retention(NOW.isoformat())
    assert caught.value.code == "forbidden.system_only"
    system = worker_factory(
        NotifyService, db=session, retention=KEEP, caller=Caller(roles=(SYSTEM,))
    )
    with pytest.raises(InvalidInput):
        system.run_retention("hier")


# ---------------------------------------------------------------- N replicas (PostgreSQL)


@pytest.mark.integration
def test_replicas_on_postgresql_skip_the_rows_another_one_holds(pg_database):
    url = pg_database("notify")
    upgrade("notify", url)
    engine = make_engine(url)
    make = sessionmaker(engine, expire_on_commit=False)
    try:
        with make() as s:
            s.add_all([mail(SENT, 100 + i) for i in range(6)])
            s.commit()
            held = s.scalars(select(Delivery.id).order_by(Delivery.id)).first()
        holder = make()
        holder.scalar(select(Delivery).where(Delivery.id == held).with_for_update())
        result = {}

        def replica():
            with make() as s:
                result["purged"] = pd.purge_emails(s, KEEP, NOW, batch=2)

        thread = threading.Thread(target=replica)
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the purge waited for the locked row"
        assert result["purged"] == 5
        holder.rollback()  # the other replica lets it go: the next run deletes it
        holder.close()
        with make() as s:
            assert pd.purge_emails(s, KEEP, NOW) == 1
            assert s.scalar(select(func.count()).select_from(Delivery)) == 0
    finally:
        engine.dispose()

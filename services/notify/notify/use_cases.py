"""Notify's use cases: send the e-mails of an event once, retry the failed ones.

Plain functions taking their collaborators (the session, a ``send`` callable,
the settings, a clock) so they run in tests without nameko or a mail server.

At-least-once delivery means an event can arrive twice. The inbox row (event
id, handler) and the delivery rows are committed together *before* sending:
a second copy of the event hits the inbox's primary key and sends nothing.
The message is then sent and its row marked ``sent`` or ``failed``; a failure
also writes ``notify.email_failed`` to the outbox. If the process dies between
the commit and the end of the send, the row stays ``pending`` and the retry
timer takes it up after ``STALE_AFTER`` (at worst one duplicate e-mail, never
a lost one).

A failed delivery is tried again for ``EMAIL_RETRY_WINDOW`` seconds (default
86,400: a day) after it was written, with capped exponential backoff and
jitter: ``EMAIL_RETRY_SCHEDULE`` lists the waits after each failure (seconds,
comma-separated; default 30 s, 1, 2, 5, 10, 20, 30 min, then every hour),
the last one repeated, each ±``EMAIL_RETRY_JITTER`` (default 20 %). A failure
after the window makes it ``undelivered``: one WARNING line, the
``emails_undelivered`` gauge, ``emails_total{outcome="undelivered"}``, and the
agency's page « Courriels non remis », which can send it again (a new window).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import Gauge
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from kit import events
from kit.context import Caller
from kit.db import new_id, utcnow
from kit.metrics import EMAILS
from kit.outbox import emit
from notify import problems, repository
from notify.mailer import SendFailed
from notify.models import FAILED, PENDING, SENT, UNDELIVERED, Delivery, Inbox, Outbox
from notify.templates import Email, Settings, render

log = logging.getLogger(__name__)

Send = Callable[[Email], None]
Clock = Callable[[], dt.datetime]

STALE_AFTER = dt.timedelta(minutes=10)  # far beyond the SMTP timeout
INTERRUPTED = "envoi interrompu (arrêt du service pendant l'envoi)"

DEFAULT_SCHEDULE = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
DEFAULT_WINDOW = 86400.0
DEFAULT_JITTER = 0.2
# how often the retry timer runs (seconds): the finest step of the schedule
RETRY_TICK = float(os.environ.get("EMAIL_RETRY_TICK_SECONDS", "30"))

EMAILS_UNDELIVERED = Gauge(
    "emails_undelivered",
    "E-mails given up after the retry window (status undelivered), awaiting the agency.",
)


@dataclass(frozen=True)
class RetryPolicy:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    window: dt.timedelta = dt.timedelta(seconds=DEFAULT_WINDOW)
    jitter: float = DEFAULT_JITTER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RetryPolicy:
        problem = "EMAIL_RETRY_SCHEDULE : durées positives (secondes), séparées par des virgules"
        raw = environ.get("EMAIL_RETRY_SCHEDULE", "")
        schedule = DEFAULT_SCHEDULE
        if raw.strip():
            try:
                schedule = tuple(float(v) for v in raw.split(",") if v.strip())
            except ValueError:
                raise ValueError(f"{problem} (lu : {raw!r})") from None
            if not schedule or not all(math.isfinite(w) and w >= 0 for w in schedule):
                raise ValueError(f"{problem} (lu : {raw!r})")
        window = float(environ.get("EMAIL_RETRY_WINDOW", DEFAULT_WINDOW))
        jitter = float(environ.get("EMAIL_RETRY_JITTER", DEFAULT_JITTER))
        if not (math.isfinite(window) and window >= 0 and 0 <= jitter < 1):
            raise ValueError("EMAIL_RETRY_WINDOW >= 0 s, 0 <= EMAIL_RETRY_JITTER < 1")
        return cls(schedule, dt.timedelta(seconds=window), jitter)

    def wait(self, attempts: int, rand=random.random) -> dt.timedelta:
        """The wait after the ``attempts``-th failed attempt (the last one repeated)."""
        base = self.schedule[min(max(attempts, 1), len(self.schedule)) - 1]
        return dt.timedelta(seconds=base * (1 - self.jitter + 2 * self.jitter * rand()))


def _policy(policy: RetryPolicy | None) -> RetryPolicy:
    return policy if policy is not None else RetryPolicy.from_env()


def event_key(payload: dict) -> str:
    """The event's id; an event without one (a contract bug) is keyed on its
    content so that a redelivered copy is still recognised."""
    event_id = payload.get("event_id")
    if isinstance(event_id, str) and event_id:
        return event_id[:64]
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def notify_event(
    session: Session,
    send: Send,
    settings: Settings,
    event_type: str,
    payload: dict,
    handler: str,
    clock: Clock = utcnow,
    policy: RetryPolicy | None = None,
) -> list[Delivery]:
    """Sends the e-mails ``event_type`` calls for, once per (event, handler).

    Returns the deliveries made by this call: empty if the event had already
    been handled. Raises ``templates.PayloadError`` for an unusable payload."""
    emails = render(event_type, payload, settings)
    event_id = event_key(payload)
    policy = _policy(policy)
    now = clock()
    session.add(Inbox(event_id=event_id, handler=handler, handled_at=now))
    rows = [
        Delivery(
            id=new_id(),  # known before the commit: a lost link may hide its outcome
            source_event_id=event_id,
            template=e.template,
            to=e.to,
            subject=e.subject,
            body=e.text,
            status=PENDING,
            attempts=1,
            created_at=now,
            last_attempt_at=now,
            give_up_at=now + policy.window,
        )
        for e in emails
    ]
    repository.add_deliveries(session, rows)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        log.info("event %s already handled by %s: no e-mail", event_id, handler)
        return []
    except OperationalError:
        # the link died during COMMIT: the server may have committed before
        # it went (a terminated backend finishes its commit first). Ask a
        # fresh connection; if the inbox row is there, these deliveries are
        # ours to send (a later copy of the event finds it "already handled"
        # and would send nothing, leaving them pending for STALE_AFTER)
        _discard(session)
        if session.get(Inbox, (event_id, handler)) is None:
            raise
        log.info("event %s: commit confirmed after a lost link, sending", event_id)
        ids = [row.id for row in rows]
        rows = [r for r in repository.deliveries_by_id(session, ids) if r.status == PENDING]
    for row in rows:
        _attempt(session, send, row, clock, policy)
    return rows


def retry_deliveries(
    session: Session,
    send: Send,
    clock: Clock = utcnow,
    limit: int = 50,
    policy: RetryPolicy | None = None,
) -> list[Delivery]:
    """Sends again the failed deliveries whose wait is over; returns the
    deliveries attempted. Also refreshes the ``emails_undelivered`` gauge."""
    policy = _policy(policy)
    now = clock()
    for row in repository.stale_pending(session, now - STALE_AFTER, limit):
        if repository.mark_stale_failed(session, row, INTERRUPTED):
            session.refresh(row)
            _schedule(row, now, policy, at_once=True)
            _announce_failure(session, row)
    session.commit()

    attempted = []
    for row in repository.due_for_retry(session, now, limit):
        claimed = repository.claim(session, row, FAILED, now)
        session.commit()
        if not claimed:  # another worker took it
            continue
        session.refresh(row)
        _attempt(session, send, row, clock, policy)
        attempted.append(row)
    session.commit()
    EMAILS_UNDELIVERED.set(repository.count_undelivered(session))
    session.commit()
    return attempted


def _schedule(row: Delivery, now: dt.datetime, policy: RetryPolicy, at_once=False) -> None:
    """After a failure: the next attempt (``at_once`` for a send that was
    interrupted, not refused), or undelivered once the window is over."""
    give_up_at = row.give_up_at or (row.created_at or now) + policy.window
    if now >= give_up_at:
        row.status = UNDELIVERED
        row.next_attempt_at = None
        EMAILS.labels(outcome="undelivered").inc()
        log.warning(
            "e-mail %s (%s) undelivered after %d attempts since %s, last error: %s; "
            "listed on the agency's page Courriels non remis",
            row.id,
            row.template,
            row.attempts,
            row.created_at.isoformat() if row.created_at else "?",
            (row.last_error or "")[:200],
        )
    else:
        row.status = FAILED
        wait = dt.timedelta(0) if at_once else policy.wait(row.attempts)
        row.next_attempt_at = min(now + wait, give_up_at)


def _attempt(
    session: Session, send: Send, row: Delivery, clock: Clock, policy: RetryPolicy
) -> None:
    """One send of a delivery already marked ``pending`` and committed."""
    try:
        send(Email(row.template, row.to, row.subject, row.body))
    except Exception as exc:  # noqa: BLE001 - any failure is logged and retried
        if isinstance(exc, SendFailed):
            log.warning("delivery %s failed: %s", row.id, exc)
            error = str(exc)
        else:
            log.exception("delivery %s failed unexpectedly", row.id)
            error = f"{type(exc).__name__}: {exc}"
        row.last_error = error[:2000]
        _schedule(row, clock(), policy)
        _announce_failure(session, row)
    else:
        row.status = SENT
        row.sent_at = clock()
    EMAILS.labels(outcome="sent" if row.status == SENT else "failed").inc()
    outcome = {
        "status": row.status,
        "sent_at": row.sent_at,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at,
    }
    try:
        session.commit()
    except OperationalError:
        # the mail went (or failed) whatever the database says: record it on
        # a fresh connection, once, or the stale-pending recovery would send
        # a sent e-mail again
        _discard(session)
        repository.record_outcome(session, row.id, outcome)
        session.commit()


def _discard(session: Session) -> None:
    try:
        session.rollback()
    except Exception:  # noqa: BLE001 - a dead link: the pool replaces it
        session.invalidate()


def _announce_failure(session: Session, row: Delivery) -> None:
    emit(
        session,
        Outbox,
        events.EMAIL_FAILED,
        {
            "source_event_id": row.source_event_id,
            "template": row.template,
            "error": (row.last_error or "")[:500],
            "delivery_id": row.id,
            "attempts": row.attempts,
            "will_retry": row.status == FAILED,
        },
    )


# ---------------------------------------------------------------- agency: undelivered e-mails


def _undelivered_view(row: Delivery) -> dict:
    def iso(value):
        return value.isoformat() if value else None

    return {
        "id": row.id,
        "template": row.template,
        "to": row.to,
        "subject": row.subject,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "last_attempt_at": iso(row.last_attempt_at),
    }


def list_undelivered(session: Session, caller: Caller, limit: int = 50, offset: int = 0) -> dict:
    """The agency's list of e-mails given up, newest first."""
    caller.require_agency()
    limit = max(1, min(int(limit), 200))
    offset = max(0, int(offset))
    rows = repository.undelivered(session, limit, offset)
    total = repository.count_undelivered(session)
    session.rollback()
    return {"items": [_undelivered_view(r) for r in rows], "total": total}


def resend_undelivered(
    session: Session,
    caller: Caller,
    delivery_id: str,
    clock: Clock = utcnow,
    policy: RetryPolicy | None = None,
) -> dict:
    """Puts an undelivered e-mail back in the retry queue: due at once, and
    retried for a new window. The retry timer sends it."""
    caller.require_agency()
    now = clock()
    if not repository.resend(session, str(delivery_id), now, now + _policy(policy).window):
        session.rollback()
        raise problems.error("email.not_undelivered")
    session.commit()
    log.info("undelivered e-mail %s queued again by %s", delivery_id, caller.user_id)
    EMAILS_UNDELIVERED.set(repository.count_undelivered(session))
    session.commit()
    return {"id": delivery_id, "status": FAILED}

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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kit import events
from kit.db import utcnow
from kit.metrics import EMAILS
from kit.outbox import emit
from notify import repository
from notify.mailer import SendFailed
from notify.models import FAILED, PENDING, SENT, Delivery, Inbox, Outbox
from notify.templates import Email, Settings, render

log = logging.getLogger(__name__)

Send = Callable[[Email], None]
Clock = Callable[[], dt.datetime]

MAX_ATTEMPTS = 5
STALE_AFTER = dt.timedelta(minutes=10)  # far beyond the SMTP timeout
INTERRUPTED = "envoi interrompu (arrêt du service pendant l'envoi)"


def backoff(attempts: int) -> dt.timedelta:
    """Wait after the n-th failed attempt: 30 s, 1 min, 2 min, 4 min."""
    return dt.timedelta(seconds=30 * 2 ** (attempts - 1))


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
) -> list[Delivery]:
    """Sends the e-mails ``event_type`` calls for, once per (event, handler).

    Returns the deliveries made by this call: empty if the event had already
    been handled. Raises ``templates.PayloadError`` for an unusable payload."""
    emails = render(event_type, payload, settings)
    event_id = event_key(payload)
    now = clock()
    session.add(Inbox(event_id=event_id, handler=handler, handled_at=now))
    rows = [
        Delivery(
            source_event_id=event_id,
            template=e.template,
            to=e.to,
            subject=e.subject,
            body=e.text,
            status=PENDING,
            attempts=1,
            created_at=now,
            last_attempt_at=now,
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
    for row in rows:
        _attempt(session, send, row, clock)
    return rows


def retry_deliveries(
    session: Session, send: Send, clock: Clock = utcnow, limit: int = 50
) -> list[Delivery]:
    """Sends again the failed deliveries whose wait is over (fewer than
    ``MAX_ATTEMPTS`` attempts); returns the deliveries attempted."""
    now = clock()
    for row in repository.stale_pending(session, now - STALE_AFTER, limit):
        if repository.mark_stale_failed(session, row, INTERRUPTED):
            session.refresh(row)
            _announce_failure(session, row)
    session.commit()

    attempted = []
    for row in repository.due_for_retry(session, now, backoff, MAX_ATTEMPTS, limit):
        claimed = repository.claim(session, row, FAILED, now)
        session.commit()
        if not claimed:  # another worker took it
            continue
        session.refresh(row)
        _attempt(session, send, row, clock)
        attempted.append(row)
    session.commit()
    return attempted


def _attempt(session: Session, send: Send, row: Delivery, clock: Clock) -> None:
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
        row.status = FAILED
        row.last_error = error[:2000]
        _announce_failure(session, row)
    else:
        row.status = SENT
        row.sent_at = clock()
    EMAILS.labels(outcome="sent" if row.status == SENT else "failed").inc()
    session.commit()


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
            "will_retry": row.attempts < MAX_ATTEMPTS,
        },
    )

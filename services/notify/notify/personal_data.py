"""Personal data in notify (RGPD): the e-mails sent to a person, and how
long any e-mail is kept.

notify knows people by address only (it writes to what identity's events
carry), so the agency's export and erasure pass the person's addresses
(identity's ``get_person``: the account's e-mail and, for a carte account,
its contact address). Export: each e-mail's template, subject, dates and
status, not its body (it carried single-use links). Erasure: the address and
body are replaced; an e-mail not sent yet is given up (never sent to an
address the person asked to be forgotten). The same erasure follows
``identity.person_anonymised`` (an account anonymised by retention or erased
on request: ``person_anonymised``).

Retention (``run_retention``, an hourly job of the service; the system-only
RPC ``run_retention(now)`` runs it at once as of a given time): an e-mail
that reached a final state (``sent``, or ``undelivered``: given up after the
retry window) more than ``NOTIFY_EMAIL_RETENTION_DAYS`` days ago (default
90, identity's ``SESSION_RETENTION_DAYS``) is deleted with its address,
subject and body. 90 days is enough to answer "did you send me the mail?"
and to investigate recent deliveries (the agency's « Courriels non remis »
included); the single-use links in the bodies expired long before (an hour
to a week). An e-mail still ``pending`` or ``failed`` (waiting for its next
attempt) is never deleted, whatever its age: it has not reached its outcome.
notify's other tables need no rule of their own: the inbox holds event ids,
the outbox nothing personal (``notify.email_failed`` is announced, not
stored), the partner feed has ``PARTNER_FEED_RETENTION_DAYS`` and carries
no personal data, and the partner audit trail is kept like identity's.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kit.context import SYSTEM, Caller
from kit.db import utcnow
from notify import problems, repository
from notify.models import SENT, UNDELIVERED, Delivery, Inbox
from notify.use_cases import event_key

log = logging.getLogger(__name__)

ERASED = "[effacé]"
ERASED_ADDRESS = "anonyme@anonyme.invalid"
MAX_ADDRESSES = 10
EMAIL_RETENTION_DAYS = 90.0
RETENTION_BATCH = 500
# the caller of the erasures identity's event asks for (no agent: identity decided)
SYSTEM_CALLER = Caller(roles=(SYSTEM,))


def _require_agency(caller: Caller) -> None:
    if SYSTEM not in caller.roles:
        caller.require_agency()


def _addresses(emails) -> list[str]:
    if (
        not isinstance(emails, list)
        or len(emails) > MAX_ADDRESSES
        or not all(isinstance(e, str) and "@" in e and len(e) <= 254 for e in emails)
    ):
        raise problems.error(
            "invalid_input", fields={"emails": [f"1 à {MAX_ADDRESSES} adresses e-mail."]}
        )
    return sorted({e.strip().lower() for e in emails})


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def export_person(session, caller: Caller, emails) -> dict:
    """Agency: {emails: [{id, to, template, subject, status, created_at, sent_at}]}."""
    _require_agency(caller)
    addresses = _addresses(emails)
    rows = (
        session.scalars(
            select(Delivery).where(Delivery.to.in_(addresses)).order_by(Delivery.created_at)
        ).all()
        if addresses
        else []
    )
    return {
        "emails": [
            {
                "id": d.id,
                "to": d.to,
                "template": d.template,
                "subject": d.subject,
                "status": d.status,
                "created_at": _iso(d.created_at),
                "sent_at": _iso(d.sent_at),
            }
            for d in rows
        ]
    }


def erase_person(session, caller: Caller, emails) -> dict:
    """Agency: addresses and bodies replaced. Idempotent. Returns {emails_erased}."""
    _require_agency(caller)
    addresses = _addresses(emails)
    count = 0
    for row in session.scalars(select(Delivery).where(Delivery.to.in_(addresses))).all():
        row.to, row.body = ERASED_ADDRESS, ERASED
        if row.status != SENT:
            row.status = UNDELIVERED
            row.last_error = "Effacé à la demande de la personne (RGPD)."
        count += 1
    session.commit()
    return {"emails_erased": count}


# ---------------------------------------------------------------- identity.person_anonymised


def person_anonymised(
    session, payload: dict, handler: str, clock: Callable[[], dt.datetime] = utcnow
) -> dict | None:
    """identity anonymised an account (``reason``: retention or request): the
    e-mails sent to its addresses (``emails``) are erased as by the agency's
    ``erase_person``. Returns {emails_erased}, or None for an event already
    handled.

    Once per event (the inbox row commits with the erasure): a redelivered
    copy changes nothing more, even after a new account took one of the
    addresses and was sent e-mails since. A payload whose ``emails`` is not a
    list of addresses raises ``InvalidInput``: kit.handlers retries it, then
    parks it for an operator (an erasure is never dropped silently)."""
    event_id = event_key(payload)
    if session.get(Inbox, (event_id, handler)) is not None:
        session.rollback()
        log.info("person_anonymised %s already handled by %s", event_id, handler)
        return None
    session.add(Inbox(event_id=event_id, handler=handler, handled_at=clock()))
    try:
        session.flush()  # a concurrent copy of the event waits here, then fails
        result = erase_person(session, SYSTEM_CALLER, payload.get("emails"))
    except IntegrityError:
        session.rollback()
        log.info("person_anonymised %s already handled by %s", event_id, handler)
        return None
    except Exception:
        session.rollback()
        raise
    log.info(
        "person_anonymised (user %s, %s): %d e-mails erased",
        payload.get("user_id"),
        payload.get("reason"),
        result["emails_erased"],
    )
    return result


# ---------------------------------------------------------------- retention


@dataclass(frozen=True)
class Retention:
    """How long an e-mail is kept once sent or given up (module docstring)."""

    days: float = EMAIL_RETENTION_DAYS  # NOTIFY_EMAIL_RETENTION_DAYS

    @classmethod
    def read(cls, get: Callable[[str, str], str] | None = None) -> Retention:
        """``get(key, default)`` reads one setting (default: the environment)."""
        get = get or _environ(os.environ)
        raw = get("NOTIFY_EMAIL_RETENTION_DAYS", "") or ""
        if not str(raw).strip():
            return cls()
        try:
            days = float(raw)
        except ValueError:
            days = -1.0
        if not (0 <= days < 100_000):
            raise ValueError(
                f"NOTIFY_EMAIL_RETENTION_DAYS : un nombre de jours positif (lu : {raw!r})"
            )
        return cls(days)

    @property
    def ttl(self) -> dt.timedelta:
        return dt.timedelta(days=self.days)


def _environ(environ: Mapping[str, str]):
    return lambda key, default: environ.get(key, default)


def purge_emails(
    session, retention: Retention, now: dt.datetime, batch: int = RETENTION_BATCH
) -> int:
    """Deletes the e-mails sent or given up before ``now - retention.ttl``,
    ``batch`` rows per transaction. On PostgreSQL each batch is taken with
    FOR UPDATE SKIP LOCKED: several replicas delete different rows, and a
    row the agency is sending again right now is left for the next run."""
    before = now - retention.ttl
    purged = 0
    while True:
        ids = repository.final_deliveries_before(session, before, batch)
        if ids:
            purged += repository.delete_final_deliveries(session, ids, before)
        session.commit()
        if len(ids) < batch:
            return purged


def run_retention(session, retention: Retention, now: dt.datetime | None = None) -> dict:
    """Every retention rule of notify's e-mails, as of ``now``; the counts are
    logged and returned ({emails_purged})."""
    now = now or utcnow()
    counts = {"emails_purged": purge_emails(session, retention, now)}
    log.info(
        "notify retention (%g days): %s",
        retention.days,
        ", ".join(f"{k}={v}" for k, v in counts.items()),
        extra={"retention": counts},
    )
    return counts

"""Personal data in notify (RGPD): the e-mails sent to a person.

notify knows people by address only (it writes to what identity's events
carry), so the agency's export and erasure pass the person's addresses
(identity's ``get_person``: the account's e-mail and, for a carte account,
its contact address). Export: each e-mail's template, subject, dates and
status, not its body (it carried single-use links). Erasure: the address and
body are replaced; an e-mail not sent yet is given up (never sent to an
address the person asked to be forgotten).
"""

from __future__ import annotations

from sqlalchemy import select

from kit.context import SYSTEM, Caller
from kit.errors import InvalidInput
from notify.models import SENT, UNDELIVERED, Delivery

ERASED = "[effacé]"
ERASED_ADDRESS = "anonyme@anonyme.invalid"
MAX_ADDRESSES = 10


def _require_agency(caller: Caller) -> None:
    if SYSTEM not in caller.roles:
        caller.require_agency()


def _addresses(emails) -> list[str]:
    if (
        not isinstance(emails, list)
        or len(emails) > MAX_ADDRESSES
        or not all(isinstance(e, str) and "@" in e and len(e) <= 254 for e in emails)
    ):
        raise InvalidInput.fields({"emails": [f"1 à {MAX_ADDRESSES} adresses e-mail."]})
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

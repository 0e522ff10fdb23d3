"""Registration: self-registration, its confirmation, purge and validation."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from identity import problems, security
from identity import repository as repo
from identity.domain import registration as rules
from identity.domain.accounts import user_state
from identity.models import Attachment, Organisation, Outbox, RegistrationAttempt, User
from identity.schemas import org_dict, person_payload, user_row
from identity.sirene import RegistryUnavailable
from identity.use_cases._common import (
    Defer,
    _run,
    acting_agent,
    audit,
    consume_token,
    issue_token,
    managed_user,
)
from identity.use_cases.user_management import _check_quota
from kit import events
from kit.context import AGENCY_ADMIN, Caller
from kit.db import new_id, read_only, utcnow
from kit.outbox import emit

ATTACHMENT_KINDS = ("habilitation", "other")
MAX_ATTACHMENTS = 10
REASON_MAX = 1000

REGISTERED = {
    "status": "confirmation_sent",
    "message": "Un courriel vous a été envoyé pour confirmer votre adresse.",
}

log = logging.getLogger(__name__)


def pending_ttl() -> dt.timedelta:
    """How long a self-registration may wait for its validation
    (``PENDING_REGISTRATION_DAYS``, default 14)."""
    raw = os.environ.get("PENDING_REGISTRATION_DAYS", "")
    try:
        days = float(raw) if raw else rules.PENDING_REGISTRATION_DAYS
    except ValueError:
        days = rules.PENDING_REGISTRATION_DAYS
    return dt.timedelta(days=max(days, 0.0))


def _sirene_lookup(siret: str, sirene):
    """The registry's establishment, or ``RegistryUnavailable`` (degraded mode).
    Raises registration.siret_unknown when the registry has no such SIRET."""
    try:
        found = sirene.lookup(siret)
    except RegistryUnavailable:
        return RegistryUnavailable
    if found is None:
        raise problems.error(
            "registration.siret_unknown",
            fields={"siret": ["Ce SIRET est introuvable dans la base SIRENE de l'Insee."]},
        )
    return found


def _apply_sirene(org: Organisation, found, now: dt.datetime) -> None:
    """Fills name and address; degraded mode when the registry was down."""
    if found is RegistryUnavailable:
        org.sirene_status = "pending"
        return
    org.sirene_checked_at = now
    org.name, org.address = found.name, found.address
    org.sirene_status = "ok" if found.active else "closed"


def _clean_attachments(attachments) -> list[dict]:
    if attachments is None:
        return []
    if not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS:
        raise problems.error(
            "invalid_input", fields={"attachments": [f"{MAX_ATTACHMENTS} pièces jointes au plus."]}
        )
    cleaned = []
    for item in attachments:
        if (
            not isinstance(item, dict)
            or item.get("kind") not in ATTACHMENT_KINDS
            or not isinstance(item.get("file_id"), str)
        ):
            raise problems.error(
                "invalid_input", fields={"attachments": ["Pièce jointe mal formée."]}
            )
        cleaned.append(
            {
                "file_id": item["file_id"],
                "kind": item["kind"],
                "name": str(item.get("name") or "document")[:255],
            }
        )
    return cleaned


def _parse(data: dict) -> rules.Registration:
    reg, errors = rules.parse_registration(data)
    if errors:
        raise problems.error("registration.invalid", fields=errors)
    return reg


IN_FLIGHT = dt.timedelta(minutes=5)


def _check_registration_limits(session, reg: rules.Registration, now: dt.datetime) -> None:
    """At most a few registrations per address and pending per organisation.
    The same work and answer whether or not the address has an account."""
    window = dt.timedelta(hours=rules.REGISTRATION_WINDOW_HOURS)
    count, oldest = repo.registration_attempts_since(session, reg.email, now - window)
    if count >= rules.MAX_REGISTRATIONS_PER_EMAIL:
        retry = int(((oldest or now) + window - now).total_seconds()) + 1
        raise problems.error("registration.too_many_attempts", retry_after=max(1, retry))
    org = repo.org_by_siret(session, reg.siret)
    # the same address again is not one more registration (a client that
    # retries after a lost answer gets the same answer, nothing is created)
    pending = repo.pending_count(session, org.id, reg.email) if org is not None else 0
    # answered registrations whose account is not made yet count too (for a
    # few minutes at most, should their deferred work have failed)
    pending += repo.registrations_in_flight(session, reg.siret, now - IN_FLIGHT, reg.email)
    if pending >= rules.MAX_PENDING_PER_ORG:
        raise problems.error("registration.too_many_pending")


def check_registration(data: dict, session=None, now: dt.datetime | None = None) -> dict:
    """Checks the form without saving anything (the gateway calls it before
    uploading attachments): its fields and, given the session, the limits."""
    reg = _parse(data)
    if session is not None:
        read_only(session)
        _check_registration_limits(session, reg, now or utcnow())
    return {"status": "ok"}


def register(
    session, data: dict, attachments, sirene, now: dt.datetime | None = None, defer: Defer = None
) -> dict:
    """« S'inscrire »: the same answer, in the same time, whether or not the
    address is known. Everything that depends on the address (hashing the
    password, the duplicate check, the account, its e-mail) is ``defer``red
    until the answer is sent; what is checked before (the form, the limits,
    the SIRET in SIRENE) depends on the form only.

    A pending self-registration does not take a quota slot: the quota is
    enforced when it is validated (validate_user)."""
    now = now or utcnow()
    reg = _parse(data)
    files = _clean_attachments(attachments)
    _check_registration_limits(session, reg, now)
    org = repo.org_by_siret(session, reg.siret)
    found = _sirene_lookup(reg.siret, sirene) if org is None else None
    attempt = RegistrationAttempt(id=new_id(), email=reg.email, siret=reg.siret, at=now)
    session.add(attempt)
    session.commit()
    attempt_id = attempt.id
    _run(defer, session, lambda s: finish_registration(s, reg, files, found, now, attempt_id))
    return dict(REGISTERED)


def finish_registration(
    session, reg, files, found, now: dt.datetime, attempt_id: str | None = None
) -> None:
    """The account of a registration whose answer is already given (the
    attempt is marked finished in the same transaction)."""
    try:
        _finish_registration(session, reg, files, found, now, attempt_id)
    finally:
        if attempt_id is not None:  # whatever happened: no longer in flight
            session.rollback()
            row = repo.registration_attempt(session, attempt_id)
            if row is not None and row.finished_at is None:
                row.finished_at = now
                session.commit()


def _finish_registration(session, reg, files, found, now, attempt_id) -> None:
    # Concurrent registrations for one SIRET each find no organisation and
    # insert one: all but the first fail on the unique SIRET (at the flush, or
    # at the commit). Run again, they find it and join it; a second failure is
    # the same address registered concurrently: nothing more to do.
    password_hash = security.hash_password(reg.password)
    for attempt in (1, 2):
        try:
            _register_once(session, reg, files, password_hash, found, now, attempt_id)
            return
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                return


def _register_once(session, reg, files, password_hash, found, now, attempt_id) -> None:
    if attempt_id is not None:
        attempt = repo.registration_attempt(session, attempt_id)
        if attempt is not None:
            attempt.finished_at = now  # committed with the account (or its absence)
    if repo.user_by_email(session, reg.email) is not None:
        # no account enumeration: same answer, nothing created
        audit(session, "registration_duplicate_email", detail_email=reg.email)
        session.commit()
        return

    org = repo.org_by_siret(session, reg.siret)
    joining = org is not None and org.status == "validated"
    if org is None:
        org = Organisation(
            id=new_id(),
            account_type=reg.account_type,
            siret=reg.siret,
            nda=reg.nda,
            uai=reg.uai,
            apprentice_count=reg.apprentice_count,
            status="pending",
            created_at=now,
        )
        _apply_sirene(org, found if found is not None else RegistryUnavailable, now)
        session.add(org)
    elif org.status == "rejected":
        org.status = "pending"
        org.account_type, org.nda, org.uai = reg.account_type, reg.nda, reg.uai
        org.apprentice_count = reg.apprentice_count

    user = User(
        id=new_id(),
        org_id=org.id,
        email=reg.email,
        last_name=reg.last_name,
        first_name=reg.first_name,
        phone=reg.phone,
        role="user",
        password_hash=password_hash,
        created_at=now,
    )
    session.add(user)
    session.flush()  # no ORM relationships: insert parents before attachments
    for item in files:
        session.add(Attachment(org_id=org.id, user_id=user.id, **item))
    token = issue_token(session, user, "confirm", now)
    audit(
        session,
        "registered",
        org_id=org.id,
        subject=user.id,
        actor=user.id,
        joining_existing=joining,
        sirene_status=org.sirene_status,
    )
    emit(
        session,
        Outbox,
        events.USER_REGISTERED,
        dict(
            person_payload(user),
            confirm_token=token,
            self_registered=True,
            for_existing_org=joining,
        ),
    )
    session.commit()  # IntegrityError: see finish_registration()


def purge_expired_registrations(
    session, delete_file: Callable[[str], None], now: dt.datetime | None = None, limit: int = 50
) -> int:
    """Self-registrations past ``pending_ttl()`` go, with their documents
    (``delete_file(file_id)``, idempotent, called before the rows go: a file
    that could not be deleted keeps its registration for the next round), their
    links and, for an organisation nobody else joined, the organisation.
    Safe with several replicas: rows are taken with SKIP LOCKED (PostgreSQL).
    Returns how many registrations were purged."""
    now = now or utcnow()
    repo.forget_registration_attempts(
        session, now - dt.timedelta(hours=rules.REGISTRATION_WINDOW_HOURS)
    )
    purged = 0
    for user in repo.expired_registrations(session, now - pending_ttl(), limit=limit):
        attachments = repo.attachments_of(session, user.id)
        try:
            for attachment in attachments:
                delete_file(attachment.file_id)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.info("expired registration kept: a document could not be deleted (%s)", exc)
            continue
        org_id = user.org_id
        for attachment in attachments:
            session.delete(attachment)
        repo.delete_links(session, user.id)
        session.delete(user)
        session.flush()
        org = repo.organisation(session, org_id)
        if org is not None and org.status != "validated" and not repo.live_users(session, org_id):
            if not repo.org_dependants(session, org_id):
                repo.delete_org_attachments(session, org_id)
                session.delete(org)
        audit(
            session,
            "registration_expired",
            org_id=org_id,
            subject=user.id,
            documents=len(attachments),
        )
        purged += 1
    session.commit()
    return purged


def confirm_email(session, token: str, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    user = consume_token(session, token, "confirm", now)
    user.email_confirmed_at = user.email_confirmed_at or now
    org = repo.organisation(session, user.org_id)
    manager_emails = (
        [m.email for m in repo.managers(session, org.id)] if org.status == "validated" else []
    )
    audit(session, "email_confirmed", org_id=org.id, subject=user.id, actor=user.id)
    emit(
        session,
        Outbox,
        events.EMAIL_CONFIRMED,
        dict(person_payload(user), manager_emails=manager_emails),
    )
    session.commit()
    if user.validated_at:
        return {"status": "active"}
    return {
        "status": "awaiting_validation",
        "validator": "manager" if manager_emails else "agency",
        "message": "L'activation de votre compte a bien été effectuée. Vous serez "
        "informé après validation de votre compte par "
        + ("votre gestionnaire de compte." if manager_emails else "France compétences."),
    }


# the SIRENE statuses that need the agency's confirmation: their codes
SIRENE_CONFIRMATION = {
    "closed": "validation.sirene_closed",
    "not_found": "validation.sirene_unknown",
}


def _sirene_override(org: Organisation, confirmation) -> str | None:
    """The agency's reason for validating an organisation SIRENE does not
    vouch for (closed or unknown); None when the registry has no objection.
    Errors: validation.sirene_closed / validation.sirene_unknown (409) without
    a confirmation; invalid_input (reason) with an empty or too long one."""
    if org.sirene_status not in SIRENE_CONFIRMATION:
        return None
    code = SIRENE_CONFIRMATION[org.sirene_status]
    if not isinstance(confirmation, dict) or confirmation.get("confirm") is not True:
        raise problems.error(code, sirene_status=org.sirene_status)
    reason = confirmation.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > REASON_MAX:
        raise problems.error(
            "validation.reason_required",
            fields={
                "reason": [
                    "Indiquez pourquoi vous validez malgré l'état SIRENE "
                    f"({REASON_MAX} caractères au plus)."
                ]
            },
        )
    return reason


def validate_user(
    session, caller: Caller, user_id: str, now: dt.datetime | None = None, confirmation=None
) -> dict:
    """Agency: first accounts of an organisation; managers: later ones.
    ``confirmation`` {confirm: true, reason}: required to validate an
    organisation whose SIRET is closed or unknown to SIRENE (the reason goes
    to the audit trail). The quota applies here, not at registration."""
    now = now or utcnow()
    user, org, actor = managed_user(session, caller, user_id)
    if org.status != "validated" and actor.role != AGENCY_ADMIN:
        raise problems.error("identity.user_not_found")
    state = user_state(user)
    if state == "validated":
        return user_row(user, org)
    if state == "not_activated":
        raise problems.error("validation.email_not_confirmed")
    if state in ("rejected", "deactivated"):
        raise problems.error("validation.closed")
    if org.sirene_status == "pending":
        raise problems.error("validation.sirene_pending")
    override = _sirene_override(org, confirmation) if org.status != "validated" else None
    role = "manager" if not repo.managers(session, org.id) else user.role
    _check_quota(session, org, role)
    if org.status != "validated":
        org.status = "validated"
        detail = {}
        if override is not None:
            detail = {"sirene_status": org.sirene_status, "sirene_override_reason": override}
        audit(session, "organisation_validated", org_id=org.id, actor=actor.id, **detail)
        emit(
            session,
            Outbox,
            events.ORGANISATION_VALIDATED,
            {
                "org_id": org.id,
                "siret": org.siret,
                "uai": org.uai,
                "nda": org.nda,
                "account_type": org.account_type,
                "name": org.name,
                "parent_id": org.parent_id,
                "validated_at": now.isoformat(),
            },
        )
    user.role = role  # the first validated user manages the account
    user.validated_at = now
    audit(session, "validated", org_id=org.id, subject=user.id, actor=actor.id, role=user.role)
    emit(session, Outbox, events.USER_VALIDATED, dict(person_payload(user), role=user.role))
    session.commit()
    return user_row(user, org)


def reject_user(
    session, caller: Caller, user_id: str, reason: str, now: dt.datetime | None = None
) -> dict:
    now = now or utcnow()
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > REASON_MAX:
        raise problems.error(
            "invalid_input",
            fields={"reason": [f"Indiquez le motif du refus ({REASON_MAX} caractères au plus)."]},
        )
    user, org, actor = managed_user(session, caller, user_id)
    if org.status != "validated" and actor.role != AGENCY_ADMIN:
        raise problems.error("identity.user_not_found")
    if user_state(user) != "awaiting_validation":
        raise problems.error("validation.not_pending")
    user.rejected_at, user.reject_reason = now, reason
    if org.status == "pending" and not repo.live_users(session, org.id):
        org.status = "rejected"
    audit(session, "rejected", org_id=org.id, subject=user.id, actor=actor.id, reason=reason)
    emit(session, Outbox, events.USER_REJECTED, dict(person_payload(user), reason=reason))
    session.commit()
    return user_row(user, org)


def list_registrations(session, caller: Caller) -> list[dict]:
    """The agency's queue: confirmed accounts of organisations to validate."""
    acting_agent(session, caller)
    rows = []
    for user, org in repo.awaiting_agency(session):
        row = user_row(user, org)
        row["organisation"] = org_dict(org)
        row["attachments"] = [
            {"file_id": a.file_id, "kind": a.kind, "name": a.name}
            for a in repo.org_attachments(session, org.id)
        ]
        row["has_habilitation"] = any(a["kind"] == "habilitation" for a in row["attachments"])
        rows.append(row)
    return rows

"""Identity use cases: one function per command or query.

Each takes the SQLAlchemy session and its collaborators (clock, registry) as
parameters, re-checks the caller's rights against the database (the token's
roles may be stale), commits once, and writes its events to the outbox in the
same transaction. Errors are kit.errors classes with stable codes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from identity import repository as repo
from identity import security, totp
from identity.domain import registration as rules
from identity.models import (
    Attachment,
    AuditChain,
    AuditEntry,
    Organisation,
    Outbox,
    RegistrationAttempt,
    Session,
    SignInAttempt,
    Token,
    User,
)
from identity.sirene import RegistryUnavailable
from kit import audit as kit_audit
from kit import events
from kit.context import AGENCY_ADMIN, Caller
from kit.db import new_id, read_only, utcnow
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthenticated
from kit.outbox import emit

TOKEN_TTL = {
    "confirm": dt.timedelta(hours=48),
    "invite": dt.timedelta(days=7),
    "reset": dt.timedelta(hours=1),
}
SESSION_TTL = dt.timedelta(hours=12)
FAILURE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 50
ATTACHMENT_KINDS = ("habilitation", "other")
MAX_ATTACHMENTS = 10
REASON_MAX = 1000

PROFILE_LABELS = {
    "manager": "Gestionnaire de comptes / Utilisateur CFA/OFA",
    "user": "Utilisateur CFA/OFA",
    "agency_admin": "Agent France compétences",
}
STATE_LABELS = {
    "not_activated": ("Compte non activé", "rouge"),
    "awaiting_validation": ("Compte activé, en attente de validation", "bleu"),
    "validated": ("Compte activé et validé", "vert"),
    "rejected": ("Inscription refusée", "gris"),
    "deactivated": ("Compte désactivé", "gris"),
}
REGISTERED = {
    "status": "confirmation_sent",
    "message": "Un courriel vous a été envoyé pour confirmer votre adresse.",
}

RESET_SENT = {
    "status": "reset_sent",
    "message": "Si un compte correspond à cette adresse, un courriel vient d'être envoyé.",
}
MANAGER_ONLY = (
    "forbidden.manager_only",
    "Réservé au gestionnaire de compte de votre organisme.",
)

log = logging.getLogger(__name__)

# ``defer(job)``: runs ``job(session)`` once the RPC's reply is sent, with a
# session of its own (identity.service.AfterReply); None runs it at once
Defer = Callable[[Callable], None] | None


def pending_ttl() -> dt.timedelta:
    """How long a self-registration may wait for its validation
    (``PENDING_REGISTRATION_DAYS``, default 14)."""
    raw = os.environ.get("PENDING_REGISTRATION_DAYS", "")
    try:
        days = float(raw) if raw else rules.PENDING_REGISTRATION_DAYS
    except ValueError:
        days = rules.PENDING_REGISTRATION_DAYS
    return dt.timedelta(days=max(days, 0.0))


def _run(defer: Defer, session, job: Callable) -> None:
    if defer is None:
        job(session)
    else:
        defer(job)


ORG_NOT_FOUND = ("identity.organisation_not_found", "Organisme introuvable.")
USER_NOT_FOUND = ("identity.user_not_found", "Utilisateur introuvable.")


# ---------------------------------------------------------------- helpers


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _is_id(value) -> bool:
    """Our ids are 32 hex characters: anything else is not found, without a query."""
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


def user_state(user: User) -> str:
    if user.deactivated_at:
        return "deactivated"
    if user.rejected_at:
        return "rejected"
    if not user.email_confirmed_at:
        return "not_activated"
    if not user.validated_at:
        return "awaiting_validation"
    return "validated"


def audit(session, action: str, *, org_id=None, subject=None, actor=None, **detail) -> None:
    """One entry of the tamper-evident audit trail (kit.audit: chained to the
    previous one; the chain's head stays locked until the caller commits)."""
    kit_audit.append(
        session,
        AuditEntry,
        AuditChain,
        org_id=org_id,
        subject_user_id=subject,
        actor_id=actor,
        action=action,
        detail=detail,
    )


def issue_token(session, user: User, purpose: str, now: dt.datetime) -> str:
    for old in repo.open_tokens(session, user.id, purpose):
        old.used_at = now  # a new link supersedes the previous one
    token = security.new_token()
    session.add(
        Token(
            token_hash=security.token_hash(token),
            user_id=user.id,
            purpose=purpose,
            expires_at=now + TOKEN_TTL[purpose],
        )
    )
    return token


def consume_token(session, token: str, purpose: str, now: dt.datetime) -> User:
    if not isinstance(token, str) or not 10 <= len(token) <= 200:
        raise InvalidInput("token.invalid", "Ce lien n'est pas valide.")
    row = repo.token(session, security.token_hash(token))
    if row is None or row.purpose != purpose:
        raise InvalidInput("token.invalid", "Ce lien n'est pas valide.")
    if row.used_at is not None:
        raise InvalidInput("token.used", "Ce lien a déjà été utilisé.")
    if row.expires_at <= now:
        raise InvalidInput("token.expired", "Ce lien a expiré : demandez-en un nouveau.")
    row.used_at = now
    return session.get(User, row.user_id)


def revoke_sessions(session, user_id: str, now: dt.datetime) -> None:
    for live in repo.live_sessions(session, user_id):
        live.revoked_at = now


def person_payload(user: User) -> dict:
    return {
        "user_id": user.id,
        "org_id": user.org_id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }


def acting_user(session, caller: Caller) -> User:
    """The caller as the database knows them now."""
    caller.require_authenticated()
    user = session.get(User, caller.user_id)
    if user is None or user_state(user) != "validated":
        raise Unauthenticated("auth.session_invalid", "Votre session n'est plus valide.")
    return user


def acting_agent(session, caller: Caller) -> User:
    actor = acting_user(session, caller)
    if actor.role != AGENCY_ADMIN:
        raise Forbidden("forbidden.agency_only", "Réservé aux agents de France compétences.")
    return actor


def managed_org(session, caller: Caller, org_id: str) -> tuple[Organisation, User]:
    """An organisation the caller may administer: agency staff, or a manager
    of the organisation or of its parent (an OG). Others get 404."""
    actor = acting_user(session, caller)
    org = session.get(Organisation, org_id) if _is_id(org_id) else None
    if org is None:
        raise NotFound(*ORG_NOT_FOUND)
    if actor.role == AGENCY_ADMIN:
        return org, actor
    if actor.role == "manager" and actor.org_id in (org.id, org.parent_id):
        return org, actor
    if actor.role == "user" and actor.org_id in (org.id, org.parent_id):
        # their own organisation exists for them: say why, not « introuvable »
        raise Forbidden(*MANAGER_ONLY)
    raise NotFound(*ORG_NOT_FOUND)


def managed_user(session, caller: Caller, user_id: str) -> tuple[User, Organisation, User]:
    user = session.get(User, user_id) if _is_id(user_id) else None
    if user is None or user.org_id is None:
        raise NotFound(*USER_NOT_FOUND)
    try:
        org, actor = managed_org(session, caller, user.org_id)
    except NotFound:
        raise NotFound(*USER_NOT_FOUND) from None
    return user, org, actor


def user_row(user: User, org: Organisation | None) -> dict:
    state = user_state(user)
    label, colour = STATE_LABELS[state]
    return {
        "id": user.id,
        "display_name": f"{user.last_name.upper()} {user.first_name}",
        "last_name": user.last_name,
        "first_name": user.first_name,
        "email": user.email,
        "phone": user.phone,
        "org_id": user.org_id,
        "org_name": org.name if org else None,
        "firm_name": user.firm_name,
        "organisation_or_firm": user.firm_name or (org.name if org else None),
        "role": user.role,
        "profile": PROFILE_LABELS.get(user.role, user.role),
        "state": state,
        "state_label": label,
        "state_colour": colour,
        "created_at": iso(user.created_at),
        "validated_at": iso(user.validated_at),
    }


def org_dict(org: Organisation) -> dict:
    return {
        "id": org.id,
        "account_type": org.account_type,
        "siret": org.siret,
        "nda": org.nda,
        "uai": org.uai,
        "apprentice_count": org.apprentice_count,
        "name": org.name,
        "address": org.address,
        "sirene_status": org.sirene_status,
        "parent_id": org.parent_id,
        "status": org.status,
        "created_at": iso(org.created_at),
    }


# ---------------------------------------------------------------- registration


def _sirene_lookup(siret: str, sirene):
    """The registry's establishment, or ``RegistryUnavailable`` (degraded mode).
    Raises registration.siret_unknown when the registry has no such SIRET."""
    try:
        found = sirene.lookup(siret)
    except RegistryUnavailable:
        return RegistryUnavailable
    if found is None:
        raise InvalidInput.fields(
            {"siret": ["Ce SIRET est introuvable dans la base SIRENE de l'Insee."]},
            "registration.siret_unknown",
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
        raise InvalidInput.fields({"attachments": [f"{MAX_ATTACHMENTS} pièces jointes au plus."]})
    cleaned = []
    for item in attachments:
        if (
            not isinstance(item, dict)
            or item.get("kind") not in ATTACHMENT_KINDS
            or not isinstance(item.get("file_id"), str)
        ):
            raise InvalidInput.fields({"attachments": ["Pièce jointe mal formée."]})
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
        raise InvalidInput.fields(
            errors, "registration.invalid", "Le formulaire d'inscription comporte des erreurs."
        )
    return reg


IN_FLIGHT = dt.timedelta(minutes=5)


def _check_registration_limits(session, reg: rules.Registration, now: dt.datetime) -> None:
    """At most a few registrations per address and pending per organisation.
    The same work and answer whether or not the address has an account."""
    window = dt.timedelta(hours=rules.REGISTRATION_WINDOW_HOURS)
    count, oldest = repo.registration_attempts_since(session, reg.email, now - window)
    if count >= rules.MAX_REGISTRATIONS_PER_EMAIL:
        retry = int(((oldest or now) + window - now).total_seconds()) + 1
        raise TooManyRequests(
            "registration.too_many_attempts",
            f"Cette adresse e-mail a déjà servi à {rules.MAX_REGISTRATIONS_PER_EMAIL} "
            "demandes d'inscription en 24 heures : réessayez plus tard.",
            {"retry_after": max(1, retry)},
        )
    org = repo.org_by_siret(session, reg.siret)
    # the same address again is not one more registration (a client that
    # retries after a lost answer gets the same answer, nothing is created)
    pending = repo.pending_count(session, org.id, reg.email) if org is not None else 0
    # answered registrations whose account is not made yet count too (for a
    # few minutes at most, should their deferred work have failed)
    pending += repo.registrations_in_flight(session, reg.siret, now - IN_FLIGHT, reg.email)
    if pending >= rules.MAX_PENDING_PER_ORG:
        raise Conflict(
            "registration.too_many_pending",
            f"Cet organisme a déjà {rules.MAX_PENDING_PER_ORG} inscriptions en attente de "
            "validation : adressez-vous à son gestionnaire de compte, ou réessayez quand "
            "elles auront été traitées.",
        )


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
            row = session.get(RegistrationAttempt, attempt_id)
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
        attempt = session.get(RegistrationAttempt, attempt_id)
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
        session.query(Token).filter(Token.user_id == user.id).delete(synchronize_session=False)
        session.query(Session).filter(Session.user_id == user.id).delete(synchronize_session=False)
        session.delete(user)
        session.flush()
        org = session.get(Organisation, org_id)
        if org is not None and org.status != "validated" and not repo.live_users(session, org_id):
            others = session.scalar(
                select(func.count()).where(User.org_id == org_id)
            ) + session.scalar(select(func.count()).where(Organisation.parent_id == org_id))
            if not others:
                session.query(Attachment).filter(Attachment.org_id == org_id).delete(
                    synchronize_session=False
                )
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
    org = session.get(Organisation, user.org_id)
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


SIRENE_CONFIRMATION = {
    "closed": (
        "validation.sirene_closed",
        "Cet établissement est fermé selon la base SIRENE de l'Insee : confirmez "
        "explicitement la validation en indiquant le motif.",
    ),
    "not_found": (
        "validation.sirene_unknown",
        "Ce SIRET est inconnu de la base SIRENE de l'Insee : confirmez explicitement "
        "la validation en indiquant le motif.",
    ),
}


def _sirene_override(org: Organisation, confirmation) -> str | None:
    """The agency's reason for validating an organisation SIRENE does not
    vouch for (closed or unknown); None when the registry has no objection.
    Errors: validation.sirene_closed / validation.sirene_unknown (409) without
    a confirmation; invalid_input (reason) with an empty or too long one."""
    if org.sirene_status not in SIRENE_CONFIRMATION:
        return None
    code, message = SIRENE_CONFIRMATION[org.sirene_status]
    if not isinstance(confirmation, dict) or confirmation.get("confirm") is not True:
        raise Conflict(code, message, {"sirene_status": org.sirene_status})
    reason = confirmation.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > REASON_MAX:
        raise InvalidInput.fields(
            {
                "reason": [
                    "Indiquez pourquoi vous validez malgré l'état SIRENE "
                    f"({REASON_MAX} caractères au plus)."
                ]
            },
            "validation.reason_required",
            "Le motif de la validation est obligatoire.",
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
        raise NotFound(*USER_NOT_FOUND)
    state = user_state(user)
    if state == "validated":
        return user_row(user, org)
    if state == "not_activated":
        raise Conflict(
            "validation.email_not_confirmed",
            "L'utilisateur n'a pas encore confirmé son adresse e-mail.",
        )
    if state in ("rejected", "deactivated"):
        raise Conflict("validation.closed", "Ce compte a été refusé ou désactivé.")
    if org.sirene_status == "pending":
        raise Conflict(
            "validation.sirene_pending",
            "Les données SIRENE de l'organisme n'ont pas encore pu être "
            "récupérées : réessayez quand le registre répondra.",
        )
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
        raise InvalidInput.fields(
            {"reason": [f"Indiquez le motif du refus ({REASON_MAX} caractères au plus)."]}
        )
    user, org, actor = managed_user(session, caller, user_id)
    if org.status != "validated" and actor.role != AGENCY_ADMIN:
        raise NotFound(*USER_NOT_FOUND)
    if user_state(user) != "awaiting_validation":
        raise Conflict(
            "validation.not_pending",
            "Seule une inscription en attente de validation peut être refusée.",
        )
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
            for a in session.query(Attachment).filter(Attachment.org_id == org.id)
        ]
        row["has_habilitation"] = any(a["kind"] == "habilitation" for a in row["attachments"])
        rows.append(row)
    return rows


# ---------------------------------------------------------------- user management


def list_users(session, caller: Caller, org_id: str | None = None) -> list[dict]:
    """« Gestion des utilisateurs »: the caller's organisation and those it manages."""
    actor = acting_user(session, caller)
    if org_id is None:
        if actor.org_id is None:
            raise InvalidInput.fields({"org_id": ["Précisez l'organisme."]})
        org_id = actor.org_id
    org, actor = managed_org(session, caller, org_id)
    org_ids = [org.id] + repo.child_org_ids(session, org.id)
    return [user_row(u, o) for u, o in repo.users_of(session, org_ids)]


def _check_quota(session, org: Organisation, role: str, exclude: User | None = None) -> None:
    """domain.registration.quota_problem over the accounts that take a slot
    (``exclude``: the account being changed, already counted)."""
    active = [
        u for u in repo.active_users(session, org.id) if exclude is None or u.id != exclude.id
    ]
    problem = rules.quota_problem(len(active), sum(1 for u in active if u.role == "manager"), role)
    if problem:
        raise Conflict(problem, rules.QUOTA_MESSAGES[problem])


def _role(data: dict, default: str | None = "user") -> str | None:
    role = data.get("role", default)
    if role is not None and role not in rules.ROLES:
        raise InvalidInput.fields({"role": ["Profil : « manager » ou « user »."]})
    return role


def _firm(data: dict) -> str | None:
    firm = data.get("firm_name")
    if firm is None or firm == "":
        return None
    if not isinstance(firm, str) or len(firm.strip()) > 200:
        raise InvalidInput.fields({"firm_name": ["Cabinet : 200 caractères au plus."]})
    return firm.strip() or None


def create_user(
    session, caller: Caller, org_id: str, data: dict, now: dt.datetime | None = None
) -> dict:
    """A manager creates an account; the user gets a link to confirm and choose a password."""
    now = now or utcnow()
    org, actor = managed_org(session, caller, org_id)
    if not isinstance(data, dict):
        raise InvalidInput.fields({"_": ["Données mal formées."]})
    errors: dict[str, list[str]] = {}
    person = rules.check_person(errors, data)
    if errors:
        raise InvalidInput.fields(errors)
    role, firm = _role(data), _firm(data)
    if org.status != "validated":
        raise Conflict(
            "organisation.not_validated",
            "L'organisme n'est pas encore validé par France compétences.",
        )
    _check_quota(session, org, role)
    if repo.user_by_email(session, person["email"]) is not None:
        raise Conflict(
            "user.email_taken",
            "Cette adresse e-mail est déjà utilisée : une adresse = un utilisateur.",
        )
    user = User(
        id=new_id(),
        org_id=org.id,
        role=role,
        firm_name=firm,
        created_at=now,
        validated_at=now,
        **person,
    )
    session.add(user)
    session.flush()
    token = issue_token(session, user, "invite", now)
    audit(session, "created", org_id=org.id, subject=user.id, actor=actor.id, role=role)
    emit(
        session,
        Outbox,
        events.USER_INVITED,
        dict(
            person_payload(user),
            invite_token=token,
            org_name=org.name,
            invited_by=f"{actor.first_name} {actor.last_name}",
        ),
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            "user.email_taken",
            "Cette adresse e-mail est déjà utilisée : une adresse = un utilisateur.",
        ) from None
    return user_row(user, org)


def update_user(
    session, caller: Caller, user_id: str, data: dict, now: dt.datetime | None = None
) -> dict:
    """« Modifier »: names, phone, firm and profile."""
    now = now or utcnow()
    user, org, actor = managed_user(session, caller, user_id)
    if not isinstance(data, dict):
        raise InvalidInput.fields({"_": ["Données mal formées."]})
    if user_state(user) in ("rejected", "deactivated"):
        raise Conflict("user.closed", "Ce compte a été refusé ou désactivé.")
    errors: dict[str, list[str]] = {}
    merged = {
        "last_name": user.last_name,
        "first_name": user.first_name,
        "phone": user.phone,
        "email": user.email,
    }
    merged.update({k: data[k] for k in ("last_name", "first_name", "phone") if k in data})
    person = rules.check_person(errors, merged)
    if errors:
        raise InvalidInput.fields(errors)
    role = _role(data, None)
    changes = {}
    for key in ("last_name", "first_name", "phone"):
        if getattr(user, key) != person[key]:
            changes[key] = person[key]
            setattr(user, key, person[key])
    if "firm_name" in data:
        user.firm_name = _firm(data)
    if role is not None and role != user.role:
        if role == "manager":
            _check_quota(session, org, "manager", exclude=user)
        elif len(repo.managers(session, org.id)) <= 1 and user.validated_at:
            raise Conflict(
                "quota.last_manager", "L'organisme doit garder au moins un gestionnaire de compte."
            )
        audit(
            session,
            "role_changed",
            org_id=org.id,
            subject=user.id,
            actor=actor.id,
            before=user.role,
            after=role,
        )
        user.role = role
        revoke_sessions(session, user.id, now)  # roles live in the session token
    if changes:
        audit(
            session,
            "modified",
            org_id=org.id,
            subject=user.id,
            actor=actor.id,
            fields=sorted(changes),
        )
    session.commit()
    return user_row(user, org)


def confirm_user_email(
    session, caller: Caller, user_id: str, now: dt.datetime | None = None
) -> dict:
    """A manager confirms an address on the user's behalf."""
    now = now or utcnow()
    user, org, actor = managed_user(session, caller, user_id)
    if user_state(user) != "not_activated":
        return user_row(user, org)
    user.email_confirmed_at = now
    audit(
        session, "email_confirmed", org_id=org.id, subject=user.id, actor=actor.id, on_behalf=True
    )
    session.commit()
    return user_row(user, org)


def deactivate_user(session, caller: Caller, user_id: str, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    user, org, actor = managed_user(session, caller, user_id)
    if user.deactivated_at:
        return user_row(user, org)
    if user.role == "manager" and user.validated_at and len(repo.managers(session, org.id)) <= 1:
        raise Conflict(
            "quota.last_manager", "L'organisme doit garder au moins un gestionnaire de compte."
        )
    user.deactivated_at = now
    revoke_sessions(session, user.id, now)
    audit(session, "deactivated", org_id=org.id, subject=user.id, actor=actor.id)
    emit(session, Outbox, events.USER_DEACTIVATED, {"user_id": user.id, "org_id": org.id})
    session.commit()
    return user_row(user, org)


def accept_invitation(
    session, token: str, password, password_confirm, now: dt.datetime | None = None
) -> dict:
    now = now or utcnow()
    errors: dict[str, list[str]] = {}
    rules.check_password(errors, password, password_confirm)
    if errors:
        raise InvalidInput.fields(errors)
    user = consume_token(session, token, "invite", now)
    if user_state(user) in ("rejected", "deactivated"):
        raise InvalidInput("token.invalid", "Ce lien n'est pas valide.")
    user.password_hash = security.hash_password(password)
    user.email_confirmed_at = user.email_confirmed_at or now
    audit(session, "activated", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return {"status": "active", "email": user.email}


# ---------------------------------------------------------------- sign-in and sessions


def authenticate(
    session, email, password, ip: str = "unknown", now: dt.datetime | None = None
) -> dict:
    """Same answer for an unknown address and a wrong password; rate-limited
    by account and by address."""
    now = now or utcnow()
    email = rules.normalise_email(email if isinstance(email, str) else "")
    password = password if isinstance(password, str) else ""
    ip = (ip or "unknown")[:64]
    since = now - FAILURE_WINDOW
    for kwargs, limit in (
        ({"email": email}, MAX_FAILURES_PER_ACCOUNT),
        ({"ip": ip}, MAX_FAILURES_PER_IP),
    ):
        count, oldest = repo.failures_since(session, since=since, **kwargs)
        if count >= limit:
            retry = int(((oldest or now) + FAILURE_WINDOW - now).total_seconds()) + 1
            raise TooManyRequests(
                "auth.too_many_attempts",
                "Trop de tentatives de connexion : réessayez dans "
                f"{max(1, retry // 60)} minute(s).",
                {"retry_after": max(1, retry)},
            )
    user = repo.user_by_email(session, email) if email else None
    if not security.verify_password(user.password_hash if user else None, password[:1024]):
        session.add(SignInAttempt(email=email[:254], ip=ip, at=now))
        session.commit()
        raise Unauthenticated(
            "auth.invalid_credentials", "Adresse e-mail ou mot de passe incorrect."
        )
    state = user_state(user)
    if state != "validated":
        messages = {
            "not_activated": (
                "auth.email_not_confirmed",
                "Confirmez d'abord votre adresse e-mail (lien reçu par courriel).",
            ),
            "awaiting_validation": (
                "auth.awaiting_validation",
                "Votre compte est en attente de validation.",
            ),
            "rejected": ("auth.account_disabled", "Ce compte n'est pas actif."),
            "deactivated": ("auth.account_disabled", "Ce compte n'est pas actif."),
        }
        raise Forbidden(*messages[state])
    repo.clear_failures(session, email)
    row = open_session(session, user, now)
    session.commit()
    return signed_in(session, user, row)


SIGN_IN_STATUS = {
    "ok": "signed_in",
    "pending": "totp_required",
    "enrol": "totp_enrolment_required",
}


def open_session(session, user: User, now: dt.datetime) -> Session:
    """A new session; its second factor (identity.totp) decides its state."""
    row = Session(
        id=secrets.token_urlsafe(24),
        user_id=user.id,
        created_at=now,
        expires_at=now + SESSION_TTL,
        mfa=totp.sign_in_state(session, user),
    )
    session.add(row)
    return row


def signed_in(session, user: User, row: Session) -> dict:
    """{status, session_id, expires_at, caller, user}: ``status`` says whether
    a TOTP code (totp_required) or an enrolment (totp_enrolment_required) is
    still needed before the session is worth anything."""
    return {
        "status": SIGN_IN_STATUS[row.mfa],
        "session_id": row.id,
        "expires_at": iso(row.expires_at),
        "caller": caller_claims(session, user, row),
        "user": profile(session, user),
    }


def caller_claims(session, user: User, row: Session | None = None) -> dict:
    managed = (
        repo.child_org_ids(session, user.org_id) if user.role == "manager" and user.org_id else []
    )
    claims = {
        "user_id": user.id,
        "org_id": user.org_id,
        "roles": [user.role],
        "managed_org_ids": managed,
        # the submitter's name and address a transmission records, carried by
        # the gateway's token so that survey.transmit needs no call to identity
        "name": f"{user.last_name.upper()} {user.first_name}",
        "email": user.email,
    }
    if row is not None:
        claims.update(totp.claims(session, user, row))
    return claims


def end_session(session, caller: Caller, session_id: str, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    row = session.get(Session, session_id) if isinstance(session_id, str) else None
    if row is not None and row.user_id == caller.user_id and row.revoked_at is None:
        row.revoked_at = now
        session.commit()
    return {"status": "signed_out"}


REVOCATION_OVERLAP = dt.timedelta(minutes=2)  # far longer than any transaction


def revoked_sessions(session, since: str | None, now: dt.datetime | None = None) -> dict:
    """Sessions revoked since ``since`` (ISO-8601) that have not expired:
    the gateway polls this to refuse revoked tokens without an RPC per request.

    The ``now`` handed back (the gateway's next ``since``) lags by
    ``REVOCATION_OVERLAP``: ``revoked_at`` is stamped before its transaction
    commits (a password reset hashes in between), so a poll that runs in that
    gap must not move its cursor past a revocation it could not yet see.
    Ids already known come again for a while; the gateway keeps a set."""
    now = now or utcnow()
    try:
        start = dt.datetime.fromisoformat(since) if since else now - SESSION_TTL
    except (TypeError, ValueError):
        raise InvalidInput.fields({"since": ["Date ISO-8601 attendue."]}) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return {
        "now": iso(now - REVOCATION_OVERLAP),
        "revoked": repo.revoked_since(session, start, now),
    }


def request_password_reset(
    session, email, now: dt.datetime | None = None, defer: Defer = None
) -> dict:
    """Always the same answer, in the same time: the look-up and the link
    are ``defer``red until the answer is sent."""
    now = now or utcnow()
    email = rules.normalise_email(email if isinstance(email, str) else "")[: rules.EMAIL_MAX]
    if email:
        _run(defer, session, lambda s: send_password_reset(s, email, now))
    return dict(RESET_SENT)


def send_password_reset(session, email: str, now: dt.datetime) -> None:
    user = repo.user_by_email(session, email)
    if (
        user is not None
        and user_state(user) in ("validated", "awaiting_validation")
        and user.password_hash
    ):
        token = issue_token(session, user, "reset", now)
        audit(
            session, "password_reset_requested", org_id=user.org_id, subject=user.id, actor=user.id
        )
        emit(
            session,
            Outbox,
            events.PASSWORD_RESET_REQUESTED,
            dict(person_payload(user), reset_token=token),
        )
        session.commit()


def reset_password(
    session, token: str, password, password_confirm, now: dt.datetime | None = None
) -> dict:
    now = now or utcnow()
    errors: dict[str, list[str]] = {}
    rules.check_password(errors, password, password_confirm)
    if errors:
        raise InvalidInput.fields(errors)
    user = consume_token(session, token, "reset", now)
    user.password_hash = security.hash_password(password)
    revoke_sessions(session, user.id, now)
    repo.clear_failures(session, user.email)
    audit(session, "password_reset", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return {"status": "password_changed"}


def change_password(
    session, caller: Caller, current, password, password_confirm, now: dt.datetime | None = None
) -> dict:
    now = now or utcnow()
    user = acting_user(session, caller)
    if not security.verify_password(
        user.password_hash, current if isinstance(current, str) else ""
    ):
        raise InvalidInput.fields({"current_password": ["Mot de passe actuel incorrect."]})
    errors: dict[str, list[str]] = {}
    rules.check_password(errors, password, password_confirm)
    if errors:
        raise InvalidInput.fields(errors)
    user.password_hash = security.hash_password(password)
    revoke_sessions(session, user.id, now)
    audit(session, "password_changed", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return {"status": "password_changed"}


# ---------------------------------------------------------------- profile and organisations


def profile(session, user: User) -> dict:
    org = session.get(Organisation, user.org_id) if user.org_id else None
    row = user_row(user, org)
    row["organisation"] = org_dict(org) if org else None
    return row


def get_me(session, caller: Caller) -> dict:
    """One query: the user and the organisation (the gateway's hottest read)."""
    caller.require_authenticated()
    read_only(session)
    found = repo.user_with_org(session, caller.user_id)
    if found is None or user_state(found[0]) != "validated":
        raise Unauthenticated("auth.session_invalid", "Votre session n'est plus valide.")
    user, org = found
    row = user_row(user, org)
    row["organisation"] = org_with_parent(session, org) if org else None
    return row


def org_with_parent(session, org: Organisation) -> dict:
    """The organisation and, for a CFA managed by an OG, that « organisme parent »
    (public identifiers only: the survey lists show its name)."""
    data = org_dict(org)
    parent = session.get(Organisation, org.parent_id) if org.parent_id else None
    data["parent"] = org_dict(parent) if parent else None
    return data


def get_organisation(session, caller: Caller, org_id: str) -> dict:
    """Those who may administer it, and its own users (reading is no manager action)."""
    actor = acting_user(session, caller)
    if _is_id(org_id) and actor.role == "user" and actor.org_id == org_id:
        org = session.get(Organisation, org_id)
    else:
        org, _actor = managed_org(session, caller, org_id)
    return org_with_parent(session, org)


def list_organisations(
    session,
    caller: Caller,
    query: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> dict:
    acting_agent(session, caller)
    page = max(1, int(page)) if str(page).isdigit() else 1
    per_page = min(200, max(1, int(per_page))) if str(per_page).isdigit() else 50
    rows, total = repo.organisations(
        session, query=query, status=status, limit=per_page, offset=(page - 1) * per_page
    )
    return {
        "items": [org_dict(o) for o in rows],
        "total": total,
        "page": page,
        "per_page": per_page,
    }


def organisation_history(session, caller: Caller, org_id: str) -> list[dict]:
    """Who did what and when: read by the agency."""
    acting_agent(session, caller)
    if not _is_id(org_id) or session.get(Organisation, org_id) is None:
        raise NotFound(*ORG_NOT_FOUND)
    return [
        {
            "at": iso(e.at),
            "action": e.action,
            "actor_id": e.actor_id,
            "subject_user_id": e.subject_user_id,
            "detail": e.detail,
        }
        for e in repo.history(session, org_id)
    ]


def set_parent(
    session, caller: Caller, org_id: str, parent_id: str | None, now: dt.datetime | None = None
) -> dict:
    """Agency: an OG (organisme gestionnaire) manages this organisation."""
    actor = acting_agent(session, caller)
    org = session.get(Organisation, org_id) if _is_id(org_id) else None
    if org is None:
        raise NotFound(*ORG_NOT_FOUND)
    if parent_id is not None:
        parent = session.get(Organisation, parent_id) if _is_id(parent_id) else None
        if parent is None:
            raise NotFound(*ORG_NOT_FOUND)
        if parent.account_type != "OG" or parent.id == org.id or parent.parent_id == org.id:
            raise InvalidInput.fields(
                {
                    "parent_id": [
                        "L'organisme parent doit être un organisme gestionnaire (OG) distinct."
                    ]
                }
            )
    audit(
        session,
        "parent_changed",
        org_id=org.id,
        actor=actor.id,
        before=org.parent_id,
        after=parent_id,
    )
    org.parent_id = parent_id
    session.commit()
    return org_dict(org)


def refresh_sirene(
    session, sirene, org_id: str | None = None, now: dt.datetime | None = None
) -> int:
    """Degraded mode catch-up: fetches what the registry could not give at registration."""
    now = now or utcnow()
    if org_id is not None and not _is_id(org_id):
        return 0
    orgs = [session.get(Organisation, org_id)] if org_id else repo.pending_sirene(session)
    done = 0
    for org in orgs:
        if org is None or org.sirene_status != "pending":
            continue
        try:
            found = sirene.lookup(org.siret)
        except RegistryUnavailable:
            break
        org.sirene_checked_at = now
        if found is None:
            org.sirene_status = "not_found"
        else:
            org.name, org.address = found.name, found.address
            org.sirene_status = "ok" if found.active else "closed"
        audit(session, "sirene_resolved", org_id=org.id, status=org.sirene_status)
        done += 1
    session.commit()
    return done


def ensure_admin(session, email: str, password: str, now: dt.datetime | None = None) -> User:
    """Demo data and operations: the agency administrator account."""
    now = now or utcnow()
    email = rules.normalise_email(email)
    user = repo.user_by_email(session, email)
    if user is None:
        user = User(
            id=new_id(),
            org_id=None,
            email=email,
            last_name="Administrateur",
            first_name="Agence",
            role=AGENCY_ADMIN,
            created_at=now,
        )
        session.add(user)
    user.password_hash = security.hash_password(password)
    user.email_confirmed_at = user.email_confirmed_at or now
    user.validated_at = user.validated_at or now
    user.deactivated_at = None
    session.commit()
    return user

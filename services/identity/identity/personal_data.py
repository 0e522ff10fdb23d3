"""Personal data held by identity (RGPD): retention, a person's export, erasure.

Why a module of its own: these use cases cut across accounts, sessions,
second factor and the audit trail, and their rules (what is kept, for how
long, what an erasure leaves) are documented in ``docs/rgpd.md``.

Retention (``run_retention``, a periodic job of the service):

- self-registrations never validated: purged after ``PENDING_REGISTRATION_DAYS``
  (use_cases.purge_expired_registrations, with their documents);
- invitations never accepted: the invited account goes once its link has
  expired (``TOKEN_TTL["invite"]``, 7 days), which frees its quota slot;
- deactivated or refused accounts: anonymised after
  ``DEACTIVATED_ACCOUNT_MONTHS`` (default 12: one survey campaign cycle, so
  the organisation and the agency can still tell who transmitted last
  year's form while the next campaign runs);
- used or expired links, and sessions ended for more than
  ``SESSION_RETENTION_DAYS`` (default 90), are deleted;
- published outbox rows go a day after their publication, and a published
  ``identity.person_anonymised`` at once: events copy names and addresses
  (that one, the addresses just erased), and once the broker has them in
  their consumers' durable queues no one reads the row again.

Anonymisation keeps the account's row and id (the audit trail, survey's
transmissions and carte's requests refer to it), replaces its name, e-mail
and phone, deletes its second factor, links and sessions, and redacts the
personal values (addresses, reasons) in audit entries about it; the redaction
is itself an audit entry listing the entries redacted, so the hash chain
stays verifiable (kit.audit). In the same transaction it emits
``identity.person_anonymised`` {user_id, emails (the addresses it had),
reason: retention | request}: survey, carte and notify erase their copies.

Each job takes ``now`` (an injectable clock) and, on PostgreSQL, its rows with
SKIP LOCKED: several replicas never work on the same row.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable

from sqlalchemy import and_, exists, or_, select

from identity import carte, problems
from identity import repository as repo
from identity import use_cases as uc
from identity.models import (
    Attachment,
    AuditEntry,
    CarteAccount,
    Organisation,
    Outbox,
    RecoveryCode,
    Session,
    SignInAttempt,
    Token,
    TotpCredential,
    User,
)
from kit import audit as kit_audit
from kit import events
from kit.context import AGENCY_ADMIN, SYSTEM, Caller
from kit.db import utcnow
from kit.outbox import emit

log = logging.getLogger(__name__)

DEACTIVATED_ACCOUNT_MONTHS = 12
SESSION_RETENTION_DAYS = 90
ANONYMOUS_NAME = "Anonyme"
# audit detail keys that may hold a person's data (e-mail addresses, free text)
PERSONAL_DETAIL_KEYS = frozenset({"detail_email", "email", "reason", "contact_email"})
REASON_MAX = 500
# published outbox rows are kept this long (identity.person_anonymised: not at all)
PUBLISHED_EVENTS_TTL = dt.timedelta(days=1)


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return max(float(raw), 0.0) if raw else default
    except ValueError:
        return default


def deactivated_ttl() -> dt.timedelta:
    """``DEACTIVATED_ACCOUNT_MONTHS`` (default 12), a month being 30 days."""
    months = _setting("DEACTIVATED_ACCOUNT_MONTHS", DEACTIVATED_ACCOUNT_MONTHS)
    return dt.timedelta(days=30 * months)


def session_ttl() -> dt.timedelta:
    return dt.timedelta(days=_setting("SESSION_RETENTION_DAYS", SESSION_RETENTION_DAYS))


def _locked(session, query):
    if session.bind.dialect.name == "postgresql":
        return query.with_for_update(of=User, skip_locked=True)
    return query


def anonymous_email(user_id: str) -> str:
    """Unique (users.email is) and undeliverable (RFC 2606 ``.invalid``)."""
    return f"anonyme-{user_id}@anonyme.invalid"


# ---------------------------------------------------------------- retention


def purge_expired_invitations(session, now: dt.datetime, limit: int = 100) -> int:
    """Accounts created by a manager whose invitation expired unused: they
    never had a password, so nothing else refers to them but the audit trail."""
    live_invite = exists().where(
        Token.user_id == User.id,
        Token.purpose == "invite",
        Token.used_at.is_(None),
        Token.expires_at > now,
    )
    expired_invite = exists().where(
        Token.user_id == User.id, Token.purpose == "invite", Token.expires_at <= now
    )
    query = (
        select(User)
        .where(
            User.password_hash.is_(None),
            User.role.in_(("manager", "user")),
            User.deactivated_at.is_(None),
            User.rejected_at.is_(None),
            User.anonymised_at.is_(None),
            expired_invite,
            ~live_invite,
        )
        .order_by(User.created_at)
        .limit(limit)
    )
    purged = 0
    for user in session.scalars(_locked(session, query)).all():
        _delete_account_rows(session, user.id)
        session.delete(user)
        uc.audit(session, "invitation_expired", org_id=user.org_id, subject=user.id)
        purged += 1
    session.commit()
    return purged


def _delete_account_rows(session, user_id: str, sessions: bool = True) -> None:
    """Links and second factor; sessions too unless they must stay to be
    announced as revoked (use_cases.revoked_sessions)."""
    models = (Token, RecoveryCode, TotpCredential) + ((Session,) if sessions else ())
    for model in models:
        session.query(model).filter(model.user_id == user_id).delete(synchronize_session=False)


def anonymise_closed_accounts(session, now: dt.datetime, limit: int = 100) -> int:
    """Deactivated or refused accounts past ``deactivated_ttl()``."""
    before = now - deactivated_ttl()
    query = (
        select(User)
        .where(
            User.anonymised_at.is_(None),
            User.role != "carte",
            or_(
                and_(User.deactivated_at.is_not(None), User.deactivated_at < before),
                and_(User.rejected_at.is_not(None), User.rejected_at < before),
            ),
        )
        .order_by(User.created_at)
        .limit(limit)
    )
    done = 0
    for user in session.scalars(_locked(session, query)).all():
        anonymise(session, user, now, action="anonymised", reason="retention", cause="retention")
        done += 1
    session.commit()
    return done


def purge_links_and_sessions(session, now: dt.datetime) -> int:
    """Links used or expired for a day, sessions ended ``session_ttl()`` ago."""
    day = dt.timedelta(days=1)
    links = (
        session.query(Token)
        .filter(or_(Token.expires_at < now - day, Token.used_at < now - day))
        # an invitation's expired link marks the account for purge_expired_invitations
        .filter(~and_(Token.purpose == "invite", Token.used_at.is_(None)))
        .delete(synchronize_session=False)
    )
    ended = now - session_ttl()
    sessions = (
        session.query(Session)
        .filter(or_(Session.expires_at < ended, Session.revoked_at < ended))
        .delete(synchronize_session=False)
    )
    session.commit()
    return links + sessions


def purge_published_events(session, now: dt.datetime) -> int:
    """Outbox rows published ``PUBLISHED_EVENTS_TTL`` ago, and published
    ``person_anonymised`` rows whatever their age (module docstring). A row
    not published yet stays, whatever its age: the relay still owes it."""
    deleted = (
        session.query(Outbox)
        .filter(Outbox.published_at.is_not(None))
        .filter(
            or_(
                Outbox.published_at < now - PUBLISHED_EVENTS_TTL,
                Outbox.event_type == events.PERSON_ANONYMISED,
            )
        )
        .delete(synchronize_session=False)
    )
    session.commit()
    return deleted


def run_retention(
    session, delete_file: Callable[[str], None], now: dt.datetime | None = None
) -> dict:
    """Every retention rule of identity, as of ``now``; the counts are logged."""
    now = now or utcnow()
    counts = {
        "registrations_purged": uc.purge_expired_registrations(session, delete_file, now=now),
        "invitations_purged": purge_expired_invitations(session, now),
        "accounts_anonymised": anonymise_closed_accounts(session, now),
        "links_and_sessions_purged": purge_links_and_sessions(session, now),
        "published_events_purged": purge_published_events(session, now),
    }
    log.info(
        "identity retention: %s",
        ", ".join(f"{k}={v}" for k, v in counts.items()),
        extra={"retention": counts},
    )
    return counts


# ---------------------------------------------------------------- anonymisation


def _entries_about(session, user: User) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(or_(AuditEntry.subject_user_id == user.id, AuditEntry.actor_id == user.id))
            .order_by(AuditEntry.seq)
        )
    )


def _redact_audit(session, user: User) -> list[str]:
    """Replaces the personal values of the audit entries about ``user`` (and
    those naming its address); returns the ids of the entries changed."""
    changed = []
    candidates = _entries_about(session, user) + list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.action == "registration_duplicate_email")
        )
    )
    seen = set()
    for entry in candidates:
        if entry.id in seen:
            continue
        seen.add(entry.id)
        detail = dict(entry.detail or {})
        if entry.action == "registration_duplicate_email" and detail.get("detail_email") not in (
            user.email,
        ):
            continue
        redacted = kit_audit.redact(detail, PERSONAL_DETAIL_KEYS)
        if redacted != detail:
            entry.detail = redacted
            changed.append(entry.id)
    return changed


def previous_emails(session, user: User) -> list[str]:
    """The addresses the account had, lower case, without duplicates: its
    e-mail, or a carte account's contact e-mail (its ``users.email`` is a
    login key, not an address)."""
    account = session.get(CarteAccount, user.id)
    candidates = [user.email, account.contact_email if account is not None else None]
    return sorted(
        {
            e.strip().lower()
            for e in candidates
            if isinstance(e, str) and "@" in e and not e.strip().lower().endswith(".invalid")
        }
    )


def anonymise(
    session,
    user: User,
    now: dt.datetime,
    *,
    action: str,
    cause: str,
    actor: str | None = None,
    reason: str | None = None,
) -> dict:
    """Replaces the person's data in place (module docstring) and emits
    ``identity.person_anonymised`` with ``cause`` (retention | request) as
    its reason; the caller commits (the event goes with the change or not
    at all)."""
    emails = previous_emails(session, user)  # before they are overwritten
    redacted = _redact_audit(session, user)
    session.query(SignInAttempt).filter(SignInAttempt.email == user.email).delete(
        synchronize_session=False
    )
    uc.revoke_sessions(session, user.id, now)
    _delete_account_rows(session, user.id, sessions=False)
    account = session.get(CarteAccount, user.id)
    if account is not None:
        # the login is the establishment's identifier, not a person's: it stays
        account.contact_email = anonymous_email(user.id)
        account.revision += 1
        account.updated_at = now
    else:
        user.email = anonymous_email(user.id)
        user.last_name, user.first_name = ANONYMOUS_NAME, ANONYMOUS_NAME
    user.phone = None
    user.firm_name = None
    user.password_hash = None
    user.reject_reason = None if user.reject_reason is None else kit_audit.REDACTED
    user.deactivated_at = user.deactivated_at or now
    user.anonymised_at = now
    detail = {kit_audit.REDACTED_ENTRIES: redacted}
    if reason:
        detail["request"] = reason
    uc.audit(session, action, org_id=user.org_id, subject=user.id, actor=actor, **detail)
    emit(
        session,
        Outbox,
        events.PERSON_ANONYMISED,
        {"user_id": user.id, "emails": emails, "reason": cause},
    )
    return {"audit_entries_redacted": len(redacted)}


# ---------------------------------------------------------------- a person's data (agency)


def _acting_agent(session, caller: Caller) -> User | None:
    """Agency staff; the system caller (operations) acts as nobody."""
    if SYSTEM in caller.roles:
        return None
    return uc.acting_agent(session, caller)


def _person(session, user_id) -> User:
    user = session.get(User, user_id) if uc._is_id(user_id) else None
    if user is None:
        raise problems.error("identity.user_not_found")
    return user


def _carte_dict(session, user: User) -> dict | None:
    account = session.get(CarteAccount, user.id)
    if account is None:
        return None
    return carte.account_dict(session, account, user)


def person_summary(session, user: User) -> dict:
    org = session.get(Organisation, user.org_id) if user.org_id else None
    row = uc.user_row(user, org)
    row["anonymised_at"] = uc.iso(user.anonymised_at)
    row["carte_account"] = _carte_dict(session, user)
    emails = {user.email}
    if row["carte_account"]:
        emails.add(row["carte_account"]["contact_email"])
    row["emails"] = sorted(e for e in emails if e and not e.endswith(".invalid"))
    return row


def find_people(session, caller: Caller, query) -> list[dict]:
    """Agency: accounts whose e-mail, name or carte identifier holds ``query``."""
    uc.acting_agent(session, caller)
    query = query.strip().lower() if isinstance(query, str) else ""
    if len(query) < 3:
        raise problems.error(
            "invalid_input", fields={"query": ["Saisissez au moins 3 caractères."]}
        )
    pattern = f"%{query.replace('%', '').replace('_', '')}%"
    rows = session.scalars(
        select(User)
        .outerjoin(CarteAccount, CarteAccount.user_id == User.id)
        .where(
            or_(
                User.email.ilike(pattern),
                User.last_name.ilike(pattern),
                User.first_name.ilike(pattern),
                CarteAccount.identifier.ilike(pattern),
                CarteAccount.contact_email.ilike(pattern),
            )
        )
        .order_by(User.last_name, User.first_name)
        .limit(50)
    ).all()
    return [person_summary(session, u) for u in rows]


def get_person(session, caller: Caller, user_id) -> dict:
    """Agency: one account's summary, with the addresses mail went to."""
    _acting_agent(session, caller)
    return person_summary(session, _person(session, user_id))


def _audit_row(entry: AuditEntry) -> dict:
    return {
        "id": entry.id,
        "seq": entry.seq,
        "at": uc.iso(entry.at),
        "action": entry.action,
        "org_id": entry.org_id,
        "subject_user_id": entry.subject_user_id,
        "actor_id": entry.actor_id,
        "detail": entry.detail,
    }


def export_person(session, caller: Caller, user_id, now: dt.datetime | None = None) -> dict:
    """Agency: everything identity holds about one person; the export is audited."""
    now = now or utcnow()
    actor = _acting_agent(session, caller)
    user = _person(session, user_id)
    summary = person_summary(session, user)
    sessions = session.scalars(
        select(Session).where(Session.user_id == user.id).order_by(Session.created_at)
    ).all()
    totp = session.get(TotpCredential, user.id)
    data = {
        "account": summary,
        "sessions": [
            {
                "created_at": uc.iso(s.created_at),
                "expires_at": uc.iso(s.expires_at),
                "revoked_at": uc.iso(s.revoked_at),
                "second_factor": s.mfa,
            }
            for s in sessions
        ],
        "second_factor": {
            "enrolled": bool(totp and totp.confirmed_at),
            "enrolled_at": uc.iso(totp.confirmed_at) if totp else None,
            "recovery_codes_left": session.query(RecoveryCode)
            .filter(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
            .count(),
        },
        "failed_sign_ins": [
            {"at": uc.iso(a.at), "ip": a.ip}
            for a in session.scalars(
                select(SignInAttempt)
                .where(SignInAttempt.email == user.email)
                .order_by(SignInAttempt.at)
            )
        ],
        "documents": [
            {
                "file_id": a.file_id,
                "kind": a.kind,
                "name": a.name,
                "created_at": uc.iso(a.created_at),
            }
            for a in session.scalars(select(Attachment).where(Attachment.user_id == user.id))
        ],
        "audit": [_audit_row(e) for e in _entries_about(session, user)],
    }
    uc.audit(
        session,
        "personal_data_exported",
        org_id=user.org_id,
        subject=user.id,
        actor=actor.id if actor else None,
    )
    session.commit()
    return data


def erase_person(
    session,
    caller: Caller,
    user_id,
    delete_file: Callable[[str], None],
    reason=None,
    now: dt.datetime | None = None,
    check: bool = False,
) -> dict:
    """Agency, on the person's request: deactivates and anonymises the
    account, deletes its registration documents (``delete_file``, idempotent:
    a call run again finishes the work). ``check``: the checks only, nothing
    changed (the gateway runs them before erasing elsewhere). Errors: identity.user_not_found,
    personal_data.own_account (409), quota.last_manager (409)."""
    now = now or utcnow()
    actor = _acting_agent(session, caller)
    user = _person(session, user_id)
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_MAX):
        raise problems.error(
            "invalid_input", fields={"reason": [f"{REASON_MAX} caractères au plus."]}
        )
    if actor is not None and actor.id == user.id:
        raise problems.error("personal_data.own_account")
    if user.role == AGENCY_ADMIN and actor is None:
        raise problems.error("forbidden.agency_only")
    if user.anonymised_at is not None:
        return {"user_id": user.id, "status": "erased", "already": True, "documents_deleted": 0}
    if (
        user.role == "manager"
        and user.validated_at
        and user.deactivated_at is None
        and len(repo.managers(session, user.org_id)) <= 1
        and len(repo.active_users(session, user.org_id)) > 1
    ):
        raise problems.error("quota.last_manager", variant="erasure")
    if check:
        session.rollback()
        return {"user_id": user.id, "status": "erasable"}
    attachments = list(session.scalars(select(Attachment).where(Attachment.user_id == user.id)))
    for attachment in attachments:
        delete_file(attachment.file_id)
    for attachment in attachments:
        session.delete(attachment)
    result = anonymise(
        session,
        user,
        now,
        action="personal_data_erased",
        cause="request",
        actor=actor.id if actor else None,
        reason=reason.strip() if isinstance(reason, str) and reason.strip() else None,
    )
    session.commit()
    return {
        "user_id": user.id,
        "status": "erased",
        "already": False,
        "documents_deleted": len(attachments),
        **result,
    }

"""Helpers shared by the identity use cases: deferred work, the audit trail,
tokens, sessions, and the caller's rights re-checked against the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from identity import problems, security
from identity import repository as repo
from identity.domain.accounts import user_state
from identity.models import AuditChain, AuditEntry, Organisation, Token, User
from kit import audit as kit_audit
from kit.context import AGENCY_ADMIN, Caller
from kit.errors import NotFound

TOKEN_TTL = {
    "confirm": dt.timedelta(hours=48),
    "invite": dt.timedelta(days=7),
    "reset": dt.timedelta(hours=1),
}

# ``defer(job)``: runs ``job(session)`` once the RPC's reply is sent, with a
# session of its own (identity.service.AfterReply); None runs it at once
Defer = Callable[[Callable], None] | None


def _run(defer: Defer, session, job: Callable) -> None:
    if defer is None:
        job(session)
    else:
        defer(job)


def _is_id(value) -> bool:
    """Our ids are 32 hex characters: anything else is not found, without a query."""
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


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
        raise problems.error("token.invalid")
    row = repo.token(session, security.token_hash(token))
    if row is None or row.purpose != purpose:
        raise problems.error("token.invalid")
    if row.used_at is not None:
        raise problems.error("token.used")
    if row.expires_at <= now:
        raise problems.error("token.expired")
    row.used_at = now
    return repo.user(session, row.user_id)


def revoke_sessions(session, user_id: str, now: dt.datetime) -> None:
    for live in repo.live_sessions(session, user_id):
        live.revoked_at = now


def acting_user(session, caller: Caller) -> User:
    """The caller as the database knows them now."""
    caller.require_authenticated()
    user = repo.user(session, caller.user_id)
    if user is None or user_state(user) != "validated":
        raise problems.error("auth.session_invalid")
    return user


def acting_agent(session, caller: Caller) -> User:
    actor = acting_user(session, caller)
    if actor.role != AGENCY_ADMIN:
        raise problems.error("forbidden.agency_only")
    return actor


def managed_org(session, caller: Caller, org_id: str) -> tuple[Organisation, User]:
    """An organisation the caller may administer: agency staff, or a manager
    of the organisation or of its parent (an OG). Others get 404."""
    actor = acting_user(session, caller)
    org = repo.organisation(session, org_id) if _is_id(org_id) else None
    if org is None:
        raise problems.error("identity.organisation_not_found")
    if actor.role == AGENCY_ADMIN:
        return org, actor
    if actor.role == "manager" and actor.org_id in (org.id, org.parent_id):
        return org, actor
    if actor.role == "user" and actor.org_id in (org.id, org.parent_id):
        # their own organisation exists for them: say why, not « introuvable »
        raise problems.error("forbidden.manager_only")
    raise problems.error("identity.organisation_not_found")


def managed_user(session, caller: Caller, user_id: str) -> tuple[User, Organisation, User]:
    user = repo.user(session, user_id) if _is_id(user_id) else None
    if user is None or user.org_id is None:
        raise problems.error("identity.user_not_found")
    try:
        org, actor = managed_org(session, caller, user.org_id)
    except NotFound:
        raise problems.error("identity.user_not_found") from None
    return user, org, actor

"""User management: the accounts a manager creates, changes and closes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError

from identity import problems, security
from identity import repository as repo
from identity.domain import registration as rules
from identity.domain.accounts import user_state
from identity.models import Organisation, Outbox, User
from identity.schemas import person_payload, user_row
from identity.use_cases._common import (
    acting_user,
    audit,
    consume_token,
    issue_token,
    managed_org,
    managed_user,
    revoke_sessions,
)
from kit import events
from kit.context import Caller
from kit.db import new_id, utcnow
from kit.outbox import emit


def list_users(session, caller: Caller, org_id: str | None = None) -> list[dict]:
    """« Gestion des utilisateurs »: the caller's organisation and those it manages."""
    actor = acting_user(session, caller)
    if org_id is None:
        if actor.org_id is None:
            raise problems.error("invalid_input", fields={"org_id": ["Précisez l'organisme."]})
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
        raise problems.error(problem)


def _role(data: dict, default: str | None = "user") -> str | None:
    role = data.get("role", default)
    if role is not None and role not in rules.ROLES:
        raise problems.error(
            "invalid_input", fields={"role": ["Profil : « manager » ou « user »."]}
        )
    return role


def _firm(data: dict) -> str | None:
    firm = data.get("firm_name")
    if firm is None or firm == "":
        return None
    if not isinstance(firm, str) or len(firm.strip()) > 200:
        raise problems.error(
            "invalid_input", fields={"firm_name": ["Cabinet : 200 caractères au plus."]}
        )
    return firm.strip() or None


def create_user(
    session, caller: Caller, org_id: str, data: dict, now: dt.datetime | None = None
) -> dict:
    """A manager creates an account; the user gets a link to confirm and choose a password."""
    now = now or utcnow()
    org, actor = managed_org(session, caller, org_id)
    if not isinstance(data, dict):
        raise problems.error("invalid_input", fields={"_": ["Données mal formées."]})
    errors: dict[str, list[str]] = {}
    person = rules.check_person(errors, data)
    if errors:
        raise problems.error("invalid_input", fields=errors)
    role, firm = _role(data), _firm(data)
    if org.status != "validated":
        raise problems.error("organisation.not_validated")
    _check_quota(session, org, role)
    if repo.user_by_email(session, person["email"]) is not None:
        raise problems.error("user.email_taken")
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
        raise problems.error("user.email_taken") from None
    return user_row(user, org)


def update_user(
    session, caller: Caller, user_id: str, data: dict, now: dt.datetime | None = None
) -> dict:
    """« Modifier »: names, phone, firm and profile."""
    now = now or utcnow()
    user, org, actor = managed_user(session, caller, user_id)
    if not isinstance(data, dict):
        raise problems.error("invalid_input", fields={"_": ["Données mal formées."]})
    if user_state(user) in ("rejected", "deactivated"):
        raise problems.error("user.closed")
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
        raise problems.error("invalid_input", fields=errors)
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
            raise problems.error("quota.last_manager")
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
        raise problems.error("quota.last_manager")
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
        raise problems.error("invalid_input", fields=errors)
    user = consume_token(session, token, "invite", now)
    if user_state(user) in ("rejected", "deactivated"):
        raise problems.error("token.invalid")
    user.password_hash = security.hash_password(password)
    user.email_confirmed_at = user.email_confirmed_at or now
    audit(session, "activated", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return {"status": "active", "email": user.email}

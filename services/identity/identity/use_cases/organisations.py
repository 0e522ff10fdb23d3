"""Profile and organisations: what the caller reads of themselves and the
agency of organisations; the agency administrator account."""

from __future__ import annotations

import datetime as dt

from identity import problems, security
from identity import repository as repo
from identity.domain import registration as rules
from identity.domain.accounts import user_state
from identity.models import Organisation, User
from identity.schemas import iso, org_dict, user_row
from identity.sirene import RegistryUnavailable
from identity.use_cases._common import _is_id, acting_agent, acting_user, audit, managed_org
from kit.context import AGENCY_ADMIN, Caller
from kit.db import new_id, read_only, utcnow


def profile(session, user: User) -> dict:
    org = repo.organisation(session, user.org_id) if user.org_id else None
    row = user_row(user, org)
    row["organisation"] = org_dict(org) if org else None
    return row


def get_me(session, caller: Caller) -> dict:
    """One query: the user and the organisation (the gateway's hottest read)."""
    caller.require_authenticated()
    read_only(session)
    found = repo.user_with_org(session, caller.user_id)
    if found is None or user_state(found[0]) != "validated":
        raise problems.error("auth.session_invalid")
    user, org = found
    row = user_row(user, org)
    row["organisation"] = org_with_parent(session, org) if org else None
    return row


def org_with_parent(session, org: Organisation) -> dict:
    """The organisation and, for a CFA managed by an OG, that « organisme parent »
    (public identifiers only: the survey lists show its name)."""
    data = org_dict(org)
    parent = repo.organisation(session, org.parent_id) if org.parent_id else None
    data["parent"] = org_dict(parent) if parent else None
    return data


def get_organisation(session, caller: Caller, org_id: str) -> dict:
    """Those who may administer it, and its own users (reading is no manager action)."""
    actor = acting_user(session, caller)
    if _is_id(org_id) and actor.role == "user" and actor.org_id == org_id:
        org = repo.organisation(session, org_id)
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
    if not _is_id(org_id) or repo.organisation(session, org_id) is None:
        raise problems.error("identity.organisation_not_found")
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
    org = repo.organisation(session, org_id) if _is_id(org_id) else None
    if org is None:
        raise problems.error("identity.organisation_not_found")
    if parent_id is not None:
        parent = repo.organisation(session, parent_id) if _is_id(parent_id) else None
        if parent is None:
            raise problems.error("identity.organisation_not_found")
        if parent.account_type != "OG" or parent.id == org.id or parent.parent_id == org.id:
            raise problems.error(
                "invalid_input",
                fields={
                    "parent_id": [
                        "L'organisme parent doit être un organisme gestionnaire (OG) distinct."
                    ]
                },
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
    orgs = [repo.organisation(session, org_id)] if org_id else repo.pending_sirene(session)
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

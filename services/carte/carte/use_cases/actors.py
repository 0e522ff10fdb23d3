"""Actors: this service's copy of the carte accounts, and who is acting."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from carte import repository as repo
from carte.domain import access
from carte.domain.access import Actor
from carte.models import Actor as ActorRow
from carte.problems import error as problem
from kit.context import AGENCY_ADMIN, SYSTEM, Caller
from kit.errors import Forbidden, NotFound


def _actor(row: ActorRow) -> Actor:
    return Actor(
        user_id=row.user_id,
        kind=row.kind,
        identifier=row.identifier,
        label=row.label,
        uai=row.uai,
        referent_uai=row.referent_uai,
        member_uais=frozenset(row.member_uais or ()),
        scope=row.scope,
    )


def save_account(session, payload: dict) -> bool:
    """``identity.carte_account_saved``: keeps the newest revision only
    (events may arrive twice or out of order). Returns whether it changed."""
    user_id = payload.get("user_id")
    revision = int(payload.get("revision") or 0)
    if not isinstance(user_id, str) or payload.get("kind") not in (
        *access.FILERS,
        "reviewer",
        "admin",
    ):
        return False
    row = repo.actor_for_update(session, user_id)
    if row is not None and row.revision >= revision:
        return False
    if row is None:
        row = ActorRow(user_id=user_id)
        session.add(row)
    row.identifier = str(payload.get("identifier") or "")[:32]
    row.kind = payload["kind"]
    row.label = str(payload.get("label") or "")[:200]
    row.uai = payload.get("uai")
    row.referent_uai = payload.get("referent_uai")
    row.member_uais = sorted(payload.get("member_uais") or [])
    row.scope = payload.get("scope")
    row.active = bool(payload.get("active", True))
    row.revision = revision
    try:
        session.commit()
    except IntegrityError:  # the same account saved concurrently
        session.rollback()
        return False
    return True


def acting(session, caller: Caller, fetch_account: Callable[[str], dict] | None = None) -> Actor:
    """The carte account behind the caller, from this service's copy; an
    account not announced yet is fetched once from identity. Agency staff
    act as administrators."""
    caller.require_authenticated()
    if AGENCY_ADMIN in caller.roles or SYSTEM in caller.roles:
        return Actor(user_id=caller.user_id, kind="admin", identifier="AGENCE", label="Agence")
    row = repo.actor(session, caller.user_id)
    if row is None and fetch_account is not None:
        session.rollback()  # no transaction open across an RPC (docs/stack-pitfalls.md §9)
        try:
            payload = fetch_account(caller.user_id)
        except (NotFound, Forbidden):
            payload = None
        if payload:
            save_account(session, payload)
            row = repo.actor(session, caller.user_id)
    if row is None:
        raise problem("forbidden.carte_account_required")
    if not row.active:
        raise problem("auth.session_invalid")
    return _actor(row)

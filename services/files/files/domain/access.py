"""Who may store, read and delete which file.

The principal is the caller as the gateway passes it (``kit.context.Caller``):
anything with ``user_id``, ``org_id``, ``roles`` and ``managed_org_ids``.
Reading is all or nothing: what a caller may not read does not exist for them.
"""

from __future__ import annotations

from typing import Protocol

from files.domain.meta import REGISTRATION_KINDS
from files.problems import CATALOGUE as PROBLEMS

AGENCY_ADMIN = "agency_admin"
MANAGER = "manager"
USER = "user"
SYSTEM = "system"


class Principal(Protocol):
    user_id: str | None
    org_id: str | None
    roles: tuple[str, ...]
    managed_org_ids: tuple[str, ...]


class Denied(Exception):
    """``reason`` is ``"unauthenticated"`` or ``"forbidden"``; the message is
    that of ``code`` (and ``variant``) in the files catalogue."""

    def __init__(self, reason: str, code: str, variant: str | None = None):
        self.reason = reason
        self.code = code
        self.variant = variant
        self.message = PROBLEMS.message(code, variant)
        super().__init__(code, self.message)


def is_staff(p: Principal) -> bool:
    """The agency and internal calls see and do everything."""
    return AGENCY_ADMIN in p.roles or SYSTEM in p.roles


def _member_orgs(p: Principal) -> set[str]:
    if p.user_id is None:
        return set()
    orgs = set(p.managed_org_ids or ())
    if p.org_id:
        orgs.add(p.org_id)
    return orgs


def owner_for_store(p: Principal, kind: str, owner_org_id: str | None) -> str | None:
    """The owner a new file gets, or ``Denied``.

    Anonymous callers (the registration form) store registration documents with
    no owner; members store for their organisation (the default) or one they
    manage; staff store anything for anyone."""
    if is_staff(p):
        return owner_org_id
    if p.user_id is None:
        if kind not in REGISTRATION_KINDS:
            raise Denied("unauthenticated", "unauthenticated")
        if owner_org_id is not None:
            raise Denied("forbidden", "files.owner_forbidden", "anonymous")
        return None
    owner = owner_org_id or p.org_id
    if owner is None or owner not in _member_orgs(p):
        raise Denied("forbidden", "files.owner_forbidden")
    return owner


def may_read(p: Principal, kind: str, owner_org_id: str | None) -> bool:
    if is_staff(p):
        return True
    if kind in REGISTRATION_KINDS or owner_org_id is None:
        return False
    return owner_org_id in _member_orgs(p)


def may_delete(p: Principal, kind: str, owner_org_id: str | None) -> bool:
    """Readers who are staff, or a manager or user of the owner organisation."""
    if not may_read(p, kind, owner_org_id):
        return False
    return is_staff(p) or MANAGER in p.roles or USER in p.roles


def may_attach_owner(p: Principal) -> bool:
    return is_staff(p)

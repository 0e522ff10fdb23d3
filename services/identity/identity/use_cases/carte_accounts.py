"""Carte des formations accounts (Carif-Oref guide, sections 1 and 2): their
rights, their administration and their sign-in.

Establishments sign in with their UAI, networks and services with a code the
administrators give them, and a password those administrators issue (the
guide: « ils vous ont été communiqués par les services de chaque rectorat »).
Each carte account is a ``users`` row (role ``carte``) plus a
``carte_accounts`` row: sessions, revocation, rate limiting and reset links
are identity's own, reused as they are. The row's ``email`` is
``CARTE:<identifier>``: upper case, so no normalised e-mail ever matches it
and the e-mail sign-in cannot be used with a carte account.

Every change of an account emits ``identity.carte_account_saved`` through the
outbox with a growing ``revision``: the carte service keeps its own copy of
who may file for which establishment and re-checks every request against it.
Changes to what an account may see or do also revoke its sessions, so its
token never carries stale roles.
"""

from __future__ import annotations

import datetime as dt

from identity import problems, security, totp
from identity import repository as repo
from identity.domain import registration as rules
from identity.domain.accounts import user_state
from identity.domain.carte_accounts import (
    _CONTROL,
    _USER_ID,
    KINDS,
    USER_ROLE,
    _check_network,
    login_key,
    new_password,
    normalise_identifier,
    parse_account,
)
from identity.models import CarteAccount, CarteNetworkMember, Outbox, Session, SignInAttempt, User
from identity.schemas import ROLES, account_dict, iso
from identity.use_cases._common import Defer, _run, acting_user, audit, issue_token, revoke_sessions
from identity.use_cases.sign_in import SIGN_IN_STATUS, open_session, refuse_if_throttled
from kit import context, events
from kit.context import AGENCY_ADMIN, Caller
from kit.db import new_id, utcnow
from kit.outbox import emit

RESET_SENT = {
    "status": "reset_sent",
    "message": "Si cet identifiant correspond à un compte, un courriel vient d'être envoyé "
    "à son adresse de contact.",
}


def _event(session, account: CarteAccount, user: User) -> None:
    row = account_dict(session, account, user)
    emit(
        session,
        Outbox,
        events.CARTE_ACCOUNT_SAVED,
        {
            key: row[key]
            for key in (
                "user_id",
                "identifier",
                "kind",
                "label",
                "uai",
                "referent_uai",
                "member_uais",
                "scope",
                "active",
                "revision",
            )
        },
    )


def is_carte_admin(session, user: User) -> bool:
    if user.role == AGENCY_ADMIN:
        return True
    if user.role != USER_ROLE:
        return False
    account = repo.carte_account(session, user.id)
    return account is not None and account.kind == "admin"


def acting_admin(session, caller: Caller) -> User:
    """The platform's administrators: agency staff or a carte ``admin`` account."""
    actor = acting_user(session, caller)
    if not is_carte_admin(session, actor):
        raise problems.error("forbidden.carte_admin_only")
    return actor


def _account(session, user_id) -> tuple[CarteAccount, User]:
    known = isinstance(user_id, str) and _USER_ID.match(user_id)
    account = repo.carte_account(session, user_id) if known else None
    if account is None:
        raise problems.error("carte.account_not_found")
    return account, repo.user(session, account.user_id)


def _new_account(data) -> dict:
    """The administrator's form for a new account, checked (every error at once)."""
    clean, errors = parse_account(data)
    for key in ("label", "contact_email"):
        if key not in clean:  # parse_account always fills them on create
            errors.setdefault(key, [rules.REQUIRED])
    if clean.get("kind") == "network":
        members = clean.get("member_uais", [])
        clean.setdefault("referent_uai", None)
        if not clean["referent_uai"] and members:
            clean["referent_uai"] = members[0]
        for key, messages in _check_network(clean, None, members).items():
            errors.setdefault(key, []).extend(messages)
    if clean.get("kind") == "reviewer" and "scope" not in clean:
        errors.setdefault("scope", [rules.REQUIRED])
    if errors:
        raise problems.error("carte.account_invalid", fields=errors)
    return clean


def _insert(session, clean: dict, password: str, now: dt.datetime) -> tuple[CarteAccount, User]:
    user = User(
        id=new_id(),
        org_id=None,
        email=login_key(clean["identifier"]),
        last_name=clean["label"][:100],
        first_name="",
        role=USER_ROLE,
        password_hash=security.hash_password(password),
        email_confirmed_at=now,
        validated_at=now,
        created_at=now,
    )
    session.add(user)
    session.flush()
    establishment = clean["kind"] == "establishment"
    account = CarteAccount(
        user_id=user.id,
        identifier=clean["identifier"],
        kind=clean["kind"],
        label=clean["label"],
        contact_email=clean["contact_email"],
        uai=clean["identifier"] if establishment else None,
        referent_uai=clean["identifier"] if establishment else clean.get("referent_uai"),
        scope=clean.get("scope"),
        revision=1,
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    session.flush()
    for uai in clean.get("member_uais", []):
        session.add(CarteNetworkMember(network_id=user.id, uai=uai))
    session.flush()
    return account, user


def create_account(session, caller: Caller, data, now: dt.datetime | None = None) -> dict:
    """Returns ``{account, password}``: the password is shown once, to be sent
    to the establishment. Errors: invalid_input, carte.identifier_taken."""
    now = now or utcnow()
    actor = acting_admin(session, caller)
    clean = _new_account(data)
    identifier = clean["identifier"]
    if (
        repo.carte_account_by_identifier(session, identifier) is not None
        or repo.user_by_email(session, login_key(identifier)) is not None
    ):
        raise problems.error("carte.identifier_taken")
    password = new_password()
    account, user = _insert(session, clean, password, now)
    audit(session, "carte_account_created", subject=user.id, actor=actor.id, kind=account.kind)
    _event(session, account, user)
    session.commit()
    return {"account": account_dict(session, account, user), "password": password}


def ensure_account(session, data: dict, password: str, now: dt.datetime | None = None) -> dict:
    """Demo data and operations (``identity.seed``): the account ``data``
    describes, created if its identifier is free, else given ``password``
    again and reactivated; its rights stay as the administrators left them.
    Announced either way, so a fresh carte database learns it too."""
    now = now or utcnow()
    clean = _new_account(data)
    account = repo.carte_account_by_identifier(session, clean["identifier"])
    if account is None:
        account, user = _insert(session, clean, password, now)
        audit(session, "carte_account_created", subject=user.id, kind=account.kind)
    else:
        user = repo.user(session, account.user_id)
        user.password_hash = security.hash_password(password)
        user.deactivated_at = None
        repo.clear_failures(session, user.email)
        account.revision += 1
        account.updated_at = now
        audit(session, "carte_password_issued", subject=user.id)
    _event(session, account, user)
    session.commit()
    return account_dict(session, account, user)


def update_account(
    session, caller: Caller, user_id: str, data, now: dt.datetime | None = None
) -> dict:
    """Label, contact e-mail, network members and referent, reviewer scope,
    ``active``. A change of rights closes the account's sessions."""
    now = now or utcnow()
    actor = acting_admin(session, caller)
    account, user = _account(session, user_id)
    clean, errors = parse_account(data, account)
    members = clean.get("member_uais", repo.network_members(session, account))
    if account.kind == "network":
        for key, messages in _check_network(clean, account, members).items():
            errors.setdefault(key, []).extend(messages)
    if errors:
        raise problems.error("carte.account_invalid", fields=errors)
    rights_changed = False
    for key in ("label", "contact_email", "referent_uai", "scope"):
        if key in clean and getattr(account, key) != clean[key]:
            rights_changed |= key in ("referent_uai", "scope")
            setattr(account, key, clean[key])
    if account.kind == "network" and "member_uais" in clean:
        current = set(repo.network_members(session, account))
        if set(members) != current:
            rights_changed = True
            for row in repo.network_member_rows(session, account.user_id):
                if row.uai not in members:
                    session.delete(row)
            for uai in members:
                if uai not in current:
                    session.add(CarteNetworkMember(network_id=account.user_id, uai=uai))
    if "label" in clean:
        user.last_name = clean["label"][:100]
    if "active" in data and data["active"] != (user.deactivated_at is None):
        rights_changed = True
        user.deactivated_at = None if data["active"] else now
    if rights_changed:
        revoke_sessions(session, user.id, now)
    account.revision += 1
    account.updated_at = now
    session.flush()
    audit(
        session,
        "carte_account_modified",
        subject=user.id,
        actor=actor.id,
        fields=sorted(set(clean) | ({"active"} if "active" in data else set())),
    )
    _event(session, account, user)
    session.commit()
    return account_dict(session, account, user)


def regenerate_password(session, caller: Caller, user_id: str, now: dt.datetime | None = None):
    """A new issued password (the old one and every session stop working)."""
    now = now or utcnow()
    actor = acting_admin(session, caller)
    account, user = _account(session, user_id)
    password = new_password()
    user.password_hash = security.hash_password(password)
    revoke_sessions(session, user.id, now)
    repo.clear_failures(session, user.email)
    audit(session, "carte_password_issued", subject=user.id, actor=actor.id)
    session.commit()
    return {"account": account_dict(session, account, user), "password": password}


def list_accounts(session, caller: Caller, kind: str | None = None, query: str | None = None):
    """Administrators: accounts of one ``kind`` (any if empty) whose
    identifier or name holds ``query``. Errors: carte.filter_invalid."""
    acting_admin(session, caller)
    if kind:
        if kind not in KINDS:
            message = "Type de compte : " + ", ".join(KINDS) + "."
            raise problems.error(
                "carte.filter_invalid", message=message, fields={"kind": [message]}
            )
    query = _CONTROL.sub("", query).strip() if isinstance(query, str) else ""
    rows = repo.carte_accounts(session, kind, query)
    return [account_dict(session, account, user) for account, user in rows]


def get_account(session, caller: Caller, user_id: str) -> dict:
    """The account itself, the administrators, and internal calls (the carte
    service fetching an account it has no copy of yet)."""
    caller.require_authenticated()
    if caller.user_id != user_id and context.SYSTEM not in caller.roles:
        acting_admin(session, caller)
    account, user = _account(session, user_id)
    return account_dict(session, account, user)


def me(session, caller: Caller) -> dict:
    user = acting_user(session, caller)
    account = repo.carte_account(session, user.id)
    if account is None:
        raise problems.error("carte.account_not_found")
    return account_dict(session, account, user)


def authenticate(
    session, identifier, password, ip: str = "unknown", now: dt.datetime | None = None
) -> dict:
    """Same answer for an unknown identifier and a wrong password; rate-limited
    by identifier and by address like the e-mail sign-in."""
    now = now or utcnow()
    identifier = normalise_identifier(identifier)[:32]
    password = password if isinstance(password, str) else ""
    key = login_key(identifier)
    ip = (ip or "unknown")[:64]
    refuse_if_throttled(session, key, ip, now)
    account = repo.carte_account_by_identifier(session, identifier) if identifier else None
    user = repo.user(session, account.user_id) if account else None
    if not security.verify_password(user.password_hash if user else None, password[:1024]):
        session.add(SignInAttempt(email=key, ip=ip, at=now))
        session.commit()
        raise problems.error("auth.invalid_credentials", variant="carte")
    if user_state(user) != "validated":
        raise problems.error("auth.account_disabled")
    repo.clear_failures(session, key)
    row = open_session(session, user, now)
    audit(session, "carte_signed_in", subject=user.id, actor=user.id)
    session.commit()
    return signed_in(session, user, row)


def signed_in(session, user: User, row: Session) -> dict:
    """What a carte sign-in returns (``status`` as signed_in)."""
    account = repo.carte_account(session, user.id)
    return {
        "status": SIGN_IN_STATUS[row.mfa],
        "session_id": row.id,
        "expires_at": iso(row.expires_at),
        "caller": dict(
            {
                "user_id": user.id,
                "org_id": None,
                "roles": [ROLES[account.kind]],
                "managed_org_ids": [],
            },
            **totp.claims(session, user, row),
        ),
        "user": account_dict(session, account, user),
    }


def request_password_reset(
    session, identifier, now: dt.datetime | None = None, defer: Defer = None
) -> dict:
    """« Mot de passe perdu »: a link to the account's contact address, through
    identity's reset flow (``identity.password_reset_requested``). The same
    answer in the same time whatever the identifier: the look-up and the link
    are ``defer``red until the answer is sent."""
    now = now or utcnow()
    identifier = normalise_identifier(identifier)[:32]
    if identifier:
        _run(defer, session, lambda s: send_password_reset(s, identifier, now))
    return dict(RESET_SENT)


def send_password_reset(session, identifier: str, now: dt.datetime) -> None:
    account = repo.carte_account_by_identifier(session, identifier)
    user = repo.user(session, account.user_id) if account else None
    if user is not None and user_state(user) == "validated":
        token = issue_token(session, user, "reset", now)
        audit(session, "password_reset_requested", subject=user.id, actor=user.id)
        emit(
            session,
            Outbox,
            events.PASSWORD_RESET_REQUESTED,
            {
                "user_id": user.id,
                "org_id": None,
                "email": account.contact_email,
                "first_name": "",
                "last_name": account.label,
                "reset_token": token,
                "carte_identifier": account.identifier,
            },
        )
        session.commit()

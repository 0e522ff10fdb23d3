"""Accounts of the carte des formations (Carif-Oref guide, sections 1 and 2).

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
import re
import secrets

from sqlalchemy import func, or_, select

from identity import repository as repo
from identity import security, totp
from identity import use_cases as uc
from identity.domain import registration as rules
from identity.models import CarteAccount, CarteNetworkMember, Outbox, Session, SignInAttempt, User
from kit import context, events
from kit.codes import is_valid_uai as _is_valid_uai
from kit.codes import normalise_uai
from kit.context import AGENCY_ADMIN, Caller
from kit.db import new_id, utcnow
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthenticated
from kit.outbox import emit

USER_ROLE = "carte"  # users.role of every carte account
EMAIL_PREFIX = "CARTE:"
KINDS = ("establishment", "network", "draaf", "reviewer", "admin")
ROLES = {
    "establishment": context.CARTE_ESTABLISHMENT,
    "network": context.CARTE_NETWORK,
    "draaf": context.CARTE_DRAAF,
    "reviewer": context.CARTE_REVIEWER,
    "admin": context.CARTE_ADMIN,
}
# « Vous êtes connecté en tant que … »
KIND_LABELS = {
    "establishment": "établissement de formation",
    "network": "réseau d'établissements",
    "draaf": "services de la DRAAF",
    "reviewer": "relecteur",
    "admin": "administrateur de la plateforme (Carif-Oref)",
}
SCOPES = {
    "all": "Région (toutes les demandes)",
    "montpellier": "Académie de Montpellier",
    "toulouse": "Académie de Toulouse",
    "draaf": "DRAAF (demandes déposées par la DRAAF)",
}
MAX_MEMBERS = 500
LABEL_MAX = 200
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_USER_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

ACCOUNT_NOT_FOUND = ("carte.account_not_found", "Compte introuvable.")
ACCOUNT_INVALID = "Le compte comporte des erreurs : voir les champs."
INVALID_CREDENTIALS = ("auth.invalid_credentials", "Identifiant ou mot de passe incorrect.")
RESET_SENT = {
    "status": "reset_sent",
    "message": "Si cet identifiant correspond à un compte, un courriel vient d'être envoyé "
    "à son adresse de contact.",
}


# ---------------------------------------------------------------- pure helpers


def normalise_identifier(value) -> str:
    """Upper case, without spaces or control characters (PostgreSQL refuses
    a NUL: an identifier holding one is simply nobody's)."""
    return _CONTROL.sub("", re.sub(r"\s+", "", value)).upper() if isinstance(value, str) else ""


def is_valid_uai(value: str) -> bool:
    """docs/architecture.md §5 in ASCII digits (``kit.codes`` alone also takes other
    scripts' digits, which ``\\d`` and ``int()`` accept)."""
    return normalise_uai(value).isascii() and _is_valid_uai(value)


def login_key(identifier: str) -> str:
    """The ``users.email`` of a carte account (and its rate-limiting key)."""
    return EMAIL_PREFIX + identifier


def new_password() -> str:
    """Issued by the platform, easy to copy from a letter: ``xxxx-xxxx-xxxx-xxxx``."""
    groups = ["".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(4)) for _ in range(4)]
    groups[-1] = groups[-1][:3] + secrets.choice("23456789")  # always a digit
    return "-".join(groups)


def signed_in_as(kind: str, identifier: str) -> str:
    label = KIND_LABELS.get(kind, kind)
    article = "qu'" if label[:1].lower() in "aeéiouy" else "que "
    return f"Vous êtes connecté en tant {article}{label} avec l'identifiant {identifier}"


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    return _CONTROL.sub("", value).strip() if isinstance(value, str) else ""


def parse_account(data, current: CarteAccount | None = None) -> tuple[dict, dict]:
    """The administrator's form; returns (clean values, per-field errors).

    On update (``current`` given) identifier and kind cannot change and absent
    fields keep their value."""
    errors: dict[str, list[str]] = {}
    if not isinstance(data, dict):
        return {}, {"_": ["Données mal formées."]}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    def given(key: str) -> bool:
        return current is None or key in data

    clean: dict = {}
    if current is None:
        kind = _text(data, "kind")
        if kind not in KINDS:
            add("kind", "Type de compte : establishment, network, draaf, reviewer ou admin.")
        identifier = normalise_identifier(data.get("identifier"))
        if kind == "establishment":
            identifier = normalise_uai(identifier)
            if not is_valid_uai(identifier):
                add(
                    "identifier",
                    "L'identifiant d'un établissement est son code UAI : 7 chiffres "
                    "et la lettre de contrôle (ex. 0750654D).",
                )
        elif not _CODE.match(identifier):
            add(
                "identifier",
                "Identifiant : 3 à 32 lettres majuscules, chiffres, « - » ou « _ ».",
            )
        clean.update(kind=kind, identifier=identifier)
    else:
        kind = current.kind

    if given("label"):
        label = _text(data, "label")
        if not label:
            add("label", rules.REQUIRED)
        elif len(label) > LABEL_MAX:
            add("label", f"Nom : {LABEL_MAX} caractères au plus.")
        clean["label"] = label
    if given("contact_email"):
        email = rules.normalise_email(_text(data, "contact_email"))
        if not email:
            add("contact_email", rules.REQUIRED)
        elif len(email) > rules.EMAIL_MAX or not rules._EMAIL.match(email):
            add("contact_email", "Adresse e-mail invalide.")
        clean["contact_email"] = email

    if kind == "network" and given("member_uais"):
        raw = data.get("member_uais")
        members: list[str] = []
        if not isinstance(raw, list) or not raw:
            add("member_uais", "Indiquez les codes UAI des établissements du réseau.")
        elif len(raw) > MAX_MEMBERS:
            add("member_uais", f"{MAX_MEMBERS} établissements au plus.")
        else:
            for item in raw:
                uai = normalise_uai(item if isinstance(item, str) else "")
                if not is_valid_uai(uai):
                    add("member_uais", f"Code UAI invalide : « {str(item)[:20]} ».")
                elif uai not in members:
                    members.append(uai)
        clean["member_uais"] = members
    if kind in ("network", "draaf") and given("referent_uai"):
        referent = normalise_uai(_text(data, "referent_uai")) or None
        if referent and not is_valid_uai(referent):
            add("referent_uai", "Code UAI invalide : 7 chiffres et la lettre de contrôle.")
        clean["referent_uai"] = referent
    if kind == "reviewer" and given("scope"):
        scope = _text(data, "scope")
        if scope not in SCOPES:
            add("scope", "Périmètre : all, montpellier, toulouse ou draaf.")
        clean["scope"] = scope
    if current is not None and "active" in data and not isinstance(data["active"], bool):
        add("active", "Valeur attendue : true ou false.")
    return clean, errors


# ---------------------------------------------------------------- queries


def _members(session, account: CarteAccount) -> list[str]:
    if account.kind != "network":
        return []
    return list(
        session.scalars(
            select(CarteNetworkMember.uai)
            .where(CarteNetworkMember.network_id == account.user_id)
            .order_by(CarteNetworkMember.uai)
        )
    )


def _by_identifier(session, identifier: str) -> CarteAccount | None:
    return session.scalar(select(CarteAccount).where(CarteAccount.identifier == identifier))


def account_dict(session, account: CarteAccount, user: User | None = None) -> dict:
    user = user or session.get(User, account.user_id)
    return {
        "user_id": account.user_id,
        "identifier": account.identifier,
        "kind": account.kind,
        "kind_label": KIND_LABELS[account.kind],
        "role": ROLES[account.kind],
        "label": account.label,
        "contact_email": account.contact_email,
        "uai": account.uai,
        "referent_uai": account.referent_uai,
        "member_uais": _members(session, account),
        "scope": account.scope,
        "scope_label": SCOPES.get(account.scope) if account.scope else None,
        "active": user is not None and user.deactivated_at is None,
        "revision": account.revision,
        "signed_in_as": signed_in_as(account.kind, account.identifier),
        "created_at": uc.iso(account.created_at),
        "updated_at": uc.iso(account.updated_at),
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


# ---------------------------------------------------------------- rights


def is_carte_admin(session, user: User) -> bool:
    if user.role == AGENCY_ADMIN:
        return True
    if user.role != USER_ROLE:
        return False
    account = session.get(CarteAccount, user.id)
    return account is not None and account.kind == "admin"


def acting_admin(session, caller: Caller) -> User:
    """The platform's administrators: agency staff or a carte ``admin`` account."""
    actor = uc.acting_user(session, caller)
    if not is_carte_admin(session, actor):
        raise Forbidden(
            "forbidden.carte_admin_only", "Réservé aux administrateurs de la carte des formations."
        )
    return actor


def _account(session, user_id) -> tuple[CarteAccount, User]:
    known = isinstance(user_id, str) and _USER_ID.match(user_id)
    account = session.get(CarteAccount, user_id) if known else None
    if account is None:
        raise NotFound(*ACCOUNT_NOT_FOUND)
    return account, session.get(User, account.user_id)


# ---------------------------------------------------------------- administration


def _check_network(clean: dict, account: CarteAccount | None, members: list[str]) -> dict:
    errors: dict[str, list[str]] = {}
    referent = clean.get("referent_uai", account.referent_uai if account else None)
    if referent and members and referent not in members:
        errors["referent_uai"] = ["L'établissement référent doit être membre du réseau."]
    return errors


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
        raise InvalidInput.fields(errors, "carte.account_invalid", ACCOUNT_INVALID)
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
        _by_identifier(session, identifier) is not None
        or repo.user_by_email(session, login_key(identifier)) is not None
    ):
        raise Conflict("carte.identifier_taken", "Cet identifiant est déjà attribué.")
    password = new_password()
    account, user = _insert(session, clean, password, now)
    uc.audit(session, "carte_account_created", subject=user.id, actor=actor.id, kind=account.kind)
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
    account = _by_identifier(session, clean["identifier"])
    if account is None:
        account, user = _insert(session, clean, password, now)
        uc.audit(session, "carte_account_created", subject=user.id, kind=account.kind)
    else:
        user = session.get(User, account.user_id)
        user.password_hash = security.hash_password(password)
        user.deactivated_at = None
        repo.clear_failures(session, user.email)
        account.revision += 1
        account.updated_at = now
        uc.audit(session, "carte_password_issued", subject=user.id)
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
    members = clean.get("member_uais", _members(session, account))
    if account.kind == "network":
        for key, messages in _check_network(clean, account, members).items():
            errors.setdefault(key, []).extend(messages)
    if errors:
        raise InvalidInput.fields(errors, "carte.account_invalid", ACCOUNT_INVALID)
    rights_changed = False
    for key in ("label", "contact_email", "referent_uai", "scope"):
        if key in clean and getattr(account, key) != clean[key]:
            rights_changed |= key in ("referent_uai", "scope")
            setattr(account, key, clean[key])
    if account.kind == "network" and "member_uais" in clean:
        current = set(_members(session, account))
        if set(members) != current:
            rights_changed = True
            for row in session.scalars(
                select(CarteNetworkMember).where(CarteNetworkMember.network_id == account.user_id)
            ):
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
        uc.revoke_sessions(session, user.id, now)
    account.revision += 1
    account.updated_at = now
    session.flush()
    uc.audit(
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
    uc.revoke_sessions(session, user.id, now)
    repo.clear_failures(session, user.email)
    uc.audit(session, "carte_password_issued", subject=user.id, actor=actor.id)
    session.commit()
    return {"account": account_dict(session, account, user), "password": password}


def list_accounts(session, caller: Caller, kind: str | None = None, query: str | None = None):
    """Administrators: accounts of one ``kind`` (any if empty) whose
    identifier or name holds ``query``. Errors: carte.filter_invalid."""
    acting_admin(session, caller)
    stmt = select(CarteAccount, User).join(User, User.id == CarteAccount.user_id)
    if kind:
        if kind not in KINDS:
            message = "Type de compte : " + ", ".join(KINDS) + "."
            raise InvalidInput.fields({"kind": [message]}, "carte.filter_invalid", message)
        stmt = stmt.where(CarteAccount.kind == kind)
    query = _CONTROL.sub("", query).strip() if isinstance(query, str) else ""
    if query:
        like = f"%{query.lower()[:100]}%"
        stmt = stmt.where(
            or_(
                func.lower(CarteAccount.identifier).like(like),
                func.lower(CarteAccount.label).like(like),
            )
        )
    rows = session.execute(stmt.order_by(CarteAccount.kind, CarteAccount.identifier).limit(1000))
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
    user = uc.acting_user(session, caller)
    account = session.get(CarteAccount, user.id)
    if account is None:
        raise NotFound(*ACCOUNT_NOT_FOUND)
    return account_dict(session, account, user)


# ---------------------------------------------------------------- sign-in


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
    since = now - uc.FAILURE_WINDOW
    for kwargs, limit in (
        ({"email": key}, uc.MAX_FAILURES_PER_ACCOUNT),
        ({"ip": ip}, uc.MAX_FAILURES_PER_IP),
    ):
        count, oldest = repo.failures_since(session, since=since, **kwargs)
        if count >= limit:
            retry = int(((oldest or now) + uc.FAILURE_WINDOW - now).total_seconds()) + 1
            raise TooManyRequests(
                "auth.too_many_attempts",
                "Trop de tentatives de connexion : réessayez dans "
                f"{max(1, retry // 60)} minute(s).",
                {"retry_after": max(1, retry)},
            )
    account = _by_identifier(session, identifier) if identifier else None
    user = session.get(User, account.user_id) if account else None
    if not security.verify_password(user.password_hash if user else None, password[:1024]):
        session.add(SignInAttempt(email=key, ip=ip, at=now))
        session.commit()
        raise Unauthenticated(*INVALID_CREDENTIALS)
    if uc.user_state(user) != "validated":
        raise Forbidden("auth.account_disabled", "Ce compte n'est pas actif.")
    repo.clear_failures(session, key)
    row = uc.open_session(session, user, now)
    uc.audit(session, "carte_signed_in", subject=user.id, actor=user.id)
    session.commit()
    return signed_in(session, user, row)


def signed_in(session, user: User, row: Session) -> dict:
    """What a carte sign-in returns (``status`` as uc.signed_in)."""
    account = session.get(CarteAccount, user.id)
    return {
        "status": uc.SIGN_IN_STATUS[row.mfa],
        "session_id": row.id,
        "expires_at": uc.iso(row.expires_at),
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
    session, identifier, now: dt.datetime | None = None, defer: uc.Defer = None
) -> dict:
    """« Mot de passe perdu »: a link to the account's contact address, through
    identity's reset flow (``identity.password_reset_requested``). The same
    answer in the same time whatever the identifier: the look-up and the link
    are ``defer``red until the answer is sent."""
    now = now or utcnow()
    identifier = normalise_identifier(identifier)[:32]
    if identifier:
        uc._run(defer, session, lambda s: send_password_reset(s, identifier, now))
    return dict(RESET_SENT)


def send_password_reset(session, identifier: str, now: dt.datetime) -> None:
    account = _by_identifier(session, identifier)
    user = session.get(User, account.user_id) if account else None
    if user is not None and uc.user_state(user) == "validated":
        token = uc.issue_token(session, user, "reset", now)
        uc.audit(session, "password_reset_requested", subject=user.id, actor=user.id)
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

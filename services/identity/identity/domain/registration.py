"""Validation of the registration form and of user records, all errors at once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from identity.domain import codes

ACCOUNT_TYPES = ("OFA", "OG")
ROLES = ("manager", "user")
MAX_USERS_PER_ORG = 5
MAX_MANAGERS_PER_ORG = 2
PASSWORD_MIN = 12
PASSWORD_MAX = 128
NAME_MAX = 100
EMAIL_MAX = 254
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 .()-]{6,20}$")

REQUIRED = "Ce champ est obligatoire."


def normalise_email(value: str) -> str:
    return (value or "").strip().lower()


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


def check_password(errors: dict, password, confirm, field: str = "password") -> None:
    if not isinstance(password, str) or not password:
        errors.setdefault(field, []).append(REQUIRED)
        return
    if len(password) < PASSWORD_MIN:
        errors.setdefault(field, []).append(
            f"Le mot de passe doit contenir au moins {PASSWORD_MIN} caractères."
        )
    elif len(password) > PASSWORD_MAX:
        errors.setdefault(field, []).append(
            f"Le mot de passe doit contenir au plus {PASSWORD_MAX} caractères."
        )
    elif password.isdigit() or password.isalpha() or len(set(password)) < 5:
        errors.setdefault(field, []).append(
            "Le mot de passe est trop simple : mêlez lettres, chiffres ou symboles."
        )
    if password != confirm:
        errors.setdefault(f"{field}_confirm", []).append(
            "La confirmation ne correspond pas au mot de passe."
        )


def check_person(errors: dict, data: dict) -> dict:
    """Names, phone and e-mail of a user; returns the cleaned values."""
    person = {}
    for key, label in (("last_name", "Nom"), ("first_name", "Prénom")):
        value = _text(data, key)
        if not value:
            errors.setdefault(key, []).append(REQUIRED)
        elif len(value) > NAME_MAX:
            errors.setdefault(key, []).append(f"{label} : {NAME_MAX} caractères au plus.")
        person[key] = value
    phone = _text(data, "phone")
    if phone and not _PHONE.match(phone):
        errors.setdefault("phone", []).append("Numéro de téléphone invalide.")
    person["phone"] = phone or None
    email = normalise_email(data.get("email") if isinstance(data.get("email"), str) else "")
    if not email:
        errors.setdefault("email", []).append(REQUIRED)
    elif len(email) > EMAIL_MAX or not _EMAIL.match(email):
        errors.setdefault("email", []).append("Adresse e-mail invalide.")
    person["email"] = email
    return person


@dataclass(frozen=True)
class Registration:
    account_type: str
    siret: str
    nda: str
    uai: str | None
    apprentice_count: int
    last_name: str
    first_name: str
    phone: str | None
    email: str
    password: str


def parse_registration(data: dict) -> tuple[Registration | None, dict]:
    """The guide's « Inscription » form; returns (registration, errors)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(data, dict):
        return None, {"_": ["Le formulaire est mal formé."]}

    account_type = _text(data, "account_type").upper()
    if not account_type:
        errors.setdefault("account_type", []).append(REQUIRED)
    elif account_type not in ACCOUNT_TYPES:
        errors.setdefault("account_type", []).append("Type de compte : OFA ou OG.")

    siret = codes.normalise_siret(_text(data, "siret"))
    if not siret:
        errors.setdefault("siret", []).append(REQUIRED)
    elif not codes.is_valid_siret(siret):
        errors.setdefault("siret", []).append(
            "SIRET invalide : 14 chiffres dont le dernier est une clé de contrôle."
        )

    nda = codes.normalise_nda(_text(data, "nda"))
    if not nda:
        errors.setdefault("nda", []).append(REQUIRED)
    elif not codes.is_valid_nda(nda):
        errors.setdefault("nda", []).append(
            "Numéro de déclaration d'activité invalide : 11 chiffres."
        )

    uai = codes.normalise_uai(_text(data, "uai")) or None
    if uai and not codes.is_valid_uai(uai):
        errors.setdefault("uai", []).append(
            "UAI invalide : 7 chiffres suivis de la lettre de contrôle (ex. 0750654D)."
        )

    raw_count = data.get("apprentice_count")
    count = None
    if raw_count is None or raw_count == "":
        errors.setdefault("apprentice_count", []).append(REQUIRED)
    else:
        try:
            if isinstance(raw_count, bool) or isinstance(raw_count, float):
                raise ValueError
            count = int(str(raw_count).strip())
            if count < 0 or count > 1_000_000:
                raise ValueError
        except ValueError:
            count = None
            errors.setdefault("apprentice_count", []).append(
                "Effectif d'apprentis : un nombre entier positif ou nul."
            )

    person = check_person(errors, data)
    email_confirm = normalise_email(
        data.get("email_confirm") if isinstance(data.get("email_confirm"), str) else ""
    )
    if not email_confirm:
        errors.setdefault("email_confirm", []).append(REQUIRED)
    elif person["email"] and email_confirm != person["email"]:
        errors.setdefault("email_confirm", []).append(
            "La confirmation ne correspond pas à l'adresse e-mail."
        )
    check_password(errors, data.get("password"), data.get("password_confirm"))

    if errors:
        return None, errors
    return Registration(
        account_type=account_type,
        siret=siret,
        nda=nda,
        uai=uai,
        apprentice_count=count,
        password=data["password"],
        **person,
    ), {}


# Quotas of an organisation (Karoussel guide, « Gestion des utilisateurs »): the
# one rule production uses, through quota_problem(). Only validated accounts
# that are neither rejected nor deactivated count: a pending self-registration
# takes its slot when a manager (or the agency) validates it, so that whoever
# knows a SIRET cannot fill an organisation's quota.

# Pending self-registrations (not validated yet): at most this many per
# organisation at a time, and this many registration attempts per e-mail
# address within REGISTRATION_WINDOW_HOURS; they expire after
# PENDING_REGISTRATION_DAYS (configuration, use_cases.pending_ttl()).
MAX_PENDING_PER_ORG = 3
MAX_REGISTRATIONS_PER_EMAIL = 3
REGISTRATION_WINDOW_HOURS = 24
PENDING_REGISTRATION_DAYS = 14


def quota_problem(
    active_users: int, active_managers: int, new_role: str, replacing_manager: bool = False
) -> str | None:
    """Why one more account (or one more manager) cannot be added, or None.

    ``active_users`` and ``active_managers`` count the organisation's accounts
    that take a slot, without the one being added or changed; ``new_role`` is
    the role it is to have. ``replacing_manager``: the account takes the place
    of a manager (so the managers' count does not grow)."""
    if active_users >= MAX_USERS_PER_ORG:
        return "quota.users"
    if new_role == "manager" and not replacing_manager and active_managers >= MAX_MANAGERS_PER_ORG:
        return "quota.managers"
    return None

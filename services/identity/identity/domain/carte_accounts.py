"""Carte des formations accounts: identifiers, kinds, scopes, issued
passwords and the administrators' form."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from identity.domain import registration as rules
from kit.codes import is_valid_uai as _is_valid_uai
from kit.codes import normalise_uai

if TYPE_CHECKING:
    from identity.models import CarteAccount

USER_ROLE = "carte"  # users.role of every carte account
EMAIL_PREFIX = "CARTE:"
KINDS = ("establishment", "network", "draaf", "reviewer", "admin")

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


def _check_network(clean: dict, account: CarteAccount | None, members: list[str]) -> dict:
    errors: dict[str, list[str]] = {}
    referent = clean.get("referent_uai", account.referent_uai if account else None)
    if referent and members and referent not in members:
        errors["referent_uai"] = ["L'établissement référent doit être membre du réseau."]
    return errors

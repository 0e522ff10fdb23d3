"""The request form of the guide's section 4, and its rules.

``parse_form`` checks the format of what was typed (a draft may be partial,
but what it holds must be well-formed); ``coherence`` checks fields against
each other when they are known; ``completeness`` lists what « Valider » still
needs. Each problem carries the field, a stable code and a French message, so
the form shows every error next to its field at once.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from carte.domain.codes import is_valid_uai, normalise_uai

REPORT_MAX = 5000
TEXT_MAX = 2000
NAME_MAX = 100
SITE_MAX = 300
CAPACITY_MAX = 999
PRIORITY_MAX = 999
REQUIRED = "Ce champ est obligatoire."

MEASURES = {
    "ouverture": "Ouverture",
    "fermeture": "Fermeture",
    "augmentation": "Augmentation de capacité",
    "diminution": "Diminution de capacité",
}
MODALITIES = {"S": "Scolaire", "M": "Public mixé"}
ZONES = {
    "local": "Bassin local",
    "departemental": "Départementale",
    "academique": "Académique",
    "regional": "Régionale",
    "national": "Nationale",
}
LABELS = {
    "referent_uai": "Code UAI de l'établissement référent",
    "concerned_uai": "Code UAI de l'établissement concerné",
    "training_site": "Site de formation (s'il est différent de celui de l'établissement)",
    "manager_name": "Nom du responsable du projet",
    "manager_phone": "Téléphone du responsable du projet",
    "manager_email": "Adresse mail du responsable du projet",
    "modality": "Modalité",
    "variant_id": "Diplôme",
    "measure": "Mesure demandée",
    "linked": "Votre projet fait-il référence à un autre projet ?",
    "linked_request_id": "Si oui, indiquez l'identifiant du projet concerné",
    "priority": "Priorité",
    "current_capacity": "Capacité d'accueil actuelle",
    "new_capacity": "Nouvelle capacité d'accueil",
    "first_filing": "Projet déposé pour la première fois",
    "previous_filing_year": "Si non, année du précédent dépôt",
    "cp_ca_date": "Date de présentation du projet au CP/CA",
    "recruitment_zones": "Zone de recrutement",
    "school_year": "Année scolaire de programmation",
    "works_needed": "Demande de travaux",
    "works_description": "Travaux demandés",
    "equipment_needed": "Demande d'équipements",
    "equipment_description": "Équipements demandés",
    "other_impacts": "Autres incidences",
    "opportunity_report": "Rapport d'opportunité",
}
# the inputs of the form, in its order (referent UAI and school year are prefilled)
FIELDS = tuple(k for k in LABELS if k not in ("referent_uai", "school_year"))

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PHONE = re.compile(r"^\+?[0-9 .()-]{6,20}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_TRUE = {"true", "oui", "1", "yes", "on"}
_FALSE = {"false", "non", "0", "no", "off"}


@dataclass(frozen=True)
class Problem:
    field: str
    code: str
    message: str


class Problems:
    """Every problem of a form, collected before anything is saved."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(Problem(field, code, message))

    def has(self, field: str) -> bool:
        return any(p.field == field for p in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def fields(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in self.items:
            out.setdefault(p.field, []).append(p.message)
        return out

    def codes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in self.items:
            out.setdefault(p.field, []).append(p.code)
        return out

    def code(self, default: str) -> str:
        """The one code of all problems, else ``default``."""
        distinct = {p.code for p in self.items}
        return distinct.pop() if len(distinct) == 1 else default

    def message(self, default: str) -> str:
        distinct = {p.code for p in self.items}
        return self.items[0].message if len(distinct) == 1 else default


# ---------------------------------------------------------------- formats


def _text(value) -> str:
    r"""Trimmed text with ``\n`` line breaks and no control character.

    A browser sends a textarea's line breaks as ``\r\n``: counted twice, they
    would push past a limit the page showed as met. NUL and other control
    characters are dropped (PostgreSQL refuses NUL in text). Anything but
    text or a number gives ``"\x00"``, which callers report as not text."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return "\x00"
    return _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _bool(value) -> bool | None | str:
    """True / False / None (empty), or the string ``"bad"``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return "bad"


def _int(value, low: int, high: int) -> int | None | str:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        return "bad"
    try:
        number = int(str(value).strip()) if not isinstance(value, float) else int(value)
    except ValueError:
        return "bad"
    return number if low <= number <= high else "bad"


def parse_date(value) -> dt.date | None | str:
    if value is None or value == "":
        return None
    text = str(value).strip()
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            parsed = dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
        return parsed if 1990 <= parsed.year <= 2100 else "bad"
    return "bad"


def parse_form(data) -> tuple[dict, Problems]:
    """The form's values as typed → clean values (None when empty) and the
    format problems. Unknown keys are ignored."""
    problems = Problems()
    if not isinstance(data, dict):
        problems.add("_", "carte.request_invalid", "Le formulaire est mal formé.")
        return {}, problems
    v: dict = {}

    def text(key: str, limit: int, code: str = "carte.field_too_long") -> None:
        value = _text(data.get(key))
        if value == "\x00":
            problems.add(key, "carte.field_invalid", "Texte attendu.")
            value = ""
        elif len(value) > limit:
            problems.add(key, code, f"{limit} caractères au plus ({len(value)} saisis).")
        v[key] = value or None

    uai = normalise_uai(_text(data.get("concerned_uai")).replace("\x00", "?"))
    if uai and not is_valid_uai(uai):
        problems.add(
            "concerned_uai",
            "carte.uai_invalid",
            f"Code UAI « {uai[:12]} » invalide : 7 chiffres suivis de la lettre de contrôle "
            "(ex. 0750654D).",
        )
    v["concerned_uai"] = uai or None
    text("training_site", SITE_MAX)
    text("manager_name", NAME_MAX)
    text("manager_phone", 20, "carte.phone_invalid")
    if v["manager_phone"] and not _PHONE.match(v["manager_phone"]):
        problems.add("manager_phone", "carte.phone_invalid", "Numéro de téléphone invalide.")
    text("manager_email", 254, "carte.email_invalid")
    if v["manager_email"]:
        v["manager_email"] = v["manager_email"].lower()
        if not _EMAIL.match(v["manager_email"]):
            problems.add("manager_email", "carte.email_invalid", "Adresse e-mail invalide.")

    modality = _text(data.get("modality")).upper()
    modality = {"SCOLAIRE": "S", "MIXTE": "M", "PUBLIC_MIXE": "M"}.get(modality, modality)
    if modality and modality not in MODALITIES:
        problems.add(
            "modality", "carte.choice_invalid", "Modalité : S (scolaire) ou M (public mixé)."
        )
    v["modality"] = modality or None

    variant = _int(data.get("variant_id"), 1, 2**31 - 1)
    if variant == "bad":
        problems.add("variant_id", "carte.diploma_unknown", "Choisissez un diplôme de la liste.")
        variant = None
    v["variant_id"] = variant

    measure = _text(data.get("measure")).lower()
    if measure and measure not in MEASURES:
        problems.add(
            "measure",
            "carte.choice_invalid",
            "Mesure : " + ", ".join(MEASURES) + ".",
        )
    v["measure"] = measure or None

    for key in ("linked", "first_filing", "works_needed", "equipment_needed"):
        value = _bool(data.get(key))
        if value == "bad":
            problems.add(key, "carte.choice_invalid", "Répondez par oui ou par non.")
            value = None
        v[key] = value

    linked = _int(data.get("linked_request_id"), 1, 2**31 - 1)
    if linked == "bad":
        problems.add(
            "linked_request_id",
            "carte.linked_request_not_found",
            "Identifiant de projet attendu (un nombre).",
        )
        linked = None
    v["linked_request_id"] = linked if v["linked"] else None

    priority = _int(data.get("priority"), 1, PRIORITY_MAX)
    if priority == "bad":
        problems.add(
            "priority",
            "carte.priority_invalid",
            f"Priorité : un nombre entier de 1 (la plus urgente) à {PRIORITY_MAX}.",
        )
        priority = None
    v["priority"] = priority

    for key in ("current_capacity", "new_capacity"):
        value = _int(data.get(key), 0, CAPACITY_MAX)
        if value == "bad":
            problems.add(
                key, "carte.capacity_invalid", f"Capacité : un nombre entier de 0 à {CAPACITY_MAX}."
            )
            value = None
        v[key] = value

    year = _int(data.get("previous_filing_year"), 1990, 2100)
    if year == "bad":
        problems.add("previous_filing_year", "carte.year_invalid", "Année attendue (ex. 2019).")
        year = None
    v["previous_filing_year"] = None if v["first_filing"] else year

    date = parse_date(data.get("cp_ca_date"))
    if date == "bad":
        problems.add(
            "cp_ca_date", "carte.date_invalid", "Date attendue (AAAA-MM-JJ ou JJ/MM/AAAA)."
        )
        date = None
    v["cp_ca_date"] = date

    zones = data.get("recruitment_zones")
    if zones in (None, ""):
        zones = []
    if isinstance(zones, str):
        zones = [zones]
    if not isinstance(zones, list) or any(z not in ZONES for z in zones):
        problems.add(
            "recruitment_zones",
            "carte.choice_invalid",
            "Zone de recrutement : " + ", ".join(ZONES) + ".",
        )
        zones = []
    v["recruitment_zones"] = [z for z in ZONES if z in zones]

    text("works_description", TEXT_MAX)
    text("equipment_description", TEXT_MAX)
    text("other_impacts", TEXT_MAX)
    report = _text(data.get("opportunity_report"))
    if report == "\x00":
        problems.add("opportunity_report", "carte.field_invalid", "Texte attendu.")
        report = ""
    elif len(report) > REPORT_MAX:
        problems.add(
            "opportunity_report",
            "carte.report_too_long",
            f"Le rapport d'opportunité compte {len(report)} caractères : {REPORT_MAX} au plus.",
        )
    v["opportunity_report"] = report or None
    return v, problems


# ---------------------------------------------------------------- rules between fields


def capacity_problem(measure: str | None, current: int | None, new: int | None) -> str | None:
    """Why the capacities do not fit the measure, or None."""
    if measure is None or current is None or new is None:
        return None
    if measure == "ouverture" and not (current == 0 and new > 0):
        return (
            "Une ouverture part d'une capacité actuelle de 0 vers une nouvelle capacité positive."
        )
    if measure == "fermeture" and not (current > 0 and new == 0):
        return (
            "Une fermeture part d'une capacité actuelle positive vers une nouvelle capacité de 0."
        )
    if measure == "augmentation" and not (0 < current < new):
        return "Une augmentation demande une nouvelle capacité supérieure à la capacité actuelle."
    if measure == "diminution" and not (0 < new < current):
        return (
            "Une diminution demande une nouvelle capacité positive, inférieure à la "
            "capacité actuelle (pour 0, choisissez « Fermeture »)."
        )
    return None


def coherence(v: dict, school_year: int, problems: Problems) -> None:
    """Rules between fields, checked whenever the fields are known."""
    why = capacity_problem(v.get("measure"), v.get("current_capacity"), v.get("new_capacity"))
    if why:
        problems.add("new_capacity", "carte.capacity_incoherent", why)
    year = v.get("previous_filing_year")
    if year is not None and year >= school_year:
        problems.add(
            "previous_filing_year",
            "carte.year_invalid",
            f"Le précédent dépôt est antérieur à la rentrée {school_year}.",
        )


def completeness(v: dict, problems: Problems) -> None:
    """What « Valider » requires (the guide's fields shown in red)."""
    required = [
        "concerned_uai",
        "manager_name",
        "manager_phone",
        "manager_email",
        "modality",
        "variant_id",
        "measure",
        "linked",
        "priority",
        "current_capacity",
        "new_capacity",
        "first_filing",
        "cp_ca_date",
        "works_needed",
        "equipment_needed",
        "opportunity_report",
    ]
    if v.get("linked"):
        required.append("linked_request_id")
    if v.get("first_filing") is False:
        required.append("previous_filing_year")
    if v.get("works_needed"):
        required.append("works_description")
    if v.get("equipment_needed"):
        required.append("equipment_description")
    for key in required:
        if v.get(key) is None and not problems.has(key):
            problems.add(key, "carte.field_required", REQUIRED)
    if not v.get("recruitment_zones") and not problems.has("recruitment_zones"):
        problems.add(
            "recruitment_zones", "carte.field_required", "Cochez au moins une zone de recrutement."
        )

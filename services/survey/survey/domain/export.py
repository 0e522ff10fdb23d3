"""The agency's export of the extracted data: one row per certification ×
establishment line of each organisation's latest transmission (one row with
blanks for an organisation that has not transmitted), safe to open in a
spreadsheet.

Formula injection (docs/architecture.md §4): any text a person typed (names, titles,
keys…) that starts with ``= + - @`` (or their full-width forms, or a tab or
carriage return) is prefixed with an apostrophe, and control characters
become spaces, so that no spreadsheet ever evaluates it.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from decimal import Decimal

from survey.domain.form import CHARGE_CATEGORIES, PRODUIT_CATEGORIES

_DANGEROUS_START = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\t", "\r")

HEADERS = [
    "Enquête",
    "Organisme",
    "SIRET",
    "UAI",
    "NDA",
    "Type de compte",
    "Organisme parent",
    "Statut",
    "Bloquée",
    "Date de dernier envoi",
    "Fichier",
    "Contact",
    "Courriel du contact",
    "Ligne",
    "Code diplôme",
    "Intitulé",
    "Code RNCP",
    "Niveau 2019",
    "Type",
    "N° d'établissement",
    "SIRET de l'établissement",
    "UAI de l'établissement",
    "Nom de l'établissement",
    "Nombre d'apprentis",
    *[f"Charges — {c.label}" for c in CHARGE_CATEGORIES],
    *[f"Produits — {c.label}" for c in PRODUIT_CATEGORIES],
]


def neutralise(value):
    """Text made inert for spreadsheets; other values unchanged."""
    if not isinstance(value, str):
        return value
    if value[:1] in ("\t", "\r"):
        value = "'" + value
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value)
    if text.startswith(_DANGEROUS_START) and not text.startswith("'"):
        text = "'" + text
    return text


def _amount(value) -> Decimal | None:
    """Amounts are stored in whole cents."""
    if value in (None, "") or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value) / 100
    return Decimal(str(value))


def rows_for(survey: dict) -> list[list]:
    """``survey``: {campaign, organisation: {...}, status_label, blocked,
    last_sent_at, file_name, values | None}."""
    org = survey["organisation"]
    head = [
        survey["campaign"],
        org.get("name"),
        org.get("siret"),
        org.get("uai"),
        org.get("nda"),
        org.get("account_type"),
        org.get("parent_name"),
        survey["status_label"],
        "oui" if survey["blocked"] else "non",
        survey.get("last_sent_at") or "",
        survey.get("file_name") or "",
    ]
    values = survey.get("values")
    if not values:
        return [[neutralise(v) for v in head] + [""] * (len(HEADERS) - len(head))]
    contact = values.get("contact") or {}
    head += [contact.get("name"), contact.get("email")]
    establishments = {e["number"]: e for e in values.get("establishments") or []}
    rows = []
    for line in values.get("lines") or []:
        est = establishments.get(line.get("establishment")) or {}
        row = head + [
            line.get("line"),
            line.get("code"),
            line.get("title"),
            line.get("rncp"),
            line.get("level"),
            line.get("type"),
            line.get("establishment"),
            est.get("siret"),
            est.get("uai"),
            est.get("name"),
            line.get("apprentices"),
            *[_amount((line.get("charges") or {}).get(c.key)) for c in CHARGE_CATEGORIES],
            *[_amount((line.get("produits") or {}).get(c.key)) for c in PRODUIT_CATEGORIES],
        ]
        rows.append([neutralise(v) for v in row])
    return rows


def for_xlsx(rows: list[list]) -> list[list]:
    return [[float(v) if isinstance(v, Decimal) else v for v in row] for row in rows]


def to_csv(rows: list[list]) -> bytes:
    """UTF-8 with BOM, ``;`` separators and decimal commas: what French
    spreadsheets open without an import dialog."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([neutralise(h) for h in HEADERS])
    for row in rows:
        writer.writerow(
            [
                f"{v:.2f}".replace(".", ",") if isinstance(v, Decimal) else ("" if v is None else v)
                for v in row
            ]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")

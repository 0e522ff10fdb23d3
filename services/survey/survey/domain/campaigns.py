"""Campaigns ("enquêtes") and the life of one organisation's survey: who a
campaign applies to, its dates, the statuses and their French labels.

Dates are calendar days in France (Europe/Paris): a campaign closing on
15/07/2021 accepts transmissions until that day ends.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")

FORM_TYPES = ("CFA",)
TARGETS = ("all", "OFA", "OG")
TARGET_LABELS = {"all": "Tous les organismes validés", "OFA": "OFA", "OG": "OG CFA"}

NOT_DOWNLOADED = "not_downloaded"
DOWNLOADED = "downloaded"
SUBMITTED = "submitted"
STATUS_LABELS = {
    NOT_DOWNLOADED: "non téléchargée",
    DOWNLOADED: "téléchargée",
    SUBMITTED: "déposée",
}

NAME_MAX = 120
DETAILS_MAX = 1000
DIRECTION_MAX = 100


def today_in_france(now: dt.datetime) -> dt.date:
    return now.astimezone(PARIS).date()


def french_date(value: dt.date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def parse_date(value) -> dt.date | None:
    """``2021-03-23`` or ``23/03/2021``; None when missing or malformed."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class CampaignInput:
    name: str
    details: str
    form_type: str
    direction: str
    online_on: dt.date
    transmission_opens_on: dt.date
    return_due_on: dt.date
    closes_on: dt.date
    target: str


def _clean_text(value, limit: int) -> str | None:
    if value is None:
        return ""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if len(text) > limit or any(unicodedata.category(ch) == "Cc" for ch in text):
        return None
    return text


DATE_FIELDS = {
    "online_on": "Date de mise en ligne",
    "transmission_opens_on": "Date d'ouverture de la transmission",
    "return_due_on": "Date de retour souhaité",
    "closes_on": "Date de clôture",
}


def parse_campaign(data: dict) -> tuple[CampaignInput | None, dict[str, list[str]]]:
    """The agency's « Nouvelle enquête » form; every problem at once."""
    errors: dict[str, list[str]] = {}
    if not isinstance(data, dict):
        return None, {"campaign": ["Les informations de l'enquête sont mal formées."]}

    def error(field, message):
        errors.setdefault(field, []).append(message)

    name = _clean_text(data.get("name"), NAME_MAX)
    if not name:
        error("name", f"Le nom de l'enquête est obligatoire ({NAME_MAX} caractères au plus).")
    details = _clean_text(data.get("details"), DETAILS_MAX)
    if details is None:
        error("details", f"{DETAILS_MAX} caractères au plus.")
    direction = _clean_text(data.get("direction"), DIRECTION_MAX)
    if direction is None:
        error("direction", f"{DIRECTION_MAX} caractères au plus.")
    form_type = data.get("form_type") or "CFA"
    if form_type not in FORM_TYPES:
        error("form_type", "Type de formulaire inconnu (CFA).")
    target = data.get("target") or "all"
    if target not in TARGETS:
        error("target", "Destinataires : all (tous les organismes validés), OFA ou OG.")
    dates: dict[str, dt.date] = {}
    for field, label in DATE_FIELDS.items():
        parsed = parse_date(data.get(field))
        if parsed is None:
            error(field, f"{label} obligatoire (AAAA-MM-JJ ou JJ/MM/AAAA).")
        else:
            dates[field] = parsed
    order = list(DATE_FIELDS)
    for before, after in zip(order, order[1:], strict=False):
        if before in dates and after in dates and dates[after] < dates[before]:
            error(
                after,
                f"{DATE_FIELDS[after]} ne peut pas précéder la "
                f"{DATE_FIELDS[before][0].lower() + DATE_FIELDS[before][1:]}.",
            )
    if errors:
        return None, errors
    return (
        CampaignInput(
            name=name,
            details=details or "",
            form_type=form_type,
            direction=direction or "",
            target=target,
            **dates,
        ),
        {},
    )


def applies_to(target: str, account_type: str | None) -> bool:
    return target == "all" or target == account_type


def is_online(online_on: dt.date, today: dt.date) -> bool:
    return online_on <= today


def transmission_state(opens_on: dt.date, closes_on: dt.date, today: dt.date) -> str:
    """``not_open`` | ``open`` | ``closed``."""
    if today < opens_on:
        return "not_open"
    if today > closes_on:
        return "closed"
    return "open"


def page_label(page: int, pages: int, total: int) -> str:
    """« Page 1 sur 2 (95 lignes) »."""
    lines = "1 ligne" if total == 1 else f"{total} lignes"
    return f"Page {page} sur {max(pages, 1)} ({lines})"


_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


def safe_file_part(text: str) -> str:
    return " ".join(_UNSAFE_NAME.sub("_", text or "").split()).strip(" .") or "organisme"


def transmission_file_name(campaign_name: str, org_name: str, at: dt.datetime) -> str:
    """The guide's pattern: ``Compte cfa_CFA 1 - 20210310_1225.xlsx``."""
    stamp = at.astimezone(PARIS).strftime("%Y%m%d_%H%M")
    name = f"{safe_file_part(campaign_name)}_{safe_file_part(org_name)}"[:150]
    return f"{name} - {stamp}.xlsx"

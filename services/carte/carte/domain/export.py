"""What an export of validated requests holds, and how user-entered text is
made safe for spreadsheets (docs/architecture.md §4: no formula injection).

A cell that starts with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage
return, which some programs skip before reading a formula) gets a leading
apostrophe; control characters are removed (line breaks are kept).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# (header, key of the flat export row) in the order of the form
COLUMNS = (
    ("Id", "id"),
    ("Campagne", "school_year_label"),
    ("Statut", "status_label"),
    ("Validée le", "validated_at"),
    ("Déposée par", "filer_identifier"),
    ("UAI référent", "referent_uai"),
    ("UAI concerné", "concerned_uai"),
    ("Académie", "academy_label"),
    ("Département", "department"),
    ("Site de formation", "training_site"),
    ("Responsable du projet", "manager_name"),
    ("Téléphone", "manager_phone"),
    ("Courriel", "manager_email"),
    ("Modalité", "modality_label"),
    ("Niveau", "level_label"),
    ("Code diplôme", "diploma_code"),
    ("RNCP", "rncp"),
    ("Diplôme", "diploma_label"),
    ("Mesure", "measure_label"),
    ("Projet lié", "linked_label"),
    ("Id du projet lié", "linked_request_id"),
    ("Priorité", "priority"),
    ("Capacité actuelle", "current_capacity"),
    ("Nouvelle capacité", "new_capacity"),
    ("Premier dépôt", "first_filing_label"),
    ("Année du précédent dépôt", "previous_filing_year"),
    ("Date CP/CA", "cp_ca_date"),
    ("Zones de recrutement", "recruitment_zones_label"),
    ("Travaux", "works_label"),
    ("Équipements", "equipment_label"),
    ("Autres incidences", "other_impacts"),
    ("Rapport d'opportunité", "opportunity_report"),
    ("Annexes", "annex_count"),
)


def safe_cell(value):
    """Numbers stay numbers; text loses control characters and cannot start a formula."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = _CONTROL.sub("", str(value))
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text


def safe_row(row: dict) -> list:
    return [safe_cell(row.get(key)) for _header, key in COLUMNS]


def headers() -> list[str]:
    return [header for header, _key in COLUMNS]


def to_csv(rows: list[dict]) -> bytes:
    """UTF-8 with a BOM and ``;`` separators: what French spreadsheet programs open."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(headers())
    for row in rows:
        writer.writerow(safe_row(row))
    return ("\ufeff" + out.getvalue()).encode("utf-8")

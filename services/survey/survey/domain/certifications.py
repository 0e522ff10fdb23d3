"""The certification list of « Données à renseigner »: its columns, the checks
of one row (edited on screen) and of a whole imported table (every problem
reported at once, addressed to sheet, row and column, with how to fix it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from survey.domain.codes import (
    BadCode,
    as_text,
    parse_cfd,
    parse_level,
    parse_positive_int,
    parse_rncp,
)
from survey.domain.problems import Problem

TEMPLATE_NAME = "Liste-certifications.xlsx"
SHEET = "Certifications"
MAX_ROWS = 20_000
MAX_CERTIFICATIONS_PER_FORM = 2_000
TITLE_MAX = 255
TYPE_MAX = 50


@dataclass(frozen=True)
class Column:
    field: str
    header: str
    match: str  # folded prefix a header must start with
    width: int


COLUMNS = (
    Column("code", "Code Diplôme", "codediplome", 14),
    Column("title", "Intitulé", "intitule", 50),
    Column("rncp", "Code RNCP", "codernc", 14),
    Column("level", "Niveau 2019", "niveau", 12),
    Column("type", "Type", "type", 14),
    Column(
        "establishments",
        "Nombre d'établissements sur lesquels la formation correspondante est délivrée",
        "nombre",
        30,
    ),
)
FIELDS = tuple(c.field for c in COLUMNS)
REQUIRED = {  # an empty cell: what to enter there
    "code": "code diplôme obligatoire : 8 caractères (ex. 46T31203).",
    "title": "intitulé obligatoire : saisissez l'intitulé du diplôme ou du titre.",
    "rncp": "code RNCP obligatoire : RNCP suivi de 3 à 5 chiffres (ex. RNCP37098), un code RS "
    "ou NR si la certification n'a pas de code.",
    "level": "niveau obligatoire : niveau3, niveau4, niveau5, niveau6, niveau7 ou niveau8.",
    "type": "type obligatoire (ex. BTS, CAP, MC, TP).",
    "establishments": "nombre d'établissements obligatoire : nombre entier, 1 ou plus.",
}
LABELS = {c.field: c.header for c in COLUMNS}
SHORT_LABELS = dict(LABELS, establishments="Nombre d'établissements")


def fold(text: str) -> str:
    """Lower case, no accents, letters and digits only: header matching."""
    text = unicodedata.normalize("NFKD", as_text(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", "", text)


def check_row(data: dict, *, establishments_total: int | None = None) -> tuple[dict, dict]:
    """One row → (normalised certification, {field: French message})."""
    if not isinstance(data, dict):
        return {}, {"row": "Ligne mal formée."}
    cert: dict = {}
    errors: dict[str, str] = {}

    def take(field, parse):
        raw = data.get(field)
        if raw is None or as_text(raw) == "":
            errors[field] = REQUIRED[field]
            return
        try:
            cert[field] = parse(raw)
        except BadCode as exc:
            errors[field] = exc.message

    take("code", parse_cfd)
    take("title", lambda v: _text(v, TITLE_MAX))
    take("rncp", parse_rncp)
    take("level", parse_level)
    take("type", lambda v: _text(v, TYPE_MAX).upper())
    take("establishments", parse_positive_int)
    count = cert.get("establishments")
    if count is not None and establishments_total and count > establishments_total:
        errors["establishments"] = (
            f"{count} établissements indiqués, plus que le nombre d'établissements total "
            f"({establishments_total}) : corrigez l'un ou l'autre."
        )
    return cert, errors


def _text(value, limit: int) -> str:
    text = " ".join(as_text(value).split())
    if len(text) > limit:
        raise BadCode(f"texte trop long ({len(text)} caractères, {limit} au plus).")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise BadCode("caractères de contrôle interdits.")
    return text


def _header_problems(header: list) -> tuple[list[int], list[Problem]]:
    """Positions of the expected columns in the header row (row 1)."""
    folded = [fold(h) for h in header]
    positions, problems = [], []
    for expected_index, column in enumerate(COLUMNS):
        found = next((i for i, h in enumerate(folded) if h.startswith(column.match)), None)
        if found is None:
            problems.append(
                Problem(
                    SHEET,
                    1,
                    expected_index + 1,
                    f"colonne « {column.header} » absente : utilisez le modèle "
                    f"{TEMPLATE_NAME} sans modifier sa première ligne.",
                    SHORT_LABELS[column.field],
                )
            )
        positions.append(found if found is not None else -1)
    return positions, problems


def parse_table(
    rows: list[list], *, sheet: str = SHEET, establishments_total: int | None = None
) -> tuple[list[dict], list[Problem]]:
    """An imported sheet (rows of cell values, row 1 the header) →
    (certifications, problems). Blank rows are skipped; a code diplôme given
    twice is reported on its second row."""
    if not rows or not any(as_text(v) for v in rows[0]):
        return [], [
            Problem(
                sheet,
                1,
                0,
                "la première ligne doit contenir les titres des colonnes du modèle "
                f"{TEMPLATE_NAME}.",
            )
        ]
    positions, problems = _header_problems(rows[0])
    problems = [Problem(sheet, p.row, p.col, p.message, p.column_label) for p in problems]
    if problems:
        return [], problems
    certs: list[dict] = []
    first_row_of: dict[str, int] = {}
    data_rows = 0
    for index, row in enumerate(rows[1:], start=2):
        values = {
            column.field: (row[pos] if 0 <= pos < len(row) else None)
            for column, pos in zip(COLUMNS, positions, strict=True)
        }
        if not any(as_text(v) for v in values.values()):
            continue
        data_rows += 1
        if data_rows > MAX_ROWS:
            problems.append(
                Problem(sheet, index, 0, f"la liste dépasse {MAX_ROWS} certifications.")
            )
            break
        cert, errors = check_row(values, establishments_total=establishments_total)
        code = cert.get("code")
        if code and code in first_row_of:
            errors.setdefault(
                "code",
                f"code diplôme {code} déjà présent ligne {first_row_of[code]} : "
                "une ligne par certification.",
            )
        elif code:
            first_row_of[code] = index
        for column, pos in zip(COLUMNS, positions, strict=True):
            if column.field in errors:
                problems.append(
                    Problem(
                        sheet,
                        index,
                        pos + 1,
                        _with_value(errors[column.field], values[column.field]),
                        SHORT_LABELS[column.field],
                    )
                )
        if not errors:
            certs.append(cert)
    if not certs and not problems:
        problems.append(
            Problem(sheet, 2, 0, "aucune certification : complétez au moins une ligne.")
        )
    return certs, problems


def _with_value(message: str, raw) -> str:
    shown = as_text(raw)
    if not shown:
        return message
    if len(shown) > 40:
        shown = shown[:40] + "…"
    return f"« {shown} » : {message}"


def download_gate(
    establishments_count: int | None, trainings_count: int | None, establishments: list[tuple]
) -> list[str]:
    """The download gate of « Données à renseigner »: what they still lack
    before the form can be made (nothing: the download is open).

    ``establishments``: (certification code, its number of establishments)
    for each certification of the list."""
    missing = []
    if not establishments_count:
        missing.append("le nombre d'établissements total")
    if not trainings_count:
        missing.append("le nombre de formations total")
    if not establishments:
        missing.append("la liste des certifications")
    elif establishments_count:
        too_many = [code for code, count in establishments if count > establishments_count]
        if too_many:
            which = "la certification" if len(too_many) == 1 else "les certifications"
            missing.append(
                "un nombre d'établissements au plus égal au nombre d'établissements total pour "
                f"{which} {', '.join(too_many[:5])}" + (" …" if len(too_many) > 5 else "")
            )
    return missing

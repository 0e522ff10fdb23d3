"""Reads the administrator's catalogue file (CSV or XLSX) into rows of text.

The carte service's only spreadsheet reader (writing the reviewers' export is
``carte.xlsx``, with openpyxl): python-calamine for XLSX (fast and read-only;
the files service has already checked the archive for the usual traps before
this sees it), the standard csv module for CSV. Failures become
``Unreadable`` with a French message, never a 500.
"""

from __future__ import annotations

import csv
import io

MAX_ROWS = 20_001  # header + 20,000 rows
MAX_COLUMNS = 30
MAX_CELL = 1000


class Unreadable(ValueError):
    """The file cannot be read as a table; ``str(exc)`` says why, in French."""


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    if len(text) > MAX_CELL:
        raise Unreadable(f"Une cellule dépasse {MAX_CELL} caractères.")
    return text


def _bounded(rows) -> list[list[str]]:
    table = []
    for number, row in enumerate(rows, start=1):
        if number > MAX_ROWS:
            raise Unreadable(f"Le fichier dépasse {MAX_ROWS - 1:,} lignes.".replace(",", "\u202f"))
        row = list(row)
        while row and (row[-1] is None or row[-1] == ""):
            row.pop()
        if len(row) > MAX_COLUMNS:
            raise Unreadable(f"La ligne {number} dépasse {MAX_COLUMNS} colonnes.")
        table.append([_cell(c) for c in row])
    return table


def read_csv(content: bytes) -> list[list[str]]:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1252 decodes nearly anything
        raise Unreadable("Encodage non reconnu : enregistrez le fichier en UTF-8.")
    if "\x00" in text:
        raise Unreadable("Ce fichier n'est pas un fichier texte CSV.")
    first = text.split("\n", 1)[0]
    delimiter = max((";", ",", "\t"), key=first.count)
    try:
        return _bounded(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error:  # its messages are English and name no line
        raise Unreadable(
            "CSV mal formé : une cellule dépasse la taille permise, ou un guillemet "
            "n'est pas refermé."
        ) from None


def read_xlsx(content: bytes) -> list[list[str]]:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(content))
        if not workbook.sheet_names:
            raise Unreadable("Le classeur ne contient aucune feuille.")
        sheet = workbook.get_sheet_by_index(0)
        rows = sheet.iter_rows()
        return _bounded(rows)
    except Unreadable:
        raise
    except Exception as exc:  # noqa: BLE001 - calamine raises its own error types
        raise Unreadable(f"Classeur XLSX illisible ({type(exc).__name__}).") from None


def read_table(name: str, content: bytes) -> list[list[str]]:
    """By extension: ``.csv`` or ``.xlsx``."""
    lowered = (name or "").lower()
    if lowered.endswith(".csv"):
        return read_csv(content)
    if lowered.endswith(".xlsx"):
        return read_xlsx(content)
    raise Unreadable("Format non pris en charge : déposez un fichier .xlsx ou .csv.")

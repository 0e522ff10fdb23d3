"""Spreadsheet problems addressed to a sheet, a row and a column.

Every check of an imported list or of a transmitted form collects these
instead of stopping at the first one, so that people fix everything at once.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REPORTED = 500  # keeps an answer readable and bounded


def column_letter(index: int) -> str:
    """1 → A, 27 → AA, 16384 → XFD."""
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def cell_ref(sheet: str, row: int, col: int) -> str:
    return f"{sheet}!{column_letter(col)}{row}"


@dataclass(frozen=True)
class Problem:
    """One problem; ``row`` and ``col`` are 1-based, ``col`` 0 for a whole row."""

    sheet: str
    row: int
    col: int
    message: str
    column_label: str | None = None

    @property
    def ref(self) -> str:
        if self.col:
            return cell_ref(self.sheet, self.row, self.col)
        return f"{self.sheet}!{self.row}:{self.row}" if self.row else self.sheet

    @property
    def text(self) -> str:
        return f"{self.ref} : {self.message}"

    def located_text(self) -> str:
        """The long form: « Feuille « X », ligne 5, colonne C (Code RNCP) : … »."""
        where = f"Feuille « {self.sheet} »"
        if self.row:
            where += f", ligne {self.row}"
        if self.col:
            where += f", colonne {column_letter(self.col)}"
            if self.column_label:
                where += f" ({self.column_label})"
        return f"{where} : {self.message}"


def details(problems: list[Problem], *, located: bool = False) -> dict:
    """Error details: ``fields`` keyed by cell reference (the gateway shows them
    as ``errors``), ``problems`` as sentences, ``count`` of all problems."""
    shown = problems[:MAX_REPORTED]
    fields: dict[str, list[str]] = {}
    for problem in shown:
        fields.setdefault(problem.ref, []).append(problem.message)
    return {
        "fields": fields,
        "problems": [p.located_text() if located else p.text for p in shown],
        "count": len(problems),
        "truncated": len(problems) > len(shown),
    }


def count_label(count: int) -> str:
    return "1 erreur" if count == 1 else f"{count} erreurs"

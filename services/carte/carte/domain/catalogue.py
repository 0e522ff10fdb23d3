"""The diploma catalogue as the administrator imports it: one row per
duration variant (level → diploma → « en N ans »), every problem reported at
once with its row and column, the way a person fixes a spreadsheet.

Input is a table of strings (``carte.tabular`` reads CSV and XLSX into one);
output is the tree to store, or the list of problems.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from carte.domain import codes

MAX_ROWS = 20_000
MAX_PROBLEMS = 500
TITLE_MAX = 200
DURATIONS = range(1, 5)
LEVEL_LABELS = {
    "niveau3": "Niveau 3 (CAP, CAP agricole…)",
    "niveau4": "Niveau 4 (baccalauréat professionnel, BP, BMA…)",
    "niveau5": "Niveau 5 (BTS, BTSA, DEUST…)",
    "niveau6": "Niveau 6 (licence professionnelle, BUT…)",
    "niveau7": "Niveau 7 (master, diplôme d'ingénieur…)",
    "niveau8": "Niveau 8 (doctorat)",
}
# column → accepted headers (compared without accents, case or punctuation)
COLUMNS = {
    "niveau": ("niveau", "level", "niveau_2019"),
    "diplome": ("diplome", "intitule", "libelle", "intitule_du_diplome", "formation"),
    "code_diplome": ("code_diplome", "cfd", "code_formation_diplome", "code"),
    "rncp": ("rncp", "code_rncp", "fiche_rncp"),
    "duree": ("duree", "duree_annees", "duree_en_annees", "nombre_d_annees"),
}
REQUIRED_COLUMNS = ("niveau", "diplome", "code_diplome", "duree")


@dataclass(frozen=True)
class Problem:
    row: int  # the spreadsheet's row number (the header is row 1)
    column: str | None  # the header as written in the file
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class DiplomaRow:
    cfd: str
    title: str
    level: str
    rncp: str | None
    durations: list[int] = field(default_factory=list)


def fold(text: str) -> str:
    """Lower case, no accents, words joined by ``_``: for headers and search."""
    text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def variant_label(title: str, duration: int) -> str:
    return f"{title} en {duration} an{'s' if duration > 1 else ''}"


def parse_level(value: str) -> str | None:
    match = re.fullmatch(r"(?:niveau)?_?([3-8])", fold(value))
    return f"niveau{match.group(1)}" if match else None


def parse_duration(value: str) -> int | None:
    """``2``, ``2 ans``, ``1 an`` or a spreadsheet number ``2.0``."""
    match = re.fullmatch(r"([1-9])(?:[.,]0+)?\s*(?:ans?)?", (value or "").strip().lower())
    if not match:
        return None
    number = int(match.group(1))
    return number if number in DURATIONS else None


def _locate(header: list[str]) -> tuple[dict[str, int], dict[str, str], list[Problem]]:
    index: dict[str, int] = {}
    names: dict[str, str] = {}
    problems: list[Problem] = []
    for position, raw in enumerate(header):
        key = fold(raw)
        for column, aliases in COLUMNS.items():
            if key in aliases:
                if column in index:
                    problems.append(Problem(1, raw, f"Colonne en double : « {raw} »."))
                else:
                    index[column], names[column] = position, raw
    for column in REQUIRED_COLUMNS:
        if column not in index:
            problems.append(
                Problem(
                    1,
                    column,
                    f"Colonne « {column} » absente : la première ligne doit nommer les "
                    "colonnes niveau, diplome, code_diplome, duree (et rncp si besoin).",
                )
            )
    return index, names, problems


def parse_catalogue(rows: list[list[str]]) -> tuple[list[DiplomaRow], list[Problem]]:
    """Rows (header first) → diplomas with their durations, or every problem."""
    if not rows:
        return [], [Problem(1, None, "Le fichier est vide.")]
    if len(rows) - 1 > MAX_ROWS:
        return [], [Problem(1, None, f"{MAX_ROWS} lignes au plus (hors en-tête).")]
    index, names, problems = _locate([str(c or "") for c in rows[0]])
    if problems:
        return [], problems
    diplomas: dict[str, DiplomaRow] = {}
    seen: dict[tuple[str, int], int] = {}
    first_row: dict[str, int] = {}

    def cell(row: list[str], column: str) -> str:
        position = index.get(column)
        if position is None or position >= len(row) or row[position] is None:
            return ""
        return str(row[position]).strip()

    def problem(number: int, column: str, message: str) -> None:
        problems.append(Problem(number, names.get(column, column), message))

    for offset, row in enumerate(rows[1:], start=2):
        if not any(str(c or "").strip() for c in row):
            continue  # blank line
        level = parse_level(cell(row, "niveau"))
        if level is None:
            problem(offset, "niveau", "Niveau attendu de 3 à 8 (ex. « 4 » ou « niveau4 »).")
        title = re.sub(r"\s+", " ", cell(row, "diplome"))
        if not title:
            problem(offset, "diplome", "L'intitulé du diplôme est obligatoire.")
        elif len(title) > TITLE_MAX:
            problem(offset, "diplome", f"Intitulé : {TITLE_MAX} caractères au plus.")
        raw_cfd = cell(row, "code_diplome")
        if raw_cfd.endswith(".0") and raw_cfd[:-2].isdigit():
            raw_cfd = raw_cfd[:-2]  # a code read as a spreadsheet number
        cfd = codes.normalise_cfd(raw_cfd)
        if not cfd:
            problem(offset, "code_diplome", "Le code diplôme est obligatoire.")
        elif not codes.is_valid_cfd(cfd):
            problem(
                offset,
                "code_diplome",
                f"Code diplôme « {raw_cfd[:20]} » invalide : 8 caractères (3 lettres ou "
                "chiffres, 3 chiffres, 2 lettres ou chiffres, ex. 40025214) ou 7 chiffres.",
            )
            cfd = ""
        rncp = None
        raw_rncp = cell(row, "rncp")
        if raw_rncp.endswith(".0") and raw_rncp[:-2].isdigit():
            raw_rncp = raw_rncp[:-2]
        if raw_rncp:
            rncp = codes.normalise_rncp(raw_rncp)
            if rncp is None:
                problem(
                    offset,
                    "rncp",
                    f"Code RNCP « {raw_rncp[:20]} » invalide : RNCP suivi de 3 à 5 chiffres "
                    "(ex. RNCP37098) ou un code RS.",
                )
        duration = parse_duration(cell(row, "duree"))
        if duration is None:
            problem(offset, "duree", "Durée attendue en années, de 1 à 4 (ex. « 2 »).")
        if len(problems) >= MAX_PROBLEMS:
            problems.append(Problem(offset, None, "Trop d'erreurs : la vérification s'arrête ici."))
            break
        if not (cfd and title and level and duration):
            continue
        known = diplomas.get(cfd)
        if known is None:
            diplomas[cfd] = DiplomaRow(cfd, title, level, rncp, [duration])
            first_row[cfd] = offset
            seen[(cfd, duration)] = offset
            continue
        if fold(known.title) != fold(title) or known.level != level:
            problem(
                offset,
                "code_diplome",
                f"Le code diplôme {cfd} désigne déjà « {known.title} » ({known.level}) "
                f"à la ligne {first_row[cfd]}.",
            )
        elif (cfd, duration) in seen:
            problem(
                offset,
                "duree",
                f"Doublon : {variant_label(title, duration)} figure déjà à la ligne "
                f"{seen[(cfd, duration)]}.",
            )
        else:
            seen[(cfd, duration)] = offset
            known.durations.append(duration)
            known.rncp = known.rncp or rncp
    if not diplomas and not problems:
        problems.append(Problem(2, None, "Aucune formation dans le fichier."))
    return (list(diplomas.values()) if not problems else []), problems

"""The survey form as data: what each sheet holds, which cells are input
cells, the structure digest, the signed metadata, and the checks of a
filled form read back.

The layout is a pure function of a *snapshot* (the organisation's identity,
the campaign, the « données à renseigner ») kept with each generated form
version, so the very same cells can be rebuilt when the form comes back.
``survey.xlsx`` renders a layout with openpyxl and reads workbooks back into
a ``ReadBook``; everything else lives here.

Sheets (docs/architecture.md §5): Identité → Certifications → Charges → Produits → Clés
de répartition → Note explicative, plus a very hidden ``meta`` sheet holding
the signed metadata. Charges and produits have one block (a row) per
certification × establishment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from survey.domain.codes import BadCode, as_text, parse_siret, parse_uai
from survey.domain.problems import Problem

FORMAT = "karoussel-form-1"
OFFICIAL = "official"
WORKING = "working"
PURPOSES = (OFFICIAL, WORKING)

IDENTITY = "Identité"
CERTIFICATIONS = "Certifications"
CHARGES = "Charges"
PRODUITS = "Produits"
KEYS = "Clés de répartition"
NOTE = "Note explicative"
META = "meta"
SHEETS = (IDENTITY, CERTIFICATIONS, CHARGES, PRODUITS, KEYS, NOTE)

MAX_LINES = 5_000  # certification × establishment rows of one form
MAX_AMOUNT = 100_000_000_000  # 100 billion euros
MAX_COUNT = 1_000_000
TEXT_MAX = 500


@dataclass(frozen=True)
class Category:
    key: str
    label: str
    indirect: bool = False


CHARGE_CATEGORIES = (
    Category("personnel_formation", "Personnel de formation (formateurs)"),
    Category("accompagnement", "Accompagnement et suivi des apprentis"),
    Category("sous_traitance", "Sous-traitance pédagogique"),
    Category("achats_pedagogiques", "Achats et fournitures pédagogiques"),
    Category(
        "frais_annexes", "Frais annexes (premier équipement, hébergement, restauration, mobilité)"
    ),
    Category("personnel_structure", "Personnel de direction et administratif", True),
    Category("locaux", "Locaux et charges locatives", True),
    Category("amortissements", "Dotations aux amortissements", True),
    Category("autres_indirectes", "Autres charges indirectes", True),
)
PRODUIT_CATEGORIES = (
    Category("opco_npec", "Prise en charge des contrats par les OPCO (niveaux de prise en charge)"),
    Category("opco_frais_annexes", "Frais annexes pris en charge par les OPCO"),
    Category("regions", "Financements des régions"),
    Category("etat", "Aides de l'État et autres financements publics"),
    Category("entreprises", "Contributions des entreprises"),
    Category("autres_produits", "Autres produits"),
)
INDIRECT = tuple(c for c in CHARGE_CATEGORIES if c.indirect)

NOTE_TEXT = (
    "Note explicative du formulaire d'enquête",
    "",
    "Ce formulaire recueille la comptabilité analytique de l'activité d'apprentissage de "
    "l'organisme (arrêté du 21 juillet 2020 modifié) : les charges et les produits de "
    "l'exercice, par certification et par établissement.",
    "",
    "1. Identité : vérifiez les informations de l'organisme (issues de votre inscription), "
    "indiquez la personne à contacter, les totaux de votre comptabilité générale pour "
    "l'activité d'apprentissage et, pour chaque établissement, son SIRET, son UAI et son nom.",
    "2. Certifications : chaque certification déclarée dans « Données à renseigner » occupe "
    "autant de lignes que d'établissements où elle est délivrée ; indiquez pour chaque ligne "
    "le numéro de l'établissement (feuille Identité) et le nombre d'apprentis.",
    "3. Charges et 4. Produits : montants en euros, positifs ou nuls, pour chaque ligne. Une "
    "cellule vide vaut 0. Les sommes des charges et des produits doivent être égales aux "
    "totaux de la comptabilité générale indiqués sur la feuille Identité.",
    "5. Clés de répartition : pour chaque charge indirecte, le montant total réparti (égal à "
    "la somme de la colonne correspondante de la feuille Charges), la clé utilisée (nombre "
    "d'apprentis, heures de formation, surfaces…) et son mode de calcul.",
    "",
    "Seules les cellules jaunes peuvent être complétées ; n'y saisissez pas de formule. Ne "
    "modifiez ni le nom ni l'ordre des feuilles. Seul ce formulaire préformaté peut être "
    "déposé dans « Transmission enquêtes » par un gestionnaire de compte ; la version de "
    "travail sert à préparer vos chiffres et ne peut pas être déposée.",
    "Toutes les erreurs d'un dépôt sont signalées en une fois, avec la référence de la "
    "cellule concernée (par exemple « Charges!E12 : montant négatif »).",
)


@dataclass(frozen=True)
class Input:
    """An input cell: its kind, whether it must be filled, its label."""

    kind: str  # amount | count | establishment | siret | uai | text | email
    required: bool
    label: str
    maximum: int | None = None


@dataclass
class Layout:
    """The cells of one form. Input cells are kept by row (sheet → row →
    column → spec); rows of the same shape share one dict, so checks can
    classify a row once per shape instead of once per cell."""

    sheets: tuple[str, ...]
    cells: dict[tuple[str, int, int], str | int] = field(default_factory=dict)
    rows: dict[str, dict[int, dict[int, Input]]] = field(default_factory=dict)
    styles: dict[tuple[str, int, int], str] = field(default_factory=dict)
    widths: dict[str, dict[int, int]] = field(default_factory=dict)
    lines: list[dict] = field(default_factory=list)
    establishments: int = 0
    with_cells: bool = True  # False: inputs only (checking a form whose digest matches)
    _inputs: dict | None = field(default=None, repr=False)
    _columns: dict | None = field(default=None, repr=False)

    def put(self, sheet: str, row: int, col: int, value, style: str | None = None) -> None:
        if not self.with_cells:
            return
        if value is not None and value != "":
            self.cells[(sheet, row, col)] = value
        if style:
            self.styles[(sheet, row, col)] = style

    def ask(self, sheet: str, row: int, col: int, spec: Input) -> None:
        self.rows.setdefault(sheet, {}).setdefault(row, {})[col] = spec

    def ask_row(self, sheet: str, row: int, columns: dict[int, Input]) -> None:
        """A whole row of inputs (``columns`` may be shared by many rows)."""
        self.rows.setdefault(sheet, {})[row] = columns

    @property
    def inputs(self) -> dict[tuple[str, int, int], Input]:
        """Every input cell: (sheet, row, column) → spec."""
        if self._inputs is None:
            self._inputs = {
                (sheet, row, col): spec
                for sheet, by_row in self.rows.items()
                for row, columns in by_row.items()
                for col, spec in columns.items()
            }
        return self._inputs

    def input_columns(self) -> dict[str, dict[int, frozenset]]:
        """sheet → row → its input columns (one frozenset per shared dict)."""
        if self._columns is None:
            shared: dict[int, frozenset] = {}
            self._columns = {
                sheet: {
                    row: shared.get(id(columns))
                    or shared.setdefault(id(columns), frozenset(columns))
                    for row, columns in by_row.items()
                }
                for sheet, by_row in self.rows.items()
            }
        return self._columns


_NO_COLUMNS: frozenset = frozenset()

# Where things are (1-based rows and columns)
ID_CONTACT_ROW = 19
ID_TOTALS_ROW = 24
ID_ESTABLISHMENTS_ROW = 29  # first establishment
FIRST_LINE_ROW = 5  # first certification × establishment row on the line sheets
CERT_ESTABLISHMENT_COL = 8
CERT_APPRENTICES_COL = 9
AMOUNT_FIRST_COL = 5


def snapshot_data_hash(snapshot: dict) -> str:
    """Hash of the « données à renseigner » part of a snapshot: a form is
    accepted back only while these are unchanged."""
    data = {
        "establishments_count": snapshot.get("establishments_count"),
        "trainings_count": snapshot.get("trainings_count"),
        "certifications": snapshot.get("certifications"),
    }
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def build_layout(snapshot: dict, *, cells: bool = True) -> Layout:
    """Every cell of the form of ``snapshot`` (input cells only, without
    ``cells``)."""
    org = snapshot["organisation"]
    campaign = snapshot["campaign"]
    certs = snapshot["certifications"]
    n_est = int(snapshot["establishments_count"])
    layout = Layout(sheets=SHEETS, establishments=n_est, with_cells=cells)
    for cert_index, cert in enumerate(certs):
        for slot in range(1, int(cert["establishments"]) + 1):
            layout.lines.append(
                dict(cert, cert_index=cert_index, slot=slot, line=len(layout.lines) + 1)
            )
    if len(layout.lines) > MAX_LINES:
        raise ValueError("too many lines")

    # Identité
    s = IDENTITY
    layout.put(s, 1, 1, f"Enquête « {campaign['name']} » — comptabilité analytique", "title")
    layout.put(
        s,
        2,
        1,
        "Formulaire préformaté par France compétences : complétez uniquement les cellules "
        "jaunes, sans modifier les autres.",
        "note",
    )
    layout.put(s, 4, 1, "Organisme", "header")
    facts = (
        ("Raison sociale", org.get("name") or ""),
        ("SIRET", org.get("siret") or ""),
        ("UAI", org.get("uai") or ""),
        ("Numéro de déclaration d'activité (NDA)", org.get("nda") or ""),
        ("Type de compte", org.get("account_type") or ""),
        ("Organisme parent", org.get("parent_name") or ""),
        ("Enquête", campaign["name"]),
        ("Direction", campaign.get("direction") or ""),
        ("Date de retour souhaité", campaign.get("return_due") or ""),
        ("Date de clôture", campaign.get("closes") or ""),
        ("Nombre d'établissements total", n_est),
        ("Nombre de formations total", int(snapshot["trainings_count"])),
    )
    for offset, (label, value) in enumerate(facts):
        layout.put(s, 5 + offset, 1, label, "label")
        layout.put(s, 5 + offset, 2, value, "value")
    layout.put(s, ID_CONTACT_ROW - 1, 1, "Personne à contacter", "header")
    for offset, (label, spec) in enumerate(
        (
            ("Nom et prénom", Input("text", True, "nom de la personne à contacter")),
            ("Courriel", Input("email", True, "courriel de la personne à contacter")),
            ("Téléphone", Input("text", False, "téléphone")),
        )
    ):
        layout.put(s, ID_CONTACT_ROW + offset, 1, label, "label")
        layout.ask(s, ID_CONTACT_ROW + offset, 2, spec)
    layout.put(
        s,
        ID_TOTALS_ROW - 1,
        1,
        "Totaux de la comptabilité générale, activité d'apprentissage (en euros)",
        "header",
    )
    layout.put(s, ID_TOTALS_ROW, 1, "Total des charges", "label")
    layout.ask(s, ID_TOTALS_ROW, 2, Input("amount", True, "total des charges"))
    layout.put(s, ID_TOTALS_ROW + 1, 1, "Total des produits", "label")
    layout.ask(s, ID_TOTALS_ROW + 1, 2, Input("amount", True, "total des produits"))
    layout.put(s, ID_ESTABLISHMENTS_ROW - 2, 1, "Établissements", "header")
    for col, title in enumerate(("N°", "SIRET", "UAI", "Nom de l'établissement"), start=1):
        layout.put(s, ID_ESTABLISHMENTS_ROW - 1, col, title, "header")
    for number in range(1, n_est + 1):
        row = ID_ESTABLISHMENTS_ROW + number - 1
        layout.put(s, row, 1, number, "value")
        layout.ask(s, row, 2, Input("siret", True, f"SIRET de l'établissement {number}"))
        layout.ask(s, row, 3, Input("uai", False, f"UAI de l'établissement {number}"))
        layout.ask(s, row, 4, Input("text", True, f"nom de l'établissement {number}"))
    layout.widths[s] = {1: 44, 2: 34, 3: 14, 4: 40}

    # Certifications
    s = CERTIFICATIONS
    layout.put(s, 1, 1, "Certifications et établissements", "title")
    layout.put(
        s,
        2,
        1,
        "Une ligne par certification et par établissement où elle est délivrée : indiquez le "
        f"n° de l'établissement (1 à {n_est}, feuille Identité) et le nombre d'apprentis.",
        "note",
    )
    headers = (
        "Ligne",
        "Code diplôme",
        "Intitulé",
        "Code RNCP",
        "Niveau 2019",
        "Type",
        "Établissement (rang)",
        "N° d'établissement",
        "Nombre d'apprentis",
    )
    for col, title in enumerate(headers, start=1):
        layout.put(s, 4, col, title, "header")
    where = Input("establishment", True, "n° d'établissement", maximum=n_est)
    apprentices = Input("count", True, "nombre d'apprentis")
    cert_columns = {CERT_ESTABLISHMENT_COL: where, CERT_APPRENTICES_COL: apprentices}
    for line in layout.lines:
        row = FIRST_LINE_ROW + line["line"] - 1
        layout.ask_row(s, row, cert_columns)
        if not cells:
            continue
        for col, value in enumerate(
            (
                line["line"],
                line["code"],
                line["title"],
                line["rncp"],
                line["level"],
                line["type"],
                f"{line['slot']} sur {line['establishments']}",
            ),
            start=1,
        ):
            layout.put(s, row, col, value, "value")
    layout.widths[s] = {1: 7, 2: 13, 3: 44, 4: 13, 5: 11, 6: 12, 7: 12, 8: 14, 9: 14}

    # Charges and Produits
    for s, title, categories in (
        (CHARGES, "Charges de l'activité d'apprentissage (en euros)", CHARGE_CATEGORIES),
        (PRODUITS, "Produits de l'activité d'apprentissage (en euros)", PRODUIT_CATEGORIES),
    ):
        layout.put(s, 1, 1, title, "title")
        layout.put(
            s,
            2,
            1,
            "Une ligne par certification et par établissement. Montants positifs ou nuls, "
            "sans formule ; une cellule vide vaut 0.",
            "note",
        )
        fixed = ("Ligne", "Code diplôme", "Intitulé", "Établissement (rang)")
        for col, text in enumerate(fixed, start=1):
            layout.put(s, 4, col, text, "header")
        for offset, category in enumerate(categories):
            label = category.label + (" — charge indirecte" if category.indirect else "")
            layout.put(s, 4, AMOUNT_FIRST_COL + offset, label, "header")
        amount_columns = {
            AMOUNT_FIRST_COL + offset: Input("amount", False, category.label)
            for offset, category in enumerate(categories)
        }
        for line in layout.lines:
            row = FIRST_LINE_ROW + line["line"] - 1
            layout.ask_row(s, row, amount_columns)
            if not cells:
                continue
            values = (
                line["line"],
                line["code"],
                line["title"],
                f"{line['slot']} sur {line['establishments']}",
            )
            for col, value in enumerate(values, start=1):
                layout.put(s, row, col, value, "value")
        widths = {1: 7, 2: 13, 3: 40, 4: 12}
        widths.update({AMOUNT_FIRST_COL + i: 18 for i in range(len(categories))})
        layout.widths[s] = widths

    # Clés de répartition
    s = KEYS
    layout.put(s, 1, 1, "Clés de répartition des charges indirectes", "title")
    layout.put(
        s,
        2,
        1,
        "Pour chaque charge indirecte : le montant total réparti (somme de la colonne de la "
        "feuille Charges), la clé de répartition utilisée et son mode de calcul.",
        "note",
    )
    for col, text in enumerate(
        ("Charge indirecte", "Montant total réparti", "Clé de répartition", "Mode de calcul"),
        start=1,
    ):
        layout.put(s, 4, col, text, "header")
    for offset, category in enumerate(INDIRECT):
        row = 5 + offset
        layout.put(s, row, 1, category.label, "label")
        layout.ask(s, row, 2, Input("amount", True, f"montant réparti : {category.label}"))
        layout.ask(s, row, 3, Input("text", False, f"clé de répartition : {category.label}"))
        layout.ask(s, row, 4, Input("text", False, f"mode de calcul : {category.label}"))
    layout.widths[s] = {1: 44, 2: 20, 3: 34, 4: 50}

    # Note explicative
    s = NOTE
    for offset, paragraph in enumerate(NOTE_TEXT):
        layout.put(s, 1 + offset, 1, paragraph, "title" if offset == 0 else "paragraph")
    layout.widths[s] = {1: 120}
    return layout


# ---------------------------------------------------------------- digest and signature


def normalise(value) -> str | None:
    """How a cell value takes part in the digest (None: an empty cell)."""
    kind = type(value)
    if kind is str:
        return "s:" + value if value else None
    if value is None:
        return None
    if kind is bool:
        return "b:1" if value else "b:0"
    if kind is int or kind is float:
        number = float(value)
        return f"n:{int(number)}" if number.is_integer() else f"n:{number!r}"
    return "s:" + str(value)


def _digest_value(value):
    # numbers compare as floats (a spreadsheet gives 5.0 back for 5)
    return float(value) if type(value) is int else value


def structure_digest(sheets, locked_rows: list) -> str:
    """sha256 over the sheet names and every non-empty locked cell, row by
    row in order: ``(sheet, row, [columns], [values])``, numbers as floats
    (as a spreadsheet reader gives them back). Should a reader give an int,
    the digests differ and the cell-by-cell comparison, which knows that
    5 == 5.0, decides."""
    text = "\x1d".join(sheets) + "\x1e" + repr(locked_rows)
    return hashlib.sha256(text.encode()).hexdigest()


def _position(item):
    (sheet, row, col), _value = item
    return (_sheet_order(sheet), sheet, row, col)


def layout_digest(layout: Layout) -> str:
    rows: list = []
    for (sheet, row, col), value in sorted(layout.cells.items(), key=_position):
        if not rows or rows[-1][:2] != (sheet, row):
            rows.append((sheet, row, [], []))
        rows[-1][2].append(col)
        rows[-1][3].append(_digest_value(value))
    return structure_digest(layout.sheets, rows)


META_FIELDS = ("format", "purpose", "survey_id", "org_id", "campaign_id", "form_version", "digest")


def sign(secret: bytes, meta: dict) -> str:
    message = "|".join(str(meta.get(name, "")) for name in META_FIELDS).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def meta_rows(secret: bytes, meta: dict) -> list[tuple[str, str]]:
    """The very hidden sheet's rows: (name, value), the signature last."""
    rows = [(name, str(meta[name])) for name in META_FIELDS]
    rows.append(("signature", sign(secret, meta)))
    return rows


def read_meta(rows: list[list]) -> dict:
    meta = {}
    for row in rows[:20]:
        if len(row) >= 2 and isinstance(row[0], str) and row[0]:
            meta[row[0]] = as_text(row[1])
    return meta


def signature_valid(secret: bytes, meta: dict) -> bool:
    given = meta.get("signature") or ""
    return bool(given) and hmac.compare_digest(given, sign(secret, meta))


# ---------------------------------------------------------------- reading back


@dataclass
class ReadBook:
    """A workbook as read back: sheet names in order, their values as dense
    rows from A1 (empty cells are ``""``), and the positions (1-based) of
    cells holding a formula."""

    sheet_names: list[str]
    values: dict[str, list[list]]
    formulas: dict[str, set[tuple[int, int]]] = field(default_factory=dict)


def _shown(value) -> str:
    text = as_text(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _sheet_order(sheet: str) -> int:
    return SHEETS.index(sheet) if sheet in SHEETS else len(SHEETS)


def structure_problems(
    layout: Layout, book: ReadBook, digest: str, full_layout=None
) -> list[Problem]:
    """Sheets renamed, added or removed, locked cells changed, content added
    outside the input cells, formulas anywhere: all of them.

    ``layout`` may hold input cells only (the digest needs no more);
    ``full_layout()`` then gives the complete one to name the differences."""
    problems: list[Problem] = []
    expected = list(layout.sheets)
    visible = [name for name in book.sheet_names if name != META]
    if visible != expected:
        for name in expected:
            if name not in visible:
                problems.append(Problem(name, 0, 0, "feuille supprimée ou renommée."))
        for name in visible:
            if name not in expected:
                problems.append(Problem(name, 0, 0, "feuille ajoutée : supprimez-la."))
        if not problems:
            problems.append(Problem(expected[0], 0, 0, "l'ordre des feuilles a été modifié."))
    input_columns = layout.input_columns()
    locked: list = []  # per row: (sheet, row, [columns], [values]) of non-empty locked cells
    positions: dict[tuple[frozenset, int], list[int]] = {}
    for sheet in expected:
        rows = book.values.get(sheet)
        if rows is None:
            continue
        sheet_columns = input_columns.get(sheet, {})
        for r, row in enumerate(rows, start=1):
            # the positions of a row that are not input cells, worked out
            # once per shape of row (most rows share one)
            shape = (sheet_columns.get(r, _NO_COLUMNS), len(row))
            where = positions.get(shape)
            if where is None:
                where = positions[shape] = [c for c in range(len(row)) if c + 1 not in shape[0]]
            columns = [c + 1 for c in where if row[c] != "" and row[c] is not None]
            if columns:
                locked.append((sheet, r, columns, [row[c - 1] for c in columns]))
        for r, c in sorted(book.formulas.get(sheet, ())):
            if c in sheet_columns.get(r, _NO_COLUMNS):
                problems.append(Problem(sheet, r, c, "formule interdite : saisissez une valeur."))
            else:
                problems.append(
                    Problem(sheet, r, c, "formule ajoutée dans une cellule verrouillée.")
                )
    if not problems and structure_digest(expected, locked) == digest:
        return []
    if not layout.with_cells:
        layout = full_layout()
    found = {
        (sheet, r, c): value
        for sheet, r, columns, values in locked
        for c, value in zip(columns, values, strict=True)
    }
    for key, value in layout.cells.items():
        got = found.get(key)
        if normalise(got) != normalise(value) and key[0] in book.values:
            sheet, r, c = key
            if got is None:
                message = f"cellule verrouillée effacée (attendu « {_shown(value)} »)."
            else:
                message = (
                    f"cellule verrouillée modifiée (attendu « {_shown(value)} », "
                    f"trouvé « {_shown(got)} »)."
                )
            problems.append(Problem(sheet, r, c, message))
    for (sheet, r, c), value in found.items():
        if (sheet, r, c) not in layout.cells:
            problems.append(
                Problem(
                    sheet,
                    r,
                    c,
                    f"contenu ajouté hors des cellules de saisie (« {_shown(value)} ») : "
                    "effacez-le.",
                )
            )
    return sorted(problems, key=lambda p: (_sheet_order(p.sheet), p.row, p.col))


_NUMBER_TEXT = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_MAX_CENTS = MAX_AMOUNT * 100


def parse_amount(value) -> int:
    """A number (or numeric text, ``1 234,50``) as whole cents; BadCode otherwise."""
    kind = type(value)
    if kind is float or kind is int:
        if value != value or value in (float("inf"), float("-inf")):
            raise BadCode("un montant est attendu (nombre).")
        if value < 0:
            raise BadCode("montant négatif : les montants sont positifs ou nuls.")
        cents = value * 100
        if kind is float and not cents.is_integer():
            cents = int((Decimal(repr(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        cents = int(cents)
    elif kind is str:
        text = re.sub(r"[\s\u00a0\u202f€]", "", value)
        if not _NUMBER_TEXT.match(text):
            raise BadCode(f"« {_shown(value)} » n'est pas un nombre : saisissez un montant.")
        try:
            amount = Decimal(text.replace(",", "."))
        except InvalidOperation:
            raise BadCode("un montant est attendu (nombre).") from None
        if amount < 0:
            raise BadCode("montant négatif : les montants sont positifs ou nuls.")
        cents = int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    elif kind is bool:
        raise BadCode("un montant est attendu (nombre).")
    else:
        raise BadCode("un montant est attendu (nombre), pas une date ou une heure.")
    if cents >= _MAX_CENTS:
        raise BadCode("montant trop élevé.")
    return cents


def parse_whole(value, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadCode("nombre entier attendu.")
    if isinstance(value, str):
        text = re.sub(r"[\s\u00a0\u202f]", "", value)
        if not re.fullmatch(r"[+-]?\d{1,9}", text):
            raise BadCode(f"« {_shown(value)} » n'est pas un nombre entier.")
        number = int(text)
    else:
        if value != value or not float(value).is_integer():
            raise BadCode("nombre entier attendu.")
        number = int(value)
    if number < minimum or number > maximum:
        raise BadCode(f"nombre entre {minimum} et {maximum} attendu.")
    return number


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")


def parse_input(spec: Input, value):
    """The value of one input cell (amounts in cents; None when empty and optional)."""
    if value == "" or value is None or (type(value) is str and not value.strip()):
        if spec.required:
            if spec.kind == "amount":
                raise BadCode(f"{spec.label} : montant obligatoire (0 si aucun).")
            raise BadCode(f"{spec.label} : valeur obligatoire.")
        return 0 if spec.kind == "amount" else None
    kind = spec.kind
    if kind == "amount":
        return parse_amount(value)
    if kind == "count":
        return parse_whole(value, 0, MAX_COUNT)
    if kind == "establishment":
        return parse_whole(value, 1, spec.maximum or 1)
    if kind == "siret":
        return parse_siret(value)
    if kind == "uai":
        return parse_uai(value)
    text = " ".join(as_text(value).split())
    if len(text) > TEXT_MAX:
        raise BadCode(f"texte trop long ({TEXT_MAX} caractères au plus).")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise BadCode("caractères de contrôle interdits : saisissez le texte à nouveau.")
    if kind == "email" and not _EMAIL.match(text):
        raise BadCode("adresse électronique invalide.")
    return text


def money(cents: int) -> str:
    """Cents as a decimal string: ``123456`` → ``1234.56`` (JSON payloads)."""
    whole, rest = divmod(cents, 100)
    return f"{whole}.{rest:02d}"


AMOUNT_KEYS = ("charges", "produits", "totals", "sums", "amount")


def in_euros(values):
    """Extracted values with every amount in cents as a decimal string
    (``123456`` → ``"1234.56"``), as payloads carry decimals."""
    if isinstance(values, dict):
        return {
            key: _euro_strings(value) if key in AMOUNT_KEYS else in_euros(value)
            for key, value in values.items()
        }
    if isinstance(values, list):
        return [in_euros(item) for item in values]
    return values


def _euro_strings(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return money(value)
    if isinstance(value, dict):
        return {key: _euro_strings(item) for key, item in value.items()}
    return value


def euros(cents: int) -> str:
    """``1 234,56 €`` for people."""
    whole = f"{cents // 100:,}".replace(",", " ")
    return f"{whole},{cents % 100:02d} €"


def _amount_block(columns: dict[int, Input]) -> tuple[int, int] | None:
    """(first, last) column when a row's inputs are contiguous optional amounts."""
    cols = sorted(columns)
    if all(columns[c].kind == "amount" and not columns[c].required for c in cols) and (
        cols == list(range(cols[0], cols[-1] + 1))
    ):
        return cols[0], cols[-1]
    return None


def _block_cents(sheet, row, cells, block, in_formula, problems) -> list[int]:
    """A row of optional amounts in cents: one list comprehension for the
    usual cells (empty, or a number with cents at most), the rules for the
    others."""
    first, last = block
    segment = list(cells[first - 1 : last])
    segment += [""] * (last - first + 1 - len(segment))
    cents = [
        0
        if v == ""
        else (
            int(v * 100)
            if type(v) is float and 0 <= v < MAX_AMOUNT and (v * 100).is_integer()
            else None
        )
        for v in segment
    ]
    if None in cents or in_formula:
        for i, value in enumerate(segment):
            col = first + i
            if in_formula and (row, col) in in_formula:
                cents[i] = 0  # already reported as a formula
            elif cents[i] is None:
                try:
                    cents[i] = parse_amount(value) if value is not None else 0
                except BadCode as exc:
                    problems.append(Problem(sheet, row, col, exc.message))
                    cents[i] = 0
    return cents


def check_values(layout: Layout, book: ReadBook) -> tuple[dict, list[Problem]]:
    """Every input cell checked, then the cross-checks (totals that must
    match, distinct establishments). Returns (extracted values, problems);
    amounts in the extracted values are whole cents (``in_euros`` turns
    them into decimal strings for payloads)."""
    problems: list[Problem] = []
    values: dict[tuple[str, int, int], object] = {}
    blocks: dict[tuple[str, int], list[int]] = {}  # rows of optional amounts, in cents
    sheets = book.values
    formulas = book.formulas
    plans: dict[int, tuple[int, int] | None] = {}
    for sheet, by_row in layout.rows.items():
        rows = sheets.get(sheet) or []
        in_formula = formulas.get(sheet) or ()
        height = len(rows)
        for row, columns in by_row.items():
            cells = rows[row - 1] if row <= height else ()
            plan = plans.get(id(columns), False)
            if plan is False:
                plan = plans[id(columns)] = _amount_block(columns)
            if plan is not None:
                blocks[(sheet, row)] = _block_cents(sheet, row, cells, plan, in_formula, problems)
                continue
            width = len(cells)
            for col, spec in columns.items():
                if in_formula and (row, col) in in_formula:
                    continue  # already reported as a formula
                value = cells[col - 1] if col <= width else None
                try:
                    values[(sheet, row, col)] = parse_input(spec, value)
                except BadCode as exc:
                    problems.append(Problem(sheet, row, col, exc.message))

    get = values.get
    establishments = []
    seen_siret: dict[str, int] = {}
    for number in range(1, layout.establishments + 1):
        row = ID_ESTABLISHMENTS_ROW + number - 1
        siret = get((IDENTITY, row, 2))
        if siret and siret in seen_siret:
            problems.append(
                Problem(
                    IDENTITY,
                    row,
                    2,
                    f"SIRET déjà indiqué pour l'établissement {seen_siret[siret]} : "
                    "un établissement par ligne.",
                )
            )
        elif siret:
            seen_siret[siret] = number
        establishments.append(
            {
                "number": number,
                "siret": siret,
                "uai": get((IDENTITY, row, 3)),
                "name": get((IDENTITY, row, 4)),
            }
        )

    lines = []
    used: dict[tuple[int, int], int] = {}
    sums = {CHARGES: 0, PRODUITS: 0}
    column_sums = {c.key: 0 for c in CHARGE_CATEGORIES}
    charge_keys = [c.key for c in CHARGE_CATEGORIES]
    produit_keys = [c.key for c in PRODUIT_CATEGORIES]
    for line in layout.lines:
        row = FIRST_LINE_ROW + line["line"] - 1
        est = get((CERTIFICATIONS, row, CERT_ESTABLISHMENT_COL))
        if isinstance(est, int):
            other = used.get((line["cert_index"], est))
            if other is not None:
                problems.append(
                    Problem(
                        CERTIFICATIONS,
                        row,
                        CERT_ESTABLISHMENT_COL,
                        f"l'établissement {est} est déjà indiqué pour cette certification "
                        f"(ligne {other}) : un établissement différent par ligne.",
                    )
                )
            else:
                used[(line["cert_index"], est)] = line["line"]
        amounts = {}
        for sheet, keys_ in ((CHARGES, charge_keys), (PRODUITS, produit_keys)):
            cents = blocks[(sheet, row)]
            amounts[sheet] = dict(zip(keys_, cents, strict=True))
            sums[sheet] += sum(cents)
            if sheet == CHARGES:
                for key_, amount in zip(keys_, cents, strict=True):
                    column_sums[key_] += amount
        charges, produits = amounts[CHARGES], amounts[PRODUITS]
        lines.append(
            {
                "line": line["line"],
                "code": line["code"],
                "title": line["title"],
                "rncp": line["rncp"],
                "level": line["level"],
                "type": line["type"],
                "slot": line["slot"],
                "establishment": est,
                "apprentices": get((CERTIFICATIONS, row, CERT_APPRENTICES_COL)),
                "charges": charges,
                "produits": produits,
            }
        )

    totals = {}
    for label, row, sheet in (
        ("charges", ID_TOTALS_ROW, CHARGES),
        ("produits", ID_TOTALS_ROW + 1, PRODUITS),
    ):
        declared = get((IDENTITY, row, 2))
        totals[label] = declared if isinstance(declared, int) else None
        if isinstance(declared, int) and declared != sums[sheet]:
            problems.append(
                Problem(
                    IDENTITY,
                    row,
                    2,
                    f"le total des {label} ({euros(declared)}) ne correspond pas à la somme "
                    f"de la feuille {sheet} ({euros(sums[sheet])}).",
                )
            )

    keys = []
    key_formulas = formulas.get(KEYS, ())
    for offset, category in enumerate(INDIRECT):
        row = 5 + offset
        declared = get((KEYS, row, 2))
        key_text = get((KEYS, row, 3))
        spent = column_sums[category.key]
        if isinstance(declared, int) and declared != spent:
            problems.append(
                Problem(
                    KEYS,
                    row,
                    2,
                    f"le montant réparti ({euros(declared)}) ne correspond pas à la somme de "
                    f"la colonne « {category.label} » de la feuille Charges ({euros(spent)}).",
                )
            )
        if spent > 0 and not key_text and (row, 3) not in key_formulas:
            problems.append(
                Problem(
                    KEYS,
                    row,
                    3,
                    "clé de répartition obligatoire : des charges indirectes sont réparties.",
                )
            )
        keys.append(
            {
                "category": category.key,
                "label": category.label,
                "amount": declared if isinstance(declared, int) else None,
                "key": key_text,
                "method": get((KEYS, row, 4)),
            }
        )

    extracted = {
        "unit": "cents",
        "contact": {
            "name": get((IDENTITY, ID_CONTACT_ROW, 2)),
            "email": get((IDENTITY, ID_CONTACT_ROW + 1, 2)),
            "phone": get((IDENTITY, ID_CONTACT_ROW + 2, 2)),
        },
        "totals": totals,
        "sums": {"charges": sums[CHARGES], "produits": sums[PRODUITS]},
        "establishments": establishments,
        "lines": lines,
        "keys": keys,
    }
    return extracted, sorted(problems, key=lambda p: (_sheet_order(p.sheet), p.row, p.col))

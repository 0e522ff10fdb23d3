"""The one spreadsheet adapter of the survey service (docs/style.md: only this
module imports openpyxl; it also wraps python-calamine).

Writing uses openpyxl: the locked survey form and its working copy, the
certification list template, the agency's exports. Reading uses
python-calamine (fast), after a bounded scan of the package so that no parser
ever sees a workbook whose cells reach absurd positions (a dense range of
XFD1048576 would take gigabytes): entries and sizes of the zip, the position
of every cell, and which cells hold a formula (calamine gives only values).
The files service has already run the docs/architecture.md §4 upload checks; the few
repeated here are cheap and keep this module safe on its own.

Every failure becomes ``Unreadable`` (or ``OutOfBounds``) with a French
message; callers turn them into error codes. CPU-heavy functions are meant to
be run through ``eventlet.tpool.execute`` by the service.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass

import python_calamine
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, NamedStyle, PatternFill, Protection
from openpyxl.utils import get_column_letter
from openpyxl.workbook.protection import WorkbookProtection
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.xml import DEFUSEDXML

from kit import limits as shared_limits
from survey.domain import certifications as cert_rules
from survey.domain.codes import LEVELS
from survey.domain.form import META, Layout, ReadBook
from survey.domain.problems import cell_ref, column_letter

if not DEFUSEDXML:  # docs/architecture.md §4: XML parsed with entity expansion off
    raise ImportError("defusedxml must be installed for openpyxl")

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# the zip limits are files' (kit.limits): files has checked every workbook read
# here against the same values, so this reader never refuses what files accepted
MAX_ENTRIES = shared_limits.XLSX_MAX_ENTRIES
MAX_UNCOMPRESSED = shared_limits.XLSX_MAX_UNCOMPRESSED_BYTES
MAX_RATIO = shared_limits.XLSX_MAX_RATIO
RATIO_FLOOR = shared_limits.XLSX_RATIO_FLOOR
MAX_XML_PART = 40 * 1024 * 1024


class Unreadable(Exception):
    """Not a workbook we can read; ``message`` is French."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class OutOfBounds(Exception):
    """A cell lies beyond what the reader accepts."""

    def __init__(self, sheet: str, row: int, col: int):
        super().__init__(sheet, row, col)
        self.sheet, self.row, self.col = sheet, row, col

    @property
    def ref(self) -> str:
        return cell_ref(self.sheet, self.row, self.col)


@dataclass(frozen=True)
class Limits:
    rows: int
    cols: int


FORM_LIMITS = Limits(rows=6_000, cols=40)
LIST_LIMITS = Limits(rows=cert_rules.MAX_ROWS + 1_000, cols=40)

# ---------------------------------------------------------------- reading

_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
# a cell or formula start tag, namespace prefix allowed
_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(c|f|row)(?=[\s>/])([^>]*)>")
_REF_ATTR = re.compile(rb'\br\s*=\s*["\']([A-Z]{1,4})([0-9]{1,8})["\']')
_ROW_ATTR = re.compile(rb'\br\s*=\s*["\']([0-9]{1,8})["\']')
# a cell start tag other than ``<c r="A1"…``: prefixed, position not first, or none
_IRREGULAR_CELL = re.compile(rb'<[A-Za-z_][\w.-]*:c[\s/>]|<c(?=[\s/>])(?! r="[A-Z])')
_F_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s/>]")
# a cell whose first child is a formula (the schema puts <f> before <v>)
_FORMULA_CELL = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?c(?=[\s>/])([^>]*)>\s*<(?:[A-Za-z_][\w.-]*:)?f(?=[\s>/])"
)


def _column_index(letters: bytes) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + (ch - 64)
    return index


def _open_zip(data: bytes) -> zipfile.ZipFile:
    if not data:
        raise Unreadable("le fichier est vide.")
    if not data.startswith(b"PK\x03\x04"):
        raise Unreadable("ce fichier n'est pas un classeur Excel .xlsx.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise Unreadable("le classeur est endommagé (archive incomplète ou illisible).") from None
    if len(infos) > MAX_ENTRIES:
        raise Unreadable("le classeur contient trop d'éléments.")
    total = 0
    names = set()
    for info in infos:
        name = info.filename
        if name in names or name.startswith("/") or ".." in name.split("/"):
            raise Unreadable("le classeur contient des éléments au nom invalide.")
        names.add(name)
        total += info.file_size
        if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > RATIO_FLOOR:
            raise Unreadable("le classeur est anormalement compressé.")
        lowered = name.lower()
        if lowered.endswith("vbaproject.bin"):
            raise Unreadable("les classeurs contenant des macros sont refusés.")
        if lowered.startswith("xl/externallinks/"):
            raise Unreadable("les liaisons vers d'autres classeurs sont refusées.")
    if total > MAX_UNCOMPRESSED:
        raise Unreadable("le classeur décompressé est trop volumineux.")
    return archive


def _read_part(archive: zipfile.ZipFile, name: str, limit: int = MAX_XML_PART) -> bytes:
    try:
        with archive.open(name) as part:
            data = part.read(limit + 1)
    except KeyError:
        raise Unreadable("le classeur est incomplet.") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError):
        raise Unreadable("le classeur est endommagé (archive incomplète ou illisible).") from None
    if len(data) > limit:
        raise Unreadable("une feuille du classeur est trop volumineuse.")
    return data


def _sheet_parts(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, part path) in workbook order."""
    try:
        workbook = SafeET.fromstring(_read_part(archive, "xl/workbook.xml", 5_000_000))
        rels = SafeET.fromstring(_read_part(archive, "xl/_rels/workbook.xml.rels", 5_000_000))
    except (SafeET.ParseError, DefusedXmlException):
        raise Unreadable("la structure du classeur est illisible ou dangereuse.") from None
    targets = {}
    for rel in rels.iter(f"{_NS_PKG_REL}Relationship"):
        target = rel.get("Target") or ""
        if target.startswith("/"):
            path = target.lstrip("/")
        else:
            path = posixpath.normpath(posixpath.join("xl", target))
        targets[rel.get("Id")] = path
    sheets = []
    for sheet in workbook.iter(f"{_NS_MAIN}sheet"):
        rid = sheet.get(f"{_NS_REL}id")
        if rid not in targets:
            raise Unreadable("la structure du classeur est incohérente.")
        sheets.append((sheet.get("name") or "", targets[rid]))
    if not sheets:
        raise Unreadable("le classeur ne contient aucune feuille.")
    return sheets


def _far_ref_pattern(limits: Limits) -> re.Pattern:
    """Cell positions that may lie beyond ``limits``: at least as many column
    letters or row digits as the limit has (the others cannot)."""
    letters = len(column_letter(limits.cols))
    digits = len(str(limits.rows))
    return re.compile(
        rb'<c r="([A-Z]{%d,}[0-9]+|[A-Z]+[0-9]{%d,})"' % (letters, digits)  # noqa: UP031
    )


_FAR_REFS: dict[Limits, re.Pattern] = {}


def _scan_sheet(name: str, xml: bytes, limits: Limits, want_formulas: bool) -> set[tuple[int, int]]:
    """Checks every cell position against ``limits`` (implicit positions
    counted as a reader would place them); returns the formula positions.

    The usual file (every cell written ``<c r="A1"…``, no namespace prefix,
    formulas first in their cell as the schema orders them) takes three
    C-speed regex passes; anything else is walked tag by tag."""
    if _IRREGULAR_CELL.search(xml) is None:
        far = _FAR_REFS.get(limits) or _FAR_REFS.setdefault(limits, _far_ref_pattern(limits))
        for match in far.finditer(xml):
            ref = _REF_ATTR.search(b' r="' + match.group(1) + b'"')
            row, col = int(ref.group(2)), _column_index(ref.group(1))
            if row > limits.rows or col > limits.cols:
                raise OutOfBounds(name, row, col)
        if not want_formulas:
            return set()
        total = len(_F_TAG.findall(xml))
        if total == 0:
            return set()
        cells = _FORMULA_CELL.findall(xml)
        if len(cells) == total:
            formulas = set()
            for attrs in cells:
                found = _REF_ATTR.search(attrs)
                if found is None:
                    break
                formulas.add((int(found.group(2)), _column_index(found.group(1))))
            else:
                return formulas
    return _walk_sheet(name, xml, limits, want_formulas)


def _walk_sheet(name: str, xml: bytes, limits: Limits, want_formulas: bool) -> set[tuple[int, int]]:
    formulas: set[tuple[int, int]] = set()
    row, col = 0, 0
    for match in _TAG.finditer(xml):
        tag, attrs = match.group(1), match.group(2)
        if tag == b"row":
            found = _ROW_ATTR.search(attrs)
            row = int(found.group(1)) if found else row + 1
            col = 0
            if row > limits.rows:
                raise OutOfBounds(name, row, 1)
        elif tag == b"c":
            found = _REF_ATTR.search(attrs)
            if found:
                col = _column_index(found.group(1))
                row = int(found.group(2)) or row
            else:
                col += 1
            if row > limits.rows or col > limits.cols:
                raise OutOfBounds(name, row, col)
        elif want_formulas:
            formulas.add((row, col))
    return formulas


def _calamine_rows(book, name: str) -> list[list]:
    try:
        return book.get_sheet_by_name(name).to_python(skip_empty_area=False)
    except python_calamine.CalamineError:
        raise Unreadable("une feuille du classeur est illisible.") from None


def read_book(data: bytes, limits: Limits = FORM_LIMITS) -> ReadBook:
    """Every sheet's values (dense, from A1) and formula positions."""
    archive = _open_zip(data)
    parts = _sheet_parts(archive)
    formulas = {}
    for name, path in parts:
        formulas[name] = _scan_sheet(name, _read_part(archive, path), limits, True)
    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except python_calamine.CalamineError:
        raise Unreadable("le classeur est illisible.") from None
    except Exception:  # noqa: BLE001 - the Rust reader raises plain errors on broken files
        raise Unreadable("le classeur est illisible.") from None
    try:
        names = list(book.sheet_names)
        values = {name: _calamine_rows(book, name) for name in names}
    finally:
        book.close()
    return ReadBook(sheet_names=names, values=values, formulas=formulas)


def read_first_sheet(data: bytes, limits: Limits = LIST_LIMITS) -> tuple[str, list[list]]:
    """The first sheet's name and values (dense, from A1)."""
    archive = _open_zip(data)
    name, path = _sheet_parts(archive)[0]
    _scan_sheet(name, _read_part(archive, path), limits, want_formulas=False)
    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - calamine errors and plain ones alike
        raise Unreadable("le classeur est illisible.") from None
    try:
        return name, _calamine_rows(book, book.sheet_names[0])
    finally:
        book.close()


# ---------------------------------------------------------------- writing

_INPUT_FILL = PatternFill("solid", fgColor="FFF2CC")
_HEADER_FILL = PatternFill("solid", fgColor="D9E1F2")
_WRAP = Alignment(wrap_text=True, vertical="top")


def _styles() -> list[NamedStyle]:
    def named(name, **kwargs):
        style = NamedStyle(name=name)
        for key, value in kwargs.items():
            setattr(style, key, value)
        return style

    return [
        named("k_title", font=Font(bold=True, size=13)),
        named("k_note", font=Font(italic=True, color="595959")),
        named("k_header", font=Font(bold=True), fill=_HEADER_FILL, alignment=_WRAP),
        named("k_label", font=Font(bold=True)),
        named("k_value"),
        named("k_paragraph", alignment=Alignment(wrap_text=True, vertical="top")),
        named(
            "k_amount",
            fill=_INPUT_FILL,
            protection=Protection(locked=False),
            number_format="#,##0.00",
        ),
        named("k_whole", fill=_INPUT_FILL, protection=Protection(locked=False), number_format="0"),
        named(
            "k_text",
            fill=_INPUT_FILL,
            protection=Protection(locked=False),
            number_format="@",
        ),
    ]


_INPUT_STYLE = {
    "amount": "k_amount",
    "count": "k_whole",
    "establishment": "k_whole",
    "siret": "k_text",
    "uai": "k_text",
    "text": "k_text",
    "email": "k_text",
}


def _set(cell, value) -> None:
    cell.value = value
    if isinstance(value, str) and value.startswith("="):
        cell.data_type = "s"  # text, never a formula


def _ranges(positions: list[tuple[int, int]]) -> str:
    """``E5:E9 F5:F9`` for cells grouped by column into contiguous runs."""
    by_col = defaultdict(list)
    for row, col in positions:
        by_col[col].append(row)
    parts = []
    for col in sorted(by_col):
        rows = sorted(by_col[col])
        start = prev = rows[0]
        for row in rows[1:] + [None]:
            if row is not None and row == prev + 1:
                prev = row
                continue
            letter = get_column_letter(col)
            parts.append(f"{letter}{start}" if start == prev else f"{letter}{start}:{letter}{prev}")
            if row is not None:
                start = prev = row
    return " ".join(parts)


def _validation(kind: str, maximum: int | None) -> DataValidation:
    if kind == "amount":
        dv = DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="0")
        dv.error = "Saisissez un montant positif ou nul, sans formule."
    elif kind == "establishment":
        dv = DataValidation(type="whole", operator="between", formula1="1", formula2=str(maximum))
        dv.error = f"Saisissez un numéro d'établissement entre 1 et {maximum}."
    elif kind == "count":
        dv = DataValidation(type="whole", operator="greaterThanOrEqual", formula1="0")
        dv.error = "Saisissez un nombre entier positif ou nul."
    else:
        dv = DataValidation(type="textLength", operator="lessThanOrEqual", formula1="500")
        dv.error = "500 caractères au plus."
    dv.errorTitle = "Valeur refusée"
    dv.showErrorMessage = True
    dv.allow_blank = True
    return dv


def render_form(
    layout: Layout, meta: list[tuple[str, str]], *, protect: bool, password: str | None
) -> bytes:
    """The workbook of ``layout``: locked cells, yellow unlocked input cells
    with data validation, protected sheets and structure (unless ``protect``
    is false: the working copy), and the very hidden signed ``meta`` sheet."""
    wb = Workbook()
    for style in _styles():
        wb.add_named_style(style)
    sheets = {}
    for index, name in enumerate(layout.sheets):
        ws = wb.active if index == 0 else wb.create_sheet()
        ws.title = name
        sheets[name] = ws
    for (sheet, row, col), value in layout.cells.items():
        cell = sheets[sheet].cell(row=row, column=col)
        _set(cell, value)
    for (sheet, row, col), style in layout.styles.items():
        sheets[sheet].cell(row=row, column=col).style = f"k_{style}"
    validations: dict[tuple[str, str, int | None], list] = defaultdict(list)
    for (sheet, row, col), spec in layout.inputs.items():
        sheets[sheet].cell(row=row, column=col).style = _INPUT_STYLE[spec.kind]
        kind = spec.kind if spec.kind in ("amount", "count", "establishment") else "text"
        validations[(sheet, kind, spec.maximum)].append((row, col))
    for (sheet, kind, maximum), positions in validations.items():
        dv = _validation(kind, maximum)
        dv.sqref = _ranges(positions)
        sheets[sheet].add_data_validation(dv)
    for sheet, widths in layout.widths.items():
        for col, width in widths.items():
            sheets[sheet].column_dimensions[get_column_letter(col)].width = width
    for name in layout.sheets[1:4]:
        sheets[name].freeze_panes = "E5"
    meta_ws = wb.create_sheet(META)
    for row, (key, value) in enumerate(meta, start=1):
        meta_ws.cell(row=row, column=1, value=key)
        _set(meta_ws.cell(row=row, column=2), value)
    meta_ws.sheet_state = "veryHidden"
    if protect:
        for ws in [*sheets.values(), meta_ws]:
            ws.protection.sheet = True
            ws.protection.formatColumns = False
            ws.protection.formatRows = False
            if password:
                ws.protection.password = password
        wb.security = WorkbookProtection(lockStructure=True)
        if password:
            wb.security.workbookPassword = password
    return _save(wb)


def _save(wb) -> bytes:
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def certification_template() -> bytes:
    """``Liste-certifications.xlsx``: the header row of the import, a help sheet."""
    wb = Workbook()
    ws = wb.active
    ws.title = cert_rules.SHEET
    bold = Font(bold=True)
    for col, column in enumerate(cert_rules.COLUMNS, start=1):
        cell = ws.cell(row=1, column=col, value=column.header)
        cell.font = bold
        cell.fill = _HEADER_FILL
        cell.alignment = _WRAP
        ws.column_dimensions[get_column_letter(col)].width = column.width
    ws.freeze_panes = "A2"
    last = cert_rules.MAX_ROWS + 1
    levels = DataValidation(type="list", formula1='"' + ",".join(LEVELS) + '"', allow_blank=True)
    levels.error = "Choisissez niveau3 à niveau8."
    levels.sqref = f"{column_letter(4)}2:{column_letter(4)}{last}"
    count = DataValidation(type="whole", operator="greaterThanOrEqual", formula1="1")
    count.error = "Nombre entier positif (1 ou plus)."
    count.sqref = f"{column_letter(6)}2:{column_letter(6)}{last}"
    for dv in (levels, count):
        dv.showErrorMessage = True
        ws.add_data_validation(dv)
    help_ws = wb.create_sheet("Aide")
    lines = (
        "Liste des certifications : une ligne par certification (diplôme ou titre ouvert à "
        "l'apprentissage) délivrée par l'organisme. Ne modifiez pas la première ligne.",
        "Code Diplôme : code à 8 caractères (ex. 46T31203) ; les codes à 7 chiffres sont "
        "acceptés tels quels.",
        "Intitulé : intitulé de la certification.",
        "Code RNCP : RNCP suivi de 3 à 5 chiffres (ex. RNCP37098), code RS (ex. RS5432), ou "
        "NR si la certification n'a pas de code.",
        "Niveau 2019 : niveau3, niveau4, niveau5, niveau6, niveau7 ou niveau8.",
        "Type : par exemple BTS, BP, CAP, MC, DOCTORAT, TP.",
        "Nombre d'établissements : nombre entier positif, au plus le nombre d'établissements "
        "total de l'organisme.",
    )
    for row, text in enumerate(lines, start=1):
        help_ws.cell(row=row, column=1, value=text).alignment = _WRAP
    help_ws.column_dimensions["A"].width = 110
    return _save(wb)


def write_table(sheet: str, headers: list[str], rows: list[list]) -> bytes:
    """A plain export workbook (values already neutralised by the caller)."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(headers)
    for row in rows:
        ws.append(row)
    return _save(wb)

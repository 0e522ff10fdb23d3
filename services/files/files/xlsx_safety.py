"""XLSX upload safety checks (docs/architecture.md §4): bytes in, verdict out.

Every spreadsheet that reaches the platform goes through ``check`` before any
parser (openpyxl, python-calamine) sees it, so that survey and carte can parse
what they receive without fearing a zip bomb, an entity bomb, a macro or a
sheet that claims a million rows. The checks, cheapest first, stop at the
first problem:

1. the envelope: not empty, under the size cap, a ``.xlsx`` name, zip magic;
2. the zip's central directory, without extracting anything: entry count
   (read from the end record before ``zipfile`` builds an object per entry),
   names (absolute, ``..``, backslashes, control characters, duplicates),
   compression method and encryption, declared uncompressed total and
   per-entry compression ratio (zip bombs);
3. parts by name: macros, external links, embedded objects; required parts;
4. XML, streamed from the zip: content types, every relationship, the
   workbook (sheet names and count), shared strings and worksheets (rows,
   columns, cell length, merged and hyperlink ranges, OLE objects); then
   every other XML part, for DTDs only.

XML goes through expat with the guards defusedxml installs (no DTD, no entity
declaration, no external reference; defusedxml's exceptions), fed in 64 KiB
chunks with no tree kept: an entity bomb stops at ``<!DOCTYPE`` and a 200 MiB
sheet costs no memory. defusedxml's own ``iterparse`` gives the same
protection but builds a tree element by element: on a 10,000 × 6 sheet it
alone takes 0.33 s where this whole check takes about 0.15 s (python-calamine
reads the file in 0.05 s, openpyxl read-only in 1.1 s).
python-calamine itself is no check: it allocates the sheet's whole rectangle,
so a cell at A1 and one at XFD1048576 make it ask for 512 GiB and abort the
whole process (measured with python-calamine 0.9), before any Python code can react.

Each rejection is ``kit.errors.InvalidInput`` with a stable code
``files.xlsx.*``, a French message saying what is wrong and how to fix it, and
details (``entry``, ``sheet``, ``cell``, ``limit``) where they help. Whatever
else the zip or XML layer throws reads as ``files.xlsx.corrupt``: never a 500.

No nameko here; the service runs ``check`` in a native thread
(``eventlet.tpool``, docs/stack-pitfalls.md §10).
"""

from __future__ import annotations

import functools
import io
import logging
import posixpath
import re
import struct
import unicodedata
import zipfile
from dataclasses import dataclass, fields
from xml.parsers import expat

import openpyxl
from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)

from files import problems
from files.domain.meta import format_size
from kit import limits as shared_limits
from kit.errors import InvalidInput

# openpyxl parses XML with defusedxml only when it is installed and
# OPENPYXL_DEFUSEDXML is not "False": every consumer of checked files relies on it
if not openpyxl.DEFUSEDXML:  # pragma: no cover - depends on the installation
    raise RuntimeError(
        "openpyxl would parse XML without defusedxml: install defusedxml and leave "
        "OPENPYXL_DEFUSEDXML unset"
    )

log = logging.getLogger(__name__)

MiB = 1024 * 1024
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# an entry smaller than this is not judged on its ratio: small repetitive XML
# (styles) compresses well, and many of them are bounded by the total cap
RATIO_FLOOR = shared_limits.XLSX_RATIO_FLOOR
# a central directory record is 46 bytes plus its name; real ones stay far under
CD_BYTES_PER_ENTRY = 1024
CHUNK = 64 * 1024
# the longest stretch of XML without a ">": longer than any cell text (12 bytes
# per character at most, as &#x10FFFF;), short enough that expat never builds
# one element with a million attributes
MIN_XML_RUN = 1 * MiB
# past this many over-long shared strings, stop noting which ones they are
MAX_LONG_STRINGS = 10_000


@dataclass(frozen=True)
class XlsxLimits:
    """Hard limits; ``CONFIG_NAMES`` gives the setting of each. The upload cap
    and the zip limits default to ``kit.limits`` (shared with survey's reader)."""

    max_bytes: int = shared_limits.MAX_UPLOAD_BYTES
    max_entries: int = shared_limits.XLSX_MAX_ENTRIES
    max_uncompressed: int = shared_limits.XLSX_MAX_UNCOMPRESSED_BYTES
    max_ratio: int = shared_limits.XLSX_MAX_RATIO
    max_sheets: int = 50
    max_rows: int = 100_000
    max_columns: int = 200
    max_cell_chars: int = 32_767

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{f.name} must be a positive integer")


# nameko config key or environment variable of each limit
CONFIG_NAMES = {
    "max_bytes": "FILES_XLSX_MAX_BYTES",
    "max_entries": "FILES_XLSX_MAX_ENTRIES",
    "max_uncompressed": "FILES_XLSX_MAX_UNCOMPRESSED_BYTES",
    "max_ratio": "FILES_XLSX_MAX_RATIO",
    "max_sheets": "FILES_XLSX_MAX_SHEETS",
    "max_rows": "FILES_XLSX_MAX_ROWS",
    "max_columns": "FILES_XLSX_MAX_COLUMNS",
    "max_cell_chars": "FILES_XLSX_MAX_CELL_CHARS",
}

DEFAULT_LIMITS = XlsxLimits()


@dataclass(frozen=True)
class Verdict:
    """A workbook that passed: its sheet names in workbook order, its size."""

    sheets: tuple[str, ...]
    size: int
    # the workbook's text (shared and inline strings), one per line, when
    # asked for: what the malware scan reads beside the file (files.policy)
    text: str = ""


# --- rejections -------------------------------------------------------------

# Each rejection is a row of the files catalogue (files.problems): the checks
# below name its code and give its values.


def _n(value: int) -> str:
    return f"{value:,}".replace(",", "\u00a0")


def _shown(name: str, limit: int = 120) -> str:
    """A name safe to put in a message: control characters escaped, bounded."""
    text = "".join(
        ch if unicodedata.category(ch)[0] != "C" else f"\\x{ord(ch):02x}" for ch in name[:limit]
    )
    return text + ("…" if len(name) > limit else "")


# --- cell references ---------------------------------------------------------

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CELL = re.compile(r"\$?([A-Za-z]{1,7})\$?([0-9]{1,10})")
_ENDPOINT = re.compile(r"\$?([A-Za-z]{1,7})?\$?([0-9]{1,10})?")


@functools.lru_cache(maxsize=4096)
def column_index(letters: str) -> int:
    """``A`` → 1, ``Z`` → 26, ``AA`` → 27, ``XFD`` → 16384."""
    index = 0
    for ch in letters.upper():
        index = index * 26 + ord(ch) - 64
    return index


def column_letters(index: int) -> str:
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _cell_position(ref: str) -> tuple[int, int]:
    match = _CELL.fullmatch(ref)
    if match is None:
        raise problems.error("files.xlsx.corrupt", cell=_shown(ref, 20))
    return column_index(match[1]), int(match[2])


def _range_corner(ref: str) -> tuple[int, int]:
    """The largest column and row a range list (``A1:B2 C3``, ``A:A``, ``1:3``) reaches."""
    max_col = max_row = 0
    for part in ref.split():
        for end in part.split(":"):
            match = _ENDPOINT.fullmatch(end)
            if match is None or not (match[1] or match[2]):
                raise problems.error("files.xlsx.corrupt", cell=_shown(ref, 40))
            max_col = max(max_col, column_index(match[1]) if match[1] else EXCEL_MAX_COLUMNS)
            max_row = max(max_row, int(match[2]) if match[2] else EXCEL_MAX_ROWS)
    return max_col, max_row


# --- zip level -----------------------------------------------------------------


def _declared_directory(data: bytes) -> tuple[int, int] | None:
    """(entry count, central directory size) as the end records declare them,
    or None when there is no end record (``zipfile`` will then refuse)."""
    pos = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 0xFFFF))
    if pos < 0 or pos + 22 > len(data):
        return None
    entries, cd_size, cd_offset = struct.unpack_from("<10xHLL", data, pos)
    if entries == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset):
        # zip64: the 56-byte record just before the 20-byte locator
        z64 = pos - 20 - 56
        if z64 >= 0 and data[z64 : z64 + 4] == b"PK\x06\x06":
            entries, cd_size = struct.unpack_from("<32xQQ", data, z64)
    return entries, cd_size


def _unsafe_name(name: str) -> bool:
    if not name or name.startswith("/") or "\\" in name:
        return True
    if len(name) > 1 and name[1] == ":":  # a drive letter
        return True
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        return True
    parts = name.split("/")
    # "a//b", ".", ".."; a trailing "/" (a folder) leaves one empty last part
    return any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", "..")


def _is_macro_part(name: str) -> bool:
    base = posixpath.basename(name)
    return "vbaproject" in base or name.startswith("xl/macrosheets/")


def _is_external_part(name: str) -> bool:
    return name.startswith(("xl/externallinks/", "xl/querytables/")) or name == (
        "xl/connections.xml"
    )


def _is_embedded_part(name: str) -> bool:
    return name.startswith(("xl/embeddings/", "xl/activex/")) or "oleobject" in name


def _content_type_problem(content_type: str) -> InvalidInput | None:
    ct = content_type.strip().lower()
    if "macroenabled" in ct or "vbaproject" in ct or "macrosheet" in ct:
        return problems.error("files.xlsx.macro", content_type=ct)
    if "externallink" in ct or "spreadsheetml.connections" in ct or "querytable" in ct:
        return problems.error("files.xlsx.external_link", content_type=ct)
    if "oleobject" in ct or "activex" in ct or ct in EMBEDDED_DOCUMENT_TYPES:
        return problems.error("files.xlsx.embedded_object", content_type=ct)
    return None


# documents other than the workbook itself: only present as embedded packages
EMBEDDED_DOCUMENT_TYPES = frozenset(
    {
        XLSX_CONTENT_TYPE,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.ms-excel",
        "application/msword",
        "application/vnd.ms-powerpoint",
        "application/x-msdownload",
        "application/pdf",
    }
)

# the last segment of a relationship type, lower-cased
MACRO_RELATIONSHIPS = frozenset(
    {"vbaproject", "vbaprojectsignature", "xlmacrosheet", "xlintlmacrosheet", "wordvbadata"}
)
EXTERNAL_RELATIONSHIPS = frozenset(
    {"externallink", "externallinkpath", "xlexternallinkpath", "connections", "querytable"}
)
EMBEDDED_RELATIONSHIPS = frozenset(
    {"oleobject", "package", "control", "activexcontrol", "activexcontrolbinary"}
)
# external targets that are fine: a link the user clicks, nothing fetched on open
HARMLESS_EXTERNAL_RELATIONSHIPS = frozenset({"hyperlink"})


def _no_dtd(name, sysid, pubid, has_internal_subset):
    raise DTDForbidden(name, sysid, pubid)


def _no_entity(name, is_parameter, value, base, sysid, pubid, notation_name):
    raise EntitiesForbidden(name, value, base, sysid, pubid, notation_name)


def _no_unparsed_entity(name, base, sysid, pubid, notation_name):
    raise EntitiesForbidden(name, None, base, sysid, pubid, notation_name)


def _no_external(context, base, sysid, pubid):
    raise ExternalReferenceForbidden(context, base, sysid, pubid)


_SHEET_TAGS_OF_NOTE = frozenset(
    {"f", "oleObject", "oleObjects", "dimension", "mergeCell", "hyperlink"}
)


class _LocalNames(dict):
    """expat's ``namespace local`` element names → local names, cached."""

    def __missing__(self, name: str) -> str:
        local = self[name] = name.rpartition(" ")[2]
        return local


# --- the inspection ------------------------------------------------------------


class _Inspector:
    def __init__(self, archive: zipfile.ZipFile, limits: XlsxLimits, collect_text: bool = False):
        self.archive = archive
        self.limits = limits
        self.texts: list[str] | None = [] if collect_text else None
        self.entries: dict[str, zipfile.ZipInfo] = {}  # casefolded name → entry
        self.parsed: set[str] = set()
        self.default_types: dict[str, str] = {}  # extension → content type
        self.override_types: dict[str, str] = {}  # casefolded part name → content type
        # per relationships part: [(type's last segment, resolved target, external?)]
        self.relationships: dict[str, list[tuple[str, str, bool, str]]] = {}

    def run(self, size: int) -> Verdict:
        self._check_entries()
        return self.run_after_entries(size)

    def run_after_entries(self, size: int) -> Verdict:
        self._check_part_names()
        self._check_required_parts()
        self._check_content_types()
        self._check_relationships()
        sheets = self._read_workbook()
        long_strings = self._scan_shared_strings()
        self._scan_worksheets(sheets, long_strings)
        self._scan_remaining_xml()
        text = "\n".join(self.texts) if self.texts else ""
        return Verdict(sheets=tuple(name for name, _ in sheets), size=size, text=text)

    # zip entries

    def _check_entries(self) -> None:
        limits = self.limits
        infos = self.archive.infolist()
        if len(infos) > limits.max_entries:
            raise problems.error(
                "files.xlsx.too_many_entries",
                limit_text=_n(limits.max_entries),
                limit=limits.max_entries,
            )
        total = 0
        for info in infos:
            for name in (info.orig_filename, info.filename):
                if _unsafe_name(name):
                    raise problems.error("files.xlsx.unsafe_entry_name", entry=_shown(name))
            key = info.filename.casefold()
            if key in self.entries:
                raise problems.error("files.xlsx.duplicate_entry", entry=_shown(info.filename))
            self.entries[key] = info
            if info.flag_bits & 0x1 or info.compress_type not in (
                zipfile.ZIP_STORED,
                zipfile.ZIP_DEFLATED,
            ):
                # encrypted, or compressed in a way Excel never writes
                raise problems.error("files.xlsx.corrupt", entry=_shown(info.filename))
            total += info.file_size
            if total > limits.max_uncompressed:
                raise problems.error(
                    "files.xlsx.zip_bomb",
                    reason=f"plus de {format_size(limits.max_uncompressed)} une fois décompressé",
                    limit=limits.max_uncompressed,
                )
            if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                raise problems.error(
                    "files.xlsx.zip_bomb",
                    reason=f"l'élément « {_shown(info.filename)} » est compressé plus de "
                    f"{_n(limits.max_ratio)} fois",
                    entry=_shown(info.filename),
                    limit=limits.max_ratio,
                )

    def _check_part_names(self) -> None:
        for checks, code in (
            (_is_macro_part, "files.xlsx.macro"),
            (_is_external_part, "files.xlsx.external_link"),
            (_is_embedded_part, "files.xlsx.embedded_object"),
        ):
            for key, info in self.entries.items():
                if checks(key):
                    raise problems.error(code, entry=_shown(info.filename))

    def _check_required_parts(self) -> None:
        # exact case: that is how openpyxl and calamine look them up
        for part in ("[Content_Types].xml", "xl/workbook.xml"):
            if part not in self.archive.NameToInfo:
                raise problems.error("files.xlsx.missing_part", entry=_shown(part))

    # XML

    def _parse(self, info: zipfile.ZipInfo, start=None, end=None, text=None, lenient=False) -> None:
        """Streams one part through a defused expat parser with these handlers.

        ``lenient``: a part that is not well-formed passes (DTDs are still
        refused: they can only come first)."""
        self.parsed.add(info.filename.casefold())
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartDoctypeDeclHandler = _no_dtd
        parser.EntityDeclHandler = _no_entity
        parser.UnparsedEntityDeclHandler = _no_unparsed_entity
        parser.ExternalEntityRefHandler = _no_external
        if start is not None:
            parser.StartElementHandler = start
        if end is not None:
            parser.EndElementHandler = end
        if text is not None:
            parser.buffer_text = True
            parser.CharacterDataHandler = text
        max_run = max(MIN_XML_RUN, 12 * self.limits.max_cell_chars)
        run = 0
        try:
            with self.archive.open(info) as stream:
                while chunk := stream.read(CHUNK):
                    last = chunk.rfind(b">")
                    run = run + len(chunk) if last < 0 else len(chunk) - 1 - last
                    if run > max_run:
                        raise problems.error(
                            "files.xlsx.corrupt",
                            entry=_shown(info.filename),
                            error="element too long",
                        )
                    parser.Parse(chunk, False)
                parser.Parse(b"", True)
        except DefusedXmlException:
            raise problems.error("files.xlsx.xml_entities", entry=_shown(info.filename)) from None
        except expat.ExpatError as exc:
            if not lenient:
                raise problems.error(
                    "files.xlsx.corrupt", entry=_shown(info.filename), error=str(exc)
                ) from None

    def _check_content_types(self) -> None:
        local = _LocalNames()

        def start(name, attrs):
            tag = local[name]
            content_type = attrs.get("ContentType")
            if content_type is None:
                return
            problem = _content_type_problem(content_type)
            if problem is not None:
                raise problem
            if tag == "Default" and attrs.get("Extension"):
                self.default_types[attrs["Extension"].lower()] = content_type.lower()
            elif tag == "Override" and attrs.get("PartName"):
                self.override_types[attrs["PartName"].lstrip("/").casefold()] = content_type.lower()

        self._parse(self.archive.getinfo("[Content_Types].xml"), start=start)

    def _content_type(self, key: str) -> str:
        if key in self.override_types:
            return self.override_types[key]
        return self.default_types.get(posixpath.splitext(key)[1].lstrip("."), "")

    def _check_relationships(self) -> None:
        for key, info in list(self.entries.items()):
            if not key.endswith(".rels"):
                continue
            # "dir/_rels/name.rels" describes "dir/name", whose targets are relative to "dir"
            base = posixpath.dirname(posixpath.dirname(key))
            found: list[tuple[str, str, bool, str]] = []

            def start(name, attrs, base=base, found=found):
                if not name.endswith("Relationship"):
                    return
                kind = attrs.get("Type", "").rstrip("/").rpartition("/")[2].lower()
                target = attrs.get("Target", "")
                external = attrs.get("TargetMode", "").lower() == "external"
                if kind in MACRO_RELATIONSHIPS:
                    raise problems.error("files.xlsx.macro", relationship=kind)
                if kind in EXTERNAL_RELATIONSHIPS or (
                    external and kind not in HARMLESS_EXTERNAL_RELATIONSHIPS
                ):
                    raise problems.error("files.xlsx.external_link", relationship=kind)
                if kind in EMBEDDED_RELATIONSHIPS:
                    raise problems.error("files.xlsx.embedded_object", relationship=kind)
                if not external:
                    target = (
                        target.lstrip("/")
                        if target.startswith("/")
                        else posixpath.normpath(posixpath.join(base, target))
                    )
                found.append((kind, target.casefold(), external, attrs.get("Id", "")))

            self._parse(info, start=start)
            self.relationships[key] = found

    def _read_workbook(self) -> list[tuple[str, str | None]]:
        """[(sheet name, its worksheet part or None for a chart sheet)]."""
        limits = self.limits
        named: list[tuple[str, str]] = []
        local = _LocalNames()

        def start(name, attrs):
            tag = local[name]
            if tag == "sheet":
                rel_id = next((v for k, v in attrs.items() if k.endswith(" id")), "")
                named.append((attrs.get("name", ""), rel_id))
                if len(named) > limits.max_sheets:
                    raise problems.error(
                        "files.xlsx.too_many_sheets",
                        limit_text=_n(limits.max_sheets),
                        limit=limits.max_sheets,
                    )
            elif tag == "externalReference":
                raise problems.error("files.xlsx.external_link", entry="xl/workbook.xml")

        self._parse(self.archive.getinfo("xl/workbook.xml"), start=start)
        targets = {
            rel_id: (kind, target)
            for kind, target, external, rel_id in self.relationships.get(
                "xl/_rels/workbook.xml.rels", []
            )
            if not external
        }
        sheets: list[tuple[str, str | None]] = []
        for sheet_name, rel_id in named:
            kind, target = targets.get(rel_id, ("", ""))
            if kind == "worksheet":
                if target not in self.entries:
                    raise problems.error("files.xlsx.missing_part", entry=_shown(target))
                sheets.append((sheet_name, target))
            else:
                sheets.append((sheet_name, None))
        return sheets

    def _shared_strings_part(self) -> zipfile.ZipInfo | None:
        for kind, target, external, _id in self.relationships.get("xl/_rels/workbook.xml.rels", []):
            if kind == "sharedstrings" and not external and target in self.entries:
                return self.entries[target]
        return self.entries.get("xl/sharedstrings.xml")

    def _scan_shared_strings(self) -> set[int]:
        """Indexes of the shared strings longer than a cell may be."""
        info = self._shared_strings_part()
        if info is None:
            return set()
        max_chars = self.limits.max_cell_chars
        long_strings: set[int] = set()
        local = _LocalNames()
        index = -1
        length = 0
        capture = False

        def start(name, attrs):
            nonlocal index, length, capture
            tag = local[name]
            if tag == "si":
                index += 1
                length = 0
            elif tag == "t":
                capture = True

        def end(name):
            nonlocal capture
            if capture:  # a <t> holds no element: this closes it
                capture = False
                if length > max_chars:
                    long_strings.add(index)
                    if len(long_strings) > MAX_LONG_STRINGS:
                        raise problems.error(
                            "files.xlsx.cell_too_long",
                            variant="workbook",
                            limit_text=_n(max_chars),
                            limit=max_chars,
                        )

        texts = self.texts

        def text(data):
            nonlocal length
            if capture:
                length += len(data)
                if texts is not None:
                    texts.append(data)

        self._parse(info, start=start, end=end, text=text)
        return long_strings

    def _scan_worksheets(self, sheets: list[tuple[str, str | None]], long_strings: set[int]):
        limits = self.limits
        parts = [(name, part) for name, part in sheets if part is not None]
        listed = {part for _, part in parts}
        # worksheets the workbook does not list are still parts a parser may read
        parts += [
            (self.entries[key].filename, key)
            for key in self.entries
            if key not in listed and re.fullmatch(r"xl/worksheets/[^/]+\.xml", key)
        ]
        if len(parts) > limits.max_sheets:
            raise problems.error(
                "files.xlsx.too_many_sheets",
                limit_text=_n(limits.max_sheets),
                limit=limits.max_sheets,
            )
        for label, part in parts:
            self._scan_worksheet(self.entries[part], label, long_strings)
        if long_strings:  # too long, though no cell shows it: refused all the same
            raise problems.error(
                "files.xlsx.cell_too_long",
                variant="workbook",
                limit_text=_n(limits.max_cell_chars),
                limit=limits.max_cell_chars,
            )

    def _scan_worksheet(self, info: zipfile.ZipInfo, label: str, long_strings: set[int]) -> None:
        limits = self.limits
        max_rows, max_cols, max_chars = limits.max_rows, limits.max_columns, limits.max_cell_chars
        local = _LocalNames()
        row = col = rows_seen = cells_in_row = length = 0
        cell_ref: str | None = None
        cell_type: str | None = None
        capture = want_value = in_t = False
        value: list[str] = []
        texts = self.texts

        def where() -> str:
            return cell_ref or f"{column_letters(col)}{row}"

        def start(name, attrs):
            # called once per element: the usual tags first, the rare ones last
            nonlocal row, col, rows_seen, cells_in_row, length, cell_ref, cell_type
            nonlocal capture, want_value, in_t
            tag = local[name]
            if tag == "c":
                cell_ref = attrs.get("r")
                if cell_ref is None:
                    col += 1
                else:
                    digits = cell_ref.lstrip(_UPPER)
                    if (
                        digits.isdigit()
                        and digits.isascii()
                        and len(digits) <= 10
                        and len(digits) < len(cell_ref)
                    ):
                        col = column_index(cell_ref[: len(cell_ref) - len(digits)])
                        cell_row = int(digits)
                    else:
                        col, cell_row = _cell_position(cell_ref)
                    if cell_row > max_rows:
                        raise problems.error(
                            "files.xlsx.too_many_rows",
                            sheet=_shown(label),
                            where=f"cellule {cell_ref}",
                            limit_text=_n(max_rows),
                            limit=max_rows,
                        )
                cells_in_row += 1
                if col > max_cols or cells_in_row > max_cols:
                    raise problems.error(
                        "files.xlsx.too_many_columns",
                        sheet=_shown(label),
                        where=f"cellule {where()}",
                        limit_text=_n(max_cols),
                        column=column_letters(max_cols),
                        limit=max_cols,
                    )
                cell_type = attrs.get("t")
                length = 0
            elif tag == "v":
                capture = True
                length = 0
                if long_strings and cell_type == "s":
                    want_value = True
                    value.clear()
            elif tag == "t":  # inline string runs add up
                capture = True
                in_t = True
            elif tag == "row":
                number = attrs.get("r")
                if number is None:
                    row += 1
                elif number.isdigit() and number.isascii() and len(number) <= 10:
                    row = int(number)
                else:
                    raise problems.error(
                        "files.xlsx.corrupt", entry=_shown(info.filename), row=_shown(number, 20)
                    )
                rows_seen += 1
                if row > max_rows or rows_seen > max_rows:
                    raise problems.error(
                        "files.xlsx.too_many_rows",
                        sheet=_shown(label),
                        where=f"ligne {_n(max(row, rows_seen))}",
                        limit_text=_n(max_rows),
                        limit=max_rows,
                    )
                col = cells_in_row = 0
            elif tag not in _SHEET_TAGS_OF_NOTE:
                return
            elif tag == "f":
                capture = True
                length = 0
            elif tag in ("oleObject", "oleObjects"):
                raise problems.error("files.xlsx.embedded_object", entry=_shown(info.filename))
            else:  # dimension, mergeCell, hyperlink: parsers fill these ranges cell by cell
                ref = attrs.get("ref") or ""
                corner_col, corner_row = _range_corner(ref)
                if corner_row > max_rows:
                    raise problems.error(
                        "files.xlsx.too_many_rows",
                        sheet=_shown(label),
                        where=f"plage {_shown(ref, 40)}",
                        limit_text=_n(max_rows),
                        limit=max_rows,
                    )
                if corner_col > max_cols:
                    raise problems.error(
                        "files.xlsx.too_many_columns",
                        sheet=_shown(label),
                        where=f"plage {_shown(ref, 40)}",
                        limit_text=_n(max_cols),
                        column=column_letters(max_cols),
                        limit=max_cols,
                    )

        def end(name):
            nonlocal capture, want_value, in_t
            if capture:  # <v>, <f> and <t> hold no element: this closes one
                capture = in_t = False
                if want_value:
                    want_value = False
                    index = "".join(value).strip()
                    if index.isdigit() and int(index) in long_strings:
                        raise problems.error(
                            "files.xlsx.cell_too_long",
                            sheet=_shown(label),
                            cell=where(),
                            limit_text=_n(max_chars),
                            limit=max_chars,
                        )

        def text(data):
            nonlocal length
            if capture:
                length += len(data)
                if length > max_chars:
                    raise problems.error(
                        "files.xlsx.cell_too_long",
                        sheet=_shown(label),
                        cell=where(),
                        limit_text=_n(max_chars),
                        limit=max_chars,
                    )
                if want_value:
                    value.append(data)
                if in_t and texts is not None:
                    texts.append(data)

        self._parse(info, start=start, end=end, text=text)

    def _scan_remaining_xml(self) -> None:
        """Every other XML part, for DTDs and entities only (expat at C speed)."""
        for key, info in self.entries.items():
            if key in self.parsed or key.endswith("/"):
                continue
            content_type = self._content_type(key)
            if key.endswith((".xml", ".rels", ".vml")) or content_type.endswith(("+xml", "/xml")):
                # Excel writes VML that is not well-formed (an unclosed <br> in a
                # button's label); no parser of ours reads VML
                self._parse(info, lenient=key.endswith(".vml"))


def check(data: bytes, name: str | None = None, limits: XlsxLimits = DEFAULT_LIMITS) -> Verdict:
    """The verdict on an upload, or ``InvalidInput`` ``files.xlsx.*``.

    ``name`` is the uploaded file name (its extension is checked) or None when
    only the bytes are known."""
    if not data:
        raise problems.error("files.xlsx.empty")
    if len(data) > limits.max_bytes:
        raise problems.error(
            "files.xlsx.too_large", size=format_size(limits.max_bytes), limit=limits.max_bytes
        )
    if name is not None and not name.lower().endswith(".xlsx"):
        raise problems.error("files.xlsx.not_xlsx", name=_shown(name))
    if not bytes(data[:4]) == b"PK\x03\x04":
        raise problems.error("files.xlsx.not_xlsx", variant="content")
    data = bytes(data)
    with _open_zip(data, limits) as archive:
        try:
            return _Inspector(archive, limits).run(len(data))
        except InvalidInput:
            raise
        except Exception as exc:  # noqa: BLE001 - CRC errors, bad deflate streams…
            log.info("xlsx refused: unreadable content (%r)", exc)
            raise problems.error("files.xlsx.corrupt") from None


def _open_zip(data: bytes, limits: XlsxLimits) -> zipfile.ZipFile:
    """The archive, once its central directory (as declared) is within the
    entry limits; any unreadable zip is a corrupt upload."""
    declared = _declared_directory(data)
    if declared is not None and (
        declared[0] > limits.max_entries or declared[1] > limits.max_entries * CD_BYTES_PER_ENTRY
    ):
        raise problems.error(
            "files.xlsx.too_many_entries",
            limit_text=_n(limits.max_entries),
            limit=limits.max_entries,
        )
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any unreadable zip is a corrupt upload
        log.info("zip refused: unreadable (%r)", exc)
        raise problems.error("files.xlsx.corrupt") from None


# --- other office packages (files.policy) --------------------------------------

ODF_TYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
}
OOXML_MAIN_PARTS = (
    ("xl/workbook.xml", "xlsx"),
    ("word/document.xml", "docx"),
    ("ppt/presentation.xml", "pptx"),
)


class _PackageInspector(_Inspector):
    """The workbook's checks that apply to any office package: zip entries
    (done first, by ``inspect_zip``), macro, external and embedded parts by
    name, then for OOXML content types and every relationship, and for all
    XML parts no DTD or entity."""

    def run_package(self, size: int, odf: bool) -> Verdict:
        for key, info in self.entries.items():
            base = posixpath.basename(key.rstrip("/"))
            if "vbaproject" in base or key.startswith(("basic/", "scripts/", "xl/macrosheets/")):
                raise problems.error("files.xlsx.macro", entry=_shown(info.filename))
            if _is_external_part(key):
                raise problems.error("files.xlsx.external_link", entry=_shown(info.filename))
            if (
                "/embeddings/" in key
                or "/activex/" in key
                or "oleobject" in key
                or key.startswith(("object ", "objectreplacements/"))
            ):
                raise problems.error("files.xlsx.embedded_object", entry=_shown(info.filename))
        if not odf:
            if "[Content_Types].xml" not in self.archive.NameToInfo:
                raise problems.error("files.xlsx.missing_part", entry="[Content_Types].xml")
            self._check_content_types()
            self._check_relationships()
        self._scan_remaining_xml()
        return Verdict(sheets=(), size=size)


def inspect_zip(
    data: bytes, limits: XlsxLimits = DEFAULT_LIMITS, collect_text: bool = False
) -> tuple[str | None, Verdict | None]:
    """(type, verdict) of a zip upload: ``xlsx``, ``docx``, ``pptx``, ``odt``,
    ``ods``, ``odp`` once its checks passed, or (None, None) for any other zip.

    The zip-level checks (entry count, names, compression, zip bomb) run
    before the type is known, so a hostile zip gets the same refusal in every
    slot; then each type's own checks. ``InvalidInput`` ``files.xlsx.*``."""
    data = bytes(data)
    with _open_zip(data, limits) as archive:
        try:
            inspector = _PackageInspector(archive, limits, collect_text)
            inspector._check_entries()
            names = archive.NameToInfo
            kind = next((k for part, k in OOXML_MAIN_PARTS if part in names), None)
            if kind == "xlsx":
                return kind, inspector.run_after_entries(len(data))
            if kind is not None:
                return kind, inspector.run_package(len(data), odf=False)
            info = names.get("mimetype")
            if info is not None and info.file_size <= 100:
                kind = ODF_TYPES.get(archive.read(info).decode("ascii", "replace").strip())
                if kind is not None:
                    return kind, inspector.run_package(len(data), odf=True)
            return None, None
        except InvalidInput:
            raise
        except Exception as exc:  # noqa: BLE001 - CRC errors, bad deflate streams…
            log.info("zip refused: unreadable content (%r)", exc)
            raise problems.error("files.xlsx.corrupt") from None

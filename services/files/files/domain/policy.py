"""The upload policy: which types each slot (a files ``kind``) accepts, and
how a type is recognised from the bytes.

The type is decided from the content only, never from the client's name or
Content-Type; the stored and served type is the one decided here. Magic
numbers come from a small explicit table rather than a detection library
(``puremagic``, ``filetype``): we accept nine types, and a library that
knows hundreds answers "what is this most likely?" where we need "is it
exactly one of these?"; its guesses change between releases (the newest
puremagic no longer installs on Python 3.11); and no library tells a .docx
from an .xlsx, which needs the zip's part names (``files.policy``) anyway.

A refusal here is ``Rejected`` with the same code whatever the slot:
``files.type_not_allowed`` for a type the slot does not take (or no type we
know). Deeper checks (OOXML, ODF, PDF, malware) live in ``files.policy``.
"""

from __future__ import annotations

from dataclasses import dataclass

from files.domain import meta


@dataclass(frozen=True)
class FileType:
    key: str
    content_type: str
    extensions: tuple[str, ...]  # the first is the canonical one
    family: str  # pdf, image, ooxml, odf, text
    label: str  # as users read it


def _t(key, content_type, extensions, family, label=None) -> FileType:
    return FileType(key, content_type, extensions, family, label or key.upper())


TYPES = {
    t.key: t
    for t in (
        _t("pdf", "application/pdf", ("pdf",), "pdf"),
        _t("png", "image/png", ("png",), "image"),
        _t("jpeg", "image/jpeg", ("jpg", "jpeg"), "image", "JPEG"),
        _t("gif", "image/gif", ("gif",), "image"),
        _t(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ("xlsx",),
            "ooxml",
        ),
        _t(
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            ("docx",),
            "ooxml",
        ),
        _t(
            "pptx",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            ("pptx",),
            "ooxml",
        ),
        _t("odt", "application/vnd.oasis.opendocument.text", ("odt",), "odf"),
        _t("ods", "application/vnd.oasis.opendocument.spreadsheet", ("ods",), "odf"),
        _t("odp", "application/vnd.oasis.opendocument.presentation", ("odp",), "odf"),
        _t("csv", "text/csv", ("csv", "txt"), "text"),
    )
}

# documents people join to a request or a survey
DOCUMENTS = frozenset({"pdf", "png", "jpeg", "gif", "docx", "xlsx", "pptx", "odt", "ods", "odp"})

# every slot (files kind) and what it accepts: a kind without an entry is a
# kind without a policy (a test fails on it)
SLOTS: dict[str, frozenset[str]] = {
    meta.HABILITATION: frozenset({"pdf", "png", "jpeg", "docx", "odt"}),
    meta.REGISTRATION_OTHER: frozenset({"pdf", "png", "jpeg", "docx", "odt"}),
    meta.ATTACHMENT: DOCUMENTS,
    meta.ANNEX: DOCUMENTS,
    meta.SURVEY_FORM: frozenset({"xlsx"}),
    meta.CERTIFICATION_LIST: frozenset({"xlsx"}),
    meta.CATALOGUE: frozenset({"xlsx", "csv"}),
}

# leading bytes → type (zips are told apart by their parts, text by its bytes)
MAGIC = (
    (b"%PDF-", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"PK\x03\x04", "zip"),
)
# text that a browser would render as a page or a picture, whatever we say
MARKUP = (b"<!doctype", b"<html", b"<svg", b"<script", b"<?xml", b"<body", b"<iframe")
TEXT_HEAD = 4096


def magic_of(data: bytes) -> str | None:
    """``pdf``, ``png``, ``jpeg``, ``gif``, ``zip``, ``text`` or None (unknown)."""
    for prefix, key in MAGIC:
        if data.startswith(prefix):
            return key
    return "text" if is_plain_text(data) else None


def is_plain_text(data: bytes) -> bool:
    """UTF-8 (or Windows-1252, as Excel writes CSV in France) without control
    characters other than tab and line breaks, and not markup."""
    if any(b < 0x20 and b not in (0x09, 0x0A, 0x0D) or b == 0x7F for b in data[:TEXT_HEAD]):
        return False
    body = data.removeprefix(b"\xef\xbb\xbf")
    if len(data) > TEXT_HEAD and (b"\0" in data or any(c in data for c in (b"\x1b", b"\x7f"))):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        try:
            body.decode("cp1252")
        except UnicodeDecodeError:
            return False
    head = body[:TEXT_HEAD].lstrip().lower()
    return not (head.startswith(b"<") or any(tag in head for tag in MARKUP))


def accepted_label(kind: str) -> str:
    order = list(TYPES)
    return ", ".join(TYPES[k].label for k in sorted(SLOTS[kind], key=order.index))


def not_allowed(kind: str) -> meta.Rejected:
    return meta.Rejected("files.type_not_allowed", "file", accepted=accepted_label(kind))


def allowed(kind: str, type_key: str, only: frozenset[str] | None = None) -> FileType:
    """The type when ``kind`` (and ``only``, a caller's narrower set) takes it."""
    accepted = SLOTS[kind] if only is None else SLOTS[kind] & only
    if type_key not in accepted:
        raise not_allowed(kind)
    return TYPES[type_key]


def stored_name(name: str, file_type: FileType) -> str:
    """The name with an extension that matches the decided type (a PDF sent as
    ``releve.xlsx`` is kept as ``releve.pdf``)."""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and ext.lower() in file_type.extensions:
        return name
    base = stem if dot and stem and len(ext) <= 5 else name
    base = base[: meta.NAME_MAX - 6].rstrip() or "document"
    return f"{base}.{file_type.extensions[0]}"

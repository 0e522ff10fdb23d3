"""What a valid upload is: its kind, a safe name, a plain MIME type, bounded bytes."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

from files.problems import CATALOGUE as PROBLEMS
from kit.limits import MAX_UPLOAD_BYTES, format_size  # noqa: F401 - format_size: files.domain.meta.format_size stays importable

HABILITATION = "habilitation"
REGISTRATION_OTHER = "registration_other"
ATTACHMENT = "attachment"
SURVEY_FORM = "survey_form"
ANNEX = "annex"  # a carte request's annexes
CERTIFICATION_LIST = "certification_list"  # a survey's imported certification list
CATALOGUE = "catalogue"  # the carte diploma catalogue, imported by its administrator

KINDS = (
    HABILITATION,
    REGISTRATION_OTHER,
    ATTACHMENT,  # « Pièces à fournir » of a survey
    SURVEY_FORM,  # a transmitted survey form
    ANNEX,
    CERTIFICATION_LIST,
    CATALOGUE,
)
# identity documents given with the registration form: agency eyes only
REGISTRATION_KINDS = frozenset({HABILITATION, REGISTRATION_OTHER})

NAME_MAX = 200
OWNER_MAX = 64
DEFAULT_MAX_BYTES = MAX_UPLOAD_BYTES  # FILES_MAX_BYTES overrides it (files.settings)
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# type/subtype, RFC 6838 restricted names, no parameters
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


class Rejected(Exception):
    """An upload that breaks a rule; ``code`` is the public error code, its
    message that of the files catalogue (``params`` fill its template)."""

    def __init__(self, code: str, field: str | None = None, **params):
        self.code = code
        self.message = PROBLEMS.message(code, **params)
        self.field = field
        self.params = params
        super().__init__(code, self.message)


@dataclass(frozen=True)
class FileMeta:
    kind: str
    name: str
    content_type: str
    owner_org_id: str | None


def sanitise_name(raw: str) -> str:
    """The base name only, without control characters, at most ``NAME_MAX``
    characters (the extension is kept when the name is cut); "" when nothing
    usable remains."""
    text = unicodedata.normalize("NFC", raw)
    text = re.split(r"[/\\]", text)[-1]
    # tabs and line breaks become spaces; other control/format characters go
    text = "".join(
        " " if ch in "\t\n\r\v\f" else ch
        for ch in text
        if ch in "\t\n\r\v\f" or unicodedata.category(ch)[0] != "C"
    )
    text = " ".join(text.split())
    text = text.lstrip(".").strip()
    if len(text) > NAME_MAX:
        stem, dot, ext = text.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            text = stem[: NAME_MAX - len(ext) - 1].rstrip() + "." + ext
        else:
            text = text[:NAME_MAX].rstrip()
    return text


def normalise_content_type(raw: str) -> str | None:
    """``raw`` lower-cased when it is a plain ``type/subtype``, else None."""
    value = raw.strip().lower()
    return value if _MIME.match(value) else None


def check_meta(meta: dict) -> FileMeta:
    """Validates ``{kind, name, content_type?, owner_org_id?}``."""
    if not isinstance(meta, dict):
        raise Rejected("files.invalid_meta")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise Rejected("files.invalid_kind", "kind")
    raw_name = meta.get("name")
    name = sanitise_name(raw_name) if isinstance(raw_name, str) else ""
    if not name:
        raise Rejected("files.invalid_name", "name")
    raw_type = meta.get("content_type")
    if raw_type is None or raw_type == "":
        content_type = DEFAULT_CONTENT_TYPE
    else:
        content_type = normalise_content_type(raw_type) if isinstance(raw_type, str) else None
        if content_type is None:
            raise Rejected("files.invalid_content_type", "content_type")
    owner = meta.get("owner_org_id")
    if owner is not None and (
        not isinstance(owner, str) or not owner.strip() or len(owner) > OWNER_MAX
    ):
        raise Rejected("files.invalid_owner", "owner_org_id")
    return FileMeta(
        kind=kind,
        name=name,
        content_type=content_type,
        owner_org_id=owner.strip() if owner else None,
    )


def too_large_message(max_bytes: int) -> str:
    return PROBLEMS.message("files.too_large", size=format_size(max_bytes))


def decode_content(content_b64: str, max_bytes: int) -> bytes:
    """The bytes of a base64 string, refused when empty, malformed or too big.

    The encoded length is checked before decoding, so an oversized payload
    costs no decoding work."""
    if not isinstance(content_b64, str):
        raise Rejected("files.invalid_encoding")
    if len(content_b64) > 4 * ((max_bytes + 2) // 3) + 4:
        raise Rejected("files.too_large", size=format_size(max_bytes))
    try:
        data = base64.b64decode(content_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected("files.invalid_encoding") from None
    if not data:
        raise Rejected("files.empty")
    if len(data) > max_bytes:
        raise Rejected("files.too_large", size=format_size(max_bytes))
    return data

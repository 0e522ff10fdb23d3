"""« Pièces à fournir »: which documents are accepted and how big.

The extension says which documents a survey takes (the page lists them);
the type itself is decided by the files service from the whole content
(magic numbers, office and PDF checks, malware scan), so a renamed
executable or a macro-enabled document is refused before it is stored, with
the same code as in every other upload slot. Legacy Office formats (.doc,
.xls) are refused: they may carry macros and cannot be checked cheaply. The
codes are the files service's (``files.type_not_allowed``, ``files.empty``,
``files.too_large``): the same refusal has the same code in every upload
slot; files then decides the type from the whole content and runs its
checks and malware scan.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.limits import MAX_UPLOAD_BYTES, format_size
from survey.errors import CATALOGUE

MAX_BYTES = MAX_UPLOAD_BYTES
MAX_PER_SURVEY = 20
ZIP = b"PK\x03\x04"


@dataclass(frozen=True)
class Kind:
    content_type: str
    magic: tuple[bytes, ...]


TYPES = {
    "pdf": Kind("application/pdf", (b"%PDF-",)),
    "png": Kind("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "jpg": Kind("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": Kind("image/jpeg", (b"\xff\xd8\xff",)),
    "gif": Kind("image/gif", (b"GIF87a", b"GIF89a")),
    "docx": Kind("application/vnd.openxmlformats-officedocument.wordprocessingml.document", (ZIP,)),
    "xlsx": Kind("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (ZIP,)),
    "pptx": Kind(
        "application/vnd.openxmlformats-officedocument.presentationml.presentation", (ZIP,)
    ),
    "odt": Kind("application/vnd.oasis.opendocument.text", (ZIP,)),
    "ods": Kind("application/vnd.oasis.opendocument.spreadsheet", (ZIP,)),
    "odp": Kind("application/vnd.oasis.opendocument.presentation", (ZIP,)),
}
ACCEPTED = "PDF, PNG, JPEG, GIF, DOCX, XLSX, PPTX, ODT, ODS, ODP"


class Refused(ValueError):
    """A refused attachment: ``code`` (files' codes), its message that of the
    survey catalogue (``params`` fill its template)."""

    def __init__(self, code: str, **params):
        self.code = code
        self.params = params
        self.message = CATALOGUE.message(code, **params)
        super().__init__(code, self.message)


def extension(name: str) -> str:
    base = (name or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def check(name: str, size, head: bytes) -> tuple[str, str]:
    """(extension, content type) of an acceptable document, else ``Refused``."""
    ext = extension(name)
    kind = TYPES.get(ext)
    if kind is None:
        raise Refused("files.type_not_allowed", accepted=ACCEPTED)
    if not isinstance(size, int) or size <= 0:
        raise Refused("files.empty")
    if size > MAX_BYTES:
        raise Refused("files.too_large", size=format_size(MAX_BYTES))
    # the first bytes are files' to judge (files.policy), with the rest of the
    # content: a verdict here would give an EICAR file another code than elsewhere
    return ext, kind.content_type

"""PDF upload checks: bytes in, refusal or nothing out.

A PDF is refused when it is encrypted (nobody at the agency can read it, and
no check can see inside), when it carries active content (JavaScript, an
open or page action, a launch, a form submission or import; actions a viewer
runs by itself or on a click) or embedded files (an executable travels
inside an innocent-looking document). The parsing is qpdf's, through
``pikepdf`` (maintained, C++, used by OCRmyPDF), not ours: every object of
the file is visited once, resolving nothing we do not need.

Each refusal is ``kit.errors.InvalidInput`` with a stable ``files.pdf.*``
code and a French message; whatever qpdf cannot read is
``files.pdf.corrupt``. Runs in a worker process (``kit.cpu.heavy``).
"""

from __future__ import annotations

import io
import logging

import pikepdf

from files import problems
from kit.errors import InvalidInput

log = logging.getLogger(__name__)

# action types a viewer may run without asking (or on one click)
ACTIVE_ACTIONS = frozenset(
    {
        "/JavaScript",
        "/Launch",
        "/SubmitForm",
        "/ImportData",
        "/ResetForm",
        "/Rendition",
        "/RichMediaExecute",
        "/GoToE",
    }
)
ACTIVE_KEYS = ("/JS", "/AA", "/OpenAction")
MAX_OBJECTS = 200_000


def check(data: bytes) -> None:
    """Nothing when the PDF may be stored, else ``InvalidInput`` ``files.pdf.*``."""
    try:
        document = pikepdf.open(io.BytesIO(bytes(data)))
    except pikepdf.PasswordError:
        raise problems.error("files.pdf.encrypted") from None
    except Exception as exc:  # noqa: BLE001 - whatever qpdf cannot read is corrupt
        log.info("pdf refused: unreadable (%r)", exc)
        raise problems.error("files.pdf.corrupt") from None
    with document:
        if document.is_encrypted:  # an owner password only: opens, still encrypted
            raise problems.error("files.pdf.encrypted")
        try:
            _inspect(document)
        except InvalidInput:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken object graph
            log.info("pdf refused: unreadable object (%r)", exc)
            raise problems.error("files.pdf.corrupt") from None


def _inspect(document: pikepdf.Pdf) -> None:
    root = document.Root
    if "/OpenAction" in root or "/AA" in root:
        raise problems.error("files.pdf.active_content", what="action à l'ouverture")
    names = root.get("/Names")
    if isinstance(names, pikepdf.Dictionary):
        if "/JavaScript" in names:
            raise problems.error("files.pdf.active_content", what="JavaScript")
        if "/EmbeddedFiles" in names:
            raise problems.error("files.pdf.embedded_file")
    acro = root.get("/AcroForm")
    if isinstance(acro, pikepdf.Dictionary) and "/XFA" in acro:
        raise problems.error("files.pdf.active_content", what="formulaire XFA")
    for count, obj in enumerate(document.objects):
        if count > MAX_OBJECTS:
            raise problems.error("files.pdf.corrupt")
        if not isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            continue
        kind = obj.get("/Type")
        subtype = obj.get("/Subtype")
        if kind == "/EmbeddedFile" or kind == "/Filespec" and "/EF" in obj:
            raise problems.error("files.pdf.embedded_file")
        if subtype in ("/FileAttachment", "/RichMedia", "/Movie", "/Sound", "/Screen"):
            raise (
                problems.error("files.pdf.embedded_file")
                if subtype == "/FileAttachment"
                else problems.error("files.pdf.active_content", what="média")
            )
        action = obj.get("/S")
        if action is not None and str(action) in ACTIVE_ACTIONS:
            raise problems.error(
                "files.pdf.active_content",
                what="JavaScript" if action == "/JavaScript" else f"action {action}",
            )
        for key in ACTIVE_KEYS:
            if key in obj:
                raise problems.error(
                    "files.pdf.active_content",
                    what="JavaScript" if key == "/JS" else "action automatique",
                )

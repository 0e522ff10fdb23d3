"""The gateway's one upload path: files in from multipart forms, to the files
service, and documents back out to HTTP clients.

In: ``require_file`` finds a multipart file field (422 with the slot's own
code when there is none), ``read`` takes its bytes, at most
``kit.limits.MAX_UPLOAD_BYTES`` (422 ``files.too_large`` beyond, before any
RPC). Stored: ``store`` hands bytes to one of files' store methods
(``store_xlsx`` runs the spreadsheet checks, ``store_file`` the others);
``store_survey_upload`` first asks survey whether the caller may upload there
and how files must store it. Out: ``send_document`` for documents a service
builds (its content type, never cached), ``send_stored_file`` for stored
files (always ``application/octet-stream``), both with a safe
Content-Disposition.

Nothing here picks an RPC client: callers pass theirs (``rpc().files``, a
``system`` client, the ``rpc`` factory), so each view keeps its caller and
timeouts, and tests fake the view module's ``rpc``.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from flask import Response, request
from werkzeug.datastructures import FileStorage

from kit.errors import InvalidInput
from kit.limits import MAX_UPLOAD_BYTES, format_size

STORE_METHODS = ("store_xlsx", "store_file")
STORE_TIMEOUT = 30.0  # seconds: files parses workbooks while storing them
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# « 10 Mo »: the cap as the messages show it
MAX_UPLOAD_SIZE = format_size(MAX_UPLOAD_BYTES)
TOO_LARGE = f"Le fichier dépasse la taille maximale de {MAX_UPLOAD_SIZE}."

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class Upload:
    """A file read from the request: its name, declared type and bytes."""

    name: str
    content_type: str
    content: bytes


# ---------------------------------------------------------------- in


def file_field(field: str = "file") -> FileStorage | None:
    """The file of multipart field ``field``; None when absent or unnamed."""
    if request.mimetype != "multipart/form-data":
        return None
    upload = request.files.get(field)
    return upload if upload is not None and upload.filename else None


def require_file(field: str, code: str, message: str, title: str | None = None) -> FileStorage:
    """The file of ``field``, else 422 ``code`` with ``message`` on the field
    (``title``, the problem's title, defaults to ``message``)."""
    upload = file_field(field)
    if upload is None:
        raise InvalidInput.fields({field: [message]}, code, title or message)
    return upload


def named_too_large(name: str) -> str:
    """« « devis.pdf » dépasse 10 Mo. »: the message of slots that name the file."""
    return f"« {name} » dépasse {MAX_UPLOAD_SIZE}."


def read(
    upload: FileStorage, field: str = "file", message: str = TOO_LARGE, title: str | None = None
) -> Upload:
    """``upload``'s bytes, at most ``MAX_UPLOAD_BYTES``; beyond, 422
    ``files.too_large`` with ``message`` on ``field`` (``title``, the
    problem's title, defaults to ``message``)."""
    content = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        raise InvalidInput.fields({field: [message]}, "files.too_large", title or message)
    return Upload(upload.filename or "", upload.mimetype or DEFAULT_CONTENT_TYPE, content)


# ---------------------------------------------------------------- stored


def store(files, meta: dict, content: bytes, method: str = "store_file") -> dict:
    """``content`` stored by ``files`` (an RPC proxy of the files service)
    with ``method``, one of ``STORE_METHODS``: the stored file's description."""
    if method not in STORE_METHODS:  # never let a reply pick any method
        raise RuntimeError(f"unexpected store method {method!r}")
    return getattr(files, method)(meta, base64.b64encode(content).decode())


def read_survey_file() -> Upload:
    """The multipart ``file`` of the surveys' slots (section II), else 422
    ``survey.file_missing``."""
    return read(
        require_file(
            "file",
            "survey.file_missing",
            "Aucun fichier sélectionné (champ « file » d'un formulaire multipart).",
            "Aucun fichier sélectionné.",
        )
    )


def store_survey_upload(
    rpc: Callable, survey_id: str, purpose: str, extra: dict | None = None
) -> dict:
    """The multipart ``file`` checked with survey (``prepare_upload``, before
    any byte is kept), then stored with files as survey said; ``rpc`` is the
    caller's client factory."""
    upload = read_survey_file()
    info = {
        "name": upload.name,
        "size": len(upload.content),
        "head_b64": base64.b64encode(upload.content[:64]).decode(),
        **(extra or {}),
    }
    plan = rpc().survey.prepare_upload(survey_id, purpose, info)
    return store(rpc(STORE_TIMEOUT).files, plan["meta"], upload.content, plan.get("store"))


# ---------------------------------------------------------------- out


def content_disposition(name: str, inline: bool = False) -> str:
    """``attachment`` (or ``inline``) with an ASCII fallback and the RFC 5987 UTF-8 name."""
    name = (name or "fichier").replace("\r", "").replace("\n", "")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = _UNSAFE.sub("_", ascii_name).strip(" .") or "fichier"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _send(info: dict, content_type: str, inline: bool = False) -> Response:
    response = Response(base64.b64decode(info["content_b64"]), mimetype=content_type)
    response.headers["Content-Disposition"] = content_disposition(info.get("name", ""), inline)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def send_document(result: dict, inline: bool = False) -> Response:
    """A document a service built: {name, content_type, content_b64}, never cached."""
    response = _send(result, result.get("content_type") or DEFAULT_CONTENT_TYPE, inline)
    response.headers["Cache-Control"] = "no-store"
    return response


def send_stored_file(info: dict) -> Response:
    """A stored file (files' ``get_file``), as bytes to save, whatever its type."""
    return _send(info, DEFAULT_CONTENT_TYPE)

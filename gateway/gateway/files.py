"""Sending stored files to HTTP clients with a safe Content-Disposition."""

from __future__ import annotations

import base64
import re
import unicodedata
from urllib.parse import quote

from flask import Response

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    name = (name or "fichier").replace("\r", "").replace("\n", "")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = _UNSAFE.sub("_", ascii_name).strip(" .") or "fichier"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def send_stored_file(info: dict) -> Response:
    response = Response(base64.b64decode(info["content_b64"]), mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = content_disposition(info.get("name", ""))
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response

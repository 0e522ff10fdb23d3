"""A person's data (RGPD), for the agency: find an account, export
everything the platform holds about it (JSON, or a zip with the files), and
erase it on the person's request.

The gateway composes: each service answers for its own part
(``export_person`` / ``erase_person`` RPCs of identity, survey, carte and
notify; no service reads another's data). identity audits both actions.
Erasure runs identity's checks first (``check=True``: nothing changed), then
the other services, identity last (it anonymises the addresses the others
are erased by); every step is idempotent, so a failed erasure is finished by
running it again. Both are sensitive actions: agency staff with TOTP give a
fresh code first (``reauthentication_required``, as gateway.auth's
SENSITIVE_ENDPOINTS).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import json
import re
import urllib.parse
import zipfile

from flask import Blueprint, Response, g, jsonify, redirect, request

from gateway import auth
from gateway.errors import json_body
from gateway.rpc import rpc
from gateway.uploads import content_disposition
from kit.errors import Forbidden, InvalidInput, NotFound

bp = Blueprint("personal_data_api", __name__)

EXPORT_TIMEOUT = 30.0  # seconds: a person's files come one RPC each
MAX_ZIP_BYTES = 100 * 1024 * 1024  # beyond: files listed in the JSON, not joined
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def reauthentication_required(view):
    """A fresh TOTP code from accounts that have TOTP (gateway.auth):
    403 ``auth.reauthentication_required`` (API) or the re-authentication page."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.caller.authenticated and not auth.fresh_second_factor():
            if request.path.startswith("/api/"):
                raise Forbidden(
                    "auth.reauthentication_required",
                    "Action sensible : saisissez d'abord un nouveau code de votre application "
                    "d'authentification (POST /api/v1/sessions/current/reauthentication).",
                )
            back = request.path if request.method == "GET" else _referrer_path()
            return redirect(
                f"{auth.REAUTH_PAGE}?suite={urllib.parse.quote(auth.safe_next(back))}", code=303
            )
        return view(*args, **kwargs)

    return wrapped


def _referrer_path() -> str:
    referrer = urllib.parse.urlsplit(request.referrer or "")
    if referrer.netloc and referrer.netloc != request.host:
        return "/"
    return referrer.path or "/"


# ---------------------------------------------------------------- composition


def gather(user_id: str) -> dict:
    """Every service's part of a person's data (identity's call audits it)."""
    client = rpc(EXPORT_TIMEOUT)
    identity = client.identity.export_person(user_id)
    account = identity["account"]
    survey = client.survey.export_person(user_id)
    carte = client.carte.export_person(user_id) if account.get("carte_account") else None
    emails = account.get("emails") or []
    notify = client.notify.export_person(emails) if emails else {"emails": []}
    return {
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "user_id": user_id,
        "identity": identity,
        "survey": survey,
        "carte": carte,
        "notify": notify,
        "files": _files(identity, survey, carte),
    }


def _files(identity: dict, survey: dict, carte: dict | None) -> list[dict]:
    """The files the person gave: registration documents, transmissions,
    survey attachments, carte annexes (one row per file id)."""
    rows = [("registration", d["file_id"], d["name"]) for d in identity.get("documents", [])]
    rows += [("transmission", t["file_id"], t["file_name"]) for t in survey["transmissions"]]
    rows += [("survey_attachment", a["file_id"], a["name"]) for a in survey.get("attachments", [])]
    if carte:
        rows += [("carte_annex", a["file_id"], a["name"]) for a in carte.get("annexes", [])]
    seen, files = set(), []
    for source, file_id, name in rows:
        if file_id and file_id not in seen:
            seen.add(file_id)
            files.append({"source": source, "file_id": file_id, "name": name})
    return files


def zip_export(data: dict) -> bytes:
    """``donnees-personnelles.json`` and ``fichiers/<source>/<id>-<name>``;
    a file gone or past ``MAX_ZIP_BYTES`` is marked in the JSON instead."""
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in data["files"]:
            try:
                stored = rpc(EXPORT_TIMEOUT).files.get_file(item["file_id"])
            except NotFound:
                item["in_zip"], item["note"] = False, "fichier supprimé"
                continue
            except InvalidInput as exc:
                if exc.code != "files.malware_detected":
                    raise
                # found infected after its upload: its bytes are gone
                item["in_zip"], item["note"] = False, "fichier supprimé : contenu malveillant"
                continue
            content = base64.b64decode(stored["content_b64"])
            if total + len(content) > MAX_ZIP_BYTES:
                item["in_zip"], item["note"] = False, "archive trop volumineuse"
                continue
            total += len(content)
            path = f"fichiers/{item['source']}/{item['file_id'][:12]}-{_safe(item['name'])}"
            archive.writestr(path, content)
            item["in_zip"], item["path"] = True, path
        archive.writestr(
            "donnees-personnelles.json", json.dumps(data, ensure_ascii=False, indent=2)
        )
    return buffer.getvalue()


def _safe(name: str) -> str:
    return (_SAFE.sub("_", name or "fichier").strip("._") or "fichier")[:100]


def zip_response(user_id: str) -> Response:
    content = zip_export(gather(user_id))
    response = Response(content, mimetype="application/zip")
    response.headers["Content-Disposition"] = content_disposition(
        f"donnees-personnelles-{user_id}.zip"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def erase(user_id: str, reason: str | None) -> dict:
    """The erasure, service by service (module docstring)."""
    client = rpc(EXPORT_TIMEOUT)
    client.identity.erase_person(user_id, reason, True)  # checks only: raises if refused
    person = client.identity.get_person(user_id)
    result = {"user_id": user_id, "survey": client.survey.erase_person(user_id)}
    result["carte"] = client.carte.erase_person(user_id) if person.get("carte_account") else None
    emails = person.get("emails") or []
    result["notify"] = client.notify.erase_person(emails) if emails else {"emails_erased": 0}
    result["identity"] = client.identity.erase_person(user_id, reason)
    result["status"] = "erased"
    return result


# ---------------------------------------------------------------- routes


@bp.get("/people")
@auth.agency_required
def find_people():
    """Accounts whose e-mail, name or carte identifier holds ``query``."""
    return jsonify({"items": rpc().identity.find_people(request.args.get("query", ""))})


@bp.get("/people/<user_id>/personal-data")
@auth.agency_required
@reauthentication_required
def export_json(user_id):
    return jsonify(gather(user_id))


@bp.get("/people/<user_id>/personal-data.zip")
@auth.agency_required
@reauthentication_required
def export_zip(user_id):
    return zip_response(user_id)


@bp.post("/people/<user_id>/erasure")
@auth.agency_required
@reauthentication_required
def erase_person(user_id):
    body = json_body(required=False)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidInput.fields({"reason": ["Le motif doit être un texte."]})
    return jsonify(erase(user_id, reason))

"""HTTP API of section I of the Karoussel guide: registration, agency
validation, user management by account managers, sign-in and passwords.

Views stay thin: parse, one or two RPCs, shape the response. Error codes are
those of the identity service (see the OpenAPI document).
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request

from gateway import auth, uploads
from gateway.errors import current_request_id, json_body
from gateway.ratelimit import client_ip, limit
from gateway.rpc import lend, pool_for, rpc
from kit.context import SYSTEM, Caller
from kit.errors import InvalidInput, ServiceError, Unauthenticated

log = logging.getLogger(__name__)

bp = Blueprint("identity_api", __name__)

REGISTRATION_FIELDS = (
    "account_type",
    "siret",
    "nda",
    "uai",
    "apprentice_count",
    "last_name",
    "first_name",
    "phone",
    "email",
    "email_confirm",
    "password",
    "password_confirm",
)
MAX_ATTACHMENTS = 10


def registration_input() -> tuple[dict, list]:
    """JSON, or the multipart form with files ``habilitation`` and ``attachments``."""
    if request.mimetype == "multipart/form-data":
        data = {k: request.form.get(k) for k in REGISTRATION_FIELDS if k in request.form}
        files = [("habilitation", f) for f in request.files.getlist("habilitation")]
        files += [("other", f) for f in request.files.getlist("attachments")]
        return data, [(kind, f) for kind, f in files if f and f.filename]
    return json_body(), []


def _store_uploads(files, stored: list[dict]) -> list[dict]:
    """Each document through files' upload policy; ``stored`` fills as they pass."""
    if len(files) > MAX_ATTACHMENTS:
        raise InvalidInput.fields({"attachments": [f"{MAX_ATTACHMENTS} fichiers au plus."]})
    for kind, upload in files:
        field = "habilitation" if kind == "habilitation" else "attachments"
        document = uploads.read(
            upload, field, uploads.named_too_large(upload.filename), InvalidInput.default_message
        )
        meta = {
            "kind": "habilitation" if kind == "habilitation" else "registration_other",
            "name": document.name,
            "content_type": document.content_type,
        }
        info = uploads.store(rpc().files, meta, document.content)
        stored.append({"file_id": info["id"], "kind": kind, "name": info["name"]})
    return stored


def discard_files(file_ids: list[str]) -> None:
    """Best effort: documents stored for a request that was then refused go
    for good (``files.discard_file``, as ``system``: the uploader may be
    anonymous); the files sweep is the safety net."""
    if not file_ids:
        return
    caller = Caller(roles=(SYSTEM,), request_id=current_request_id())
    try:
        with lend(pool_for(current_app._get_current_object()), caller) as client:
            for file_id in file_ids:
                client.files.discard_file(file_id)
    except Exception:  # noqa: BLE001 - the refusal matters more than the clean-up
        log.warning("could not discard refused uploads %s", file_ids, exc_info=True)


def submit_registration(data: dict, files: list) -> dict:
    """« S'inscrire », shared by the API and the page (gateway.pages.accounts):
    the form is checked first so that nothing is uploaded for an invalid one,
    then the documents go to files and identity registers with their ids.
    A refusal (of a document, or of the registration itself: 409, 422…)
    leaves no document behind. Raises the ServiceErrors of
    check_registration, files and register_organisation."""
    rpc().identity.check_registration(data)
    stored: list[dict] = []
    try:
        attachments = _store_uploads(files, stored)
        return rpc().identity.register_organisation(data, attachments)
    except ServiceError:
        # a typed refusal only: after a timeout identity may have kept the ids
        discard_files([item["file_id"] for item in stored])
        raise


@bp.post("/registrations")
@limit("register", per_minute=20, key=client_ip)
def register():
    """« S'inscrire ». 202 {status, message} (same answer for a known address)."""
    data, files = registration_input()
    return jsonify(submit_registration(data, files)), 202


@bp.post("/registrations/confirm")
@limit("confirm", per_minute=30, key=client_ip)
def confirm_email():
    """Confirms the address from the e-mailed link {token}."""
    return jsonify(rpc().identity.confirm_email(json_body().get("token")))


@bp.get("/registrations")
@auth.agency_required
def pending_registrations():
    """Agency: accounts awaiting validation, with their documents."""
    return jsonify({"items": rpc().identity.list_registrations()})


@bp.post("/users/<user_id>/validate")
@auth.login_required
def validate_user(user_id):
    """Optional {confirm: true, reason}: required to validate an organisation
    closed or unknown in SIRENE (409 validation.sirene_closed /
    validation.sirene_unknown without it). A fresh TOTP code first (gateway.auth)."""
    body = json_body(required=False)
    confirmation = {k: body[k] for k in ("confirm", "reason") if k in body} or None
    return jsonify(rpc().identity.validate_user(user_id, confirmation))


@bp.post("/users/<user_id>/reject")
@auth.login_required
def reject_user(user_id):
    return jsonify(rpc().identity.reject_user(user_id, json_body().get("reason")))


def signed_in_response(result: dict, status: int = 201):
    """The answer of a sign-in step, the session cookie set. While a TOTP code
    (or an enrolment) is still needed, the token is only good for that step:
    200 {status: totp_required | totp_enrolment_required, token, next}."""
    token = auth.issue_token(result["session_id"], result["caller"])
    state = result.get("status", "signed_in")
    if state == "signed_in":
        body = {"token": token, "expires_at": result["expires_at"], "user": result["user"]}
    else:
        status = 200
        body = {"token": token, "expires_at": result["expires_at"], "next": NEXT_STEP[state]}
    body["status"] = state
    if "recovery_codes" in result:
        body["recovery_codes"] = result["recovery_codes"]
    response = jsonify(body)
    auth.set_session_cookie(response, token)
    return response, status


NEXT_STEP = {
    "totp_required": "/api/v1/sessions/totp",
    "totp_enrolment_required": "/api/v1/me/totp/enrolment",
}


@bp.post("/sessions")
@limit("signin", per_minute=20, key=client_ip)
def sign_in():
    """{email, password} → 201 {status: signed_in, token, expires_at, user}; or
    200 {status: totp_required | totp_enrolment_required, token, next} when a
    second factor is needed (the token then opens that step only). Sets the cookie."""
    body = json_body()
    result = rpc().identity.authenticate(body.get("email"), body.get("password"), client_ip())
    return signed_in_response(result)


@bp.post("/sessions/totp")
@limit("signin-totp", per_minute=20, key=client_ip)
def verify_totp():
    """Second step {code}: a TOTP code or a recovery code, with the token of
    the first step → 201 as a sign-in (a new token). Errors: auth.totp_invalid,
    auth.totp_replayed (401), auth.totp_too_many_attempts (429)."""
    code = json_body().get("code")
    result = rpc().identity.totp_verify_sign_in(g.session_id or "", code, client_ip())
    auth.revoke_current()
    return signed_in_response(result)


@bp.post("/me/totp/enrolment")
@limit("totp-enrol", per_minute=10, key=client_ip)
def begin_totp_enrolment():
    """A new TOTP secret: {secret, uri (otpauth://), qr_svg}. Errors: auth.totp_enrolled."""
    _require_session()
    result = rpc().identity.totp_begin_enrolment(g.session_id)
    return jsonify(dict(result, qr_svg=qr_svg(result["uri"])))


@bp.post("/me/totp/enrolment/confirm")
@limit("totp-enrol-confirm", per_minute=10, key=client_ip)
def confirm_totp_enrolment():
    """{code} → 201 as a sign-in (a new token) plus recovery_codes, shown this once."""
    _require_session()
    result = rpc().identity.totp_confirm_enrolment(
        g.session_id, json_body().get("code"), client_ip()
    )
    auth.revoke_current()
    return signed_in_response(result)


@bp.post("/me/totp/disable")
@auth.login_required
def disable_totp():
    """{code}: organisation accounts only (403 auth.totp_required_for_staff)."""
    result = rpc().identity.totp_disable(g.session_id, json_body().get("code"), client_ip())
    auth.revoke_current()
    return signed_in_response(result, 200)


@bp.post("/sessions/current/reauthentication")
@auth.login_required
@limit("totp-reauth", per_minute=10, key=client_ip)
def reauthenticate():
    """{code} before a sensitive action → {token, expires_at, mfa_at} (same session)."""
    result = rpc().identity.totp_reauthenticate(g.session_id, json_body().get("code"), client_ip())
    token = auth.issue_token(result["session_id"], result["caller"])
    response = jsonify(
        {"token": token, "expires_at": result["expires_at"], "mfa_at": result["caller"]["mfa_at"]}
    )
    auth.set_session_cookie(response, token)
    return response


def _require_session() -> None:
    if not g.get("session_id"):
        raise Unauthenticated("unauthenticated", "Connectez-vous pour continuer.")


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline SVG QR code (no script, no external image)."""
    import segno

    return segno.make(uri, error="m").svg_inline(scale=4, title="Code QR à scanner")


@bp.delete("/sessions/current")
@auth.login_required
def sign_out():
    rpc().identity.end_session(g.session_id)
    auth.revoke_current()
    response = jsonify({"status": "signed_out"})
    auth.clear_session_cookie(response)
    return response


@bp.get("/me")
@auth.login_required
def me():
    """The signed-in user's profile and organisation (one RPC)."""
    return jsonify(rpc().identity.get_me())


@bp.post("/me/password")
@auth.login_required
def change_password():
    """{current_password, password, password_confirm}; every session is closed."""
    body = json_body()
    result = rpc().identity.change_password(
        body.get("current_password"), body.get("password"), body.get("password_confirm")
    )
    auth.revoke_current()
    response = jsonify(result)
    auth.clear_session_cookie(response)
    return response


@bp.post("/password-resets")
@limit("reset", per_minute=5, key=client_ip)
def request_reset():
    """{email} → 202, whatever the address."""
    return jsonify(rpc().identity.request_password_reset(json_body().get("email"))), 202


@bp.post("/password-resets/confirm")
@limit("reset-confirm", per_minute=20, key=client_ip)
def reset_password():
    body = json_body()
    return jsonify(
        rpc().identity.reset_password(
            body.get("token"), body.get("password"), body.get("password_confirm")
        )
    )


@bp.post("/invitations/accept")
@limit("invite", per_minute=20, key=client_ip)
def accept_invitation():
    body = json_body()
    return jsonify(
        rpc().identity.accept_invitation(
            body.get("token"), body.get("password"), body.get("password_confirm")
        )
    )


@bp.get("/users")
@auth.login_required
def list_users():
    """« Gestion des utilisateurs » of the caller's organisation (and those it manages)."""
    return jsonify({"items": rpc().identity.list_users(None)})


@bp.get("/organisations/<org_id>/users")
@auth.login_required
def list_org_users(org_id):
    return jsonify({"items": rpc().identity.list_users(org_id)})


@bp.post("/organisations/<org_id>/users")
@auth.login_required
def create_user(org_id):
    """{last_name, first_name, email, phone, role: manager|user, firm_name} → 201."""
    return jsonify(rpc().identity.create_user(org_id, json_body())), 201


@bp.patch("/users/<user_id>")
@auth.login_required
def update_user(user_id):
    return jsonify(rpc().identity.update_user(user_id, json_body()))


@bp.post("/users/<user_id>/confirm-email")
@auth.login_required
def confirm_user_email(user_id):
    return jsonify(rpc().identity.confirm_user_email(user_id))


@bp.post("/users/<user_id>/deactivate")
@auth.login_required
def deactivate_user(user_id):
    return jsonify(rpc().identity.deactivate_user(user_id))


@bp.get("/organisations")
@auth.agency_required
def list_organisations():
    args = request.args
    return jsonify(
        rpc().identity.list_organisations(
            args.get("q"), args.get("status"), args.get("page", "1"), args.get("per_page", "50")
        )
    )


@bp.get("/organisations/<org_id>")
@auth.login_required
def get_organisation(org_id):
    return jsonify(rpc().identity.get_organisation(org_id))


@bp.get("/organisations/<org_id>/history")
@auth.agency_required
def organisation_history(org_id):
    return jsonify({"items": rpc().identity.organisation_history(org_id)})


@bp.put("/organisations/<org_id>/parent")
@auth.agency_required
def set_parent(org_id):
    """{parent_id: <OG organisation id> | null}."""
    return jsonify(rpc().identity.set_parent(org_id, json_body().get("parent_id")))


@bp.post("/organisations/<org_id>/sirene-refresh")
@auth.agency_required
def refresh_sirene(org_id):
    return jsonify(rpc().identity.refresh_sirene(org_id))


@bp.get("/files/<file_id>")
@auth.login_required
def download_file(file_id):
    """A stored document (registration documents: agency only)."""
    return uploads.send_stored_file(rpc().files.get_file(file_id))

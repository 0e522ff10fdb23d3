"""HTTP API of the carte des formations (the Carif-Oref guide).

``bp`` (under ``/api/v1``): sign-in by identifier, the administrators'
accounts, campaigns and catalogue, the requests from draft to validation,
annexes, the print PDF and the reviewers' lists and exports. The HTML pages
(under ``/carte``) are ``gateway.pages.carte`` and ``gateway.pages.carte_admin``.

Views stay thin: parse, one or two RPCs, shape the response. The services
authorise (identity for accounts, carte for everything else); error codes are
theirs (see the OpenAPI document). Bytes reach the files service once: the
gateway stores uploads as the ``system`` caller after carte has said the
caller may add them, and carte reads them back the same way.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from gateway import auth, ratelimit, uploads
from gateway.errors import current_request_id, json_body
from gateway.pages import template_source
from gateway.ratelimit import client_ip, limit
from gateway.rpc import lend, pool_for, rpc
from kit.context import AGENCY_ADMIN, CARTE_ADMIN, CARTE_REVIEWER, SYSTEM, Caller
from kit.errors import Forbidden, InvalidInput, ServiceError

bp = Blueprint("carte_api", __name__)

FILTERS = ("academy", "department", "measure", "diploma", "uai", "campaign_id")
# who lands on the reviewers' list rather than « Liste de vos demandes »
REVIEWING_ROLES = {CARTE_REVIEWER, CARTE_ADMIN, AGENCY_ADMIN}


# ---------------------------------------------------------------- helpers


def _system():
    """A client whose calls run as ``system`` (uploads carte has authorised)."""
    caller = Caller(user_id=g.caller.user_id, roles=(SYSTEM,), request_id=current_request_id())
    return lend(pool_for(current_app._get_current_object()), caller)


def _one_error(field: str, code: str, message: str) -> InvalidInput:
    """One field's error, its message also the problem's title."""
    return InvalidInput.fields({field: [message]}, code, message)


def _upload(field: str = "file") -> uploads.Upload:
    """The one uploaded file of ``field``, at most the upload cap."""
    upload = uploads.require_file(field, "carte.file_missing", "Joignez un fichier.")
    return uploads.read(upload, field, uploads.named_too_large(upload.filename[:100]))


def _filters() -> dict:
    return {key: request.args.get(key) for key in FILTERS if request.args.get(key)}


def is_admin() -> bool:
    """The platform's administrators (agency staff, carte ``admin`` accounts)."""
    caller = g.get("caller")
    return bool(caller and caller.authenticated and {AGENCY_ADMIN, CARTE_ADMIN} & set(caller.roles))


def field_errors(exc: ServiceError) -> dict:
    """A service error's per-field messages ({} when it has none)."""
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    return fields if isinstance(fields, dict) else {}


def _admin_only() -> None:
    """Early refusal before bytes travel; the services check again."""
    if not is_admin():
        raise Forbidden(
            "forbidden.carte_admin_only", "Réservé aux administrateurs de la carte des formations."
        )


def _identifier_key() -> str:
    body = request.get_json(silent=True) if request.is_json else request.form
    value = (body or {}).get("identifier") if hasattr(body or {}, "get") else None
    return str(value or "").strip().upper()[:32]


# ---------------------------------------------------------------- accounts


@bp.post("/carte/sessions")
@limit("carte-signin", per_minute=20, key=client_ip)
def sign_in():
    """{identifier, password} → 201 {token, expires_at, account, signed_in_as}; sets the cookie."""
    body = json_body()
    ratelimit.check("carte-signin-identifier", _identifier_key(), per_minute=10)
    result = rpc().identity.carte_authenticate(
        body.get("identifier"), body.get("password"), client_ip()
    )
    token = auth.issue_token(result["session_id"], result["caller"])
    account = result["user"]
    response = jsonify(
        {
            "token": token,
            "expires_at": result["expires_at"],
            "account": account,
            "signed_in_as": account["signed_in_as"],
        }
    )
    auth.set_session_cookie(response, token)
    return response, 201


@bp.post("/carte/password-resets")
@limit("carte-reset", per_minute=5, key=client_ip)
def request_reset():
    """« Mot de passe perdu » {identifier} → 202, whatever the identifier."""
    return jsonify(rpc().identity.carte_request_password_reset(json_body().get("identifier"))), 202


@bp.get("/carte/me")
@auth.login_required
def me():
    """The signed-in account and « Vous êtes connecté en tant que … »."""
    return jsonify(rpc().identity.get_carte_me())


@bp.get("/carte/accounts")
@auth.login_required
def list_accounts():
    return jsonify(
        {
            "items": rpc().identity.list_carte_accounts(
                request.args.get("kind"), request.args.get("q")
            )
        }
    )


@bp.post("/carte/accounts")
@auth.login_required
def create_account():
    """{kind, identifier, label, contact_email, member_uais, referent_uai, scope}
    → 201 {account, password}: the issued password is shown once."""
    return jsonify(rpc().identity.create_carte_account(json_body())), 201


@bp.get("/carte/accounts/<user_id>")
@auth.login_required
def get_account(user_id):
    return jsonify(rpc().identity.get_carte_account(user_id))


@bp.patch("/carte/accounts/<user_id>")
@auth.login_required
def update_account(user_id):
    return jsonify(rpc().identity.update_carte_account(user_id, json_body()))


@bp.post("/carte/accounts/<user_id>/password")
@auth.login_required
def regenerate_password(user_id):
    return jsonify(rpc().identity.regenerate_carte_password(user_id))


# ---------------------------------------------------------------- campaigns


@bp.get("/carte/campaigns")
@auth.login_required
def list_campaigns():
    return jsonify({"items": rpc().carte.list_campaigns()})


@bp.post("/carte/campaigns")
@auth.login_required
def create_campaign():
    """{school_year, opens_on, closes_on} → 201."""
    return jsonify(rpc().carte.create_campaign(json_body())), 201


@bp.get("/carte/campaigns/current")
@auth.login_required
def current_campaign():
    return jsonify({"campaign": rpc().carte.get_current_campaign()})


@bp.patch("/carte/campaigns/<int:campaign_id>")
@auth.login_required
def update_campaign(campaign_id):
    return jsonify(rpc().carte.update_campaign(campaign_id, json_body()))


# ---------------------------------------------------------------- catalogue


@bp.get("/carte/catalogue")
@auth.login_required
def catalogue():
    """The tree level → diploma → duration; ``q`` searches titles and codes."""
    return jsonify(rpc().carte.get_catalogue(request.args.get("q")))


def _store_catalogue(name: str, mimetype: str, content: bytes) -> dict:
    """XLSX goes through the files service's safety checks; CSV is stored as is
    (carte's reader bounds its size and rows)."""
    meta = {"kind": "catalogue", "name": name, "content_type": mimetype}
    method = "store_xlsx" if name.lower().endswith(".xlsx") else "store_file"
    with _system() as files_rpc:
        return uploads.store(files_rpc.files, meta, content, method)


@bp.post("/carte/catalogue/imports")
@auth.login_required
def import_catalogue():
    """Multipart ``file`` (.xlsx or .csv) → {diplomas, variants, created,
    updated, withdrawn}; 422 carte.catalogue_invalid lists every problem."""
    return jsonify(import_uploaded_catalogue())


def import_uploaded_catalogue() -> dict:
    """The request's ``file`` checked, stored and imported (JSON route and page)."""
    _admin_only()
    upload = _upload()
    name = upload.name
    if not name.lower().endswith((".xlsx", ".csv")):
        raise _one_error("file", "carte.catalogue_unreadable", "Déposez un fichier .xlsx ou .csv.")
    stored = _store_catalogue(name, upload.content_type, upload.content)
    try:
        return rpc(timeout=60).carte.import_catalogue(stored["id"], name)
    except ServiceError:  # refused (all or nothing): its file goes too
        with _system() as files_rpc:
            files_rpc.files.discard_file(stored["id"])
        raise


@bp.post("/carte/catalogue/reports")
@auth.login_required
@limit("carte-report", per_minute=10, key=client_ip)
def report_missing_programme():
    """{title, cfd, rncp, reference, message} → 201."""
    return jsonify(rpc().carte.report_missing_programme(json_body())), 201


@bp.get("/carte/catalogue/reports")
@auth.login_required
def list_programme_reports():
    return jsonify({"items": rpc().carte.list_programme_reports()})


# ---------------------------------------------------------------- requests


@bp.get("/carte/requests")
@auth.login_required
def dashboard():
    """« Demandes en cours de saisie » and « Demandes validées »."""
    return jsonify(rpc().carte.dashboard())


@bp.get("/carte/requests/new")
@auth.login_required
def new_request_form():
    return jsonify(rpc().carte.new_request_form())


@bp.post("/carte/requests")
@auth.login_required
def create_request():
    """The first « Sauvegarder » → 201 with the request's id."""
    return jsonify(rpc().carte.create_request(json_body())), 201


@bp.get("/carte/requests/<int:request_id>")
@auth.login_required
def get_request(request_id):
    return jsonify(rpc().carte.get_request(request_id))


@bp.put("/carte/requests/<int:request_id>")
@auth.login_required
def save_request(request_id):
    """« Sauvegarder »: the whole form (absent fields are emptied)."""
    return jsonify(rpc().carte.save_request(request_id, json_body()))


@bp.post("/carte/requests/<int:request_id>/check")
@auth.login_required
def check_request(request_id):
    """« Valider la demande »: 200 with the recap, or 422 with every error."""
    return jsonify(rpc().carte.check_request(request_id))


@bp.post("/carte/requests/<int:request_id>/confirm")
@auth.login_required
def confirm_request(request_id):
    """« Confirmer » {version}: read-only for good."""
    return jsonify(
        rpc().carte.confirm_request(request_id, json_body(required=False).get("version"))
    )


@bp.get("/carte/requests/<int:request_id>/pdf")
@auth.login_required
def request_pdf(request_id):
    return uploads.send_document(rpc().carte.request_pdf(request_id), inline=True)


@bp.post("/carte/requests/<int:request_id>/annexes")
@auth.login_required
def add_annex(request_id):
    """Multipart ``file`` → 201 with the request and its annexes."""
    rpc().carte.prepare_annex(request_id)  # nothing is stored for a refused request
    upload = _upload()
    meta = {"kind": "annex", "name": upload.name, "content_type": upload.content_type}
    with _system() as files_rpc:
        stored = uploads.store(files_rpc.files, meta, upload.content)
    meta = {
        "file_id": stored["id"],
        "name": stored["name"],
        "size": stored["size"],
        "content_type": stored["content_type"],
    }
    return jsonify(rpc().carte.add_annex(request_id, meta)), 201


@bp.get("/carte/requests/<int:request_id>/annexes/<int:annex_id>")
@auth.login_required
def download_annex(request_id, annex_id):
    return uploads.send_document(rpc().carte.get_annex(request_id, annex_id))


@bp.delete("/carte/requests/<int:request_id>/annexes/<int:annex_id>")
@auth.login_required
def remove_annex(request_id, annex_id):
    return jsonify(rpc().carte.remove_annex(request_id, annex_id))


@bp.put("/carte/priorities")
@auth.login_required
def reorder_priorities():
    """{uai, order: [request ids, most urgent first]}."""
    body = json_body()
    return jsonify(rpc().carte.reorder_priorities(body.get("uai"), body.get("order")))


# ---------------------------------------------------------------- reviewers


@bp.get("/carte/reviews")
@auth.login_required
def reviews():
    """Validated requests of the reviewer's scope; filters academy, department,
    measure, diploma, uai, campaign_id; ``page``, ``per_page``."""
    return jsonify(
        rpc().carte.list_validated(
            _filters(), request.args.get("page", "1"), request.args.get("per_page", "50")
        )
    )


@bp.get("/carte/reviews/export.xlsx")
@auth.login_required
def export_xlsx():
    return uploads.send_document(rpc(timeout=60).carte.export_validated(_filters(), "xlsx"))


@bp.get("/carte/reviews/export.csv")
@auth.login_required
def export_csv():
    return uploads.send_document(rpc(timeout=60).carte.export_validated(_filters(), "csv"))


# Where the security checks read the carte pages' markup, now templates
# served by ``gateway.pages.carte`` (gateway/tests/test_security_pages.py).
FORM = template_source("carte/form.html")
PRINT = template_source("carte/print.html")

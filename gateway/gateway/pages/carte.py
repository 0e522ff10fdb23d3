"""HTML pages of the carte des formations (the Carif-Oref guide), under
``/carte``: sign-in, « Liste de vos demandes », the request form, its recap
and print view, the missing programme form, the reviewers' list and the
catalogue. Their markup is in ``gateway/templates/carte/``; the
administrators' pages are ``gateway.pages.carte_admin``.

They call the same RPCs as the JSON routes of ``gateway.api.carte``, through
that module (``api.rpc``, its upload and filter helpers), so its fakes apply.
"""

from __future__ import annotations

import re
import urllib.parse

from flask import Blueprint, g, redirect, render_template, request

from gateway import auth, ratelimit
from gateway.api import carte as api
from gateway.ratelimit import client_ip, limit
from gateway.web import page
from kit.errors import InvalidInput, ServiceError

bp = Blueprint("carte_pages", __name__)


def who_banner() -> str:
    """The banner of pages whose own RPC does not say who is signed in."""
    try:
        return api.rpc().identity.get_carte_me()["signed_in_as"]
    except ServiceError:  # agency staff have no carte account: no banner
        return ""


def carte_page(title, template=None, status=200, **context):
    """``web.page`` with the administrators' links when the caller is one."""
    context.setdefault("admin", api.is_admin())
    return page(title, template=template, status=status, **context)


@bp.route("/connexion", methods=["GET", "POST"])
@limit("carte-web-signin", per_minute=20, key=client_ip)
def sign_in_page():
    """The guide's « Identification »: identifier and password."""
    if request.method == "GET":
        return carte_page("Identification", "carte/sign_in.html", identifier="")
    identifier = request.form.get("identifier", "")
    try:
        ratelimit.check("carte-signin-identifier", api._identifier_key(), per_minute=10)
        result = api.rpc().identity.carte_authenticate(
            identifier, request.form.get("password", ""), client_ip()
        )
    except ServiceError as exc:
        return carte_page(
            "Identification",
            "carte/sign_in.html",
            status=exc.status,
            error=exc.message,
            identifier=identifier,
        )
    response = redirect("/carte/")
    auth.set_session_cookie(response, auth.issue_token(result["session_id"], result["caller"]))
    return response


@bp.route("/mot-de-passe-perdu", methods=["GET", "POST"])
@limit("carte-web-forgot", per_minute=5, key=client_ip)
def forgot_page():
    if request.method == "GET":
        return carte_page("Mot de passe perdu", "carte/forgot.html")
    result = api.rpc().identity.carte_request_password_reset(request.form.get("identifier", ""))
    return carte_page("Mot de passe perdu", success=result["message"])


@bp.post("/deconnexion")
def sign_out_page():
    if g.caller.authenticated and g.get("session_id"):
        api.rpc().identity.end_session(g.session_id)
        auth.revoke_current()
    response = redirect("/carte/connexion")
    auth.clear_session_cookie(response)
    return response


@bp.get("/")
def dashboard_page():
    """« Liste de vos demandes » with the guide's two tables."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    if api.REVIEWING_ROLES & set(g.caller.roles):
        return redirect("/carte/relecture")
    board = api.rpc().carte.dashboard()
    sections = [
        (
            "Demandes en cours de saisie",
            board["drafts"],
            "Ces demandes ne sont consultables que par vous. Vous pouvez les modifier, "
            "puis, quand elles sont finalisées, demander leur validation.",
        ),
        (
            "Demandes validées",
            board["validated"],
            "Vous pouvez consulter ces demandes, mais vous ne pourrez pas les modifier.",
        ),
    ]
    return carte_page(
        "Saisie en ligne des demandes",
        "carte/dashboard.html",
        board=board,
        sections=sections,
        who=board["signed_in_as"],
    )


@bp.get("/demandes/<int:request_id>/impression")
def print_page(request_id):
    """« Consulter »: the whole request, laid out to print."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    view = api.rpc().carte.print_request(request_id)
    html = render_template("carte/print.html", view=view)
    return html, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}


# ---------------------------------------------------------------- the form (section 4)

FORM_FIELDS = (
    "concerned_uai", "training_site", "manager_name", "manager_phone", "manager_email",
    "modality", "variant_id", "measure", "linked", "linked_request_id", "priority",
    "current_capacity", "new_capacity", "first_filing", "previous_filing_year", "cp_ca_date",
    "works_needed", "works_description", "equipment_needed", "equipment_description",
    "other_impacts", "opportunity_report",
)  # fmt: skip


def _form_data() -> dict:
    data = {key: request.form.get(key, "") for key in FORM_FIELDS}
    data["recruitment_zones"] = request.form.getlist("recruitment_zones")
    if request.form.get("version"):
        data["version"] = request.form["version"]
    return data


def _form_page(values: dict, status: int = 200, error=None, success=None, errors=None):
    blank = api.rpc().carte.new_request_form()
    campaign = blank["campaign"] or {}
    action = f"/carte/demandes/{values['id']}" if values.get("id") else "/carte/demandes/nouvelle"
    return carte_page(
        "Saisie d'une demande",
        "carte/form.html",
        status=status,
        error=error,
        success=success,
        who=blank["signed_in_as"],
        establishments=blank.get("establishments") or [],
        v=values,
        errors=errors or {},
        labels=blank["labels"],
        choices=blank["choices"],
        catalogue=api.rpc().carte.get_catalogue(None),
        referent=values.get("referent_uai") or blank["prefilled"]["referent_uai"],
        school_year=campaign.get("label", ""),
        action=action,
    )


def _typed_again(values: dict, data: dict) -> dict:
    """What was typed, shown back with the errors (nothing was saved)."""
    typed = dict(values, **{k: v for k, v in data.items() if k != "version"})
    for key in ("linked", "first_filing", "works_needed", "equipment_needed"):
        typed[key] = {"true": True, "false": False}.get(str(data.get(key)), None)
    variant = str(data.get("variant_id") or "")
    typed["variant_id"] = int(variant) if re.fullmatch(r"[0-9]{1,10}", variant) else None
    return typed


@bp.route("/demandes/nouvelle", methods=["GET", "POST"])
def new_request_page():
    """« Déposer une nouvelle demande »: the first « Sauvegarder » gives the id."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    if request.method == "GET":
        prefilled = api.rpc().carte.new_request_form()["prefilled"]
        return _form_page({"concerned_uai": prefilled["concerned_uai"], "recruitment_zones": []})
    data = _form_data()
    try:
        created = api.rpc().carte.create_request(data)
    except ServiceError as exc:
        fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
        return _form_page(_typed_again({}, data), exc.status, exc.message, errors=fields)
    return redirect(f"/carte/demandes/{created['id']}?enregistree=1", code=303)


@bp.route("/demandes/<int:request_id>", methods=["GET", "POST"])
def request_page(request_id):
    """« Continuer la saisie »: Sauvegarder, Valider la demande (then the recap)."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    current = api.rpc().carte.get_request(request_id)
    if not current["editable"]:
        return redirect(f"/carte/demandes/{request_id}/impression")
    if request.method == "GET":
        saved = "Votre saisie a été enregistrée." if request.args.get("enregistree") else None
        return _form_page(current, success=saved)
    data = _form_data()
    saved = current
    try:
        saved = api.rpc().carte.save_request(request_id, data)
        if request.form.get("action") != "validate":
            return redirect(f"/carte/demandes/{request_id}?enregistree=1", code=303)
        checked = api.rpc().carte.check_request(request_id)
    except ServiceError as exc:
        fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
        shown = current if exc.code != "carte.field_required" else saved
        return _form_page(_typed_again(shown, data), exc.status, exc.message, errors=fields)
    return carte_page(
        "Récapitulatif de la demande",
        "carte/recap.html",
        who=current.get("signed_in_as") or api.rpc().carte.new_request_form()["signed_in_as"],
        recap=checked["recap"],
        id=request_id,
        version=checked["version"],
    )


@bp.post("/demandes/<int:request_id>/confirmer")
def confirm_page(request_id):
    """« Confirmer »: read-only for good, back to the dashboard."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    api.rpc().carte.confirm_request(request_id, request.form.get("version"))
    return redirect("/carte/", code=303)


@bp.post("/demandes/<int:request_id>/annexes")
def annex_page(request_id):
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    api.add_annex(request_id)
    return redirect(f"/carte/demandes/{request_id}", code=303)


@bp.route("/formation-manquante", methods=["GET", "POST"])
@limit("carte-web-report", per_minute=10, key=client_ip)
def missing_programme_page():
    """The contact form for a programme missing from the catalogue."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    keys = ("title", "cfd", "rncp", "reference", "message")
    form = {key: request.form.get(key, "") for key in keys}
    who = who_banner()
    if request.method == "GET":
        return carte_page(
            "Formation absente de la liste", "carte/missing.html", form=form, errors={}, who=who
        )
    try:
        result = api.rpc().carte.report_missing_programme(form)
    except ServiceError as exc:
        fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
        return carte_page(
            "Formation absente de la liste",
            "carte/missing.html",
            status=exc.status,
            error=exc.message,
            form=form,
            errors=fields or {},
            who=who,
        )
    return carte_page(
        "Formation absente de la liste",
        "carte/missing_sent.html",
        success=result["message"],
        who=who,
    )


# ---------------------------------------------------------------- reviewers and catalogue pages


def _page_link(filters: dict, page: int) -> str:
    return "/carte/relecture?" + urllib.parse.urlencode(dict(filters, page=page))


@bp.get("/relecture")
def reviews_page():
    """Reviewers (Région, académies, DRAAF) and administrators: the validated
    requests of their scope, filtered, paged by 50, with the exports."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    filters = api._filters()
    page_number = request.args.get("page", "1")
    errors, status, error = {}, 200, None
    try:
        board = api.rpc().carte.list_validated(filters, page_number, "50")
    except InvalidInput as exc:
        errors = exc.details.get("fields", {}) if isinstance(exc.details, dict) else {}
        status, error = exc.status, exc.message
        board = api.rpc().carte.list_validated({}, "1", "1")
        board.update(items=[], total=0, page=1)
    pages_count = -(-board["total"] // board["per_page"]) if board["total"] else 1
    return carte_page(
        "Demandes validées",
        "carte/reviews.html",
        status=status,
        error=error,
        errors=errors,
        board=board,
        choices=board.get("choices") or {"academy": {}, "measure": {}},
        f=filters,
        who=board.get("signed_in_as", ""),
        query="?" + urllib.parse.urlencode(filters) if filters else "",
        previous=_page_link(filters, board["page"] - 1) if board["page"] > 1 else None,
        next=_page_link(filters, board["page"] + 1) if board["page"] < pages_count else None,
    )


@bp.get("/catalogue")
def catalogue_page():
    """The diploma catalogue as a tree (level → diploma → durations), searchable."""
    if not g.caller.authenticated:
        return redirect("/carte/connexion")
    query = request.args.get("q", "")[:100]
    tree = api.rpc().carte.get_catalogue(query or None)
    return carte_page(
        "Liste des formations", "carte/catalogue.html", tree=tree, q=query, who=who_banner()
    )

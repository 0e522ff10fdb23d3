"""HTML pages of section I of the Karoussel guide: « Inscription », « Gestion
des utilisateurs » for account managers, the agency's queue of registrations
to validate, and sign-out.

Each view calls the same RPCs as the JSON API (``gateway.api.identity``;
registration goes through its ``submit_registration``) and shows a service's
error on the page, next to the fields it names, never as JSON. Actions are
POSTs carrying the session cookie (SameSite=Lax: no cross-site form can act),
answered by a redirect (303) to the list with a fixed message. The markup
is in ``gateway/templates/accounts/``.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, g, make_response, redirect, request

from gateway import auth
from gateway.api import identity as identity_api
from gateway.pages import template_source
from gateway.ratelimit import client_ip, limit
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import ServiceError

bp = Blueprint("account_pages", __name__)

# Where the security checks read these pages' markup (the templates' own text).
STYLE = template_source("accounts/_page.html")
REGISTRATION_FORM = template_source("accounts/registration.html")

# validating these needs an explicit confirmation with a reason (audited)
SIRENE_CONFIRM = {
    "closed": "Établissement fermé selon SIRENE : cochez la confirmation et indiquez le motif.",
    "not_found": "SIRET inconnu de SIRENE : cochez la confirmation et indiquez le motif.",
}

SIRENE_FLAGS = {
    "closed": "établissement fermé",
    "pending": "SIRENE indisponible",
    "not_found": "SIRET absent de SIRENE",
}

DONE = {
    "cree": "Le compte est créé : un courriel invite l'utilisateur à choisir son mot de passe.",
    "modifie": "Le compte est modifié.",
    "valide": "Le compte est validé.",
    "confirme": "L'adresse est confirmée.",
    "desactive": "Le compte est désactivé.",
    "refuse": "L'inscription est refusée ; le demandeur en est informé.",
}
ROLES = (("user", "Utilisateur"), ("manager", "Gestionnaire de compte"))
USER_FIELDS = ("last_name", "first_name", "email", "phone", "role", "firm_name")


def _fields(exc: ServiceError) -> dict:
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    return fields if isinstance(fields, dict) else {}


def _forbidden(message: str):
    return page("Accès refusé", status=403, error=message)


def _gate(agency: bool = False):
    """A redirect to /connexion for visitors, a 403 page for the wrong role, else None."""
    if not g.caller.authenticated:
        return redirect("/connexion", code=303)
    if agency and not g.caller.is_agency:
        return _forbidden("Cette page est réservée aux agents de France compétences.")
    if not agency and not g.caller.is_manager:
        return _forbidden(MANAGER_ONLY)
    return None


# identity's message for forbidden.manager_only (a plain user of the organisation)
MANAGER_ONLY = "Réservé au gestionnaire de compte de votre organisme."


# ---------------------------------------------------------------- inscription


def _registration_page(status=200, error=None, values=None, errors=None, success=None):
    return page(
        "Inscription",
        template="accounts/registration.html",
        status=status,
        error=error,
        success=success,
        values=values or {},
        errors=errors or {},
        last_year=dt.date.today().year - 1,
    )


@bp.get("/inscription")
def registration_page():
    """The « Inscription » form."""
    return _registration_page()


@bp.post("/inscription")
@limit("web-register", per_minute=20, key=client_ip)
def register_page():
    """« S'inscrire »: the form again with its errors, or « Vous recevez un courriel… »."""
    if request.mimetype == "multipart/form-data":
        data, uploads = identity_api.registration_input()
    else:
        fields = identity_api.REGISTRATION_FIELDS
        data, uploads = {k: request.form[k] for k in fields if k in request.form}, []
    try:
        identity_api.submit_registration(data, uploads)
    except ServiceError as exc:
        kept = {k: v for k, v in data.items() if k not in ("password", "password_confirm")}
        return _registration_page(exc.status, exc.message, kept, _fields(exc))
    return page(
        "Inscription",
        template="accounts/registration_sent.html",
        success="Vous recevez un courriel vous invitant à confirmer votre adresse.",
    )


@bp.post("/deconnexion")
def sign_out_page():
    """« Déconnexion » from the navigation bar: the session is closed server-side."""
    if g.caller.authenticated and g.get("session_id"):
        try:
            rpc().identity.end_session(g.session_id)
        except ServiceError:
            pass  # already closed: the cookie goes all the same
        auth.revoke_current()
    response = redirect("/connexion", code=303)
    auth.clear_session_cookie(response)
    return response


# ---------------------------------------------------------------- gestion des utilisateurs


def _users_page(status=200, error=None, success=None, values=None, errors=None):
    try:
        users = rpc().identity.list_users(None)
    except ServiceError as exc:
        return page("Gestion des utilisateurs", status=exc.status, error=exc.message)
    return page(
        "Gestion des utilisateurs",
        template="accounts/users.html",
        status=status,
        error=error,
        success=success,
        users=users,
        values=values or {"role": "user"},
        errors=errors or {},
        roles=ROLES,
        with_email=True,
    )


@bp.route("/utilisateurs", methods=["GET", "POST"])
def users_page():
    """« Gestion des utilisateurs »: the table and « Créer un utilisateur »."""
    refused = _gate()
    if refused:
        return refused
    if request.method == "GET":
        return _users_page(success=DONE.get(request.args.get("fait", "")))
    data = {k: request.form.get(k, "") for k in USER_FIELDS}
    try:
        rpc().identity.create_user(g.caller.org_id, data)
    except ServiceError as exc:
        return _users_page(exc.status, exc.message, values=data, errors=_fields(exc))
    return redirect("/utilisateurs?fait=cree", code=303)


@bp.route("/utilisateurs/<user_id>/modifier", methods=["GET", "POST"])
def edit_user_page(user_id):
    """« Modifier »: name, phone, profile and firm (the address stays)."""
    refused = _gate()
    if refused:
        return refused
    title = "Modifier un utilisateur"
    try:
        rows = rpc().identity.list_users(None)
    except ServiceError as exc:
        return page(title, status=exc.status, error=exc.message)
    current = next((u for u in rows if u.get("id") == user_id), None)
    if current is None:
        return page(title, status=404, error="Ce compte n'est pas dans votre organisme.")
    values, errors, error, status = current, {}, None, 200
    if request.method == "POST":
        data = {k: request.form.get(k, "") for k in USER_FIELDS if k != "email"}
        try:
            rpc().identity.update_user(user_id, data)
        except ServiceError as exc:
            values = dict(data, email=current.get("email"))
            errors, error, status = _fields(exc), exc.message, exc.status
        else:
            return redirect("/utilisateurs?fait=modifie", code=303)
    return page(
        title,
        template="accounts/edit_user.html",
        status=status,
        error=error,
        values=values,
        errors=errors,
        roles=ROLES,
        with_email=False,
        user_id=user_id,
    )


def _user_action(user_id: str, call, done: str):
    refused = _gate()
    if refused:
        return refused
    try:
        call(user_id)
    except ServiceError as exc:
        return _users_page(exc.status, exc.message)
    return redirect(f"/utilisateurs?fait={done}", code=303)


@bp.post("/utilisateurs/<user_id>/valider")
def validate_user_page(user_id):
    return _user_action(user_id, lambda uid: rpc().identity.validate_user(uid), "valide")


@bp.post("/utilisateurs/<user_id>/confirmer-adresse")
def confirm_user_page(user_id):
    return _user_action(user_id, lambda uid: rpc().identity.confirm_user_email(uid), "confirme")


@bp.post("/utilisateurs/<user_id>/desactiver")
def deactivate_user_page(user_id):
    return _user_action(user_id, lambda uid: rpc().identity.deactivate_user(uid), "desactive")


# ---------------------------------------------------------------- agency


def _registrations_page(
    status=200, error=None, success=None, refused=None, errors=None, validated=None
):
    try:
        rows = rpc().identity.list_registrations()
    except ServiceError as exc:
        return page("Inscriptions à valider", status=exc.status, error=exc.message)
    return page(
        "Inscriptions à valider",
        template="accounts/registrations.html",
        status=status,
        error=error,
        success=success,
        rows=rows,
        flags=SIRENE_FLAGS,
        confirm_needed=SIRENE_CONFIRM,
        refused=refused,
        validated=validated,
        errors=errors or {},
    )


@bp.get("/agence/inscriptions")
def registrations_page():
    """The agency's queue: organisation, SIRENE status, documents, decisions."""
    refused = _gate(agency=True)
    if refused:
        return refused
    return _registrations_page(success=DONE.get(request.args.get("fait", "")))


@bp.post("/agence/inscriptions/<user_id>/valider")
def validate_registration_page(user_id):
    refused = _gate(agency=True)
    if refused:
        return refused
    confirmation = None
    if request.form.get("confirm") or request.form.get("reason", "").strip():
        confirmation = {
            "confirm": bool(request.form.get("confirm")),
            "reason": request.form.get("reason", ""),
        }
    try:
        rpc().identity.validate_user(user_id, confirmation)
    except ServiceError as exc:
        return _registrations_page(exc.status, exc.message, errors=_fields(exc), validated=user_id)
    return redirect("/agence/inscriptions?fait=valide", code=303)


@bp.post("/agence/inscriptions/<user_id>/refuser")
def reject_registration_page(user_id):
    """« Refuser » needs a reason (the applicant receives it)."""
    refused = _gate(agency=True)
    if refused:
        return refused
    reason = request.form.get("reason", "").strip()
    if not reason:
        errors = {"reason": ["Indiquez le motif du refus."]}
        return _registrations_page(422, "Le motif du refus est obligatoire.", None, user_id, errors)
    try:
        rpc().identity.reject_user(user_id, reason)
    except ServiceError as exc:
        return _registrations_page(exc.status, exc.message, None, user_id, _fields(exc))
    return redirect("/agence/inscriptions?fait=refuse", code=303)


# ---------------------------------------------------------------- double authentification

STAFF_ROLES = {"agency_admin", "carte_admin"}
TOTP_TITLE = "Double authentification"


def _roles() -> tuple:
    return g.get("half_roles") or (g.caller.roles if g.caller.authenticated else ())


def _new_session(response, result: dict) -> None:
    auth.revoke_current()
    auth.set_session_cookie(response, auth.issue_token(result["session_id"], result["caller"]))


@bp.route("/compte/double-authentification", methods=["GET", "POST"])
@limit("web-totp", per_minute=20, key=client_ip)
def totp_page():
    """Enrolment (QR code, secret, first code, recovery codes shown once), or
    the state of TOTP with « Désactiver » for organisation accounts."""
    if not g.get("session_id"):
        return redirect("/connexion", code=303)
    enrolling = g.get("half_session") == "enrol"
    if request.method == "GET":
        if g.get("totp_enrolled") and not enrolling:
            may_disable = not (STAFF_ROLES & set(_roles()))
            return page(TOTP_TITLE, template="accounts/totp_on.html", may_disable=may_disable)
        try:
            started = rpc().identity.totp_begin_enrolment(g.session_id)
        except ServiceError as exc:
            return page(TOTP_TITLE, status=exc.status, error=exc.message)
        return page(
            TOTP_TITLE,
            template="accounts/totp_enrol.html",
            error="La double authentification est obligatoire pour votre compte : "
            "activez-la pour continuer."
            if enrolling
            else None,
            qr=identity_api.qr_svg(started["uri"]),
            secret=started["secret"],
            account=started["account"],
        )
    code = request.form.get("code", "")
    if request.form.get("action") == "disable":
        try:
            result = rpc().identity.totp_disable(g.session_id, code, client_ip())
        except ServiceError as exc:
            return page(
                TOTP_TITLE,
                template="accounts/totp_on.html",
                status=exc.status,
                error=exc.message,
                may_disable=True,
            )
        response = redirect("/compte/double-authentification", code=303)
        _new_session(response, result)
        return response
    try:
        result = rpc().identity.totp_confirm_enrolment(g.session_id, code, client_ip())
    except ServiceError as exc:
        return page(
            TOTP_TITLE,
            template="accounts/totp_enrol.html",
            status=exc.status,
            error=exc.message,
            qr=None,
        )
    html, status, headers = page(
        TOTP_TITLE,
        template="accounts/totp_codes.html",
        success="La double authentification est activée.",
        codes=result["recovery_codes"],
        home=auth.home_for(result["caller"].get("roles")),
    )
    response = make_response(html, status, headers)
    _new_session(response, result)
    return response


@bp.route("/compte/reauthentification", methods=["GET", "POST"])
@limit("web-reauth", per_minute=20, key=client_ip)
def reauthenticate_page():
    """A fresh code before a sensitive action, then back to ``suite``."""
    if not g.caller.authenticated:
        return redirect("/connexion", code=303)
    suite = auth.safe_next(request.values.get("suite", "/"))
    title = "Confirmer votre identité"
    if request.method == "GET":
        return page(title, template="accounts/reauth.html", suite=suite)
    try:
        result = rpc().identity.totp_reauthenticate(
            g.session_id, request.form.get("code", ""), client_ip()
        )
    except ServiceError as exc:
        return page(
            title,
            template="accounts/reauth.html",
            status=exc.status,
            error=exc.message,
            suite=suite,
        )
    response = redirect(suite, code=303)
    auth.set_session_cookie(response, auth.issue_token(result["session_id"], result["caller"]))
    return response

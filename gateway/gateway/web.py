"""The few HTML pages that e-mailed links open: confirm an address, accept an
invitation, reset a password, and sign in; ``page``, which renders every
page's template in the one layout (``templates/base.html``) with the
navigation bar by role; and ``date_fr``, the pages' date filter. Account
pages are in ``gateway.pages.accounts``; the markup is in ``templates/web/``.

A link's GET only shows a form (mail scanners fetch links); the POST acts.
The look is our own, plain and readable; it does not imitate the State's
design system (its licence forbids it).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Blueprint, g, redirect, render_template, request

from gateway import auth
from gateway.ratelimit import client_ip, limit
from gateway.rpc import rpc
from kit.errors import ServiceError

bp = Blueprint("web", __name__)

# The layout's source, for the checks that read every page's markup
# (gateway/tests/test_security_*.py); pages render templates/base.html itself.
LAYOUT = (Path(__file__).parent / "templates" / "base.html").read_text(encoding="utf-8")


def navigation() -> list[tuple[str, str]]:
    """The links of the bar above every page, by role; none for visitors and
    carte accounts (their pages have their own links)."""
    caller = g.get("caller")
    if caller is None or not caller.authenticated:
        return []
    if not ({"agency_admin", "manager", "user"} & set(caller.roles)):
        return []
    links = [("/", "Accueil"), ("/enquetes", "Enquêtes")]
    if caller.is_manager:
        links.append(("/utilisateurs", "Gestion des utilisateurs"))
    if caller.is_agency:
        links.append(("/agence/inscriptions", "Inscriptions à valider"))
        links.append(("/agence/enquetes", "Enquêtes (agence)"))
        links.append(("/agence/partenaires", "Partenaires"))
        links.append(("/agence/courriels", "Courriels non remis"))
        links.append(("/agence/donnees-personnelles", "Données personnelles"))
    return links


def page(title, template=None, status=200, error=None, success=None, **context):
    """``template`` (a file of ``gateway/templates`` extending ``base.html``;
    ``base.html`` itself for a page that is only its message) rendered with
    ``title``, the messages, the navigation by role and ``context``."""
    html = render_template(
        template or "base.html",
        title=title,
        error=error,
        success=success,
        nav=navigation(),
        **context,
    )
    return (
        html,
        status,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",  # Referrer-Policy: gateway.security, on every answer
        },
    )


PARIS = ZoneInfo("Europe/Paris")


def date_fr(value, time: bool = False) -> str:
    """The pages' one date filter (``{{ d|date_fr }}``, registered by
    ``create_app``): a date, or an ISO string, as French readers write it.

    ``2021-07-15`` (or ``2021-07-15T23:30:00+00:00``) → ``15/07/2021``: the
    calendar date as written, no time-zone conversion. ``time=True``: an ISO
    instant → ``07/12/2020 12:26:04`` in France's time. Nothing (None, "")
    gives ""; what is not a date is shown as it came."""
    if value is None or value == "":
        return ""
    if not time:
        if isinstance(value, dt.datetime):
            value = value.date()
        text = str(value)[:10]
        parts = text.split("-")
        return "/".join(reversed(parts)) if len(parts) == 3 else text
    try:
        at = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if at.tzinfo is not None:
        at = at.astimezone(PARIS)
    return at.strftime("%d/%m/%Y %H:%M:%S")


def _token_page(title, button, with_password, action, done):
    """GET shows the form; POST calls ``action(token, form)`` and shows ``done``."""
    token = request.values.get("token", "")
    if request.method == "GET":
        return page(
            title,
            template="web/token.html",
            token=token,
            with_password=with_password,
            button=button,
            errors={},
        )
    try:
        action(token, request.form)
    except ServiceError as exc:
        errors = exc.details.get("fields", {}) if isinstance(exc.details, dict) else {}
        if exc.code.startswith("token."):
            return page(title, status=exc.status, error=exc.message)
        return page(
            title,
            template="web/token.html",
            status=exc.status,
            error=exc.message,
            token=token,
            with_password=with_password,
            button=button,
            errors=errors,
        )
    return page(title, template="web/token_done.html", success=done)


@bp.route("/inscription/confirmer", methods=["GET", "POST"])
@limit("web-confirm", per_minute=30, key=client_ip)
def confirm_email():
    outcome = {}

    def action(token, _form):
        outcome.update(rpc().identity.confirm_email(token))

    response = _token_page(
        "Confirmer votre adresse e-mail",
        "Confirmer mon adresse",
        False,
        action,
        "Adresse confirmée.",
    )
    if outcome.get("message"):
        return page("Confirmer votre adresse e-mail", success=outcome["message"])
    return response


@bp.route("/invitation", methods=["GET", "POST"])
@limit("web-invite", per_minute=30, key=client_ip)
def accept_invitation():
    return _token_page(
        "Activer votre compte",
        "Activer mon compte",
        True,
        lambda token, form: rpc().identity.accept_invitation(
            token, form.get("password"), form.get("password_confirm")
        ),
        "Votre compte est activé : vous pouvez vous connecter.",
    )


@bp.route("/mot-de-passe/reinitialiser", methods=["GET", "POST"])
@limit("web-reset", per_minute=30, key=client_ip)
def reset_password():
    return _token_page(
        "Choisir un nouveau mot de passe",
        "Enregistrer",
        True,
        lambda token, form: rpc().identity.reset_password(
            token, form.get("password"), form.get("password_confirm")
        ),
        "Votre mot de passe a été modifié : vous pouvez vous connecter.",
    )


@bp.route("/mot-de-passe/oublie", methods=["GET", "POST"])
@limit("web-forgot", per_minute=5, key=client_ip)
def forgot_password():
    if request.method == "GET":
        return page("Mot de passe oublié", template="web/forgot.html")
    result = rpc().identity.request_password_reset(request.form.get("email", ""))
    return page("Mot de passe oublié", success=result["message"])


SIGN_IN_STEPS = {
    "totp_required": "/connexion/code",
    "totp_enrolment_required": "/compte/double-authentification",
}


def signed_in_redirect(result: dict):
    """After a sign-in step: the next step's page, or the account's home;
    the cookie holds the session (a half one until its second factor)."""
    state = result.get("status", "signed_in")
    target = SIGN_IN_STEPS.get(state) or auth.home_for(result["caller"].get("roles"))
    response = redirect(target, code=303)
    auth.set_session_cookie(response, auth.issue_token(result["session_id"], result["caller"]))
    return response


@bp.route("/connexion", methods=["GET", "POST"])
@limit("web-signin", per_minute=20, key=client_ip)
def sign_in():
    if request.method == "GET":
        return page("Connexion", template="web/sign_in.html", email="")
    email = request.form.get("email", "")
    try:
        result = rpc().identity.authenticate(email, request.form.get("password", ""), client_ip())
    except ServiceError as exc:
        return page(
            "Connexion",
            template="web/sign_in.html",
            status=exc.status,
            error=exc.message,
            email=email,
        )
    return signed_in_redirect(result)


@bp.route("/connexion/code", methods=["GET", "POST"])
@limit("web-signin-totp", per_minute=20, key=client_ip)
def totp_sign_in():
    """Second step of a sign-in: the TOTP code (or a recovery code)."""
    if g.get("half_session") != "pending":
        return redirect("/connexion", code=303)
    title = "Double authentification"
    if request.method == "GET":
        return page(title, template="web/totp.html")
    try:
        result = rpc().identity.totp_verify_sign_in(
            g.session_id, request.form.get("code", ""), client_ip()
        )
    except ServiceError as exc:
        if exc.code == "auth.session_invalid":
            response = redirect("/connexion", code=303)
            auth.clear_session_cookie(response)
            return response
        return page(title, template="web/totp.html", status=exc.status, error=exc.message)
    auth.revoke_current()
    return signed_in_redirect(result)


@bp.get("/")
def home():
    if g.caller.authenticated:
        me = rpc().identity.get_me()
        links = navigation()[1:] + [("/compte/double-authentification", "Double authentification")]
        return page("Accueil", template="web/home.html", me=me, links=links)
    return page("Accueil", template="web/home.html", me=None)

"""The few HTML pages that e-mailed links open: confirm an address, accept an
invitation, reset a password, and sign in; the shared layout (``page``) with
its navigation bar by role. Account pages are in ``gateway.pages.accounts``.

A link's GET only shows a form (mail scanners fetch links); the POST acts.
The look is our own, plain and readable; it does not imitate the State's
design system (its licence forbids it).
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, render_template_string, request

from gateway import auth
from gateway.ratelimit import client_ip, limit
from gateway.rpc import rpc
from kit.errors import ServiceError

bp = Blueprint("web", __name__)

LAYOUT = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · Plateforme formations</title>
<link rel="stylesheet" href="/static/css/site.css"></head>
<body><header>Plateforme formations</header>
{% if nav %}<nav class="site" aria-label="Navigation principale">
{% for href, label in nav %}<a href="{{ href }}">{{ label }}</a>{% endfor %}
<form method="post" action="/deconnexion"><button type="submit">Déconnexion</button></form>
</nav>{% endif %}<main>
<h1>{{ title }}</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if success %}<p class="ok" role="status">{{ success }}</p>{% endif %}
{{ body|safe }}
</main></body></html>"""

TOKEN_FORM = """<form method="post">
<input type="hidden" name="token" value="{{ token }}">
{% if with_password %}
<label for="password">Mot de passe (12 caractères au moins)</label>
<input id="password" name="password" type="password" autocomplete="new-password" required>
{% if errors.password %}<ul class="errors">{% for m in errors.password %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}
<label for="password_confirm">Confirmer le mot de passe</label>
<input id="password_confirm" name="password_confirm" type="password" autocomplete="new-password" required>
{% if errors.password_confirm %}<ul class="errors">{% for m in errors.password_confirm %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}
{% endif %}
<button type="submit">{{ button }}</button></form>"""

SIGN_IN_FORM = """<form method="post" action="/connexion">
<label for="email">E-mail</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{{ email }}">
<label for="password">Mot de passe</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Se connecter</button></form>
<p><a href="/mot-de-passe/oublie">Mot de passe oublié ?</a></p>"""

FORGOT_FORM = """<form method="post">
<label for="email">E-mail</label>
<input id="email" name="email" type="email" required>
<button type="submit">Recevoir un lien</button></form>"""


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


def page(title, body="", status=200, error=None, success=None, template=None, **context):
    """The layout around ``body`` (a template string) or ``template`` (a file
    of ``gateway/templates``), rendered with ``context``."""
    if template:
        inner = render_template(template, **context)
    else:
        inner = render_template_string(body, **context) if body else ""
    html = render_template_string(
        LAYOUT, title=title, body=inner, error=error, success=success, nav=navigation()
    )
    return (
        html,
        status,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",  # Referrer-Policy: gateway.security, on every answer
        },
    )


def _token_page(title, button, with_password, action, done):
    """GET shows the form; POST calls ``action(token, form)`` and shows ``done``."""
    token = request.values.get("token", "")
    if request.method == "GET":
        return page(
            title, TOKEN_FORM, token=token, with_password=with_password, button=button, errors={}
        )
    try:
        action(token, request.form)
    except ServiceError as exc:
        errors = exc.details.get("fields", {}) if isinstance(exc.details, dict) else {}
        if exc.code.startswith("token."):
            return page(title, status=exc.status, error=exc.message)
        return page(
            title,
            TOKEN_FORM,
            status=exc.status,
            error=exc.message,
            token=token,
            with_password=with_password,
            button=button,
            errors=errors,
        )
    return page(title, '<p><a href="/connexion">Se connecter</a></p>', success=done)


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
        return page("Mot de passe oublié", FORGOT_FORM)
    result = rpc().identity.request_password_reset(request.form.get("email", ""))
    return page("Mot de passe oublié", success=result["message"])


TOTP_FORM = """<form method="post" action="/connexion/code">
<label for="code">Code à 6 chiffres de votre application d'authentification, ou code de secours</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required
 autofocus maxlength="20"{% if error %} aria-invalid="true"{% endif %}>
<button type="submit">Valider</button></form>
<p>Vous avez perdu l'accès à votre application ? Saisissez l'un de vos codes de secours
(format xxxxx-xxxxx), chacun ne sert qu'une fois.</p>
<form method="post" action="/deconnexion"><button type="submit">Annuler</button></form>"""

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
        return page("Connexion", SIGN_IN_FORM, email="")
    email = request.form.get("email", "")
    try:
        result = rpc().identity.authenticate(email, request.form.get("password", ""), client_ip())
    except ServiceError as exc:
        return page("Connexion", SIGN_IN_FORM, status=exc.status, error=exc.message, email=email)
    return signed_in_redirect(result)


@bp.route("/connexion/code", methods=["GET", "POST"])
@limit("web-signin-totp", per_minute=20, key=client_ip)
def totp_sign_in():
    """Second step of a sign-in: the TOTP code (or a recovery code)."""
    if g.get("half_session") != "pending":
        return redirect("/connexion", code=303)
    title = "Double authentification"
    if request.method == "GET":
        return page(title, TOTP_FORM)
    try:
        result = rpc().identity.totp_verify_sign_in(
            g.session_id, request.form.get("code", ""), client_ip()
        )
    except ServiceError as exc:
        if exc.code == "auth.session_invalid":
            response = redirect("/connexion", code=303)
            auth.clear_session_cookie(response)
            return response
        return page(title, TOTP_FORM, status=exc.status, error=exc.message)
    auth.revoke_current()
    return signed_in_redirect(result)


@bp.get("/")
def home():
    if g.caller.authenticated:
        me = rpc().identity.get_me()
        body = (
            "<p>Vous êtes connecté en tant que <strong>{{ me.display_name }}</strong> "
            "({{ me.profile }}{% if me.org_name %}, {{ me.org_name }}{% endif %}).</p>"
            "<ul>{% for href, label in links %}<li><a href='{{ href }}'>{{ label }}</a></li>"
            "{% endfor %}</ul>"
            "<p>L'API est décrite dans "
            "<a href='/api/v1/openapi.json'>le document OpenAPI</a>.</p>"
        )
        links = navigation()[1:] + [("/compte/double-authentification", "Double authentification")]
        return page("Accueil", body, me=me, links=links)
    return page(
        "Accueil",
        "<p>Organismes de formation : transmettez vos enquêtes en ligne."
        "</p><p><a href='/connexion'>Se connecter</a></p>"
        "<p><a href='/inscription'>Créer un compte (inscription de votre organisme)</a></p>",
    )

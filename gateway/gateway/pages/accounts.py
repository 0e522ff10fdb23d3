"""HTML pages of section I of the Karoussel guide: « Inscription », « Gestion
des utilisateurs » for account managers, the agency's queue of registrations
to validate, and sign-out.

Each view calls the same RPCs as the JSON API (``gateway.api.identity``;
registration goes through its ``submit_registration``) and shows a service's
error on the page, next to the fields it names, never as JSON. Actions are
POSTs carrying the session cookie (SameSite=Lax: no cross-site form can act),
answered by a redirect (303) to the list with a fixed message.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, g, make_response, redirect, request

from gateway import auth
from gateway.api import identity as identity_api
from gateway.ratelimit import client_ip, limit
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import ServiceError

bp = Blueprint("account_pages", __name__)

STYLE = '<link rel="stylesheet" href="/static/css/accounts.css">'

# Jinja macros for a labelled field with its messages right below it; the
# input points at them (aria-describedby) so screen readers read them too.
MACROS = """{% macro errs(name) %}{% if errors.get(name) %}<ul class="errors" id="{{ name }}-err">
{% for m in errors[name] %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}{% endmacro %}
{% macro field(name, label, type="text", required=False, autocomplete=None, keep=True) %}
<label for="{{ name }}">{{ label }}{% if required %} *{% endif %}</label>
<input id="{{ name }}" name="{{ name }}" type="{{ type }}"{% if required %} required{% endif %}
{%- if keep %} value="{{ values.get(name) or '' }}"{% endif %}
{%- if autocomplete %} autocomplete="{{ autocomplete }}"{% endif %}
{%- if errors.get(name) %} aria-invalid="true" aria-describedby="{{ name }}-err"{% endif %}>
{{ errs(name) }}{% endmacro %}"""

REGISTRATION_FORM = (
    STYLE
    + MACROS
    + """<form method="post" action="/inscription" enctype="multipart/form-data" novalidate>
<fieldset{% if errors.get('account_type') %} aria-describedby="account_type-err"{% endif %}>
<legend>Type de compte *</legend>
{% for value in ("OFA", "OG") %}<input type="radio" id="account_type_{{ value }}" name="account_type"
value="{{ value }}"{% if values.get('account_type') == value %} checked{% endif %}>
<label for="account_type_{{ value }}">{{ value }}</label>{% endfor %}
{{ errs("account_type") }}</fieldset>
<p class="hint">OFA : organisme de formation ayant une activité d'apprentissage ;
OG : organisme gestionnaire de centres de formation d'apprentis.</p>
{{ field("siret", "SIRET", required=True) }}
<p class="hint">14 chiffres ; la raison sociale et l'adresse viennent de la base SIRENE de l'Insee.</p>
{{ field("nda", "Numéro de déclaration d'activité", required=True) }}
{{ field("uai", "UAI") }}
{{ field("apprentice_count", "Effectifs d'apprentis pour votre organisme au 31/12/" ~ last_year,
         type="number", required=True) }}
<label for="habilitation">Document d'habilitation</label>
<input id="habilitation" name="habilitation" type="file"
{%- if errors.get('habilitation') %} aria-invalid="true" aria-describedby="habilitation-err"{% endif %}>
<p class="hint">L'habilitation signée par le représentant légal de l'organisme (10 Mo au plus).</p>
{{ errs("habilitation") }}
<label for="attachments">Autres pièces jointes</label>
<input id="attachments" name="attachments" type="file" multiple
{%- if errors.get('attachments') %} aria-invalid="true" aria-describedby="attachments-err"{% endif %}>
{{ errs("attachments") }}
{% if values %}<p class="hint">Pour votre sécurité, les fichiers et les mots de passe
sont à joindre et à saisir de nouveau.</p>{% endif %}
{{ field("last_name", "Nom", required=True, autocomplete="family-name") }}
{{ field("first_name", "Prénom", required=True, autocomplete="given-name") }}
{{ field("phone", "Téléphone", type="tel", autocomplete="tel") }}
{{ field("email", "E-mail", type="email", required=True, autocomplete="email") }}
{{ field("email_confirm", "Confirmer l'E-mail", type="email", required=True) }}
{{ field("password", "Mot de passe", type="password", required=True,
         autocomplete="new-password", keep=False) }}
{{ field("password_confirm", "Confirmer le mot de passe", type="password", required=True,
         autocomplete="new-password", keep=False) }}
<p>* champs obligatoires</p>
<p>Sans réponse aux champs obligatoires, votre inscription ne peut pas être traitée et
vous ne pourrez pas transmettre la comptabilité analytique de votre organisme.</p>
<p>Vos données personnelles sont traitées par France compétences, responsable du
traitement, pour vous permettre de transmettre la comptabilité analytique de votre
organisme et pour vous adresser des informations et des enquêtes sur l'apprentissage.
Vous pouvez y accéder, les faire rectifier, en faire limiter le traitement, refuser
qu'une décision automatisée soit prise à votre sujet et dire ce qu'elles deviendront
après votre décès. Notre politique de confidentialité détaille ces droits et la
manière de les exercer.</p>
<p>Cliquez sur « S'inscrire » pour confirmer votre saisie.</p>
<button type="submit">S'inscrire</button></form>"""
)

USER_FORM = """<label for="last_name">Nom *</label>
<input id="last_name" name="last_name" required value="{{ values.get('last_name') or '' }}"
{%- if errors.get('last_name') %} aria-invalid="true" aria-describedby="last_name-err"{% endif %}>
{{ errs("last_name") }}
<label for="first_name">Prénom *</label>
<input id="first_name" name="first_name" required value="{{ values.get('first_name') or '' }}"
{%- if errors.get('first_name') %} aria-invalid="true" aria-describedby="first_name-err"{% endif %}>
{{ errs("first_name") }}
{% if with_email %}<label for="email">E-mail *</label>
<input id="email" name="email" type="email" required value="{{ values.get('email') or '' }}"
{%- if errors.get('email') %} aria-invalid="true" aria-describedby="email-err"{% endif %}>
{{ errs("email") }}{% endif %}
<label for="phone">Téléphone</label>
<input id="phone" name="phone" type="tel" value="{{ values.get('phone') or '' }}"
{%- if errors.get('phone') %} aria-invalid="true" aria-describedby="phone-err"{% endif %}>
{{ errs("phone") }}
<label for="role">Profil *</label>
<select id="role" name="role"{% if errors.get('role') %} aria-invalid="true" aria-describedby="role-err"{% endif %}>
{% for value, label in roles %}<option value="{{ value }}"{% if values.get('role') == value %} selected{% endif %}>{{ label }}</option>{% endfor %}
</select>{{ errs("role") }}
<label for="firm_name">Cabinet</label>
<input id="firm_name" name="firm_name" value="{{ values.get('firm_name') or '' }}"
{%- if errors.get('firm_name') %} aria-invalid="true" aria-describedby="firm_name-err"{% endif %}>
<p class="hint">Pour un collaborateur d'un cabinet extérieur à l'organisme.</p>
{{ errs("firm_name") }}"""  # noqa: E501

USERS = (
    STYLE
    + MACROS
    + """<p>Un organisme compte au plus 5 comptes utilisateurs, dont 2 gestionnaires de compte.
Une adresse e-mail ne sert qu'à un seul compte.</p>
<table><caption class="hint">Comptes de votre organisme</caption>
<thead><tr><th scope="col">NOM Prénom</th><th scope="col">E-mail</th>
<th scope="col">Organisme / Cabinet</th><th scope="col">Profil</th><th scope="col">Etat</th>
<th scope="col">Actions</th></tr></thead><tbody>
{% for u in users %}<tr><td>{{ u.display_name }}</td><td>{{ u.email }}</td>
<td>{{ u.organisation_or_firm or "" }}</td><td>{{ u.profile }}</td>
<td><span class="dot dot-{{ u.state_colour }}" aria-hidden="true"></span>{{ u.state_label }}</td>
<td>{% if u.state not in ("deactivated", "rejected") %}
<a href="/utilisateurs/{{ u.id }}/modifier">Modifier<span class="visually-hidden"> {{ u.display_name }}</span></a>
{% if u.state == "awaiting_validation" %}<form method="post" action="/utilisateurs/{{ u.id }}/valider">
<button type="submit" aria-label="Valider {{ u.display_name }}">Valider</button></form>{% endif %}
{% if u.state == "not_activated" %}<form method="post" action="/utilisateurs/{{ u.id }}/confirmer-adresse">
<button type="submit" aria-label="Confirmer l'adresse de {{ u.display_name }}">Confirmer l'adresse</button></form>{% endif %}
<form method="post" action="/utilisateurs/{{ u.id }}/desactiver">
<button type="submit" aria-label="Désactiver {{ u.display_name }}">Désactiver</button></form>
{% endif %}</td></tr>
{% else %}<tr><td colspan="6">Aucun compte.</td></tr>{% endfor %}</tbody></table>
<p class="hint">Etat : <span class="dot dot-rouge" aria-hidden="true"></span>compte non activé ·
<span class="dot dot-bleu" aria-hidden="true"></span>activé, en attente de validation ·
<span class="dot dot-vert" aria-hidden="true"></span>activé et validé.</p>
<h2 id="creer">Créer un utilisateur</h2>
<form method="post" action="/utilisateurs">"""
    + USER_FORM
    + """<button type="submit">Créer l'utilisateur</button></form>"""
)  # noqa: E501

EDIT_USER = (
    STYLE
    + MACROS
    + """<p>{{ values.get('email') or '' }}</p>
<form method="post" action="/utilisateurs/{{ user_id }}/modifier">"""
    + USER_FORM
    + """<button type="submit">Enregistrer</button></form>
<p><a href="/utilisateurs">Retour à la gestion des utilisateurs</a></p>"""
)

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

REGISTRATIONS = (
    STYLE
    + """{% for r in rows %}<section aria-labelledby="r-{{ r.id }}">
<h2 id="r-{{ r.id }}">{{ r.organisation.name or "Organisme sans raison sociale" }}</h2>
<p>SIRET {{ r.organisation.siret }} · {{ r.organisation.account_type }}
{% if flags.get(r.organisation.sirene_status) %} · <span class="flag">{{ flags[r.organisation.sirene_status] }}</span>{% endif %}
{% if r.organisation.address %}<br>{{ r.organisation.address }}{% endif %}</p>
<p>Demandeur : {{ r.display_name }} — {{ r.email }}{% if r.phone %} — {{ r.phone }}{% endif %}</p>
<p>Documents :{% if not r.has_habilitation %} <span class="flag">pas d'habilitation</span>{% endif %}</p>
<ul>{% for a in r.attachments %}<li><a href="/api/v1/files/{{ a.file_id }}">{{ a.name }}</a>
({{ "habilitation" if a.kind == "habilitation" else "autre pièce" }})</li>
{% else %}<li>Aucun document.</li>{% endfor %}</ul>
<form method="post" action="/agence/inscriptions/{{ r.id }}/valider">
{% if r.organisation.sirene_status in confirm_needed %}
<p class="flag">{{ confirm_needed[r.organisation.sirene_status] }}</p>
<input type="checkbox" id="confirm-{{ r.id }}" name="confirm" value="1">
<label for="confirm-{{ r.id }}">Je confirme la validation malgré l'état SIRENE</label>
<label for="vreason-{{ r.id }}">Motif de la validation *</label>
<textarea id="vreason-{{ r.id }}" name="reason" rows="2"
{%- if validated == r.id and errors.get('reason') %} aria-invalid="true" aria-describedby="vreason-{{ r.id }}-err"{% endif %}></textarea>
{% if validated == r.id and errors.get('reason') %}<ul class="errors" id="vreason-{{ r.id }}-err">
{% for m in errors.reason %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}
{% endif %}
<button type="submit" aria-label="Valider l'inscription de {{ r.display_name }}">Valider</button></form>
<form method="post" action="/agence/inscriptions/{{ r.id }}/refuser">
<label for="reason-{{ r.id }}">Motif du refus *</label>
<textarea id="reason-{{ r.id }}" name="reason" rows="2" required
{%- if refused == r.id and errors.get('reason') %} aria-invalid="true" aria-describedby="reason-{{ r.id }}-err"{% endif %}></textarea>
{% if refused == r.id and errors.get('reason') %}<ul class="errors" id="reason-{{ r.id }}-err">
{% for m in errors.reason %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}
<button type="submit" aria-label="Refuser l'inscription de {{ r.display_name }}">Refuser</button></form>
</section><hr>{% else %}<p>Aucune inscription en attente de validation.</p>{% endfor %}"""  # noqa: E501
)

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
        REGISTRATION_FORM,
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
        "<p>Une fois votre adresse confirmée, votre inscription attend la validation de "
        "France compétences, qui vérifie les pièces jointes ; un courriel vous informera "
        "de sa décision.</p>",
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
        USERS,
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
        EDIT_USER,
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
        REGISTRATIONS,
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

TOTP_ENROL = """<p>Scannez ce code QR avec votre application d'authentification
(FreeOTP, Aegis, Google Authenticator…), puis saisissez le code à 6 chiffres qu'elle affiche.</p>
{% if qr %}<figure>{{ qr|safe }}<figcaption>Code QR de votre compte {{ account }}</figcaption></figure>
<p>Sans appareil photo, saisissez cette clé dans l'application :
<code>{{ secret }}</code></p>{% endif %}
<form method="post" action="/compte/double-authentification">
<input type="hidden" name="action" value="confirm">
<label for="code">Code à 6 chiffres</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required
 maxlength="6"{% if error %} aria-invalid="true"{% endif %}>
<button type="submit">Activer la double authentification</button></form>
{% if not qr %}<p><a href="/compte/double-authentification">Afficher un nouveau code QR</a></p>{% endif %}"""

TOTP_CODES = """<p>Notez ces codes de secours et gardez-les en lieu sûr : chacun permet
une connexion si vous perdez votre téléphone, une seule fois. Ils ne seront plus affichés.</p>
<ul>{% for c in codes %}<li><code>{{ c }}</code></li>{% endfor %}</ul>
<p><a href="{{ home }}">Continuer</a></p>"""

TOTP_ON = """<p>La double authentification est activée pour ce compte : chaque connexion
demande un code de votre application d'authentification.</p>
{% if may_disable %}<form method="post" action="/compte/double-authentification">
<input type="hidden" name="action" value="disable">
<label for="code">Code à 6 chiffres, pour désactiver la double authentification</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="6">
<button type="submit">Désactiver</button></form>
{% else %}<p>Elle est obligatoire pour les comptes d'administration.</p>{% endif %}"""

REAUTH = """<p>Cette action est sensible : saisissez un nouveau code de votre application
d'authentification pour continuer.</p>
<form method="post" action="/compte/reauthentification">
<input type="hidden" name="suite" value="{{ suite }}">
<label for="code">Code à 6 chiffres</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required
 maxlength="6" autofocus>
<button type="submit">Continuer</button></form>"""

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
            return page(TOTP_TITLE, TOTP_ON, may_disable=may_disable)
        try:
            started = rpc().identity.totp_begin_enrolment(g.session_id)
        except ServiceError as exc:
            return page(TOTP_TITLE, status=exc.status, error=exc.message)
        return page(
            TOTP_TITLE,
            TOTP_ENROL,
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
            return page(TOTP_TITLE, TOTP_ON, status=exc.status, error=exc.message, may_disable=True)
        response = redirect("/compte/double-authentification", code=303)
        _new_session(response, result)
        return response
    try:
        result = rpc().identity.totp_confirm_enrolment(g.session_id, code, client_ip())
    except ServiceError as exc:
        return page(TOTP_TITLE, TOTP_ENROL, status=exc.status, error=exc.message, qr=None)
    html, status, headers = page(
        TOTP_TITLE,
        TOTP_CODES,
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
        return page(title, REAUTH, suite=suite)
    try:
        result = rpc().identity.totp_reauthenticate(
            g.session_id, request.form.get("code", ""), client_ip()
        )
    except ServiceError as exc:
        return page(title, REAUTH, status=exc.status, error=exc.message, suite=suite)
    response = redirect(suite, code=303)
    auth.set_session_cookie(response, auth.issue_token(result["session_id"], result["caller"]))
    return response

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

from flask import Blueprint, g, redirect, request

from gateway import auth
from gateway.api import identity as identity_api
from gateway.ratelimit import client_ip, limit
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import ServiceError

bp = Blueprint("account_pages", __name__)

STYLE = """<style>main{max-width:62rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{border:1px solid #c9c9c9;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#e6eaf0}fieldset{border:1px solid #c9c9c9;border-radius:4px;margin:.8rem 0}
fieldset label{display:inline;font-weight:400;margin-right:1rem}
input[type=radio]{width:auto}select,textarea{width:100%;padding:.4rem;box-sizing:border-box}
.dot{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;margin-right:.4rem;
vertical-align:middle}.dot-rouge{background:#c0392b}.dot-bleu{background:#1f5fa8}
.dot-vert{background:#1e7b34}.dot-gris{background:#8a8a8a}
td form{display:inline}td button{margin:.1rem 0;padding:.3rem .6rem;font-size:.9rem}
.flag{background:#fde8e6;color:#8c1d18;padding:.1rem .4rem;border-radius:3px;font-weight:600}
.hint{color:#555;font-size:.9rem;margin:.2rem 0}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}</style>"""

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
        return _forbidden("Cette page est réservée aux gestionnaires de compte.")
    return None


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


def _registrations_page(status=200, error=None, success=None, refused=None, errors=None):
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
        refused=refused,
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
    try:
        rpc().identity.validate_user(user_id)
    except ServiceError as exc:
        return _registrations_page(exc.status, exc.message)
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

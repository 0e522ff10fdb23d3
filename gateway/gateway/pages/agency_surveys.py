"""HTML pages of the agency (France compétences) for section II of the
Karoussel guide: « Enquêtes » (/agence/enquetes: every campaign with its
counts per status, and the « Nouvelle enquête » form) and a campaign's
statuses (/agence/enquetes/<campaign_id>: every organisation's survey, the
blocked filter, pagination, « Bloquer » / « Débloquer », exports).

They call the same RPCs as the JSON API (``gateway.api.survey``):
``create_campaign``, ``list_campaigns``, ``get_campaign``, ``list_statuses``
(``campaign_id``, ``blocked``, ``page``) and ``set_blocked``; the service
checks the agency role too. Exports link to the API's routes, which read the
same session cookie. Actions are POSTs with the session cookie (SameSite=Lax;
cross-site posts are refused by ``gateway.security``) answered by a redirect
(303) with a fixed message; a refusal is shown on the page, each field's
messages next to the field, never as JSON.
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, request, url_for

from gateway.pages.surveys import STYLE, fr_date, fr_time, problems
from gateway.rpc import rpc
from gateway.web import page
from kit.errors import ServiceError

bp = Blueprint("agency_survey_pages", __name__)

FIELDS = (
    "name",
    "details",
    "form_type",
    "direction",
    "online_on",
    "transmission_opens_on",
    "return_due_on",
    "closes_on",
    "target",
)
TARGETS = (("all", "Tous les organismes validés"), ("OFA", "OFA"), ("OG", "OG CFA"))
DONE = {
    "cree": "L'enquête est créée.",
    "bloquee": "L'enquête de l'organisme est bloquée.",
    "debloquee": "L'enquête de l'organisme est débloquée.",
}

MACROS = """{% macro errs(name) %}{% if errors.get(name) %}<ul class="errors" id="{{ name }}-err">
{% for m in errors[name] %}<li>{{ m }}</li>{% endfor %}</ul>{% endif %}{% endmacro %}
{% macro field(name, label, type="text", required=False) %}
<label for="{{ name }}">{{ label }}{% if required %} *{% endif %}</label>
<input id="{{ name }}" name="{{ name }}" type="{{ type }}"{% if required %} required{% endif %}
 value="{{ values.get(name) or '' }}"
{%- if errors.get(name) %} aria-invalid="true" aria-describedby="{{ name }}-err"{% endif %}>
{{ errs(name) }}{% endmacro %}"""

CAMPAIGNS = (
    STYLE
    + MACROS
    + """<table><caption class="hint">{{ items|length }} enquête(s)</caption><thead><tr>
<th scope="col">Nom enquête</th><th scope="col">Détails</th><th scope="col">Formulaire</th>
<th scope="col">Direction</th><th scope="col">Cible</th><th scope="col">Date mise en ligne</th>
<th scope="col">Ouverture de la transmission</th><th scope="col">Date retour souhaité</th>
<th scope="col">Date clôture</th><th scope="col">Organismes</th><th scope="col">Non téléchargées</th>
<th scope="col">Téléchargées</th><th scope="col">Déposées</th><th scope="col">Bloquées</th></tr></thead><tbody>
{% for c in items %}{% set n = c.counts or {} %}<tr>
<td><a href="/agence/enquetes/{{ c.id }}">{{ c.name }}</a></td><td>{{ c.details }}</td>
<td>{{ c.form_label or c.form_type }}</td><td>{{ c.direction }}</td><td>{{ c.target_label or c.target }}</td>
<td>{{ fr(c.online_on) }}</td><td>{{ fr(c.transmission_opens_on) }}</td><td>{{ fr(c.return_due_on) }}</td>
<td>{{ fr(c.closes_on) }}</td><td>{{ n.total or 0 }}</td><td>{{ n.not_downloaded or 0 }}</td>
<td>{{ n.downloaded or 0 }}</td><td>{{ n.submitted or 0 }}</td><td>{{ n.blocked or 0 }}</td></tr>
{% else %}<tr><td colspan="14">Aucune enquête.</td></tr>{% endfor %}</tbody></table>
<h2 id="nouvelle">Nouvelle enquête</h2>
{% if errors.get("campaign") %}{{ errs("campaign") }}{% endif %}
<form method="post" action="/agence/enquetes" class="new" novalidate>
{{ field("name", "Nom de l'enquête", required=True) }}
{{ field("details", "Détails") }}
<label for="form_type">Formulaire *</label>
<select id="form_type" name="form_type"{% if errors.get('form_type') %} aria-invalid="true" aria-describedby="form_type-err"{% endif %}>
<option value="CFA" selected>CFA</option></select>{{ errs("form_type") }}
{{ field("direction", "Direction") }}
{{ field("online_on", "Date de mise en ligne", type="date", required=True) }}
{{ field("transmission_opens_on", "Date d'ouverture de la transmission", type="date", required=True) }}
{{ field("return_due_on", "Date de retour souhaité", type="date", required=True) }}
{{ field("closes_on", "Date de clôture", type="date", required=True) }}
<label for="target">Cible *</label>
<select id="target" name="target"{% if errors.get('target') %} aria-invalid="true" aria-describedby="target-err"{% endif %}>
{% for value, label in targets %}<option value="{{ value }}"{% if (values.get('target') or 'all') == value %} selected{% endif %}>{{ label }}</option>{% endfor %}
</select>{{ errs("target") }}
<p>* champs obligatoires</p>
<button type="submit">Créer l'enquête</button></form>"""  # noqa: E501
)

STATUSES = (
    STYLE
    + """{% if campaign %}<p>{{ campaign.details }} — formulaire {{ campaign.form_label or campaign.form_type }}
— cible : {{ campaign.target_label or campaign.target }} — retour souhaité le {{ fr(campaign.return_due_on) }}
— clôture le {{ fr(campaign.closes_on) }}</p>
<p>Exporter les données extraites :
<a href="/api/v1/survey-campaigns/{{ campaign.id }}/export?format=xlsx">XLSX</a> ·
<a href="/api/v1/survey-campaigns/{{ campaign.id }}/export?format=csv">CSV</a></p>{% endif %}
{% if problems %}<ul class="errors" aria-label="Problèmes à corriger">
{% for p in problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}
<form method="get" class="filters">
<div><label for="q">Organisme</label><input id="q" name="q" value="{{ q }}"></div>
<div><label for="blocked">Bloquée</label><select id="blocked" name="blocked">
<option value=""{% if not blocked %} selected{% endif %}>Toutes</option>
<option value="true"{% if blocked == "true" %} selected{% endif %}>Bloquées</option>
<option value="false"{% if blocked == "false" %} selected{% endif %}>Débloquées</option></select></div>
<div><button type="submit">Appliquer</button></div></form>
<table><thead><tr><th scope="col">#</th><th scope="col">Organisme</th><th scope="col">Statut</th>
<th scope="col">Date de dernier envoi</th><th scope="col">Bloquée</th><th scope="col">Action</th>
</tr></thead><tbody>
{% for s in result["items"] %}<tr><td>{{ s.number }}</td><td>{{ s.organisation or "" }}</td>
<td>Enquête {{ s.status_label }}</td><td>{{ fr_time(s.last_sent_at) }}</td>
<td>{{ "Oui" if s.blocked else "Non" }}</td>
<td><form method="post" class="inline" action="/agence/enquetes/{{ campaign_id }}/organismes/{{ s.id }}/{{ 'debloquer' if s.blocked else 'bloquer' }}">
<input type="hidden" name="blocked" value="{{ blocked }}"><input type="hidden" name="q" value="{{ q }}"><input type="hidden" name="page" value="{{ result.page }}">
<button type="submit" aria-label="{{ 'Débloquer' if s.blocked else 'Bloquer' }} l'enquête de {{ s.organisation or '' }}">{{ "Débloquer" if s.blocked else "Bloquer" }}</button></form></td></tr>
{% else %}<tr><td colspan="6">Aucun organisme.</td></tr>{% endfor %}</tbody></table>
<nav aria-label="Pagination"><p>{{ result.label }}
{% if result.page > 1 %} · <a href="{{ link(result.page - 1) }}">Page précédente</a>{% endif %}
{% if result.page < result.pages %} · <a href="{{ link(result.page + 1) }}">Page suivante</a>{% endif %}</p></nav>
<p><a href="/agence/enquetes">Retour aux enquêtes</a></p>"""  # noqa: E501
)


def _gate():
    """A redirect to /connexion for visitors, a 403 page for non-agents, else None."""
    if not g.caller.authenticated:
        return redirect("/connexion", code=303)
    if not g.caller.is_agency:
        return page(
            "Accès refusé",
            status=403,
            error="Cette page est réservée aux agents de France compétences.",
        )
    return None


def _fields(exc: ServiceError) -> dict:
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    return fields if isinstance(fields, dict) else {}


def _campaigns_page(status=200, error=None, values=None, errors=None, success=None):
    try:
        items = rpc().survey.list_campaigns()
    except ServiceError as exc:
        items, status, error = [], (exc.status if status == 200 else status), error or exc.message
    return page(
        "Enquêtes (agence)",
        CAMPAIGNS,
        status=status,
        error=error,
        success=success,
        items=items or [],
        values=values or {},
        errors=errors or {},
        targets=TARGETS,
        fr=fr_date,
    )


@bp.get("/agence/enquetes")
def campaigns():
    """Every campaign with its counts per status, and « Nouvelle enquête »."""
    return _gate() or _campaigns_page(success=DONE.get(request.args.get("fait", "")))


@bp.post("/agence/enquetes")
def create_campaign():
    """« Nouvelle enquête »: created → 303 to the list; refused → the form
    again, with each field's messages next to it."""
    if refused := _gate():
        return refused
    values = {name: request.form.get(name, "").strip() for name in FIELDS}
    try:
        rpc().survey.create_campaign(values)
    except ServiceError as exc:
        return _campaigns_page(exc.status, exc.message, values, _fields(exc))
    return redirect(url_for("agency_survey_pages.campaigns", fait="cree"), code=303)


@bp.get("/agence/enquetes/<campaign_id>")
def campaign_statuses(campaign_id):
    """Every organisation's survey for the campaign: ``?blocked=true|false&q=&page=``
    (``q``: part of the organisation's name)."""
    if refused := _gate():
        return refused
    blocked = request.args.get("blocked", "")
    q = request.args.get("q", "").strip()
    number = request.args.get("page") or "1"

    def link(n: int) -> str:
        return url_for(
            "agency_survey_pages.campaign_statuses",
            campaign_id=campaign_id,
            blocked=blocked or None,
            q=q or None,
            page=n,
        )

    try:
        campaign = rpc().survey.get_campaign(campaign_id)
    except ServiceError as exc:
        return page("Enquête", status=exc.status, error=exc.message)
    context = {
        "campaign": campaign,
        "campaign_id": campaign_id,
        "blocked": blocked,
        "q": q,
        "link": link,
        "fr": fr_date,
        "fr_time": fr_time,
    }
    filters = {"campaign_id": campaign_id, "blocked": blocked, "q": q, "page": number}
    title = f"Statut des enquêtes — {campaign['name']}"
    success = DONE.get(request.args.get("fait", ""))
    try:
        result = rpc().survey.list_statuses({k: v for k, v in filters.items() if v})
    except ServiceError as exc:
        empty = {"items": [], "page": 1, "pages": 1, "label": ""}
        return page(
            title,
            STATUSES,
            status=exc.status,
            error=exc.message,
            result=empty,
            problems=problems(exc),
            **context,
        )
    return page(title, STATUSES, success=success, result=result, problems=[], **context)


def _set_blocked(campaign_id: str, survey_id: str, blocked: bool):
    if refused := _gate():
        return refused
    try:
        rpc().survey.set_blocked(survey_id, blocked)
    except ServiceError as exc:
        return page("Statut des enquêtes", status=exc.status, error=exc.message)
    return redirect(
        url_for(
            "agency_survey_pages.campaign_statuses",
            campaign_id=campaign_id,
            blocked=request.form.get("blocked") or None,
            q=request.form.get("q") or None,
            page=request.form.get("page") or None,
            fait="bloquee" if blocked else "debloquee",
        ),
        code=303,
    )


@bp.post("/agence/enquetes/<campaign_id>/organismes/<survey_id>/bloquer")
def block(campaign_id, survey_id):
    return _set_blocked(campaign_id, survey_id, True)


@bp.post("/agence/enquetes/<campaign_id>/organismes/<survey_id>/debloquer")
def unblock(campaign_id, survey_id):
    return _set_blocked(campaign_id, survey_id, False)

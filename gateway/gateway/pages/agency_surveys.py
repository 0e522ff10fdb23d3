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
messages next to the field, never as JSON. The markup is in
``gateway/templates/agency/``.
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, request, url_for

from gateway.pages.surveys import problems
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
        template="agency/campaigns.html",
        status=status,
        error=error,
        success=success,
        items=items or [],
        values=values or {},
        errors=errors or {},
        targets=TARGETS,
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
            template="agency/statuses.html",
            status=exc.status,
            error=exc.message,
            result=empty,
            problems=problems(exc),
            **context,
        )
    return page(
        title,
        template="agency/statuses.html",
        success=success,
        result=result,
        problems=[],
        **context,
    )


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

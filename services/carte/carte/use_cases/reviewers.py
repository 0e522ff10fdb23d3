"""Reviewers: the validated requests listed, exported, printed."""

from __future__ import annotations

import base64
import datetime as dt
import re

from carte import repository as repo
from carte.domain import codes as carte_codes
from carte.domain import export, territory
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.domain.campaigns import today
from carte.models import Campaign
from carte.problems import error as problem
from carte.schemas import campaign_dict, flat_row, request_dict, request_view
from carte.use_cases._common import REVIEWERS_ONLY, _raise, _require
from carte.use_cases.request_commands import get_request
from kit.cpu import offload
from kit.db import utcnow

EXPORT_MAX = 50_000
PAGE_MAX = 200

# the reviewers' filters with their labels (for the list page)
REVIEW_CHOICES = {"academy": territory.ACADEMY_LABELS, "measure": form.MEASURES}


def parse_filters(filters) -> dict:
    """academy, department, measure, diploma (variant id or code diplôme), uai,
    campaign_id. Errors: carte.filter_invalid."""
    filters = filters if isinstance(filters, dict) else {}
    clean: dict = {}
    problems = form.Problems()
    academy = str(filters.get("academy") or "").strip().lower()
    if academy:
        if academy not in territory.ACADEMIES:
            problems.add("academy", "carte.filter_invalid", "Académie : montpellier ou toulouse.")
        clean["academy"] = academy
    department = str(filters.get("department") or "").strip().upper()
    if department:
        if re.fullmatch(r"[0-9]{1,3}", department):
            department = department.zfill(2)
        elif department not in ("2A", "2B"):
            problems.add(
                "department", "carte.filter_invalid", "Numéro de département attendu (ex. 31)."
            )
        clean["department"] = department[:3]
    measure = str(filters.get("measure") or "").strip().lower()
    if measure:
        if measure not in form.MEASURES:
            problems.add("measure", "carte.filter_invalid", "Mesure : " + ", ".join(form.MEASURES))
        clean["measure"] = measure
    diploma = str(filters.get("diploma") or "").strip().upper()
    if diploma:
        if re.fullmatch(r"[0-9]{1,6}", diploma):
            clean["variant_id"] = int(diploma)
        elif carte_codes.is_valid_cfd(diploma):
            clean["cfd"] = carte_codes.normalise_cfd(diploma)
        else:
            problems.add(
                "diploma", "carte.filter_invalid", "Diplôme : identifiant ou code diplôme."
            )
    uai = str(filters.get("uai") or "").strip().upper()
    if uai:
        if not carte_codes.is_valid_uai(uai):
            problems.add("uai", "carte.filter_invalid", "Code UAI invalide.")
        clean["uai"] = carte_codes.normalise_uai(uai)
    campaign = filters.get("campaign_id")
    if campaign not in (None, ""):
        number = form._int(campaign, 1, 2**31 - 1)
        if number in (None, "bad"):
            problems.add("campaign_id", "carte.filter_invalid", "Campagne inconnue.")
        clean["campaign_id"] = number
    _raise(problems, "carte.filter_invalid")
    return clean


def _review_campaign(session, clean: dict, now: dt.datetime) -> Campaign | None:
    if clean.get("campaign_id"):
        return repo.campaign(session, clean["campaign_id"])
    return repo.current_campaign(session, today(now))


def list_validated(
    session, actor: Actor, filters=None, page=1, per_page=50, now: dt.datetime | None = None
) -> dict:
    """Reviewers: validated requests of their scope, filtered and paginated:
    {campaign, items, total, page, per_page}."""
    now = now or utcnow()
    _require(actor.is_reviewer or actor.is_admin, REVIEWERS_ONLY)
    clean = parse_filters(filters)
    page = form._int(page, 1, 100_000)
    per_page = form._int(per_page, 1, PAGE_MAX)
    page = page if isinstance(page, int) else 1
    per_page = per_page if isinstance(per_page, int) else 50
    campaign = _review_campaign(session, clean, now)
    if campaign is None:
        return {
            "signed_in_as": actor.signed_in_as(),
            "campaign": None,
            "items": [],
            "total": 0,
            "page": page,
            "per_page": per_page,
            "choices": REVIEW_CHOICES,
        }
    scope = None if actor.is_admin else actor.scope
    rows, total = repo.validated(
        session, campaign.id, clean, scope, per_page, (page - 1) * per_page
    )
    annexes = repo.annexes(session, [req.id for req, _info in rows])
    items = [request_dict(req, info, annexes[req.id], actor, campaign) for req, info in rows]
    return {
        "signed_in_as": actor.signed_in_as(),
        "campaign": campaign_dict(campaign, now),
        "items": items,
        "total": total,
        "page": page,
        "per_page": per_page,
        "choices": REVIEW_CHOICES,
    }


def export_validated(
    session, actor: Actor, filters=None, fmt: str = "xlsx", now: dt.datetime | None = None
) -> dict:
    """The same list, whole, as XLSX or CSV (formula-injection safe):
    {name, content_type, content_b64, count}. Errors: carte.format_invalid,
    carte.export_too_large."""
    now = now or utcnow()
    _require(actor.is_reviewer or actor.is_admin, REVIEWERS_ONLY)
    if fmt not in ("xlsx", "csv"):
        raise problem("carte.format_invalid")
    clean = parse_filters(filters)
    campaign = _review_campaign(session, clean, now)
    rows: list = []
    scope = None if actor.is_admin else actor.scope
    if campaign is not None:
        rows, total = repo.validated(session, campaign.id, clean, scope, EXPORT_MAX + 1, 0)
        if total > EXPORT_MAX:
            limit = f"{EXPORT_MAX:,}".replace(",", "\u202f")
            raise problem("carte.export_too_large", limit=limit)
    counts = repo.annex_counts(session, campaign.id, clean, scope) if campaign else {}
    flat = [
        flat_row(request_dict(r, info, [], actor, campaign), counts.get(r.id, 0))
        for r, info in rows
    ]
    year = campaign.school_year if campaign else "aucune"
    if fmt == "csv":
        content = export.to_csv(flat)
        content_type = "text/csv; charset=utf-8"
    else:
        from carte.xlsx import validated_requests_workbook

        content = offload(validated_requests_workbook, flat)
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return {
        "name": f"demandes-validees-rentree-{year}.{fmt}",
        "content_type": content_type,
        "content_b64": base64.b64encode(content).decode(),
        "count": len(flat),
    }


def request_pdf(session, actor: Actor, request_id) -> dict:
    """« Consulter » … imprimer: the request as a PDF {name, content_b64}."""
    from carte.pdf import request_pdf as render

    view = request_view(get_request(session, actor, request_id))
    content = offload(render, view)
    return {
        "name": f"demande-{request_id}.pdf",
        "content_type": "application/pdf",
        "content_b64": base64.b64encode(content).decode(),
    }


def print_view(session, actor: Actor, request_id) -> dict:
    """The sections of the print page (HTML) and the recap."""
    view = get_request(session, actor, request_id)
    return dict(request_view(view), request=view, signed_in_as=actor.signed_in_as())

"""Requests, views: the filer's dashboard and the new request form."""

from __future__ import annotations

import datetime as dt

from carte import repository as repo
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.domain.campaigns import today
from carte.schemas import campaign_dict, dashboard_row
from carte.use_cases._common import FILERS_ONLY, _require
from carte.use_cases.annexes import MAX_ANNEXES
from kit.db import utcnow


def dashboard(session, actor: Actor, now: dt.datetime | None = None) -> dict:
    """« Liste de vos demandes »: drafts (« Continuer la saisie ») and
    validated requests (« Consulter ») of the current campaign."""
    now = now or utcnow()
    _require(actor.is_filer, FILERS_ONLY)
    campaign, rows = repo.dashboard(session, today(now), actor.user_id, actor.filing_uais())
    drafts = [dashboard_row(r, actor) for r in rows if r.status == "draft"]
    validated = [dashboard_row(r, actor) for r in rows if r.status == "validated"]
    info = campaign_dict(campaign, now)
    return {
        "signed_in_as": actor.signed_in_as(),
        "campaign": info,
        "can_file": bool(info and info["state"] == "open"),
        "drafts": drafts,
        "validated": validated,
    }


def new_request_form(session, actor: Actor, now: dt.datetime | None = None) -> dict:
    """What « Déposer une nouvelle demande » opens with: the prefilled fields
    and the choices."""
    now = now or utcnow()
    _require(actor.is_filer, FILERS_ONLY)
    campaign = repo.current_campaign(session, today(now))
    uais = actor.filing_uais()
    return {
        "signed_in_as": actor.signed_in_as(),
        "campaign": campaign_dict(campaign, now),
        "prefilled": {
            "referent_uai": actor.referent,
            "concerned_uai": actor.uai if actor.kind == "establishment" else None,
            "school_year": campaign.school_year if campaign else None,
            "school_year_label": f"Rentrée {campaign.school_year}" if campaign else None,
        },
        "establishments": sorted(uais) if uais is not None else None,
        "labels": form.LABELS,
        "choices": {
            "modality": form.MODALITIES,
            "measure": form.MEASURES,
            "recruitment_zones": form.ZONES,
        },
        "limits": {"opportunity_report": form.REPORT_MAX, "annexes": MAX_ANNEXES},
    }

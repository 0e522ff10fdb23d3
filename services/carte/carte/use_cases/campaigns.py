"""Campaigns: created and dated by the administrator."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError

from carte import repository as repo
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.domain.campaigns import today
from carte.models import Campaign
from carte.problems import error as problem
from carte.schemas import campaign_dict
from carte.use_cases._common import ADMIN_ONLY, _one_error, _raise, _require
from kit.db import utcnow


def _campaign_dates(data: dict, current: Campaign | None) -> tuple[dt.date, dt.date]:
    problems = form.Problems()
    values = {}
    for key in ("opens_on", "closes_on"):
        raw = data.get(key, getattr(current, key).isoformat() if current else None)
        value = form.parse_date(raw)
        if value is None:
            problems.add(key, "carte.field_required", form.REQUIRED)
        elif value == "bad":
            problems.add(key, "carte.date_invalid", "Date attendue (AAAA-MM-JJ).")
        values[key] = value
    if not problems and values["closes_on"] < values["opens_on"]:
        problems.add("closes_on", "carte.date_invalid", "La clôture suit l'ouverture.")
    _raise(problems, "carte.campaign_invalid")
    return values["opens_on"], values["closes_on"]


def create_campaign(session, actor: Actor, data, now: dt.datetime | None = None) -> dict:
    """{school_year: 2020, opens_on, closes_on}. Errors: carte.campaign_invalid,
    carte.campaign_exists (409), carte.campaign_overlap (409)."""
    now = now or utcnow()
    _require(actor.is_admin, ADMIN_ONLY)
    data = data if isinstance(data, dict) else {}
    year = form._int(data.get("school_year"), 2000, 2100)
    if year in (None, "bad"):
        raise _one_error(
            "school_year", "carte.campaign_invalid", "Année de rentrée attendue (ex. 2020)."
        )
    opens_on, closes_on = _campaign_dates(data, None)
    if repo.campaign_by_year(session, year) is not None:
        raise problem("carte.campaign_exists", year=year)
    _no_overlap(session, opens_on, closes_on, None)
    campaign = Campaign(school_year=year, opens_on=opens_on, closes_on=closes_on, created_at=now)
    session.add(campaign)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise problem("carte.campaign_exists", year=year) from None
    return campaign_dict(campaign, now)


def _no_overlap(session, opens_on, closes_on, exclude_id) -> None:
    other = repo.overlapping(session, opens_on, closes_on, exclude_id)
    if other is not None:
        raise problem("carte.campaign_overlap", school_year=other.school_year)


def update_campaign(session, actor: Actor, campaign_id, data, now: dt.datetime | None = None):
    """New dates {opens_on, closes_on} (e.g. a later closing)."""
    now = now or utcnow()
    _require(actor.is_admin, ADMIN_ONLY)
    campaign = repo.by_id(session, Campaign, campaign_id)
    if campaign is None:
        raise problem("carte.campaign_not_found")
    opens_on, closes_on = _campaign_dates(data if isinstance(data, dict) else {}, campaign)
    _no_overlap(session, opens_on, closes_on, campaign.id)
    campaign.opens_on, campaign.closes_on = opens_on, closes_on
    session.commit()
    return campaign_dict(campaign, now)


def list_campaigns(session, actor: Actor, now: dt.datetime | None = None) -> list[dict]:
    now = now or utcnow()
    return [campaign_dict(c, now) for c in repo.campaigns(session)]


def current_campaign(session, actor: Actor, now: dt.datetime | None = None) -> dict | None:
    now = now or utcnow()
    return campaign_dict(repo.current_campaign(session, today(now)), now)

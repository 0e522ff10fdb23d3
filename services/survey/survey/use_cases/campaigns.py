"""Campaigns (« enquêtes »): created, listed and read by the agency."""

from __future__ import annotations

from kit.context import Caller
from kit.db import new_id, utcnow
from survey import repository as repo
from survey.domain import campaigns as rules
from survey.errors import CATALOGUE as ERRORS
from survey.models import Campaign
from survey.schemas import campaign_dict
from survey.use_cases._common import Clock
from survey.use_cases.organisations import _ensure_every_survey


def create_campaign(session, caller: Caller, data: dict, now: Clock = utcnow) -> dict:
    """The agency creates an « enquête »."""
    caller.require_agency()
    parsed, errors = rules.parse_campaign(data)
    if errors:
        raise ERRORS.error("survey.campaign_invalid", fields=errors)
    campaign = Campaign(
        id=new_id(),
        name=parsed.name,
        details=parsed.details,
        form_type=parsed.form_type,
        direction=parsed.direction,
        online_on=parsed.online_on,
        transmission_opens_on=parsed.transmission_opens_on,
        return_due_on=parsed.return_due_on,
        closes_on=parsed.closes_on,
        target=parsed.target,
        created_by=caller.user_id,
        created_at=now(),
    )
    session.add(campaign)
    session.commit()
    return campaign_dict(campaign)


def list_campaigns(session, caller: Caller, identity, now: Clock = utcnow) -> list[dict]:
    """Agency: every campaign with its surveys counted by status, every
    validated organisation it is aimed at included."""
    caller.require_agency()
    _ensure_every_survey(session, identity, now())
    counts = repo.status_counts(session)
    empty = {"total": 0, "not_downloaded": 0, "downloaded": 0, "submitted": 0, "blocked": 0}
    return [campaign_dict(c, counts.get(c.id, dict(empty))) for c in repo.campaigns(session)]


def get_campaign(session, caller: Caller, campaign_id) -> dict:
    caller.require_agency()
    campaign = repo.campaign(session, campaign_id)
    if campaign is None:
        raise ERRORS.error("survey.campaign_not_found")
    return campaign_dict(campaign)

"""Helpers shared by the carte use cases: rights, errors, the open campaign
and the requests the actor may read or edit."""

from __future__ import annotations

import datetime as dt

from carte import repository as repo
from carte.domain import access
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.domain.campaigns import today
from carte.models import Campaign, Request
from carte.problems import error as problem
from carte.schemas import campaign_dict, request_dict
from kit.catalogue import FIELD
from kit.errors import ServiceError

# the codes of the Forbidden errors of _require (carte.problems)
FILERS_ONLY = "forbidden.carte_filers_only"
REVIEWERS_ONLY = "forbidden.carte_reviewers_only"
PARTNERS_ONLY = "forbidden.partners_only"
ADMIN_ONLY = "forbidden.carte_admin_only"


def _one_error(field: str, code: str, message: str) -> ServiceError:
    """One field's error, its message also the problem's title."""
    return problem(code, variant=FIELD, message=message, fields={field: [message]})


def _require(condition: bool, code: str) -> None:
    if not condition:
        raise problem(code)


def _open_campaign(session, now: dt.datetime, campaign: Campaign | None = None) -> Campaign:
    campaign = campaign or repo.current_campaign(session, today(now))
    if campaign is None:
        raise problem("carte.no_campaign")
    state = campaign_dict(campaign, now)["state"]
    if state == "upcoming":
        raise problem(
            "carte.campaign_not_open",
            school_year=campaign.school_year,
            opens_on=campaign.opens_on,
        )
    if state == "closed":
        raise problem(
            "carte.campaign_closed",
            school_year=campaign.school_year,
            closes_on=campaign.closes_on,
        )
    return campaign


def _raise(problems: form.Problems, default_code: str) -> None:
    """Every problem at once: the one code of all fields (its title the first
    field's message), else ``default_code`` with its catalogue title."""
    if problems:
        details = {"fields": problems.fields(), "codes": problems.codes()}
        code = problems.code(default_code)
        if len({p.code for p in problems.items}) == 1:
            raise problem(code, variant=FIELD, message=problems.message(""), **details)
        raise problem(code, **details)


def _campaign_of(session, req: Request) -> Campaign:
    return repo.campaign(session, req.campaign_id)


def _visible(session, actor: Actor, request_id, for_update: bool = False) -> Request:
    req = repo.request(session, request_id, for_update=for_update)
    if req is None or not access.may_read(
        actor,
        filed_by=req.filed_by,
        status=req.status,
        concerned_uai=req.concerned_uai,
        academy=req.academy,
        filer_kind=req.filer_kind,
    ):
        raise problem("carte.request_not_found")
    return req


def _editable(session, actor: Actor, request_id) -> Request:
    req = _visible(session, actor, request_id, for_update=True)
    if req.status == "validated":
        raise problem("carte.request_validated", request_id=req.id)
    if not access.may_edit(actor, filed_by=req.filed_by):
        raise problem("carte.request_not_found")
    return req


def _full(session, req: Request, actor: Actor) -> dict:
    info = repo.variant_info(session, [req.variant_id]).get(req.variant_id)
    annexes = repo.annexes(session, [req.id])[req.id]
    return request_dict(req, info, annexes, actor, _campaign_of(session, req))

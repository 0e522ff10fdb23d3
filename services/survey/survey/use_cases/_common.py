"""Helpers shared by the survey use cases: who may see, change or submit a
survey, the files of an upload, the public facts of events.

``Clock`` gives the time; ``direct`` is the ``cpu`` of tests (a plain call)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable

from kit.context import Caller
from kit.errors import NotFound
from survey import repository as repo
from survey.domain import campaigns as rules
from survey.errors import CATALOGUE as ERRORS
from survey.models import Campaign, Survey

Clock = Callable[[], dt.datetime]


def direct(fn, *args, **kwargs):
    """``cpu`` for tests: run in the calling thread."""
    return fn(*args, **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def member_orgs(caller: Caller) -> set[str]:
    orgs = set(caller.managed_org_ids or ())
    if caller.org_id:
        orgs.add(caller.org_id)
    return orgs


def require_member(caller: Caller) -> Caller:
    caller.require_authenticated()
    if caller.is_agency or not caller.org_id:
        raise ERRORS.error("survey.organisations_only")
    return caller


def _org_row(data: dict, now: dt.datetime) -> dict:
    return {
        "id": data["id"],
        "name": data.get("name"),
        "siret": data.get("siret"),
        "uai": data.get("uai"),
        "nda": data.get("nda"),
        "account_type": data.get("account_type"),
        "parent_id": data.get("parent_id"),
        "status": data.get("status"),
        "refreshed_at": now,
    }


def _visible(session, caller: Caller, survey_id, today: dt.date) -> tuple[Survey, Campaign]:
    """The survey if the caller may see it; anything else is « introuvable »."""
    caller.require_authenticated()
    found = repo.survey_in_context(session, survey_id)
    if found is None:
        raise ERRORS.error("survey.not_found")
    survey, campaign = found
    if caller.is_agency:
        return survey, campaign
    if survey.org_id not in member_orgs(caller) or not rules.is_online(campaign.online_on, today):
        raise ERRORS.error("survey.not_found")
    return survey, campaign


def _check_open_for_changes(survey: Survey, campaign: Campaign, today: dt.date) -> None:
    if survey.blocked:
        raise ERRORS.error("survey.blocked")
    if rules.transmission_state(campaign.transmission_opens_on, campaign.closes_on, today) == (
        "closed"
    ):
        raise ERRORS.error("survey.closed", closes_on=rules.french_date(campaign.closes_on))


def _editable(session, caller: Caller, survey_id, today: dt.date) -> tuple[Survey, Campaign]:
    """A survey the caller's organisation may still change."""
    survey, campaign = _visible(session, caller, survey_id, today)
    require_member(caller)
    _check_open_for_changes(survey, campaign, today)
    return survey, campaign


def _submittable(session, caller: Caller, survey_id, today: dt.date) -> tuple[Survey, Campaign]:
    survey, campaign = _visible(session, caller, survey_id, today)
    _check_submittable(caller, survey, campaign, today)
    return survey, campaign


def _check_submittable(caller: Caller, survey: Survey, campaign: Campaign, today: dt.date) -> None:
    if caller.is_agency or not caller.is_manager:
        raise ERRORS.error("survey.manager_only")
    _check_open_for_changes(survey, campaign, today)
    if rules.transmission_state(campaign.transmission_opens_on, campaign.closes_on, today) == (
        "not_open"
    ):
        raise ERRORS.error(
            "survey.transmission_not_open",
            opens_on=rules.french_date(campaign.transmission_opens_on),
        )


def _discard(files, file_id: str | None) -> None:
    """Best effort: a refused upload leaves nothing behind in files (no
    soft-deleted record either: ``files.discard_file``)."""
    if not file_id:
        return
    try:
        files.discard_file(file_id)
    except Exception:  # noqa: BLE001 - the refusal matters more than the clean-up
        pass


def french_list(items: list[str]) -> str:
    """``a, b et c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " et " + items[-1]


def _touch(survey: Survey, now: dt.datetime) -> None:
    survey.updated_at = now


def _public_facts(session, org_id: str | None, campaign) -> dict:
    """What partners may learn of the organisation and campaign of an event
    (kit.events: public facts only, never a person)."""
    org = repo.organisation(session, org_id)
    return {
        "siret": org.siret if org else None,
        "uai": org.uai if org else None,
        "account_type": org.account_type if org else None,
        "campaign_name": campaign.name if campaign else None,
    }


def _stored_file(files, file_id, survey: Survey, kind: str) -> dict:
    """The bytes of an upload that must belong to the survey's organisation."""
    if not repo.is_id(file_id):
        raise ERRORS.error("survey.file_invalid", fields={"file_id": ["Fichier manquant."]})
    try:
        stored = files.get_file(file_id)
    except NotFound:
        raise ERRORS.error("survey.file_invalid", variant="form_missing") from None
    if stored.get("owner_org_id") != survey.org_id or stored.get("kind") != kind:
        raise ERRORS.error("survey.file_invalid", variant="form_mismatch")
    return stored


def _require_xlsx_name(name: str) -> None:
    if not name.lower().endswith(".xlsx"):
        message = ERRORS.message("survey.xlsx_only")
        raise ERRORS.error("survey.xlsx_only", fields={"file": [message]})

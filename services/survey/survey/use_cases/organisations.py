"""Organisations and their survey instances: the local copies of
identity's organisations, the surveys of each campaign aimed at them, and the
listings « Enquêtes en ligne » and « Statut des enquêtes »."""

from __future__ import annotations

import datetime as dt
import math

from kit import events
from kit.context import Caller
from kit.db import new_id, utcnow
from kit.errors import FieldErrors, Forbidden, NotFound
from kit.outbox import emit
from survey import repository as repo
from survey.domain import campaigns as rules
from survey.errors import CATALOGUE as ERRORS
from survey.models import Outbox
from survey.schemas import missing_data, survey_row, transmission_dict
from survey.use_cases._common import (
    Clock,
    _org_row,
    _public_facts,
    _touch,
    _visible,
    require_member,
)

SYNC_PAGE = 200


MAX_PAGE = 100_000  # keeps the offset within what databases take


SYNC_EVERY = dt.timedelta(seconds=30)  # the agency's full copy of the organisations


def _own_organisations(session, caller: Caller, identity, now: dt.datetime) -> list:
    """The caller's organisation (and those it manages) as identity knows
    them now; the local copies are refreshed."""
    me = identity.get_me()
    found = [me.get("organisation")] if me.get("organisation") else []
    for org_id in caller.managed_org_ids or ():
        if org_id != caller.org_id:
            try:
                found.append(identity.get_organisation(org_id))
            except (NotFound, Forbidden):
                continue
    rows = [_org_row(o, now) for o in found if o.get("status") == "validated"]
    # the « Organisme parent » column needs the parent's name: keep a copy of it
    copies = {p["id"]: _org_row(p, now) for p in (o.get("parent") for o in found) if p}
    copies.update({r["id"]: r for r in rows})
    repo.upsert_organisations(session, list(copies.values()))
    session.flush()
    return [repo.organisation(session, r["id"]) for r in rows]


def _sync_all_organisations(session, identity, now: dt.datetime) -> list:
    """The agency's view: every validated organisation, from identity."""
    page, seen = 1, []
    while True:
        result = identity.list_organisations(None, "validated", page, SYNC_PAGE)
        items = result.get("items") or []
        seen += [_org_row(o, now) for o in items if o.get("status") == "validated"]
        if not items or page * SYNC_PAGE >= int(result.get("total") or 0):
            break
        page += 1
    repo.upsert_organisations(session, seen)
    session.flush()
    return repo.validated_organisations(session)


def _ensure_surveys(session, orgs, campaigns, now: dt.datetime) -> None:
    """Creates the survey of each organisation for each campaign aimed at it."""
    if not orgs or not campaigns:
        return
    existing = repo.survey_pairs(session, {o.id for o in orgs}, {c.id for c in campaigns})
    rows = [
        {
            "id": new_id(),
            "campaign_id": c.id,
            "org_id": o.id,
            "status": rules.NOT_DOWNLOADED,
            "blocked": False,
            "updated_at": now,
            "created_at": now,
        }
        for o in orgs
        for c in campaigns
        if rules.applies_to(c.target, o.account_type) and (c.id, o.id) not in existing
    ]
    repo.insert_missing_surveys(session, rows)


def _ensure_every_survey(session, identity, now: dt.datetime) -> None:
    """The agency's views (statuses, counts, exports) cover every validated
    organisation each campaign is aimed at, signed in or not: the local copy
    of the organisations is refreshed from identity (at most every
    ``SYNC_EVERY``) and their surveys created."""
    last = repo.sync_mark(session, "organisations")
    if last is None or now - last >= SYNC_EVERY:
        session.commit()  # no transaction open across the calls to identity
        orgs = _sync_all_organisations(session, identity, now)
        repo.set_sync_mark(session, "organisations", now)
    else:
        orgs = repo.validated_organisations(session)
    _ensure_surveys(session, orgs, repo.campaigns(session), now)
    session.commit()


def organisations_changed(session) -> None:
    """identity validated someone, perhaps a new organisation: the agency's
    next view refreshes its copy of the organisations at once instead of
    waiting for ``SYNC_EVERY``. Idempotent."""
    repo.clear_sync_mark(session, "organisations")
    session.commit()


def _prepare_listing(
    session, caller: Caller, identity, now: dt.datetime
) -> tuple[set | None, dt.date]:
    """Refreshes what a listing needs; returns the organisations to show
    (None: all, for the agency) and today's date in France."""
    caller.require_authenticated()
    today = rules.today_in_france(now)
    if caller.is_agency:
        _ensure_every_survey(session, identity, now)
        return None, today
    if not caller.org_id:
        raise ERRORS.error("survey.organisations_only")
    session.commit()  # no transaction open across the calls to identity
    orgs = _own_organisations(session, caller, identity, now)
    _ensure_surveys(session, orgs, repo.online_campaigns(session, today), now)
    session.commit()
    return {o.id for o in orgs}, today


def _day_bounds(value, *, end: bool) -> dt.datetime | None:
    day = rules.parse_date(value) if value else None
    if day is None:
        return None
    if end:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), tzinfo=rules.PARIS).astimezone(dt.UTC)


def list_surveys(
    session, caller: Caller, identity, filters: dict | None = None, now: Clock = utcnow
) -> dict:
    """« Enquêtes en ligne »: the caller's surveys of campaigns online, with
    the « Date de dernier envoi » filter (``sent_from``, ``sent_to``)."""
    require_member(caller)
    filters = filters if isinstance(filters, dict) else {}
    errors = FieldErrors()
    for name in ("sent_from", "sent_to"):
        if filters.get(name) and rules.parse_date(filters[name]) is None:
            errors.add(name, "Date invalide (AAAA-MM-JJ ou JJ/MM/AAAA).")
    start, end = (rules.parse_date(filters.get(n)) for n in ("sent_from", "sent_to"))
    if start and end and end < start:
        errors.add("sent_to", "La date de fin ne peut pas précéder la date de début.")
    if errors:
        raise ERRORS.error("survey.filter_invalid", fields=errors.errors)
    org_ids, today = _prepare_listing(session, caller, identity, now())
    query = repo.surveys_query(
        org_ids=org_ids,
        online_before=today,
        sent_from=_day_bounds(filters.get("sent_from"), end=False),
        sent_to=_day_bounds(filters.get("sent_to"), end=True),
    )
    rows = repo.survey_rows(session, query)
    parents = repo.org_names(session, [org.parent_id for _s, _c, org in rows if org is not None])
    items = []
    for survey, campaign, org in rows:
        certs = repo.certifications(session, survey.id)
        parent = parents.get(org.parent_id) if org is not None else None
        items.append(
            survey_row(survey, campaign, org, parent, today, not missing_data(survey, certs))
        )
    return {"items": items, "total": len(items)}


def list_statuses(
    session, caller: Caller, identity, filters: dict | None = None, now: Clock = utcnow
) -> dict:
    """« Statut des enquêtes »: #, Nom enquête, Organisme, Statut, Date de
    dernier envoi, Date de retour souhaité; filters ``blocked`` (true/false),
    ``campaign_id``, ``status``, ``q`` (organisation); ``page``/``per_page``."""
    filters = filters if isinstance(filters, dict) else {}
    errors = FieldErrors()
    blocked = filters.get("blocked")
    if blocked in (None, "", "all"):
        blocked = None
    elif blocked in (True, "true", "1", "blocked", "bloquee"):
        blocked = True
    elif blocked in (False, "false", "0", "unblocked", "debloquee"):
        blocked = False
    else:
        errors.add("blocked", "Filtre : true (bloquées), false (débloquées) ou vide.")
    status = filters.get("status") or None
    if status is not None and status not in rules.STATUS_LABELS:
        errors.add("status", "Statut : not_downloaded, downloaded ou submitted.")
    try:
        page = int(filters.get("page") or 1)
        per_page = int(filters.get("per_page") or 50)
        if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= 200:
            raise ValueError
    except (TypeError, ValueError):
        errors.add("page", f"Page : entier de 1 à {MAX_PAGE} ; par page : 1 à 200.")
        page, per_page = 1, 50
    query_text = filters.get("q")
    if query_text is not None and (
        not isinstance(query_text, str) or len(query_text) > 100 or not query_text.isprintable()
    ):
        errors.add("q", "Recherche : 100 caractères imprimables au plus.")
    campaign_id = filters.get("campaign_id") or None
    if campaign_id is not None and not repo.is_id(campaign_id):
        errors.add("campaign_id", "Identifiant d'enquête invalide.")
    if errors:
        raise ERRORS.error("survey.filter_invalid", fields=errors.errors)
    org_ids, today = _prepare_listing(session, caller, identity, now())
    query = repo.surveys_query(
        org_ids=org_ids,
        online_before=None if org_ids is None else today,
        campaign_id=campaign_id,
        blocked=blocked,
        status=status,
        org_query=(query_text or "").strip() or None,
    )
    total = repo.count(session, query)
    pages = max(1, math.ceil(total / per_page))
    rows = repo.survey_rows(session, query, limit=per_page, offset=(page - 1) * per_page)
    parents = repo.org_names(session, [org.parent_id for _s, _c, org in rows if org is not None])
    items = []
    for index, (survey, campaign, org) in enumerate(rows, start=(page - 1) * per_page + 1):
        parent = parents.get(org.parent_id) if org is not None else None
        row = survey_row(survey, campaign, org, parent, today)
        row["number"] = index
        items.append(row)
    return {
        "items": items,
        "page": page,
        "pages": pages,
        "per_page": per_page,
        "total": total,
        "label": rules.page_label(page, pages, total),
    }


def get_survey(session, caller: Caller, survey_id, now: Clock = utcnow) -> dict:
    """A survey's page: its line, « Date de dernière modification » and the
    « Liste des fichiers transmis »."""
    today = rules.today_in_france(now())
    survey, campaign = _visible(session, caller, survey_id, today)
    org = repo.organisation(session, survey.org_id)
    parent = repo.organisation(session, org.parent_id) if org is not None else None
    certs = repo.certifications(session, survey.id)
    row = survey_row(
        survey,
        campaign,
        org,
        parent.name if parent else None,
        today,
        not missing_data(survey, certs),
    )
    row["transmissions"] = [transmission_dict(t) for t in repo.transmissions(session, survey.id)]
    row["attachments"] = len(repo.attachments(session, survey.id))
    return row


def set_blocked(session, caller: Caller, survey_id, blocked: bool, now: Clock = utcnow) -> dict:
    """The agency blocks (or unblocks) an organisation's survey. Idempotent."""
    caller.require_agency()
    if not isinstance(blocked, bool):
        raise ERRORS.error("survey.invalid_input", fields={"blocked": ["true ou false."]})
    at = now()
    survey, campaign = _visible(session, caller, survey_id, rules.today_in_france(at))
    if survey.blocked != blocked:
        survey.blocked = blocked
        survey.blocked_at = at if blocked else None
        _touch(survey, at)
        emit(
            session,
            Outbox,
            events.SURVEY_BLOCKED if blocked else events.SURVEY_UNBLOCKED,
            {
                "survey_id": survey.id,
                "campaign_id": survey.campaign_id,
                "org_id": survey.org_id,
                "by": caller.user_id,
                **_public_facts(session, survey.org_id, campaign),
                "at": at.isoformat(),
            },
        )
    session.commit()
    org = repo.organisation(session, survey.org_id)
    return survey_row(survey, campaign, org, None, rules.today_in_france(at))

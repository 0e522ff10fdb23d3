"""Survey use cases: one function per command or query.

Each takes the SQLAlchemy session and its collaborators as parameters:
``identity`` and ``files`` (proxies of those services, called with the
caller's context), ``secret`` (the form signing key), ``cpu`` (runs CPU-heavy
spreadsheet work off the eventlet hub; a plain call in tests) and ``now``.
No remote call is made while this service holds uncommitted changes
(docs/stack-pitfalls.md §9). Errors are kit.errors classes with stable codes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import math
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from kit import events
from kit.catalogue import FIELD
from kit.context import PARTNER, Caller
from kit.db import new_id, read_only, utcnow
from kit.errors import Conflict, FieldErrors, Forbidden, InvalidInput, NotFound, ServiceError
from kit.outbox import emit
from survey import repository as repo
from survey import xlsx
from survey.domain import attachments as attachment_rules
from survey.domain import campaigns as rules
from survey.domain import certifications as cert_rules
from survey.domain import export as export_rules
from survey.domain import form as form_rules
from survey.domain import partners as partner_rules
from survey.domain.codes import BadCode, parse_positive_int
from survey.domain.problems import Problem, count_label, details
from survey.errors import CATALOGUE as ERRORS
from survey.models import Attachment, Campaign, Certification, Form, Outbox, Survey, Transmission
from survey.notice import render_notice

Clock = Callable[[], dt.datetime]


def direct(fn, *args, **kwargs):
    """``cpu`` for tests: run in the calling thread."""
    return fn(*args, **kwargs)


IMPORTED = "Les données ont bien été importées"
SYNC_PAGE = 200
MAX_PAGE = 100_000  # keeps the offset within what databases take
SYNC_EVERY = dt.timedelta(seconds=30)  # the agency's full copy of the organisations


# ---------------------------------------------------------------- helpers


def iso(value) -> str | None:
    return value.isoformat() if value else None


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


def campaign_dict(campaign: Campaign, counts: dict | None = None) -> dict:
    data = {
        "id": campaign.id,
        "name": campaign.name,
        "details": campaign.details,
        "form_type": campaign.form_type,
        "form_label": f"{campaign.form_type} - {campaign.form_type}",
        "direction": campaign.direction,
        "online_on": iso(campaign.online_on),
        "transmission_opens_on": iso(campaign.transmission_opens_on),
        "return_due_on": iso(campaign.return_due_on),
        "closes_on": iso(campaign.closes_on),
        "target": campaign.target,
        "target_label": rules.TARGET_LABELS[campaign.target],
        "created_at": iso(campaign.created_at),
    }
    if counts is not None:
        data["counts"] = counts
    return data


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


def _missing(survey: Survey, certs: list[Certification]) -> list[str]:
    """What « Données à renseigner » still lack (domain.certifications.download_gate)."""
    return cert_rules.download_gate(
        survey.establishments_count,
        survey.trainings_count,
        [(c.code, c.establishments) for c in certs],
    )


def french_list(items: list[str]) -> str:
    """``a, b et c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " et " + items[-1]


def cert_dict(cert: Certification) -> dict:
    return {
        "id": cert.id,
        "code": cert.code,
        "title": cert.title,
        "rncp": cert.rncp,
        "level": cert.level,
        "type": cert.type,
        "establishments": cert.establishments,
    }


def required_data_dict(survey: Survey, certs: list[Certification]) -> dict:
    missing = _missing(survey, certs)
    return {
        "survey_id": survey.id,
        "establishments_count": survey.establishments_count,
        "trainings_count": survey.trainings_count,
        "certifications": [cert_dict(c) for c in certs],
        "certifications_file": (
            {
                "name": survey.certifications_file_name,
                "imported_at": iso(survey.certifications_imported_at),
            }
            if survey.certifications_file_id
            else None
        ),
        "template_name": cert_rules.TEMPLATE_NAME,
        "complete": not missing,
        "missing": missing,
    }


def survey_row(
    survey: Survey, campaign: Campaign, org, parent_name: str | None, today: dt.date, complete=None
) -> dict:
    """A line of « Enquêtes en ligne » (the guide's columns) and of the status list."""
    return {
        "id": survey.id,
        "campaign_id": campaign.id,
        "name": campaign.name,
        "details": campaign.details,
        "form": f"{campaign.form_type} - {campaign.form_type}",
        "org_id": survey.org_id,
        "organisation": org.name if org is not None else None,
        "parent": parent_name,
        "direction": campaign.direction,
        "online_on": iso(campaign.online_on),
        "transmission_opens_on": iso(campaign.transmission_opens_on),
        "return_due_on": iso(campaign.return_due_on),
        "closes_on": iso(campaign.closes_on),
        "last_sent_at": iso(survey.last_sent_at),
        "status": survey.status,
        "status_label": rules.STATUS_LABELS[survey.status],
        "blocked": survey.blocked,
        "transmission": rules.transmission_state(
            campaign.transmission_opens_on, campaign.closes_on, today
        ),
        "required_data_complete": complete,
        "updated_at": iso(survey.updated_at),
    }


def _touch(survey: Survey, now: dt.datetime) -> None:
    survey.updated_at = now


# ---------------------------------------------------------------- campaigns


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


# ---------------------------------------------------------------- organisations and instances


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
        items.append(survey_row(survey, campaign, org, parent, today, not _missing(survey, certs)))
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


def transmission_dict(row: Transmission) -> dict:
    return {
        "id": row.id,
        "number": row.seq,
        "file_name": row.file_name,
        "submitted_at": iso(row.submitted_at),
        "submitter_name": row.submitter_name,
        "submitter_email": row.submitter_email,
        "form_version": row.form_version,
        "size": row.size,
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
        survey, campaign, org, parent.name if parent else None, today, not _missing(survey, certs)
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


# ---------------------------------------------------------------- « Données à renseigner »


def get_required_data(session, caller: Caller, survey_id, now: Clock = utcnow) -> dict:
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return required_data_dict(survey, repo.certifications(session, survey.id))


def _count(value, field: str, errors: FieldErrors, maximum: int = 10_000) -> int | None:
    if value is None or value == "":
        errors.add(field, "Ce champ est obligatoire : nombre entier positif.")
        return None
    try:
        return parse_positive_int(value, maximum=maximum)
    except BadCode as exc:
        errors.add(field, exc.message[0].upper() + exc.message[1:])
        return None


def _replace_certifications(session, survey: Survey, rows: list[dict]) -> None:
    repo.delete_certifications(session, survey.id)
    session.flush()
    for position, row in enumerate(rows, start=1):
        session.add(Certification(id=new_id(), survey_id=survey.id, position=position, **row))


def save_required_data(session, caller: Caller, survey_id, data: dict, now: Clock = utcnow) -> dict:
    """« Enregistrer »: both numbers (mandatory, positive) and, when given,
    the whole edited table of certifications; every problem at once."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    if not isinstance(data, dict):
        raise ERRORS.error(
            "survey.required_data_invalid", fields={"data": ["Données mal formées."]}
        )
    errors = FieldErrors()
    establishments = _count(
        data.get("establishments_count"),
        "establishments_count",
        errors,
        maximum=form_rules.MAX_LINES,  # one row each on the form's Identité sheet
    )
    trainings = _count(data.get("trainings_count"), "trainings_count", errors)
    rows = None
    if "certifications" in data:
        given = data["certifications"]
        if not isinstance(given, list) or len(given) > cert_rules.MAX_CERTIFICATIONS_PER_FORM:
            errors.add(
                "certifications",
                f"Une liste de {cert_rules.MAX_CERTIFICATIONS_PER_FORM} certifications au plus.",
            )
        else:
            rows, seen = [], {}
            for index, item in enumerate(given):
                cert, row_errors = cert_rules.check_row(item, establishments_total=establishments)
                if cert.get("code") in seen:
                    row_errors.setdefault(
                        "code", f"code diplôme déjà présent (ligne {seen[cert['code']] + 1})."
                    )
                elif cert.get("code"):
                    seen[cert["code"]] = index
                for field, message in row_errors.items():
                    errors.add(f"certifications[{index}].{field}", message)
                rows.append(cert)
    elif establishments is not None:
        wider = [
            c.code
            for c in repo.certifications(session, survey.id)
            if c.establishments > establishments
        ]
        if wider:
            errors.add(
                "establishments_count",
                "Des certifications sont délivrées dans plus d'établissements ("
                + ", ".join(wider[:5])
                + ") : corrigez la liste ou ce nombre.",
            )
    if errors:
        raise ERRORS.error("survey.required_data_invalid", fields=errors.errors)
    survey.establishments_count = establishments
    survey.trainings_count = trainings
    if rows is not None:
        _replace_certifications(session, survey, rows)
    _touch(survey, at)
    session.commit()
    return required_data_dict(survey, repo.certifications(session, survey.id))


def _row_errors(errors: dict) -> ServiceError:
    fields = {field: [message] for field, message in errors.items()}
    return ERRORS.error("survey.certification_invalid", fields=fields)


def add_certification(session, caller: Caller, survey_id, data: dict, now: Clock = utcnow) -> dict:
    """Adds one row to the table."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    cert, errors = cert_rules.check_row(data, establishments_total=survey.establishments_count)
    existing = repo.certifications(session, survey.id)
    if cert.get("code") in {c.code for c in existing}:
        errors.setdefault("code", "code diplôme déjà présent dans la liste.")
    if len(existing) >= cert_rules.MAX_CERTIFICATIONS_PER_FORM:
        errors.setdefault("code", "nombre maximal de certifications atteint.")
    if errors:
        raise _row_errors(errors)
    row = Certification(id=new_id(), survey_id=survey.id, position=len(existing) + 1, **cert)
    session.add(row)
    _touch(survey, at)
    session.commit()
    return cert_dict(row)


def update_certification(
    session, caller: Caller, survey_id, cert_id, data: dict, now: Clock = utcnow
) -> dict:
    """Edits one row (only the given fields change)."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.certification(session, survey.id, cert_id)
    if row is None:
        raise ERRORS.error("survey.certification_not_found")
    if not isinstance(data, dict):
        raise _row_errors({"row": "Ligne mal formée."})
    merged = dict(cert_dict(row))
    merged.update({k: v for k, v in data.items() if k in cert_rules.FIELDS})
    cert, errors = cert_rules.check_row(merged, establishments_total=survey.establishments_count)
    others = {c.code for c in repo.certifications(session, survey.id) if c.id != row.id}
    if cert.get("code") in others:
        errors.setdefault("code", "code diplôme déjà présent dans la liste.")
    if errors:
        raise _row_errors(errors)
    for field, value in cert.items():
        setattr(row, field, value)
    _touch(survey, at)
    session.commit()
    return cert_dict(row)


def delete_certification(session, caller: Caller, survey_id, cert_id, now: Clock = utcnow) -> dict:
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.certification(session, survey.id, cert_id)
    if row is None:
        raise ERRORS.error("survey.certification_not_found")
    session.delete(row)
    _touch(survey, at)
    session.commit()
    return {"id": cert_id, "deleted": True}


def _read_certifications(data: bytes, establishments_total: int | None):
    """Runs off the hub: read the first sheet, check every row."""
    sheet, rows = xlsx.read_first_sheet(data)
    return cert_rules.parse_table(rows, sheet=sheet, establishments_total=establishments_total)


def import_certifications(
    session, caller: Caller, survey_id, file_id, files, cpu=direct, now: Clock = utcnow
) -> dict:
    """« Importer »: a certification list stored by files (kind
    ``certification_list``) replaces the table when every row is valid;
    otherwise every problem is reported and nothing changes."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    establishments_total = survey.establishments_count
    session.commit()
    stored = _stored_file(files, file_id, survey, "certification_list")
    try:
        certs, problems = cpu(
            _read_certifications, base64.b64decode(stored["content_b64"]), establishments_total
        )
    except xlsx.Unreadable as exc:
        _discard(files, file_id)
        raise ERRORS.error("survey.certifications_unreadable", reason=exc.message) from None
    except xlsx.OutOfBounds as exc:
        _discard(files, file_id)
        problem = Problem(
            exc.sheet,
            exc.row,
            exc.col,
            f"cellule hors des limites d'une liste de certifications ({cert_rules.MAX_ROWS} "
            "lignes au plus) : supprimez-la.",
        )
        raise ERRORS.error(
            "survey.certifications_too_large", **details([problem], located=True)
        ) from None
    if problems:
        _discard(files, file_id)
        raise ERRORS.error(
            "survey.certifications_invalid",
            errors_label=count_label(len(problems)),
            **details(problems, located=True),
        )
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    previous = survey.certifications_file_id
    _replace_certifications(session, survey, certs)
    survey.certifications_file_id = stored["id"]
    survey.certifications_file_name = stored.get("name") or cert_rules.TEMPLATE_NAME
    survey.certifications_imported_at = at
    _touch(survey, at)
    session.commit()
    if previous and previous != stored["id"]:
        _discard(files, previous)
    result = required_data_dict(survey, repo.certifications(session, survey.id))
    result["message"] = IMPORTED
    return result


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


def certification_template(cpu=direct) -> dict:
    return {
        "name": cert_rules.TEMPLATE_NAME,
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "content_b64": b64(cpu(xlsx.certification_template)),
    }


def certifications_file(session, caller: Caller, survey_id, now: Clock = utcnow) -> dict:
    """« Fichier actuel »: the last imported list (its file id in files)."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    if not survey.certifications_file_id:
        raise ERRORS.error("survey.certifications_file_not_found")
    return {"file_id": survey.certifications_file_id, "name": survey.certifications_file_name}


# ---------------------------------------------------------------- the form


def _fetch_organisation(identity, caller: Caller, org_id: str) -> dict:
    if org_id == caller.org_id:
        return identity.get_me().get("organisation") or {}
    return identity.get_organisation(org_id)


def _layout_and_digest(snapshot: dict):
    layout = form_rules.build_layout(snapshot)
    return layout, form_rules.layout_digest(layout)


def sheet_password(secret: bytes, survey_id: str) -> str:
    """Sheets are protected with a per-survey password nobody needs to know."""
    return hmac.new(secret, f"sheet|{survey_id}".encode(), hashlib.sha256).hexdigest()[:16]


def _form_record(session, survey: Survey, snapshot: dict, digest: str, at: dt.datetime) -> Form:
    """The form version of this snapshot: the latest one if identical, else a new one."""
    snapshot_hash = hashlib.sha256(form_rules.canonical_json(snapshot).encode()).hexdigest()
    for _attempt in range(3):
        latest = repo.latest_form(session, survey.id)
        if latest is not None and latest.snapshot_hash == snapshot_hash:
            return latest
        record = Form(
            id=new_id(),
            survey_id=survey.id,
            version=(latest.version + 1) if latest else 1,
            snapshot=snapshot,
            snapshot_hash=snapshot_hash,
            data_hash=form_rules.snapshot_data_hash(snapshot),
            digest=digest,
            created_at=at,
        )
        try:
            with session.begin_nested():
                session.add(record)
            return record
        except IntegrityError:  # another download created this version first
            continue
    raise ERRORS.error("survey.busy")


def generate_form(
    session,
    caller: Caller,
    survey_id,
    purpose: str,
    identity,
    secret: bytes,
    cpu=direct,
    now: Clock = utcnow,
) -> dict:
    """The organisation's pre-formatted form (``official``: locked, signed,
    the only one accepted back) or its working copy (``working``: editable,
    never accepted). Refused until « Données à renseigner » are complete. The
    first download of the official form sets the status to « téléchargée »."""
    if purpose not in form_rules.PURPOSES:
        raise ERRORS.error("survey.invalid_input", fields={"purpose": ["official ou working."]})
    at = now()
    today = rules.today_in_france(at)
    survey, campaign = _visible(session, caller, survey_id, today)
    require_member(caller)
    certs = repo.certifications(session, survey.id)
    missing = _missing(survey, certs)
    if missing:
        raise ERRORS.error(
            "survey.required_data_incomplete", missing_label=french_list(missing), missing=missing
        )
    lines = sum(c.establishments for c in certs)
    if lines > form_rules.MAX_LINES:
        raise ERRORS.error("survey.form_too_large", lines=lines, max_lines=form_rules.MAX_LINES)
    session.commit()
    org_data = _fetch_organisation(identity, caller, survey.org_id)
    if org_data.get("id") == survey.org_id:
        repo.upsert_organisations(session, [_org_row(org_data, at)])
    parent = repo.organisation(session, org_data.get("parent_id"))
    snapshot = {
        "survey_id": survey.id,
        "campaign": {
            "id": campaign.id,
            "name": campaign.name,
            "direction": campaign.direction,
            "return_due": rules.french_date(campaign.return_due_on),
            "closes": rules.french_date(campaign.closes_on),
        },
        "organisation": {
            "id": survey.org_id,
            "name": org_data.get("name") or "",
            "siret": org_data.get("siret") or "",
            "uai": org_data.get("uai") or "",
            "nda": org_data.get("nda") or "",
            "account_type": org_data.get("account_type") or "",
            "parent_name": parent.name if parent is not None and parent.name else "",
        },
        "establishments_count": survey.establishments_count,
        "trainings_count": survey.trainings_count,
        "certifications": [{k: v for k, v in cert_dict(c).items() if k != "id"} for c in certs],
    }
    layout, digest = cpu(_layout_and_digest, snapshot)
    official = purpose == form_rules.OFFICIAL
    version = _form_record(session, survey, snapshot, digest, at).version if official else 0
    meta = {
        "format": form_rules.FORMAT,
        "purpose": purpose,
        "survey_id": survey.id,
        "org_id": survey.org_id,
        "campaign_id": campaign.id,
        "form_version": version,
        "digest": digest,
    }
    content = cpu(
        xlsx.render_form,
        layout,
        form_rules.meta_rows(secret, meta),
        protect=official,
        password=sheet_password(secret, survey.id) if official else None,
    )
    if official:
        if survey.status == rules.NOT_DOWNLOADED:
            survey.status = rules.DOWNLOADED
        survey.downloaded_at = survey.downloaded_at or at
        emit(
            session,
            Outbox,
            events.FORM_DOWNLOADED,
            {
                "survey_id": survey.id,
                "campaign_id": campaign.id,
                "org_id": survey.org_id,
                "user_id": caller.user_id,
                "form_version": version,
            },
        )
    session.commit()
    org_part = rules.safe_file_part(org_data.get("name") or "organisme")
    name = f"{rules.safe_file_part(campaign.name)} - {org_part}.xlsx"
    if not official:
        name = "Version de travail - " + name
    return {
        "name": name,
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "content_b64": b64(content),
        "form_version": version,
    }


def form_notice(session, caller: Caller, survey_id, cpu=direct, now: Clock = utcnow) -> dict:
    """« Notice explicative » of the form (PDF)."""
    _survey, campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return {
        "name": "Notice explicative - " + rules.safe_file_part(campaign.name) + ".pdf",
        "content_type": "application/pdf",
        "content_b64": b64(cpu(render_notice, campaign.name)),
    }


# ---------------------------------------------------------------- uploads


def _upload_info(info) -> tuple[str, int, bytes]:
    if not isinstance(info, dict):
        info = {}
    name = info.get("name") if isinstance(info.get("name"), str) else ""
    size = info.get("size") if isinstance(info.get("size"), int) else -1
    try:
        head = base64.b64decode(info.get("head_b64") or "", validate=True)[:64]
    except (ValueError, TypeError):
        head = b""
    return name.strip(), size, head


def _require_xlsx_name(name: str) -> None:
    if not name.lower().endswith(".xlsx"):
        message = ERRORS.message("survey.xlsx_only")
        raise ERRORS.error("survey.xlsx_only", fields={"file": [message]})


def prepare_upload(
    session, caller: Caller, survey_id, purpose: str, info: dict, now: Clock = utcnow
) -> dict:
    """Checks, before any byte is stored, that the caller may upload this
    file here; says how files must store it: ``{store: store_xlsx |
    store_file, meta: {kind, name, content_type, owner_org_id}}``.

    ``purpose``: ``certifications`` (the list to import), ``response`` (the
    filled form: managers only, while transmission is open), ``attachment``;
    ``info``: ``{name, size, head_b64}`` (the first bytes)."""
    at = now()
    today = rules.today_in_france(at)
    name, size, head = _upload_info(info)
    if purpose == "certifications":
        survey, _campaign = _editable(session, caller, survey_id, today)
        _require_xlsx_name(name)
        kind, store, content_type = "certification_list", "store_xlsx", xlsx.XLSX_CONTENT_TYPE
    elif purpose == "response":
        survey, campaign = _submittable(session, caller, survey_id, today)
        _require_xlsx_name(name)
        org = repo.organisation(session, survey.org_id)
        name = rules.transmission_file_name(campaign.name, org.name if org else "organisme", at)
        kind, store, content_type = "survey_form", "store_xlsx", xlsx.XLSX_CONTENT_TYPE
    elif purpose == "attachment":
        survey, _campaign = _editable(session, caller, survey_id, today)
        try:
            ext, content_type = attachment_rules.check(name, size, head)
        except attachment_rules.Refused as exc:
            raise ERRORS.error(exc.code, fields={"file": [exc.message]}, **exc.params) from None
        if len(repo.attachments(session, survey.id)) >= attachment_rules.MAX_PER_SURVEY and not (
            isinstance(info, dict) and info.get("replacing")
        ):
            raise ERRORS.error(
                "survey.attachments_full", max_attachments=attachment_rules.MAX_PER_SURVEY
            )
        kind, store = "attachment", ("store_xlsx" if ext == "xlsx" else "store_file")
    else:
        raise ERRORS.error(
            "survey.invalid_input", fields={"purpose": ["certifications, response ou attachment."]}
        )
    return {
        "store": store,
        "meta": {
            "kind": kind,
            "name": name,
            "content_type": content_type,
            "owner_org_id": survey.org_id,
        },
    }


# ---------------------------------------------------------------- transmission


def _check_form(book, snapshot: dict, digest: str):
    """Off the hub: the structure and every value of a filled form."""
    layout = form_rules.build_layout(snapshot, cells=False)
    found = form_rules.structure_problems(
        layout, book, digest, lambda: form_rules.build_layout(snapshot)
    )
    # a formula typed in an input cell is a value to correct there, not a
    # change of the locked structure
    inputs = layout.input_columns()
    in_inputs = [p for p in found if p.col in inputs.get(p.sheet, {}).get(p.row, ())]
    structure = [p for p in found if p not in in_inputs]
    values, problems = form_rules.check_values(layout, book)
    return values, structure, in_inputs + problems


NOT_PREFORMATTED = (
    "survey.form_not_preformatted",
    "Ce fichier n'est pas le formulaire d'enquête préformaté : téléchargez-le depuis « Enquêtes "
    "en ligne », complétez-le puis déposez-le.",
)


def validate_form(session, survey: Survey, data: bytes, secret: bytes, cpu=direct):
    """(form version, extracted values) of a filled form of ``survey``, or
    the error that refuses it (every problem at once, with cell references)."""
    try:
        book = cpu(xlsx.read_book, data)
    except xlsx.Unreadable as exc:
        raise ERRORS.error("survey.form_unreadable", reason=exc.message) from None
    except xlsx.OutOfBounds as exc:
        problem = Problem(exc.sheet, exc.row, exc.col, "cellule hors des limites du formulaire.")
        raise ERRORS.error("survey.form_structure_changed", **details([problem])) from None
    if form_rules.META not in book.values:
        raise ERRORS.error("survey.form_not_preformatted")
    meta = form_rules.read_meta(book.values[form_rules.META])
    if meta.get("format") != form_rules.FORMAT:
        raise ERRORS.error("survey.form_not_preformatted")
    if not form_rules.signature_valid(secret, meta):
        raise ERRORS.error("survey.form_signature_invalid")
    if meta.get("purpose") == form_rules.WORKING:
        raise ERRORS.error("survey.form_working_copy")
    if meta.get("org_id") != survey.org_id:
        raise ERRORS.error("survey.form_other_organisation")
    if meta.get("survey_id") != survey.id:
        raise ERRORS.error("survey.form_other_survey")
    try:
        version = int(meta.get("form_version") or "")
    except ValueError:
        raise ERRORS.error("survey.form_not_preformatted") from None
    record = repo.form(session, survey.id, version)
    if record is None or record.digest != meta.get("digest"):
        raise ERRORS.error("survey.form_not_preformatted")
    current = {
        "establishments_count": survey.establishments_count,
        "trainings_count": survey.trainings_count,
        "certifications": [
            {k: v for k, v in cert_dict(c).items() if k != "id"}
            for c in repo.certifications(session, survey.id)
        ],
    }
    if form_rules.snapshot_data_hash(current) != record.data_hash:
        raise ERRORS.error("survey.form_outdated")
    snapshot, digest = record.snapshot, record.digest
    session.commit()
    values, structure, problems = cpu(_check_form, book, snapshot, digest)
    everything = sorted(
        structure + problems,
        key=lambda p: (
            form_rules.SHEETS.index(p.sheet) if p.sheet in form_rules.SHEETS else 99,
            p.row,
            p.col,
        ),
    )
    if structure:
        raise ERRORS.error(
            "survey.form_structure_changed",
            variant="listed",
            errors_label=count_label(len(everything)),
            **details(everything),
        )
    if problems:
        raise ERRORS.error(
            "survey.form_invalid", errors_label=count_label(len(problems)), **details(everything)
        )
    values["form_version"] = version
    return version, values


def _existing(session, survey_id: str, *, key=None, file_id=None, sha256=None):
    """The transmission a retry repeats: same idempotency key, same stored
    file, or the same bytes as the latest transmission. The same bytes as an
    earlier one, sent after another file, are a new version (people go back
    to an earlier file)."""
    for name, value in (("idempotency_key", key), ("file_id", file_id)):
        if value and (name == "idempotency_key" or repo.is_id(value)):
            found = repo.transmission_by(session, survey_id, **{name: value})
            if found is not None:
                return found
    if sha256:
        latest = repo.latest_transmission(session, survey_id)
        if latest is not None and latest.sha256 == sha256:
            return latest
    return None


def _clean_key(key) -> str | None:
    if key is None or key == "":
        return None
    if not isinstance(key, str) or not 8 <= len(key) <= 100 or not key.isprintable():
        raise ERRORS.error(
            "survey.invalid_input", fields={"idempotency_key": ["8 à 100 caractères imprimables."]}
        )
    return key


def submit_response(
    session,
    caller: Caller,
    survey_id,
    file_id,
    files,
    identity,
    secret: bytes,
    cpu=direct,
    now: Clock = utcnow,
    idempotency_key: str | None = None,
) -> dict:
    """« Envoyer »: a filled form stored by files (kind ``survey_form``) is
    checked (the pre-formatted form of this organisation and survey, structure
    unchanged, values valid) and recorded with its extracted values; the
    status becomes « déposée » and ``survey.response_submitted`` goes out.
    Earlier versions are kept, and an earlier file sent again becomes the
    latest version. Idempotent: the same key or stored file, or the same
    bytes as the latest transmission, give back the transmission already
    recorded."""
    try:
        key = _clean_key(idempotency_key)
    except InvalidInput:
        _discard(files, file_id)  # files checks the caller may delete it
        raise
    at = now()
    survey, campaign = _submittable(session, caller, survey_id, rules.today_in_france(at))
    done = _existing(session, survey.id, key=key, file_id=file_id)
    if done is not None:
        return dict(transmission_dict(done), status="already_recorded")
    latest = repo.latest_transmission(session, survey.id)
    session.commit()
    me = identity.get_me()
    if me.get("role") != "manager":  # no longer a manager since signing in
        _discard(files, file_id)
        raise ERRORS.error("survey.manager_only")
    stored = _stored_file(files, file_id, survey, "survey_form")
    data = base64.b64decode(stored["content_b64"])
    return _check_and_record(
        session,
        caller,
        survey,
        survey_id,
        key,
        me,
        stored,
        data,
        files,
        secret,
        cpu,
        now,
        at,
        latest,
    )


def transmit(
    session,
    caller: Caller,
    survey_id,
    upload: dict,
    files,
    identity,
    secret: bytes,
    cpu=direct,
    now: Clock = utcnow,
    idempotency_key: str | None = None,
    submitter: dict | None = None,
) -> dict:
    """« Envoyer » in one call: what ``prepare_upload`` (purpose
    ``response``), ``files.store_xlsx`` and ``submit_response`` do one after
    the other, with the bytes crossing the bus once on their way to files and
    never coming back: ``upload = {name, content_b64}``. Same rules, same
    order of refusals and the same error codes as those three calls; a retry
    with a key already recorded stores nothing. Nothing is stored before the
    caller is known to be a manager of an open survey.

    ``submitter`` {name, email} comes from the caller's session token (the
    gateway's): the caller's role is checked from the same token (a role
    change revokes the sessions: identity.update_user), so identity is not asked; without
    it (an older token, another client), ``identity.get_me`` says both."""
    if not isinstance(upload, dict):
        upload = {}
    name = upload.get("name") if isinstance(upload.get("name"), str) else ""
    content_b64 = upload.get("content_b64") if isinstance(upload.get("content_b64"), str) else ""
    # reads only until the form is stored, all of them made again under the
    # survey's lock before anything is written: no BEGIN/COMMIT round trips
    read_only(session)
    at = now()
    survey, campaign = _submittable(session, caller, survey_id, rules.today_in_france(at))
    _require_xlsx_name(name.strip())
    key = _clean_key(idempotency_key)
    latest, done = repo.latest_and_keyed(session, survey.id, key)
    if done is not None:
        return dict(transmission_dict(done), status="already_recorded")
    org = repo.organisation(session, survey.org_id)  # read with the survey: no query
    meta = {
        "kind": "survey_form",
        "name": rules.transmission_file_name(campaign.name, org.name if org else "organisme", at),
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "owner_org_id": survey.org_id,
    }
    session.commit()
    me = _submitter(submitter)
    if me is None:
        me = identity.get_me()
        if me.get("role") != "manager":  # no longer a manager since signing in
            raise ERRORS.error("survey.manager_only")
    stored = files.store_xlsx(meta, content_b64)  # files' checks, then its record and blob
    data = base64.b64decode(content_b64)
    return _check_and_record(
        session,
        caller,
        survey,
        survey_id,
        key,
        me,
        stored,
        data,
        files,
        secret,
        cpu,
        now,
        at,
        latest,
    )


def _submitter(submitter) -> dict | None:
    """{display_name, email} of a well-formed ``submitter``, else None."""
    if not isinstance(submitter, dict):
        return None
    name, email = submitter.get("name"), submitter.get("email")
    if not (isinstance(name, str) and isinstance(email, str) and name.strip() and "@" in email):
        return None
    return {"display_name": name.strip(), "email": email.strip()}


def _check_and_record(
    session,
    caller,
    survey,
    survey_id,
    key,
    me,
    stored,
    data,
    files,
    secret,
    cpu,
    now,
    at,
    latest,
) -> dict:
    """The stored form checked, then recorded (or the transmission that it repeats).

    ``latest``: the survey's latest transmission as read before the file was
    stored (None: none yet), for the early "same bytes again" answer; the
    decisive check is made again under the survey's lock."""
    read_only(session)  # the checks' reads: the writes below take their own transaction
    sha256 = stored.get("sha256")
    done = latest if latest is not None and sha256 and latest.sha256 == sha256 else None
    if done is not None:
        if done.file_id != stored["id"]:
            _discard(files, stored["id"])
        return dict(transmission_dict(done), status="already_recorded")
    try:
        version, values = validate_form(session, survey, data, secret, cpu)
    except (InvalidInput, Conflict):
        _discard(files, stored["id"])
        raise
    for _attempt in range(3):
        # locked and read afresh (the state may have changed while the form was
        # stored and checked): blocked, closed, still visible to the caller
        survey = repo.survey(session, survey.id, for_update=True, fresh=True)
        campaign = session.get(Campaign, survey.campaign_id)
        today = rules.today_in_france(now())
        if survey.org_id not in member_orgs(caller) or not rules.is_online(
            campaign.online_on, today
        ):
            raise ERRORS.error("survey.not_found")
        _check_submittable(caller, survey, campaign, today)
        latest, done = repo.latest_and_keyed(session, survey.id, key)
        done = done or (
            latest if latest is not None and latest.sha256 == stored.get("sha256") else None
        )
        if done is not None:  # the same upload, recorded meanwhile by another worker
            session.commit()
            if done.file_id != stored["id"]:
                _discard(files, stored["id"])
            return dict(transmission_dict(done), status="already_recorded")
        row = Transmission(
            id=new_id(),
            survey_id=survey.id,
            seq=(latest.seq if latest is not None else 0) + 1,  # under the survey's lock
            file_id=stored["id"],
            file_name=stored.get("name") or "formulaire.xlsx",
            sha256=stored.get("sha256") or "",
            size=int(stored.get("size") or 0),
            form_version=version,
            values=values,
            submitted_by=caller.user_id,
            submitter_name=(me.get("display_name") or "")[:210],
            submitter_email=(me.get("email") or "")[:254],
            idempotency_key=key,
            submitted_at=at,
        )
        session.add(row)
        survey.status = rules.SUBMITTED
        survey.last_sent_at = at
        _touch(survey, at)
        emit(
            session,
            Outbox,
            events.RESPONSE_SUBMITTED,
            {
                "survey_id": survey.id,
                "campaign_id": campaign.id,
                "org_id": survey.org_id,
                "transmission_id": row.id,
                "seq": row.seq,
                "file_id": row.file_id,
                "file_name": row.file_name,
                "sha256": row.sha256,
                "form_version": version,
                "submitted_by": caller.user_id,
                "submitted_at": at.isoformat(),
                "size": row.size,
                **_public_facts(session, survey.org_id, campaign),
            },
        )
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            done = _existing(
                session, survey_id, key=key, file_id=stored["id"], sha256=stored.get("sha256")
            )
            if done is not None:
                return dict(transmission_dict(done), status="already_recorded")
            continue  # another version took this number: take the next one
        return dict(transmission_dict(row), status="recorded")
    raise ERRORS.error("survey.busy", variant="transmission")


def get_transmission(
    session, caller: Caller, survey_id, transmission_id, now: Clock = utcnow
) -> dict:
    """One transmitted file (its id in files), to download it again."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    row = repo.transmission(session, survey.id, transmission_id)
    if row is None:
        raise ERRORS.error("survey.transmission_not_found")
    return dict(transmission_dict(row), file_id=row.file_id)


def list_transmissions(session, caller: Caller, survey_id, now: Clock = utcnow) -> list[dict]:
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return [transmission_dict(t) for t in repo.transmissions(session, survey.id)]


def get_response_values(
    session, caller: Caller, survey_id, transmission_id, now: Clock = utcnow
) -> dict:
    """The values extracted from one transmission (agency and the organisation)."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    row = repo.transmission(session, survey.id, transmission_id)
    if row is None:
        raise ERRORS.error("survey.transmission_not_found")
    return dict(transmission_dict(row), values=form_rules.in_euros(row.values))


# ---------------------------------------------------------------- partners


def require_partner(caller: Caller, scope) -> dict:
    """A partner caller (``kit.context.PARTNER``, set by the gateway once
    notify has authenticated the key) and its scope as notify stores it."""
    caller.require_authenticated()
    if PARTNER not in caller.roles:
        raise ERRORS.error("forbidden.partners_only")
    problem = partner_rules.scope_problem(scope)
    if problem:
        raise ERRORS.error(
            "partner.scope_invalid", variant=FIELD, message=problem, fields={"scope": [problem]}
        )
    return scope


def get_partner_transmission(session, caller: Caller, transmission_id, scope) -> dict:
    """A transmission as a partner agency sees it: the public facts of the
    ``survey.response_submitted`` event, the file's id in files and the
    extracted values (amounts as decimal strings in euros) without the person
    to contact. Unknown and outside the scope are the same 404."""
    scope = require_partner(caller, scope)
    found = repo.transmission_anywhere(session, transmission_id)
    if found is None:
        raise ERRORS.error("survey.transmission_not_found")
    row, survey, campaign, org = found
    if not partner_rules.sees_organisation(
        scope,
        account_type=org.account_type if org else None,
        siret=org.siret if org else None,
    ):
        raise ERRORS.error("survey.transmission_not_found")
    values = form_rules.in_euros(partner_rules.public_values(row.values))
    if "unit" in values:
        values["unit"] = "euros"  # in_euros turned every amount into euros
    return {
        "transmission_id": row.id,
        "survey_id": survey.id,
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "siret": org.siret if org else None,
        "uai": org.uai if org else None,
        "account_type": org.account_type if org else None,
        "seq": row.seq,
        "form_version": row.form_version,
        "sha256": row.sha256,
        "size": row.size,
        "file_name": row.file_name,
        "submitted_at": iso(row.submitted_at),
        "file_id": row.file_id,
        "values": values,
    }


# ---------------------------------------------------------------- « Pièces à fournir »


def attachment_dict(row: Attachment) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "content_type": row.content_type,
        "size": row.size,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def list_attachments(session, caller: Caller, survey_id, now: Clock = utcnow) -> list[dict]:
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    return [attachment_dict(a) for a in repo.attachments(session, survey.id)]


def _attachment_file(files, file_id, survey: Survey) -> dict:
    if not repo.is_id(file_id):
        raise ERRORS.error("survey.file_invalid", fields={"file_id": ["Fichier manquant."]})
    try:
        info = files.get_file_info(file_id)
    except NotFound:
        raise ERRORS.error("survey.file_invalid", variant="document_missing") from None
    if info.get("owner_org_id") != survey.org_id or info.get("kind") != "attachment":
        raise ERRORS.error("survey.file_invalid", variant="document_mismatch")
    return info


def add_attachment(session, caller: Caller, survey_id, file_id, files, now: Clock = utcnow) -> dict:
    """« Ajouter »: records a document stored by files (kind ``attachment``)."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    existing = repo.attachment_by_file(session, survey.id, file_id) if repo.is_id(file_id) else None
    if existing is not None:
        return attachment_dict(existing)
    session.commit()
    info = _attachment_file(files, file_id, survey)
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    if len(repo.attachments(session, survey.id)) >= attachment_rules.MAX_PER_SURVEY:
        _discard(files, file_id)
        raise ERRORS.error(
            "survey.attachments_full", max_attachments=attachment_rules.MAX_PER_SURVEY
        )
    row = Attachment(
        id=new_id(),
        survey_id=survey.id,
        file_id=info["id"],
        name=info.get("name") or "document",
        content_type=info.get("content_type") or "application/octet-stream",
        size=int(info.get("size") or 0),
        uploaded_by=caller.user_id,
        created_at=at,
        updated_at=at,
    )
    session.add(row)
    _touch(survey, at)
    session.commit()
    return attachment_dict(row)


def replace_attachment(
    session, caller: Caller, survey_id, attachment_id, file_id, files, now: Clock = utcnow
) -> dict:
    """« Modifier »: the document is replaced; the former file is deleted."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    if row.file_id == file_id:
        return attachment_dict(row)
    session.commit()
    info = _attachment_file(files, file_id, survey)
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    previous = row.file_id
    row.file_id = info["id"]
    row.name = info.get("name") or row.name
    row.content_type = info.get("content_type") or row.content_type
    row.size = int(info.get("size") or 0)
    row.updated_at = at
    session.commit()
    _discard(files, previous)
    return attachment_dict(row)


def delete_attachment(
    session, caller: Caller, survey_id, attachment_id, files, now: Clock = utcnow
) -> dict:
    """« Supprimer »."""
    at = now()
    survey, _campaign = _editable(session, caller, survey_id, rules.today_in_france(at))
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    file_id = row.file_id
    session.delete(row)
    _touch(survey, at)
    session.commit()
    _discard(files, file_id)
    return {"id": attachment_id, "deleted": True}


def get_attachment(session, caller: Caller, survey_id, attachment_id, now: Clock = utcnow) -> dict:
    """« Exporter »: the document's file id in files."""
    survey, _campaign = _visible(session, caller, survey_id, rules.today_in_france(now()))
    row = repo.attachment(session, survey.id, attachment_id)
    if row is None:
        raise ERRORS.error("survey.attachment_not_found")
    return dict(attachment_dict(row), file_id=row.file_id)


# ---------------------------------------------------------------- agency export


def export_responses(
    session, caller: Caller, campaign_id, fmt: str, identity, cpu=direct, now: Clock = utcnow
) -> dict:
    """The extracted data of every organisation a campaign is aimed at
    (latest transmission each; a blank line for those that sent nothing),
    as ``xlsx`` or ``csv``, safe from formula injection."""
    caller.require_agency()
    if fmt not in ("xlsx", "csv"):
        raise ERRORS.error("survey.invalid_input", fields={"format": ["xlsx ou csv."]})
    if repo.campaign(session, campaign_id) is None:
        raise ERRORS.error("survey.campaign_not_found")
    _ensure_every_survey(session, identity, now())
    campaign = repo.campaign(session, campaign_id)
    rows = repo.survey_rows(session, repo.surveys_query(campaign_id=campaign.id))
    latest = repo.latest_transmissions(session, [s.id for s, _c, _o in rows])
    parents = repo.org_names(session, [o.parent_id for _s, _c, o in rows if o is not None])
    table = []
    for survey, _campaign, org in rows:
        sent = latest.get(survey.id)
        table += export_rules.rows_for(
            {
                "campaign": campaign.name,
                "organisation": {
                    "name": org.name if org else None,
                    "siret": org.siret if org else None,
                    "uai": org.uai if org else None,
                    "nda": org.nda if org else None,
                    "account_type": org.account_type if org else None,
                    "parent_name": parents.get(org.parent_id) if org else None,
                },
                "status_label": rules.STATUS_LABELS[survey.status],
                "blocked": survey.blocked,
                "last_sent_at": (
                    survey.last_sent_at.astimezone(rules.PARIS).strftime("%d/%m/%Y %H:%M:%S")
                    if survey.last_sent_at
                    else ""
                ),
                "file_name": sent.file_name if sent else "",
                "values": sent.values if sent else None,
            }
        )
    stamp = now().astimezone(rules.PARIS).strftime("%Y%m%d_%H%M")
    base = f"Export {rules.safe_file_part(campaign.name)} - {stamp}"
    if fmt == "csv":
        return {
            "name": base + ".csv",
            "content_type": "text/csv; charset=utf-8",
            "content_b64": b64(cpu(export_rules.to_csv, table)),
            "rows": len(table),
        }
    content = cpu(
        xlsx.write_table, "Réponses", list(export_rules.HEADERS), export_rules.for_xlsx(table)
    )
    return {
        "name": base + ".xlsx",
        "content_type": xlsx.XLSX_CONTENT_TYPE,
        "content_b64": b64(content),
        "rows": len(table),
    }

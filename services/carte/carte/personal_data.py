"""Personal data in carte (RGPD): a person's export and erasure.

A carte account is an establishment's, a network's or a service's login; the
personal data are those of people named in requests (the « responsable »:
name, phone, e-mail) and in the reports of missing programmes. Export: the
account as carte knows it, the requests and annexes it filed and its reports.
Erasure: the named contact of its requests and the free text of its reports
are replaced; the requests themselves are the establishment's (the Région
and the rectorats decide on them) and stay. The user id stays: a pseudonym
once identity has anonymised the account. The same erasure runs when identity
announces an account anonymised (``identity.person_anonymised``).
"""

from __future__ import annotations

from sqlalchemy import select

from carte.models import Actor, Annex, Campaign, ProgrammeReport, Request
from carte.problems import error as problem
from kit.context import AGENCY_ADMIN, SYSTEM, Caller

ERASED = "[effacé]"


def _require_agency(caller: Caller) -> str:
    caller.require_authenticated()
    if not ({AGENCY_ADMIN, SYSTEM} & set(caller.roles)):
        raise problem("forbidden.agency_only")
    return caller.user_id


def _user_id(user_id) -> str:
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 64:
        raise problem("invalid_input", fields={"user_id": ["Identifiant attendu."]})
    return user_id


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def export_person(session, caller: Caller, user_id) -> dict:
    """Agency: {account, requests, annexes, programme_reports} of a carte account."""
    _require_agency(caller)
    user_id = _user_id(user_id)
    actor = session.get(Actor, user_id)
    requests = session.execute(
        select(Request, Campaign.school_year)
        .join(Campaign, Request.campaign_id == Campaign.id)
        .where(Request.filed_by == user_id)
        .order_by(Request.id)
    ).all()
    annexes = session.scalars(
        select(Annex).where(Annex.added_by == user_id).order_by(Annex.id)
    ).all()
    reports = session.scalars(
        select(ProgrammeReport).where(ProgrammeReport.reporter_id == user_id)
    ).all()
    return {
        "account": None
        if actor is None
        else {
            "identifier": actor.identifier,
            "kind": actor.kind,
            "label": actor.label,
            "uai": actor.uai,
            "active": actor.active,
        },
        "requests": [
            {
                "id": r.id,
                "school_year": year,
                "status": r.status,
                "concerned_uai": r.concerned_uai,
                "manager_name": r.manager_name,
                "manager_phone": r.manager_phone,
                "manager_email": r.manager_email,
                "created_at": _iso(r.created_at),
                "validated_at": _iso(r.validated_at),
            }
            for r, year in requests
        ],
        "annexes": [
            {
                "id": a.id,
                "request_id": a.request_id,
                "file_id": a.file_id,
                "name": a.name,
                "content_type": a.content_type,
                "size": a.size,
                "created_at": _iso(a.created_at),
            }
            for a in annexes
        ],
        "programme_reports": [
            {"id": p.id, "title": p.title, "message": p.message, "created_at": _iso(p.created_at)}
            for p in reports
        ],
    }


def erase_person(session, caller: Caller, user_id) -> dict:
    """Agency: contacts named in the account's requests and its reports'
    messages replaced. Idempotent. Returns {requests_anonymised, reports_anonymised}."""
    _require_agency(caller)
    return _erase(session, _user_id(user_id))


def person_anonymised(session, payload: dict) -> dict:
    """identity.person_anonymised (retention or a request): the same erasure
    as ``erase_person``. Idempotent: a second delivery, or one after the
    agency's erasure, finds nothing left to replace."""
    return _erase(session, _user_id(payload.get("user_id")))


def _erase(session, user_id: str) -> dict:
    requests = 0
    for row in session.scalars(select(Request).where(Request.filed_by == user_id)).all():
        if row.manager_name or row.manager_phone or row.manager_email:
            row.manager_name = row.manager_phone = row.manager_email = None
            requests += 1
    reports = 0
    for row in session.scalars(
        select(ProgrammeReport).where(ProgrammeReport.reporter_id == user_id)
    ).all():
        if row.message not in (None, ERASED):
            row.message = ERASED
            reports += 1
    session.commit()
    return {"requests_anonymised": requests, "reports_anonymised": reports}

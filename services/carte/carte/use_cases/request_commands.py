"""Requests, commands: drafts saved, checked, confirmed and ranked."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError

from carte import repository as repo
from carte.domain import access, partners, territory
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.models import Campaign, Outbox, Request
from carte.problems import error as problem
from carte.schemas import iso, request_view
from carte.use_cases._common import (
    FILERS_ONLY,
    PARTNERS_ONLY,
    _campaign_of,
    _editable,
    _full,
    _one_error,
    _open_campaign,
    _raise,
    _require,
    _visible,
)
from kit import events
from kit.context import PARTNER, Caller
from kit.db import utcnow
from kit.outbox import emit


def _check_draft(session, actor: Actor, values: dict, problems, campaign: Campaign, req_id=None):
    """Rules that need the database: the establishment is the filer's, the
    diploma exists, the priority is free, the linked project is visible."""
    uai = values.get("concerned_uai")
    if uai and not problems.has("concerned_uai") and not actor.may_file_for(uai):
        where = (
            "de votre réseau"
            if actor.kind == "network"
            else ("de la région" if actor.kind == "draaf" else "de votre établissement")
        )
        problems.add(
            "concerned_uai",
            "carte.uai_outside_network",
            f"L'établissement {uai} ne fait pas partie {where} : vous ne pouvez pas "
            "déposer de demande pour lui.",
        )
    variant_id = values.get("variant_id")
    if variant_id is not None:
        variant = repo.variant(session, variant_id)
        if variant is None or not variant.active:
            problems.add(
                "variant_id",
                "carte.diploma_unknown",
                "Ce diplôme n'est pas dans la liste : choisissez-en un dans l'arborescence, "
                "ou signalez la formation manquante au Carif-Oref.",
            )
    priority = values.get("priority")
    if priority is not None and uai and not problems.has("concerned_uai"):
        holder = repo.priority_holder(session, campaign.id, uai, priority, req_id)
        if holder is not None:
            problems.add(
                "priority",
                "carte.priority_taken",
                f"La priorité {priority} est déjà donnée à la demande n° {holder.id} de "
                f"l'établissement {uai} : chaque demande a son rang (1 la plus prioritaire).",
            )
    linked = values.get("linked_request_id")
    if linked is not None:
        other = repo.request(session, linked)
        visible = other is not None and access.may_read(
            actor,
            filed_by=other.filed_by,
            status=other.status,
            concerned_uai=other.concerned_uai,
            academy=other.academy,
            filer_kind=other.filer_kind,
        )
        if not visible or other.id == req_id or other.campaign_id != campaign.id:
            problems.add(
                "linked_request_id",
                "carte.linked_request_not_found",
                f"Le projet n° {linked} est introuvable parmi les demandes de cette campagne "
                "que vous pouvez consulter.",
            )
    form.coherence(values, campaign.school_year, problems)


def _apply(req: Request, values: dict, now: dt.datetime) -> None:
    for key in form.FIELDS:
        setattr(req, key, values.get(key))
    req.recruitment_zones = values.get("recruitment_zones") or []
    req.department = territory.department_of(req.concerned_uai)
    req.academy = territory.academy_of(req.concerned_uai)
    req.updated_at = now


def _commit_request(session) -> None:
    try:
        session.commit()
    except IntegrityError:  # the same priority taken concurrently
        session.rollback()
        problems = form.Problems()
        problems.add(
            "priority",
            "carte.priority_taken",
            "Cette priorité vient d'être donnée à une autre demande de l'établissement.",
        )
        _raise(problems, "carte.priority_taken")


def create_request(session, actor: Actor, data, now: dt.datetime | None = None) -> dict:
    """The first « Sauvegarder »: the request gets its id. The draft may be
    partial; what it holds must be right. Errors: the codes of save_request,
    carte.no_campaign / carte.campaign_not_open / carte.campaign_closed (409)."""
    now = now or utcnow()
    _require(actor.is_filer, FILERS_ONLY)
    campaign = _open_campaign(session, now)
    data = dict(data) if isinstance(data, dict) else data
    if isinstance(data, dict) and actor.kind == "establishment" and not data.get("concerned_uai"):
        data["concerned_uai"] = actor.uai  # its only possible value, prefilled
    values, problems = form.parse_form(data)
    _check_draft(session, actor, values, problems, campaign)
    _raise(problems, "carte.request_invalid")
    req = Request(
        campaign_id=campaign.id,
        status="draft",
        version=1,
        filed_by=actor.user_id,
        filer_kind=actor.kind,
        filer_identifier=actor.identifier,
        referent_uai=actor.referent,
        created_at=now,
    )
    _apply(req, values, now)
    session.add(req)
    _commit_request(session)
    return _full(session, req, actor)


def save_request(session, actor: Actor, request_id, data, now: dt.datetime | None = None) -> dict:
    """« Sauvegarder »: the whole form replaces the draft (absent fields are
    emptied). ``data.version``, when given, must be the version read (409
    carte.request_changed otherwise). Errors (422, per field in
    ``errors`` and ``details.codes``): carte.uai_invalid,
    carte.uai_outside_network, carte.diploma_unknown, carte.priority_taken,
    carte.capacity_incoherent, carte.report_too_long,
    carte.linked_request_not_found, … or carte.request_invalid for several;
    carte.request_not_found (404), carte.request_validated (409),
    carte.campaign_closed (409)."""
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    campaign = _open_campaign(session, now, _campaign_of(session, req))
    _check_version(req, data)
    values, problems = form.parse_form(data)
    _check_draft(session, actor, values, problems, campaign, req.id)
    _raise(problems, "carte.request_invalid")
    _apply(req, values, now)
    req.version += 1
    _commit_request(session)
    return _full(session, req, actor)


def _check_version(req: Request, data) -> None:
    if isinstance(data, dict) and data.get("version") not in (None, ""):
        if str(data["version"]) != str(req.version):
            raise problem("carte.request_changed")


def get_request(session, actor: Actor, request_id) -> dict:
    """« Continuer la saisie » / « Consulter ». Errors: carte.request_not_found."""
    req = _visible(session, actor, request_id)
    return _full(session, req, actor)


def get_partner_request(session, caller: Caller, request_id, scope) -> dict:
    """A validated request as a partner agency sees it (``partners.partner_view``:
    the project, no person). The caller is a partner (``kit.context.PARTNER``,
    set by the gateway once notify has authenticated the key), not a carte
    account; ``scope`` is that partner's, as notify stores it. Unknown, still
    a draft and outside the scope are the same 404 carte.request_not_found."""
    caller.require_authenticated()
    if PARTNER not in caller.roles:
        raise problem(PARTNERS_ONLY)
    scope_error = partners.scope_problem(scope)
    if scope_error:
        raise _one_error("scope", "partner.scope_invalid", scope_error)
    req = repo.request(session, request_id)
    if req is None or not partners.sees(scope, status=req.status, academy=req.academy):
        raise problem("carte.request_not_found")
    # a reader that may edit nothing: request_dict's « editable » is false
    reader = Actor(user_id=caller.user_id, kind="partner", identifier="")
    return partners.partner_view(_full(session, req, reader))


def _validate(session, actor: Actor, req: Request, campaign: Campaign) -> None:
    values = {key: getattr(req, key) for key in form.FIELDS}
    values["recruitment_zones"] = list(req.recruitment_zones or [])
    problems = form.Problems()
    _check_draft(session, actor, values, problems, campaign, req.id)
    form.completeness(values, problems)
    _raise(problems, "carte.request_incomplete")


def check_request(session, actor: Actor, request_id, now: dt.datetime | None = None) -> dict:
    """« Valider la demande » (from the annexes step): every mandatory field
    and rule; if all is right, the recap to confirm. Errors: 422
    carte.request_incomplete (per field; a single kind of problem gives its
    own code, e.g. carte.field_required), 409 carte.request_validated,
    carte.campaign_closed."""
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    campaign = _open_campaign(session, now, _campaign_of(session, req))
    _validate(session, actor, req, campaign)
    view = _full(session, req, actor)
    session.rollback()  # read only: release the row lock
    return {"status": "ready", "version": req.version, "request": view, "recap": request_view(view)}


def confirm_request(
    session, actor: Actor, request_id, version=None, now: dt.datetime | None = None
) -> dict:
    """« Confirmer »: the request becomes read-only for good and
    carte.request_validated leaves through the outbox. Confirming an already
    validated request again answers the same (at-least-once delivery).
    Errors: as check_request, plus carte.request_changed (409) when the
    draft changed since the recap."""
    now = now or utcnow()
    req = _visible(session, actor, request_id, for_update=True)
    if req.status == "validated" and access.may_edit(actor, filed_by=req.filed_by):
        if version in (None, "") or str(version) == str(req.version):
            return _full(session, req, actor)
    req = _editable(session, actor, request_id)
    campaign = _open_campaign(session, now, _campaign_of(session, req))
    _check_version(req, {"version": version})
    _validate(session, actor, req, campaign)
    req.status = "validated"
    req.validated_at = now
    req.validated_by = actor.user_id
    info = repo.variant_info(session, [req.variant_id]).get(req.variant_id)
    emit(
        session,
        Outbox,
        events.REQUEST_VALIDATED,
        {
            "request_id": req.id,
            "campaign_id": campaign.id,
            "school_year": campaign.school_year,
            "concerned_uai": req.concerned_uai,
            "referent_uai": req.referent_uai,
            "academy": req.academy,
            "department": req.department,
            "measure": req.measure,
            "modality": req.modality,
            "diploma_code": info[1].cfd if info else None,
            "variant_id": req.variant_id,
            "filed_by": req.filed_by,
            "validated_at": iso(now),
        },
    )
    session.commit()
    return _full(session, req, actor)


def reorder_priorities(session, actor: Actor, uai, order, now: dt.datetime | None = None) -> dict:
    """Ranks the filer's drafts for one establishment in the given order, in
    the ranks validated requests (fixed for good) leave free.
    Errors: carte.order_invalid, carte.uai_outside_network."""
    now = now or utcnow()
    _require(actor.is_filer, FILERS_ONLY)
    campaign = _open_campaign(session, now)
    uai = uai.strip().upper() if isinstance(uai, str) else ""
    if not actor.may_file_for(uai):
        raise _one_error(
            "uai",
            "carte.uai_outside_network",
            "Cet établissement ne fait pas partie de votre périmètre.",
        )
    rows = repo.requests_of_uai(session, campaign.id, uai)
    mine = {r.id: r for r in rows if r.status == "draft" and r.filed_by == actor.user_id}
    if (
        not isinstance(order, list)
        or len(order) != len(set(map(str, order)))
        or {str(i) for i in order} != {str(i) for i in mine}
    ):
        raise _one_error(
            "order",
            "carte.order_invalid",
            f"Indiquez une fois chacune de vos demandes en cours pour {uai}.",
        )
    fixed = {r.priority for r in rows if r.id not in mine and r.priority is not None}
    ranks, rank = [], 0
    for _ in order:
        rank += 1
        while rank in fixed:
            rank += 1
        ranks.append(rank)
    for req in mine.values():  # free the ranks first: the unique index is checked per row
        req.priority = None
    session.flush()
    for request_id, rank in zip(order, ranks, strict=True):
        req = mine[int(request_id)]
        req.priority, req.version, req.updated_at = rank, req.version + 1, now
    session.commit()
    return {
        "uai": uai,
        "priorities": [{"id": int(i), "priority": p} for i, p in zip(order, ranks, strict=True)],
    }

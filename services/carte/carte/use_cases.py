"""Carte use cases: one function per command or query.

Each takes the SQLAlchemy session, the acting account (``Actor``, resolved by
``acting``) and its collaborators (clock, file reader) as parameters, checks
rights and rules itself, commits once, and writes its events to the outbox in
the same transaction. Errors are kit.errors classes with stable ``carte.*``
codes and French messages; a refused command changes nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from carte import repository as repo
from carte import tabular
from carte.domain import access, export, partners, territory
from carte.domain import catalogue as cat
from carte.domain import codes as carte_codes
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.models import (
    Actor as ActorRow,
)
from carte.models import (
    Annex,
    Campaign,
    Diploma,
    Level,
    Outbox,
    ProgrammeReport,
    Request,
    Variant,
)
from kit import events
from kit.context import AGENCY_ADMIN, PARTNER, SYSTEM, Caller
from kit.cpu import offload
from kit.db import utcnow
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from kit.outbox import emit

PARIS = ZoneInfo("Europe/Paris")
MAX_ANNEXES = 10
EXPORT_MAX = 50_000
PAGE_MAX = 200
STATUS_LABELS = {"draft": "En cours de saisie", "validated": "Validée"}
# the reviewers' filters with their labels (for the list page)
REVIEW_CHOICES = {"academy": territory.ACADEMY_LABELS, "measure": form.MEASURES}

REQUEST_NOT_FOUND = ("carte.request_not_found", "Demande introuvable.")
FILERS_ONLY = (
    "forbidden.carte_filers_only",
    "Réservé aux établissements, à leurs réseaux et aux services de la DRAAF.",
)
REVIEWERS_ONLY = (
    "forbidden.carte_reviewers_only",
    "Réservé aux relecteurs (Région, académies, DRAAF) et aux administrateurs.",
)
PARTNERS_ONLY = (
    "forbidden.partners_only",
    "Réservé aux partenaires authentifiés par leur clé d'API.",
)
ADMIN_ONLY = (
    "forbidden.carte_admin_only",
    "Réservé aux administrateurs de la carte des formations.",
)


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def today(now: dt.datetime) -> dt.date:
    return now.astimezone(PARIS).date()


# ---------------------------------------------------------------- actors


def _actor(row: ActorRow) -> Actor:
    return Actor(
        user_id=row.user_id,
        kind=row.kind,
        identifier=row.identifier,
        label=row.label,
        uai=row.uai,
        referent_uai=row.referent_uai,
        member_uais=frozenset(row.member_uais or ()),
        scope=row.scope,
    )


def save_account(session, payload: dict) -> bool:
    """``identity.carte_account_saved``: keeps the newest revision only
    (events may arrive twice or out of order). Returns whether it changed."""
    user_id = payload.get("user_id")
    revision = int(payload.get("revision") or 0)
    if not isinstance(user_id, str) or payload.get("kind") not in (
        *access.FILERS,
        "reviewer",
        "admin",
    ):
        return False
    row = session.get(ActorRow, user_id, with_for_update=True)
    if row is not None and row.revision >= revision:
        return False
    if row is None:
        row = ActorRow(user_id=user_id)
        session.add(row)
    row.identifier = str(payload.get("identifier") or "")[:32]
    row.kind = payload["kind"]
    row.label = str(payload.get("label") or "")[:200]
    row.uai = payload.get("uai")
    row.referent_uai = payload.get("referent_uai")
    row.member_uais = sorted(payload.get("member_uais") or [])
    row.scope = payload.get("scope")
    row.active = bool(payload.get("active", True))
    row.revision = revision
    try:
        session.commit()
    except IntegrityError:  # the same account saved concurrently
        session.rollback()
        return False
    return True


def acting(session, caller: Caller, fetch_account: Callable[[str], dict] | None = None) -> Actor:
    """The carte account behind the caller, from this service's copy; an
    account not announced yet is fetched once from identity. Agency staff
    act as administrators."""
    caller.require_authenticated()
    if AGENCY_ADMIN in caller.roles or SYSTEM in caller.roles:
        return Actor(user_id=caller.user_id, kind="admin", identifier="AGENCE", label="Agence")
    row = repo.actor(session, caller.user_id)
    if row is None and fetch_account is not None:
        session.rollback()  # no transaction open across an RPC (docs/stack-pitfalls.md §9)
        try:
            payload = fetch_account(caller.user_id)
        except (NotFound, Forbidden):
            payload = None
        if payload:
            save_account(session, payload)
            row = repo.actor(session, caller.user_id)
    if row is None:
        raise Forbidden(
            "forbidden.carte_account_required", "Réservé aux comptes de la carte des formations."
        )
    if not row.active:
        raise Unauthenticated("auth.session_invalid", "Votre session n'est plus valide.")
    return _actor(row)


def _one_error(field: str, code: str, message: str) -> InvalidInput:
    """One field's error, its message also the problem's title."""
    return InvalidInput.fields({field: [message]}, code, message)


def _require(condition: bool, error: tuple[str, str]) -> None:
    if not condition:
        raise Forbidden(*error)


# ---------------------------------------------------------------- campaigns


def campaign_dict(campaign: Campaign | None, now: dt.datetime) -> dict | None:
    if campaign is None:
        return None
    day = today(now)
    state = (
        "open"
        if campaign.opens_on <= day <= campaign.closes_on
        else ("upcoming" if day < campaign.opens_on else "closed")
    )
    return {
        "id": campaign.id,
        "school_year": campaign.school_year,
        "label": f"Rentrée {campaign.school_year}",
        "programming_year": f"{campaign.school_year}-{campaign.school_year + 1}",
        "opens_on": campaign.opens_on.isoformat(),
        "closes_on": campaign.closes_on.isoformat(),
        "state": state,
        "state_label": {"open": "Ouverte", "upcoming": "À venir", "closed": "Close"}[state],
    }


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
    _raise(problems, "carte.campaign_invalid", "La campagne comporte des erreurs.")
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
        raise Conflict("carte.campaign_exists", f"La campagne de la rentrée {year} existe déjà.")
    _no_overlap(session, opens_on, closes_on, None)
    campaign = Campaign(school_year=year, opens_on=opens_on, closes_on=closes_on, created_at=now)
    session.add(campaign)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            "carte.campaign_exists", f"La campagne de la rentrée {year} existe déjà."
        ) from None
    return campaign_dict(campaign, now)


def _no_overlap(session, opens_on, closes_on, exclude_id) -> None:
    other = repo.overlapping(session, opens_on, closes_on, exclude_id)
    if other is not None:
        raise Conflict(
            "carte.campaign_overlap",
            f"Ces dates chevauchent la campagne de la rentrée {other.school_year}.",
        )


def update_campaign(session, actor: Actor, campaign_id, data, now: dt.datetime | None = None):
    """New dates {opens_on, closes_on} (e.g. a later closing)."""
    now = now or utcnow()
    _require(actor.is_admin, ADMIN_ONLY)
    campaign = repo.by_id(session, Campaign, campaign_id)
    if campaign is None:
        raise NotFound("carte.campaign_not_found", "Campagne introuvable.")
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


def _open_campaign(session, now: dt.datetime, campaign: Campaign | None = None) -> Campaign:
    campaign = campaign or repo.current_campaign(session, today(now))
    if campaign is None:
        raise Conflict("carte.no_campaign", "Aucune campagne de dépôt n'est ouverte.")
    state = campaign_dict(campaign, now)["state"]
    if state == "upcoming":
        raise Conflict(
            "carte.campaign_not_open",
            f"La campagne de la rentrée {campaign.school_year} ouvre le "
            f"{campaign.opens_on:%d/%m/%Y}.",
        )
    if state == "closed":
        raise Conflict(
            "carte.campaign_closed",
            f"La campagne de la rentrée {campaign.school_year} est close depuis le "
            f"{campaign.closes_on:%d/%m/%Y} : les demandes ne peuvent plus être "
            "enregistrées ni validées.",
        )
    return campaign


# ---------------------------------------------------------------- catalogue


def import_catalogue(
    session, actor: Actor, name: str, read: Callable[[], bytes], now: dt.datetime | None = None
) -> dict:
    """The administrator's file (.xlsx or .csv), all or nothing. Errors:
    carte.catalogue_unreadable, carte.catalogue_invalid (details.problems:
    [{row, column, message}], every problem at once)."""
    _require(actor.is_admin, ADMIN_ONLY)
    session.rollback()  # no transaction open while the file is fetched (docs/stack-pitfalls.md §9)
    try:
        rows = offload(tabular.read_table, name, read())
    except tabular.Unreadable as exc:
        raise InvalidInput("carte.catalogue_unreadable", str(exc)) from None
    parsed, problems = offload(cat.parse_catalogue, rows)
    if problems:
        raise InvalidInput(
            "carte.catalogue_invalid",
            f"Le fichier comporte {len(problems)} erreur(s) : rien n'a été importé.",
            {"problems": [p.as_dict() for p in problems]},
        )
    levels, diplomas, variants = (
        repo.levels(session),
        repo.diplomas(session),
        repo.variants(session),
    )
    created = updated = 0
    offered: set[tuple[str, int]] = set()
    for row in parsed:  # no ORM relationships: parents are flushed first
        if row.level not in levels:
            levels[row.level] = Level(code=row.level, label=cat.LEVEL_LABELS[row.level])
            session.add(levels[row.level])
    session.flush()
    for row in parsed:
        diploma = diplomas.get(row.cfd)
        search = cat.fold(f"{row.title} {row.cfd} {row.rncp or ''}")
        if diploma is None:
            diploma = diplomas[row.cfd] = Diploma(cfd=row.cfd)
            session.add(diploma)
        diploma.title, diploma.level_code, diploma.rncp, diploma.search = (
            row.title,
            row.level,
            row.rncp,
            search,
        )
    session.flush()
    for row in parsed:
        for duration in row.durations:
            offered.add((row.cfd, duration))
            label = cat.variant_label(row.title, duration)
            variant = variants.get((row.cfd, duration))
            if variant is None:
                session.add(Variant(cfd=row.cfd, duration=duration, label=label, active=True))
                created += 1
            elif variant.label != label or not variant.active:
                variant.label, variant.active = label, True
                updated += 1
    withdrawn = 0
    for key, variant in variants.items():
        if key not in offered and variant.active:
            variant.active = False
            withdrawn += 1
    session.commit()
    return {
        "diplomas": len(parsed),
        "variants": len(offered),
        "created": created,
        "updated": updated,
        "withdrawn": withdrawn,
    }


def get_catalogue(session, actor: Actor, query: str | None = None) -> dict:
    """The tree level → diploma → duration, optionally searched (title, CFD, RNCP)."""
    folded = cat.fold(query)[:100] if isinstance(query, str) and query.strip() else None
    tree: dict[str, dict] = {}
    count = 0
    for variant, diploma, level in repo.catalogue(session, folded):
        node = tree.setdefault(
            level.code, {"code": level.code, "label": level.label, "diplomas": {}}
        )
        dnode = node["diplomas"].setdefault(
            diploma.cfd,
            {"cfd": diploma.cfd, "rncp": diploma.rncp, "title": diploma.title, "variants": []},
        )
        dnode["variants"].append(
            {"id": variant.id, "duration": variant.duration, "label": variant.label}
        )
        count += 1
    levels = []
    for node in tree.values():
        node["diplomas"] = list(node["diplomas"].values())
        levels.append(node)
    return {"levels": levels, "variant_count": count, "query": query or None}


def report_missing_programme(session, actor: Actor, data, now: dt.datetime | None = None) -> dict:
    """« Contacter le Carif-Oref » when a programme is missing: stored, and
    announced (carte.programme_reported) for the e-mail. Errors: carte.report_invalid."""
    now = now or utcnow()
    data = data if isinstance(data, dict) else {}
    problems = form.Problems()
    title = form._text(data.get("title"))
    if not title or title == "\x00":
        problems.add("title", "carte.field_required", form.REQUIRED)
    elif len(title) > 200:
        problems.add("title", "carte.field_too_long", "200 caractères au plus.")
    cfd = carte_codes.normalise_cfd(form._text(data.get("cfd")).replace("\x00", "?")) or None
    if cfd and not carte_codes.is_valid_cfd(cfd):
        problems.add(
            "cfd", "carte.cfd_invalid", "Code diplôme invalide (8 caractères, ex. 40025214)."
        )
    raw_rncp = form._text(data.get("rncp")).replace("\x00", "?")
    rncp = carte_codes.normalise_rncp(raw_rncp) if raw_rncp else None
    if raw_rncp and rncp is None:
        problems.add("rncp", "carte.rncp_invalid", "Code RNCP invalide (ex. RNCP37098).")
    reference = form._text(data.get("reference")).replace("\x00", "")[:300] or None
    message = form._text(data.get("message")).replace("\x00", "")
    if len(message) > 2000:
        problems.add("message", "carte.field_too_long", "2000 caractères au plus.")
    _raise(problems, "carte.report_invalid", "Le signalement comporte des erreurs.")
    report = ProgrammeReport(
        title=title,
        cfd=cfd,
        rncp=rncp,
        reference=reference,
        message=message or None,
        reporter_id=actor.user_id,
        reporter_identifier=actor.identifier,
        created_at=now,
    )
    session.add(report)
    session.flush()
    emit(
        session,
        Outbox,
        events.PROGRAMME_REPORTED,
        {
            "report_id": report.id,
            "title": title,
            "cfd": cfd,
            "rncp": rncp,
            "reference": reference,
            "message": message or None,
            "reporter_identifier": actor.identifier,
            "reporter_label": actor.label,
        },
    )
    session.commit()
    return {
        "id": report.id,
        "status": "received",
        "message": "Votre signalement a été transmis au Carif-Oref, qui intégrera la "
        "formation à la liste après vérification.",
    }


def list_programme_reports(session, actor: Actor) -> list[dict]:
    _require(actor.is_admin, ADMIN_ONLY)
    return [
        {
            "id": r.id,
            "title": r.title,
            "cfd": r.cfd,
            "rncp": r.rncp,
            "reference": r.reference,
            "message": r.message,
            "reporter_identifier": r.reporter_identifier,
            "created_at": iso(r.created_at),
        }
        for r in repo.programme_reports(session)
    ]


# ---------------------------------------------------------------- requests: views


def _raise(problems: form.Problems, default_code: str, default_message: str) -> None:
    if problems:
        raise InvalidInput(
            problems.code(default_code),
            problems.message(default_message),
            {"fields": problems.fields(), "codes": problems.codes()},
        )


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("Oui" if value else "Non")


def request_dict(req: Request, info, annexes: list[Annex], actor: Actor, campaign: Campaign):
    variant = diploma = level = None
    if info is not None:
        variant, diploma, level = info
    return {
        "id": req.id,
        "status": req.status,
        "status_label": STATUS_LABELS[req.status],
        "version": req.version,
        "campaign_id": req.campaign_id,
        "school_year": campaign.school_year,
        "school_year_label": f"Rentrée {campaign.school_year}",
        "filer_identifier": req.filer_identifier,
        "filer_kind": req.filer_kind,
        "referent_uai": req.referent_uai,
        "concerned_uai": req.concerned_uai,
        "department": req.department,
        "department_label": territory.DEPARTMENTS.get(req.department or ""),
        "academy": req.academy,
        "academy_label": territory.ACADEMY_LABELS.get(req.academy or ""),
        "training_site": req.training_site,
        "manager_name": req.manager_name,
        "manager_phone": req.manager_phone,
        "manager_email": req.manager_email,
        "modality": req.modality,
        "modality_label": form.MODALITIES.get(req.modality or ""),
        "variant_id": req.variant_id,
        "diploma": None
        if variant is None
        else {
            "variant_id": variant.id,
            "label": variant.label,
            "cfd": diploma.cfd,
            "rncp": diploma.rncp,
            "title": diploma.title,
            "duration": variant.duration,
            "level": level.code,
            "level_label": level.label,
        },
        "measure": req.measure,
        "measure_label": form.MEASURES.get(req.measure or ""),
        "linked": req.linked,
        "linked_request_id": req.linked_request_id,
        "priority": req.priority,
        "current_capacity": req.current_capacity,
        "new_capacity": req.new_capacity,
        "first_filing": req.first_filing,
        "previous_filing_year": req.previous_filing_year,
        "cp_ca_date": iso(req.cp_ca_date),
        "recruitment_zones": list(req.recruitment_zones or []),
        "works_needed": req.works_needed,
        "works_description": req.works_description,
        "equipment_needed": req.equipment_needed,
        "equipment_description": req.equipment_description,
        "other_impacts": req.other_impacts,
        "opportunity_report": req.opportunity_report,
        "annexes": [
            {
                "id": a.id,
                "name": a.name,
                "size": a.size,
                "content_type": a.content_type,
                "created_at": iso(a.created_at),
            }
            for a in annexes
        ],
        "editable": req.status == "draft" and access.may_edit(actor, filed_by=req.filed_by),
        "created_at": iso(req.created_at),
        "updated_at": iso(req.updated_at),
        "validated_at": iso(req.validated_at),
    }


def dashboard_row(req, actor: Actor) -> dict:
    """One line of « Liste de vos demandes » from ``repo.dashboard``'s row."""
    editable = req.status == "draft" and access.may_edit(actor, filed_by=req.filed_by)
    return {
        "id": req.id,
        "status": req.status,
        "measure": form.MEASURES.get(req.measure or "", ""),
        "diploma": req.variant_label or "Pas encore saisi",
        "modality": req.modality or "",
        "linked": _yes_no(req.linked) or "Non",
        "linked_request_id": req.linked_request_id,
        "concerned_uai": req.concerned_uai,
        "priority": req.priority,
        "operation": "Continuer la saisie" if editable else "Consulter",
        "editable": editable,
    }


def flat_row(view: dict, annex_count: int | None = None) -> dict:
    """One export line (``export.COLUMNS``)."""
    diploma = view["diploma"] or {}
    zones = ", ".join(form.ZONES[z] for z in view["recruitment_zones"])

    def need(flag, text):
        return f"Oui : {text or ''}".strip() if flag else _yes_no(flag)

    return dict(
        view,
        academy_label=view["academy_label"] or "",
        level_label=diploma.get("level_label"),
        diploma_code=diploma.get("cfd"),
        rncp=diploma.get("rncp"),
        diploma_label=diploma.get("label"),
        linked_label=_yes_no(view["linked"]),
        first_filing_label=_yes_no(view["first_filing"]),
        recruitment_zones_label=zones,
        works_label=need(view["works_needed"], view["works_description"]),
        equipment_label=need(view["equipment_needed"], view["equipment_description"]),
        annex_count=len(view["annexes"]) if annex_count is None else annex_count,
    )


def request_view(view: dict) -> dict:
    """The recap, the print page and the PDF: sections of labelled answers."""

    def item(key, value=None):
        return {"label": form.LABELS[key], "value": view.get(key) if value is None else value}

    diploma = view["diploma"] or {}
    zones = ", ".join(form.ZONES[z] for z in view["recruitment_zones"])
    first = view["first_filing"]
    return {
        "title": f"Demande n° {view['id']} - {view['school_year_label']}",
        "subtitle": (
            f"{view['status_label']}"
            + (f" le {view['validated_at'][:10]}" if view["validated_at"] else "")
            + f" - déposée par {view['filer_identifier']}"
        ),
        "sections": [
            {
                "title": "A/ Établissement de formation",
                "items": [
                    item("referent_uai"),
                    item(
                        "concerned_uai",
                        " - ".join(
                            x
                            for x in (
                                view["concerned_uai"],
                                view["department_label"],
                                view["academy_label"],
                            )
                            if x
                        ),
                    ),
                    item("training_site"),
                    item("manager_name"),
                    item("manager_phone"),
                    item("manager_email"),
                ],
            },
            {
                "title": "B/ Informations sur la formation",
                "items": [
                    item("modality", view["modality_label"] or ""),
                    item(
                        "variant_id",
                        f"{diploma['label']} (code diplôme {diploma['cfd']}"
                        + (f", {diploma['rncp']}" if diploma.get("rncp") else "")
                        + ")"
                        if diploma
                        else "",
                    ),
                    item("measure", view["measure_label"] or ""),
                    item("linked", _yes_no(view["linked"])),
                    item("linked_request_id", view["linked_request_id"] or ""),
                    item("priority", view["priority"] or ""),
                    item("current_capacity", view["current_capacity"]),
                    item("new_capacity", view["new_capacity"]),
                    item("first_filing", _yes_no(first)),
                    item("previous_filing_year", view["previous_filing_year"] or ""),
                    item("cp_ca_date", view["cp_ca_date"] or ""),
                    item("recruitment_zones", zones),
                    item("school_year", f"{view['school_year_label']}"),
                ],
            },
            {
                "title": "Demande de travaux, d'équipements et autres incidences",
                "items": [
                    item("works_needed", _yes_no(view["works_needed"])),
                    item("works_description"),
                    item("equipment_needed", _yes_no(view["equipment_needed"])),
                    item("equipment_description"),
                    item("other_impacts"),
                ],
            },
            {
                "title": "Rapport d'opportunité",
                "items": [item("opportunity_report")],
            },
            {
                "title": "Annexes",
                "items": [
                    {"label": a["name"], "value": f"{a['size']} octets"} for a in view["annexes"]
                ]
                or [{"label": "Aucune annexe", "value": ""}],
            },
        ],
        "footer": f"Plateforme carte des formations - demande n° {view['id']}",
    }


def _campaign_of(session, req: Request) -> Campaign:
    return session.get(Campaign, req.campaign_id)


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
        raise NotFound(*REQUEST_NOT_FOUND)
    return req


def _editable(session, actor: Actor, request_id) -> Request:
    req = _visible(session, actor, request_id, for_update=True)
    if req.status == "validated":
        raise Conflict(
            "carte.request_validated",
            f"La demande n° {req.id} est validée : elle ne peut plus être modifiée.",
        )
    if not access.may_edit(actor, filed_by=req.filed_by):
        raise NotFound(*REQUEST_NOT_FOUND)
    return req


def _full(session, req: Request, actor: Actor) -> dict:
    info = repo.variant_info(session, [req.variant_id]).get(req.variant_id)
    annexes = repo.annexes(session, [req.id])[req.id]
    return request_dict(req, info, annexes, actor, _campaign_of(session, req))


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


# ---------------------------------------------------------------- requests: commands


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
        variant = session.get(Variant, variant_id)
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
        _raise(problems, "carte.priority_taken", "")


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
    _raise(problems, "carte.request_invalid", "La demande comporte des erreurs : voir les champs.")
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
    _raise(problems, "carte.request_invalid", "La demande comporte des erreurs : voir les champs.")
    _apply(req, values, now)
    req.version += 1
    _commit_request(session)
    return _full(session, req, actor)


def _check_version(req: Request, data) -> None:
    if isinstance(data, dict) and data.get("version") not in (None, ""):
        if str(data["version"]) != str(req.version):
            raise Conflict(
                "carte.request_changed",
                "La demande a été modifiée entre-temps : rechargez-la avant de continuer.",
            )


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
        raise Forbidden(*PARTNERS_ONLY)
    problem = partners.scope_problem(scope)
    if problem:
        raise InvalidInput.fields({"scope": [problem]}, "partner.scope_invalid", problem)
    req = repo.request(session, request_id)
    if req is None or not partners.sees(scope, status=req.status, academy=req.academy):
        raise NotFound(*REQUEST_NOT_FOUND)
    # a reader that may edit nothing: request_dict's « editable » is false
    reader = Actor(user_id=caller.user_id, kind="partner", identifier="")
    return partners.partner_view(_full(session, req, reader))


def _validate(session, actor: Actor, req: Request, campaign: Campaign) -> None:
    values = {key: getattr(req, key) for key in form.FIELDS}
    values["recruitment_zones"] = list(req.recruitment_zones or [])
    problems = form.Problems()
    _check_draft(session, actor, values, problems, campaign, req.id)
    form.completeness(values, problems)
    _raise(
        problems,
        "carte.request_incomplete",
        "La demande est incomplète ou comporte des erreurs : corrigez les champs signalés.",
    )


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


# ---------------------------------------------------------------- annexes


def prepare_annex(session, actor: Actor, request_id, now: dt.datetime | None = None) -> dict:
    """May the caller add an annex now? Called before the upload reaches the
    files service. Errors: carte.request_not_found, carte.request_validated,
    carte.annexes_full (409)."""
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    _open_campaign(session, now, _campaign_of(session, req))
    count = session.scalar(select(func.count()).where(Annex.request_id == req.id))
    if count >= MAX_ANNEXES:
        raise Conflict("carte.annexes_full", f"{MAX_ANNEXES} annexes au plus par demande.")
    session.rollback()
    return {"request_id": req.id, "remaining": MAX_ANNEXES - count}


def add_annex(session, actor: Actor, request_id, meta, now: dt.datetime | None = None) -> dict:
    """Joins a stored file {file_id, name, size, content_type}."""
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    _open_campaign(session, now, _campaign_of(session, req))
    if not isinstance(meta, dict) or not isinstance(meta.get("file_id"), str):
        raise _one_error("file", "carte.annex_invalid", "Fichier manquant.")
    count = session.scalar(select(func.count()).where(Annex.request_id == req.id))
    if count >= MAX_ANNEXES:
        raise Conflict("carte.annexes_full", f"{MAX_ANNEXES} annexes au plus par demande.")
    annex = Annex(
        request_id=req.id,
        file_id=meta["file_id"][:64],
        name=str(meta.get("name") or "annexe")[:255],
        content_type=str(meta.get("content_type") or "application/octet-stream")[:120],
        size=int(meta.get("size") or 0),
        added_by=actor.user_id,
        created_at=now,
    )
    session.add(annex)
    req.version += 1
    req.updated_at = now
    session.commit()
    return _full(session, req, actor)


def remove_annex(session, actor: Actor, request_id, annex_id, now: dt.datetime | None = None):
    now = now or utcnow()
    req = _editable(session, actor, request_id)
    annex = repo.by_id(session, Annex, annex_id)
    if annex is None or annex.request_id != req.id:
        raise NotFound("carte.annex_not_found", "Annexe introuvable.")
    session.delete(annex)
    req.version += 1
    req.updated_at = now
    session.commit()
    return _full(session, req, actor)


def annex_file(session, actor: Actor, request_id, annex_id) -> dict:
    """{file_id, name} of an annex of a request the caller can see."""
    req = _visible(session, actor, request_id)
    annex = repo.by_id(session, Annex, annex_id)
    if annex is None or annex.request_id != req.id:
        raise NotFound("carte.annex_not_found", "Annexe introuvable.")
    session.rollback()  # the bytes are fetched next, over RPC
    return {"file_id": annex.file_id, "name": annex.name, "content_type": annex.content_type}


# ---------------------------------------------------------------- reviewers


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
    _raise(problems, "carte.filter_invalid", "Filtres invalides.")
    return clean


def _review_campaign(session, clean: dict, now: dt.datetime) -> Campaign | None:
    if clean.get("campaign_id"):
        return session.get(Campaign, clean["campaign_id"])
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
        raise InvalidInput("carte.format_invalid", "Format d'export : xlsx ou csv.")
    clean = parse_filters(filters)
    campaign = _review_campaign(session, clean, now)
    rows: list = []
    scope = None if actor.is_admin else actor.scope
    if campaign is not None:
        rows, total = repo.validated(session, campaign.id, clean, scope, EXPORT_MAX + 1, 0)
        if total > EXPORT_MAX:
            raise InvalidInput(
                "carte.export_too_large",
                f"Plus de {EXPORT_MAX:,} demandes : affinez les filtres.".replace(",", "\u202f"),
            )
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

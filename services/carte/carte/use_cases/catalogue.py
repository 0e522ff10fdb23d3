"""Catalogue: the import of the programmes, their tree, and the missing
programmes reported to the Carif-Oref."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from carte import repository as repo
from carte import tabular
from carte.domain import catalogue as cat
from carte.domain import codes as carte_codes
from carte.domain import requests as form
from carte.domain.access import Actor
from carte.models import Diploma, Level, Outbox, ProgrammeReport, Variant
from carte.problems import error as problem
from carte.schemas import iso
from carte.use_cases._common import ADMIN_ONLY, _raise, _require
from kit import events
from kit.cpu import offload
from kit.db import utcnow
from kit.outbox import emit


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
        raise problem("carte.catalogue_unreadable", reason=str(exc)) from None
    parsed, problems = offload(cat.parse_catalogue, rows)
    if problems:
        raise problem(
            "carte.catalogue_invalid",
            count=len(problems),
            problems=[p.as_dict() for p in problems],
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
    _raise(problems, "carte.report_invalid")
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

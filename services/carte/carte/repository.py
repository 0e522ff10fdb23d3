"""Every carte query."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, or_, select

from carte.models import (
    Actor,
    Annex,
    Campaign,
    Diploma,
    Level,
    ProgrammeReport,
    Request,
    Variant,
)

# ---------------------------------------------------------------- campaigns


def campaigns(session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.school_year.desc())))


def campaign_by_year(session, year: int) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.school_year == year))


def overlapping(session, opens_on: dt.date, closes_on: dt.date, exclude_id=None) -> Campaign | None:
    query = select(Campaign).where(Campaign.opens_on <= closes_on, Campaign.closes_on >= opens_on)
    if exclude_id is not None:
        query = query.where(Campaign.id != exclude_id)
    return session.scalar(query.limit(1))


def current_campaign(session, today: dt.date) -> Campaign | None:
    """The open campaign, else the last one that opened, else the next one."""
    started = session.scalar(
        select(Campaign).where(Campaign.opens_on <= today).order_by(Campaign.opens_on.desc())
    )
    if started is not None:
        return started
    return session.scalar(select(Campaign).order_by(Campaign.opens_on).limit(1))


# ---------------------------------------------------------------- catalogue


def levels(session) -> dict[str, Level]:
    return {lv.code: lv for lv in session.scalars(select(Level))}


def diplomas(session) -> dict[str, Diploma]:
    return {d.cfd: d for d in session.scalars(select(Diploma))}


def variants(session) -> dict[tuple[str, int], Variant]:
    return {(v.cfd, v.duration): v for v in session.scalars(select(Variant))}


def catalogue(session, folded_query: str | None = None, limit: int = 5000):
    """(variant, diploma, level) rows of the offered variants, in tree order."""
    query = (
        select(Variant, Diploma, Level)
        .join(Diploma, Variant.cfd == Diploma.cfd)
        .join(Level, Diploma.level_code == Level.code)
        .where(Variant.active.is_(True))
    )
    if folded_query:
        for word in folded_query.split("_"):
            if word:
                query = query.where(Diploma.search.like(f"%{word}%"))
    query = query.order_by(Level.code, Diploma.title, Variant.duration).limit(limit)
    return list(session.execute(query))


def variant_info(session, ids) -> dict[int, tuple[Variant, Diploma, Level]]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(Variant, Diploma, Level)
        .join(Diploma, Variant.cfd == Diploma.cfd)
        .join(Level, Diploma.level_code == Level.code)
        .where(Variant.id.in_(ids))
    )
    return {v.id: (v, d, lv) for v, d, lv in rows}


# ---------------------------------------------------------------- actors


def actor(session, user_id: str) -> Actor | None:
    return session.get(Actor, user_id)


# ---------------------------------------------------------------- requests


def db_id(value) -> int | None:
    """An id as the tables hold them (1 to 2**31 - 1), else None: a number
    out of that range is no row, not a database error."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int):
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()):
            return None
        value = int(text[:12])
    return value if 0 < value < 2**31 else None


def by_id(session, model, value, for_update: bool = False):
    key = db_id(value)
    return None if key is None else session.get(model, key, with_for_update=for_update or None)


def request(session, request_id, for_update: bool = False) -> Request | None:
    return by_id(session, Request, request_id, for_update)


def filer_requests(session, campaign_id: int, user_id: str, uais) -> list[Request]:
    """The dashboard: what the filer filed, and validated requests of its establishments."""
    condition = Request.filed_by == user_id
    if uais:
        condition = or_(
            condition,
            (Request.status == "validated") & Request.concerned_uai.in_(sorted(uais)),
        )
    return list(
        session.scalars(
            select(Request)
            .where(Request.campaign_id == campaign_id, condition)
            .order_by(Request.id.desc())
        )
    )


def priority_holder(
    session, campaign_id: int, uai: str, priority: int, exclude_id: int | None
) -> Request | None:
    query = select(Request).where(
        Request.campaign_id == campaign_id,
        Request.concerned_uai == uai,
        Request.priority == priority,
    )
    if exclude_id is not None:
        query = query.where(Request.id != exclude_id)
    return session.scalar(query.limit(1))


def requests_of_uai(session, campaign_id: int, uai: str) -> list[Request]:
    return list(
        session.scalars(
            select(Request)
            .where(Request.campaign_id == campaign_id, Request.concerned_uai == uai)
            .order_by(Request.id)
            .with_for_update()
        )
    )


def validated_query(campaign_id: int, filters: dict, scope: str | None):
    query = select(Request).where(Request.campaign_id == campaign_id, Request.status == "validated")
    if scope == "draaf":
        query = query.where(Request.filer_kind == "draaf")
    elif scope in ("montpellier", "toulouse"):
        query = query.where(Request.academy == scope)
    if filters.get("academy"):
        query = query.where(Request.academy == filters["academy"])
    if filters.get("department"):
        query = query.where(Request.department == filters["department"])
    if filters.get("measure"):
        query = query.where(Request.measure == filters["measure"])
    if filters.get("uai"):
        query = query.where(Request.concerned_uai == filters["uai"])
    if filters.get("variant_id"):
        query = query.where(Request.variant_id == filters["variant_id"])
    if filters.get("cfd"):
        query = query.where(
            Request.variant_id.in_(select(Variant.id).where(Variant.cfd == filters["cfd"]))
        )
    return query


def validated(session, campaign_id, filters, scope, limit, offset) -> tuple[list[Request], int]:
    query = validated_query(campaign_id, filters, scope)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Request.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def annex_counts(session, campaign_id, filters, scope) -> dict[int, int]:
    ids = validated_query(campaign_id, filters, scope).with_only_columns(Request.id)
    return dict(
        session.execute(
            select(Annex.request_id, func.count())
            .where(Annex.request_id.in_(ids))
            .group_by(Annex.request_id)
        ).all()
    )


def annexes(session, request_ids) -> dict[int, list[Annex]]:
    ids = list(request_ids)
    out: dict[int, list[Annex]] = {i: [] for i in ids}
    if not ids:
        return out
    for annex in session.scalars(select(Annex).where(Annex.request_id.in_(ids)).order_by(Annex.id)):
        out[annex.request_id].append(annex)
    return out


def programme_reports(session, limit: int = 500) -> list[ProgrammeReport]:
    return list(
        session.scalars(select(ProgrammeReport).order_by(ProgrammeReport.id.desc()).limit(limit))
    )

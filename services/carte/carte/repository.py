"""Every carte query."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import and_, func, or_, select

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


def _current_campaign_id(today: dt.date):
    """The open campaign, else the last one that opened, else the next one:
    its id as a subquery, so that callers ask in one round trip."""
    started = (
        select(Campaign.id)
        .where(Campaign.opens_on <= today)
        .order_by(Campaign.opens_on.desc())
        .limit(1)
        .scalar_subquery()
    )
    upcoming = select(Campaign.id).order_by(Campaign.opens_on).limit(1).scalar_subquery()
    return func.coalesce(started, upcoming)


def current_campaign(session, today: dt.date) -> Campaign | None:
    """The open campaign, else the last one that opened, else the next one."""
    return session.scalar(select(Campaign).where(Campaign.id == _current_campaign_id(today)))


def campaign(session, campaign_id) -> Campaign | None:
    return session.get(Campaign, campaign_id)


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


def variant(session, variant_id) -> Variant | None:
    return session.get(Variant, variant_id)


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


def actor_for_update(session, user_id: str) -> Actor | None:
    """The row locked, for an account saved from its event."""
    return session.get(Actor, user_id, with_for_update=True)


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


# what a dashboard line shows (``schemas.dashboard_row``), not the whole request
DASHBOARD_COLUMNS = (
    Request.id,
    Request.status,
    Request.filed_by,
    Request.measure,
    Request.modality,
    Request.linked,
    Request.linked_request_id,
    Request.concerned_uai,
    Request.priority,
    Request.variant_id,
    Variant.label.label("variant_label"),
)


def dashboard(session, today: dt.date, user_id: str, uais) -> tuple[Campaign | None, list]:
    """The current campaign and, in the same round trip, its lines of the
    filer's dashboard: what the filer filed, and the validated requests of
    its establishments, newest first, with their diploma's label."""
    condition = Request.filed_by == user_id
    if uais:
        condition = or_(
            condition,
            (Request.status == "validated") & Request.concerned_uai.in_(sorted(uais)),
        )
    rows = session.execute(
        select(Campaign, *DASHBOARD_COLUMNS)
        .select_from(Campaign)
        .outerjoin(Request, and_(Request.campaign_id == Campaign.id, condition))
        .outerjoin(Variant, Variant.id == Request.variant_id)
        .where(Campaign.id == _current_campaign_id(today))
        .order_by(Request.id.desc())
    ).all()
    if not rows:
        return None, []
    return rows[0][0], [row for row in rows if row.id is not None]


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


class VariantInfo(NamedTuple):
    id: int
    label: str
    duration: int


class DiplomaInfo(NamedTuple):
    cfd: str
    rncp: str | None
    title: str


class LevelInfo(NamedTuple):
    code: str
    label: str


_DIPLOMA_COLUMNS = (
    Variant.label.label("v_label"),
    Variant.duration.label("v_duration"),
    Diploma.rncp.label("d_rncp"),
    Diploma.title.label("d_title"),
    Diploma.cfd.label("d_cfd"),
    Level.code.label("l_code"),
    Level.label.label("l_label"),
)


def _info(row) -> tuple[VariantInfo, DiplomaInfo, LevelInfo] | None:
    if row.d_cfd is None:
        return None
    return (
        VariantInfo(row.variant_id, row.v_label, row.v_duration),
        DiplomaInfo(row.d_cfd, row.d_rncp, row.d_title),
        LevelInfo(row.l_code, row.l_label),
    )


def validated(session, campaign_id, filters, scope, limit, offset) -> tuple[list, int]:
    """A page of validated requests as plain rows (lists and exports only
    read them), each with its (variant, diploma, level) from the same query,
    and the count of all that match; the count costs a round trip only when
    the page does not already tell it."""
    query = (
        validated_query(campaign_id, filters, scope)
        .with_only_columns(*Request.__table__.columns, *_DIPLOMA_COLUMNS)
        .outerjoin(Variant, Variant.id == Request.variant_id)
        .outerjoin(Diploma, Diploma.cfd == Variant.cfd)
        .outerjoin(Level, Level.code == Diploma.level_code)
    )
    rows = session.execute(query.order_by(Request.id.desc()).limit(limit).offset(offset)).all()
    if offset == 0 and len(rows) < limit:
        total = len(rows)
    else:
        counted = validated_query(campaign_id, filters, scope).with_only_columns(Request.id)
        total = session.scalar(select(func.count()).select_from(counted.subquery()))
    return [(row, _info(row)) for row in rows], total


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


def annex_count(session, request_id: int) -> int:
    return session.scalar(select(func.count()).where(Annex.request_id == request_id))


def programme_reports(session, limit: int = 500) -> list[ProgrammeReport]:
    return list(
        session.scalars(select(ProgrammeReport).order_by(ProgrammeReport.id.desc()).limit(limit))
    )

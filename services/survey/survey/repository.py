"""Every survey query."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import defer

from survey.models import (
    Attachment,
    Campaign,
    Certification,
    Form,
    Organisation,
    Survey,
    SyncMark,
    Transmission,
)

# The agency's copy of the organisations can hold many thousands of rows,
# and PostgreSQL takes at most 65,535 parameters in one statement (a single
# multi-row INSERT of 7,282 organisations × 9 columns fails): bulk writes are
# one statement executed for many rows, and lists in ``IN (…)`` go by chunks.
CHUNK = 1_000


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_id(value) -> bool:
    """Whether ``value`` can be one of our ids. Anything else (a NUL byte,
    which PostgreSQL refuses in text, a path, a huge string) matches nothing
    and never reaches the database."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _insert(session, model):
    dialect = session.bind.dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


def upsert_organisations(session, rows: list[dict]) -> None:
    """Local copies from identity, inserted or refreshed."""
    if not rows:
        return
    statement = _insert(session, Organisation)
    columns = {
        name: statement.excluded[name]
        for name in (
            "name",
            "siret",
            "uai",
            "nda",
            "account_type",
            "parent_id",
            "status",
            "refreshed_at",
        )
    }
    statement = statement.on_conflict_do_update(index_elements=["id"], set_=columns)
    for chunk in _chunks(rows):
        session.connection().execute(statement, chunk)


def insert_missing_surveys(session, rows: list[dict]) -> None:
    """Creates survey instances, ignoring those another worker just created."""
    statement = _insert(session, Survey).on_conflict_do_nothing(
        index_elements=["campaign_id", "org_id"]
    )
    for chunk in _chunks(rows):
        session.connection().execute(statement, chunk)


def organisation(session, org_id: str | None) -> Organisation | None:
    return session.get(Organisation, org_id) if org_id else None


def org_names(session, ids) -> dict[str, str]:
    ids = [i for i in set(ids) if i]
    if not ids:
        return {}
    rows = session.execute(
        select(Organisation.id, Organisation.name).where(Organisation.id.in_(ids))
    )
    return {row.id: row.name for row in rows}


def validated_organisations(session) -> list[Organisation]:
    return list(session.scalars(select(Organisation).where(Organisation.status == "validated")))


def campaign(session, campaign_id) -> Campaign | None:
    return session.get(Campaign, campaign_id) if is_id(campaign_id) else None


def campaign_of(session, survey: Survey) -> Campaign:
    """The campaign of a survey read from the database (usually already in
    the session: no query)."""
    return session.get(Campaign, survey.campaign_id)


def campaigns(session) -> list[Campaign]:
    return list(
        session.scalars(select(Campaign).order_by(Campaign.online_on.desc(), Campaign.name))
    )


def online_campaigns(session, today: dt.date) -> list[Campaign]:
    return list(session.scalars(select(Campaign).where(Campaign.online_on <= today)))


def survey_pairs(session, org_ids, campaign_ids) -> set[tuple[str, str]]:
    if not org_ids or not campaign_ids:
        return set()
    found = set()
    for chunk in _chunks(list(org_ids)):
        rows = session.execute(
            select(Survey.campaign_id, Survey.org_id).where(
                Survey.org_id.in_(chunk), Survey.campaign_id.in_(list(campaign_ids))
            )
        )
        found |= {(r.campaign_id, r.org_id) for r in rows}
    return found


def surveys_query(
    *,
    org_ids=None,
    online_before: dt.date | None = None,
    campaign_id: str | None = None,
    blocked: bool | None = None,
    status: str | None = None,
    sent_from: dt.datetime | None = None,
    sent_to: dt.datetime | None = None,
    org_query: str | None = None,
):
    """(Survey, Campaign, Organisation | None) rows, newest campaigns first."""
    query = (
        select(Survey, Campaign, Organisation)
        .join(Campaign, Campaign.id == Survey.campaign_id)
        .outerjoin(Organisation, Organisation.id == Survey.org_id)
    )
    if org_ids is not None:
        query = query.where(Survey.org_id.in_(list(org_ids)))
    if online_before is not None:
        query = query.where(Campaign.online_on <= online_before)
    if campaign_id:
        query = query.where(Survey.campaign_id == campaign_id)
    if blocked is not None:
        query = query.where(Survey.blocked.is_(blocked))
    if status:
        query = query.where(Survey.status == status)
    if sent_from is not None:
        query = query.where(Survey.last_sent_at >= sent_from)
    if sent_to is not None:
        query = query.where(Survey.last_sent_at < sent_to)
    if org_query:
        pattern = f"%{org_query.lower()}%"
        query = query.where(
            or_(func.lower(Organisation.name).like(pattern), Organisation.siret.like(pattern))
        )
    return query.order_by(Campaign.online_on.desc(), Organisation.name, Survey.id)


def survey_rows(session, query, limit: int | None = None, offset: int = 0) -> list:
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return list(session.execute(query))


def count(session, query) -> int:
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


_SURVEY = select(Survey).where(Survey.id == bindparam("survey_id"))
_SURVEY_VARIANTS = {
    (False, False): _SURVEY,
    (True, False): _SURVEY.with_for_update(),
    (False, True): _SURVEY.execution_options(populate_existing=True),
    (True, True): _SURVEY.with_for_update().execution_options(populate_existing=True),
}


def survey(session, survey_id, *, for_update: bool = False, fresh: bool = False) -> Survey | None:
    """``fresh``: the row's current values even if the session holds the
    survey already (sessions keep their objects across commits)."""
    if not is_id(survey_id):
        return None
    locked = for_update and session.bind.dialect.name == "postgresql"
    return session.scalar(_SURVEY_VARIANTS[locked, fresh], {"survey_id": survey_id})


_SURVEY_IN_CONTEXT = (
    select(Survey, Campaign, Organisation)
    .join(Campaign, Campaign.id == Survey.campaign_id)
    .outerjoin(Organisation, Organisation.id == Survey.org_id)
    .where(Survey.id == bindparam("survey_id"))
)


def survey_in_context(session, survey_id) -> tuple[Survey, Campaign] | None:
    """The survey and its campaign in one query; its organisation's local
    copy comes with them into the session (``organisation`` then reads it
    from there)."""
    if not is_id(survey_id):
        return None
    row = session.execute(_SURVEY_IN_CONTEXT, {"survey_id": survey_id}).first()
    return None if row is None else (row[0], row[1])


def certifications(session, survey_id: str) -> list[Certification]:
    return list(
        session.scalars(
            select(Certification)
            .where(Certification.survey_id == survey_id)
            .order_by(Certification.position, Certification.id)
        )
    )


def certification(session, survey_id: str, cert_id) -> Certification | None:
    if not is_id(cert_id):
        return None
    cert = session.get(Certification, cert_id)
    return cert if cert is not None and cert.survey_id == survey_id else None


def delete_certifications(session, survey_id: str) -> None:
    session.execute(delete(Certification).where(Certification.survey_id == survey_id))


def latest_form(session, survey_id: str) -> Form | None:
    return session.scalar(
        select(Form).where(Form.survey_id == survey_id).order_by(Form.version.desc()).limit(1)
    )


def form(session, survey_id: str, version: int) -> Form | None:
    return session.scalar(select(Form).where(Form.survey_id == survey_id, Form.version == version))


def transmissions(session, survey_id: str) -> list[Transmission]:
    return list(
        session.scalars(
            select(Transmission)
            .where(Transmission.survey_id == survey_id)
            .order_by(Transmission.seq)
        )
    )


def transmission(session, survey_id: str, transmission_id) -> Transmission | None:
    if not is_id(transmission_id):
        return None
    row = session.get(Transmission, transmission_id)
    return row if row is not None and row.survey_id == survey_id else None


def transmission_anywhere(session, transmission_id):
    """``(Transmission, Survey, Campaign, Organisation | None)`` of one
    transmission whatever its organisation (a partner's read: the caller
    filters by scope), or None."""
    if not is_id(transmission_id):
        return None
    return session.execute(
        select(Transmission, Survey, Campaign, Organisation)
        .join(Survey, Survey.id == Transmission.survey_id)
        .join(Campaign, Campaign.id == Survey.campaign_id)
        .outerjoin(Organisation, Organisation.id == Survey.org_id)
        .where(Transmission.id == transmission_id)
    ).first()


# The transmission path's lookups, built once (a constant statement keeps its
# SQLAlchemy cache key) and without ``values``: the extracted figures are
# loaded only by the code that reads them (a lazy load on first access).
_TRANSMISSION = (
    select(Transmission)
    .options(defer(Transmission.values))
    .where(Transmission.survey_id == bindparam("survey_id"))
)
_TRANSMISSION_BY = {
    name: _TRANSMISSION.where(getattr(Transmission, name) == bindparam("value")).limit(1)
    for name in ("idempotency_key", "file_id", "sha256")
}
_LATEST_TRANSMISSION = _TRANSMISSION.order_by(Transmission.seq.desc()).limit(1)


def transmission_by(session, survey_id: str, **where) -> Transmission | None:
    """The first transmission of ``survey_id`` with that one column's value."""
    ((name, value),) = where.items()
    return session.scalar(_TRANSMISSION_BY[name], {"survey_id": survey_id, "value": value})


def latest_transmission(session, survey_id: str) -> Transmission | None:
    return session.scalar(_LATEST_TRANSMISSION, {"survey_id": survey_id})


_LATEST_OR_KEYED = _TRANSMISSION.where(
    or_(
        Transmission.seq
        == select(func.max(Transmission.seq))
        .where(Transmission.survey_id == bindparam("survey_id"))
        .scalar_subquery(),
        Transmission.idempotency_key == bindparam("key"),
    )
)


def latest_and_keyed(
    session, survey_id: str, key: str | None
) -> tuple[Transmission | None, Transmission | None]:
    """(the latest transmission, the one recorded with idempotency ``key``),
    in one query; either may be None (no key: no keyed one)."""
    rows = list(session.scalars(_LATEST_OR_KEYED, {"survey_id": survey_id, "key": key}))
    latest = max(rows, key=lambda row: row.seq, default=None)
    keyed = next((row for row in rows if key is not None and row.idempotency_key == key), None)
    return latest, keyed


def next_seq(session, survey_id: str) -> int:
    current = session.scalar(
        select(func.max(Transmission.seq)).where(Transmission.survey_id == survey_id)
    )
    return (current or 0) + 1


def latest_transmissions(session, survey_ids) -> dict[str, Transmission]:
    found: dict[str, Transmission] = {}
    for ids in _chunks(list(survey_ids)):
        latest = (
            select(Transmission.survey_id, func.max(Transmission.seq).label("seq"))
            .where(Transmission.survey_id.in_(ids))
            .group_by(Transmission.survey_id)
            .subquery()
        )
        rows = session.scalars(
            select(Transmission).join(
                latest,
                (Transmission.survey_id == latest.c.survey_id) & (Transmission.seq == latest.c.seq),
            )
        )
        found.update({row.survey_id: row for row in rows})
    return found


def attachments(session, survey_id: str) -> list[Attachment]:
    return list(
        session.scalars(
            select(Attachment)
            .where(Attachment.survey_id == survey_id)
            .order_by(Attachment.created_at, Attachment.id)
        )
    )


def attachment(session, survey_id: str, attachment_id) -> Attachment | None:
    if not is_id(attachment_id):
        return None
    row = session.get(Attachment, attachment_id)
    return row if row is not None and row.survey_id == survey_id else None


def attachment_by_file(session, survey_id: str, file_id: str) -> Attachment | None:
    return session.scalar(
        select(Attachment).where(Attachment.survey_id == survey_id, Attachment.file_id == file_id)
    )


def status_counts(session) -> dict[str, dict[str, int]]:
    """Per campaign: surveys per status, and blocked ones."""
    counts: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(Survey.campaign_id, Survey.status, Survey.blocked, func.count()).group_by(
            Survey.campaign_id, Survey.status, Survey.blocked
        )
    )
    for campaign_id, status, blocked, n in rows:
        bucket = counts.setdefault(
            campaign_id,
            {"total": 0, "not_downloaded": 0, "downloaded": 0, "submitted": 0, "blocked": 0},
        )
        bucket["total"] += n
        bucket[status] = bucket.get(status, 0) + n
        if blocked:
            bucket["blocked"] += n
    return counts


def sync_mark(session, name: str) -> dt.datetime | None:
    mark = session.get(SyncMark, name)
    return mark.at if mark is not None else None


def set_sync_mark(session, name: str, at: dt.datetime) -> None:
    statement = _insert(session, SyncMark).values(name=name, at=at)
    session.execute(
        statement.on_conflict_do_update(index_elements=["name"], set_={"at": statement.excluded.at})
    )


def clear_sync_mark(session, name: str) -> None:
    session.execute(delete(SyncMark).where(SyncMark.name == name))

"""The feed: every partner event in commit order, and what each partner reads of it.

Ingestion (``ingest``) writes the event and one delivery per subscribed
partner and channel in one transaction, keyed on the emitting service's
event id: a redelivered copy changes nothing. On PostgreSQL the transaction
takes an advisory lock before it draws its ``seq``, so rows become visible in
``seq`` order and a reader that has seen ``seq`` n has seen everything
below it: a cursor never skips an event that commits late.

A cursor is opaque to partners: ``base64url("v1.<seq>.<unix time of that
event>")``. Past the retention it is expired (410), since the events after it
may be gone; an empty page hands back a cursor at the newest event, so a
partner that polls a quiet feed never sees its cursor expire.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notify import problems
from notify.models import (
    ACTIVE,
    AMQP,
    DELIVERY_DISABLED,
    DELIVERY_PENDING,
    WEBHOOK,
    DeliveryAttempt,
    Partner,
    PartnerDelivery,
    PartnerEvent,
)
from notify.partners import catalogue, scope
from notify.partners.settings import PartnerSettings

log = logging.getLogger(__name__)

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


def ingest(
    session: Session,
    kind: catalogue.EventType,
    payload: dict,
    settings: PartnerSettings,
    now: dt.datetime,
) -> list[PartnerDelivery] | None:
    """Adds an event to the feed and schedules its pushes; None if already there."""
    event_id = payload.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 64:
        log.error("partner event %s without a usable event_id: dropped", kind.name)
        return None
    if session.bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('notify.partner_feed'))"))
    if session.scalar(select(PartnerEvent.seq).where(PartnerEvent.event_id == event_id)):
        session.rollback()
        return None
    facts = catalogue.facts(kind, payload)
    row = PartnerEvent(
        event_id=event_id,
        event_type=kind.name,
        account_type=facts.get("account_type"),
        siret=facts.get("siret"),
        academy=facts.get("academy"),
        envelope=catalogue.envelope(kind, payload, settings.public_url),
        occurred_at=catalogue.parse_time(payload.get("occurred_at")),
        received_at=now,
    )
    session.add(row)
    session.flush()
    deliveries = []
    for partner in session.scalars(select(Partner).where(Partner.state == ACTIVE)):
        if kind.name not in (partner.event_types or []):
            continue
        if not scope.matches(partner.scope, kind.kind, facts):
            continue
        deliveries.extend(schedule_for(partner, row, now))
    session.add_all(deliveries)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return deliveries


def schedule_for(partner: Partner, event: PartnerEvent, now: dt.datetime) -> list[PartnerDelivery]:
    """One new delivery per channel the partner has (disabled ones are kept, idle)."""
    rows = []
    if partner.webhook_url:
        state = DELIVERY_PENDING if partner.webhook_state == "enabled" else DELIVERY_DISABLED
        rows.append(_delivery(partner, event, WEBHOOK, state, now))
    if partner.amqp_username:
        rows.append(_delivery(partner, event, AMQP, DELIVERY_PENDING, now))
    return rows


def _delivery(partner, event, channel, state, now) -> PartnerDelivery:
    return PartnerDelivery(
        partner_id=partner.id,
        event_seq=event.seq,
        event_id=event.event_id,
        event_type=event.event_type,
        channel=channel,
        state=state,
        attempts=0,
        next_attempt_at=now if state == DELIVERY_PENDING else None,
        created_at=now,
    )


# ---------------------------------------------------------------- cursors


def encode_cursor(seq: int, at: dt.datetime) -> str:
    raw = f"v1.{seq}.{int(at.timestamp())}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor) -> tuple[int, dt.datetime]:
    if not isinstance(cursor, str) or not 1 <= len(cursor) <= 64:
        raise problems.error("partner.cursor_invalid")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, seq, stamp = raw.split(".")
        if version != "v1" or not seq.isdigit() or not stamp.isdigit():
            raise ValueError(raw)
        return int(seq), dt.datetime.fromtimestamp(int(stamp), dt.UTC)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError) as exc:
        raise problems.error("partner.cursor_invalid") from exc


def parse_limit(limit) -> int:
    if limit in (None, ""):
        return DEFAULT_LIMIT
    try:
        value = int(str(limit))
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise problems.error("partner.limit_invalid", max_limit=MAX_LIMIT)
    return value


# ---------------------------------------------------------------- reading


def visible(partner: Partner | dict):
    """The SQL condition of the events a partner may read: its types, its scope."""
    types = _get(partner, "event_types") or []
    sc = _get(partner, "scope") or {}
    conditions = []
    for name in types:
        kind = catalogue.CATALOGUE.get(name)
        if kind is None:
            continue
        clauses = [PartnerEvent.event_type == name]
        if kind.kind == catalogue.CARTE_KIND:
            if sc.get("academies") is not None:
                clauses.append(PartnerEvent.academy.in_(sc["academies"]))
        else:
            if sc.get("account_types") is not None:
                clauses.append(PartnerEvent.account_type.in_(sc["account_types"]))
            if sc.get("sirets") is not None:
                clauses.append(PartnerEvent.siret.in_(sc["sirets"]))
        conditions.append(and_(*clauses))
    return or_(*conditions) if conditions else PartnerEvent.seq < 0


def _get(obj, name):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name)


def read(
    session: Session,
    partner: Partner | dict,
    after,
    limit,
    settings: PartnerSettings,
    now: dt.datetime,
) -> dict:
    size = parse_limit(limit)
    start = 0
    if after not in (None, ""):
        start, at = decode_cursor(after)
        if at < now - dt.timedelta(days=settings.retention_days):
            raise problems.error("partner.cursor_expired", retention_days=settings.retention_days)
    rows = list(
        session.scalars(
            select(PartnerEvent)
            .where(PartnerEvent.seq > start, visible(partner))
            .order_by(PartnerEvent.seq)
            .limit(size + 1)
        )
    )
    has_more = len(rows) > size
    rows = rows[:size]
    if rows:
        cursor = encode_cursor(rows[-1].seq, rows[-1].received_at)
    else:
        newest = session.execute(
            select(PartnerEvent.seq, PartnerEvent.received_at)
            .order_by(PartnerEvent.seq.desc())
            .limit(1)
        ).first()
        if newest is not None and newest.seq > start:
            cursor = encode_cursor(newest.seq, newest.received_at)
        else:
            cursor = after or None
    return {"items": [r.envelope for r in rows], "next_cursor": cursor, "has_more": has_more}


def purge(session: Session, settings: PartnerSettings, now: dt.datetime) -> int:
    """Forgets events past the retention (their deliveries and attempts go with them).

    On PostgreSQL one replica purges at a time (a transaction advisory lock;
    the others skip this round) so that two deletes of the same rows never
    wait on, or deadlock with, each other."""
    if session.bind.dialect.name == "postgresql" and not session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtext('notify.partner_feed_purge'))")
    ):
        session.rollback()
        return 0
    cutoff = now - dt.timedelta(days=settings.retention_days)
    old = select(PartnerEvent.seq).where(PartnerEvent.received_at < cutoff)
    doomed = select(PartnerDelivery.id).where(PartnerDelivery.event_seq.in_(old))
    session.query(DeliveryAttempt).filter(DeliveryAttempt.delivery_id.in_(doomed)).delete(
        synchronize_session=False
    )
    session.query(PartnerDelivery).filter(PartnerDelivery.event_seq.in_(old)).delete(
        synchronize_session=False
    )
    count = (
        session.query(PartnerEvent)
        .filter(PartnerEvent.received_at < cutoff)
        .delete(synchronize_session=False)
    )
    session.commit()
    return count


def newest_seq(session: Session) -> int:
    return session.scalar(select(func.max(PartnerEvent.seq))) or 0

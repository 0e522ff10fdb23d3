"""Every query of the notify service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from notify.models import FAILED, PENDING, SENT, UNDELIVERED, Delivery


def add_deliveries(session: Session, rows: list[Delivery]) -> None:
    session.add_all(rows)


def deliveries_of_event(session: Session, source_event_id: str) -> list[Delivery]:
    query = select(Delivery).where(Delivery.source_event_id == source_event_id)
    return list(session.scalars(query.order_by(Delivery.created_at, Delivery.to)))


def due_for_retry(session: Session, now: dt.datetime, limit: int) -> list[Delivery]:
    """Failed deliveries whose next attempt is due (rows from before the
    retry window have no ``next_attempt_at``: due at once)."""
    query = (
        select(Delivery)
        .where(
            Delivery.status == FAILED,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def undelivered(session: Session, limit: int, offset: int = 0) -> list[Delivery]:
    query = (
        select(Delivery)
        .where(Delivery.status == UNDELIVERED)
        .order_by(Delivery.last_attempt_at.desc(), Delivery.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def count_undelivered(session: Session) -> int:
    query = select(func.count()).select_from(Delivery).where(Delivery.status == UNDELIVERED)
    return int(session.scalar(query) or 0)


def resend(session: Session, delivery_id: str, now: dt.datetime, give_up_at: dt.datetime) -> bool:
    """An undelivered e-mail back in the retry queue, due at once, with a new window."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == UNDELIVERED)
        .values(status=FAILED, next_attempt_at=now, give_up_at=give_up_at)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def stale_pending(session: Session, before: dt.datetime, limit: int) -> list[Delivery]:
    """Deliveries left ``pending`` by a sender that stopped mid-way."""
    query = (
        select(Delivery)
        .where(Delivery.status == PENDING, Delivery.last_attempt_at < before)
        .order_by(Delivery.last_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def claim(session: Session, delivery: Delivery, from_status: str, now: dt.datetime) -> bool:
    """Takes a delivery for one more attempt unless another worker already did.

    A conditional update rather than a row lock: no transaction stays open
    while the mail server answers, and it works the same on SQLite."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status == from_status,
            Delivery.attempts == delivery.attempts,
        )
        .values(status=PENDING, attempts=Delivery.attempts + 1, last_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def mark_stale_failed(session: Session, delivery: Delivery, error: str) -> bool:
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status == PENDING,
            Delivery.attempts == delivery.attempts,
        )
        .values(status=FAILED, last_error=error)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _final_before(before: dt.datetime):
    """Sent (at ``sent_at``) or given up (at its last attempt) before ``before``.
    The fallbacks cover rows without the usual date (written by older code)."""
    return or_(
        (Delivery.status == SENT)
        & (func.coalesce(Delivery.sent_at, Delivery.last_attempt_at, Delivery.created_at) < before),
        (Delivery.status == UNDELIVERED)
        & (func.coalesce(Delivery.last_attempt_at, Delivery.created_at) < before),
    )


def final_deliveries_before(session: Session, before: dt.datetime, limit: int) -> list[str]:
    """Ids of up to ``limit`` deliveries past their retention (personal_data),
    locked on PostgreSQL (SKIP LOCKED: a row another replica holds is skipped)."""
    query = select(Delivery.id).where(_final_before(before)).limit(limit)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def delete_final_deliveries(session: Session, ids: list[str], before: dt.datetime) -> int:
    """Deletes those of ``ids`` still past their retention (the condition is
    checked again: one sent back to the retry queue meanwhile stays)."""
    result = session.execute(
        delete(Delivery)
        .where(Delivery.id.in_(ids), _final_before(before))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def deliveries_by_id(session: Session, ids: list[str]) -> list[Delivery]:
    if not ids:
        return []
    return list(session.scalars(select(Delivery).where(Delivery.id.in_(ids))))


def record_outcome(session: Session, delivery_id: str, values: dict) -> None:
    """Writes an attempt's outcome on a delivery still marked ``pending``."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )

"""Every query of the notify service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from notify.models import FAILED, PENDING, Delivery


def add_deliveries(session: Session, rows: list[Delivery]) -> None:
    session.add_all(rows)


def deliveries_of_event(session: Session, source_event_id: str) -> list[Delivery]:
    query = select(Delivery).where(Delivery.source_event_id == source_event_id)
    return list(session.scalars(query.order_by(Delivery.created_at, Delivery.to)))


def due_for_retry(
    session: Session, now: dt.datetime, backoff, max_attempts: int, limit: int
) -> list[Delivery]:
    """Failed deliveries whose wait after their last attempt is over.

    ``backoff(n)`` is the wait after the n-th attempt; one condition per
    attempt count keeps the choice in SQL (and in the status index)."""
    waits = [
        and_(Delivery.attempts == n, Delivery.last_attempt_at <= now - backoff(n))
        for n in range(1, max_attempts)
    ]
    query = (
        select(Delivery)
        .where(Delivery.status == FAILED, or_(*waits))
        .order_by(Delivery.last_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(query))


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

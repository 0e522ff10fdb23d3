"""Relays outbox rows to the broker with publisher confirms.

Events that must not be lost are inserted by the use case in the same
transaction as the change (``emit``); after commit, the entrypoint calls
``relay`` and a 1-second timer catches anything left behind (a crash between
commit and publish). Delivery is at least once: every payload carries
``event_id`` so consumers can drop duplicates.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from kit.db import new_id, utcnow

log = logging.getLogger(__name__)


def emit(session, outbox_model, event_type: str, payload: dict) -> str:
    """Adds an event to the current transaction; returns its id."""
    event_id = new_id()
    body = dict(payload, event_id=event_id, occurred_at=utcnow().isoformat())
    session.add(outbox_model(id=event_id, event_type=event_type, payload=body))
    return event_id


def relay(session, outbox_model, dispatch, limit: int = 200) -> int:
    """Publishes pending rows in creation order; returns how many were sent.

    ``session`` must have no open change of its own (it is committed here)."""
    sent = 0
    query = (
        select(outbox_model)
        .where(outbox_model.published_at.is_(None))
        .order_by(outbox_model.created_at)
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = session.scalars(query).all()
    for row in rows:
        # dispatch waits for the broker's confirm; a failure leaves the
        # row (and the following ones) pending for the next relay
        try:
            dispatch(row.event_type, row.payload)
        except Exception:  # noqa: BLE001 - retried by the timer
            log.exception("outbox relay failed for %s", row.id)
            break
        row.published_at = utcnow()
        sent += 1
    session.commit()
    return sent

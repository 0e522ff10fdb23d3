"""Relays outbox rows to the broker with publisher confirms.

Events that must not be lost are inserted by the use case in the same
transaction as the change (``emit``); after commit, the entrypoint calls
``relay`` and a 1-second timer catches anything left behind (a crash between
commit and publish). Publication is mandatory (an event that reached no
queue stays pending: see ``relay``). Delivery is at least once: every payload carries
``event_id`` so consumers can drop duplicates.
"""

from __future__ import annotations

import logging
import os
import time

from nameko.amqp.publish import UndeliverableMessage
from prometheus_client import Counter, Gauge
from sqlalchemy import select

from kit.db import new_id, utcnow

log = logging.getLogger(__name__)

UNROUTABLE_WARN_SECONDS = float(os.environ.get("OUTBOX_UNROUTABLE_WARN_SECONDS", "60"))
UNROUTABLE = Counter(
    "outbox_unroutable_total",
    "Outbox publications refused because no queue is bound (mandatory): the row stays pending.",
    ["service", "event_type"],
)
UNROUTABLE_NOW = Gauge(
    "outbox_unroutable_now",
    "1 while the last publication of this event type reached no queue.",
    ["service", "event_type"],
)
DECLARED_BY_RELAY = Counter(
    "outbox_consumer_queues_declared_total",
    "Event types whose publication reached no queue until the relay declared their "
    "consumers' queues (the deploy step `python -m kit.topology declare` was skipped).",
    ["service", "event_type"],
)
_UNROUTABLE_SINCE: dict[tuple[str, str], float] = {}
_LAST_WARNED: dict[tuple[str, str], float] = {}
_FALLBACK_TRIED: set[tuple[str, str]] = set()


def emit(session, outbox_model, event_type: str, payload: dict) -> str:
    """Adds an event to the current transaction; returns its id."""
    event_id = new_id()
    body = dict(payload, event_id=event_id, occurred_at=utcnow().isoformat())
    session.add(outbox_model(id=event_id, event_type=event_type, payload=body))
    return event_id


def relay(
    session, outbox_model, dispatch, limit: int = 200, service: str = "", on_unroutable=None
) -> int:
    """Publishes pending rows in creation order; returns how many were sent.

    ``dispatch`` publishes with confirms and ``mandatory``: an event that no
    queue received raises ``UndeliverableMessage``; its row stays pending,
    the rows of that event type behind it wait too (order per type), and the
    other types keep flowing. ``outbox_unroutable_total`` counts the refused
    publications and ``outbox_unroutable_now{service,event_type}`` is 1 while a
    type has no queue; one WARNING per type per ``UNROUTABLE_WARN_SECONDS``.
    ``on_unroutable(event_type)`` (once per type and process) may declare the
    consumers' queues and return True: the row is then published again.
    Any other failure (broker away) stops this relay; the timer tries again.

    ``session`` must have no open change of its own (it is committed here)."""
    sent = 0
    blocked: set[str] = set()
    tried: set[str] = set()
    while True:
        rows = _pending(session, outbox_model, blocked, limit)
        stop = False
        new_block = False
        for row in rows:
            if row.event_type in blocked:
                continue
            tried.add(row.event_type)
            # dispatch waits for the broker's confirm
            try:
                try:
                    dispatch(row.event_type, row.payload)
                except UndeliverableMessage:
                    if not _declared_by_relay(service, row.event_type, on_unroutable):
                        raise
                    dispatch(row.event_type, row.payload)
            except UndeliverableMessage:
                blocked.add(row.event_type)
                new_block = True
                _unroutable(service, row.event_type)
                continue
            except Exception:  # noqa: BLE001 - retried by the timer
                log.exception("outbox relay failed for %s", row.id)
                stop = True
                break
            row.published_at = utcnow()
            sent += 1
        session.commit()
        if stop or not new_block or len(rows) < limit:
            break
    for event_type in tried - blocked:
        if (service, event_type) in _UNROUTABLE_SINCE:
            del _UNROUTABLE_SINCE[(service, event_type)]
            UNROUTABLE_NOW.labels(service=service, event_type=event_type).set(0)
            log.info("outbox: %s.%s events are routed again", service, event_type)
    return sent


def _pending(session, outbox_model, blocked: set[str], limit: int):
    query = (
        select(outbox_model)
        .where(outbox_model.published_at.is_(None))
        .order_by(outbox_model.created_at)
        .limit(limit)
    )
    if blocked:
        query = query.where(outbox_model.event_type.not_in(sorted(blocked)))
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).all()


def _declared_by_relay(service: str, event_type: str, on_unroutable) -> bool:
    if on_unroutable is None or (service, event_type) in _FALLBACK_TRIED:
        return False
    _FALLBACK_TRIED.add((service, event_type))
    try:
        declared = bool(on_unroutable(event_type))
    except Exception:  # noqa: BLE001 - stays pending, alarmed
        log.warning("outbox: declaring the consumers of %s.%s failed", service, event_type,
                    exc_info=True)
        return False
    if declared:
        DECLARED_BY_RELAY.labels(service=service, event_type=event_type).inc()
        log.warning("outbox: %s.%s had no queue: the relay declared its consumers' queues "
                    "(run python -m kit.topology declare at deploy)", service, event_type)
    return declared


def _unroutable(service: str, event_type: str) -> None:
    UNROUTABLE.labels(service=service, event_type=event_type).inc()
    UNROUTABLE_NOW.labels(service=service, event_type=event_type).set(1)
    now = time.monotonic()
    key = (service, event_type)
    _UNROUTABLE_SINCE.setdefault(key, now)
    if now - _LAST_WARNED.get(key, -UNROUTABLE_WARN_SECONDS) >= UNROUTABLE_WARN_SECONDS:
        _LAST_WARNED[key] = now
        log.warning(
            "outbox: %s.%s events reach no queue (unroutable for %.0f s): kept pending; "
            "declare the consumers' queues (python -m kit.topology declare)",
            service, event_type, now - _UNROUTABLE_SINCE[key],
        )

"""Relays outbox rows to the broker with publisher confirms.

Events that must not be lost are inserted by the use case in the same
transaction as the change (``emit``); after commit, the entrypoint calls
``relay`` and a 1-second timer catches anything left behind (a crash between
commit and publish). Publication is mandatory (an event that reached no
queue stays pending: see ``relay``). Delivery is at least once: every payload carries
``event_id`` so consumers can drop duplicates.

The types that no service consumes (``kit.events.UNCONSUMED``, e.g.
``files.file_stored``) get no row: kept for no one, they are announced once,
without publisher confirms, after the transaction that emitted them commits
(nothing if it rolls back). Their row, the relay's locked read, its update and
a confirmed publish were about a fifth of the files service's CPU per
transmission. A type that gains a consumer leaves ``UNCONSUMED`` and goes
through the outbox again (a test checks that every type is one or the other).
"""

from __future__ import annotations

import logging
import os
import time

from nameko.amqp.publish import UndeliverableMessage
from prometheus_client import Counter, Gauge
from sqlalchemy import event, select

from kit import events
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


EMITTED = "kit.outbox.emitted"  # session.info: this session wrote an outbox row
STAGED = "kit.outbox.staged"  # session.info: unconsumed events of the open transaction
COMMITTED = "kit.outbox.committed"  # … and those whose transaction committed


def emit(session, outbox_model, event_type: str, payload: dict) -> str:
    """Adds an event to the current transaction; returns its id. An event
    type no service consumes (for the session's ``info["service"]``, set by
    ``kit.db.Database``) is staged instead, for ``take_committed``."""
    event_id = new_id()
    body = dict(payload, event_id=event_id, occurred_at=utcnow().isoformat())
    if (session.info.get("service"), event_type) in events.UNCONSUMED:
        _stage(session, event_type, body)
    else:
        session.add(outbox_model(id=event_id, event_type=event_type, payload=body))
        if isinstance(session.info, dict):
            session.info[EMITTED] = True
    return event_id


def take_emitted(session) -> bool:
    """Whether this session wrote an outbox row since the last call (a
    session without ``info``, e.g. a test's mock, says yes)."""
    info = getattr(session, "info", None)
    if not isinstance(info, dict):
        return True
    return bool(info.pop(EMITTED, False))


def take_committed(session) -> list[tuple[str, dict]]:
    """The unconsumed events whose transaction committed, once each."""
    info = getattr(session, "info", None)
    committed = info.get(COMMITTED) if isinstance(info, dict) else None
    if not committed:
        return []
    info[COMMITTED] = []
    return committed


def _stage(session, event_type: str, body: dict) -> None:
    if not session.in_transaction():
        session.begin()  # so that its rollback is seen even if nothing was written
    if STAGED not in session.info:
        session.info[STAGED] = []
        session.info[COMMITTED] = []
        event.listen(session, "after_commit", _staged_committed)
        event.listen(session, "after_rollback", _staged_dropped)
    session.info[STAGED].append((event_type, body))


def _staged_committed(session) -> None:
    session.info[COMMITTED].extend(session.info[STAGED])
    session.info[STAGED] = []


def _staged_dropped(session) -> None:
    session.info[STAGED] = []


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
        log.warning(
            "outbox: declaring the consumers of %s.%s failed", service, event_type, exc_info=True
        )
        return False
    if declared:
        DECLARED_BY_RELAY.labels(service=service, event_type=event_type).inc()
        log.warning(
            "outbox: %s.%s had no queue: the relay declared its consumers' queues "
            "(run python -m kit.topology declare at deploy)",
            service,
            event_type,
        )
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
            service,
            event_type,
            now - _UNROUTABLE_SINCE[key],
        )

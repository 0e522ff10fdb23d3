"""Event handlers that never lose an event (docs/architecture.md §9).

Use ``from kit.handlers import event_handler`` instead of nameko's. Compared
with nameko's ``EventHandler`` (which acknowledges an event whose handler
raised, so it is gone):

- the handler's queue ``evt-<source>-<event_type>--<service>.<method>`` is a
  durable **quorum** queue (``x-queue-type: quorum``), bound to the
  ``<source>.events`` topic exchange; ``kit.topology`` declares the same
  queues at deploy time, before any consumer starts;
- a handler that raises has its event published again (same body, same
  headers, publisher confirms) to the service's retry exchange
  ``<service>.retry`` (headers exchange), which routes it by the header
  ``kit-retry-delay`` to ``<service>.retry.<ms>ms``, a quorum queue whose
  ``x-message-ttl`` is that delay and whose dead-letter exchange is the
  default exchange: when the delay is over the broker moves the event back to
  the handler's queue (the routing key is the handler queue's name). Only
  then is the original acknowledged (at least once; the inbox of the
  handler makes the side effect happen once);
- after the last delay (``EVENT_RETRY_DELAYS``, seconds, comma separated;
  default ``5,30,120,600,3600``: about 1 h 13 min of retries) the event is
  parked in ``<service>.deadletter`` (a quorum queue) with its reason in
  headers: ``x-kit-error`` (exception class and message), ``x-kit-handler``,
  ``x-kit-queue`` (where to replay it), ``x-kit-attempts``,
  ``x-kit-first-failure`` (ISO-8601 UTC); a body that cannot be decoded is
  parked there at once (``x-kit-error: decode error: …``).
  ``python -m kit.deadletters list|replay <service>`` inspects and replays;
- ``event_retries_total{service,handler}`` and
  ``events_parked_total{service,handler,reason}`` count them; each retry is
  one WARNING line, each parked event one ERROR line.

If the broker refuses the republish (link lost), the event is requeued as
before: it is not lost, and the broker redelivers it.
"""

from __future__ import annotations

import logging
import os
import traceback
from datetime import UTC, datetime
from functools import partial

from kombu import Exchange, Queue
from nameko.amqp.publish import get_producer
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.events import SERVICE_POOL
from nameko.events import EventHandler as NamekoEventHandler
from nameko.standalone.events import get_event_exchange
from prometheus_client import Counter

from kit.entrypoints import QueueConsumer  # acks that survive a lost link

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0, 3600.0)
QUORUM = {"x-queue-type": "quorum"}

H_ATTEMPTS = "x-kit-attempts"
H_FIRST_FAILURE = "x-kit-first-failure"
H_ERROR = "x-kit-error"
H_HANDLER = "x-kit-handler"
H_QUEUE = "x-kit-queue"
H_PARKED_AT = "x-kit-parked-at"
H_DELAY = "kit-retry-delay"

RETRIES = Counter(
    "event_retries_total",
    "Events whose handler failed and that were scheduled for another attempt.",
    ["service", "handler"],
)
PARKED = Counter(
    "events_parked_total",
    "Events parked in the service's dead-letter queue (handler failed its last "
    "attempt, or the body could not be decoded).",
    ["service", "handler", "reason"],
)


def retry_delays(config: dict | None = None) -> tuple[float, ...]:
    """The retry schedule in seconds (``EVENT_RETRY_DELAYS``: config, else env)."""
    raw = (config or {}).get("EVENT_RETRY_DELAYS") or os.environ.get("EVENT_RETRY_DELAYS")
    if not raw:
        return DEFAULT_RETRY_DELAYS
    if isinstance(raw, list | tuple):
        values = [float(v) for v in raw]
    else:
        values = [float(v) for v in str(raw).split(",") if v.strip()]
    if not values or any(not (0 < v < 86400 * 7) for v in values):
        raise ValueError(f"EVENT_RETRY_DELAYS: positive seconds below a week, got {raw!r}")
    return tuple(values)


def handler_queue_name(source: str, event_type: str, service: str, method: str) -> str:
    return f"evt-{source}-{event_type}--{service}.{method}"


def handler_queue(source: str, event_type: str, service: str, method: str, config=None) -> Queue:
    return Queue(
        handler_queue_name(source, event_type, service, method),
        exchange=get_event_exchange(source, config or {}),
        routing_key=event_type,
        durable=True,
        queue_arguments=dict(QUORUM),
    )


def retry_exchange(service: str) -> Exchange:
    return Exchange(f"{service}.retry", type="headers", durable=True)


def _ms(delay: float) -> str:
    return str(int(round(delay * 1000)))


def retry_queue(service: str, delay: float) -> Queue:
    ms = _ms(delay)
    return Queue(
        f"{service}.retry.{ms}ms",
        exchange=retry_exchange(service),
        durable=True,
        binding_arguments={"x-match": "all", H_DELAY: ms},
        queue_arguments=dict(
            QUORUM,
            **{
                "x-message-ttl": int(ms),
                "x-dead-letter-exchange": "",  # back by its routing key: the handler's queue
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",  # required by at-least-once
            },
        ),
    )


def deadletter_queue_name(service: str) -> str:
    return f"{service}.deadletter"


def deadletter_queue(service: str) -> Queue:
    return Queue(
        deadletter_queue_name(service),
        exchange=Exchange(""),
        routing_key=deadletter_queue_name(service),
        durable=True,
        queue_arguments=dict(QUORUM),
    )


def service_queues(service: str, config=None) -> list[Queue]:
    """The service's retry queues and dead-letter queue."""
    return [retry_queue(service, d) for d in retry_delays(config)] + [deadletter_queue(service)]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:500]


def republish(
    amqp_uri: str, message, *, exchange, routing_key: str, headers: dict, declare
) -> None:
    """Publishes ``message``'s raw body again (confirmed, persistent, mandatory)."""
    with get_producer(amqp_uri, confirms=True) as producer:
        producer.publish(
            message.body,
            exchange=exchange,
            routing_key=routing_key,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=2,
            mandatory=True,
            declare=declare,
            retry=True,
            retry_policy={"max_retries": 3},
        )


def park(
    container,
    message,
    *,
    queue: str,
    handler: str,
    error: str,
    attempts: int,
    first_failure: str | None,
    reason: str,
) -> None:
    service = container.service_name
    headers = dict(message.headers or {})
    headers.pop(H_DELAY, None)
    headers.update(
        {
            H_ERROR: error,
            H_HANDLER: handler,
            H_QUEUE: queue,
            H_ATTEMPTS: attempts,
            H_FIRST_FAILURE: first_failure or _now(),
            H_PARKED_AT: _now(),
        }
    )
    dlq = deadletter_queue(service)
    republish(
        container.config[AMQP_URI_CONFIG_KEY],
        message,
        exchange=Exchange(""),
        routing_key=dlq.name,
        headers=headers,
        declare=[dlq],
    )
    PARKED.labels(service=service, handler=handler, reason=reason).inc()
    log.error(
        "event parked in %s after %d attempt(s) (%s, from %s): %s",
        dlq.name,
        attempts,
        handler,
        queue,
        error,
    )


class EventQueueConsumer(QueueConsumer):
    """The queue consumer of event queues: a body that cannot be decoded is
    parked in the service's dead-letter queue (kombu's default logs it and
    the message is acknowledged and lost)."""

    def _queue_of(self, message) -> tuple[str, str]:
        tag = (message.delivery_info or {}).get("consumer_tag")
        for provider, consumer in list(self._consumers.items()):
            if tag in getattr(consumer, "_active_tags", {}).values():
                return provider.queue.name, provider.method_name
        return str((message.delivery_info or {}).get("routing_key")), "?"

    def on_decode_error(self, message, exc):
        queue, handler = self._queue_of(message)
        error = f"decode error: {_describe(exc)} (content type {message.content_type!r})"
        self.container.spawn_managed_thread(
            partial(self._park_and_ack, message, queue, handler, error),
            identifier="events.park_undecodable",
        )

    def _park_and_ack(self, message, queue, handler, error) -> None:
        try:
            park(
                self.container,
                message,
                queue=queue,
                handler=handler,
                error=error,
                attempts=0,
                first_failure=None,
                reason="decode",
            )
        except Exception:  # noqa: BLE001 - a managed thread that raises kills the container
            log.warning(
                "could not park an undecodable event from %s: requeued", queue, exc_info=True
            )
            self.requeue_message(message)
        else:
            self.ack_message(message)


class EventHandler(NamekoEventHandler):
    """nameko's ``EventHandler`` with a quorum queue, retries and a dead-letter
    queue (module docstring). Only the ``SERVICE_POOL`` handler type."""

    queue_consumer = EventQueueConsumer()

    def __init__(self, source_service, event_type, **kwargs):
        if kwargs.get("handler_type", SERVICE_POOL) != SERVICE_POOL:
            raise ValueError("kit.handlers.event_handler supports SERVICE_POOL handlers only")
        if kwargs.pop("requeue_on_error", False):
            raise ValueError("requeue_on_error loops hot: kit.handlers retries with backoff")
        super().__init__(source_service, event_type, **kwargs)

    def setup(self):
        super().setup()
        self.delays = retry_delays(self.container.config)
        self.queue = handler_queue(
            self.source_service,
            self.event_type,
            self.container.service_name,
            self.method_name,
            self.container.config,
        )

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        try:
            self._retry_or_park(message, exc_info[1])
        except Exception:  # noqa: BLE001 - the broker refused: keep the event in its queue
            log.warning(
                "could not schedule a retry of %s: requeued", self.queue.name, exc_info=True
            )
            self.queue_consumer.requeue_message(message)
        else:
            self.queue_consumer.ack_message(message)

    def _retry_or_park(self, message, exc: BaseException) -> None:
        service = self.container.service_name
        headers = dict(message.headers or {})
        attempts = int(headers.get(H_ATTEMPTS, 0)) + 1
        first = headers.get(H_FIRST_FAILURE) or _now()
        error = _describe(exc)
        if attempts > len(self.delays):
            park(
                self.container,
                message,
                queue=self.queue.name,
                handler=self.method_name,
                error=error,
                attempts=attempts,
                first_failure=first,
                reason="failed",
            )
            return
        delay = self.delays[attempts - 1]
        headers.update(
            {
                H_ATTEMPTS: attempts,
                H_FIRST_FAILURE: first,
                H_ERROR: error,
                H_HANDLER: self.method_name,
                H_QUEUE: self.queue.name,
                H_DELAY: _ms(delay),
            }
        )
        republish(
            self.container.config[AMQP_URI_CONFIG_KEY],
            message,
            exchange=retry_exchange(service),
            routing_key=self.queue.name,
            headers=headers,
            declare=[retry_queue(service, d) for d in self.delays],
        )
        RETRIES.labels(service=service, handler=self.method_name).inc()
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        log.warning(
            "event handler %s.%s failed (attempt %d of %d: %s%s): retried in %gs",
            service,
            self.method_name,
            attempts,
            len(self.delays) + 1,
            error,
            f" at {where[0].filename}:{where[0].lineno}" if where else "",
            delay,
        )


event_handler = EventHandler.decorator

"""RPC entrypoints whose calls expire (docs/architecture.md §9 "Calls expire").

Every caller (the gateway's client, ``kit.rpc.BoundedRpcProxy``) sends two
things with a request:

- the AMQP per-message ``expiration`` (milliseconds, a string): RabbitMQ
  discards the message once it has waited that long in the queue (when it
  reaches the head of the queue), so calls that pile up while a service is
  down do not outlive their callers;
- the header ``nameko.deadline``: the absolute deadline, in seconds since the
  epoch (a string, e.g. ``"1765090000.125"``). Clocks of the machines are
  assumed synchronised (NTP: milliseconds; timeouts are seconds).

The broker cannot see a message that was already delivered: a message that a
killed worker held comes back to the queue, and messages prefetched by a busy
worker wait in the process. So :class:`Rpc` checks the deadline again, twice:
when the message arrives (an expired call is acknowledged and dropped
before any worker is spawned), and when its worker starts (after waiting for
a free slot of the worker pool: the method raises :class:`CallExpired`
instead of running). Either way nothing is executed, no reply is sent (the
caller gave up), one INFO line is logged and ``rpc_expired_total{service,
method}`` is incremented.

The deadline is taken out of the worker's context data, so nameko does not
copy it onto the events this worker dispatches (an event is handled later,
under no caller's deadline); ``current_deadline(worker_ctx)`` gives it to
``kit.rpc.BoundedRpcProxy``, whose nested calls expire at the earlier of
their own timeout and their caller's deadline.

Malformed requests get an error reply at once instead of letting the caller
wait for its timeout: a body that cannot be decoded (not JSON, a content type
the service does not accept), a body that is not ``{"args": [...], "kwargs":
{...}}``, a deadline header that is not a number, or an unknown method are
answered with ``kit.errors.BadRequest`` (codes ``rpc.malformed_request``,
``rpc.method_not_found``) on the request's ``reply_to``/``correlation_id``,
and acknowledged. ``rpc_malformed_total{service}`` counts them.

The RPC queue ``rpc-<service>`` is a durable **quorum** queue
(``x-queue-type: quorum``; nameko declares a classic one): on a RabbitMQ
cluster it survives the loss of a node (its replicas elect a new leader,
queued calls are kept), and per-message expiration works on quorum queues
since RabbitMQ 3.10. Upgrading from a classic queue: RabbitMQ refuses to
redeclare a queue with another type (``PRECONDITION_FAILED``), so a service
that finds a classic ``rpc-<service>`` logs a WARNING and consumes it as it
is (still classic, still served); delete it once while no replica of the
service runs (``rabbitmqctl delete_queue rpc-<service> -p <vhost>``) and the
next start declares the quorum queue. ``rpc_queue_type(service)`` says which
one a running service uses.

Replies are published without publisher confirms (nameko waits for one per
reply): a reply goes to its caller's transient queue, and a confirm would
change nothing — the request is acknowledged either way and a reply lost
with the link leaves the caller to give up at its deadline — while waiting
for it cost the broker and the service a round trip on every call.

Use ``from kit.entrypoints import rpc`` instead of ``from nameko.rpc import
rpc``; every RPC of a service must use it (the RPC queue is consumed by one
``RpcConsumer`` class per service).
"""

from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any

import amqp.exceptions
from kombu import Queue
from kombu.utils.encoding import safe_repr
from nameko.amqp.publish import Publisher, get_connection
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_SERIALIZER,
    HEADER_PREFIX,
    LOGIN_METHOD_CONFIG_KEY,
    SERIALIZER_CONFIG_KEY,
)
from nameko.exceptions import ContainerBeingKilled, deserialize_to_instance, serialize
from nameko.messaging import QueueConsumer as NamekoQueueConsumer
from nameko.rpc import RPC_QUEUE_TEMPLATE, Responder, get_rpc_exchange
from nameko.rpc import Rpc as NamekoRpc
from nameko.rpc import RpcConsumer as NamekoRpcConsumer
from prometheus_client import Counter

from kit.errors import BadRequest, ServiceError

log = logging.getLogger(__name__)

DEADLINE_KEY = "deadline"
DEADLINE_HEADER = f"{HEADER_PREFIX}.{DEADLINE_KEY}"

QUORUM = {"x-queue-type": "quorum"}

MALFORMED_REQUEST = "rpc.malformed_request"
METHOD_NOT_FOUND = "rpc.method_not_found"

RPC_EXPIRED = Counter(
    "rpc_expired_total",
    "RPCs dropped unexecuted because their caller's deadline had passed, by service and method.",
    ["service", "method"],
)
RPC_REPLY_FAILED = Counter(
    "rpc_reply_failed_total",
    "RPCs executed whose reply could not be published (link to the broker lost, a "
    "RabbitMQ node going down): the caller gives up at its deadline.",
    ["service"],
)
RPC_MALFORMED = Counter(
    "rpc_malformed_total",
    "RPC requests answered with rpc.malformed_request or rpc.method_not_found, by service.",
    ["service"],
)


# --- deadlines -------------------------------------------------------------------


def format_deadline(deadline: float) -> str:
    """The header's value: seconds since the epoch, to the millisecond."""
    return f"{deadline:.3f}"


def parse_deadline(value: Any) -> float | None:
    """The header's value as seconds since the epoch; ``None`` when absent.
    Raises ``ValueError`` when it is not a finite number."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, bool):
        raise ValueError(f"not a deadline: {value!r}")
    deadline = float(value)
    if not math.isfinite(deadline):
        raise ValueError(f"not a deadline: {value!r}")
    return deadline


def call_deadline(timeout: float, parent: float | None = None, now: float | None = None) -> float:
    """The deadline of a call given its own ``timeout`` (seconds) and the
    deadline of the call it serves (``parent``, if any): the earlier one."""
    own = (time.time() if now is None else now) + float(timeout)
    return own if parent is None else min(own, parent)


def expiration_ms(remaining: float) -> str:
    """AMQP ``expiration`` for ``remaining`` seconds (> 0): whole milliseconds,
    rounded up, at least 1 (``"0"`` would expire at once if not consumed)."""
    return str(max(1, math.ceil(remaining * 1000)))


def current_deadline(worker_ctx: Any) -> float | None:
    """The deadline of the RPC this worker serves (``None`` for event handlers,
    timers, calls from clients that send none)."""
    return getattr(worker_ctx, DEADLINE_KEY, None)


@deserialize_to_instance
class CallExpired(ServiceError):
    """Raised instead of running a method whose caller's deadline has passed
    (never sent: nobody waits for the reply)."""

    status = 504
    default_code = "rpc.expired"
    default_message = "L'appel a expiré avant d'être traité."


def _method_of(message: Any) -> str:
    routing_key = (getattr(message, "delivery_info", None) or {}).get("routing_key") or ""
    return routing_key.rsplit(".", 1)[-1] or "?"


# --- replies to malformed requests ---------------------------------------------------


def reply_error(container: Any, message: Any, exc: ServiceError) -> bool:
    """Sends ``exc`` as the reply to ``message`` (JSON, as nameko replies);
    ``False`` when the message says nowhere to reply."""
    properties = getattr(message, "properties", None) or {}
    reply_to = properties.get("reply_to")
    if not reply_to:
        return False
    config = container.config
    publisher = _ReplyPublisher(
        config[AMQP_URI_CONFIG_KEY],
        ssl=config.get(AMQP_SSL_CONFIG_KEY),
        login_method=config.get(LOGIN_METHOD_CONFIG_KEY),
    )
    publisher.publish(
        {"result": None, "error": serialize(exc)},
        serializer="json",
        exchange=get_rpc_exchange(config),
        routing_key=reply_to,
        correlation_id=properties.get("correlation_id"),
    )
    return True


class _ReplyPublisher(Publisher):
    """Replies: no publisher confirm awaited (see the module's docstring)."""

    use_confirms = False


class _Responder(Responder):
    publisher_cls = _ReplyPublisher


# Everything that means "this message's link to the broker is gone".
LINK_FAILURES: tuple[type[BaseException], ...] = (OSError, amqp.exceptions.AMQPError)


class QueueConsumer(NamekoQueueConsumer):
    """nameko's queue consumer whose acknowledgements and requeues survive a
    lost link. nameko skips them when it already knows the connection is gone
    but only catches py-amqp's ``ConnectionError`` otherwise: a socket error
    (the connection reset by a RabbitMQ node going down) escapes, and an
    exception in a worker's ``handle_result`` kills the whole service. The
    broker redelivers what was not acknowledged, as after any lost link."""

    def ack_message(self, message):
        try:
            super().ack_message(message)
        except LINK_FAILURES as exc:
            log.info(
                "could not acknowledge a message (%s: %s): the broker redelivers it",
                type(exc).__name__,
                exc,
            )

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except LINK_FAILURES as exc:
            log.info(
                "could not requeue a message (%s: %s): the broker redelivers it",
                type(exc).__name__,
                exc,
            )


class RpcQueueConsumer(QueueConsumer):
    """The queue consumer of RPC queues: a request whose body cannot be
    decoded gets an error reply (kombu's default logs and acks it, and the
    caller waits for its timeout)."""

    def on_decode_error(self, message, exc):
        service = self.container.service_name
        log.warning(
            "malformed RPC request to %s.%s (%s, content type %r): %s; replying %s",
            service,
            _method_of(message),
            type(exc).__name__,
            getattr(message, "content_type", None),
            safe_repr(getattr(message, "body", b""))[:200],
            MALFORMED_REQUEST,
        )
        RPC_MALFORMED.labels(service=service).inc()
        error = BadRequest(MALFORMED_REQUEST, "La requête RPC est mal formée.")
        # the reply opens a publisher connection: not in the consumer's thread
        self.container.spawn_managed_thread(
            partial(self._reply_and_ack, message, error), identifier="rpc.malformed_reply"
        )

    def _reply_and_ack(self, message, error: ServiceError) -> None:
        try:
            reply_error(self.container, message, error)
        except Exception:  # noqa: BLE001 - a managed thread that raises kills the container
            log.warning("could not reply to a malformed RPC request", exc_info=True)
        finally:
            self.ack_message(message)


# --- the RPC queue ------------------------------------------------------------------

_QUEUE_TYPES: dict[str, str] = {}  # service -> "quorum" | "classic" (what setup chose)


def rpc_queue(service: str, config: dict, quorum: bool = True) -> Queue:
    """``rpc-<service>``, bound to the RPC exchange by ``<service>.*``: durable,
    a quorum queue unless ``quorum=False`` (a classic queue left by an older version)."""
    return Queue(
        RPC_QUEUE_TEMPLATE.format(service),
        exchange=get_rpc_exchange(config),
        routing_key=f"{service}.*",
        durable=True,
        queue_arguments=dict(QUORUM) if quorum else None,
    )


def declare_rpc_queue(service: str, config: dict) -> Queue:
    """Declares ``rpc-<service>`` as a quorum queue and returns its definition;
    if a classic queue of that name exists (``PRECONDITION_FAILED``), logs a
    WARNING and returns the classic definition, so that the service consumes
    the queue it finds (module docstring: upgrading). If the broker cannot be
    reached, the quorum definition is returned (the consumer declares it when
    it connects)."""
    queue = rpc_queue(service, config)
    try:
        with get_connection(
            config[AMQP_URI_CONFIG_KEY],
            ssl=config.get(AMQP_SSL_CONFIG_KEY),
            login_method=config.get(LOGIN_METHOD_CONFIG_KEY),
        ) as connection:
            channel = connection.channel()
            try:
                queue(channel).declare()
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - closed by the broker already
                    pass
    except amqp.exceptions.PreconditionFailed as exc:
        log.warning(
            "%s exists as a classic queue: consuming it as it is. To make it a quorum "
            "queue (it survives the loss of a RabbitMQ node), delete it once while no "
            "replica of %s runs (rabbitmqctl delete_queue %s -p <vhost>) and start "
            "again (%s)",
            queue.name,
            service,
            queue.name,
            exc,
        )
        _QUEUE_TYPES[service] = "classic"
        return rpc_queue(service, config, quorum=False)
    except Exception:  # noqa: BLE001 - the broker is not there yet: the consumer retries
        log.warning("could not declare %s before starting", queue.name, exc_info=True)
    _QUEUE_TYPES[service] = "quorum"
    return queue


def rpc_queue_type(service: str) -> str | None:
    """``"quorum"`` or ``"classic"``: the RPC queue this process's ``service``
    consumes (``None`` before it was set up)."""
    return _QUEUE_TYPES.get(service)


class RpcConsumer(NamekoRpcConsumer):
    """nameko's ``RpcConsumer`` on :class:`RpcQueueConsumer`, consuming a
    quorum ``rpc-<service>`` (:func:`declare_rpc_queue`); an unknown method is
    a typed ``BadRequest``."""

    queue_consumer = RpcQueueConsumer()

    def setup(self):
        if self.queue is None:
            self.queue = declare_rpc_queue(self.container.service_name, self.container.config)
            self.queue_consumer.register_provider(self)
            self._registered = True

    def handle_result(self, message, result, exc_info):
        """nameko's: the reply published, then the request acknowledged. A
        reply that cannot be published (the link lost, a RabbitMQ node going
        down: kombu gave up, or the broker nacked it) is logged and counted,
        and the request acknowledged: the work is done, its caller gives up at
        its deadline (nameko lets the error kill the whole service)."""
        try:
            config = self.container.config
            responder = _Responder(
                config[AMQP_URI_CONFIG_KEY],
                get_rpc_exchange(config),
                config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER),
                message,
                ssl=config.get(AMQP_SSL_CONFIG_KEY),
                login_method=config.get(LOGIN_METHOD_CONFIG_KEY),
            )
            result, exc_info = responder.send_response(result, exc_info)
            self.queue_consumer.ack_message(message)
            return result, exc_info
        except Exception as exc:  # noqa: BLE001 - an exception here kills the container
            service = self.container.service_name
            RPC_REPLY_FAILED.labels(service=service).inc()
            log.warning(
                "could not send the reply of %s.%s (%s: %s): its caller gives up at its deadline",
                service,
                _method_of(message),
                type(exc).__name__,
                exc,
            )
            self.queue_consumer.ack_message(message)
            return result, exc_info

    def get_provider_for_method(self, routing_key):
        service_name = self.container.service_name
        for provider in self._providers:
            if routing_key == f"{service_name}.{provider.method_name}":
                return provider
        RPC_MALFORMED.labels(service=service_name).inc()
        method = routing_key.split(".")[-1]
        raise BadRequest(METHOD_NOT_FOUND, f"Méthode RPC inconnue : {method}.", {"method": method})

    def drop_expired(self, message, deadline: float, where: str) -> None:
        """Acknowledge a call whose deadline has passed, without replying."""
        service = self.container.service_name
        method = _method_of(message)
        RPC_EXPIRED.labels(service=service, method=method).inc()
        log.info(
            "dropped an expired call to %s.%s %s: its caller's deadline passed %.3f s ago",
            service,
            method,
            where,
            time.time() - deadline,
            extra={"rpc_method": method, "expired": True},
        )
        self.queue_consumer.ack_message(message)


class Rpc(NamekoRpc):
    """nameko's ``@rpc`` entrypoint, with deadlines and malformed requests
    answered at once (module docstring)."""

    rpc_consumer = RpcConsumer()

    def __init__(self, expected_exceptions=(), **kwargs):
        if not isinstance(expected_exceptions, tuple):
            expected_exceptions = (expected_exceptions,)
        super().__init__(expected_exceptions=expected_exceptions + (CallExpired,), **kwargs)

    def handle_message(self, body, message):
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("args"), list | tuple)
            or not isinstance(body.get("kwargs"), dict)
        ):
            RPC_MALFORMED.labels(service=self.container.service_name).inc()
            raise BadRequest(
                MALFORMED_REQUEST,
                'Le corps d\'une requête RPC doit être {"args": [...], "kwargs": {...}}.',
            )
        args, kwargs = body["args"], body["kwargs"]
        self.check_signature(args, kwargs)

        context_data = self.unpack_message_headers(message)
        try:
            deadline = parse_deadline(context_data.pop(DEADLINE_KEY, None))
        except (TypeError, ValueError):
            RPC_MALFORMED.labels(service=self.container.service_name).inc()
            raise BadRequest(
                MALFORMED_REQUEST,
                "L'échéance d'une requête RPC doit être un nombre de secondes depuis l'époque.",
            ) from None
        if deadline is not None and time.time() >= deadline:
            self.rpc_consumer.drop_expired(message, deadline, "on arrival")
            return

        handle_result = partial(self.handle_result, message)
        try:
            # may wait for a free slot of the worker pool; the worker starts
            # later (eventlet schedules it), after the guard below is in place
            worker_ctx = self.container.spawn_worker(
                self, args, kwargs, context_data=context_data, handle_result=handle_result
            )
        except ContainerBeingKilled:
            self.rpc_consumer.requeue_message(message)
            return
        if deadline is not None:
            setattr(worker_ctx, DEADLINE_KEY, deadline)
            self._guard(worker_ctx, deadline)

    def _guard(self, worker_ctx, deadline: float) -> None:
        """Makes this worker's method refuse to run once ``deadline`` has passed
        (an attribute of the worker's own service instance: nothing shared)."""
        service = worker_ctx.service
        method = getattr(service, self.method_name)

        def guarded(*args, **kwargs):
            if time.time() >= deadline:
                raise CallExpired(details={"deadline": deadline})
            return method(*args, **kwargs)

        setattr(service, self.method_name, guarded)

    def handle_result(self, message, worker_ctx, result, exc_info):
        if exc_info is not None and isinstance(exc_info[1], CallExpired):
            self.rpc_consumer.drop_expired(
                message, current_deadline(worker_ctx) or 0.0, "when its worker started"
            )
            return result, exc_info
        return super().handle_result(message, worker_ctx, result, exc_info)


rpc = Rpc.decorator

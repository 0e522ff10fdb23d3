"""A lean RPC client for the gateway, speaking nameko's wire format on py-amqp.

Why it exists: a pooled ``ClusterRpcProxy`` costs the gateway more CPU per
call than the call itself needs (docs/stack-pitfalls.md §12 figures: ~460 req/s through the
gateway with it, ~520-560 with a minimal py-amqp client). Per call nameko
acquires a kombu producer from a pool, publishes with a publisher confirm (one
more round trip, only to learn whether the message was routed), builds a
worker context, an eventlet event and kombu message objects. This client does
what a request/reply needs and nothing else:

- one connection and one channel per client, no heartbeats (the broker sends
  nothing on an idle connection, so a client may sit in the pool for hours);
- one exclusive, auto-delete reply queue per connection, bound to the RPC
  exchange with its own name as routing key, consumed without acks;
- requests published with ``mandatory=True`` and no confirm: an unroutable
  message (no queue bound: the service does not exist) comes back as a
  ``basic.return`` on the channel before anything else we could wait for,
  and the call raises ``UnknownService`` at once;
- replies matched by correlation id; late replies of calls that timed out are
  read and dropped by the next call on the same client.

The message is what nameko's ``MethodProxy`` sends: exchange ``nameko-rpc``
(topic, durable), routing key ``<service>.<method>``, body
``{"args": [...], "kwargs": {...}}`` serialised by kombu's ``json`` (the
serializer nameko uses by default; datetimes etc. get kombu's envelopes both
ways), persistent, context data as ``nameko.<key>`` headers plus
``nameko.call_id_stack``. Replies ``{"result": ..., "error": ...}`` are decoded
by kombu and errors rebuilt with ``nameko.exceptions.deserialize``, so
``kit.errors`` classes arrive typed, exactly as with nameko's proxy.

Calls expire (docs/architecture.md §9, ``kit.entrypoints``): each request carries the
AMQP ``expiration`` (the milliseconds left of the call's timeout when it is
published) and the ``nameko.deadline`` header (its absolute deadline, epoch
seconds), so a service that comes back after its callers gave up drops their
calls unexecuted.

A service with no consumer fails fast: before publishing, the client looks
up the consumer count of ``rpc-<service>`` in a per-process cache
(:class:`ConsumerCounts`, refreshed at most every ``CONSUMER_CHECK_TTL``
seconds by a passive ``queue.declare`` on a side channel of the client's own
connection: one round trip per service per second and per process); with no
consumer (or no queue) the call raises :class:`NoConsumer` without
publishing anything.

A client is confined to one thread at a time (the pool in ``gateway.rpc``
lends it) and never shared across a fork. Failures of the link raise
:class:`LinkError` (a ``ConnectionError``); before publishing, a client whose
connection died while idle (broker restart, cut link) reconnects once, so
only a broker that cannot be reached again fails the call. A link lost
*after* publishing is not retried, and raises :class:`OutcomeUnknown`: the
service may have acted already (or may still, before the deadline).

A RabbitMQ cluster: ``AMQP_URI`` may name several nodes, ``;``-separated
(kombu's failover list, which nameko's own connections read the same way):
``amqp://u:p@rabbit-1/vh;amqp://u:p@rabbit-2/vh;amqp://u:p@rabbit-3/vh``. A
client connects to the first node that answers, starting with the one it was
last connected to; a node whose connection failed (or that refused one) is
tried last by every client of the process for ``NODE_DOWN_SECONDS``, so that
after losing a node the clients do not each wait for it first. Each attempt
is bounded by ``connect_timeout``; ``LinkError`` only when no node answers.
The reply queue (exclusive, auto-delete) goes with its connection and is
declared again on the new node.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
import uuid
from typing import Any

import amqp
import amqp.exceptions
import kombu.serialization
from kombu.utils.url import parse_url
from nameko.constants import HEADER_PREFIX, PERSISTENT
from nameko.exceptions import RpcTimeout, UnknownService, deserialize

from kit.entrypoints import DEADLINE_HEADER, expiration_ms, format_deadline

log = logging.getLogger(__name__)

RPC_EXCHANGE = "nameko-rpc"
SERIALIZER = "json"
ACCEPT = ("application/json",)
# nameko's standalone proxies send this call id prefix (service "standalone_rpc_proxy",
# entrypoint "call"); we keep it so that services see the same call id stack.
CALL_ID_PREFIX = "standalone_rpc_proxy.call."
CALL_ID_STACK_HEADER = f"{HEADER_PREFIX}.call_id_stack"

# Everything that means "this connection can no longer be trusted".
_LINK_FAILURES: tuple[type[BaseException], ...] = (
    OSError,  # socket errors, EOF ("Server unexpectedly closed connection")
    amqp.exceptions.AMQPError,  # connection/channel closed, unexpected frames
)

# Seconds to finish reading a frame that was only partly there when we looked.
_LEFTOVER_READ_TIMEOUT = 0.05


# Seconds a node whose connection failed is tried after the others (per process).
NODE_DOWN_SECONDS = 10.0

# Seconds a consumer count is trusted (per process and per service).
CONSUMER_CHECK_TTL = 1.0
RPC_QUEUE_TEMPLATE = "rpc-{}"  # nameko.rpc's


class LinkError(ConnectionError):
    """The connection to the broker failed or could not be (re-)established."""


class OutcomeUnknown(LinkError):
    """The link failed after the request was published: the service may have
    acted, or may still act before the call's deadline."""


class NoConsumer(UnknownService):
    """No process consumes the service's RPC queue (or the queue does not
    exist): nothing was published."""


class ConsumerCounts:
    """Consumer counts of RPC queues, shared by the clients of one process:
    ``{(broker, vhost, queue): (monotonic time checked, count)}``. A missing
    queue counts 0. Plain dict reads and writes: no lock on the hot path (two
    threads refreshing the same entry at once only cost a second look-up)."""

    def __init__(self, ttl: float = CONSUMER_CHECK_TTL) -> None:
        self.ttl = ttl
        self._counts: dict[tuple[str, str, str], tuple[float, int]] = {}
        self.checks = 0  # passive declares sent (tests, figures)

    def fresh(self, key: tuple[str, str, str], now: float) -> int | None:
        entry = self._counts.get(key)
        if entry is None or now - entry[0] > self.ttl:
            return None
        return entry[1]

    def put(self, key: tuple[str, str, str], count: int, now: float) -> None:
        self._counts[key] = (now, count)

    def forget(self, key: tuple[str, str, str] | None = None) -> None:
        if key is None:
            self._counts.clear()
        else:
            self._counts.pop(key, None)


consumer_counts = ConsumerCounts()
_consumer_counts_pid = os.getpid()
_consumer_counts_lock = threading.Lock()


def _process_consumer_counts() -> ConsumerCounts:
    """The cache of this process (a fresh one after a fork)."""
    global consumer_counts, _consumer_counts_pid
    if _consumer_counts_pid != os.getpid():
        with _consumer_counts_lock:
            if _consumer_counts_pid != os.getpid():
                consumer_counts = ConsumerCounts(consumer_counts.ttl)
                _consumer_counts_pid = os.getpid()
    return consumer_counts


def broker_uris(uri: str) -> list[str]:
    """The URIs of an ``AMQP_URI`` naming one node or several (``;``-separated,
    as kombu reads a failover list)."""
    uris = [part.strip() for part in uri.split(";") if part.strip()]
    if not uris:
        raise ValueError("an empty AMQP URI")
    return uris


def connection_params_list(uri: str) -> list[dict[str, Any]]:
    """py-amqp ``Connection`` arguments for each node of an ``AMQP_URI``, in order."""
    return [connection_params(one) for one in broker_uris(uri)]


class _NodesDown:
    """Nodes (``host:port``) whose connection failed lately, shared by the
    clients of a process: ``{host: monotonic time until which it is tried last}``."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def mark(self, host: str, seconds: float = NODE_DOWN_SECONDS) -> None:
        self._until[host] = time.monotonic() + seconds

    def clear(self, host: str) -> None:
        self._until.pop(host, None)

    def is_down(self, host: str, now: float | None = None) -> bool:
        until = self._until.get(host)
        return until is not None and (time.monotonic() if now is None else now) < until


nodes_down = _NodesDown()


def connection_params(uri: str) -> dict[str, Any]:
    """py-amqp ``Connection`` arguments from an AMQP URI, read as kombu reads it
    (one node: the first of a ``;``-separated list)."""
    uri = broker_uris(uri)[0]
    parts = parse_url(uri)
    transport = parts.get("transport") or "amqp"
    if transport not in ("amqp", "amqps", "pyamqp"):
        raise ValueError(f"unsupported AMQP URI scheme: {transport}")
    ssl = transport == "amqps" or str(parts.get("ssl", "")).lower() in ("1", "true", "yes")
    port = parts.get("port") or (5671 if ssl else 5672)
    return {
        "host": f"{parts.get('hostname') or 'localhost'}:{port}",
        "userid": parts.get("userid") or "guest",
        "password": parts.get("password") or "guest",
        "virtual_host": parts.get("virtual_host") or "/",
        "ssl": ssl,
    }


def _readable(sock: socket.socket) -> bool:
    """Whether something (data, EOF or an error) waits on ``sock``, without blocking."""
    pending = getattr(sock, "pending", None)  # bytes already decrypted by TLS
    if pending is not None and pending():
        return True
    poll = getattr(select, "poll", None)  # absent under eventlet's monkey-patching
    if poll is not None:
        poller = poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


class AmqpRpcClient:
    """``call(service, method, args, kwargs, context)`` over one connection.

    ``timeout`` bounds the wait for each reply (``RpcTimeout``);
    ``connect_timeout`` bounds connecting, the handshake and every write.
    """

    def __init__(
        self,
        uri: str,
        timeout: float,
        connect_timeout: float = 5.0,
        exchange: str = RPC_EXCHANGE,
    ):
        self.nodes = connection_params_list(uri)
        self.params = self.nodes[0]  # the node connected to (or tried) last
        self._preferred = 0
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.exchange = exchange
        self.pid = os.getpid()
        self.connection: amqp.Connection | None = None
        self.channel: amqp.Channel | None = None
        self.reply_to = ""
        self.connects = 0
        # the call in flight and what arrived for it
        self._waiting: str | None = None
        self._reply: amqp.Message | None = None
        self._returned = False
        # a side channel for consumer counts: a passive declare of a missing
        # queue closes its channel, which must not be the one replies come on
        self._check_channel: tuple[amqp.Connection | None, amqp.Channel | None] = (None, None)
        self.check_consumers = True
        self.connect()

    # --- connection ------------------------------------------------------------

    def _node_order(self) -> list[int]:
        """Indexes of the nodes to try: from the preferred one on, those that
        failed lately last."""
        count = len(self.nodes)
        ring = [(self._preferred + i) % count for i in range(count)]
        now = time.monotonic()
        return sorted(ring, key=lambda i: nodes_down.is_down(self.nodes[i]["host"], now))

    def connect(self) -> None:
        """Open the connection, the channel and the reply queue on the first
        node that answers (closing any old connection)."""
        self._discard_connection()
        errors = []
        for index in self._node_order():
            params = self.nodes[index]
            try:
                self._connect_to(params)
            except LinkError as exc:
                nodes_down.mark(params["host"])
                errors.append(f"{params['host']}: {exc.__cause__ or exc}")
                continue
            nodes_down.clear(params["host"])
            if index != self._preferred and self.connects > 1:
                log.info("RPC client connected to another node of the cluster: %s", params["host"])
            self._preferred, self.params = index, params
            return
        raise LinkError(f"cannot connect to the broker: {'; '.join(errors)}")

    def _connect_to(self, params: dict[str, Any]) -> None:
        connection = amqp.Connection(
            **params,
            connect_timeout=self.connect_timeout,
            write_timeout=self.connect_timeout,
            heartbeat=0,
            client_properties={"connection_name": f"gateway rpc (pid {self.pid})"},
        )
        # No connection.blocked notices: nothing here would act on them, and
        # asking for them makes py-amqp poll the socket before every publish.
        connection.negotiate_capabilities = dict(
            connection.negotiate_capabilities, **{"connection.blocked": False}
        )
        try:
            connection.connect()
            channel = connection.channel()
            channel.events["basic_return"].add(self._on_return)
            channel.exchange_declare(self.exchange, "topic", durable=True, auto_delete=False)
            routing_key = str(uuid.uuid4())
            queue = f"rpc.reply-gateway-{routing_key}"
            channel.queue_declare(queue, exclusive=True, auto_delete=True)
            channel.queue_bind(queue, self.exchange, routing_key)
            channel.basic_consume(queue, callback=self._on_reply, no_ack=True)
        except _LINK_FAILURES as exc:
            _collect(connection)
            raise LinkError(f"cannot connect to the broker: {exc}") from exc
        except BaseException:
            _collect(connection)
            raise
        self.connection, self.channel, self.reply_to = connection, channel, routing_key
        self.connects += 1

    def usable(self) -> bool:
        connection = self.connection
        return connection is not None and bool(connection.connected)

    def _discard_connection(self) -> None:
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            _collect(connection)

    def close(self) -> None:
        """Close the connection politely (bounded by ``connect_timeout``)."""
        connection, self.connection, self.channel = self.connection, None, None
        if connection is None:
            return
        try:
            if connection.connected:
                connection.transport.sock.settimeout(self.connect_timeout)
                connection.close()
        except Exception:  # noqa: BLE001 - broken already: just release the socket
            log.debug("error while closing an RPC connection", exc_info=True)
        finally:
            _collect(connection)

    def _read_leftovers(self) -> None:
        """Consume what arrived while idle: late replies (dropped), or the news
        that the connection is gone (EOF, a broker's connection.close)."""
        connection = self.connection
        sock = connection.transport.sock
        while _readable(sock):
            try:
                connection.drain_events(timeout=_LEFTOVER_READ_TIMEOUT)
            except TimeoutError:  # a partial frame: finished by the next read
                return

    def _ensure_link(self) -> None:
        """A live connection before publishing: reconnect once if it died."""
        if self.usable():
            try:
                self._read_leftovers()
                return
            except _LINK_FAILURES:
                log.info("RPC connection lost while idle; reconnecting", exc_info=True)
                nodes_down.mark(self.params["host"])
        self.connect()

    # --- calls ---------------------------------------------------------------------

    def _on_reply(self, message: amqp.Message) -> None:
        if message.properties.get("correlation_id") == self._waiting:
            self._reply = message
        else:
            log.debug("dropping a reply nobody waits for (a call that timed out)")

    def _on_return(self, exc, exchange, routing_key, message: amqp.Message) -> None:
        if message.properties.get("correlation_id") == self._waiting:
            self._returned = True

    def _message(
        self, args: tuple, kwargs: dict, context: dict, correlation_id: str, deadline: float
    ):
        content_type, content_encoding, body = kombu.serialization.dumps(
            {"args": args, "kwargs": kwargs}, SERIALIZER
        )
        headers = {
            f"{HEADER_PREFIX}.{key}": value for key, value in context.items() if value is not None
        }
        headers[CALL_ID_STACK_HEADER] = [f"{CALL_ID_PREFIX}{uuid.uuid4()}"]
        headers[DEADLINE_HEADER] = format_deadline(deadline)
        return amqp.Message(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            application_headers=headers,
            delivery_mode=PERSISTENT,
            priority=0,
            correlation_id=correlation_id,
            reply_to=self.reply_to,
        )

    def _publish(self, routing_key: str, message: amqp.Message, deadline: float) -> None:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise RpcTimeout(self.timeout)
        message.properties["expiration"] = expiration_ms(remaining)
        self.channel.basic_publish(message, self.exchange, routing_key, mandatory=True)

    # --- consumer counts -------------------------------------------------------------

    def _cache_key(self, service: str) -> tuple[str, str, str]:
        # the cluster, not the node: every node gives the same count
        broker = ";".join(node["host"] for node in self.nodes)
        vhost = str(self.params.get("virtual_host", "/"))
        return (broker, vhost, RPC_QUEUE_TEMPLATE.format(service))

    def consumer_count(self, service: str) -> int:
        """Consumers of ``rpc-<service>`` now (0 if the queue does not exist),
        by a passive declare on the side channel; the cache is updated."""
        queue = RPC_QUEUE_TEMPLATE.format(service)
        connection = self.connection
        owner, channel = self._check_channel
        if owner is not connection or channel is None or not channel.is_open:
            channel = connection.channel()
            self._check_channel = (connection, channel)
        cache = _process_consumer_counts()
        cache.checks += 1
        try:
            _name, _messages, count = channel.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound:
            # the broker closed the side channel; the next check opens another
            self._check_channel = (connection, None)
            count = 0
        cache.put(self._cache_key(service), count, time.monotonic())
        return count

    def _has_consumer(self, service: str) -> bool:
        key = self._cache_key(service)
        count = _process_consumer_counts().fresh(key, time.monotonic())
        if count is None:
            count = self.consumer_count(service)
        return count > 0

    # --- calls -------------------------------------------------------------------

    def call(
        self,
        service: str,
        method: str,
        args: tuple | list = (),
        kwargs: dict | None = None,
        context: dict[str, Any] | None = None,
    ) -> Any:
        """``service.method(*args, **kwargs)``; its result, or its error raised.

        Raises ``NoConsumer`` (an ``UnknownService``) without publishing when
        nobody consumes the service's queue, ``UnknownService`` when no queue
        is bound for ``service``, ``RpcTimeout`` after ``timeout`` seconds
        without a reply, ``LinkError`` when the broker cannot be reached before
        publishing, ``OutcomeUnknown`` when the link fails after publishing,
        and the service's own (deserialised) error otherwise.
        """
        if self.pid != os.getpid():
            raise RuntimeError("an RPC client cannot be used across a fork")
        deadline = time.time() + self.timeout
        wait_until = time.monotonic() + self.timeout
        correlation_id = str(uuid.uuid4())
        routing_key = f"{service}.{method}"
        published = False
        try:
            self._ensure_link()
            if self.check_consumers and not self._has_consumer(service):
                raise NoConsumer(service)
            message = self._message(
                tuple(args), dict(kwargs or {}), context or {}, correlation_id, deadline
            )
            self._waiting, self._reply, self._returned = correlation_id, None, False
            try:
                self._publish(routing_key, message, deadline)
            except _LINK_FAILURES:
                # Nothing reached the broker whole (a failed write leaves at most a
                # partial frame, which the broker discards): one new connection.
                log.info("RPC publish failed; reconnecting once", exc_info=True)
                nodes_down.mark(self.params["host"])
                self.connect()
                message.properties["reply_to"] = self.reply_to
                self._publish(routing_key, message, deadline)
            published = True
            reply = self._wait(service, wait_until)
        except _LINK_FAILURES as exc:
            if not isinstance(exc, LinkError):  # a LinkError marked its nodes already
                nodes_down.mark(self.params["host"])
            self._discard_connection()
            if published:
                raise OutcomeUnknown(str(exc) or type(exc).__name__) from exc
            if isinstance(exc, LinkError):
                raise
            raise LinkError(str(exc) or type(exc).__name__) from exc
        finally:
            self._waiting = None
            self._reply = None
        return self._result(reply)

    def _wait(self, service: str, deadline: float) -> amqp.Message:
        connection = self.connection
        while True:
            if self._reply is not None:
                return self._reply
            if self._returned:
                _process_consumer_counts().forget(self._cache_key(service))
                raise UnknownService(service)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcTimeout(self.timeout)
            try:
                connection.drain_events(timeout=remaining)
            except TimeoutError:
                # py-amqp keeps a partly read frame for the next read: the
                # connection stays usable and a late reply is dropped later.
                if self._reply is None and not self._returned:
                    raise RpcTimeout(self.timeout) from None

    @staticmethod
    def _result(message: amqp.Message) -> Any:
        properties = message.properties
        body = kombu.serialization.loads(
            message.body,
            properties.get("content_type"),
            properties.get("content_encoding"),
            accept=ACCEPT,
        )
        error = body.get("error")
        if error:
            raise deserialize(error)
        return body["result"]


def _collect(connection: amqp.Connection) -> None:
    """Release a connection's socket and channels without talking to the broker."""
    try:
        connection.collect()
    except Exception:  # noqa: BLE001 - nothing more to release
        log.debug("error while collecting an RPC connection", exc_info=True)

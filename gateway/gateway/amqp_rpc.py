"""A lean RPC client for the gateway, speaking nameko's wire format on py-amqp.

Why it exists: a pooled ``ClusterRpcProxy`` costs the gateway more CPU per
call than the call itself needs (STACK.md figures: ~460 req/s through the
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

A client is confined to one thread at a time (the pool in ``gateway.rpc``
lends it) and never shared across a fork. Failures of the link raise
:class:`LinkError` (a ``ConnectionError``); before publishing, a client whose
connection died while idle (broker restart, cut link) reconnects once, so
only a broker that cannot be reached again fails the call. A link lost
*after* publishing is not retried: the service may have acted already.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
import uuid
from typing import Any

import amqp
import amqp.exceptions
import kombu.serialization
from kombu.utils.url import parse_url
from nameko.constants import HEADER_PREFIX, PERSISTENT
from nameko.exceptions import RpcTimeout, UnknownService, deserialize

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


class LinkError(ConnectionError):
    """The connection to the broker failed or could not be (re-)established."""


def connection_params(uri: str) -> dict[str, Any]:
    """py-amqp ``Connection`` arguments from an AMQP URI, read as kombu reads it."""
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
        self.params = connection_params(uri)
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
        self.connect()

    # --- connection ------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection, the channel and the reply queue (closing any old one)."""
        self._discard_connection()
        connection = amqp.Connection(
            **self.params,
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

    def _message(self, args: tuple, kwargs: dict, context: dict, correlation_id: str):
        content_type, content_encoding, body = kombu.serialization.dumps(
            {"args": args, "kwargs": kwargs}, SERIALIZER
        )
        headers = {
            f"{HEADER_PREFIX}.{key}": value for key, value in context.items() if value is not None
        }
        headers[CALL_ID_STACK_HEADER] = [f"{CALL_ID_PREFIX}{uuid.uuid4()}"]
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

    def _publish(self, routing_key: str, message: amqp.Message) -> None:
        self.channel.basic_publish(message, self.exchange, routing_key, mandatory=True)

    def call(
        self,
        service: str,
        method: str,
        args: tuple | list = (),
        kwargs: dict | None = None,
        context: dict[str, Any] | None = None,
    ) -> Any:
        """``service.method(*args, **kwargs)``; its result, or its error raised.

        Raises ``UnknownService`` when no queue is bound for ``service``,
        ``RpcTimeout`` after ``timeout`` seconds without a reply, ``LinkError``
        when the broker cannot be reached, and the service's own (deserialised)
        error otherwise.
        """
        if self.pid != os.getpid():
            raise RuntimeError("an RPC client cannot be used across a fork")
        correlation_id = str(uuid.uuid4())
        routing_key = f"{service}.{method}"
        try:
            self._ensure_link()
            message = self._message(tuple(args), dict(kwargs or {}), context or {}, correlation_id)
            self._waiting, self._reply, self._returned = correlation_id, None, False
            try:
                self._publish(routing_key, message)
            except _LINK_FAILURES:
                # Nothing reached the broker whole (a failed write leaves at most a
                # partial frame, which the broker discards): one new connection.
                log.info("RPC publish failed; reconnecting once", exc_info=True)
                self.connect()
                message.properties["reply_to"] = self.reply_to
                self._publish(routing_key, message)
            reply = self._wait(service)
        except _LINK_FAILURES as exc:
            self._discard_connection()
            if isinstance(exc, LinkError):
                raise
            raise LinkError(str(exc) or type(exc).__name__) from exc
        finally:
            self._waiting = None
            self._reply = None
        return self._result(reply)

    def _wait(self, service: str) -> amqp.Message:
        connection = self.connection
        deadline = time.monotonic() + self.timeout
        while True:
            if self._reply is not None:
                return self._reply
            if self._returned:
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

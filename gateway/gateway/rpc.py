"""RPC clients for views: pooled, time-bounded, carrying the caller.

A standalone ``ClusterRpcProxy`` is neither thread- nor fork-safe and costs
~13 ms to start, against ~2 ms per call once started (STACK.md #12). So each
worker process keeps a LIFO pool of started clients per timeout, created
lazily after fork (a pid check discards anything inherited), and lends one
client per request (and per timeout) through Flask's ``g``; the client goes back
at ``teardown_appcontext``. A client is returned after a success, a typed
service error or an ``RpcTimeout``, and dropped after a connection error.

Views call ``rpc().identity.get_user(user_id)``. Every call sends the caller
(``g.caller``, anonymous if absent) with the request id as nameko context data,
and is bounded: the reply wait by ``RPC_TIMEOUT``, connecting and publishing by
short retry policies, so a service or broker that is down gives 503/504 within
about the timeout instead of kombu's multi-second retries.

Two client implementations sit behind the same pool (setting ``RPC_CLIENT``):
``lean`` (default), our py-amqp client speaking nameko's wire format without
publisher confirms (``gateway.amqp_rpc``: less CPU per call), and ``nameko``,
a started ``ClusterRpcProxy``. Views see no difference: same results, same
typed errors, ``UnknownService`` for a service nobody serves, ``RpcTimeout``,
and ``BrokerUnavailable`` when the broker cannot be reached.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import amqp.exceptions
import kombu.exceptions
from amqp.abstract_channel import IGNORED_METHOD_DURING_CHANNEL_CLOSE
from flask import Flask, current_app, g, has_request_context
from nameko.exceptions import RpcTimeout
from nameko.rpc import ServiceProxy
from nameko.standalone.rpc import (
    ClusterProxy,
    ClusterRpcProxy,
    PollingQueueConsumer,
    SingleThreadedReplyListener,
)

from gateway.amqp_rpc import AmqpRpcClient
from gateway.errors import BrokerUnavailable, current_request_id
from gateway.metrics import observe_rpc
from kit.context import CALLER_KEY, Caller

log = logging.getLogger(__name__)

EXTENSION = "gateway.rpc"

# Failures of the link to the broker: the client is unusable afterwards.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    amqp.exceptions.ConnectionError,
    amqp.exceptions.ChannelError,
    kombu.exceptions.OperationalError,
    kombu.exceptions.ConnectionError,
)

# One quick reconnection when a pooled publishing connection went stale (a
# broker restart), instead of nameko's three retries with 1-second pauses.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}

# Clients left over from a parent process: never used, never closed (their
# sockets belong to the parent), only kept referenced so that nothing closes them.
_inherited: list[Any] = []


class _FailFastConsumer(PollingQueueConsumer):
    """Connects once with a bounded timeout (kombu would retry after 2 s)."""

    connect_timeout = 2.0

    def _setup_consumer(self):
        self.connection.connect_timeout = self.connect_timeout
        self.connection.ensure_connection(max_retries=0)
        super()._setup_consumer()


class _ReplyListener(SingleThreadedReplyListener):
    def __init__(self, timeout=None):
        super().__init__(timeout=timeout)
        self.queue_consumer = _FailFastConsumer(timeout=timeout)


class _Services(ClusterProxy):
    """``ClusterProxy`` whose service proxies publish with our options."""

    def __init__(self, worker_ctx, reply_listener, **options):
        super().__init__(worker_ctx, reply_listener)
        self._options = options

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        proxies = self._proxies
        if name not in proxies:
            proxies[name] = ServiceProxy(
                self._worker_ctx, name, self._reply_listener, **self._options
            )
        return proxies[name]


class _NamekoClient:
    """One started ``ClusterRpcProxy``, used by one thread at a time."""

    def __init__(self, config: dict, timeout: float, connect_timeout: float):
        self.pid = os.getpid()
        self._dirty = False  # a timeout left a late reply or a channel behind
        standalone = ClusterRpcProxy(config, timeout=timeout, reply_listener_cls=_ReplyListener)
        standalone._proxy = _Services(
            standalone._worker_ctx,
            standalone._reply_listener,
            retry_policy=PUBLISH_RETRY_POLICY,
            confirm_timeout=timeout,
        )
        standalone._reply_listener.queue_consumer.connect_timeout = connect_timeout
        self.standalone = standalone
        try:
            self.proxy = standalone.start()
        except BaseException:
            self.close()
            raise

    def call(self, service: str, method: str, args: tuple, kwargs: dict, context: dict) -> Any:
        ctx = self.proxy._worker_ctx
        ctx.data = dict(context)
        # a fresh nameko call id per call rather than one per pooled client
        ctx._call_id = None
        ctx._call_id_stack = None
        return getattr(getattr(self.proxy, service), method)(*args, **kwargs)

    @property
    def _consumer(self) -> PollingQueueConsumer:
        return self.standalone._reply_listener.queue_consumer

    @property
    def dirty(self) -> bool:
        """Whether :meth:`tidy` has something to undo before the next lend."""
        return self._dirty or bool(self._consumer.replies)

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value

    def usable(self) -> bool:
        consumer = self._consumer
        return not consumer.stopped and consumer.connection.connected is not False

    def tidy(self) -> None:
        """Undo what a timeout leaves behind, so a client can live forever.

        A reply that arrives after its call timed out is kept unacknowledged in
        ``replies``; and nameko re-creates the consumer on a new channel after
        each timeout without closing the old one (2047 channels per connection).
        """
        listener = self.standalone._reply_listener
        consumer = self._consumer
        for correlation_id in [c for c in consumer.replies if c not in listener._reply_events]:
            _body, message = consumer.replies.pop(correlation_id)
            message.ack()
        connection = consumer.connection.connection
        current = consumer.consumer.channel
        for number, channel in list(connection.channels.items()):
            if number != 0 and channel is not current:
                channel.close()
        self._dirty = False

    def close(self) -> None:
        try:
            self.standalone.stop()
        except Exception:  # already broken: nothing more to release
            log.debug("error while stopping an RPC client", exc_info=True)


class _LeanClient(AmqpRpcClient):
    """``gateway.amqp_rpc``'s client with the pool's interface.

    Nothing to tidy after a timeout: a late reply is dropped by the next call,
    and an idle connection that died is re-opened before publishing.
    """

    dirty = False

    def __init__(self, config: dict, timeout: float, connect_timeout: float):
        super().__init__(config["AMQP_URI"], timeout, connect_timeout)

    def tidy(self) -> None:
        self.dirty = False


# RPC_CLIENT setting -> client class
CLIENTS: dict[str, type] = {"lean": _LeanClient, "nameko": _NamekoClient}


class RpcPool:
    """LIFO pool of started clients for one process, one broker and one timeout.

    LIFO keeps the most recently used (warm) clients busy and lets the others
    sit idle; at most ``max_idle`` are kept, the rest are stopped.
    """

    def __init__(
        self,
        config: dict,
        timeout: float,
        max_idle: int = 16,
        client_cls: Callable[[dict, float, float], Any] = _LeanClient,
    ):
        self.config = dict(config)
        self.client_cls = client_cls
        self.timeout = float(timeout)
        self.connect_timeout = min(self.timeout, 5.0)
        self.max_idle = max_idle
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.created = 0
        self.dropped = 0
        self.in_use = 0

    def _forget_if_forked(self) -> None:
        if os.getpid() != self._pid:
            _inherited.extend(self._idle)
            self._idle = []
            self._pid = os.getpid()
            self.created = self.dropped = self.in_use = 0

    def acquire(self) -> Any:
        with self._lock:
            self._forget_if_forked()
            client = self._idle.pop() if self._idle else None
            self.in_use += 1
        if client is not None:
            return client
        try:
            client = self.client_cls(self.config, self.timeout, self.connect_timeout)
        except BaseException:
            with self._lock:
                self.in_use -= 1
            raise
        with self._lock:
            self.created += 1
        return client

    def release(self, client: Any, broken: bool = False) -> None:
        if client.pid != os.getpid():
            _inherited.append(client)
            return
        if not broken and client.dirty:
            try:
                client.tidy()
            except Exception:
                log.info("dropping an RPC client that could not be tidied", exc_info=True)
                broken = True
        if not broken and not client.usable():
            broken = True
        with self._lock:
            self.in_use -= 1
            if not broken and len(self._idle) < self.max_idle:
                self._idle.append(client)
                return
            self.dropped += 1
        client.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "idle": len(self._idle),
                "in_use": self.in_use,
                "created": self.created,
                "dropped": self.dropped,
            }


class Lease:
    """The client lent to one request (or one thread) for one timeout."""

    def __init__(self, pool: RpcPool, caller_header: Callable[[], str]):
        self.pool = pool
        self.caller_header = caller_header
        self._client: Any = None

    def _drop(self, client: Any) -> None:
        self._client = None
        self.pool.release(client, broken=True)

    def call(self, service: str, method: str, args: tuple, kwargs: dict) -> Any:
        caller = self.caller_header()
        if self._client is None:
            try:
                self._client = self.pool.acquire()
            except CONNECTION_ERRORS as exc:
                raise BrokerUnavailable(str(exc)) from exc
        client = self._client
        try:
            return client.call(service, method, args, kwargs, {CALLER_KEY: caller})
        except RpcTimeout:
            client.dirty = True
            raise
        except CONNECTION_ERRORS as exc:
            self._drop(client)
            raise BrokerUnavailable(str(exc)) from exc
        except RuntimeError as exc:
            # nameko's "This consumer has been stopped/disconnected"
            if "consumer" not in str(exc):
                raise
            self._drop(client)
            raise BrokerUnavailable(str(exc)) from exc
        except Exception:
            raise  # typed service errors, RemoteError: the client is fine
        except BaseException:
            self._drop(client)  # interrupted mid-call: state unknown
            raise

    def release(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self.pool.release(client)


class _Method:
    __slots__ = ("_lease", "_service", "_method")

    def __init__(self, lease: Lease, service: str, method: str):
        self._lease = lease
        self._service = service
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with observe_rpc(self._service, self._method):  # gateway.metrics
            return self._lease.call(self._service, self._method, args, kwargs)

    def __repr__(self) -> str:
        return f"<rpc {self._service}.{self._method}>"


class _Service:
    __slots__ = ("_lease", "_name")

    def __init__(self, lease: Lease, name: str):
        self._lease = lease
        self._name = name

    def __getattr__(self, method: str) -> _Method:
        if method.startswith("_"):
            raise AttributeError(method)
        return _Method(self._lease, self._name, method)


class RpcClient:
    """``client.<service>.<method>(...)`` or ``client["<service>"].<method>(...)``."""

    __slots__ = ("_lease",)

    def __init__(self, lease: Lease):
        self._lease = lease

    def __getattr__(self, service: str) -> _Service:
        if service.startswith("_"):
            raise AttributeError(service)
        return _Service(self._lease, service)

    def __getitem__(self, service: str) -> _Service:
        return _Service(self._lease, service)


class _Registry:
    """The pools of one app in one process, keyed by timeout."""

    def __init__(self) -> None:
        self._pools: dict[float, RpcPool] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def pool(self, app: Flask, timeout: float) -> RpcPool:
        with self._lock:
            if os.getpid() != self._pid:
                _inherited.append(self._pools)
                self._pools = {}
                self._pid = os.getpid()
            pool = self._pools.get(timeout)
            if pool is None:
                config = {"AMQP_URI": app.config["AMQP_URI"]}
                pool = self._pools[timeout] = RpcPool(
                    config,
                    timeout,
                    max_idle=app.config.get("RPC_POOL_MAX_IDLE", 16),
                    client_cls=CLIENTS[app.config.get("RPC_CLIENT", "lean")],
                )
            return pool

    def pools(self) -> dict[float, RpcPool]:
        with self._lock:
            return dict(self._pools) if os.getpid() == self._pid else {}

    def close(self) -> None:
        for pool in self.pools().values():
            pool.close()


def pool_for(app: Flask, timeout: float | None = None) -> RpcPool:
    """The pool of ``app`` for ``timeout`` (default ``RPC_TIMEOUT``)."""
    seconds = float(app.config["RPC_TIMEOUT"] if timeout is None else timeout)
    return app.extensions[EXTENSION].pool(app, seconds)


def _current_caller_header() -> str:
    caller = g.get("caller") or Caller()
    rid = current_request_id() if has_request_context() else caller.request_id
    if rid and caller.request_id != rid:
        caller = dataclasses.replace(caller, request_id=rid)
    return caller.to_header()


def rpc(timeout: float | None = None) -> RpcClient:
    """The client lent to the current request: ``rpc().identity.get_user(uid)``.

    ``timeout`` (seconds) selects a client with a shorter or longer reply
    timeout than ``RPC_TIMEOUT``. Nothing touches the network until a call.
    """
    app = current_app._get_current_object()
    pool = pool_for(app, timeout)
    leases: dict[float, Lease] = g.setdefault("_rpc_leases", {})
    lease = leases.get(pool.timeout)
    if lease is None:
        lease = leases[pool.timeout] = Lease(pool, _current_caller_header)
    return RpcClient(lease)


@contextmanager
def lend(pool: RpcPool, caller: Caller) -> Iterator[RpcClient]:
    """A client outside a request (e.g. a thread of the readiness check)."""
    lease = Lease(pool, partial(caller.to_header))
    try:
        yield RpcClient(lease)
    finally:
        lease.release()


def _return_leases(_exc: BaseException | None = None) -> None:
    for lease in g.pop("_rpc_leases", {}).values():
        lease.release()


def close_pools(app: Flask) -> None:
    """Stop every idle client of ``app`` (tests, shutdown)."""
    app.extensions[EXTENSION].close()


class _IgnoreUnroutedNoise(logging.Filter):
    """py-amqp logs a warning for every call to an unknown service (the publish
    confirm arrives while kombu closes the channel); the 503 already says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != IGNORED_METHOD_DURING_CHANNEL_CLOSE


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = _Registry()
    app.teardown_appcontext(_return_leases)
    amqp_logger = logging.getLogger("amqp")
    if not any(isinstance(f, _IgnoreUnroutedNoise) for f in amqp_logger.filters):
        amqp_logger.addFilter(_IgnoreUnroutedNoise())

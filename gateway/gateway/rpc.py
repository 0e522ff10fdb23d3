"""RPC clients for views: pooled, time-bounded, carrying the caller.

A client (``gateway.amqp_rpc.AmqpRpcClient``: py-amqp speaking nameko's wire
format) owns a connection and is not thread-safe, and connecting costs far
more than a call. So each worker process keeps a LIFO pool of started clients
per timeout, created lazily after fork (a pid check discards anything
inherited), and lends one client per request (and per timeout) through
Flask's ``g``; the client goes back at ``teardown_appcontext``. A client is
returned after a success, a typed service error or an ``RpcTimeout``, and
dropped after a connection error.

Views call ``rpc().identity.get_user(user_id)``. Every call sends the caller
(``g.caller``, anonymous if absent) with the request id as nameko context data,
and expires (``kit.entrypoints``): the reply wait is bounded by
``RPC_TIMEOUT``, and the service drops the call unexecuted once that time has
passed. Views see typed service errors as raised by the service,
``UnknownService`` for a service nobody serves (``NoConsumer`` at once when
its queue has no consumer), ``RpcTimeout``, ``BrokerUnavailable`` when the
broker cannot be reached (nothing was sent), and ``OutcomeUnknown`` when the
link failed after the request was sent.
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

from gateway import amqp_rpc
from gateway.amqp_rpc import AmqpRpcClient, OutcomeUnknown
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

# Clients left over from a parent process: never used, never closed (their
# sockets belong to the parent), only kept referenced so that nothing closes them.
_inherited: list[Any] = []


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
        except OutcomeUnknown:
            self._drop(client)
            raise  # sent, then the link failed: gateway.errors says « état inconnu »
        except CONNECTION_ERRORS as exc:
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
    """py-amqp logs a warning when a frame arrives for a channel it is closing
    (the consumer-count side channel closed by a passive declare of a missing
    queue, kombu's publishers to an unknown service); the 503 already says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != IGNORED_METHOD_DURING_CHANNEL_CLOSE


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = _Registry()
    # seconds a consumer count is trusted (per process; copied by forks)
    amqp_rpc.consumer_counts.ttl = float(app.config.get("RPC_CONSUMER_CHECK_SECONDS", 1.0))
    app.teardown_appcontext(_return_leases)
    amqp_logger = logging.getLogger("amqp")
    if not any(isinstance(f, _IgnoreUnroutedNoise) for f in amqp_logger.filters):
        amqp_logger.addFilter(_IgnoreUnroutedNoise())

"""Calls from one service to another that give up, and expire.

nameko 2's ``RpcProxy`` waits forever for a reply: a service behind a slow or
stopped one would hold its workers (and the gateway's client would time out
first, leaving them busy). ``BoundedRpcProxy`` gives each call a deadline and
turns "no answer" into a typed, retryable 429 with ``retry_after``.

The deadline travels with the call (``kit.entrypoints``): the AMQP
``expiration`` and the ``nameko.deadline`` header, so a call this worker gave
up on is never executed by the service behind. A call made while serving an
RPC expires at the earlier of its own timeout and that RPC's deadline (the
gateway's caller will not wait longer); a call whose deadline has already
passed is not sent.

Replies come back on a **transient** queue (``rpc.reply-<service>-<uuid>``,
not durable, expiring 5 min after its consumer left, as nameko's). nameko
declares it durable: on a RabbitMQ cluster a durable classic queue lives on
one node, and when that node is lost the queue cannot be declared again
elsewhere (``NOT_FOUND - home node … is down``), so every call of the
service to another one would give up until that node came back. A transient
queue goes with its node and is declared anew on the node the listener
reconnects to (while its node is still stopping, RabbitMQ refuses that for a
few seconds, ``NOT_FOUND … process is stopped by supervisor``: the listener
tries again every second); a reply in flight at that moment is lost and its
call gives up at its deadline (the caller's usual retryable 429). The
listener's queue consumer is kit's (``kit.entrypoints.QueueConsumer``:
acknowledgements that survive a lost link).
"""

from __future__ import annotations

import json
import os
import time

import eventlet
from kombu import Queue
from nameko.exceptions import UnknownService
from nameko.rpc import MethodProxy, RpcProxy, ServiceProxy
from nameko.rpc import ReplyListener as NamekoReplyListener

from kit.context import CALLER_KEY, SYSTEM, Caller
from kit.entrypoints import (
    DEADLINE_KEY,
    QueueConsumer,
    call_deadline,
    current_deadline,
    format_deadline,
)
from kit.errors import TooManyRequests

BUSY_MESSAGE = "Un service interne ne répond pas pour le moment : réessayez dans quelques instants."


class _WithDeadline:
    """A worker context (or ``carte``'s stand-in) whose context data carry
    one call's deadline: what nameko's ``MethodProxy`` sends as headers."""

    def __init__(self, worker_ctx, deadline: float):
        self.container = worker_ctx.container
        self._worker_ctx = worker_ctx
        self._deadline = format_deadline(deadline)

    @property
    def context_data(self):
        data = dict(self._worker_ctx.context_data)
        data[DEADLINE_KEY] = self._deadline
        return data


class Bounded:
    """A service proxy whose calls raise ``TooManyRequests`` after ``timeout`` s
    (or at the deadline of the RPC being served, if that comes first)."""

    def __init__(self, proxy, timeout: float, busy_code: str, worker_ctx=None):
        self._proxy = proxy
        self._timeout = timeout
        self._busy_code = busy_code
        self._worker_ctx = worker_ctx

    def _busy(self) -> TooManyRequests:
        return TooManyRequests(self._busy_code, BUSY_MESSAGE, {"retry_after": 5})

    def __getattr__(self, method: str):
        def call(*args, **kwargs):
            proxy = self._proxy
            now = time.time()
            deadline = call_deadline(self._timeout, current_deadline(self._worker_ctx), now)
            remaining = deadline - now
            if remaining <= 0:
                raise self._busy()
            if hasattr(proxy, "reply_listener"):
                method_proxy = MethodProxy(
                    _WithDeadline(proxy.worker_ctx, deadline),
                    proxy.service_name,
                    method,
                    proxy.reply_listener,
                    # seconds: kombu sends whole milliseconds as the AMQP expiration
                    **dict(proxy.options, expiration=remaining),
                )
            else:  # a stand-in with nameko's call_async (tests, scripts)
                method_proxy = getattr(proxy, method)
            try:
                reply = method_proxy.call_async(*args, **kwargs)
                with eventlet.Timeout(max(0.0, deadline - time.time())):
                    return reply.result()
            except (eventlet.Timeout, UnknownService):
                raise self._busy() from None

        return call


class ReplyListener(NamekoReplyListener):
    """nameko's reply listener on a transient (not durable) reply queue (module
    docstring), consumed by kit's queue consumer (acknowledgements that
    survive a lost link)."""

    queue_consumer = QueueConsumer()

    def setup(self):
        super().setup()
        queue = self.queue
        self.queue = Queue(
            queue.name,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            durable=False,
            queue_arguments=queue.queue_arguments,
        )


class BoundedRpcProxy(RpcProxy):
    """``RpcProxy`` with a deadline read from ``timeout_setting`` (config, then
    environment; seconds), replies on a transient queue."""

    rpc_reply_listener = ReplyListener()

    def __init__(
        self,
        target_service,
        *,
        timeout_setting: str = "RPC_TIMEOUT",
        default_timeout: float = 20.0,
        busy_code: str = "service.dependency_busy",
        **options,
    ):
        super().__init__(target_service, **options)
        self.timeout_setting = timeout_setting
        self.default_timeout = default_timeout
        self.busy_code = busy_code
        self.timeout = default_timeout

    def setup(self):
        super().setup()
        raw = self.container.config.get(self.timeout_setting) or os.environ.get(
            self.timeout_setting
        )
        self.timeout = float(raw) if raw else self.default_timeout

    def proxy_for(self, worker_ctx):
        """The plain nameko proxy (subclasses may change its context)."""
        return super().get_dependency(worker_ctx)

    def get_dependency(self, worker_ctx):
        return Bounded(self.proxy_for(worker_ctx), self.timeout, self.busy_code, worker_ctx)


class _SystemContext:
    """A worker context whose calls carry the ``system`` caller
    (``<service>-service``), keeping the worker's request id."""

    def __init__(self, worker_ctx):
        self.container = worker_ctx.container
        self._worker_ctx = worker_ctx

    @property
    def context_data(self):
        data = dict(self._worker_ctx.context_data)
        caller = Caller.from_header(data.get(CALLER_KEY))
        data[CALLER_KEY] = json.dumps(
            {
                "user_id": f"{self.container.service_name}-service",
                "roles": [SYSTEM],
                "request_id": caller.request_id,
            }
        )
        return data


class SystemRpcProxy(BoundedRpcProxy):
    """A bounded proxy whose calls run as the ``system`` caller: a service's
    own jobs (purges, retention) and reads it has already authorised."""

    def proxy_for(self, worker_ctx):
        return ServiceProxy(
            _SystemContext(worker_ctx), self.target_service, self.rpc_reply_listener, **self.options
        )

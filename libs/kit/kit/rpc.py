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
"""

from __future__ import annotations

import os
import time

import eventlet
from nameko.exceptions import UnknownService
from nameko.rpc import MethodProxy, RpcProxy

from kit.entrypoints import DEADLINE_KEY, call_deadline, current_deadline, format_deadline
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


class BoundedRpcProxy(RpcProxy):
    """``RpcProxy`` with a deadline read from ``timeout_setting`` (config, then
    environment; seconds)."""

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

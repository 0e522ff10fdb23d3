"""Calls from one service to another that give up.

nameko 2's ``RpcProxy`` waits forever for a reply: a service behind a slow or
stopped one would hold its workers (and the gateway's client would time out
first, leaving them busy). ``BoundedRpcProxy`` gives each call a deadline and
turns "no answer" into a typed, retryable 429 with ``retry_after``.
"""

from __future__ import annotations

import os

import eventlet
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy

from kit.errors import TooManyRequests

BUSY_MESSAGE = "Un service interne ne répond pas pour le moment : réessayez dans quelques instants."


class Bounded:
    """A service proxy whose calls raise ``TooManyRequests`` after ``timeout`` s."""

    def __init__(self, proxy, timeout: float, busy_code: str):
        self._proxy = proxy
        self._timeout = timeout
        self._busy_code = busy_code

    def __getattr__(self, method: str):
        def call(*args, **kwargs):
            try:
                reply = getattr(self._proxy, method).call_async(*args, **kwargs)
                with eventlet.Timeout(self._timeout):
                    return reply.result()
            except (eventlet.Timeout, UnknownService):
                raise TooManyRequests(self._busy_code, BUSY_MESSAGE, {"retry_after": 5}) from None

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
        return Bounded(self.proxy_for(worker_ctx), self.timeout, self.busy_code)

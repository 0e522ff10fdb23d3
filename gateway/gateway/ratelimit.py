"""In-process rate limits for sensitive routes (sign-in, registration, resets).

A token bucket per (limit name, key): ``per_minute`` tokens refilled evenly,
``burst`` of them available at once. Each limit keeps at most
``RATELIMIT_MAX_KEYS`` buckets (least recently seen evicted first; an evicted
bucket is one that had the longest time to refill), so memory stays bounded
under a flood of addresses. State is per worker process: with N workers a
client gets at most N times the limit, which is enough to stop guessing
attacks; a shared store would cost an extra hop on every request.

    @bp.post("/auth/signin")
    @limit("signin", per_minute=10, key=client_ip)
    def signin(): ...
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, current_app, request

from kit.errors import TooManyRequests

EXTENSION = "gateway.ratelimit"
CODE = "rate_limited"
MESSAGE = "Trop de requêtes, réessayez dans quelques instants."


class TokenBucketLimiter:
    """Thread-safe token buckets for one limit."""

    def __init__(
        self,
        per_minute: float,
        burst: float | None = None,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0  # tokens per second
        self.capacity = float(burst if burst is not None else per_minute)
        self.max_keys = max(1, int(max_keys))
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 if allowed, else seconds until it would be."""
        now = self.clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            if tokens >= cost:
                tokens -= cost
                wait = 0.0
            else:
                wait = (cost - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)


def client_ip() -> str:
    """The client's address: the socket peer, or with ``TRUSTED_PROXIES = n``
    the n-th ``X-Forwarded-For`` entry from the right (the one our first
    trusted proxy saw); entries further left are client-controlled."""
    remote = request.remote_addr or "unknown"
    trusted = int(current_app.config.get("TRUSTED_PROXIES") or 0)
    if trusted <= 0:
        return remote
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    candidate = forwarded[-trusted] if len(forwarded) >= trusted else forwarded[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def _limiter(app: Flask, name: str, per_minute: float, burst: float | None) -> TokenBucketLimiter:
    registry: dict = app.extensions.setdefault(EXTENSION, {"lock": threading.Lock(), "limits": {}})
    with registry["lock"]:
        limiter = registry["limits"].get(name)
        if limiter is None:
            limiter = registry["limits"][name] = TokenBucketLimiter(
                per_minute, burst, max_keys=app.config.get("RATELIMIT_MAX_KEYS", 10_000)
            )
        return limiter


def check(name: str, key: str, per_minute: float, burst: float | None = None) -> None:
    """Count one hit of ``key`` against limit ``name``; raise 429 ``rate_limited``
    (``TooManyRequests`` with ``details.retry_after``) when over the limit.

    For limits keyed on something only the view knows (e.g. the account name).
    """
    app = current_app._get_current_object()
    if not app.config.get("RATELIMIT_ENABLED", True):
        return
    wait = _limiter(app, name, per_minute, burst).hit(str(key))
    if wait > 0:
        raise TooManyRequests(CODE, MESSAGE, {"retry_after": max(1, math.ceil(wait))})


def limit(
    name: str,
    per_minute: float,
    key: Callable[[], Any] = client_ip,
    burst: float | None = None,
) -> Callable:
    """Decorator: at most ``per_minute`` calls per minute per ``key()``."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            check(name, key(), per_minute, burst)
            return view(*args, **kwargs)

        return limited

    return decorate

"""Pushing one event to one partner: the retry schedule, the Standard Webhooks
signature and the HTTP call, the AMQP publish. No database here (see
``dispatcher``), so each piece is tested on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass

import eventlet
import urllib3
from standardwebhooks.webhooks import Webhook

from notify.partners import ssrf

log = logging.getLogger(__name__)

# Waits before each retry (the first attempt is at once): about 27 h in all,
# as démarches-simplifiées and Svix do. Each wait gets ±10 % of jitter so a
# partner coming back is not hit by every retry at the same second.
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.1
EXCERPT = 500  # bytes of the answer kept in the delivery log
USER_AGENT = "plateforme-formations-webhooks/1"


def parse_schedule(value: str | None) -> tuple[float, ...]:
    """``WEBHOOK_RETRY_SCHEDULE`` (seconds, comma-separated), else the default."""
    if not value:
        return SCHEDULE
    problem = "WEBHOOK_RETRY_SCHEDULE: des durées positives en secondes, séparées par des virgules"
    try:
        waits = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{problem} (lu : {value!r})") from None
    if not waits or not all(math.isfinite(w) and w >= 0 for w in waits):
        raise ValueError(f"{problem} (lu : {value!r})")
    return waits


def next_wait(
    attempts: int, schedule: tuple[float, ...] = SCHEDULE, rand=random.random
) -> dt.timedelta | None:
    """The wait after the ``attempts``-th failed attempt, or None when the
    schedule is exhausted (the delivery has failed for good)."""
    if attempts < 1 or attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return dt.timedelta(seconds=base * (1 - JITTER + 2 * JITTER * rand()))


def sign(secrets: list[str], msg_id: str, at: dt.datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers; one signature per valid secret (rotation)."""
    # the library reads the timestamp as if it were UTC: give it UTC
    at = at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


@dataclass
class Outcome:
    ok: bool
    status: int | None = None
    latency_ms: int = 0
    excerpt: str | None = None
    error: str | None = None


class WebhookClient:
    """POSTs to checked targets; keeps one small connection pool per target."""

    def __init__(self, timeout: float = 10.0, maxsize: int = 4):
        self.timeout = timeout
        self.maxsize = maxsize
        self.pools: dict[tuple, urllib3.HTTPConnectionPool] = {}
        self.lock = threading.Lock()

    def _pool(self, target: ssrf.Target):
        key = (target.scheme, target.address, target.port, target.host)
        with self.lock:
            pool = self.pools.get(key)
            if pool is None:
                timeout = urllib3.Timeout(connect=self.timeout, read=self.timeout)
                if target.scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        target.address,
                        target.port,
                        timeout=timeout,
                        retries=False,
                        maxsize=self.maxsize,
                        server_hostname=target.host,
                        assert_hostname=target.host,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(
                        target.address,
                        target.port,
                        timeout=timeout,
                        retries=False,
                        maxsize=self.maxsize,
                    )
                self.pools[key] = pool
            return pool

    def post(self, target: ssrf.Target, body: bytes, headers: dict[str, str]) -> Outcome:
        host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
        if ":" in target.host and not target.host.startswith("["):
            host = f"[{target.host}]:{target.port}"
        all_headers = {
            **headers,
            "Host": host,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        started = time.monotonic()
        try:
            with eventlet.Timeout(self.timeout + 1):
                response = self._pool(target).urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers=all_headers,
                    redirect=False,
                    preload_content=False,
                    assert_same_host=False,
                )
                try:
                    raw = response.read(EXCERPT, decode_content=False)
                    # keep the connection only if the rest of a short answer
                    # can be read off; never read a large one to its end
                    rest = response.read(65536, decode_content=False) if raw else b""
                    if len(rest) == 65536:
                        response.close()
                finally:
                    response.release_conn()
        except eventlet.Timeout:
            return Outcome(False, None, _ms(started), None, f"délai dépassé ({self.timeout:g} s)")
        except urllib3.exceptions.HTTPError as exc:
            return Outcome(False, None, _ms(started), None, _reason(exc))
        except OSError as exc:
            return Outcome(False, None, _ms(started), None, f"erreur réseau : {exc}"[:500])
        excerpt = raw.decode("utf-8", "replace") if raw else ""
        status = response.status
        if 200 <= status < 300:
            return Outcome(True, status, _ms(started), excerpt)
        error = f"réponse HTTP {status}"
        if 300 <= status < 400:
            error += " (redirection non suivie)"
        return Outcome(False, status, _ms(started), excerpt, error)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    if "timed out" in text.lower():
        return "délai dépassé"
    if "refused" in text.lower():
        return "connexion refusée"
    return f"erreur réseau : {text}"[:500]


def body_of(envelope: dict) -> str:
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))

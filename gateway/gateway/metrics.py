"""RED metrics and the access log of the gateway (docs/architecture.md §9).

Every request counts in ``http_requests_total{route, method, status}`` and
``http_request_duration_seconds{route, method}``, where ``route`` is the
Flask rule (``/api/v1/surveys/<survey_id>``), never the raw path, so that the
number of series stays bounded; unmatched paths are ``<unmatched>``. Every RPC
the views make counts in ``rpc_client_duration_seconds{service, method,
outcome}`` (``gateway.rpc`` calls :func:`observe_rpc`). One ``gateway.access``
log line per request carries method, route, status, duration_ms and the
request id.

gunicorn runs several worker processes: prometheus_client's multiprocess
mode keeps each worker's values in files under ``PROMETHEUS_MULTIPROC_DIR``
(set up by ``gateway.gunicorn_hooks``), and a scrape adds them up. They are
served two ways:

- ``GET /metrics`` on the gateway's own port, answered only to a client whose
  socket address is in ``METRICS_ALLOW`` (comma-separated CIDRs, default the
  loopback) and that came through no proxy (no ``X-Forwarded-For`` or
  ``Forwarded``: a request relayed by the ingress is from outside); anyone
  else gets the same 404 as for any unknown path. Not in the OpenAPI document:
  it is for operators, not API clients.
- ``METRICS_PORT`` (containers: 9100): the gunicorn master serves them on a
  port of their own, never published outside the cluster.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from gateway.config import ConfigError
from kit.errors import ServiceError

EXTENSION = "gateway.metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
UNMATCHED = "<unmatched>"
# any other method (clients may send anything) is one label value
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# bus failures the views may see, named as such on rpc_client_duration_seconds
BUS_ERRORS = frozenset(
    {"RpcTimeout", "UnknownService", "RemoteError", "BrokerUnavailable", "ContainerBeingKilled"}
)
# probes and scrapes: their successes are not worth a line each
QUIET_PREFIXES = ("/health/", "/metrics")

# From a 1 ms answer to the 30 s heavy timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered by the gateway, by route (Flask rule), method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's start to its response (body streaming excluded).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
RPC_CLIENT_DURATION = Histogram(
    "rpc_client_duration_seconds",
    "RPCs made by the gateway, as the gateway waited for them, by outcome (ok, a typed "
    "error's class, RpcTimeout, UnknownService, BrokerUnavailable… or unexpected).",
    ["service", "method", "outcome"],
    buckets=LATENCY_BUCKETS,
)

access_log = logging.getLogger("gateway.access")
log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


# --- RPCs ---------------------------------------------------------------------


def rpc_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    name = type(exc).__name__
    if isinstance(exc, ServiceError) or name in BUS_ERRORS:
        return name
    return "unexpected"


@contextmanager
def observe_rpc(service: str, method: str) -> Iterator[None]:
    """Times one RPC made by the gateway (``gateway.rpc``)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = rpc_outcome(exc)
        raise
    finally:
        RPC_CLIENT_DURATION.labels(service, method, outcome).observe(time.perf_counter() - started)


# --- requests -----------------------------------------------------------------


def _start_timer() -> None:
    g._metrics_started = time.perf_counter()


def route_of() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def _record(response: Response) -> Response:
    started = g.pop("_metrics_started", None)
    elapsed = time.perf_counter() - started if started is not None else 0.0
    route = route_of()
    method = request.method if request.method in METHODS else "OTHER"
    status = response.status_code
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_DURATION.labels(route, method).observe(elapsed)
    duration_ms = round(elapsed * 1000, 1)
    quiet = status < 400 and request.path.startswith(QUIET_PREFIXES)
    access_log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s %s %s %.1f ms",
        method,
        route,
        status,
        duration_ms,
        extra={
            "service": "gateway",
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
        },
    )
    return response


# --- the /metrics endpoint ----------------------------------------------------------


def registry() -> CollectorRegistry:
    """The values of every worker process in multiprocess mode, else this process's."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return REGISTRY
    collected = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(collected, path=path)
    return collected


def parse_allow(raw: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``METRICS_ALLOW``: comma-separated CIDRs (or addresses); empty: loopback."""
    items = [part.strip() for part in (raw or "").split(",") if part.strip()] or DEFAULT_ALLOW
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError as exc:
        raise ConfigError(f"METRICS_ALLOW must list CIDRs, got {raw!r}: {exc}") from None


def _allowed() -> bool:
    if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
        return False
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in current_app.extensions[EXTENSION])


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; 404 unless the client is allowed (module docstring)."""
    if not _allowed():
        abort(404)
    return Response(generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Before ``errors.init_app``, so that the timer starts first."""
    allow = app.config.get("METRICS_ALLOW", os.environ.get("METRICS_ALLOW"))
    app.extensions[EXTENSION] = parse_allow(allow)
    app.before_request(_start_timer)
    app.after_request(_record)
    app.register_blueprint(bp)

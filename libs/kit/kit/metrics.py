"""Prometheus metrics of the services (docs/architecture.md §9 "Observable by default").

Every service gets :class:`ServiceMetrics` from ``ServiceBase``. It records
each worker (``worker_setup`` / ``worker_result``): RPCs by method and outcome
with their latency, event handler runs by handler and outcome, how much of
the worker pool is in use; and, on ``METRICS_PORT`` (nameko config or
environment; off when unset or 0, as in tests and the local run where five
services share one machine; 9100 in containers), it serves the Prometheus
text format from a green thread the container manages.

An *outcome* is ``ok``, the class name of a typed error (``NotFound``,
``InvalidInput``… every ``kit.errors.ServiceError``) or ``unexpected``: a
bounded set of label values, whatever the exceptions say.

Other modules import the counters below and increment them where the thing
happens (``EMAILS.labels(outcome="sent").inc()``), or publish a value read
at scrape time with :func:`register_gauge`. Gauges read at scrape time cost
nothing between scrapes; the outbox gauges are built in (one cheap query per
scrape on the service's own engine, the hub-friendly driver).

Metric objects live at module level, as prometheus_client wants (one
registry per process); nothing is served or queried until a container starts.

The same HTTP server answers the orchestrator's probes (Kubernetes, see
deploy/k8s/): ``GET /health/live`` is 200 while the process serves (no I/O);
``GET /health/ready`` is 200 ``{"status": "ok", "service", "checks"}`` only
when every AMQP consumer connection of the container is up and its database
answers ``SELECT 1`` within ``READINESS_TIMEOUT`` seconds (nameko config or
environment, default 2), else 503 with the checks that failed (``failed``).
The connection state is kept by the consumers themselves (no broker round
trip per probe); the database check runs in the request's own green thread,
bounded by an ``eventlet.Timeout``, so a hung database never blocks the hub
nor ``/metrics``. Every other path is ``/metrics`` exactly as before.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import eventlet
import eventlet.wsgi
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer, QueueConsumer
from nameko.rpc import Rpc
from prometheus_client import REGISTRY, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from kit.db import Database
from kit.errors import InvalidInput, ServiceError

log = logging.getLogger(__name__)

OK = "ok"
UNEXPECTED = "unexpected"

# From a 1 ms RPC (the bus's floor is ~0.5 ms) to a 30 s heavy transmission.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Deliveries are retried for a day: from a second to a day.
DELIVERY_LAG_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 48 * 3600)

# --- per entrypoint (recorded by ServiceMetrics) ------------------------------

RPC_REQUESTS = Counter(
    "rpc_requests_total",
    "RPCs handled, by service, method and outcome (ok, a typed error's class, unexpected).",
    ["service", "method", "outcome"],
)
RPC_DURATION = Histogram(
    "rpc_duration_seconds",
    "Time to handle an RPC in the service, reply included.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
EVENT_HANDLER_RUNS = Counter(
    "event_handler_runs_total",
    "Event handler (and queue consumer) runs, by handler and outcome; failures are "
    "every outcome but ok.",
    ["service", "handler", "outcome"],
)
EVENT_HANDLER_DURATION = Histogram(
    "event_handler_duration_seconds",
    "Time to handle one event.",
    ["service", "handler"],
    buckets=LATENCY_BUCKETS,
)
UPLOAD_REFUSALS = Counter(
    "upload_refusals_total",
    "Uploads refused for their content (InvalidInput raised by an upload method of a "
    "service: files.store_xlsx, survey.submit_response…), by error code.",
    ["code"],
)

# --- incremented by the code that does the thing ------------------------------

EMAILS = Counter(
    "emails_total",
    "E-mail send attempts by outcome: sent, failed (retried until the attempts run out).",
    ["outcome"],
)

PARTNER_DELIVERIES = Counter(
    "partner_deliveries_total",
    "Deliveries to partners by channel and outcome.",
    ["channel", "outcome"],
)
PARTNER_DELIVERIES.__doc__ = """How to use, once per delivery attempt to a partner::

    from kit.metrics import PARTNER_DELIVERIES
    PARTNER_DELIVERIES.labels(channel="webhook", outcome="delivered").inc()

``channel``: how it goes (``webhook``, ``feed``…); ``outcome``: ``delivered``,
``failed`` (will be retried), ``abandoned`` (no retry left), ``skipped``. Keep
both to a fixed, small set of values: never a partner id or a URL.
"""

PARTNER_DELIVERY_LAG = Histogram(
    "partner_delivery_lag_seconds",
    "Seconds from the event (its occurred_at) to its successful delivery to a partner.",
    ["channel"],
    buckets=DELIVERY_LAG_BUCKETS,
)
PARTNER_DELIVERY_LAG.__doc__ = """How to use, once per successful delivery::

    from kit.metrics import PARTNER_DELIVERY_LAG
    PARTNER_DELIVERY_LAG.labels(channel="webhook").observe(
        (utcnow() - occurred_at).total_seconds())

What is still waiting is better read at scrape time: register the age of the
oldest undelivered row with :func:`register_gauge` (as the outbox lag is).
"""

# --- read at scrape time ---------------------------------------------------------

GaugeFn = Callable[[], "float | None | Mapping[tuple[str, ...], float]"]


class _CallbackGauges(Collector):
    """Gauges whose values come from functions called once per scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauges: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._sources: dict[str, dict[int, GaugeFn]] = {}
        self._next = 0

    def declare(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        with self._lock:
            known = self._gauges.get(name)
            if known is not None:
                if known[1] != tuple(labelnames):
                    raise ValueError(f"gauge {name} is declared with labels {known[1]}")
                documentation = documentation or known[0]
            self._gauges[name] = (documentation or name, tuple(labelnames))
            self._sources.setdefault(name, {})

    def add(self, name: str, fn: GaugeFn) -> Callable[[], None]:
        with self._lock:
            if name not in self._gauges:
                raise KeyError(f"gauge {name} is not declared")
            self._next += 1
            key = self._next
            self._sources[name][key] = fn

        def remove() -> None:
            with self._lock:
                self._sources.get(name, {}).pop(key, None)

        return remove

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._gauges)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            gauges = dict(self._gauges)
        for name, (doc, labels) in gauges.items():
            yield GaugeMetricFamily(name, doc, labels=list(labels))

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            gauges = dict(self._gauges)
            sources = {name: list(fns.values()) for name, fns in self._sources.items()}
        for name, (doc, labels) in gauges.items():
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            for fn in sources.get(name, ()):
                try:
                    value = fn()
                except Exception as exc:  # noqa: BLE001 - one source must not break a scrape
                    # no traceback: a database down would write one per scrape
                    log.warning("metrics: gauge %s could not be read: %s", name, exc)
                    continue
                if value is None:
                    continue
                if isinstance(value, Mapping):
                    for label_values, number in value.items():
                        family.add_metric(list(label_values), float(number))
                else:
                    family.add_metric([], float(value))
            yield family


_GAUGES = _CallbackGauges()
REGISTRY.register(_GAUGES)


def register_gauge(
    name: str, documentation: str, fn: GaugeFn, labelnames: Sequence[str] = ()
) -> Callable[[], None]:
    """Publishes ``fn()`` as the gauge ``name`` at every scrape; returns a
    function that stops it.

    ``fn`` returns a number (no labels), ``None`` (no sample this time) or a
    mapping ``{(label values…): number}``. Several sources may feed one name
    (each container its ``service`` label); they must agree on the labels.
    ``fn`` runs in the scraping green thread: keep it cheap and bounded."""
    _GAUGES.declare(name, documentation, labelnames)
    return _GAUGES.add(name, fn)


def declare_gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
    """Declares a gauge fed later by :func:`register_gauge` (its name is known
    to the dashboards' tests, and it is exported empty until then)."""
    _GAUGES.declare(name, documentation, labelnames)


def callback_gauge_names() -> list[str]:
    """The names of every gauge read at scrape time."""
    return _GAUGES.names()


WORKER_POOL_IN_USE = "worker_pool_in_use"
WORKER_POOL_MAX = "worker_pool_max"
OUTBOX_PENDING = "outbox_pending"
OUTBOX_LAG = "outbox_lag_seconds"

declare_gauge(WORKER_POOL_IN_USE, "Workers running now (RPCs, events, timers).", ["service"])
declare_gauge(WORKER_POOL_MAX, "The size of the worker pool (max_workers).", ["service"])
declare_gauge(OUTBOX_PENDING, "Outbox events not yet published.", ["service"])
declare_gauge(OUTBOX_LAG, "Age of the oldest unpublished outbox event (0 when none).", ["service"])


# --- the dependency provider -------------------------------------------------------


def outcome_of(exc_info: tuple | None) -> str:
    """``ok``, a typed error's class name, or ``unexpected``."""
    if not exc_info:
        return OK
    exc = exc_info[1]
    if isinstance(exc, ServiceError):
        return type(exc).__name__
    return UNEXPECTED


def metrics_port(config: Mapping[str, Any]) -> int:
    """``METRICS_PORT`` from the nameko config, else the environment; 0 is off."""
    raw = config.get("METRICS_PORT")
    if raw in (None, ""):
        raw = os.environ.get("METRICS_PORT", "")
    try:
        return int(str(raw).strip() or 0)
    except ValueError:
        log.error("METRICS_PORT must be a port number, got %r: metrics are not served", raw)
        return 0


class OutboxProbe:
    """Pending count and age of the oldest pending row of one outbox: one
    query per scrape (both gauges share it for a second)."""

    ttl = 1.0
    timeout = 2.0  # seconds, as READINESS_TIMEOUT by default

    def __init__(self, engine, model, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.model = model
        self.clock = clock
        self._at = float("-inf")
        self._value: tuple[int, float] | None = None
        self._lock = threading.Lock()

    def read(self) -> tuple[int, float]:
        with self._lock:
            if time.monotonic() - self._at < self.ttl and self._value is not None:
                return self._value
            model = self.model
            query = select(func.count(), func.min(model.created_at)).where(
                model.published_at.is_(None)
            )
            # bounded like the readiness check: a hung database must not hold
            # the scrape until Prometheus gives up (the gauge logs one line)
            timer = eventlet.Timeout(self.timeout)
            try:
                with self.engine.connect() as conn:
                    pending, oldest = conn.execute(query).one()
            except eventlet.Timeout as exc:
                if exc is not timer:
                    raise
                raise TimeoutError(f"outbox query over {self.timeout:g} s") from None
            finally:
                timer.cancel()
            age = 0.0
            if oldest is not None:
                age = max(0.0, self.clock() - oldest.timestamp())
            self._value = (int(pending), age)
            self._at = time.monotonic()
            return self._value


class ServiceMetrics(DependencyProvider):
    """Records every worker of the service and serves ``/metrics``.

    A service class may list ``upload_methods``: RPCs that receive uploaded
    content, whose ``InvalidInput`` errors count in ``upload_refusals_total``
    by code (the refusing service knows best why, and each refused upload is
    refused by exactly one service)."""

    def setup(self) -> None:
        config = self.container.config
        self.service = self.container.service_name
        self.port = metrics_port(config)
        self.address = str(
            config.get("METRICS_ADDR") or os.environ.get("METRICS_ADDR") or "0.0.0.0"
        )
        self.upload_methods = frozenset(getattr(self.container.service_cls, "upload_methods", ()))
        self._started: dict[Any, float] = {}
        self._in_use = 0
        self._unregister: list[Callable[[], None]] = []
        self.readiness_timeout = readiness_timeout(config)
        self._amqp_up: dict[int, bool] = {}
        for extension in self.container.subextensions:
            if isinstance(extension, QueueConsumer):
                self._watch_consumer(extension)

    def start(self) -> None:
        labels = ["service"]
        service = (self.service,)
        max_workers = self.container.max_workers
        gauges: list[tuple[str, GaugeFn]] = [
            (WORKER_POOL_IN_USE, lambda: {service: self._in_use}),
            (WORKER_POOL_MAX, lambda: {service: max_workers}),
        ]
        probe = self._outbox_probe()
        if probe is not None:
            gauges.append((OUTBOX_PENDING, lambda: {service: probe.read()[0]}))
            gauges.append((OUTBOX_LAG, lambda: {service: probe.read()[1]}))
        self._unregister = [register_gauge(name, "", fn, labels) for name, fn in gauges]
        if self.port:
            self._serve()

    def _outbox_probe(self) -> OutboxProbe | None:
        model = getattr(self.container.service_cls, "outbox_model", None)
        if model is None:
            return None
        for dependency in self.container.dependencies:
            if isinstance(dependency, Database) and getattr(dependency, "engine", None) is not None:
                return OutboxProbe(dependency.engine, model)
        return None

    def _serve(self) -> None:
        try:
            sock = eventlet.listen((self.address, self.port))
        except OSError as exc:
            # several services of one machine given the same port: the service
            # still works, without metrics, and says so
            log.error("metrics: cannot listen on %s:%s (%s)", self.address, self.port, exc)
            return
        app = health_app(make_wsgi_app(REGISTRY), self.readiness)

        def serve() -> None:
            # killed by the container once every extension has stopped
            try:
                eventlet.wsgi.server(sock, app, log_output=False, max_size=16)
            finally:
                sock.close()

        self.container.spawn_managed_thread(serve, identifier="metrics")
        log.info(
            "metrics: serving on %s:%s/metrics (and %s, %s)",
            self.address,
            self.port,
            LIVE_PATH,
            READY_PATH,
        )

    def stop(self) -> None:
        for unregister in self._unregister:
            unregister()
        self._unregister = []

    kill = stop

    # workers

    def worker_setup(self, worker_ctx) -> None:
        self._in_use += 1
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        started = self._started.pop(worker_ctx, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        entrypoint = worker_ctx.entrypoint
        method = entrypoint.method_name
        outcome = outcome_of(exc_info)
        if isinstance(entrypoint, Rpc):
            RPC_REQUESTS.labels(self.service, method, outcome).inc()
            RPC_DURATION.labels(self.service, method).observe(elapsed)
            if exc_info and method in self.upload_methods and isinstance(exc_info[1], InvalidInput):
                UPLOAD_REFUSALS.labels(exc_info[1].code).inc()
        elif isinstance(entrypoint, Consumer):  # event handlers included
            EVENT_HANDLER_RUNS.labels(self.service, method, outcome).inc()
            EVENT_HANDLER_DURATION.labels(self.service, method).observe(elapsed)

    def worker_teardown(self, worker_ctx) -> None:
        self._started.pop(worker_ctx, None)
        self._in_use -= 1

    # readiness

    def _watch_consumer(self, consumer: QueueConsumer) -> None:
        """Keeps whether ``consumer``'s AMQP connection is up: kombu's
        ``ConsumerMixin`` calls ``on_consume_ready`` after every (re)connection,
        and ``consume`` returns or raises when the connection is lost or the
        consumer stops. Both are wrapped on this one (per-container) instance,
        before the consumer starts."""
        key = id(consumer)
        if key in self._amqp_up:
            return
        self._amqp_up[key] = False
        up = self._amqp_up
        on_consume_ready = consumer.on_consume_ready
        consume = consumer.consume

        def watched_on_consume_ready(*args, **kwargs):
            up[key] = True
            return on_consume_ready(*args, **kwargs)

        def watched_consume(*args, **kwargs):
            try:
                yield from consume(*args, **kwargs)
            finally:
                up[key] = False

        consumer.on_consume_ready = watched_on_consume_ready
        consumer.consume = watched_consume

    def amqp_state(self) -> str:
        """``ok`` when every queue consumer of the container is connected (a
        container without consumers has nothing to lose)."""
        return OK if all(self._amqp_up.values()) else UNAVAILABLE_STATE

    def database_state(self) -> str:
        """``ok``, ``unavailable``, ``timeout`` or ``none`` (no ``Database``)."""
        engines = [
            dependency.engine
            for dependency in self.container.dependencies
            if isinstance(dependency, Database) and getattr(dependency, "engine", None) is not None
        ]
        if not engines:
            return NONE_STATE
        for engine in engines:
            state = database_answers(engine, self.readiness_timeout)
            if state != OK:
                return state
        return OK

    def readiness(self) -> tuple[bool, dict]:
        checks = {"amqp": self.amqp_state(), "database": self.database_state()}
        failed = [name for name, state in checks.items() if state not in (OK, NONE_STATE)]
        body: dict[str, Any] = {
            "status": UNAVAILABLE_STATE if failed else OK,
            "service": self.service,
            "checks": checks,
        }
        if failed:
            body["failed"] = failed
        return not failed, body


# --- liveness and readiness ---------------------------------------------------------

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
UNAVAILABLE_STATE = "unavailable"
TIMEOUT_STATE = "timeout"
NONE_STATE = "none"
DEFAULT_READINESS_TIMEOUT = 2.0
READY_RETRY_AFTER = "5"  # seconds, on a 503


def readiness_timeout(config: Mapping[str, Any]) -> float:
    """``READINESS_TIMEOUT`` (seconds) from the nameko config, else the
    environment; default 2."""
    raw = config.get("READINESS_TIMEOUT")
    if raw in (None, ""):
        raw = os.environ.get("READINESS_TIMEOUT", "")
    try:
        value = float(str(raw).strip() or DEFAULT_READINESS_TIMEOUT)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        log.error(
            "READINESS_TIMEOUT must be a positive number of seconds, got %r: using %s",
            raw,
            DEFAULT_READINESS_TIMEOUT,
        )
        return DEFAULT_READINESS_TIMEOUT
    return value


def database_answers(engine, timeout: float) -> str:
    """``SELECT 1`` on ``engine`` within ``timeout`` seconds: ``ok``,
    ``unavailable`` (refused, failed) or ``timeout``. The driver waits through
    the hub (``PSYCOPG_WAIT_FUNC=wait_select``), so the timeout can cut a
    connect or a statement short; SQLAlchemy then discards that connection."""
    timer = eventlet.Timeout(timeout)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return OK
    except eventlet.Timeout as exc:
        if exc is not timer:
            raise
        return TIMEOUT_STATE
    except Exception as exc:  # noqa: BLE001 - a probe reports, it does not raise
        log.info(
            "readiness: database %s does not answer (%s)",
            engine.url.database or "?",
            type(exc).__name__,
        )
        return UNAVAILABLE_STATE
    finally:
        timer.cancel()


def health_app(metrics_app: Callable, readiness: Callable[[], tuple[bool, dict]]) -> Callable:
    """A WSGI app: the two probes, and ``metrics_app`` for every other path."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == LIVE_PATH:
            return _json(start_response, "200 OK", {"status": OK})
        if path == READY_PATH:
            try:
                healthy, body = readiness()
            except Exception as exc:  # noqa: BLE001 - the probe answers 503, never a 500
                log.warning("readiness check failed: %s", exc)
                healthy, body = False, {"status": UNAVAILABLE_STATE, "failed": ["check"]}
            if healthy:
                return _json(start_response, "200 OK", body)
            return _json(
                start_response,
                "503 Service Unavailable",
                body,
                [("Retry-After", READY_RETRY_AFTER)],
            )
        return metrics_app(environ, start_response)

    return app


def _json(start_response, status: str, body: dict, headers: Sequence = ()) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [data]

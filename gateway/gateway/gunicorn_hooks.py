"""What ``gunicorn.conf.py`` needs for metrics and logs (README "Metrics and logs").

Metrics: each worker process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and a
scrape adds them up (``gateway.metrics``). The directory must exist, be empty
when gunicorn starts, and be known before any process imports
prometheus_client: ``on_starting`` runs in the master before any worker is
forked, so it creates one in memory (``/dev/shm``) when none is set and
removes the files a previous run left. ``child_exit`` tells prometheus_client
that a worker died; ``when_ready`` serves the metrics on ``METRICS_PORT`` from
the master when that is set (containers: 9100).

Logs: every line through ``kit.logs`` (JSON by default, ``LOG_FORMAT=text``
for people), gunicorn's own lines included; gunicorn's access log stays off
unless ``GATEWAY_ACCESS_LOG`` asks for it, as the app writes one line per
request itself.

This module imports nothing heavy: it is loaded by the gunicorn master when
it reads its configuration.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXTENSION_NAME = "gateway.rpc"  # gateway.rpc.EXTENSION
_created: list[str] = []


def on_starting(server) -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        path = tempfile.mkdtemp(prefix="gateway-metrics-", dir=shm)
        _created.append(path)
        os.environ[MULTIPROC_ENV] = path
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def when_ready(server) -> None:
    port = int(os.environ.get("METRICS_PORT") or 0)
    if not port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=os.environ.get("METRICS_ADDR") or "0.0.0.0", registry=registry)
    server.log.info("metrics on port %s (/metrics)", port)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker) -> None:
    """In the worker, after its last request (graceful stop, max requests):
    closes the RPC clients so their AMQP connections end with a close frame
    rather than a reset."""
    app = getattr(worker, "wsgi", None)
    if app is None or EXTENSION_NAME not in getattr(app, "extensions", {}):
        return
    try:
        from gateway.rpc import close_pools

        close_pools(app)
    except Exception:  # noqa: BLE001 - exiting anyway
        server.log.warning("closing the RPC clients failed", exc_info=True)


def on_exit(server) -> None:
    for path in _created:
        shutil.rmtree(path, ignore_errors=True)


def logging_config(level: str, access_log: str | None) -> dict:
    """gunicorn's ``logconfig_dict``: every line through kit.logs."""
    level = (level or "info").upper()
    loggers = {"gunicorn.error": {"level": level, "handlers": [], "propagate": True}}
    if not access_log:
        loggers["gunicorn.access"] = {"level": "WARNING", "handlers": [], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "kit.logs.ContextFilter", "service": "gateway"}},
        "formatters": {"platform": {"()": "kit.logs.formatter", "service": "gateway"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["context"],
                "formatter": "platform",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": loggers,
    }

"""Structured logs (docs/architecture.md §9 "Observable by default").

One line per log record, JSON by default (``LOG_FORMAT=json``: ``time``,
``level``, ``logger``, ``message``, ``service``, ``request_id``, then the
record's extra fields and ``exc_info``), or one readable line
(``LOG_FORMAT=text``, the default when ``APP_ENV`` is development, as in the
local run). Configured by ``deploy/nameko.yaml`` for the services and by
``gateway/gunicorn.conf.py`` for the gateway.

The request id comes from where the work is being done: in a service, the
worker's caller (``kit.context``; the gateway puts its request id there, and
nameko carries it on to the RPCs and events that worker sends), bound per
worker by :class:`LogContext`; in the gateway, Flask's ``g.request_id``.

:class:`LogContext` also writes one line per RPC and per event handled
(``kit.access``: method, outcome, duration_ms, request_id) and keeps nameko
from logging a traceback for an expected, typed error: a ``ServiceError`` is
the caller's answer, already on that one INFO line.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import sys
import time
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer
from nameko.rpc import Rpc
from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from kit.context import CALLER_KEY, Caller
from kit.errors import ServiceError

ACCESS_LOGGER = "kit.access"
JSON, TEXT = "json", "text"
_RELAXED_ENVS = {"development", "dev", "testing", "test"}

# (service, request id) of the work this green thread (or thread) is doing
_context: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "kit_log_context", default=(None, None)
)
# the service of this process, for lines written outside any worker
_process_service: str | None = None

access_log = logging.getLogger(ACCESS_LOGGER)


def bind(service: str | None = None, request_id: str | None = None) -> contextvars.Token:
    """Makes the following lines of this green thread carry these values."""
    return _context.set((service, request_id))


def unbind(token: contextvars.Token) -> None:
    try:
        _context.reset(token)
    except ValueError:  # set in another context: nothing of ours to undo here
        pass


def set_process_service(name: str) -> None:
    """The service named on lines written outside any worker (start, stop)."""
    global _process_service
    _process_service = name


def current_service() -> str | None:
    return _context.get()[0] or _process_service


def current_request_id() -> str | None:
    """The request id of the work in progress: the worker's, else the Flask
    request's (``g.request_id``, the gateway), else None."""
    request_id = _context.get()[1]
    if request_id:
        return request_id
    flask = sys.modules.get("flask")  # only where Flask runs: never imported here
    if flask is not None and flask.has_app_context():
        return flask.g.get("request_id")
    return None


class ContextFilter(logging.Filter):
    """Adds ``service`` and ``request_id`` to every record it sees; put it on
    a handler (a logger's filters do not see records from its children)."""

    def __init__(self, name: str = "", service: str | None = None) -> None:
        super().__init__(name)
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "service", None) is None:
            record.service = current_service() or self.service
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


_FIRST = ("time", "level", "logger", "message", "service", "request_id")


class JsonFormatter(_BaseJsonFormatter):
    """``{"time", "level", "logger", "message", "service", "request_id", …}``."""

    def __init__(self, *args: Any, service: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("json_ensure_ascii", False)
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "service", "request_id"])
        super().__init__(*args, **kwargs)
        self.service = service

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_data["time"] = _iso_time(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data["service"] = _service_of(record, self.service)
        log_data["request_id"] = _request_id_of(record)
        merge_record_extra(record, log_data, reserved=self._skip_fields)
        for key, value in message_dict.items():  # exc_info, stack_info
            log_data[key] = value


class TextFormatter(logging.Formatter):
    """``2025-01-31T09:00:00.123+00:00 INFO kit.access [survey 5f1c…] message``."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_iso_time(record.created)} {record.levelname} {record.name} "
            f"[{_service_of(record, self.service) or '-'} {_request_id_of(record) or '-'}] "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def log_format(env: dict[str, str] | None = None) -> str:
    """``LOG_FORMAT`` (json or text); unset: text for development, else json."""
    env = os.environ if env is None else env
    chosen = (env.get("LOG_FORMAT") or "").strip().lower()
    if chosen in (JSON, TEXT):
        return chosen
    return TEXT if (env.get("APP_ENV") or "").strip().lower() in _RELAXED_ENVS else JSON


def formatter(service: str | None = None, format: str | None = None) -> logging.Formatter:
    """The formatter ``LOG_FORMAT`` asks for (``()`` factory for dictConfig)."""
    if (format or log_format()) == TEXT:
        return TextFormatter(service=service)
    return JsonFormatter(service=service)


def _iso_time(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")


def _service_of(record: logging.LogRecord, default: str | None) -> str | None:
    return getattr(record, "service", None) or current_service() or default


def _request_id_of(record: logging.LogRecord) -> str | None:
    return getattr(record, "request_id", None) or current_request_id()


# --- expected errors -------------------------------------------------------------

# nameko.containers logs every error raised by a worker with its traceback
# (ERROR, or WARNING for an entrypoint's expected_exceptions).
_NAMEKO_WORKER_LOGGER = "nameko.containers"


class ExpectedErrorFilter(logging.Filter):
    """Drops records whose exception is a ``ServiceError``: an expected answer,
    logged once at INFO by the access line, not a fault to trace back."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        return not (exc_info and isinstance(exc_info[1], ServiceError))


def quiet_expected_errors(logger_name: str = _NAMEKO_WORKER_LOGGER) -> None:
    """Installs :class:`ExpectedErrorFilter` on nameko's worker logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, ExpectedErrorFilter) for f in logger.filters):
        logger.addFilter(ExpectedErrorFilter())


# --- per worker ------------------------------------------------------------------


def request_id_of(worker_ctx) -> str | None:
    """The request id a worker serves: its caller's, else (an event relayed
    by a timer, with no caller) a ``request_id`` field of the event payload."""
    request_id = Caller.from_header(worker_ctx.data.get(CALLER_KEY)).request_id
    if not request_id and isinstance(worker_ctx.entrypoint, Consumer) and worker_ctx.args:
        payload = worker_ctx.args[0]
        if isinstance(payload, dict) and isinstance(payload.get("request_id"), str):
            request_id = payload["request_id"]
    return request_id


def outcome_fields(exc: BaseException | None) -> dict[str, str]:
    """``outcome`` ok, a typed error's class (with its ``code``) or unexpected
    (with the ``error`` class)."""
    if exc is None:
        return {"outcome": "ok"}
    if isinstance(exc, ServiceError):
        return {"outcome": type(exc).__name__, "code": exc.code}
    return {"outcome": "unexpected", "error": type(exc).__name__}


class LogContext(DependencyProvider):
    """Binds the service and request id for each worker's log lines, and
    writes one ``kit.access`` line per RPC and per event handled."""

    def setup(self) -> None:
        self.service = self.container.service_name
        if _process_service is None:
            set_process_service(self.service)
        quiet_expected_errors()
        self._workers: dict[Any, tuple[contextvars.Token, float, str | None]] = {}

    def worker_setup(self, worker_ctx) -> None:
        request_id = request_id_of(worker_ctx)
        self._workers[worker_ctx] = (
            bind(self.service, request_id),
            time.perf_counter(),
            request_id,
        )

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        started = self._workers.get(worker_ctx)
        entrypoint = worker_ctx.entrypoint
        if started is None or not isinstance(entrypoint, (Rpc, Consumer)):
            return  # timers: every second, nothing to tell
        _token, at, request_id = started
        fields: dict[str, Any] = {
            "kind": "rpc" if isinstance(entrypoint, Rpc) else "event",
            "service": self.service,
            "method": entrypoint.method_name,
            "request_id": request_id,
            "duration_ms": round((time.perf_counter() - at) * 1000, 1),
            **outcome_fields(exc_info[1] if exc_info else None),
        }
        source, event = (getattr(entrypoint, a, None) for a in ("source_service", "event_type"))
        if source and event:
            fields["event"] = f"{source}.{event}"
        access_log.log(
            logging.WARNING if fields["outcome"] == "unexpected" else logging.INFO,
            "%s %s.%s %s%s %.1f ms",
            fields["kind"],
            self.service,
            fields["method"],
            fields["outcome"],
            f" {fields['code']}" if "code" in fields else "",
            fields["duration_ms"],
            extra=fields,
        )

    def worker_teardown(self, worker_ctx) -> None:
        started = self._workers.pop(worker_ctx, None)
        if started is not None:
            unbind(started[0])

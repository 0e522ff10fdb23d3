"""kit.logs: JSON lines, the request id per worker, one INFO line for an
expected error."""

from __future__ import annotations

import json
import logging
import sys

import eventlet
import pytest
from nameko.exceptions import RemoteError
from nameko.standalone.rpc import ServiceRpcProxy

from kit import logs
from kit.context import CALLER_KEY, Caller
from kit.errors import NotFound
from kit.logs import ContextFilter, JsonFormatter, TextFormatter, bind, log_format, unbind


def record(message="hello %s", args=("you",), exc_info=None, **extra) -> logging.LogRecord:
    made = logging.LogRecord("kit.test", logging.INFO, __file__, 1, message, args, exc_info)
    for key, val in extra.items():
        setattr(made, key, val)
    return made


def test_a_json_line_has_the_fields_in_order_and_the_extra_ones_after():
    token = bind("survey", "req-7")
    try:
        line = JsonFormatter().format(record(method="get_survey", duration_ms=1.5))
    finally:
        unbind(token)

    data = json.loads(line)
    assert list(data)[:6] == ["time", "level", "logger", "message", "service", "request_id"]
    assert data["time"].endswith("+00:00")
    assert (data["level"], data["logger"], data["message"]) == ("INFO", "kit.test", "hello you")
    assert (data["service"], data["request_id"]) == ("survey", "req-7")
    assert (data["method"], data["duration_ms"]) == ("get_survey", 1.5)


def test_a_json_line_carries_the_exception_and_non_ascii_text_as_is(monkeypatch):
    # the formatter's service is the default: no container of an earlier test
    # may have named this process
    monkeypatch.setattr(logs, "_process_service", None)
    try:
        raise ValueError("échec")
    except ValueError:
        line = JsonFormatter(service="notify").format(record("désolé", (), exc_info=sys.exc_info()))

    data = json.loads(line)
    assert data["message"] == "désolé"
    assert data["service"] == "notify"
    assert data["request_id"] is None
    assert "ValueError: échec" in data["exc_info"]
    assert "désolé" in line


def test_the_filter_reads_the_request_id_of_the_current_worker():
    made = record()
    token = bind("files", "req-9")
    try:
        ContextFilter().filter(made)
    finally:
        unbind(token)

    assert (made.service, made.request_id) == ("files", "req-9")
    assert "[files req-9] hello you" in TextFormatter().format(made)


def test_json_is_the_default_format_and_text_the_one_for_development():
    assert log_format({}) == "json"
    assert log_format({"APP_ENV": "production"}) == "json"
    assert log_format({"APP_ENV": "development"}) == "text"
    assert log_format({"APP_ENV": "development", "LOG_FORMAT": "json"}) == "json"
    assert log_format({"LOG_FORMAT": "TEXT"}) == "text"


@pytest.fixture
def start(container_factory, rabbit_config, tmp_path):
    def make(service):
        config = dict(
            rabbit_config, **{f"{service.name.upper()}_DB_URL": f"sqlite:///{tmp_path}/p.db"}
        )
        container = container_factory(service, config)
        container.start()
        return config

    return make


def access_lines(caplog, method: str, timeout: float = 2.0) -> list[logging.LogRecord]:
    """The kit.access records of ``method`` (written just after the reply)."""
    with eventlet.Timeout(timeout, False):
        while not [r for r in caplog.records if getattr(r, "method", None) == method]:
            eventlet.sleep(0.02)
    return [r for r in caplog.records if r.name == "kit.access" and r.method == method]


@pytest.mark.integration
def test_an_expected_not_found_is_one_info_line_without_traceback(start, caplog, probe):
    caplog.set_level(logging.INFO)
    service = probe.service()
    config = start(service)
    caller = Caller(request_id="req-nf").to_header()

    with ServiceRpcProxy(service.name, config, context_data={CALLER_KEY: caller}) as proxy:
        with pytest.raises(NotFound):
            proxy.find("t-404")
    (line,) = access_lines(caplog, "find")

    assert line.levelno == logging.INFO
    assert line.exc_info is None
    assert (line.outcome, line.code, line.request_id) == ("NotFound", "probe.not_found", "req-nf")
    assert line.getMessage().startswith(f"rpc {service.name}.find NotFound probe.not_found ")
    assert [r for r in caplog.records if r.exc_info] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.integration
def test_an_unexpected_error_keeps_its_traceback(start, caplog, probe):
    caplog.set_level(logging.INFO)
    service = probe.service()
    config = start(service)

    with ServiceRpcProxy(service.name, config) as proxy:
        with pytest.raises(RemoteError):
            proxy.boom()
    (line,) = access_lines(caplog, "boom")

    assert (line.levelno, line.outcome, line.error) == (
        logging.WARNING,
        "unexpected",
        "RuntimeError",
    )
    traced = [r for r in caplog.records if r.exc_info and r.name == "nameko.containers"]
    assert len(traced) == 1 and traced[0].levelno == logging.ERROR


@pytest.mark.integration
def test_an_event_sent_by_a_worker_is_handled_with_its_request_id(start, caplog, probe):
    caplog.set_level(logging.INFO)
    source = probe.service()
    config = start(source)
    start(probe.listener(source.name))
    caller = Caller(request_id="req-evt").to_header()

    with ServiceRpcProxy(source.name, config, context_data={CALLER_KEY: caller}) as proxy:
        proxy.announce()
    (line,) = access_lines(caplog, "on_announced")

    assert (line.kind, line.outcome, line.request_id) == ("event", "ok", "req-evt")
    assert line.event == f"{source.name}.probe_announced"

"""One request id from the gateway's access line to the service's RPC line,
both JSON, on a real broker (the service runs in this process)."""

from __future__ import annotations

import io
import json
import logging

import eventlet
import pytest
from flask import Blueprint

from gateway.rpc import rpc
from kit.db import Database
from kit.entrypoints import rpc as nameko_rpc
from kit.errors import NotFound
from kit.logs import ContextFilter, JsonFormatter
from kit.service import ServiceBase

pytestmark = pytest.mark.integration

SERVICE = "logprobe"


class LogProbeService(ServiceBase):
    name = SERVICE
    db = Database(SERVICE)

    @nameko_rpc
    def whoami(self) -> dict:
        logging.getLogger("logprobe").info("looking up the caller")
        return {"request_id": self.caller.request_id}

    @nameko_rpc
    def find(self, thing_id: str) -> dict:
        raise NotFound("logprobe.not_found", "Chose introuvable.")


def views() -> Blueprint:
    bp = Blueprint("logprobe", __name__)

    @bp.get("/_logprobe/whoami")
    def whoami():
        return rpc().logprobe.whoami()

    @bp.get("/_logprobe/things/<thing_id>")
    def find(thing_id):
        return rpc().logprobe.find(thing_id)

    return bp


@pytest.fixture
def json_lines():
    """Every log line of this process as the platform writes it, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def read() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield read
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def client(broker_app, container_factory, rabbit_config, tmp_path):
    config = dict(rabbit_config, LOGPROBE_DB_URL=f"sqlite:///{tmp_path}/logprobe.db")
    container_factory(LogProbeService, config).start()
    app = broker_app()
    app.register_blueprint(views())
    return app.test_client()


def wait_for(read, predicate, timeout: float = 2.0) -> list[dict]:
    with eventlet.Timeout(timeout, False):
        while not [line for line in read() if predicate(line)]:
            eventlet.sleep(0.02)
    return [line for line in read() if predicate(line)]


def test_the_request_id_goes_from_the_gateway_line_to_the_service_rpc_line(client, json_lines):
    response = client.get("/_logprobe/whoami", headers={"X-Request-Id": "req-through-1"})
    (rpc_line,) = wait_for(json_lines, lambda line: line["logger"] == "kit.access")

    assert response.get_json() == {"request_id": "req-through-1"}
    lines = [line for line in json_lines() if line["request_id"] == "req-through-1"]
    by_logger = {line["logger"]: line for line in lines}
    assert set(by_logger) == {"logprobe", "kit.access", "gateway.access"}
    assert by_logger["logprobe"]["service"] == SERVICE
    assert rpc_line["request_id"] == "req-through-1"
    assert (rpc_line["service"], rpc_line["method"], rpc_line["outcome"]) == (
        SERVICE,
        "whoami",
        "ok",
    )
    assert rpc_line["duration_ms"] >= 0
    gateway_line = by_logger["gateway.access"]
    assert (gateway_line["service"], gateway_line["route"], gateway_line["status"]) == (
        "gateway",
        "/_logprobe/whoami",
        200,
    )
    assert gateway_line["level"] == "INFO"


def test_a_not_found_through_the_gateway_is_one_info_line_per_process(client, json_lines):
    response = client.get("/_logprobe/things/t-1", headers={"X-Request-Id": "req-nf-2"})
    wait_for(json_lines, lambda line: line["logger"] == "kit.access")

    assert response.status_code == 404
    lines = [line for line in json_lines() if line["request_id"] == "req-nf-2"]
    assert sorted((line["logger"], line["level"]) for line in lines) == [
        ("gateway.access", "INFO"),
        ("kit.access", "INFO"),
    ]
    assert all("exc_info" not in line for line in json_lines())
    assert next(line for line in lines if line["logger"] == "kit.access")["code"] == (
        "logprobe.not_found"
    )

"""gateway.metrics: requests by route and status, RPCs by outcome, who may
read /metrics, and the values of several processes added up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flask import Blueprint
from nameko.exceptions import RpcTimeout
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.parser import text_string_to_metric_families

from gateway import rpc as rpc_module
from gateway.config import ConfigError
from gateway.metrics import parse_allow
from gateway.rpc import Lease, RpcClient, RpcPool
from kit.errors import NotFound

REPO = Path(__file__).resolve().parents[2]
OPENAPI = "/api/v1/openapi.json"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_of(found: dict, route: str, status: str, method: str = "GET") -> float:
    labels = frozenset({"route": route, "method": method, "status": status}.items())
    return found.get(("http_requests_total", labels), 0.0)


def items_views() -> Blueprint:
    bp = Blueprint("items_probe", __name__)

    @bp.get("/_m/items/<item_id>")
    def item(item_id):
        return {"id": item_id}

    return bp


def test_metrics_count_a_request_by_its_route_and_status(make_app):
    app = make_app()
    app.register_blueprint(items_views())
    client = app.test_client()
    before = samples(client.get("/metrics").get_data(as_text=True))

    client.get("/_m/items/secret-42")
    client.get("/_m/items/other-7")
    client.get("/api/v1/no/such/thing-99")
    after = samples(client.get("/metrics").get_data(as_text=True))

    route = "/_m/items/<item_id>"
    assert requests_of(after, route, "200") - requests_of(before, route, "200") == 2
    assert requests_of(after, "<unmatched>", "404") - requests_of(before, "<unmatched>", "404") == 1
    count = (
        "http_request_duration_seconds_count",
        frozenset({"route": route, "method": "GET"}.items()),
    )
    assert after[count] - before.get(count, 0) == 2
    text = client.get("/metrics").get_data(as_text=True)
    assert "secret-42" not in text and "thing-99" not in text  # never the raw path


def test_metrics_answer_only_allowed_addresses_and_never_through_a_proxy(make_app):
    client = make_app().test_client()

    local = client.get("/metrics")
    remote = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    allowed = (
        make_app(METRICS_ALLOW="10.0.0.0/8")
        .test_client()
        .get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    )

    assert local.status_code == 200
    assert local.mimetype == "text/plain"
    assert "http_requests_total" in local.get_data(as_text=True)
    assert (remote.status_code, remote.get_json()["code"]) == (404, "http.not_found")
    assert proxied.status_code == 404
    assert allowed.status_code == 200


def test_metrics_allow_is_a_list_of_networks():
    assert [str(n) for n in parse_allow(None)] == ["127.0.0.0/8", "::1/128"]
    assert [str(n) for n in parse_allow("10.0.0.0/8, 192.168.1.7")] == [
        "10.0.0.0/8",
        "192.168.1.7/32",
    ]
    with pytest.raises(ConfigError, match="METRICS_ALLOW"):
        parse_allow("everyone")


class AnsweringClient:
    """A pooled client whose calls raise ``answers[method]`` or return it."""

    answers: dict = {}

    def __init__(self, config, timeout, connect_timeout):
        self.pid = rpc_module.os.getpid()
        self.dirty = False

    def call(self, service, method, args, kwargs, context):
        answer = self.answers[method]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def usable(self):
        return True

    def close(self):
        pass


def rpc_client_count(service: str, method: str, outcome: str) -> float:
    labels = {"service": service, "method": method, "outcome": outcome}
    return REGISTRY.get_sample_value("rpc_client_duration_seconds_count", labels) or 0.0


def test_rpcs_made_by_the_gateway_are_timed_by_outcome():
    AnsweringClient.answers = {
        "get": {"ok": True},
        "find": NotFound("thing.not_found"),
        "slow": RpcTimeout(),
        "odd": ValueError("private detail"),
    }
    pool = RpcPool({"AMQP_URI": "amqp://unused"}, timeout=1.0, client_cls=AnsweringClient)
    client = RpcClient(Lease(pool, lambda: "{}"))
    expected = [("get", "ok"), ("find", "NotFound"), ("slow", "RpcTimeout"), ("odd", "unexpected")]
    before = [rpc_client_count("mprobe", m, o) for m, o in expected]

    assert client.mprobe.get() == {"ok": True}
    for method, error in (("find", NotFound), ("slow", RpcTimeout), ("odd", ValueError)):
        with pytest.raises(error):
            getattr(client.mprobe, method)()

    after = [rpc_client_count("mprobe", m, o) for m, o in expected]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 1]


APP_PROCESS = textwrap.dedent(
    """
    import sys
    from gateway import create_app

    client = create_app({"TESTING": True}).test_client()
    for _ in range(int(sys.argv[1])):
        assert client.get(sys.argv[3]).status_code == 200
    if sys.argv[2] == "scrape":
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    """
)


def run_app_process(multiproc_dir: Path, requests: int, then: str) -> str:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "gateway"), str(REPO / "libs" / "kit")])
    done = subprocess.run(
        [sys.executable, "-c", APP_PROCESS, str(requests), then, OPENAPI],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_two_app_processes_in_multiprocess_mode_add_up_on_metrics(tmp_path):
    run_app_process(tmp_path, 3, "exit")
    scraped = samples(run_app_process(tmp_path, 2, "scrape"))

    assert requests_of(scraped, OPENAPI, "200") == 5
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    labels = {"route": OPENAPI, "method": "GET", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 5

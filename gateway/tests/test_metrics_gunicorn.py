"""Metrics and logs of the gateway under gunicorn: several worker processes
add up, on the app's /metrics and on the master's METRICS_PORT, and every
line gunicorn and the app write is JSON."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .test_gunicorn import free_port, running_gunicorn
from .test_metrics import OPENAPI, requests_of, samples

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 24


@pytest.fixture
def gunicorn(tmp_path):
    metrics_port = free_port()
    master = f"http://127.0.0.1:{metrics_port}"
    settings = dict(
        LOG_FORMAT="json",
        LOG_LEVEL="info",
        METRICS_PORT=str(metrics_port),
        METRICS_ADDR="127.0.0.1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        SERVICES="none",
    )
    log = tmp_path / "gunicorn.log"
    with running_gunicorn(settings, log, ready_urls=lambda _base: [f"{master}/metrics"]) as base:
        yield base, master, tmp_path


def test_the_workers_requests_add_up_on_both_metrics_endpoints(gunicorn):
    base, master, tmp_path = gunicorn

    def get(i):
        return requests.get(f"{base}{OPENAPI}", headers={"X-Request-Id": f"mp-{i}"}, timeout=5)

    with ThreadPoolExecutor(8) as pool:
        statuses = [r.status_code for r in pool.map(get, range(REQUESTS))]
    on_app = samples(requests.get(f"{base}/metrics", timeout=5).text)
    on_master = samples(requests.get(f"{master}/metrics", timeout=5).text)

    assert statuses == [200] * REQUESTS
    assert requests_of(on_app, OPENAPI, "200") == REQUESTS
    assert requests_of(on_master, OPENAPI, "200") == REQUESTS
    assert list((tmp_path / "prometheus").glob("counter_*.db"))

    lines = [
        json.loads(line)
        for line in (tmp_path / "gunicorn.log").read_text().splitlines()
        if line.startswith("{")
    ]
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert {line["request_id"] for line in access} >= {f"mp-{i}" for i in range(REQUESTS)}
    one = next(line for line in access if line["request_id"] == "mp-0")
    assert (one["service"], one["method"], one["route"], one["status"]) == (
        "gateway",
        "GET",
        OPENAPI,
        200,
    )
    assert any(line["logger"] == "gunicorn.error" for line in lines)

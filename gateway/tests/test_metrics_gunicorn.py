"""Metrics and logs of the gateway under gunicorn: several worker processes
add up, on the app's /metrics and on the master's METRICS_PORT, and every
line gunicorn and the app write is JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .test_gunicorn import free_port
from .test_metrics import OPENAPI, requests_of, samples

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 24


@pytest.fixture
def gunicorn(tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "SESSION_SECRET", "AMQP_URI", "SERVICES", "LOG_"))
    }
    env.update(
        GATEWAY_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        APP_ENV="development",
        LOG_FORMAT="json",
        LOG_LEVEL="info",
        METRICS_PORT=str(metrics_port),
        METRICS_ADDR="127.0.0.1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        SERVICES="none",
    )
    stderr = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gateway/gunicorn.conf.py",
            "gateway:create_app()",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"{base}/health/live", timeout=1)
            requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start: {(tmp_path / 'gunicorn.log').read_text()}")
            time.sleep(0.2)
    yield base, f"http://127.0.0.1:{metrics_port}", tmp_path
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    stderr.close()


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

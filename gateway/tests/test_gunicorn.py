"""The gateway under gunicorn (gthread, no monkey-patching) calls a real service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import eventlet
import pytest
import requests
from nameko.rpc import rpc as nameko_rpc

from .test_rpc_integration import SERVICE, ProbeService

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_gunicorn(settings: dict, log: Path, ready_urls=lambda base: (), started=None):
    """``gunicorn -c gateway/gunicorn.conf.py`` on a free port with ``settings``
    over a clean environment, output to ``log``; yields its base URL once
    ``/health/live`` (and every URL of ``ready_urls(base)``) answers; stopped
    with SIGTERM (SIGKILL after 30 s). ``started``, a list, receives the
    master's ``Popen``."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "SESSION_SECRET", "AMQP_URI", "SERVICES", "LOG_"))
    }
    env.update(GATEWAY_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2", APP_ENV="development")
    env.update(settings)
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
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
            stderr=out,
        )
        if started is not None:
            started.append(process)
        try:
            deadline = time.monotonic() + 40
            while True:
                try:
                    for url in (f"{base}/health/live", *ready_urls(base)):
                        requests.get(url, timeout=3)
                    break
                # refused before the master listens; a read timeout while the
                # workers still import the app (a loaded machine: over 1 s)
                except (requests.ConnectionError, requests.Timeout, TimeoutError):
                    if process.poll() is not None or time.monotonic() > deadline:
                        process.kill()
                        pytest.fail(f"gunicorn did not start: {log.read_text()[-2000:]}")
                    time.sleep(0.2)
            yield base
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def gunicorn(rabbit_config, tmp_path):
    settings = dict(AMQP_URI=rabbit_config["AMQP_URI"], SERVICES=SERVICE, HEALTH_RPC_TIMEOUT="2")
    with running_gunicorn(settings, tmp_path / "gunicorn.log") as base:
        yield base


def test_gunicorn_serves_the_app_and_reaches_services(gunicorn, container_factory, rabbit_config):
    container_factory(ProbeService, rabbit_config).start()

    live = requests.get(f"{gunicorn}/health/live", timeout=5)
    readies = [requests.get(f"{gunicorn}/health/ready", timeout=5) for _ in range(4)]
    missing = requests.get(f"{gunicorn}/api/v1/nope", headers={"X-Request-Id": "gw-1"}, timeout=5)

    assert live.json() == {"status": "ok"}
    assert [r.status_code for r in readies] == [200] * 4
    assert readies[0].json()["services"] == {SERVICE: "ok"}
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert missing.headers["X-Request-Id"] == "gw-1"


class NappingService:
    """``health`` answers after 2 s: a request in flight during a stop."""

    name = "gwnapping"
    calls: list[float] = []

    @nameko_rpc
    def health(self):
        NappingService.calls.append(time.monotonic())
        eventlet.sleep(2)
        return {"service": self.name, "status": "ok"}


def test_sigterm_lets_the_request_in_flight_finish_refuses_new_ones_and_exits(
    container_factory, rabbit_config, tmp_path
):
    NappingService.calls.clear()
    container_factory(NappingService, rabbit_config).start()
    settings = dict(
        AMQP_URI=rabbit_config["AMQP_URI"],
        SERVICES=NappingService.name,
        HEALTH_RPC_TIMEOUT="5",
        SHUTDOWN_GRACE_SECONDS="10",
    )
    started: list[subprocess.Popen] = []
    with running_gunicorn(settings, tmp_path / "gunicorn.log", started=started) as base:
        master = started[0]
        in_flight: dict = {}

        def slow_request():
            try:
                in_flight["response"] = requests.get(f"{base}/health/ready", timeout=15)
            except requests.RequestException as exc:  # pragma: no cover - the failure
                in_flight["error"] = exc

        thread = threading.Thread(target=slow_request)
        thread.start()
        # the request is in the gateway, waiting for the 2 s health RPC
        waited = time.monotonic() + 20
        while not NappingService.calls and time.monotonic() < waited:
            time.sleep(0.05)
        assert NappingService.calls, "the health RPC never arrived"
        time.sleep(0.3)
        stopped_at = time.monotonic()
        master.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # no longer accepting: refused once the master has closed its socket,
        # or left unanswered in the kernel's backlog until the worker exits
        # (Kubernetes routes elsewhere first: preStop and readiness)
        with pytest.raises((requests.RequestException, OSError)):
            requests.get(f"{base}/health/live", timeout=1)
        thread.join(timeout=15)
        code = master.wait(timeout=15)
        took = time.monotonic() - stopped_at

    assert "error" not in in_flight, in_flight
    assert in_flight["response"].status_code == 200  # drained, not cut
    assert in_flight["response"].json()["services"] == {NappingService.name: "ok"}
    assert code == 0
    assert took < 10, took  # within SHUTDOWN_GRACE_SECONDS

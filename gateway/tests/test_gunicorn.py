"""The gateway under gunicorn (gthread, no monkey-patching) calls a real service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from .test_rpc_integration import SERVICE, ProbeService

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_gunicorn(settings: dict, log: Path, ready_urls=lambda base: ()):
    """``gunicorn -c gateway/gunicorn.conf.py`` on a free port with ``settings``
    over a clean environment, output to ``log``; yields its base URL once
    ``/health/live`` (and every URL of ``ready_urls(base)``) answers; stopped
    with SIGTERM (SIGKILL after 30 s)."""
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
            [sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn.conf.py",
             "gateway:create_app()"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=out,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    for url in (f"{base}/health/live", *ready_urls(base)):
                        requests.get(url, timeout=1)
                    break
                except requests.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        process.kill()
                        pytest.fail(f"gunicorn did not start: {log.read_text()[-2000:]}")
                    time.sleep(0.2)
            yield base
        finally:
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

"""kit.metrics: the probes the orchestrator reads on METRICS_PORT
(``/health/live``, ``/health/ready``), on a real broker and PostgreSQL."""

from __future__ import annotations

import time
import urllib.parse

import eventlet
import pytest
import requests

from kit.db import make_engine

pytestmark = pytest.mark.integration

READY_BOUND = 15.0  # seconds to wait for a state the consumers reach by themselves


@pytest.fixture
def db_url(pg_database, probe):
    url = pg_database("kitready")
    engine = make_engine(url)
    probe.Base.metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def start(container_factory, rabbit_config, probe):
    """Starts a probe service whose database is ``url``; returns its metrics port."""

    def make(url: str, **settings) -> int:
        service = probe.service()
        port = probe.free_port()
        config = dict(
            rabbit_config,
            METRICS_PORT=port,
            **{f"{service.name.upper()}_DB_URL": url},
            **settings,
        )
        container_factory(service, config).start()
        return port

    return make


def get(port: int, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)


def wait_for_status(port: int, status: int) -> requests.Response:
    """Polls ``/health/ready`` until it answers ``status`` (bounded)."""
    deadline = time.monotonic() + READY_BOUND
    while True:
        response = get(port, "/health/ready")
        if response.status_code == status or time.monotonic() > deadline:
            return response
        eventlet.sleep(0.2)


def closed_port_url(probe) -> str:
    return f"postgresql://postgres@127.0.0.1:{probe.free_port()}/nothing_listens_here"


def test_a_healthy_service_is_live_and_ready_and_still_serves_its_metrics(start, db_url):
    port = start(db_url)

    live = get(port, "/health/live")
    ready = get(port, "/health/ready")
    metrics = get(port, "/metrics")

    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok"
    assert ready.json()["checks"] == {"amqp": "ok", "database": "ok"}
    assert metrics.status_code == 200
    assert "rpc_requests_total" in metrics.text
    assert metrics.headers["Content-Type"].startswith("text/plain")


def test_a_service_whose_database_refuses_is_live_but_not_ready(start, probe):
    port = start(closed_port_url(probe))

    started = time.monotonic()
    ready = get(port, "/health/ready")
    elapsed = time.monotonic() - started

    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "5"
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["database"]
    assert body["checks"] == {"amqp": "ok", "database": "unavailable"}
    assert elapsed < 3
    assert get(port, "/health/live").status_code == 200
    assert get(port, "/metrics").status_code == 200


def test_a_database_that_never_answers_is_cut_short_by_the_timeout(start, probe):
    """A listener that accepts the connection and says nothing: the check
    gives up after READINESS_TIMEOUT, and the server answers meanwhile."""
    silent = eventlet.listen(("127.0.0.1", 0))
    accepted = []
    eventlet.spawn(lambda: accepted.append(silent.accept()))
    url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/silent"
    try:
        port = start(url, READINESS_TIMEOUT=0.5)
        pending = eventlet.spawn(get, port, "/health/ready")
        eventlet.sleep(0.1)
        assert get(port, "/health/live").status_code == 200  # the hub is not blocked

        started = time.monotonic()
        ready = pending.wait()
        assert time.monotonic() - started < 2
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "timeout"
    finally:
        silent.close()


def test_a_service_whose_broker_connection_is_lost_is_not_ready_until_it_reconnects(
    start, db_url, rabbit_config, rabbit_manager, request
):
    port = start(db_url)
    assert get(port, "/health/ready").status_code == 200
    vhost = urllib.parse.urlsplit(rabbit_config["AMQP_URI"]).path.lstrip("/")
    user = urllib.parse.urlsplit(request.config.getoption("RABBIT_AMQP_URI")).username

    # the broker closes the connections of a deleted vhost at once and refuses
    # new ones until it exists again
    rabbit_manager.delete_vhost(vhost)
    try:
        lost = wait_for_status(port, 503)
    finally:
        rabbit_manager.create_vhost(vhost)
        rabbit_manager.set_vhost_permissions(vhost, user, ".*", ".*", ".*")

    assert lost.status_code == 503
    assert lost.json()["failed"] == ["amqp"]
    assert lost.json()["checks"] == {"amqp": "unavailable", "database": "ok"}
    assert get(port, "/health/live").status_code == 200
    back = wait_for_status(port, 200)
    assert back.status_code == 200, back.text


def test_a_scrape_while_the_database_never_answers_still_answers_without_the_outbox(start, probe):
    """The outbox gauges' query is bounded too: /metrics answers (the gauge
    that could not be read is left out, with one log line) instead of holding
    the scrape until Prometheus gives up."""
    silent = eventlet.listen(("127.0.0.1", 0))
    eventlet.spawn(lambda: silent.accept())
    url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/silent"
    try:
        port = start(url)
        started = time.monotonic()
        scraped = get(port, "/metrics")
        took = time.monotonic() - started
        assert scraped.status_code == 200
        assert took < 2.0 + 1.5, took  # OutboxProbe.timeout, not the client's 10 s
        assert "rpc_requests_total" in scraped.text or "# HELP" in scraped.text
    finally:
        silent.close()

"""kit.metrics: what a service exports, on a real broker and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import eventlet
import pytest
from nameko.exceptions import RemoteError
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from kit.db import make_engine, utcnow
from kit.errors import InvalidInput, NotFound
from kit.metrics import metrics_port, outcome_of

pytestmark = pytest.mark.integration


@pytest.fixture
def db_url(pg_database, probe):
    url = pg_database("kitmetrics")
    engine = make_engine(url)
    probe.Base.metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def start(container_factory, rabbit_config, db_url, probe):
    """Starts a fresh probe service; returns (its class, its config)."""

    def make(**settings):
        service = probe.service()
        config = dict(rabbit_config, **{f"{service.name.upper()}_DB_URL": db_url}, **settings)
        container = container_factory(service, config)
        container.start()
        return service, config

    return make


def test_the_service_answers_metrics_with_its_rpcs_counted_by_outcome(start, probe):
    port = probe.free_port()
    service, config = start(METRICS_PORT=port, max_workers=4)

    with ServiceRpcProxy(service.name, config) as proxy:
        proxy.whoami()
        with pytest.raises(NotFound):
            proxy.find("t-1")
        with pytest.raises(NotFound):
            proxy.find("t-2")
        with pytest.raises(RemoteError):
            proxy.boom()
    eventlet.sleep(0.1)  # the last worker's result is recorded just after its reply
    found = probe.scrape(port)
    value = probe.value

    name = service.name
    assert value(found, "rpc_requests_total", service=name, method="whoami", outcome="ok") == 1
    assert value(found, "rpc_requests_total", service=name, method="find", outcome="NotFound") == 2
    assert (
        value(found, "rpc_requests_total", service=name, method="boom", outcome="unexpected") == 1
    )
    assert value(found, "rpc_duration_seconds_count", service=name, method="find") == 2
    assert value(found, "worker_pool_max", service=name) == 4
    assert value(found, "worker_pool_in_use", service=name) == 0


def test_an_invalid_upload_counts_as_a_refusal_by_code_and_other_invalid_input_does_not(start):
    service, config = start()
    before = REGISTRY.get_sample_value("upload_refusals_total", {"code": "probe.too_large"}) or 0

    with ServiceRpcProxy(service.name, config) as proxy:
        assert proxy.upload(3) == {"size": 3}
        with pytest.raises(InvalidInput):
            proxy.upload(30)
        with pytest.raises(InvalidInput):
            proxy.rename("x")
    eventlet.sleep(0.1)

    assert REGISTRY.get_sample_value("upload_refusals_total", {"code": "probe.too_large"}) == (
        before + 1
    )
    assert REGISTRY.get_sample_value("upload_refusals_total", {"code": "probe.bad_name"}) is None


def test_the_outbox_lag_is_the_age_of_the_oldest_pending_row(start, db_url, probe):
    service, _config = start()
    labels = {"service": service.name}
    assert REGISTRY.get_sample_value("outbox_pending", labels) == 0
    assert REGISTRY.get_sample_value("outbox_lag_seconds", labels) == 0

    engine = make_engine(db_url)
    with Session(engine) as session:
        for age in (90, 30):
            session.add(
                probe.Outbox(
                    event_type="probe_announced",
                    payload={},
                    created_at=utcnow() - dt.timedelta(seconds=age),
                )
            )
        session.commit()
    engine.dispose()
    eventlet.sleep(1.1)  # the gauges are read at most once a second

    assert REGISTRY.get_sample_value("outbox_pending", labels) == 2
    assert 90 <= REGISTRY.get_sample_value("outbox_lag_seconds", labels) < 100


def test_metrics_are_served_only_when_a_port_is_given(monkeypatch):
    monkeypatch.delenv("METRICS_PORT", raising=False)

    assert metrics_port({}) == 0
    assert metrics_port({"METRICS_PORT": "0"}) == 0
    assert metrics_port({"METRICS_PORT": 9100}) == 9100
    monkeypatch.setenv("METRICS_PORT", "9101")
    assert metrics_port({}) == 9101


def test_an_outcome_is_ok_a_typed_error_class_or_unexpected():
    def info(exc):
        return (type(exc), exc, None)

    assert outcome_of(None) == "ok"
    assert outcome_of(info(NotFound())) == "NotFound"
    assert outcome_of(info(KeyError("secret value"))) == "unexpected"

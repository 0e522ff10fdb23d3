"""kit.runner: a stop that drains within its grace period, flushes the outbox
and kills what is left (its message redelivered), on a real broker."""

from __future__ import annotations

import time
import uuid

import eventlet
import pytest
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.timer import timer

from kit import runner

pytestmark = pytest.mark.integration


def slow_service():
    """A service whose ``work`` sleeps the first time it runs (later runs,
    a redelivery, return at once) and whose ``relay_outbox`` counts flushes."""
    state = {"runs": [], "flushes": 0}

    class Slow:
        name = f"slow_{uuid.uuid4().hex[:8]}"

        @rpc
        def work(self, seconds: float) -> str:
            state["runs"].append(time.monotonic())
            if len(state["runs"]) == 1:
                eventlet.sleep(seconds)
            return "done"

        @timer(interval=3600)
        def relay_outbox(self) -> None:
            state["flushes"] += 1

    return Slow, state


def start(container_factory, rabbit_config, service, grace: float):
    config = dict(
        rabbit_config,
        SERVICE_CONTAINER_CLS="kit.runner.GracefulContainer",
        SHUTDOWN_GRACE_SECONDS=grace,
        SHUTDOWN_FLUSH_SECONDS=2,
    )
    container = container_factory(service, config)
    assert isinstance(container, runner.GracefulContainer)
    container.start()
    return container, config


def call_in_background(service, config, seconds: float):
    def call():
        with ServiceRpcProxy(service.name, config, timeout=20) as proxy:
            return proxy.work(seconds)

    return eventlet.spawn(call)


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.02)


def test_stop_lets_the_worker_in_flight_finish_then_flushes_the_outbox(
    container_factory, rabbit_config
):
    service, state = slow_service()
    container, config = start(container_factory, rabbit_config, service, grace=10)
    call = call_in_background(service, config, 1.0)
    wait_for(lambda: state["runs"])

    started = time.monotonic()
    container.stop()
    took = time.monotonic() - started

    assert call.wait() == "done"  # replied before the connection closed
    assert len(state["runs"]) == 1
    assert state["flushes"] == 1  # one last relay, after the worker
    assert 0.5 < took < 8, took
    assert container.killed_workers == 0


def test_after_the_grace_period_the_worker_is_killed_and_its_call_redelivered(
    container_factory, rabbit_config
):
    service, state = slow_service()
    first, config = start(container_factory, rabbit_config, service, grace=0.5)
    call = call_in_background(service, config, 60)
    wait_for(lambda: state["runs"])

    started = time.monotonic()
    first.stop()
    took = time.monotonic() - started

    assert took < 5, took  # bounded by the grace period, not by the 60 s worker
    assert first.killed_workers == 1
    assert state["flushes"] == 1
    assert not call.dead  # no reply: the call was not acknowledged

    start(container_factory, rabbit_config, service, grace=10)  # another replica
    assert call.wait() == "done"  # the broker gave the message to it
    assert len(state["runs"]) == 2


def test_grace_comes_from_the_config_then_the_environment():
    assert (
        runner.seconds(
            {"SHUTDOWN_GRACE_SECONDS": "12"},
            "SHUTDOWN_GRACE_SECONDS",
            30,
            {"SHUTDOWN_GRACE_SECONDS": "5"},
        )
        == 12
    )
    assert runner.seconds({}, "SHUTDOWN_GRACE_SECONDS", 30, {"SHUTDOWN_GRACE_SECONDS": "5"}) == 5
    assert runner.seconds({"SHUTDOWN_GRACE_SECONDS": ""}, "SHUTDOWN_GRACE_SECONDS", 30, {}) == 30
    for bad in ("soon", "-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            runner.seconds({}, "SHUTDOWN_GRACE_SECONDS", 30, {"SHUTDOWN_GRACE_SECONDS": bad})


def test_stop_waits_for_a_slow_outbox_flush_to_finish(container_factory, rabbit_config):
    state = {"flush_started": 0, "flush_done": 0}

    class SlowFlush:
        name = f"flush_{uuid.uuid4().hex[:8]}"

        @rpc
        def ping(self) -> str:
            return "pong"

        @timer(interval=3600)
        def relay_outbox(self) -> None:
            state["flush_started"] += 1
            eventlet.sleep(1.5)
            state["flush_done"] += 1

    container, _config = start(container_factory, rabbit_config, SlowFlush, grace=10)
    eventlet.sleep(0.1)
    state.update(flush_started=0, flush_done=0)  # the timer's first tick at start

    started = time.monotonic()
    container.stop()
    took = time.monotonic() - started

    assert state["flush_started"] >= 1
    assert state["flush_done"] == state["flush_started"], state  # waited for, not cut
    assert 1.4 < took < 8, took

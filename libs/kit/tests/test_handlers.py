"""kit.handlers: a failing handler is retried with backoff then parked; an
undecodable body is parked; kit.deadletters lists and replays (real broker)."""

from __future__ import annotations

import json
import uuid

import eventlet
import pytest
from kombu import Connection, Exchange
from nameko.standalone.events import event_dispatcher

from kit import deadletters
from kit.handlers import PARKED, RETRIES, event_handler

pytestmark = pytest.mark.integration


def _service(behaviour: dict):
    """A service whose handler fails while ``behaviour['fail']`` > 0 (or always
    when it is None), recording every call and every success."""

    class Handling:
        name = f"handling_{uuid.uuid4().hex[:8]}"

        @event_handler("src_" + behaviour["source"], "thing_done")
        def on_thing_done(self, payload: dict) -> None:
            behaviour["calls"].append(payload["id"])
            if behaviour["fail"] is None or behaviour["fail"] > 0:
                if behaviour["fail"]:
                    behaviour["fail"] -= 1
                raise RuntimeError(f"database away for {payload['id']}")
            behaviour["handled"].append(payload["id"])

    return Handling


@pytest.fixture
def start(container_factory, rabbit_config):
    def make(fail, delays="0.3,0.3,0.3"):
        behaviour = {"fail": fail, "calls": [], "handled": [], "source": uuid.uuid4().hex[:6]}
        cls = _service(behaviour)
        config = dict(rabbit_config, EVENT_RETRY_DELAYS=delays)
        container = container_factory(cls, config)
        container.start()
        dispatch = event_dispatcher(config)
        return (
            cls,
            config,
            behaviour,
            lambda data: dispatch("src_" + behaviour["source"], "thing_done", data),
        )

    return make


def _wait(predicate, timeout=15.0):
    with eventlet.Timeout(timeout):
        while not predicate():
            eventlet.sleep(0.05)


def test_a_handler_failing_twice_then_succeeding_handles_the_event_once(start):
    cls, config, behaviour, dispatch = start(fail=2)
    retries = RETRIES.labels(service=cls.name, handler="on_thing_done")
    before = retries._value.get()
    dispatch({"id": "e1"})
    _wait(lambda: behaviour["handled"])
    eventlet.sleep(1.5)  # more than the retry delays: nothing comes back again
    assert behaviour["calls"] == ["e1", "e1", "e1"]
    assert behaviour["handled"] == ["e1"]
    assert retries._value.get() - before == 2
    assert deadletters.list_parked(config["AMQP_URI"], cls.name) == []


def test_a_handler_always_failing_parks_the_event_with_its_reason_then_replay_handles_it(start):
    cls, config, behaviour, dispatch = start(fail=None, delays="0.2,0.2")
    parked = PARKED.labels(service=cls.name, handler="on_thing_done", reason="failed")
    before = parked._value.get()
    dispatch({"id": "e2"})
    _wait(lambda: deadletters.list_parked(config["AMQP_URI"], cls.name))
    assert behaviour["calls"] == ["e2"] * 3  # the first attempt and two retries
    [entry] = deadletters.list_parked(config["AMQP_URI"], cls.name)
    assert entry["error"] == "RuntimeError: database away for e2"
    assert entry["handler"] == "on_thing_done"
    assert entry["attempts"] == 3
    assert entry["queue"] == f"evt-src_{behaviour['source']}-thing_done--{cls.name}.on_thing_done"
    assert entry["first_failure"]
    assert json.loads(entry["body"]) == {"id": "e2"}
    assert parked._value.get() - before == 1
    # listing twice keeps it parked
    assert len(deadletters.list_parked(config["AMQP_URI"], cls.name)) == 1

    behaviour["fail"] = 0  # the cause is fixed
    assert deadletters.replay(config["AMQP_URI"], cls.name) == 1
    _wait(lambda: behaviour["handled"])
    assert behaviour["handled"] == ["e2"]
    assert deadletters.list_parked(config["AMQP_URI"], cls.name) == []


def test_an_undecodable_body_is_parked_with_the_decode_error(start):
    cls, config, behaviour, _dispatch = start(fail=0)
    source = "src_" + behaviour["source"]
    with Connection(config["AMQP_URI"], transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(
            b"{not json",
            exchange=Exchange(f"{source}.events", type="topic"),
            routing_key="thing_done",
            content_type="application/json",
            content_encoding="utf-8",
            mandatory=True,
        )
    _wait(lambda: deadletters.list_parked(config["AMQP_URI"], cls.name))
    [entry] = deadletters.list_parked(config["AMQP_URI"], cls.name)
    assert entry["error"].startswith("decode error: ")
    assert entry["queue"] == f"evt-{source}-thing_done--{cls.name}.on_thing_done"
    assert entry["body"] == "{not json"
    assert behaviour["calls"] == []

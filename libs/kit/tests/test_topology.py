"""kit.topology: the durable event queues come from the code, every event
type is either consumed or declared unconsumed, and declaring them before any
consumer runs keeps an event published in the meantime."""

from __future__ import annotations

import pytest
from kombu import Connection
from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange

from kit import events, topology


def _event_types() -> set[str]:
    sources = {events.IDENTITY, events.NOTIFY, events.FILES, events.CARTE, events.SURVEY}
    return {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and value not in sources
    }


def test_every_event_type_is_consumed_by_a_service_or_declared_unconsumed():
    consumed = {b.event_type for b in topology.platform_bindings()}
    unconsumed = {event_type for _source, event_type in events.UNCONSUMED}
    assert not consumed & unconsumed, "a consumed type must be published as mandatory"
    assert _event_types() - consumed == unconsumed


def test_the_partner_events_and_the_emails_have_their_queues():
    queues = {b.queue for b in topology.platform_bindings()}
    assert "evt-survey-response_submitted--notify.on_partner_response_submitted" in queues
    assert "evt-identity-user_registered--notify.on_user_registered" in queues
    assert "evt-carte-request_validated--notify.on_partner_request_validated" in queues


@pytest.mark.integration
def test_an_event_published_after_declare_and_before_any_consumer_is_kept(rabbit_config):
    uri = rabbit_config["AMQP_URI"]
    names = topology.declare(uri)
    assert "notify.deadletter" in names and len(names) >= len(topology.platform_bindings())
    exchange = get_event_exchange(events.SURVEY, {})
    # mandatory: raises UndeliverableMessage if no queue were bound
    Publisher(uri, mandatory=True, use_confirms=True).publish(
        {"event_id": "evt-1"}, exchange=exchange, routing_key=events.RESPONSE_SUBMITTED
    )
    queue = "evt-survey-response_submitted--notify.on_partner_response_submitted"
    with Connection(uri) as conn:
        channel = conn.channel()
        _name, count, consumers = channel.queue_declare(queue, passive=True)
        message = channel.basic_get(queue, no_ack=True)
    assert (count, consumers) == (1, 0)
    assert "evt-1" in str(message.body)
    assert topology.declare(uri) == names  # idempotent


@pytest.mark.integration
def test_one_consumers_queue_deleted_while_another_remains_is_declared_again(rabbit_config):
    """identity.user_validated has two consumers (notify and survey): with
    survey's queue gone, a mandatory publication still succeeds (notify's
    queue takes it), so only the publisher's periodic check restores it."""
    uri = rabbit_config["AMQP_URI"]
    topology.declare(uri)
    gone = "evt-identity-user_validated--survey.on_user_validated"
    with Connection(uri) as conn:
        conn.channel().queue_delete(gone)
    restored_before = topology.RESTORED.labels(queue=gone)._value.get()

    assert topology.ensure_consumers(uri, "identity", "user_validated", now=1e9) == [gone]
    with Connection(uri) as conn:
        _name, count, _consumers = conn.channel().queue_declare(gone, passive=True)
    assert count == 0
    assert topology.RESTORED.labels(queue=gone)._value.get() == restored_before + 1
    # checked again only after TOPOLOGY_CHECK_SECONDS; nothing missing then
    assert topology.ensure_consumers(uri, "identity", "user_validated", now=1e9 + 1) == []
    assert topology.ensure_consumers(uri, "identity", "user_validated", now=1e9 + 120) == []


def test_the_check_never_raises_when_the_broker_is_away():
    away = "amqp://guest:guest@127.0.0.1:1/"
    assert topology.ensure_consumers(away, "identity", "user_validated", every=0) == []

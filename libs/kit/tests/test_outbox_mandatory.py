"""kit.outbox.relay: mandatory publication on a real broker — an event no
queue received stays pending and is counted, other types keep flowing, and it
is delivered once a queue exists."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection, Queue
from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from kit import outbox
from kit.db import OutboxMixin, make_base, make_engine

pytestmark = pytest.mark.integration

Base = make_base()


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"


@pytest.fixture
def session():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    db = sessionmaker(engine, expire_on_commit=False)()
    yield db
    db.close()
    engine.dispose()


@pytest.fixture
def bus(rabbit_config):
    source = f"src_{uuid.uuid4().hex[:8]}"
    uri = rabbit_config["AMQP_URI"]
    exchange = get_event_exchange(source, {})
    publisher = Publisher(uri, mandatory=True, use_confirms=True)

    def dispatch(event_type, payload):
        publisher.publish(payload, exchange=exchange, routing_key=event_type, declare=[exchange])

    def bind(event_type) -> str:
        name = f"q-{event_type}-{uuid.uuid4().hex[:6]}"
        with Connection(uri) as conn:
            Queue(name, exchange=exchange, routing_key=event_type, durable=True)(
                conn.channel()
            ).declare()
        return name

    def drain(name) -> list[dict]:
        got = []
        with Connection(uri) as conn:
            queue = Queue(name)(conn.channel())
            while (message := queue.get(no_ack=True)) is not None:
                got.append(message.decode())
        return got

    return source, dispatch, bind, drain


def _pending(session) -> list[str]:
    session.expire_all()
    rows = session.scalars(select(Outbox).where(Outbox.published_at.is_(None))).all()
    return sorted(r.payload["n"] for r in rows)


def test_an_unroutable_event_stays_pending_counted_and_others_flow_then_it_is_delivered(
    session, bus
):
    source, dispatch, bind, drain = bus
    listened = bind("listened")
    for n, event_type in [
        ("a1", "nobody_listens"),
        ("b1", "listened"),
        ("a2", "nobody_listens"),
        ("b2", "listened"),
    ]:
        outbox.emit(session, Outbox, event_type, {"n": n})
        session.commit()
    counter = outbox.UNROUTABLE.labels(service=source, event_type="nobody_listens")
    gauge = outbox.UNROUTABLE_NOW.labels(service=source, event_type="nobody_listens")

    assert outbox.relay(session, Outbox, dispatch, service=source) == 2
    assert _pending(session) == ["a1", "a2"]
    assert counter._value.get() == 1  # a1 refused; a2 waits behind it (order per type)
    assert gauge._value.get() == 1
    assert [m["n"] for m in drain(listened)] == ["b1", "b2"]

    assert outbox.relay(session, Outbox, dispatch, service=source) == 0  # still no queue
    assert counter._value.get() == 2

    late = bind("nobody_listens")  # the consumer's queue now exists
    assert outbox.relay(session, Outbox, dispatch, service=source) == 2
    assert _pending(session) == []
    assert [m["n"] for m in drain(late)] == ["a1", "a2"]
    assert gauge._value.get() == 0


def test_a_limit_full_of_unroutable_rows_does_not_block_other_types(session, bus):
    source, dispatch, bind, drain = bus
    listened = bind("listened")
    for i in range(5):
        outbox.emit(session, Outbox, "nobody_listens", {"n": f"a{i}"})
    outbox.emit(session, Outbox, "listened", {"n": "b"})
    session.commit()
    assert outbox.relay(session, Outbox, dispatch, limit=3, service=source) == 1
    assert [m["n"] for m in drain(listened)] == ["b"]
    assert len(_pending(session)) == 5


def test_the_relay_declares_the_consumers_queues_when_it_can(session, bus):
    source, dispatch, bind, drain = bus
    outbox.emit(session, Outbox, "late_type", {"n": "x"})
    session.commit()
    declared = []

    def on_unroutable(event_type):
        declared.append(bind(event_type))
        return True

    assert outbox.relay(session, Outbox, dispatch, service=source, on_unroutable=on_unroutable) == 1
    assert [m["n"] for m in drain(declared[0])] == ["x"]
    # visible in metrics, not only in a log line
    counted = outbox.DECLARED_BY_RELAY.labels(service=source, event_type="late_type")
    assert counted._value.get() == 1

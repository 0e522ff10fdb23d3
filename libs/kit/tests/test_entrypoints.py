"""kit.entrypoints and kit.rpc: calls that expire, malformed requests answered
at once; the deadline arithmetic alone, then services on the real broker."""

from __future__ import annotations

import json
import time
import uuid

import amqp
import eventlet
import kombu.serialization
import pytest
from nameko.events import EventDispatcher
from nameko.exceptions import deserialize
from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY

from kit.entrypoints import (
    DEADLINE_HEADER,
    MALFORMED_REQUEST,
    METHOD_NOT_FOUND,
    call_deadline,
    current_deadline,
    expiration_ms,
    format_deadline,
    parse_deadline,
    rpc,
)
from kit.errors import BadRequest, TooManyRequests
from kit.rpc import BoundedRpcProxy

# --- the arithmetic --------------------------------------------------------------


def test_a_deadline_header_reads_as_seconds_since_the_epoch():
    assert parse_deadline(None) is None
    assert parse_deadline("1765090000.125") == 1765090000.125
    assert parse_deadline(b"1765090000.5") == 1765090000.5
    assert parse_deadline(1765090000) == 1765090000.0
    assert parse_deadline(format_deadline(1765090000.1234)) == 1765090000.123
    for bad in ("soon", "", "nan", "inf", True, [1]):
        with pytest.raises((ValueError, TypeError)):
            parse_deadline(bad)


def test_a_nested_call_expires_at_the_earlier_of_its_timeout_and_its_callers_deadline():
    now = 1000.0
    assert call_deadline(5, None, now) == 1005.0
    assert call_deadline(5, 1002.5, now) == 1002.5  # the caller gives up first
    assert call_deadline(5, 1100.0, now) == 1005.0  # its own timeout comes first
    assert call_deadline(5, 990.0, now) == 990.0  # already passed: the caller must not send


def test_the_expiration_is_whole_milliseconds_rounded_up_and_never_zero():
    assert expiration_ms(5) == "5000"
    assert expiration_ms(0.0101) == "11"
    assert expiration_ms(0.0000001) == "1"


def test_a_worker_without_a_deadline_has_none():
    assert current_deadline(object()) is None


# --- services on the broker --------------------------------------------------------

RAN: list[tuple[str, object]] = []


class WorkerCtx(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_ctx


class Echo:
    name = "echo"
    ctx = WorkerCtx()
    dispatch = EventDispatcher()

    @rpc
    def record(self, tag):
        RAN.append(("record", tag))
        return tag

    @rpc
    def slow(self, seconds):
        RAN.append(("slow", seconds))
        eventlet.sleep(seconds)
        return seconds

    @rpc
    def deadline(self):
        return current_deadline(self.ctx)

    @rpc
    def announce(self):
        self.dispatch("announced", {"n": 1})


class Front:
    name = "front"
    echo = BoundedRpcProxy("echo", timeout_setting="FRONT_RPC_TIMEOUT", busy_code="front.busy")
    ghost = BoundedRpcProxy("ghost", timeout_setting="FRONT_RPC_TIMEOUT", busy_code="front.busy")

    @rpc
    def nested_deadline(self):
        return self.echo.deadline()

    @rpc
    def call_ghost(self):
        return self.ghost.anything()


class Client:
    """Raw requests in nameko's wire format, to send what nameko would not."""

    def __init__(self, uri: str):
        parts = kombu.utils.url.parse_url(uri)
        self.connection = amqp.Connection(
            host=f"{parts['hostname']}:{parts['port'] or 5672}",
            userid=parts["userid"],
            password=parts["password"],
            virtual_host=parts["virtual_host"] or "/",
        )
        self.connection.connect()
        self.channel = self.connection.channel()
        self.channel.exchange_declare("nameko-rpc", "topic", durable=True, auto_delete=False)
        self.reply_to = str(uuid.uuid4())
        queue = f"rpc.reply-test-{self.reply_to}"
        self.channel.queue_declare(queue, exclusive=True, auto_delete=True)
        self.channel.queue_bind(queue, "nameko-rpc", self.reply_to)
        self.replies: dict[str, amqp.Message] = {}
        self.channel.basic_consume(queue, callback=self._on_reply, no_ack=True)

    def _on_reply(self, message):
        self.replies[message.properties["correlation_id"]] = message

    def send(
        self,
        routing_key,
        body=None,
        *,
        raw=None,
        content_type="application/json",
        headers=None,
        expiration=None,
    ) -> str:
        correlation_id = str(uuid.uuid4())
        if raw is None:
            raw = json.dumps(body)
        properties = {"expiration": expiration} if expiration else {}
        message = amqp.Message(
            raw,
            content_type=content_type,
            content_encoding="utf-8",
            application_headers=headers or {},
            correlation_id=correlation_id,
            reply_to=self.reply_to,
            delivery_mode=2,
            **properties,
        )
        self.channel.basic_publish(message, "nameko-rpc", routing_key)
        return correlation_id

    def reply(self, correlation_id, timeout=5.0):
        """The decoded reply body, or None if none came within ``timeout``."""
        deadline = time.monotonic() + timeout
        while correlation_id not in self.replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                self.connection.drain_events(timeout=min(remaining, 0.2))
            except TimeoutError:
                pass
        message = self.replies.pop(correlation_id)
        return kombu.serialization.loads(
            message.body,
            message.properties["content_type"],
            message.properties.get("content_encoding"),
        )

    def close(self):
        self.connection.close()


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def echo(container_factory, rabbit_config):
    RAN.clear()

    def start(**config):
        container = container_factory(Echo, dict(rabbit_config, **config))
        container.start()
        return container

    return start


@pytest.fixture
def client(rabbit_config):
    made = Client(rabbit_config["AMQP_URI"])
    yield made
    made.close()


def call(client, method, *args, service="echo", headers=None, timeout=5.0):
    cid = client.send(f"{service}.{method}", {"args": list(args), "kwargs": {}}, headers=headers)
    return client.reply(cid, timeout)


@pytest.mark.integration
def test_a_call_whose_deadline_passed_is_dropped_unexecuted_and_counted(echo, client):
    echo()
    before = sample("rpc_expired_total", service="echo", method="record")
    late = {DEADLINE_HEADER: format_deadline(time.time() - 1)}
    expired = client.send("echo.record", {"args": ["late"], "kwargs": {}}, headers=late)
    ok = call(
        client, "record", "on time", headers={DEADLINE_HEADER: format_deadline(time.time() + 10)}
    )

    assert ok == {"result": "on time", "error": None}
    assert client.reply(expired, timeout=0.5) is None  # nobody waits: no reply
    assert RAN == [("record", "on time")]
    assert sample("rpc_expired_total", service="echo", method="record") == before + 1


@pytest.mark.integration
def test_a_call_that_expires_while_waiting_for_a_worker_is_not_run(echo, client):
    echo(max_workers=1)
    before = sample("rpc_expired_total", service="echo", method="record")
    busy = client.send("echo.slow", {"args": [0.6], "kwargs": {}})
    eventlet.sleep(0.1)  # the only worker is busy for 0.6 s
    waiting = client.send(
        "echo.record",
        {"args": ["waited"], "kwargs": {}},
        headers={DEADLINE_HEADER: format_deadline(time.time() + 0.2)},
    )

    assert client.reply(busy)["result"] == 0.6
    assert client.reply(waiting, timeout=0.5) is None
    # it arrived in time, so it was held until the worker freed up: then dropped
    assert RAN == [("slow", 0.6)]
    assert sample("rpc_expired_total", service="echo", method="record") == before + 1
    assert call(client, "record", "next") == {"result": "next", "error": None}


@pytest.mark.integration
def test_the_broker_drops_a_queued_call_once_its_expiration_passed(echo, client, rabbit_config):
    # queued while the service is not there yet (the queue exists, no consumer)
    client.channel.queue_declare("rpc-echo", durable=True, auto_delete=False)
    client.channel.queue_bind("rpc-echo", "nameko-rpc", "echo.*")
    client.send("echo.record", {"args": ["stale"], "kwargs": {}}, expiration="100")
    time.sleep(0.3)
    echo()
    assert call(client, "record", "fresh")["result"] == "fresh"
    assert RAN == [("record", "fresh")]


@pytest.mark.integration
def test_a_worker_knows_its_deadline_and_a_call_without_one_has_none(echo, client):
    echo()
    deadline = time.time() + 30
    assert call(client, "deadline", headers={DEADLINE_HEADER: format_deadline(deadline)}) == {
        "result": pytest.approx(deadline, abs=0.001),
        "error": None,
    }
    assert call(client, "deadline") == {"result": None, "error": None}


def _bad_request(reply) -> BadRequest:
    assert reply is not None, "no reply: the caller would wait for its timeout"
    error = deserialize(reply["error"])
    assert isinstance(error, BadRequest), error
    return error


@pytest.mark.integration
@pytest.mark.parametrize(
    "raw, content_type",
    [
        ("{not json", "application/json"),
        ("plain words", "text/plain"),  # a content type the service does not accept
    ],
)
def test_a_body_that_cannot_be_decoded_gets_an_error_reply_at_once(echo, client, raw, content_type):
    echo()
    before = sample("rpc_malformed_total", service="echo")
    started = time.monotonic()
    cid = client.send("echo.record", raw=raw, content_type=content_type)
    error = _bad_request(client.reply(cid, timeout=3))
    assert time.monotonic() - started < 1.0
    assert error.code == MALFORMED_REQUEST
    assert sample("rpc_malformed_total", service="echo") == before + 1
    assert RAN == []
    # and the service goes on serving
    assert call(client, "record", "after")["result"] == "after"


@pytest.mark.integration
@pytest.mark.parametrize(
    "body, headers, code",
    [
        ([1, 2], None, MALFORMED_REQUEST),
        ({"args": ["x"]}, None, MALFORMED_REQUEST),
        ({"args": "x", "kwargs": {}}, None, MALFORMED_REQUEST),
        ({"args": ["x"], "kwargs": []}, None, MALFORMED_REQUEST),
        ({"args": ["x"], "kwargs": {}}, {DEADLINE_HEADER: "tomorrow"}, MALFORMED_REQUEST),
    ],
)
def test_a_request_that_is_not_args_and_kwargs_gets_a_typed_error(
    echo, client, body, headers, code
):
    echo()
    cid = client.send("echo.record", body, headers=headers)
    assert _bad_request(client.reply(cid, timeout=3)).code == code
    assert RAN == []


@pytest.mark.integration
def test_an_unknown_method_gets_a_typed_error(echo, client):
    echo()
    error = _bad_request(call(client, "no_such_method", timeout=3))
    assert error.code == METHOD_NOT_FOUND
    assert error.details == {"method": "no_such_method"}


@pytest.mark.integration
def test_an_event_dispatched_while_serving_a_call_does_not_carry_its_deadline(echo, client):
    echo()
    channel = client.channel
    channel.exchange_declare("echo.events", "topic", durable=True, auto_delete=False)
    queue, _, _ = channel.queue_declare("", exclusive=True)
    channel.queue_bind(queue, "echo.events", "announced")
    call(client, "announce", headers={DEADLINE_HEADER: format_deadline(time.time() + 30)})
    message = None
    for _ in range(20):
        message = channel.basic_get(queue, no_ack=True)
        if message is not None:
            break
        time.sleep(0.05)
    assert message is not None
    headers = message.properties["application_headers"]
    assert "nameko.call_id_stack" in headers
    assert DEADLINE_HEADER not in headers


@pytest.fixture
def front(container_factory, rabbit_config, echo):
    def start(timeout=10):
        echo()
        config = dict(rabbit_config, FRONT_RPC_TIMEOUT=str(timeout))
        container = container_factory(Front, config)
        container.start()
        return container

    return start


@pytest.mark.integration
def test_a_nested_call_inherits_the_earlier_deadline(front, client):
    front(timeout=10)
    near = time.time() + 3
    inherited = call(
        client, "nested_deadline", service="front", headers={DEADLINE_HEADER: format_deadline(near)}
    )["result"]
    assert inherited == pytest.approx(near, abs=0.002)

    far = time.time() + 600
    started = time.time()
    own = call(
        client, "nested_deadline", service="front", headers={DEADLINE_HEADER: format_deadline(far)}
    )["result"]
    assert started + 9 < own <= time.time() + 10

    started = time.time()
    unbounded = call(client, "nested_deadline", service="front")["result"]
    assert started + 9 < unbounded <= time.time() + 10


@pytest.mark.integration
def test_a_nested_call_carries_its_expiration_and_gives_up_at_the_deadline(front, client):
    front(timeout=10)
    # a queue for "ghost" with no consumer: the nested call waits there
    client.channel.queue_declare("rpc-ghost", durable=True, auto_delete=False)
    client.channel.queue_bind("rpc-ghost", "nameko-rpc", "ghost.*")
    started = time.monotonic()
    reply = call(
        client,
        "call_ghost",
        service="front",
        headers={DEADLINE_HEADER: format_deadline(time.time() + 0.8)},
    )
    elapsed = time.monotonic() - started
    error = deserialize(reply["error"])
    assert isinstance(error, TooManyRequests) and error.code == "front.busy"
    assert 0.6 < elapsed < 2.5  # the caller's 0.8 s, not the proxy's 10 s

    message = client.channel.basic_get("rpc-ghost", no_ack=True)
    if message is not None:  # the broker may have expired it already
        expiration = int(message.properties["expiration"])
        assert 0 < expiration <= 800
        deadline = parse_deadline(message.properties["application_headers"][DEADLINE_HEADER])
        assert deadline == pytest.approx(time.time(), abs=1.5)


def test_a_nested_call_whose_deadline_already_passed_is_not_sent():
    class Ctx:
        deadline = time.time() - 0.01

    class NoProxy:  # any attribute read would mean a publish was attempted
        def __getattr__(self, name):
            raise AssertionError(f"the proxy was used ({name})")

    from kit.rpc import Bounded

    with pytest.raises(TooManyRequests) as raised:
        Bounded(NoProxy(), 10, "front.busy", Ctx()).anything()
    assert raised.value.code == "front.busy"


# --- the RPC queue is a quorum queue ---------------------------------------------------


def _declares(client, queue, **kwargs) -> bool:
    """Whether ``queue`` can be declared with these arguments (RabbitMQ refuses
    another type or durability with PRECONDITION_FAILED, closing the channel)."""
    channel = client.connection.channel()
    try:
        channel.queue_declare(queue, auto_delete=False, **kwargs)
    except amqp.exceptions.PreconditionFailed:
        return False
    channel.close()
    return True


@pytest.mark.integration
def test_the_rpc_queue_is_a_quorum_queue_whose_expired_calls_the_broker_drops(echo, client):
    from kit.entrypoints import rpc_queue_type

    # left by an earlier run of this version: a quorum queue, calls waiting in it
    assert _declares(client, "rpc-echo", durable=True, arguments={"x-queue-type": "quorum"})
    client.channel.queue_bind("rpc-echo", "nameko-rpc", "echo.*")
    client.send("echo.record", {"args": ["stale"], "kwargs": {}}, expiration="100")
    time.sleep(0.3)
    echo()

    assert call(client, "record", "fresh")["result"] == "fresh"
    assert RAN == [("record", "fresh")]  # per-message expiration on a quorum queue
    assert rpc_queue_type("echo") == "quorum"
    assert not _declares(client, "rpc-echo", durable=True)  # classic: refused
    assert _declares(client, "rpc-echo", durable=True, arguments={"x-queue-type": "quorum"})


@pytest.mark.integration
def test_a_classic_rpc_queue_left_by_an_older_version_is_served_with_a_warning(
    echo, client, caplog
):
    from kit.entrypoints import rpc_queue_type

    caplog.set_level("WARNING", logger="kit.entrypoints")
    client.channel.queue_declare("rpc-echo", durable=True, auto_delete=False)
    client.channel.queue_bind("rpc-echo", "nameko-rpc", "echo.*")
    client.send("echo.record", {"args": ["queued"], "kwargs": {}})
    echo()

    assert call(client, "record", "served")["result"] == "served"
    deadline = time.monotonic() + 3
    while len(RAN) < 2 and time.monotonic() < deadline:
        eventlet.sleep(0.05)
    assert sorted(RAN) == [("record", "queued"), ("record", "served")]
    assert rpc_queue_type("echo") == "classic"
    [warning] = [r for r in caplog.records if "classic queue" in r.getMessage()]
    assert "delete_queue rpc-echo" in warning.getMessage()


@pytest.mark.integration
def test_replies_to_a_bounded_proxy_come_on_a_transient_queue(front, client):
    from kit.rpc import ReplyListener

    container = front(timeout=10)
    assert call(client, "nested_deadline", service="front")["result"] is not None
    [listener] = [e for e in container.subextensions if isinstance(e, ReplyListener)]
    name = listener.queue.name
    assert name.startswith("rpc.reply-front-")
    # not durable (a durable classic queue cannot be declared again while its
    # node is down); nameko's expiry kept
    assert not _declares(client, name, durable=True, arguments={"x-expires": 300000})
    assert _declares(client, name, durable=False, arguments={"x-expires": 300000})


# --- a link lost while a worker finishes: the service lives on --------------------------


class _LostLinkMessage:
    """A delivered message whose connection was reset under it."""

    class channel:  # noqa: N801 - the attribute nameko reads
        connection = object()  # still looks alive

    def ack(self):
        raise ConnectionResetError(104, "Connection reset by peer")

    def requeue(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_acks_and_requeues_on_a_reset_connection_do_not_raise():
    from kit.entrypoints import QueueConsumer

    consumer = QueueConsumer()
    consumer.ack_message(_LostLinkMessage())
    consumer.requeue_message(_LostLinkMessage())


@pytest.mark.integration
def test_a_reply_that_cannot_be_published_leaves_the_service_running(echo, client, monkeypatch):
    import nameko.rpc

    container = echo()
    before = sample("rpc_reply_failed_total", service="echo")
    send_response = nameko.rpc.Responder.send_response
    failures = []

    def nacked_once(self, result, exc_info):
        if not failures:
            failures.append(result)
            raise amqp.exceptions.MessageNacked()
        return send_response(self, result, exc_info)

    monkeypatch.setattr(nameko.rpc.Responder, "send_response", nacked_once)
    lost = client.send("echo.record", {"args": ["unanswered"], "kwargs": {}})

    assert client.reply(lost, timeout=1.0) is None  # its caller gives up at its deadline
    assert call(client, "record", "next") == {"result": "next", "error": None}
    assert failures == ["unanswered"]
    assert RAN == [("record", "unanswered"), ("record", "next")]  # acknowledged: not run again
    assert sample("rpc_reply_failed_total", service="echo") == before + 1
    assert not container._died.ready()  # nameko would have killed the service

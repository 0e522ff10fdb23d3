"""The lean py-amqp RPC client against a real nameko service on a real broker.

What matters is that a service cannot tell it from nameko's own proxy (same
message, same context headers), that answers come back the same way (typed
errors, kombu's JSON types), and that the client survives what a pooled
client meets: timeouts with late replies, unknown services, dead links.
"""

from __future__ import annotations

import datetime
import logging
import socket
import time

import amqp
import eventlet
import pytest
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.rpc import rpc as nameko_rpc
from nameko.standalone.rpc import ClusterRpcProxy

from gateway.amqp_rpc import (
    AmqpRpcClient,
    LinkError,
    NoConsumer,
    OutcomeUnknown,
    connection_params,
    connection_params_list,
    consumer_counts,
    nodes_down,
)
from kit.context import CALLER_KEY, CallerProvider
from kit.entrypoints import DEADLINE_HEADER
from kit.entrypoints import rpc as kit_rpc
from kit.errors import Conflict

SERVICE = "leanprobe"
WHEN = datetime.datetime(2024, 5, 17, 9, 30, 15, 123456)


class LeanProbe:
    name = SERVICE
    caller = CallerProvider()

    @nameko_rpc
    def echo(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    @nameko_rpc
    def whoami(self):
        return {"user_id": self.caller.user_id, "request_id": self.caller.request_id}

    @nameko_rpc
    def when(self, moment):
        return {"moment": moment, "is_datetime": isinstance(moment, datetime.datetime)}

    @nameko_rpc
    def clash(self):
        raise Conflict("conflict.thing", "Déjà pris.", {"thing": 1})

    @nameko_rpc
    def crash(self):
        raise KeyError("oops")

    @nameko_rpc
    def nap(self, seconds, tag):
        eventlet.sleep(seconds)
        return tag


@pytest.fixture
def probe(container_factory, rabbit_config):
    container = container_factory(LeanProbe, rabbit_config)
    container.start()
    return container


@pytest.fixture
def make_client(rabbit_config):
    clients = []

    def make(timeout=2.0, uri=None, connect_timeout=2.0):
        client = AmqpRpcClient(uri or rabbit_config["AMQP_URI"], timeout, connect_timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def closed_port_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


def caller_header(user_id="u-1", request_id="r-1"):
    return {CALLER_KEY: f'{{"user_id":"{user_id}","request_id":"{request_id}"}}'}


# --- the wire format ---------------------------------------------------------------


def capture(uri, send):
    """The message ``send()`` publishes for ``capture.probe`` (nobody answers)."""
    params = connection_params(uri)
    connection = amqp.Connection(**params)
    connection.connect()
    try:
        channel = connection.channel()
        channel.exchange_declare("nameko-rpc", "topic", durable=True, auto_delete=False)
        queue = channel.queue_declare("", exclusive=True).queue
        channel.queue_bind(queue, "nameko-rpc", "capture.*")
        got = []
        channel.basic_consume(queue, callback=got.append, no_ack=True)
        sender = eventlet.spawn(send)
        connection.drain_events(timeout=5)
        sender.wait()
        return got[0]
    finally:
        connection.close()


def test_the_request_is_the_one_nameko_sends(rabbit_config, make_client):
    uri = rabbit_config["AMQP_URI"]
    context = {"caller": '{"user_id":"u-9"}'}

    def by_nameko():
        with ClusterRpcProxy({"AMQP_URI": uri}, context_data=context, timeout=0.3) as proxy:
            with pytest.raises(RpcTimeout):
                proxy.capture.probe(1, "é", when=[1, 2])

    def by_lean():
        client = make_client(timeout=0.3)
        client.check_consumers = False  # the capture queue has no consumer
        with pytest.raises(RpcTimeout):
            client.call("capture", "probe", (1, "é"), {"when": [1, 2]}, context)

    theirs, ours = capture(uri, by_nameko), capture(uri, by_lean)

    assert ours.body == theirs.body
    assert ours.delivery_info["routing_key"] == theirs.delivery_info["routing_key"]
    volatile = ("correlation_id", "reply_to", "application_headers", "expiration")
    assert {k: v for k, v in ours.properties.items() if k not in volatile} == {
        k: v for k, v in theirs.properties.items() if k not in volatile
    }
    ours_headers = ours.properties["application_headers"]
    theirs_headers = theirs.properties["application_headers"]
    assert theirs_headers.keys() == {"nameko.caller", "nameko.call_id_stack"}
    # and what calls that expire add (kit.entrypoints)
    assert ours_headers.keys() == {"nameko.caller", "nameko.call_id_stack", DEADLINE_HEADER}
    assert 0 < int(ours.properties["expiration"]) <= 300
    deadline = float(ours_headers[DEADLINE_HEADER])
    assert time.time() - 5 < deadline < time.time() + 0.3
    assert ours_headers["nameko.caller"] == theirs_headers["nameko.caller"]
    (call_id,) = ours_headers["nameko.call_id_stack"]
    assert call_id.rsplit(".", 1)[0] == theirs_headers["nameko.call_id_stack"][0].rsplit(".", 1)[0]
    assert ours.properties["reply_to"] and ours.properties["correlation_id"]


def test_results_and_context_reach_both_ways(probe, make_client):
    client = make_client()

    assert client.call(SERVICE, "echo", (1, "é"), {"k": [None, 2.5]}) == {
        "args": [1, "é"],
        "kwargs": {"k": [None, 2.5]},
    }
    assert client.call(SERVICE, "whoami", context=caller_header("u-7", "r-7")) == {
        "user_id": "u-7",
        "request_id": "r-7",
    }


def test_datetimes_travel_as_with_nameko(probe, make_client, rabbit_config):
    ours = make_client().call(SERVICE, "when", (WHEN,))
    with ClusterRpcProxy({"AMQP_URI": rabbit_config["AMQP_URI"]}, timeout=2) as proxy:
        theirs = proxy[SERVICE].when(WHEN)

    assert ours == theirs == {"moment": WHEN, "is_datetime": True}


def test_typed_errors_arrive_typed_and_others_as_remote_errors(probe, make_client):
    client = make_client()

    with pytest.raises(Conflict) as typed:
        client.call(SERVICE, "clash")
    with pytest.raises(RemoteError) as untyped:
        client.call(SERVICE, "crash")

    assert (typed.value.code, typed.value.message, typed.value.details) == (
        "conflict.thing",
        "Déjà pris.",
        {"thing": 1},
    )
    assert untyped.value.exc_type == "KeyError"
    assert client.call(SERVICE, "echo", (1,)) == {"args": [1], "kwargs": {}}


# --- unknown services, timeouts, late replies ----------------------------------------


def test_an_unknown_service_fails_at_once_and_the_client_goes_on(probe, make_client):
    client = make_client(timeout=5.0)

    started = time.monotonic()
    with pytest.raises(UnknownService) as raised:
        client.call("ghost", "anything")
    elapsed = time.monotonic() - started

    assert elapsed < 0.5
    assert "ghost" in str(raised.value)
    assert client.call(SERVICE, "echo", ()) == {"args": [], "kwargs": {}}
    assert client.connects == 1


def test_a_timeout_leaves_the_connection_usable_and_late_replies_are_dropped(
    probe, make_client, caplog
):
    caplog.set_level(logging.DEBUG, logger="gateway.amqp_rpc")
    # margins of 0.3 s or more: a loaded CI machine is late by tens of ms
    client = make_client(timeout=1.0)

    started = time.monotonic()
    with pytest.raises(RpcTimeout):
        client.call(SERVICE, "nap", (1.4, "late"))
    assert 0.99 < time.monotonic() - started < 1.4

    # the late reply arrives (at 1.4 s) while the next call waits (its answer
    # at about 1.6 s), and is not taken for its answer
    assert client.call(SERVICE, "nap", (0.6, "first")) == "first"
    assert client.call(SERVICE, "nap", (0.0, "second")) == "second"
    eventlet.sleep(0.3)
    assert client.call(SERVICE, "nap", (0.0, "third")) == "third"
    assert client.connects == 1
    assert "dropping a reply" in caplog.text


def test_late_replies_left_while_idle_are_dropped_before_the_next_call(probe, make_client):
    client = make_client(timeout=0.1)
    for tag in ("a", "b", "c"):
        with pytest.raises(RpcTimeout):
            client.call(SERVICE, "nap", (0.15, tag))
    eventlet.sleep(0.3)  # three late replies wait in the socket

    assert client.call(SERVICE, "nap", (0.0, "now")) == "now"
    assert client.connects == 1


def test_a_service_queue_without_consumers_answers_at_once_without_publishing(
    rabbit_config, make_client
):
    # the queue exists (as a stopped service leaves it) but nobody consumes
    params = connection_params(rabbit_config["AMQP_URI"])
    connection = amqp.Connection(**params)
    connection.connect()
    channel = connection.channel()
    channel.exchange_declare("nameko-rpc", "topic", durable=True, auto_delete=False)
    channel.queue_declare("rpc-sleeper", durable=True, auto_delete=False)
    channel.queue_bind("rpc-sleeper", "nameko-rpc", "sleeper.*")

    started = time.monotonic()
    with pytest.raises(NoConsumer):
        make_client(timeout=5).call("sleeper", "anything")
    assert time.monotonic() - started < 0.5

    _name, messages, consumers = channel.queue_declare("rpc-sleeper", passive=True)
    assert (messages, consumers) == (0, 0)  # nothing was published
    connection.close()


def test_the_consumer_count_is_looked_up_once_a_second_per_service(probe, make_client):
    consumer_counts.forget()
    client = make_client()
    before = consumer_counts.checks
    for _ in range(20):
        client.call(SERVICE, "echo")
    assert consumer_counts.checks == before + 1
    # a missing queue counts 0, and the side channel it closes is reopened
    with pytest.raises(NoConsumer):
        client.call("nobody", "anything")
    assert client.call(SERVICE, "echo") == {"args": [], "kwargs": {}}
    consumer_counts.forget()
    assert client.call(SERVICE, "echo") == {"args": [], "kwargs": {}}
    assert consumer_counts.checks == before + 3


def test_a_lost_link_after_publishing_is_outcome_unknown(probe, make_client):
    client = make_client(timeout=3)
    client.call(SERVICE, "echo")

    def cut_after_publish(routing_key, message, deadline, publish=client._publish):
        publish(routing_key, message, deadline)
        client.connection.transport.sock.shutdown(socket.SHUT_RDWR)

    client._publish = cut_after_publish
    with pytest.raises(OutcomeUnknown):
        client.call(SERVICE, "echo")


# --- the link ------------------------------------------------------------------------


def test_no_heartbeats_are_negotiated(probe, make_client):
    client = make_client()

    assert client.connection.heartbeat == 0


def test_a_connection_that_died_while_idle_is_reopened_before_publishing(probe, make_client):
    client = make_client()
    assert client.call(SERVICE, "nap", (0, "before")) == "before"

    client.connection.transport.sock.shutdown(socket.SHUT_RDWR)  # as a cut link would

    assert client.call(SERVICE, "nap", (0, "after")) == "after"
    assert client.connects == 2


def test_a_broker_that_cannot_be_reached_raises_link_error_quickly(make_client):
    started = time.monotonic()
    with pytest.raises(LinkError):
        make_client(uri=closed_port_uri())

    assert isinstance(LinkError("x"), ConnectionError)
    assert time.monotonic() - started < 1.0


def test_a_client_refuses_to_work_in_a_forked_child(probe, make_client):
    client = make_client()
    client.pid = client.pid + 1  # as seen from a child

    with pytest.raises(RuntimeError, match="fork"):
        client.call(SERVICE, "echo")


def test_close_is_idempotent(probe, make_client):
    client = make_client()
    client.close()
    client.close()

    assert not client.usable()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "amqp://guest:guest@127.0.0.1:5672/",
            {"host": "127.0.0.1:5672", "userid": "guest", "virtual_host": "/", "ssl": False},
        ),
        (
            "amqp://u:p%40ss@rabbit/vh1",
            {"host": "rabbit:5672", "userid": "u", "virtual_host": "vh1", "ssl": False},
        ),
        (
            "amqp://u:p@rabbit:5673/%2F",
            {"host": "rabbit:5673", "userid": "u", "virtual_host": "/", "ssl": False},
        ),
        ("amqps://u:p@rabbit/x", {"host": "rabbit:5671", "virtual_host": "x", "ssl": True}),
    ],
)
def test_connection_params_read_uris_as_kombu_does(uri, expected):
    params = connection_params(uri)

    assert {key: params[key] for key in expected} == expected
    if "p%40ss" in uri:
        assert params["password"] == "p@ss"


# --- a cluster's nodes: AMQP_URI lists them, ";"-separated --------------------------------


def test_connection_params_list_reads_each_node_of_a_failover_list():
    uri = "amqp://u:p@rabbit-1:5673/vh ; amqp://v:q@rabbit-2/vh;amqps://w:r@rabbit-3/vh;"

    nodes = connection_params_list(uri)

    assert [(n["host"], n["userid"], n["virtual_host"], n["ssl"]) for n in nodes] == [
        ("rabbit-1:5673", "u", "vh", False),
        ("rabbit-2:5672", "v", "vh", False),
        ("rabbit-3:5671", "w", "vh", True),
    ]
    assert connection_params(uri) == nodes[0]  # one node: the first
    assert connection_params_list("amqp://guest:guest@127.0.0.1:5672/") == [
        connection_params("amqp://guest:guest@127.0.0.1:5672/")
    ]


class Node:
    """A stand-in for one node of a cluster: a TCP relay to the test broker
    that can be lost (its port refuses connections, its links are cut)."""

    def __init__(self, broker_host: str):
        host, port = broker_host.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = eventlet.listen(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.server = eventlet.spawn(self._serve)

    def uri(self, vhost_uri: str) -> str:
        parts = connection_params(vhost_uri)
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{parts['virtual_host']}"

    def _serve(self):
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [downstream, upstream]
            eventlet.spawn(self._pump, downstream, upstream)
            eventlet.spawn(self._pump, upstream, downstream)

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except (OSError, EOFError):
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def lose(self):
        """Refuses new connections and cuts the open ones (shut down, so that
        the relay's readers wake up and leave: closing a socket another green
        thread waits on would raise in the hub)."""
        self.server.kill()
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        eventlet.sleep(0.05)
        for sock in self.sockets:
            sock.close()
        self.sockets = []


@pytest.fixture
def cluster_node(rabbit_config):
    made = []

    def make():
        node = Node(connection_params(rabbit_config["AMQP_URI"])["host"])
        made.append(node)
        return node

    yield make
    for node in made:
        node.lose()


def test_a_client_connects_to_the_first_node_that_answers(probe, make_client, rabbit_config):
    uri = rabbit_config["AMQP_URI"]
    dead = closed_port_uri().rstrip("/") + "/" + connection_params(uri)["virtual_host"]
    client = make_client(uri=f"{dead};{uri}")

    assert client.call(SERVICE, "echo", (1,)) == {"args": [1], "kwargs": {}}
    assert client.params["host"] == connection_params(uri)["host"]
    assert nodes_down.is_down(connection_params(dead)["host"])
    assert client.connects == 1


def test_a_client_whose_node_is_lost_reconnects_to_another(
    probe, make_client, rabbit_config, cluster_node
):
    uri = rabbit_config["AMQP_URI"]
    first = cluster_node()
    client = make_client(uri=f"{first.uri(uri)};{uri}")
    assert client.call(SERVICE, "nap", (0, "on the first")) == "on the first"
    assert client.params["host"] == f"127.0.0.1:{first.port}"

    first.lose()  # connections cut, the port refuses new ones

    started = time.monotonic()
    assert client.call(SERVICE, "nap", (0, "on the second")) == "on the second"
    assert time.monotonic() - started < 1.0
    assert client.params["host"] == connection_params(uri)["host"]
    assert client.connects == 2
    # the other clients of the process try the lost node last
    other = make_client(uri=f"{first.uri(uri)};{uri}")
    assert other.params["host"] == connection_params(uri)["host"]
    assert other.call(SERVICE, "nap", (0, "third")) == "third"


def test_a_call_in_flight_when_its_node_is_lost_is_outcome_unknown_then_the_next_succeeds(
    probe, make_client, rabbit_config, cluster_node
):
    uri = rabbit_config["AMQP_URI"]
    first = cluster_node()
    client = make_client(timeout=3, uri=f"{first.uri(uri)};{uri}")
    eventlet.spawn_after(0.3, first.lose)

    with pytest.raises(OutcomeUnknown):
        client.call(SERVICE, "nap", (1.0, "lost"))
    assert client.call(SERVICE, "nap", (0, "next")) == "next"
    assert client.params["host"] == connection_params(uri)["host"]


def test_no_node_answering_is_a_link_error_naming_each(make_client):
    one, two = closed_port_uri(), closed_port_uri()
    started = time.monotonic()
    with pytest.raises(LinkError) as raised:
        make_client(uri=f"{one};{two}")

    assert time.monotonic() - started < 1.0
    for uri in (one, two):
        assert connection_params(uri)["host"] in str(raised.value)


class QuorumProbe:
    """A service on kit's ``rpc``: its queue ``rpc-quorumprobe`` is a quorum queue."""

    name = "quorumprobe"

    @kit_rpc
    def echo(self, value):
        return value


def test_the_consumer_check_reads_quorum_rpc_queues(container_factory, rabbit_config, make_client):
    container = container_factory(QuorumProbe, rabbit_config)
    container.start()
    consumer_counts.forget()
    client = make_client()

    assert client.consumer_count("quorumprobe") == 1
    assert client.call("quorumprobe", "echo", ("q",)) == "q"

    container.stop()
    assert client.consumer_count("quorumprobe") == 0
    with pytest.raises(NoConsumer):
        client.call("quorumprobe", "echo", ("gone",))
    # and the queue was quorum indeed: a classic declaration is refused
    channel = client.connection.channel()
    with pytest.raises(amqp.exceptions.PreconditionFailed):
        channel.queue_declare("rpc-quorumprobe", durable=True, auto_delete=False)


def test_the_readiness_broker_check_tries_every_node(rabbit_config):
    from gateway.health import broker_reachable

    uri = rabbit_config["AMQP_URI"]
    started = time.monotonic()
    assert broker_reachable(f"{closed_port_uri()};{closed_port_uri()};{uri}", timeout=1.0)
    assert not broker_reachable(f"{closed_port_uri()};{closed_port_uri()}", timeout=1.0)
    assert broker_reachable(uri, timeout=1.0)
    assert time.monotonic() - started < 3.0

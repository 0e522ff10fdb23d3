"""The gateway against a real nameko service on a real broker.

Each test gets its own RabbitMQ vhost (``rabbit_config``) and runs the service
in this process (``container_factory``; the root conftest monkey-patched
eventlet). Views call it through ``rpc()`` exactly as the lead's views do.
The service uses ``kit.entrypoints.rpc`` (calls that expire), as ours do.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import eventlet
import pytest
from flask import Blueprint, g, request

from gateway.errors import PROBLEM_JSON
from gateway.rpc import pool_for, rpc
from kit.context import USER, Caller, CallerProvider
from kit.entrypoints import rpc as nameko_rpc
from kit.errors import NotFound

pytestmark = pytest.mark.integration

SERVICE = "gwprobe"


class ProbeService:
    name = SERVICE
    caller = CallerProvider()

    @nameko_rpc
    def health(self):
        return {"service": self.name, "status": "ok"}

    @nameko_rpc
    def whoami(self):
        c = self.caller
        return {
            "user_id": c.user_id,
            "org_id": c.org_id,
            "roles": list(c.roles),
            "request_id": c.request_id,
        }

    @nameko_rpc
    def find(self, thing_id):
        raise NotFound("not_found.thing", "Chose introuvable.", {"thing_id": thing_id})

    @nameko_rpc
    def nap(self, seconds):
        eventlet.sleep(seconds)
        return "awake"


# the readiness bound in these tests: far below gwslow's 5 s, far above a
# healthy probe's answer on a loaded 2-core machine (0.5 s failed there)
HEALTH_BOUND = 1.5


class SlowHealthService:
    name = "gwslow"

    @nameko_rpc
    def health(self):
        eventlet.sleep(5)
        return {"service": self.name, "status": "ok"}


def probe_views() -> Blueprint:
    bp = Blueprint("probe", __name__, url_prefix="/_probe")

    @bp.get("/whoami")
    def whoami():
        if request.headers.get("X-Test-User"):
            g.caller = Caller(user_id=request.headers["X-Test-User"], org_id="org-1", roles=(USER,))
        return rpc().gwprobe.whoami()

    @bp.get("/find/<thing_id>")
    def find(thing_id):
        return rpc().gwprobe.find(thing_id)

    @bp.get("/ghost")
    def ghost():
        return rpc().ghost.anything()

    @bp.get("/nap/<float:seconds>")
    def nap(seconds):
        return {"result": rpc().gwprobe.nap(seconds)}

    @bp.get("/twice")
    def twice():
        first = rpc().gwprobe.whoami()
        second = rpc()["gwprobe"].whoami()
        return {"same": first == second}

    return bp


@pytest.fixture
def probe(container_factory, rabbit_config):
    container = container_factory(ProbeService, rabbit_config)
    container.start()
    return container


@pytest.fixture
def probe_app(broker_app, probe):
    def make(**settings):
        app = broker_app(**settings)
        app.register_blueprint(probe_views())
        return app

    return make


def test_the_caller_and_request_id_reach_the_service(probe_app):
    client = probe_app().test_client()

    response = client.get("/_probe/whoami", headers={"X-Test-User": "u-42", "X-Request-Id": "r-1"})

    assert response.status_code == 200
    assert response.get_json() == {
        "user_id": "u-42",
        "org_id": "org-1",
        "roles": [USER],
        "request_id": "r-1",
    }


def test_an_anonymous_request_still_carries_its_request_id(probe_app):
    response = probe_app().test_client().get("/_probe/whoami")

    body = response.get_json()
    assert body["user_id"] is None
    assert body["request_id"] == response.headers["X-Request-Id"]


def test_a_typed_error_arrives_typed_and_maps_to_its_status(probe_app):
    response = probe_app().test_client().get("/_probe/find/t-9")

    assert response.status_code == 404
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert (body["code"], body["title"]) == ("not_found.thing", "Chose introuvable.")
    assert body["details"] == {"thing_id": "t-9"}


def test_a_service_that_does_not_exist_gives_503_quickly(probe_app):
    client = probe_app().test_client()

    started = time.monotonic()
    response = client.get("/_probe/ghost")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.get_json()["code"] == "service.unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < 1.0


def test_a_slow_method_gives_504_within_the_timeout(probe_app):
    app = probe_app(RPC_TIMEOUT=1.0)
    client = app.test_client()

    started = time.monotonic()
    response = client.get("/_probe/nap/3.0")
    elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert response.get_json()["code"] == "service.timeout"
    assert "Retry-After" in response.headers
    assert 0.9 < elapsed < 2.0


def test_a_client_survives_timeouts_and_their_late_replies(probe_app):
    app = probe_app(RPC_TIMEOUT=0.5)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/_probe/nap/0.8").status_code == 504
    eventlet.sleep(1.0)  # the late replies arrive

    first = client.get("/_probe/whoami")
    second = client.get("/_probe/whoami")

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.get_json()["request_id"] == first.headers["X-Request-Id"]  # not a late reply
    pool = pool_for(app)
    assert pool.stats()["created"] == 1
    (pooled,) = pool._idle
    assert pooled.connects == 1  # the same connection throughout
    _owner, checks = pooled._check_channel  # the consumer-count side channel
    assert sorted(pooled.connection.channels) == sorted(
        [0, pooled.channel.channel_id, checks.channel_id]
    )


def test_clients_are_reused_across_requests(probe_app):
    app = probe_app()
    client = app.test_client()

    statuses = {client.get("/_probe/whoami").status_code for _ in range(20)}

    assert statuses == {200}
    stats = pool_for(app).stats()
    assert stats["created"] == 1
    assert stats["idle"] == 1
    assert stats["in_use"] == 0


def test_one_request_uses_one_client_for_several_calls(probe_app):
    app = probe_app()

    response = app.test_client().get("/_probe/twice")

    assert response.get_json() == {"same": True}
    assert pool_for(app).stats() == {"idle": 1, "in_use": 0, "created": 1, "dropped": 0}


def test_typed_errors_and_timeouts_return_the_client_to_the_pool(probe_app):
    app = probe_app(RPC_TIMEOUT=0.5)
    client = app.test_client()

    client.get("/_probe/find/x")
    client.get("/_probe/ghost")
    client.get("/_probe/nap/0.8")

    assert pool_for(app).stats()["created"] == 1
    assert pool_for(app).stats()["dropped"] == 0


def test_concurrent_requests_get_distinct_clients(probe_app):
    app = probe_app()
    results = []

    def call():
        results.append(app.test_client().get("/_probe/nap/0.3").status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [200] * 4
    stats = pool_for(app).stats()
    assert stats["created"] == 4
    assert stats["idle"] == 4


def test_an_unreachable_broker_gives_503_quickly(make_app):
    app = make_app()  # AMQP_URI points at a closed port
    app.register_blueprint(probe_views())

    started = time.monotonic()
    response = app.test_client().get("/_probe/whoami")

    assert response.status_code == 503
    assert response.get_json()["code"] == "broker.unavailable"
    assert "Retry-After" in response.headers
    assert time.monotonic() - started < 1.0


RELAY = r"""
import signal, socket, sys, threading
target = (sys.argv[1], int(sys.argv[2]))
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[3])))
server.listen(16)
links = []
lock = threading.Lock()

def pipe(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def cut(*_):
    with lock:
        cut_links = links[:]
        del links[:]
    for sock in cut_links:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

signal.signal(signal.SIGUSR1, cut)
print(server.getsockname()[1], flush=True)
while True:
    downstream, _ = server.accept()
    upstream = socket.create_connection(target)
    with lock:
        links.extend([downstream, upstream])
    threading.Thread(target=pipe, args=(downstream, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, downstream), daemon=True).start()
"""


class LinkCutter:
    """A TCP relay to RabbitMQ, in its own process, whose open connections can
    be cut at will (as a broker restart or a network failure would)."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, str(target_port))
        self.port = 0
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-c", RELAY, *self.target, str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.process.stdout.readline())

    def cut(self):
        self.process.send_signal(signal.SIGUSR1)
        eventlet.sleep(0.2)

    def stop(self):
        """Cut every link and refuse new ones (the broker is down)."""
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        eventlet.sleep(0.2)


@pytest.fixture
def cutter(rabbit_config):
    parts = urllib.parse.urlsplit(rabbit_config["AMQP_URI"])
    relay = LinkCutter(parts.hostname, parts.port or 5672)
    uri = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{relay.port}")
    )
    yield relay, uri
    relay.stop()


def test_a_link_cut_between_requests_heals_within_the_next_call(probe_app, cutter):
    relay, uri = cutter
    app = probe_app(AMQP_URI=uri)
    client = app.test_client()
    assert client.get("/_probe/whoami").status_code == 200

    relay.cut()
    started = time.monotonic()
    response = client.get("/_probe/whoami")

    assert response.status_code == 200
    assert time.monotonic() - started < 2.0
    # the same client, reconnected before publishing
    assert pool_for(app).stats() == {"idle": 1, "in_use": 0, "created": 1, "dropped": 0}
    assert pool_for(app)._idle[0].connects == 2


def test_a_client_whose_broker_went_away_is_dropped_then_replaced(probe_app, cutter):
    relay, uri = cutter
    app = probe_app(AMQP_URI=uri)
    client = app.test_client()
    assert client.get("/_probe/whoami").status_code == 200

    relay.stop()
    started = time.monotonic()
    down = client.get("/_probe/whoami")
    elapsed = time.monotonic() - started
    stats_down = pool_for(app).stats()
    relay.start()
    back = client.get("/_probe/whoami")

    assert down.status_code == 503
    assert down.get_json()["code"] == "broker.unavailable"
    assert elapsed < 1.5
    assert stats_down == {"idle": 0, "in_use": 0, "created": 1, "dropped": 1}
    assert back.status_code == 200
    assert pool_for(app).stats()["created"] == 2


def ready(client):
    started = time.monotonic()
    response = client.get("/health/ready")
    return response, time.monotonic() - started


def test_ready_is_200_when_every_service_answers(probe_app):
    client = probe_app(SERVICES=[SERVICE]).test_client()

    response, _ = ready(client)

    assert response.status_code == 200
    body = response.get_json()
    revocations = body.pop("revocations")
    assert body == {"status": "ok", "broker": "ok", "services": {SERVICE: "ok"}}
    # the age of this process's revocation list, and its bound (REVOCATION_MAX_STALENESS)
    assert revocations["max_staleness_seconds"] == 300.0
    assert revocations["status"] in ("ok", "loading")
    if revocations["status"] == "ok":
        assert 0 <= revocations["age_seconds"] <= 300


def test_ready_reports_a_stale_revocation_list(probe_app):
    calls = []

    def failing(since):
        calls.append(since)
        if len(calls) > 1:
            raise ConnectionError("identity is down")
        return {"now": None, "revoked": []}

    app = probe_app(
        SERVICES=[SERVICE],
        REVOCATION_SOURCE=failing,
        REVOCATION_POLL_SECONDS=0.05,
        REVOCATION_MAX_STALENESS=0.3,
    )
    client = app.test_client()
    ready(client)
    app.extensions["revocations"].loaded.wait(3)
    time.sleep(0.5)

    revocations = ready(client)[0].get_json()["revocations"]

    assert revocations["status"] == "stale"
    assert revocations["age_seconds"] > 0.3
    assert revocations["max_staleness_seconds"] == 0.3


def test_ready_is_503_with_the_missing_service_marked(probe_app):
    client = probe_app(SERVICES=[SERVICE, "ghost"]).test_client()

    response, elapsed = ready(client)

    assert response.status_code == 503
    body = response.get_json()
    body.pop("revocations")
    assert body == {
        "status": "unavailable",
        "broker": "ok",
        "services": {SERVICE: "ok", "ghost": "unavailable"},
    }
    assert "Retry-After" in response.headers
    assert elapsed < 1.5


def test_ready_marks_a_slow_service_as_timeout_within_the_bound(
    probe_app, container_factory, rabbit_config
):
    container_factory(SlowHealthService, rabbit_config).start()
    client = probe_app(SERVICES=[SERVICE, "gwslow"], HEALTH_RPC_TIMEOUT=HEALTH_BOUND).test_client()

    response, elapsed = ready(client)

    assert response.status_code == 503
    assert response.get_json()["services"] == {SERVICE: "ok", "gwslow": "timeout"}
    assert elapsed < HEALTH_BOUND + 1.0


def test_ready_checks_services_concurrently(probe_app, container_factory, rabbit_config):
    container_factory(SlowHealthService, rabbit_config).start()
    services = [SERVICE, "gwslow", "ghost1", "ghost2", "ghost3"]
    client = probe_app(SERVICES=services, HEALTH_RPC_TIMEOUT=HEALTH_BOUND).test_client()

    response, elapsed = ready(client)

    assert response.get_json()["services"]["gwslow"] == "timeout"
    # sequential checks would take the bound for gwslow plus each ghost's wait
    assert elapsed < 2 * HEALTH_BOUND


def test_ready_is_503_when_the_broker_is_unreachable(make_app):
    client = make_app(SERVICES=[SERVICE]).test_client()

    response, elapsed = ready(client)

    assert response.status_code == 503
    body = response.get_json()
    assert body.pop("revocations")["max_staleness_seconds"] == 300.0
    assert body == {
        "status": "unavailable",
        "broker": "unavailable",
        "services": {SERVICE: "unavailable"},
    }
    assert elapsed < 1.5


def test_live_needs_no_broker(make_app):
    response = make_app().test_client().get("/health/live")

    assert (response.status_code, json.loads(response.data)) == (200, {"status": "ok"})

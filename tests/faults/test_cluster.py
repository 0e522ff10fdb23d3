"""A broker that loses a node (docs/architecture.md §9, issue 10), on a three-node
RabbitMQ cluster started on loopback by ``deploy/rabbit_cluster.py``, and the
running system (identity, survey, files, notify and the gateway) given every
node: ``AMQP_URI=amqp://…:p1/v;amqp://…:p2/v;amqp://…:p3/v`` (kombu's failover
list, read by nameko's consumers and publishers, kit and the gateway's own
client):

- every durable queue of the system is a quorum queue with a member on each
  node: the event handlers' queues, their retry and dead-letter queues and
  the RPC queues ``rpc-<service>``; only reply queues are classic, and those
  are transient (exclusive for the gateway, not durable for the services);
- the node most clients are connected to is stopped (``rabbitmqctl
  stop_app``: RabbitMQ down on a machine that stays up) during a burst of
  transmissions (four organisations, each transmission its own figures, so
  no two carry the same bytes) and registrations: every transmission ends
  201/200, after retryable answers (503/504, or 429) retried with the same
  Idempotency-Key, and each organisation lists exactly the transmissions it
  was told were recorded (none lost, none doubled); every registration ends
  202 and gets exactly one confirmation e-mail; every
  ``survey.response_submitted`` reaches notify once (a partner's feed holds
  each transmission exactly once); no event is parked, no call is left in
  an RPC queue;
- every client reconnects to the two remaining nodes: within seconds every
  RPC and event queue has a consumer again and no connection is left on the
  stopped node; afterwards the gateway's readiness is 200 and a new
  transmission and a new registration succeed at the first attempt.

What was seen is printed (``-s``): queues by type, connections by node before
and after, answers by status, retries, when the connections left the node
and when every queue was consumed again.

Markers ``faults`` and ``cluster``. Not in the default test command: it
passed alone (about 90 s on two cores, 25 s of it starting the cluster) but
failed once under the whole suite's load, the services' consumers not coming
back on the quorum queues after the node holding every leader was stopped (an
open problem, see the README's Operations section). Run it with
``RUN_CLUSTER_TESTS=1 .venv/bin/python -m pytest -q -s -m cluster tests/faults/test_cluster.py``.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import amqp
import pytest
import requests

from deploy import sandbox
from deploy.launcher import Config, LaunchError, System
from deploy.rabbit_cluster import RABBIT_BIN, ClusterError, RabbitCluster
from services.survey.tests.support import fill_form
from tests.e2e.journeys import transmit
from tests.faults.bursts import (
    CALL_TIMEOUT,
    SIRETS,
    Tally,
    confirmations,
    feed_counts,
    figures,
    prepare,
    recorded,
    register,
    snapshot,
    transmit_until_answered,
    until_answered,
)
from tests.faults.conftest import PG_ADMIN_DSN, READY_TIMEOUT, GatewaySession, Mailbox

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("RUN_CLUSTER_TESTS") != "1",
        reason="the cluster fault test runs with RUN_CLUSTER_TESTS=1 (see its docstring)",
    ),
]

SERVICES = ("identity", "survey", "files", "notify")
ORGANISATIONS = 4
TRANSMISSIONS = 7  # per organisation, one after the other
REGISTRATION_THREADS = 4
REGISTRATIONS = 3  # per thread, one after the other: 3 per SIRET at most (the
# limit of pending registrations per organisation), spread over the SIRETs
# the organisations above do not use
STOP_AFTER = 6  # answers before the node is stopped: in the middle of the burst
REQUEST_DEADLINE = 60  # seconds a client keeps retrying one request
BURST_DEADLINE = 150  # seconds after which no client of the burst retries any more
RECONNECT_WITHIN = 20.0  # seconds after the stop for every queue to be consumed again


# ---------------------------------------------------------------- the cluster and the system


@pytest.fixture(scope="module")
def cluster():
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        pytest.skip(f"rabbitmq-server is not installed in {RABBIT_BIN} (RABBITMQ_BIN)")
    started = RabbitCluster()
    try:
        started.start()
    except ClusterError as exc:
        pytest.fail(f"the cluster did not start: {exc}", pytrace=False)
    print(f"\ncluster of three nodes up in {started.start_seconds:.1f} s")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def system(cluster, tmp_path_factory):
    """The system on its own vhost of the cluster (created through node 1's
    management API) and its own databases, given the three nodes."""
    prefix = f"cluster_{uuid.uuid4().hex[:10]}"
    databases: list[str] = []
    running = None
    try:
        try:
            amqp_uri = sandbox.create_vhost(
                prefix, cluster.amqp_uri("/"), cluster.nodes[0].management_url
            )
            urls = sandbox.create_databases(prefix, databases, PG_ADMIN_DSN)
        except LaunchError as exc:
            pytest.fail(str(exc), pytrace=False)
        assert amqp_uri == cluster.amqp_uri(prefix)
        running = System(
            Config(
                data_dir=tmp_path_factory.mktemp("cluster"),
                amqp_uri=amqp_uri,
                env=dict(urls, TRUSTED_PROXIES="1", STAFF_TOTP_REQUIRED="0"),
                services=SERVICES,
                ready_timeout=READY_TIMEOUT,
            )
        )
        error = None
        began = time.monotonic()
        try:
            running.start()
        except LaunchError as exc:
            error = str(exc)
        if error:
            pytest.fail(f"the system did not start: {error}", pytrace=False)
        print(f"system up on the cluster in {time.monotonic() - began:.1f} s")
        running.vhost = prefix
        yield running
    finally:
        if running is not None:
            running.stop()
        sandbox.drop_databases(databases, PG_ADMIN_DSN)


@pytest.fixture(scope="module")
def ctx(system):
    prepared = prepare(system, "Enquête grappe", ORGANISATIONS, kind="grappe", threads=2)
    return {**prepared, "mailbox": Mailbox(system.mail_api_url)}


# ---------------------------------------------------------------- clients


def transmissions_of(url: str, org: dict, forms: list[tuple[bytes, str]], tally: Tally):
    """An organisation's transmissions, one after the other, each with its key."""
    with GatewaySession(url, timeout=CALL_TIMEOUT) as gateway:
        return [
            transmit_until_answered(gateway, org, content, key, tally, REQUEST_DEADLINE)
            for content, key in forms
        ]


def registrations_of(url: str, emails: list[str], tally: Tally, thread: int) -> list[int]:
    """Registrations one after the other (the same address again is safe: a
    second registration sends nothing more)."""
    statuses = []
    free = len(SIRETS) - ORGANISATIONS
    for n, email in enumerate(emails):
        siret = SIRETS[ORGANISATIONS + (thread * REGISTRATIONS + n) % free]
        response, _ = until_answered(
            "register", lambda e=email, s=siret: register(url, e, s), tally, REQUEST_DEADLINE
        )
        statuses.append(getattr(response, "status_code", 0))
    return statuses


# ---------------------------------------------------------------- what the system holds


def queues(cluster, vhost: str, via: int) -> list[dict]:
    path = urllib.parse.quote(vhost, safe="")
    return cluster.api(
        f"/api/queues/{path}?columns=name,type,durable,exclusive,auto_delete,leader,members,node",
        via,
    )


class Monitor:
    """Samples, every 0.2 s and through a node that stays: the connections of
    the vhost per node (management API) and the consumers of the system's RPC
    and event queues (passive declares: exact and immediate)."""

    def __init__(self, cluster, vhost: str, via: int, watched: list[str]):
        self.cluster, self.vhost, self.via, self.watched = cluster, vhost, via, watched
        params = node_params(cluster, vhost, via)
        self.connection = amqp.Connection(**params, connect_timeout=5)
        self.connection.connect()
        self.channel = self.connection.channel()
        self.samples: list[tuple[float, dict[str, int], int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def consumed(self) -> int:
        """How many watched queues have no consumer."""
        missing = 0
        for name in self.watched:
            _, _, consumers = self.channel.queue_declare(name, passive=True)
            missing += consumers == 0
        return missing

    def _run(self):
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                by_node = self.cluster.connections_by_node(self.vhost, self.via)
                self.samples.append((time.monotonic(), by_node, self.consumed()))
            except Exception as exc:  # noqa: BLE001 - a sample missed; printed
                print(f"monitor: {type(exc).__name__}: {exc}")
            self.stop.wait(0.2)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.connection.close()


def consumers_of(cluster, vhost: str, via: int, names: list[str]) -> dict[str, int]:
    """Consumers of each queue now (passive declares through node ``via``)."""
    connection = amqp.Connection(**node_params(cluster, vhost, via), connect_timeout=5)
    connection.connect()
    try:
        channel = connection.channel()
        return {name: channel.queue_declare(name, passive=True).consumer_count for name in names}
    finally:
        connection.close()


def node_params(cluster, vhost: str, index: int) -> dict:
    return {
        "host": f"127.0.0.1:{cluster.nodes[index].amqp_port}",
        "userid": "guest",
        "password": "guest",
        "virtual_host": vhost,
    }


# ---------------------------------------------------------------- the test


def test_a_node_lost_during_a_burst_loses_and_doubles_nothing(cluster, ctx):
    system, orgs, tag, mailbox = ctx["system"], ctx["orgs"], ctx["tag"], ctx["mailbox"]
    vhost, url = system.vhost, system.gateway_url

    # 1. every durable queue is a quorum queue with a member on each node
    listed = queues(cluster, vhost, via=1)
    by_type = collections.Counter(
        (
            "quorum"
            if q["type"] == "quorum"
            else f"{q['type']} {'durable' if q['durable'] else 'transient'}"
            f"{' exclusive' if q.get('exclusive') else ''}"
        )
        for q in listed
    )
    print("queues by type:", dict(by_type))
    names = {q["name"] for q in listed}
    assert {f"rpc-{s}" for s in SERVICES} <= names
    assert not [q["name"] for q in listed if q["durable"] and q["type"] != "quorum"]
    assert not [
        q["name"]
        for q in listed
        if q["type"] != "quorum" and not q["name"].startswith("rpc.reply-")
    ]
    quorum = [q for q in listed if q["type"] == "quorum"]
    assert all(len(q.get("members") or []) == 3 for q in quorum), [
        (q["name"], q.get("members")) for q in quorum if len(q.get("members") or []) != 3
    ]
    leaders = collections.Counter(q.get("leader") for q in quorum)
    print("quorum queue leaders by node:", dict(leaders))
    # the RPC and event queues that have consumers (kit.topology also declares
    # the queues of carte, which does not run here)
    watched = [n for n in sorted(names) if n.startswith(("rpc-", "evt-"))]
    watched = [n for n, c in consumers_of(cluster, vhost, 1, watched).items() if c]
    print(f"{len(watched)} RPC and event queues consumed")
    assert {f"rpc-{s}" for s in SERVICES} <= set(watched)

    # 2. the node most clients are connected to (the management API's view
    # lags by up to a second: the largest of three looks)
    before = {}
    for _ in range(3):
        seen = cluster.connections_by_node(vhost, via=1)
        if sum(seen.values()) >= sum(before.values()):
            before = seen
        time.sleep(0.6)
    stopped_name = max(before, key=lambda n: (before[n], -cluster.index_of(n)))
    stopped = cluster.index_of(stopped_name)
    via = (stopped + 1) % 3
    print("connections by node before:", before, "-> stopping", stopped_name)
    assert before[stopped_name] > 0

    cursor, listed_before = snapshot(url, ctx["key"], orgs)
    forms = {
        o["sid"]: [
            (fill_form(o["form"], figures(n, o["i"])), f"grappe-{tag}-{o['i']}-{n}")
            for n in range(TRANSMISSIONS)
        ]
        for o in orgs
    }
    assert len({c for fs in forms.values() for c, _ in fs}) == ORGANISATIONS * TRANSMISSIONS
    emails = [
        [f"inscription.grappe.{tag}.{t}.{n}@example.org" for n in range(REGISTRATIONS)]
        for t in range(REGISTRATION_THREADS)
    ]

    # 3. the burst, and the node stopped in its middle
    monitor = Monitor(cluster, vhost, via, watched)
    assert monitor.consumed() == 0
    tally = Tally(enough_after=STOP_AFTER, within=BURST_DEADLINE)
    pool = ThreadPoolExecutor(ORGANISATIONS + REGISTRATION_THREADS)
    began = time.monotonic()
    sent = [pool.submit(transmissions_of, url, o, forms[o["sid"]], tally) for o in orgs]
    signed = [pool.submit(registrations_of, url, e, tally, t) for t, e in enumerate(emails)]
    pool.shutdown(wait=False)
    assert tally.enough.wait(60), tally.summary()
    monitor.thread.start()
    t0 = time.monotonic()
    cluster.stop_node(stopped)
    stop_seconds = time.monotonic() - t0
    try:
        results = [f.result(timeout=BURST_DEADLINE + CALL_TIMEOUT) for f in sent]
        statuses = [f.result(timeout=BURST_DEADLINE + CALL_TIMEOUT) for f in signed]
        burst_seconds = time.monotonic() - began
        reconnect_deadline = t0 + RECONNECT_WITHIN
        while time.monotonic() < reconnect_deadline:
            samples = list(monitor.samples)
            if samples and samples[-1][1].get(stopped_name) == 0 and samples[-1][2] == 0:
                break
            time.sleep(0.2)
    finally:
        monitor.close()

    samples = monitor.samples
    gone = next((t for t, by_node, _ in samples if by_node.get(stopped_name) == 0), None)
    back = next(
        (t for t, by_node, missing in samples if gone is not None and t >= gone and missing == 0),
        None,
    )
    worst = max((missing for _, _, missing in samples), default=0)
    after = cluster.connections_by_node(vhost, via=via)
    first_ok = min(
        (
            t
            for t, what, status, _ in tally.answers
            if gone is not None and t > gone and status in (200, 201, 202)
        ),
        default=None,
    )
    print(
        f"stop_app of {stopped_name} took {stop_seconds:.1f} s; burst of "
        f"{ORGANISATIONS * TRANSMISSIONS} transmissions and "
        f"{REGISTRATION_THREADS * REGISTRATIONS} registrations took {burst_seconds:.1f} s"
    )
    print("answers:", tally.summary(), "retries:", dict(tally.retries))
    print(
        "after the stop: connections left the node at "
        + (f"+{gone - t0:.1f} s" if gone else "never")
        + ", every RPC and event queue consumed again at "
        + (f"+{back - t0:.1f} s" if back else "never")
        + f" (at worst {worst} of {len(watched)} queues without a consumer), first success at "
        + (f"+{first_ok - t0:.1f} s" if first_ok else "never")
    )
    print("connections by node after:", after)

    # 4. every client answered, reconnected to the nodes that stayed
    assert not tally.unexpected(), tally.summary()
    assert all(r["status"] in (200, 201) and r["id"] for rs in results for r in rs), results
    assert statuses == [[202] * REGISTRATIONS] * REGISTRATION_THREADS, statuses
    assert gone is not None and back is not None, samples[-3:]
    assert back - t0 < RECONNECT_WITHIN
    assert after[stopped_name] == 0 and sum(after.values()) > 0, after

    # 5. none lost, none doubled: the transmissions, the events, the e-mails
    told = {o["sid"]: [r["id"] for r in rs] for o, rs in zip(orgs, results, strict=True)}
    with GatewaySession(url, timeout=30) as gateway:
        for org in orgs:
            new = [t for t in recorded(gateway, org) if t not in listed_before[org["sid"]]]
            assert sorted(new) == sorted(told[org["sid"]]), (org["i"], new, told[org["sid"]])
            assert len(set(new)) == TRANSMISSIONS
        expected = {t for ids in told.values() for t in ids}
        counts = feed_counts(gateway, ctx["key"], cursor, expected, timeout=30)
    assert counts == {t: 1 for t in expected}, counts
    all_emails = [e for es in emails for e in es]
    mails = confirmations(mailbox, all_emails, timeout=30, poll=0.5)
    assert mails == {e: 1 for e in all_emails}, mails
    print(
        f"{len(expected)} transmissions recorded once and in the feed once; "
        f"{len(all_emails)} confirmation e-mails, one each"
    )

    params = node_params(cluster, vhost, via)
    connection = amqp.Connection(**params, connect_timeout=5)
    connection.connect()
    try:
        channel = connection.channel()
        left = {}
        for name in sorted(names):
            if name.endswith(".deadletter") or name.startswith("rpc-"):
                left[name] = channel.queue_declare(name, passive=True).message_count
    finally:
        connection.close()
    assert not any(left.values()), left  # nothing parked, no call left unserved

    # 6. and the system goes on: readiness, a transmission and a registration at once
    deadline = time.monotonic() + 15
    while True:
        ready = requests.get(f"{url}/health/ready", timeout=10)
        if ready.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ready.status_code == 200, ready.text
    org = orgs[0]
    with GatewaySession(url, timeout=CALL_TIMEOUT) as gateway:
        fresh = transmit(
            gateway,
            org["headers"],
            org["sid"],
            fill_form(org["form"], figures(99, org["i"])),
            key=f"grappe-{tag}-apres",
        )
    assert fresh.status_code == 201, fresh.text
    late = f"inscription.grappe.{tag}.apres@example.org"
    # into an organisation of the burst (the other SIRETs hold 3 pending each)
    assert register(url, late, org["siret"]).status_code == 202
    assert confirmations(mailbox, [late], timeout=30, poll=0.5) == {late: 1}

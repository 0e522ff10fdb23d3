"""Calls expire (docs/architecture.md §9, issue 10), on the running system (identity,
files, notify, survey and the gateway on PostgreSQL):

- ghost writes are gone: identity is frozen (SIGSTOP: its RPC queue keeps a
  consumer that does not answer, so the calls are delivered to it and wait
  in its prefetch) while the agency validates five registrations; each
  request gets the gateway's 504 « état inconnu » within its timeout. Once
  identity is resumed (SIGCONT) and has drained its queue, none of the five
  validations was executed. The same again, then identity is killed
  (SIGKILL: the unacknowledged calls go back to its queue, expired) and
  restarted: still nothing executed. The deadline also reaches a
  service-to-service call: a manager's « Enquêtes en ligne » (gateway →
  survey → identity.get_me, survey's own timeout being 20 s) is not executed
  by identity either. A real validation afterwards does change the
  state read back, and sends its e-mail;
- a service with no consumer answers 503 at once: survey and files are
  killed; once the broker counts no consumer, signed-in requests to survey
  and signed-out registrations (whose documents go to files) are 503
  ``service.unavailable`` with Retry-After in well under a second each; after
  a restart the same requests succeed;
- an event with no bound queue is kept: notify's queue for
  ``identity.user_registered`` is deleted while notify is stopped. The first
  refused publication makes identity's relay re-declare the consumers' queue
  from the code (kit.topology) and the event is queued; after the queue is
  deleted a second time (the fallback runs once per event type and process)
  the outbox row stays pending, ``outbox_unroutable_total`` grows and
  ``outbox_unroutable_now`` is 1; when notify starts again (declaring its
  queue) the event is delivered: each confirmation e-mail arrives once.

identity is restarted at the start with ``METRICS_PORT`` (the launcher gives
services no metrics port: five services on one machine would share it), so
the test reads its Prometheus metrics.
"""

from __future__ import annotations

import re
import signal
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import amqp.exceptions
import kombu
import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from deploy.launcher import common_env, free_port, service_argv, service_env
from tests.e2e.journeys import PDF, follow_form_link, manager_of, registration, sign_in
from tests.faults.conftest import RABBIT_API, GatewaySession, Mailbox

SERVICES = ("identity", "files", "notify", "survey")
# SIRETs of the SIRENE stand-in, one organisation each
SIRETS = [
    "35600000000048",
    "40300920200025",
    "41816609600028",
    "45837220800017",
    "57128327400017",
    "61956458600011",
    "64739542500018",
    "72656521100018",
]
MANAGER_SIRET = "88321991700019"
RPC_TIMEOUT = 5.0  # the gateway's default (gateway.config)
CONSUMER_CHECK_TTL = 1.0  # the gateway's RPC_CONSUMER_CHECK_SECONDS default
GHOSTS = 5
CONFIRM_LINK = r"https?://\S+/inscription/confirmer\?token=\S+"
NOTIFY_QUEUE = "evt-identity-user_registered--notify.on_user_registered"
HABILITATION = {"habilitation": ("habilitation.pdf", PDF, "application/pdf")}


# --- helpers --------------------------------------------------------------------


def _until(what: str, check, timeout: float, interval: float = 0.2):
    """``check()`` until it returns something truthy, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {value!r})")
        time.sleep(interval)


def _vhost(system) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(system.config.amqp_uri).path[1:])


def queue_state(system, name: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of a queue, by a passive declare; None if absent."""
    with kombu.Connection(system.config.amqp_uri, connect_timeout=5) as conn:
        channel = conn.channel()
        try:
            _, messages, consumers = channel.queue_declare(name, passive=True)
        except amqp.exceptions.NotFound:
            return None
        return messages, consumers


def delete_queue(system, name: str) -> None:
    parts = urllib.parse.urlsplit(RABBIT_API)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
    vhost = urllib.parse.quote(_vhost(system), safe="")
    response = requests.delete(
        f"{base}/api/queues/{vhost}/{urllib.parse.quote(name, safe='')}",
        auth=(parts.username or "guest", parts.password or "guest"),
        timeout=10,
    )
    assert response.status_code in (200, 204), response.text


def scrape(port: int) -> list:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def metric(samples: list, name: str, **labels) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def register(url: str, email: str, siret: str) -> requests.Response:
    with GatewaySession(url, timeout=20) as gateway:
        return gateway.post(
            "/api/v1/registrations",
            data=registration(email, siret),
            files=HABILITATION,
        )


def subjects(mailbox: Mailbox, email: str, word: str) -> int:
    return sum(word in (m.get("subject") or "").lower() for m in mailbox.messages(email))


def log_count(path, pattern: str) -> int:
    try:
        return len(re.findall(pattern, path.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return 0


def outbox_rows(system, email: str) -> list[tuple]:
    """(id, published_at) of identity's user_registered rows for ``email``."""
    with psycopg.connect(system.config.env["IDENTITY_DB_URL"], autocommit=True) as conn:
        return conn.execute(
            "SELECT id, published_at FROM outbox"
            " WHERE event_type = 'user_registered' AND payload->>'email' = %s",
            (email,),
        ).fetchall()


class Identity:
    """identity's process, restarted with a metrics port; follows restarts."""

    def __init__(self, system, port: int) -> None:
        self.system = system
        self.port = port
        self.process = None

    def respawn_with_metrics(self) -> None:
        system = self.system
        code, _ = system.terminate("identity")
        assert code is not None, "identity did not stop on SIGTERM"
        common = common_env(
            system.config,
            smtp_url=system.smtp_url,
            sirene_url=system.sirene_url,
            public_url=system.config.public_url or system.gateway_url,
        )
        env = dict(service_env(common, "identity", system.config.root), METRICS_PORT=str(self.port))
        self.process = system.spawn(
            "identity",
            service_argv(system.config.python, "identity"),
            env,
            log_name="identity-metrics",
        )

    def restart(self) -> None:
        """SIGKILL (if running) and the same command again (its metrics port too)."""
        self.process = self.system.restart("identity")

    @property
    def log(self):
        return self.process.log

    def ready(self, timeout: float = 60) -> None:
        """Its probe says ready, and the gateway's cached consumer count is fresh."""

        def answers():
            assert self.process.popen.poll() is None, f"identity exited: {self.log}"
            try:
                return (
                    requests.get(
                        f"http://127.0.0.1:{self.port}/health/ready", timeout=2
                    ).status_code
                    == 200
                )
            except requests.RequestException:
                return False

        _until("identity ready", answers, timeout)
        wait_consumer(self.system, "rpc-identity")

    def metrics(self) -> list:
        return scrape(self.port)

    def signal(self, signum: int) -> None:
        self.process.popen.send_signal(signum)


def wait_consumer(system, queue: str, timeout: float = 45) -> None:
    """A consumer on ``queue``, and every gateway process's cached count stale."""
    _until(
        f"a consumer on {queue}", lambda: (queue_state(system, queue) or (0, 0))[1] >= 1, timeout
    )
    time.sleep(CONSUMER_CHECK_TTL + 0.2)


def wait_served(gateway, path: str, headers: dict, timeout: float = 45) -> requests.Response:
    """The first non-5xx answer of ``GET path`` (a restarted service warming up)."""

    def answer():
        r = gateway.get(path, headers=headers)
        return r if r.status_code < 500 else None

    return _until(f"GET {path} served", answer, timeout, interval=0.3)


@pytest.fixture(scope="module")
def ctx(launch_system):
    system = launch_system(services=SERVICES)
    identity = Identity(system, free_port())
    identity.respawn_with_metrics()
    identity.ready()
    with GatewaySession(system.gateway_url) as gateway:
        admin = sign_in(gateway, system.admin["email"], system.admin["password"])
        wait_served(gateway, "/api/v1/registrations", admin)
    return {
        "system": system,
        "identity": identity,
        "admin": admin,
        "mailbox": Mailbox(system.mail_api_url),
    }


# --- 1. ghost writes ------------------------------------------------------------------


def _awaiting(gateway, admin, emails) -> dict[str, dict]:
    r = gateway.get("/api/v1/registrations", headers=admin)
    assert r.status_code == 200, r.text
    return {row["email"]: row for row in r.json()["items"] if row["email"] in emails}


def _validate_all(url: str, admin: dict, ids: list[str]) -> list[tuple[int, float, dict, str]]:
    def one(user_id):
        with GatewaySession(url, timeout=RPC_TIMEOUT + 10) as gateway:
            started = time.monotonic()
            r = gateway.post(f"/api/v1/users/{user_id}/validate", headers=admin)
            return r.status_code, time.monotonic() - started, r.json(), r.headers.get("Retry-After")

    with ThreadPoolExecutor(len(ids)) as pool:
        return list(pool.map(one, ids))


def _assert_unknown_outcome(answers) -> None:
    for status, elapsed, body, retry_after in answers:
        assert status == 504, body
        assert body["code"] == "service.timeout" and body["details"]["outcome"] == "unknown", body
        assert "peut-être été prise en compte" in body["title"], body["title"]
        assert retry_after, "a 504 without Retry-After"
        assert elapsed < RPC_TIMEOUT + 2, f"answered after {elapsed:.1f} s"


def test_calls_abandoned_while_identity_is_frozen_are_never_executed(ctx):
    system, identity, admin, mailbox = ctx["system"], ctx["identity"], ctx["admin"], ctx["mailbox"]
    tag = uuid.uuid4().hex[:8]
    emails = [f"fantome.{tag}.{i}@example.org" for i in range(GHOSTS)]
    with GatewaySession(system.gateway_url, timeout=20) as gateway:
        for i, email in enumerate(emails):
            assert register(system.gateway_url, email, SIRETS[i]).status_code == 202
        for email in emails:
            follow_form_link(gateway, mailbox.link(email, CONFIRM_LINK, subject="Confirmez"))

        def all_awaiting():
            found = _awaiting(gateway, admin, emails)
            return found if len(found) == GHOSTS else None

        rows = _until("the registrations awaiting the agency", all_awaiting, 15)
        # an organisation's manager: its « Enquêtes en ligne » go through survey to
        # identity.get_me on every request
        manager, _ = manager_of(
            gateway, mailbox, admin, f"gestionnaire.{tag}@example.org", MANAGER_SIRET
        )
        assert gateway.get("/api/v1/surveys", headers=manager).status_code == 200
    ids = [rows[e]["id"] for e in emails]
    assert all(rows[e]["validated_at"] is None for e in emails)
    before = identity.metrics()
    me_before = metric(before, "rpc_requests_total", method="get_me", outcome="ok")
    assert me_before >= 1  # the read above: the metric does count get_me
    validated_before = metric(before, "rpc_requests_total", method="validate_user", outcome="ok")
    assert validated_before == 1  # the manager's

    # phase 1: frozen, then resumed
    identity.signal(signal.SIGSTOP)
    try:
        with (
            ThreadPoolExecutor(1) as pool,
            GatewaySession(system.gateway_url, timeout=RPC_TIMEOUT + 10) as g,
        ):
            # gateway -> survey.list_surveys -> identity.get_me (survey's own timeout
            # is 20 s); sent first, so it is in identity's prefetch
            started = time.monotonic()
            nested = pool.submit(g.get, "/api/v1/surveys", headers=manager)
            time.sleep(0.3)
            frozen = _validate_all(system.gateway_url, admin, ids)
            nested_answer = nested.result(timeout=RPC_TIMEOUT + 10)
            nested_elapsed = time.monotonic() - started
        time.sleep(0.3)  # every deadline has passed (the gateway answered at it)
    finally:
        identity.signal(signal.SIGCONT)
    _assert_unknown_outcome(frozen)
    # survey gives up at the same deadline: its 429, or the gateway's own 504
    assert nested_answer.status_code in (429, 504), nested_answer.text
    assert nested_answer.headers.get("Retry-After")
    assert nested_elapsed < RPC_TIMEOUT + 2

    with GatewaySession(system.gateway_url, timeout=20) as gateway:
        wait_served(gateway, "/api/v1/registrations", admin, timeout=20)  # drained: FIFO
        assert queue_state(system, "rpc-identity")[0] == 0
        time.sleep(1)  # a worker started before the read above would have finished
        after = _awaiting(gateway, admin, emails)
    assert sorted(after) == sorted(emails), "a validation the user was told failed was executed"
    assert all(after[e]["validated_at"] is None for e in emails), after
    samples = identity.metrics()
    dropped_frozen = log_count(identity.log, r"dropped an expired call to identity\.validate_user")
    expired_metric = metric(samples, "rpc_expired_total", method="validate_user")
    assert (
        metric(samples, "rpc_requests_total", method="validate_user", outcome="ok")
        == validated_before
    )
    assert dropped_frozen >= 1 and expired_metric == dropped_frozen, (
        dropped_frozen,
        expired_metric,
    )
    # the nested call carried the gateway's deadline (5 s), not survey's 20 s:
    # identity, resumed after ~5.6 s, did not run it either
    assert metric(samples, "rpc_requests_total", method="get_me", outcome="ok") == me_before
    nested_dropped = log_count(identity.log, r"dropped an expired call to identity\.get_me")

    # phase 2: frozen, then killed (its unacknowledged calls go back to the queue) and restarted
    identity.signal(signal.SIGSTOP)
    try:
        killed = _validate_all(system.gateway_url, admin, ids)
        time.sleep(0.3)
    finally:
        identity.restart()  # SIGKILL (a stopped process dies of it too), then started again
    _assert_unknown_outcome(killed)
    identity.ready()
    with GatewaySession(system.gateway_url, timeout=20) as gateway:
        wait_served(gateway, "/api/v1/registrations", admin)
        time.sleep(1)
        assert queue_state(system, "rpc-identity")[0] == 0
        after = _awaiting(gateway, admin, emails)
        assert sorted(after) == sorted(emails), "a validation was executed after the restart"
        samples = identity.metrics()
        assert metric(samples, "rpc_requests_total", method="validate_user", outcome="ok") == 0
        dropped_restarted = metric(samples, "rpc_expired_total", method="validate_user")

        # the control: a validation that is answered is executed, and read back
        r = gateway.post(f"/api/v1/users/{ids[0]}/validate", headers=admin)
        assert r.status_code == 200, r.text
        assert emails[0] not in _awaiting(gateway, admin, emails)
    mailbox.wait_for(emails[0], subject="a été validé", timeout=20)
    time.sleep(1)
    validated_mails = {e: subjects(mailbox, e, "a été validé") for e in emails}
    assert validated_mails == {e: int(e == emails[0]) for e in emails}, validated_mails
    print(
        f"ghost writes avoided: {len(frozen) + len(killed)} "
        f"(frozen: {len(frozen)}, {dropped_frozen} dropped by identity, "
        f"{len(frozen) - dropped_frozen} expired in the queue; frozen then killed: "
        f"{len(killed)}, {dropped_restarted:.0f} dropped by the restarted identity, the "
        f"others expired in the queue); 504 after "
        f"{max(a[1] for a in frozen + killed):.2f} s at most; nested call: "
        f"{nested_answer.status_code} after {nested_elapsed:.2f} s, "
        f"{nested_dropped} dropped by identity"
    )


# --- 2. no consumer: a fast 503 ----------------------------------------------------------


def _timed(session, method: str, path: str, **kw) -> tuple[requests.Response, float]:
    started = time.monotonic()
    r = session.request(method, path, **kw)
    return r, time.monotonic() - started


def _assert_fast_unavailable(answers: list[tuple[requests.Response, float]]) -> None:
    for r, _ in answers:
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["code"] == "service.unavailable", body
        assert body["title"] == "Le service est momentanément indisponible."
        assert r.headers.get("Retry-After"), "a 503 without Retry-After"
    worst = max(elapsed for _, elapsed in answers)
    assert worst < 1.0, f"the slowest 503 took {worst:.2f} s"


def test_a_service_without_consumer_is_a_fast_503_then_served_after_restart(ctx):
    system, admin = ctx["system"], ctx["admin"]
    system.kill("survey")
    system.kill("files")
    try:
        for queue in ("rpc-survey", "rpc-files"):
            _until(f"no consumer on {queue}", lambda q=queue: queue_state(system, q)[1] == 0, 10)
        time.sleep(CONSUMER_CHECK_TTL + 0.2)  # every gateway process's cached count is stale
        tag = uuid.uuid4().hex[:8]
        with GatewaySession(system.gateway_url, timeout=20) as gateway:
            signed_in = [
                _timed(gateway, "GET", "/api/v1/survey-campaigns", headers=admin) for _ in range(10)
            ]
            signed_in += [
                _timed(gateway, "GET", "/api/v1/surveys", headers=admin) for _ in range(5)
            ]
            email = f"sans.fichiers.{tag}@example.org"
            signed_out = [
                _timed(
                    gateway,
                    "POST",
                    "/api/v1/registrations",
                    data=registration(email, SIRETS[5]),
                    files=HABILITATION,
                )
                for _ in range(5)
            ]
    finally:
        system.restart("survey")
        system.restart("files")
    _assert_fast_unavailable(signed_in)
    _assert_fast_unavailable(signed_out)

    wait_consumer(system, "rpc-survey")
    wait_consumer(system, "rpc-files")
    with GatewaySession(system.gateway_url, timeout=20) as gateway:
        served = wait_served(gateway, "/api/v1/survey-campaigns", admin)
        assert served.status_code == 200, served.text
        r = gateway.post(
            "/api/v1/registrations", data=registration(email, SIRETS[5]), files=HABILITATION
        )
        assert r.status_code == 202, r.text

    def ms(answers):
        return sorted(round(elapsed * 1000) for _, elapsed in answers)

    print(
        f"fast 503 latencies (ms): signed in (survey) {ms(signed_in)}, "
        f"signed out (registration, files) {ms(signed_out)}"
    )


# --- 3. an event that reaches no queue -------------------------------------------------


def test_an_event_without_queue_stays_pending_counted_and_is_delivered_once(ctx):
    system, identity, mailbox = ctx["system"], ctx["identity"], ctx["mailbox"]
    tag = uuid.uuid4().hex[:8]
    first, second = (f"sans.file.{tag}.{i}@example.org" for i in range(2))
    # what notify was sent before is consumed (deleting the queue must lose nothing)
    _until("notify's queue empty", lambda: queue_state(system, NOTIFY_QUEUE) == (0, 1), 20)
    code, _ = system.terminate("notify")
    assert code is not None, "notify did not stop on SIGTERM"
    try:
        # a. the queue deleted: the relay's fallback declares it again from the code
        state = queue_state(system, NOTIFY_QUEUE)
        assert state is not None and state == (0, 0), state
        delete_queue(system, NOTIFY_QUEUE)
        assert queue_state(system, NOTIFY_QUEUE) is None
        assert register(system.gateway_url, first, SIRETS[6]).status_code == 202
        _until(
            "the first event published",
            lambda: [p for _, p in outbox_rows(system, first)] not in ([], [None]),
            10,
        )
        [(_, published)] = outbox_rows(system, first)
        assert published is not None
        assert queue_state(system, NOTIFY_QUEUE) == (1, 0)  # kept for notify
        assert (
            log_count(
                identity.log,
                r"identity\.user_registered had no queue: the relay "
                r"declared its consumers' queues",
            )
            == 1
        )
        fallback_counted = metric(
            identity.metrics(), "outbox_unroutable_total", event_type="user_registered"
        )
    finally:
        system.restart("notify")
    mailbox.wait_for(first, subject="Confirmez", timeout=30)
    _until(
        "notify consumes its queue again", lambda: queue_state(system, NOTIFY_QUEUE) == (0, 1), 20
    )

    # b. deleted again: the fallback ran already in this process, the row stays pending
    code, _ = system.terminate("notify")
    assert code is not None
    try:
        assert queue_state(system, NOTIFY_QUEUE) == (0, 0)
        delete_queue(system, NOTIFY_QUEUE)
        assert register(system.gateway_url, second, SIRETS[7]).status_code == 202
        time.sleep(3)  # three ticks of the relay's timer
        [(_, published)] = outbox_rows(system, second)
        assert published is None, "an event no queue received was marked published"
        assert queue_state(system, NOTIFY_QUEUE) is None
        samples = identity.metrics()
        unroutable = metric(
            samples, "outbox_unroutable_total", service="identity", event_type="user_registered"
        )
        unroutable_now = metric(
            samples, "outbox_unroutable_now", service="identity", event_type="user_registered"
        )
        pending = metric(samples, "outbox_pending", service="identity")
        assert unroutable >= 1 and unroutable_now == 1 and pending >= 1, (
            unroutable,
            unroutable_now,
            pending,
        )
        assert (
            log_count(
                identity.log,
                r"outbox: identity\.user_registered events reach no "
                r"queue",
            )
            >= 1
        )
    finally:
        system.restart("notify")  # its handler declares its queue when it starts

    mailbox.wait_for(second, subject="Confirmez", timeout=30)
    _until("the second event published", lambda: outbox_rows(system, second)[0][1] is not None, 10)
    time.sleep(2)  # nothing more comes
    counts = {e: subjects(mailbox, e, "confirmez") for e in (first, second)}
    assert counts == {first: 1, second: 1}, counts
    samples = identity.metrics()
    assert metric(samples, "outbox_unroutable_now", event_type="user_registered") == 0
    assert metric(samples, "outbox_pending", service="identity") == 0
    print(
        f"unroutable: fallback re-declared the queue on the first refusal (counted "
        f"{fallback_counted:.0f}); second loss: outbox_unroutable_total={unroutable:.0f} "
        f"after 3 s, outbox_unroutable_now={unroutable_now:.0f}, outbox_pending={pending:.0f}; "
        f"delivered once notify was back, e-mails {counts}"
    )

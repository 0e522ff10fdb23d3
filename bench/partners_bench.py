"""Partner webhooks under load (issue 7): 1,000 submission events fanned out
to 10 webhook partners on loopback receivers, measured on the running system.

    PYTHONPATH=. .venv/bin/python bench/partners_bench.py [--events 1000]
        [--partners 10] [--slow-delay 5] [--deadline 300] [--json out.json]

The platform (identity, notify, the gateway) runs on a fresh RabbitMQ vhost
and fresh PostgreSQL databases (``bench.harness`` helpers). The agency creates
the partners through the gateway, each subscribed to
``survey.response_submitted`` with its webhook on a receiver of this process
(``deploy/webhook_receiver.py``, which checks every signature with
``standardwebhooks``). The events are then published on survey's internal
event exchange exactly as survey's outbox relay publishes them after the
commit of a transmission (nameko's dispatcher, publisher confirms), all at
once: the time taken just before each publish is the commit time.

With ``--rate R`` the events leave at R per second instead (an open loop),
which measures the latency below saturation.

Two runs, each with fresh event ids:

1. every partner healthy: deliveries/s (first receipts over the time from the
   first publish to the last receipt) and the commit-to-receipt latency,
   p50/p99, over every (event, partner);
2. one partner's endpoint answers in ``--slow-delay`` seconds and another one
   is down (connection refused): the same figures for the healthy partners
   only; their p99 must stay within 2x of run 1 (no head-of-line blocking).

Every event must reach every healthy partner (counted by ``webhook-id``) with
a valid signature. Everything started is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "libs" / "kit"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)

import requests  # noqa: E402

from bench.stats import percentile  # noqa: E402
from deploy.webhook_receiver import Receiver  # noqa: E402

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

EVENT_TYPE = "survey.response_submitted"
TAIL_FACTOR = 2.0  # healthy p99 with a slow and a dead partner <= 2x the healthy run's
PARTNER_ENV = {
    "RATELIMIT_ENABLED": "false",
    "STAFF_TOTP_REQUIRED": "0",  # the admin signs in without a code
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.0/8",  # the receivers are on the loopback
    "WEBHOOK_TIMEOUT": "10",  # the documented default: a 5 s answer is a success
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def payload(n: int, run: str) -> dict:
    """What survey's outbox carries for a transmission (public facts only)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return {
        "event_id": uuid.uuid4().hex,
        "occurred_at": now,
        "transmission_id": uuid.uuid4().hex,
        "survey_id": uuid.uuid4().hex,
        "campaign_id": f"bench-{run}",
        "campaign_name": "Enquête de charge",
        "siret": f"{41816609600000 + n:014d}",
        "uai": None,
        "account_type": "OFA",
        "seq": 1,
        "form_version": "1",
        "sha256": uuid.uuid4().hex * 2,
        "size": 48213,
        "file_name": "questionnaire.xlsx",
        "submitted_at": now,
    }


@dataclass
class RunResult:
    name: str
    events: int
    healthy: int
    seconds: float
    deliveries: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    duplicates: int
    unverified: int
    slow_received: int = 0
    down_attempts: int = 0

    def line(self) -> str:
        extra = ""
        if self.name != "healthy":
            extra = (
                f"; slow partner received {self.slow_received} meanwhile, "
                f"down partner refused every attempt"
            )
        return (
            f"{self.name}: {self.events} events x {self.healthy} healthy partners = "
            f"{self.deliveries} deliveries in {self.seconds:.1f} s = "
            f"{self.deliveries_per_s:.0f} deliveries/s; commit-to-receipt p50 "
            f"{self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, max {self.max_ms:.0f} ms; "
            f"missing {self.missing}, duplicates {self.duplicates}, "
            f"unverified signatures {self.unverified}{extra}"
        )


class Bench:
    def __init__(self, system, amqp_uri: str, args):
        self.system = system
        self.amqp_uri = amqp_uri
        self.args = args
        self.base = system.gateway_url.rstrip("/")
        self.http = requests.Session()
        self.agency: dict = {}
        self.receivers: list[Receiver] = []
        self.partner_ids: list[str] = []

    def call(self, method: str, path: str, expect=(200, 201, 204), **kwargs):
        response = self.http.request(method, self.base + path, timeout=60, **kwargs)
        if response.status_code not in expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def set_up(self) -> None:
        admin = self.system.admin
        token = self.call(
            "POST",
            "/api/v1/sessions",
            json={"email": admin["email"], "password": admin["password"]},
        ).json()["token"]
        self.agency = {"Authorization": f"Bearer {token}"}
        for n in range(self.args.partners):
            receiver = Receiver().up()
            receiver.delay = self.args.slow_delay
            created = self.call(
                "POST",
                "/api/v1/partners",
                headers=self.agency,
                json={
                    "name": f"Partenaire de charge {n + 1}",
                    "contact_email": f"charge{n + 1}@partenaire.example.fr",
                    "event_types": [EVENT_TYPE],
                    "scope": {"account_types": ["OFA"]},
                    "webhook_url": receiver.url,
                },
            ).json()
            receiver.secret = created["webhook_secret"]
            self.receivers.append(receiver)
            self.partner_ids.append(created["partner"]["id"])

    def tear_down(self) -> None:
        for partner_id in self.partner_ids:
            try:
                self.call("DELETE", f"/api/v1/partners/{partner_id}", headers=self.agency)
            except Exception as exc:  # noqa: BLE001 - the vhost and databases go anyway
                log(f"warning: partner {partner_id} not deleted ({exc})")
        for receiver in self.receivers:
            receiver.down()

    def publish(self, count: int, run: str) -> dict[str, float]:
        """Publishes ``count`` events as survey's outbox relay does; returns
        each event id's commit time (just before its publish)."""
        from nameko.standalone.events import event_dispatcher

        dispatch = event_dispatcher({"AMQP_URI": self.amqp_uri})
        committed: dict[str, float] = {}
        start = time.monotonic()
        for n in range(count):
            if self.args.rate > 0:  # an open loop: event n leaves at n / rate
                time.sleep(max(0.0, start + n / self.args.rate - time.monotonic()))
            body = payload(n, run)
            committed[body["event_id"]] = time.time()
            dispatch("survey", "response_submitted", body)
        return committed

    def run(self, name: str, slow: Receiver | None = None, down: Receiver | None = None):
        for receiver in self.receivers:
            with receiver._lock:
                receiver.received.clear()
                receiver.attempts = 0
        healthy = [r for r in self.receivers if r is not slow and r is not down]
        if slow is not None:
            slow.mode = "slow"
        if down is not None:
            down.down()
        log(f"{name}: publishing {self.args.events} events…")
        started = time.time()
        committed = self.publish(self.args.events, name)
        published = time.time() - started
        log(f"  published in {published:.1f} s; waiting for the healthy partners…")
        deadline = time.monotonic() + self.args.deadline
        wanted = set(committed)
        while time.monotonic() < deadline:
            if all(wanted <= set(r.ids()) for r in healthy):
                break
            time.sleep(0.2)
        latencies, missing, duplicates, unverified, last = [], 0, 0, 0, started
        for receiver in healthy:
            with receiver._lock:
                received = list(receiver.received)
            first: dict[str, float] = {}
            for item in received:
                event_id = item.webhook_id
                if event_id not in committed:
                    continue
                if item.verified is not True:
                    unverified += 1
                if event_id in first:
                    duplicates += 1
                    continue
                if item.event.get("id") != event_id:
                    unverified += 1  # the body's id must be the webhook-id
                first[event_id] = item.at
            missing += len(wanted - set(first))
            for event_id, at in first.items():
                latencies.append(at - committed[event_id])
                last = max(last, at)
        seconds = last - started
        result = RunResult(
            name=name,
            events=len(committed),
            healthy=len(healthy),
            seconds=seconds,
            deliveries=len(latencies),
            deliveries_per_s=len(latencies) / seconds if seconds > 0 else 0.0,
            p50_ms=percentile(latencies, 50) * 1000,
            p99_ms=percentile(latencies, 99) * 1000,
            max_ms=max(latencies, default=float("nan")) * 1000,
            missing=missing,
            duplicates=duplicates,
            unverified=unverified,
            slow_received=len(slow.received) if slow is not None else 0,
        )
        if slow is not None:
            slow.mode = "ok"
        log(f"  {result.line()}")
        return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="submission events per run")
    parser.add_argument("--partners", type=int, default=10, help="webhook partners (>= 3)")
    parser.add_argument(
        "--slow-delay", type=float, default=5.0, help="the slow endpoint's answer time (s)"
    )
    parser.add_argument(
        "--rate", type=float, default=0, help="events/s (default 0: all at once, a burst)"
    )
    parser.add_argument("--deadline", type=float, default=300, help="seconds a run may last")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.partners < 3:
        parser.error("--partners: at least 3 (one slow, one down, one healthy)")
    if not 1 <= args.events <= 100_000:
        parser.error("--events: between 1 and 100000")

    from bench.harness import _cleanup, create_databases, create_vhost
    from deploy.launcher import Config, System

    token = uuid.uuid4().hex[:10]
    vhost = prefix = f"bench_partners_{token}"
    created: list[str] = []
    data_dir = Path(tempfile.mkdtemp(prefix="partners-bench-"))
    system = bench = None
    vhost_made = False
    results = []
    try:
        amqp_uri = create_vhost(vhost)
        vhost_made = True
        env = create_databases(prefix, created) | PARTNER_ENV
        system = System(
            Config(
                data_dir=data_dir,
                amqp_uri=amqp_uri,
                env=env,
                services=("identity", "notify"),
                web_concurrency=2,
                ready_timeout=180.0,
                python=sys.executable,
                root=ROOT,
            )
        )
        log("starting identity, notify and the gateway…")
        system.start()
        bench = Bench(system, amqp_uri, args)
        bench.set_up()
        results.append(bench.run("healthy"))
        results.append(
            bench.run(
                f"one partner answering in {args.slow_delay:g} s, one down",
                slow=bench.receivers[-2],
                down=bench.receivers[-1],
            )
        )
    finally:
        if bench is not None:
            bench.tear_down()
        _cleanup(system, vhost if vhost_made else None, created, data_dir, log)

    first, second = results
    ratio = second.p99_ms / first.p99_ms if first.p99_ms else float("inf")
    complete = all(r.missing == 0 and r.unverified == 0 for r in results)
    verdict = "PASS" if ratio <= TAIL_FACTOR and complete else "MISS"
    for result in results:
        print(result.line())
    print(
        f"healthy partners' p99 with a slow and a dead partner: {second.p99_ms:.0f} ms vs "
        f"{first.p99_ms:.0f} ms = {ratio:.2f}x (target <= {TAIL_FACTOR:g}x, every event "
        f"delivered and signed: {'yes' if complete else 'no'}): {verdict}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"runs": [r.__dict__ for r in results], "p99_ratio": ratio}, indent=2),
            encoding="utf-8",
        )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

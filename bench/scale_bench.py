"""The transmission path at scale (issue 10): the deadline spike through the
gateway with one and with two survey replicas, CPU per transmission by
process, the outbox lag during the spike, and a light read's latency while
large forms are being checked.

    PYTHONPATH=. .venv/bin/python bench/scale_bench.py            # smoke sizes, ~1 min
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --orgs 400 --per-org 2 \\
        --clients 150 --replicas 1,2 --heavy-certs 100 --heavy-establishments 10 \\
        --json scale.json                                         # the full run

One platform (``bench.survey_bench.spike_platform``: fresh vhost and
databases, SIRENE stand-in, organisations registered and validated through
the gateway) serves every phase:

1. for each replica count (``--replicas 1,2``): the survey processes are
   brought to that count (extra ones are started as the launcher starts the
   first, same command and environment), then every organisation sends
   ``--per-org`` new forms at once from ``--clients`` clients (retries honour
   ``Retry-After``). Figures: transmissions/s, p50/p99, statuses, lost
   (acknowledged but not listed), 5xx other than 503; CPU milliseconds per
   transmission of each process group (``bench.cpu``, /proc); the age of the
   oldest unpublished outbox row of survey and files, sampled every 0.2 s,
   as p50/p99/max;
2. a light read (``GET /api/v1/surveys/<id>``, one RPC) in a closed loop,
   p50/p95, first alone, then while ``--heavy-clients`` clients transmit a
   large form (``--heavy-certs`` certifications × ``--heavy-establishments``
   establishments) back to back.

The machine's RabbitMQ is shared: its CPU counts everything it serves. Prints
the figures; ``--json`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)

from bench import survey_bench  # noqa: E402 - sets the rest of sys.path
from bench.cpu import CpuMeter, in_group, named, postgres_of, this_process  # noqa: E402
from bench.stats import percentile  # noqa: E402

log = survey_bench.log
SAMPLE_EVERY = 0.2
OUTBOX_DATABASES = ("survey", "files")


# ---------------------------------------------------------------- helpers


def survey_replicas(system) -> list:
    """The running survey processes: ``survey`` and its replicas ``survey.N``."""
    return [
        p
        for p in system.processes
        if (p.name == "survey" or p.name.startswith("survey.")) and p.popen.poll() is None
    ]


def scale_survey(system, replicas: int) -> None:
    """Starts the survey processes missing to make ``replicas`` (each once,
    same command and environment as the launcher's), and waits until that
    many consume."""
    running = survey_replicas(system)
    if not running:
        raise RuntimeError("no survey process is running")
    names = {p.name for p in running}
    template, n = running[0], 1
    for _ in range(replicas - len(running)):
        while f"survey.{n}" in names or (n == 1 and "survey" in names):
            n += 1
        names.add(f"survey.{n}")
        system.spawn(f"survey.{n}", list(template.argv), template.env)
    wait_consumers(system, "rpc-survey", replicas)


def wait_consumers(system, queue: str, count: int, timeout: float = 90.0) -> None:
    import urllib.parse

    import requests

    from bench.harness import RABBIT_API

    vhost = urllib.parse.urlsplit(system.config.amqp_uri).path.lstrip("/") or "/"
    api = urllib.parse.urlsplit(RABBIT_API)
    base = f"{api.scheme}://{api.hostname}:{api.port}"
    url = f"{base}/api/queues/{urllib.parse.quote(vhost, safe='')}/{queue}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        system.check_alive()
        response = requests.get(url, auth=(api.username, api.password), timeout=5)
        if response.ok and response.json().get("consumers", 0) >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{queue} did not reach {count} consumers within {timeout:.0f} s")


def cpu_meter(system) -> CpuMeter:
    """One group per platform process name (every survey replica together)."""
    groups = {"bench client": this_process()}

    def group(p) -> str:  # every replica of a service together
        return getattr(p, "service", None) or p.name.split(".", 1)[0]

    for name in sorted({group(p) for p in system.processes}):
        leaders = [p.popen.pid for p in system.processes if group(p) == name]
        matchers = [in_group(pid) for pid in leaders]
        groups[name] = lambda info, m=matchers: any(match(info) for match in m)
    groups["rabbitmq (shared)"] = named("beam.smp")
    prefix = (system.config.env.get("SURVEY_DB_URL") or "").rsplit("/", 1)[-1]
    groups["postgres"] = postgres_of(prefix.rsplit("_", 1)[0] or "bench_survey_")
    return CpuMeter(groups)


class OutboxSampler:
    """The age in seconds of the oldest unpublished outbox row of each
    database, sampled every ``SAMPLE_EVERY`` seconds in a thread."""

    def __init__(self, dsns: dict[str, str]):
        self.dsns = dsns
        self.samples: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import psycopg

        conns = {name: psycopg.connect(dsn, autocommit=True) for name, dsn in self.dsns.items()}
        try:
            while True:  # a first sample at once, a last one after the stop
                oldest = 0.0
                for conn in conns.values():
                    try:
                        row = conn.execute(
                            "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox "
                            "WHERE published_at IS NULL"
                        ).fetchone()
                    except psycopg.Error:
                        self.errors += 1
                        continue
                    oldest = max(oldest, float(row[0] or 0.0))
                self.samples.append(oldest)
                if self._stop.wait(SAMPLE_EVERY):
                    break
        finally:
            for conn in conns.values():
                conn.close()

    def summary(self) -> dict:
        if not self.samples:
            return {"samples": 0}
        return {
            "samples": len(self.samples),
            "p50_s": round(percentile(self.samples, 50), 3),
            "p99_s": round(percentile(self.samples, 99), 3),
            "max_s": round(max(self.samples), 3),
        }


# ---------------------------------------------------------------- phases


def spike_phase(system, runner, orgs, first: int, args) -> dict:
    meter = cpu_meter(system)
    dsns = {
        name: system.config.env[f"{name.upper()}_DB_URL"]
        for name in OUTBOX_DATABASES
        if f"{name.upper()}_DB_URL" in system.config.env
    }
    with OutboxSampler(dsns) as sampler:
        before = meter.snapshot()
        result = runner.run(orgs, first=first, count=args.per_org)
        after = meter.snapshot()
    done = max(1, result["acknowledged"])
    result["cpu_ms_per_transmission"] = {
        name: round((after[name] - before[name]) * 1000 / done, 1)
        for name in after
        if after[name] - before[name] > 0
    }
    result["cpu_ms_per_transmission_total"] = round(
        sum(result["cpu_ms_per_transmission"].values()), 1
    )
    result["outbox_lag"] = sampler.summary()
    return result


def certification_rows(certs: int, establishments: int) -> list[list]:
    return [
        [
            f"{46000000 + i:08d}",
            f"CERTIFICATION DE CHARGE {i}",
            f"RNCP{30000 + i}",
            f"niveau{3 + i % 6}",
            "BTS",
            establishments,
        ]
        for i in range(certs)
    ]


def heavy_forms(runner, org: dict, args) -> list[bytes]:
    """Two filled variants of a large form of ``org`` (sent alternately, each
    is a new version that is checked in full)."""
    from services.survey.tests.support import HEADER, fill_form, workbook_bytes

    sid, headers = org["sid"], org["headers"]
    runner.call(
        "PUT",
        f"/api/v1/surveys/{sid}/required-data",
        headers=headers,
        json={
            "establishments_count": args.heavy_establishments,
            "trainings_count": args.heavy_certs,
        },
    )
    listing = workbook_bytes(
        {
            "Certifications": [
                HEADER,
                *certification_rows(args.heavy_certs, args.heavy_establishments),
            ]
        }
    )
    runner.call(
        "POST",
        f"/api/v1/surveys/{sid}/certifications/import",
        headers=headers,
        files={"file": ("Liste-certifications.xlsx", listing)},
    )
    form = runner.call("GET", f"/api/v1/surveys/{sid}/form", headers=headers).content
    return [fill_form(form, lambda s, r, c, k=k: (r + c + k) % 90 + 0.5) for k in range(2)]


def light_loop(runner, org: dict, seconds: float) -> list[float]:
    import requests

    session = requests.Session()
    url = f"{runner.base}/api/v1/surveys/{org['sid']}"
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        response = session.get(url, headers=org["headers"], timeout=60)
        if response.status_code == 200:
            latencies.append(time.perf_counter() - start)
        time.sleep(0.02)  # a person clicking, not a flood
    return latencies


def heavy_phase(runner, orgs: list[dict], args) -> dict:
    """A light read alone, then while large forms are transmitted: each
    heavy client sends two variants of its own organisation's form in turn,
    so that every one is a new version, checked in full."""
    import requests

    reader, heavy = orgs[0], orgs[-args.heavy_clients :]
    log(
        f"preparing large forms ({args.heavy_certs} certifications × "
        f"{args.heavy_establishments} establishments) for {len(heavy)} organisations…"
    )
    forms = [heavy_forms(runner, org, args) for org in heavy]
    alone = light_loop(runner, reader, args.light_seconds)
    stop = threading.Event()
    checked: list[float] = []
    statuses: list[int] = []

    def transmit(worker: int) -> None:
        session = requests.Session()
        org, n = heavy[worker], 0
        while not stop.is_set():
            start = time.perf_counter()
            response = session.post(
                f"{runner.base}/api/v1/surveys/{org['sid']}/transmissions",
                headers={**org["headers"], "Idempotency-Key": f"heavy-{worker}-{n}-{time.time()}"},
                files={"file": ("Compte cfa.xlsx", forms[worker][n % 2])},
                timeout=120,
            )
            statuses.append(response.status_code)
            if response.status_code in (200, 201):
                checked.append(time.perf_counter() - start)
            elif response.status_code in (429, 503):
                time.sleep(float(response.headers.get("Retry-After") or 1))
            n += 1

    threads = [threading.Thread(target=transmit, args=(i,)) for i in range(len(heavy))]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the first large forms are being checked
    during = light_loop(runner, reader, args.light_seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=180)

    def ms(values, q):
        return round(percentile(values, q) * 1000, 1) if values else None

    return {
        "form_bytes": len(forms[0][0]),
        "light_alone": {"n": len(alone), "p50_ms": ms(alone, 50), "p95_ms": ms(alone, 95)},
        "light_during_heavy": {
            "n": len(during),
            "p50_ms": ms(during, 50),
            "p95_ms": ms(during, 95),
        },
        "heavy": {
            "clients": len(heavy),
            "transmitted": len(checked),
            "p50_ms": ms(checked, 50),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        },
    }


# ---------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=6, help="organisations")
    parser.add_argument("--per-org", type=int, default=2, help="forms per organisation per phase")
    parser.add_argument("--clients", type=int, default=6, help="concurrent HTTP clients")
    parser.add_argument("--replicas", default="1,2", help="survey replica counts, in order")
    parser.add_argument("--deadline", type=float, default=300, help="seconds a spike may last")
    parser.add_argument("--heavy-certs", type=int, default=20)
    parser.add_argument("--heavy-establishments", type=int, default=3)
    parser.add_argument("--heavy-clients", type=int, default=2)
    parser.add_argument("--light-seconds", type=float, default=3.0)
    parser.add_argument("--skip-heavy", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.replica_counts = [int(n) for n in args.replicas.split(",") if n.strip()]
    if not args.replica_counts or any(n < 1 for n in args.replica_counts):
        parser.error("--replicas: counts of at least 1, e.g. 1,2")
    if not 1 <= args.heavy_clients < args.orgs:
        parser.error("--heavy-clients: at least 1 and fewer than --orgs")
    if sorted(args.replica_counts) != args.replica_counts:
        parser.error("--replicas: increasing counts (replicas are only added)")
    return args


def report(figures: dict) -> None:
    for phase in figures["spikes"]:
        ok = phase["lost"] == 0 and phase["5xx_other_than_503"] == 0
        print(
            f"spike, {phase['replicas']} survey replica(s): {phase['acknowledged']}/"
            f"{phase['transmissions']} transmissions in {phase['seconds']} s = "
            f"{phase['transmissions_per_s']}/s with {phase['clients']} clients, "
            f"p50 {phase['p50_ms']} ms, p99 {phase['p99_ms']} ms, lost {phase['lost']}, "
            f"5xx other than 503 {phase['5xx_other_than_503']}, statuses {phase['statuses']} "
            f"({'PASS' if ok else 'MISS'})"
        )
        cpu = ", ".join(
            f"{name} {value}"
            for name, value in sorted(
                phase["cpu_ms_per_transmission"].items(), key=lambda kv: -kv[1]
            )
        )
        print(f"  CPU ms per transmission: {cpu} (total {phase['cpu_ms_per_transmission_total']})")
        lag = phase["outbox_lag"]
        print(
            f"  outbox lag (oldest unpublished row, {lag.get('samples', 0)} samples): "
            f"p50 {lag.get('p50_s')} s, p99 {lag.get('p99_s')} s, max {lag.get('max_s')} s"
        )
        for failure in phase["failures"]:
            print(f"  failure: {failure}")
    heavy = figures.get("heavy")
    if heavy:
        print(
            f"light read (GET /api/v1/surveys/<id>): alone p50 {heavy['light_alone']['p50_ms']} "
            f"ms / p95 {heavy['light_alone']['p95_ms']} ms; while {heavy['heavy']['clients']} "
            f"clients send {heavy['form_bytes'] // 1024} KiB forms: p50 "
            f"{heavy['light_during_heavy']['p50_ms']} ms / p95 "
            f"{heavy['light_during_heavy']['p95_ms']} ms "
            f"({heavy['heavy']['transmitted']} large forms checked, p50 "
            f"{heavy['heavy']['p50_ms']} ms, statuses {heavy['heavy']['statuses']})"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    phases = len(args.replica_counts)
    figures: dict = {"spikes": []}
    with survey_bench.spike_platform(args, forms_per_org=args.per_org * phases) as (
        system,
        runner,
        orgs,
    ):
        for index, replicas in enumerate(args.replica_counts):
            scale_survey(system, replicas)
            log(f"spike with {replicas} survey replica(s)…")
            result = spike_phase(system, runner, orgs, index * args.per_org, args)
            result["replicas"] = replicas
            figures["spikes"].append(result)
        if not args.skip_heavy:
            figures["heavy"] = heavy_phase(runner, orgs, args)
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

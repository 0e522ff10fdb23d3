"""Gateway path vs. bare nameko RPC, measured in one run on one machine.

    .venv/bin/python bench/run.py [--seconds 5] [--clients 1,20] [--json out.json]

Starts the whole platform (``deploy.launcher.System``) on a fresh RabbitMQ
vhost and fresh PostgreSQL databases, plus ``bench_trivial`` (a nameko
service whose ``ping()`` does nothing), then measures at each concurrency,
with client threads in this process:

- bare RPC: ``bench_trivial.ping()`` through a ``ClusterRpcProxy`` per thread;
- gateway: ``GET /api/v1/me`` with a bearer token (one RPC, identity.get_me);
- gateway: ``GET /health/live`` (no RPC), for context;
- bare RPC: ``identity.get_me()`` with the caller the gateway would send, to
  split the gap into the service's own work and the gateway's hop.

It prints calls/s and p50/p90/p99, the ratios gateway/bare with the targets
of docs/architecture.md §6 (PASS/MISS; a miss never fails the command), and the CPU
each process spent per call. Everything started is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform as py_platform
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # bench's modules must not shadow top-level names
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import clients as bench_clients
from bench.cpu import (
    CpuMeter,
    in_group,
    machine_busy_seconds,
    named,
    per_call_ms,
    postgres_of,
    this_process,
)
from bench.harness import Platform, platform
from bench.load import run_load
from bench.report import format_report, json_safe
from bench.stats import compare, parse_clients
from deploy.launcher import SERVICES, LaunchError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (5)")
    parser.add_argument(
        "--clients",
        type=parse_clients,
        default=[1, 20],
        help="concurrent clients, comma-separated (1,20)",
    )
    parser.add_argument("--warmup", type=int, default=200, help="warm-up calls (200)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        help="seconds the platform may take to start (180)",
    )
    parser.add_argument(
        "--services",
        type=_services,
        default=SERVICES,
        help="nameko services to start (all; identity is the one measured)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def _services(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = set(names) - set(SERVICES)
    if unknown or "identity" not in names:
        raise argparse.ArgumentTypeError(f"a subset of {','.join(SERVICES)} with identity")
    return names


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cpu_meter(running: Platform) -> CpuMeter:
    """Named process groups; the first group a process matches counts it."""
    leaders = {p.name: p.popen.pid for p in running.system.processes}
    groups = {
        "bench client": this_process(),
        "gateway": in_group(leaders.get("gateway", -1)),
        "identity": in_group(leaders.get("identity", -1)),
        "bench_trivial": in_group(running.trivial_pid),
        "rabbitmq": named("beam.smp"),
        "postgres": postgres_of(running.db_prefix),
    }
    others = [pid for name, pid in leaders.items() if name not in groups]
    groups["other platform processes"] = lambda info: info.pgrp in others
    return CpuMeter(groups)


def scenarios(running: Platform, token: str) -> dict:
    url = running.gateway_url
    return {
        "bare": bench_clients.bare_rpc(running.amqp_uri),
        "rpc_me": bench_clients.bare_rpc(
            running.amqp_uri, "identity", "get_me", bench_clients.caller_context(token)
        ),
        "me": bench_clients.http_get(f"{url}/api/v1/me", bench_clients.bearer(token)),
        "live": bench_clients.http_get(f"{url}/health/live"),
    }


def measure_one(factory, clients: int, args, meter: CpuMeter) -> tuple[dict, dict]:
    """One closed-loop measurement: its summary and where its CPU went."""
    before: dict = {}

    def open_window() -> None:
        before["machine"] = machine_busy_seconds()
        before["groups"] = meter.snapshot()

    result = run_load(factory, clients, args.seconds, args.warmup, on_start=open_window)
    after, machine = meter.snapshot(), machine_busy_seconds()
    summary = result.summary()
    window = result.seconds or math.nan
    ours = (sum(after.values()) - sum(before["groups"].values())) / window
    cpu = {
        "per_call_ms": per_call_ms(before["groups"], after, summary["calls"]),
        "cores_busy": round(ours, 2),
        "others_cores_busy": None,
    }
    if machine is not None and before["machine"] is not None:
        cpu["others_cores_busy"] = round(max(0.0, (machine - before["machine"]) / window - ours), 2)
    return summary, cpu


def measure_all(running: Platform, args) -> tuple[dict, dict]:
    admin = running.system.admin or {}
    if not admin.get("email"):
        raise LaunchError(f"no seeded admin: {running.system.skipped.get('seed', '?')}")
    token = bench_clients.sign_in(running.gateway_url, admin["email"], admin["password"])
    meter = cpu_meter(running)
    results: dict = {}
    cpu: dict = {}
    for clients in args.clients:  # interleaved: the paths see the same machine state
        for key, factory in scenarios(running, token).items():
            log(f"{key}: {clients} client(s), {args.seconds:g} s…")
            summary, spent = measure_one(factory, clients, args, meter)
            results.setdefault(key, {})[clients] = summary
            cpu.setdefault(key, {})[clients] = spent
    return results, cpu


def build_report(args, results: dict, cpu: dict, elapsed: dict, services: list[str]) -> dict:
    ratios = {
        clients: compare(results["me"][clients], results["bare"][clients])
        for clients in args.clients
    }
    cpus = os.cpu_count() or 1
    return {
        "settings": {
            "seconds": args.seconds,
            "clients": args.clients,
            "warmup": args.warmup,
            "services": services,
        },
        "machine": {
            "cpus": cpus,
            "python": py_platform.python_version(),
            "platform": py_platform.platform(),
        },
        "results": results,
        "ratios": ratios,
        "cpu": cpu,
        "elapsed_s": elapsed,
        "notes": [
            f"the bench clients are threads of this process and compete with the gateway, "
            f"the services, RabbitMQ and PostgreSQL for the same {cpus} cores: read the "
            "ratios, not the absolute figures.",
            "gateway: gunicorn gthread, WEB_CONCURRENCY=2, rate limiter off; bare RPC: "
            "one started ClusterRpcProxy per client thread, reused for every call.",
            "targets: gateway calls/s >= 85% of bare RPC calls/s; gateway p99 < 3 x p50. "
            "A MISS is reported, never fatal.",
        ],
    }


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # py-amqp warns when a reply lands on a channel being closed (a stopped
    # proxy): harmless here, and it would cut through the progress lines.
    logging.getLogger("amqp").setLevel(logging.ERROR)
    # Ctrl-C, `kill` and a closed terminal all clean up, even when the bench
    # was started with SIGINT ignored (`cmd &`); a handled signal is also
    # reset for the children, so nameko stops at once on the launcher's SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    started = time.monotonic()
    elapsed = {"startup": 0.0, "measuring": 0.0}
    try:
        with platform(args.ready_timeout, args.services, log=log) as running:
            elapsed["startup"] = time.monotonic() - started
            results, cpu = measure_all(running, args)
            started_services = list(running.system.started_services)
            elapsed["measuring"] = time.monotonic() - started - elapsed["startup"]
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped and removed")
        return 130
    except LaunchError as exc:
        log(f"failed: {exc}")
        return 1
    elapsed["total"] = time.monotonic() - started
    elapsed["cleanup"] = elapsed["total"] - elapsed["startup"] - elapsed["measuring"]
    elapsed = {k: round(v, 1) for k, v in elapsed.items()}
    report = build_report(args, results, cpu, elapsed, started_services)
    print(format_report(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(json_safe(report), indent=2, default=str) + "\n")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

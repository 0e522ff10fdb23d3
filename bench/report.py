"""The bench's report: plain-text tables for people, a dict for ``--json``."""

from __future__ import annotations

import math

from bench.stats import TAIL_TARGET, THROUGHPUT_TARGET, ratio, verdict

SCENARIOS = {
    "bare": "bare RPC  bench_trivial.ping()",
    "rpc_me": "bare RPC  identity.get_me() (DB)",
    "me": "gateway   GET /api/v1/me (1 RPC)",
    "live": "gateway   GET /health/live (no RPC)",
}
CPU_GROUPS = ("bench client", "gateway", "identity", "bench_trivial", "rabbitmq", "postgres")


def _num(value, digits: int = 2, width: int = 8) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—".rjust(width)
    return f"{value:.{digits}f}".rjust(width)


def measurements_table(results: dict, counts: list[int]) -> list[str]:
    lines = [
        f"{'path':<38}{'clients':>8}{'calls/s':>10}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}",
    ]
    for clients in counts:
        for key, label in SCENARIOS.items():
            row = results.get(key, {}).get(clients)
            if row is None:
                continue
            lines.append(
                f"{label:<38}{clients:>8}{_num(row['calls_per_s'], 1, 10)}"
                f"{_num(row['p50_ms'], 2, 9)}{_num(row['p90_ms'], 2, 9)}"
                f"{_num(row['p99_ms'], 2, 9)}{row['errors']:>8}"
            )
        lines.append("")
    return lines


def ratios_table(ratios: dict, results: dict, counts: list[int]) -> list[str]:
    lines = [
        "gateway GET /api/v1/me ÷ bare RPC, same run, same machine:",
        f"{'clients':>7}  {'calls/s':>8} {'target':<13}{'p50':>7}{'p99':>7}"
        f"   {'gw p99/p50':>10} {'target':<11}{'no-RPC gw calls/s ÷ bare':>26}",
    ]
    for clients in counts:
        r = ratios.get(clients)
        if r is None:
            continue
        live = ratio(
            results.get("live", {}).get(clients, {}).get("calls_per_s"),
            results.get("bare", {}).get(clients, {}).get("calls_per_s"),
        )
        lines.append(
            f"{clients:>7}  {_num(r['throughput'])} "
            f"{verdict(r['throughput_target_met']) + f' (≥{THROUGHPUT_TARGET:.2f})':<13}"
            f"{_num(r['p50'], 2, 7)}{_num(r['p99'], 2, 7)}"
            f"   {_num(r['gateway_p99_over_p50'], 2, 10)} "
            f"{verdict(r['tail_target_met']) + f' (<{TAIL_TARGET:.0f})':<11}"
            f"{_num(live, 2, 26)}"
        )
    return lines


def split_table(results: dict, counts: list[int]) -> list[str]:
    """Where the gap comes from: the service's work vs. the gateway's hop."""

    def cps(key: str, clients: int):
        return results.get(key, {}).get(clients, {}).get("calls_per_s")

    lines = [
        "Where the gap comes from (calls/s ratios):",
        f"{'clients':>7}  {'get_me ÷ ping (bare RPCs)':>26}"
        f"{'gw /me ÷ bare get_me':>22}{'gw /me ÷ ping':>15}",
    ]
    for clients in counts:
        service = ratio(cps("rpc_me", clients), cps("bare", clients))
        hop = ratio(cps("me", clients), cps("rpc_me", clients))
        total = ratio(cps("me", clients), cps("bare", clients))
        lines.append(f"{clients:>7}  {_num(service, 2, 26)}{_num(hop, 2, 22)}{_num(total, 2, 15)}")
    return lines


def cpu_table(cpu: dict, counts: list[int]) -> list[str]:
    if not cpu:
        return ["(no CPU accounting: /proc is not available)"]
    header = f"{'path':<38}{'clients':>8}" + "".join(f"{g[:13]:>14}" for g in CPU_GROUPS)
    lines = [
        "CPU ms per call, by process (from /proc); cores busy: ours, and other",
        "processes of the machine during the same window:",
        header + f"{'ours':>7}{'others':>8}",
    ]
    for clients in counts:
        for key, label in SCENARIOS.items():
            row = cpu.get(key, {}).get(clients)
            if not row:
                continue
            cells = "".join(_num(row["per_call_ms"].get(g), 3, 14) for g in CPU_GROUPS)
            lines.append(
                f"{label:<38}{clients:>8}{cells}{_num(row['cores_busy'], 2, 7)}"
                f"{_num(row.get('others_cores_busy'), 2, 8)}"
            )
    return lines


def disturbance_note(cpu: dict, threshold: float = 0.25) -> str | None:
    """A warning when other processes took a noticeable share of the cores."""
    others = [
        row.get("others_cores_busy") or 0.0
        for by_count in cpu.values()
        for row in by_count.values()
    ]
    worst = max(others, default=0.0)
    if worst < threshold:
        return None
    return (
        f"WARNING: other processes of the machine used up to {worst:.2f} cores during the "
        "measurements; the figures are disturbed (run again on a quiet machine)."
    )


def json_safe(value):
    """NaN (no calls measured) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def format_report(report: dict) -> str:
    settings, machine = report["settings"], report["machine"]
    counts = settings["clients"]
    lines = [
        "",
        f"Bench: {settings['seconds']:g} s per measurement after {settings['warmup']} "
        f"warm-up calls; {machine['cpus']} CPUs, Python {machine['python']}; "
        f"services running: {', '.join(settings.get('services', ())) or '?'}.",
        "",
    ]
    lines += measurements_table(report["results"], counts)
    lines += ratios_table(report["ratios"], report["results"], counts)
    lines += [""] + split_table(report["results"], counts)
    lines += [""] + cpu_table(report["cpu"], counts)
    lines += ["", *(f"Note: {note}" for note in report["notes"])]
    warning = disturbance_note(report["cpu"])
    if warning:
        lines.append(warning)
    lines.append(
        f"Total time: {report['elapsed_s']['total']:.0f} s "
        f"(start {report['elapsed_s']['startup']:.0f} s, measurements "
        f"{report['elapsed_s']['measuring']:.0f} s, stop and clean-up "
        f"{report['elapsed_s']['cleanup']:.0f} s)."
    )
    return "\n".join(lines)

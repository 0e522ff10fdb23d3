"""Pure helpers of the bench: percentiles, throughput, ratios and targets.

Latencies are given in seconds and reported in milliseconds. Nothing here
touches the network, so ``bench/tests`` can check it without servers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# The quality bars of docs/architecture.md §6 as the bench checks them.
THROUGHPUT_TARGET = 0.85  # gateway calls/s >= 85 % of bare RPC calls/s
TAIL_TARGET = 3.0  # gateway p99 < 3 x its p50


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between the
    closest ranks (numpy's default); ``nan`` for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def throughput(calls: int, seconds: float) -> float:
    """Calls per second over a window; 0 for an empty window."""
    return calls / seconds if seconds > 0 else 0.0


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    if math.isnan(numerator) or math.isnan(denominator):
        return None
    return numerator / denominator


def summarize(latencies: Sequence[float], seconds: float, errors: int = 0) -> dict:
    """Calls, errors, calls/s and latency percentiles (ms) of one measurement."""
    ordered = sorted(latencies)

    def ms(value: float) -> float:
        return round(value * 1000, 3) if not math.isnan(value) else math.nan

    return {
        "calls": len(ordered),
        "errors": errors,
        "seconds": round(seconds, 3),
        "calls_per_s": round(throughput(len(ordered), seconds), 1),
        "p50_ms": ms(percentile(ordered, 50)),
        "p90_ms": ms(percentile(ordered, 90)),
        "p99_ms": ms(percentile(ordered, 99)),
        "mean_ms": ms(sum(ordered) / len(ordered)) if ordered else math.nan,
        "max_ms": ms(ordered[-1]) if ordered else math.nan,
    }


def compare(gateway: dict, bare: dict) -> dict:
    """Ratios gateway/bare of one concurrency, and the gateway's p99/p50,
    with the targets' verdicts (True: met, False: missed, None: unknown)."""
    throughput_ratio = ratio(gateway.get("calls_per_s"), bare.get("calls_per_s"))
    tail = ratio(gateway.get("p99_ms"), gateway.get("p50_ms"))
    return {
        "throughput": throughput_ratio,
        "p50": ratio(gateway.get("p50_ms"), bare.get("p50_ms")),
        "p99": ratio(gateway.get("p99_ms"), bare.get("p99_ms")),
        "gateway_p99_over_p50": tail,
        "throughput_target_met": meets_throughput(throughput_ratio),
        "tail_target_met": meets_tail(tail),
    }


def meets_throughput(value: float | None, target: float = THROUGHPUT_TARGET) -> bool | None:
    return None if value is None else value >= target


def meets_tail(value: float | None, target: float = TAIL_TARGET) -> bool | None:
    return None if value is None else value < target


def verdict(met: bool | None) -> str:
    return {True: "PASS", False: "MISS", None: "n/a"}[met]


def parse_clients(text: str) -> list[int]:
    """``"1,20"`` → ``[1, 20]`` (positive, unique, in the given order)."""
    counts: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        count = int(item)
        if count < 1:
            raise ValueError(f"a client count must be positive, got {count}")
        if count not in counts:
            counts.append(count)
    if not counts:
        raise ValueError("no client count given")
    return counts

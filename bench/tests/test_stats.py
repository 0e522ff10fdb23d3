"""Unit tests of the bench's pure helpers (no servers, well under a second)."""

from __future__ import annotations

import math
import threading
import time

import pytest

from bench.cpu import busy_ticks, parse_stat, per_call_ms
from bench.load import run_load, warmup_per_client
from bench.report import json_safe
from bench.stats import (
    compare,
    meets_tail,
    meets_throughput,
    parse_clients,
    percentile,
    ratio,
    summarize,
    throughput,
    verdict,
)


def test_percentile_interpolates_between_ranks():
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 10


def test_percentile_ignores_input_order_and_handles_edges():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_throughput_and_ratio():
    assert throughput(500, 2.0) == 250
    assert throughput(10, 0) == 0.0
    assert ratio(85, 100) == pytest.approx(0.85)
    assert ratio(None, 100) is None
    assert ratio(5, 0) is None
    assert ratio(math.nan, 1) is None


def test_summarize_reports_milliseconds_and_calls_per_second():
    latencies = [0.001 * i for i in range(1, 101)]  # 1..100 ms
    summary = summarize(latencies, seconds=2.0, errors=3)
    assert summary["calls"] == 100
    assert summary["errors"] == 3
    assert summary["calls_per_s"] == 50.0
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p90_ms"] == pytest.approx(90.1)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["max_ms"] == pytest.approx(100.0)


def test_summarize_of_nothing():
    summary = summarize([], seconds=1.0)
    assert summary["calls"] == 0
    assert summary["calls_per_s"] == 0
    assert math.isnan(summary["p50_ms"])


def test_compare_gives_ratios_and_verdicts():
    bare = {"calls_per_s": 500.0, "p50_ms": 2.0, "p99_ms": 4.0}
    gateway = {"calls_per_s": 450.0, "p50_ms": 3.0, "p99_ms": 12.0}
    result = compare(gateway, bare)
    assert result["throughput"] == pytest.approx(0.9)
    assert result["p50"] == pytest.approx(1.5)
    assert result["p99"] == pytest.approx(3.0)
    assert result["gateway_p99_over_p50"] == pytest.approx(4.0)
    assert result["throughput_target_met"] is True
    assert result["tail_target_met"] is False


def test_targets_and_verdicts():
    assert meets_throughput(0.85) is True
    assert meets_throughput(0.849) is False
    assert meets_tail(2.99) is True
    assert meets_tail(3.0) is False
    assert meets_tail(None) is None
    assert [verdict(v) for v in (True, False, None)] == ["PASS", "MISS", "n/a"]


def test_parse_clients():
    assert parse_clients("1,20") == [1, 20]
    assert parse_clients(" 20, 1 ,20,") == [20, 1]
    for bad in ("", "0", "1,-2", "x"):
        with pytest.raises(ValueError):
            parse_clients(bad)


def test_warmup_is_spread_over_clients():
    assert warmup_per_client(200, 1) == 200
    assert warmup_per_client(200, 20) == 10
    assert warmup_per_client(200, 300) == 5
    assert warmup_per_client(0, 4) == 0


def test_per_call_cpu_and_stat_parsing():
    info = parse_stat(42, "42 (gunicorn: worker (x)) S 1 40 40 0 -1 0 0 0 0 0 150 50 0 0")
    assert (info.pid, info.pgrp, info.comm) == (42, 40, "gunicorn: worker (x)")
    assert info.cpu_seconds > 0
    assert per_call_ms({"a": 1.0}, {"a": 1.5}, 100) == {"a": 5.0}
    assert per_call_ms({"a": 1.0}, {"a": 1.5}, 0) == {}


def test_run_load_counts_calls_and_errors_in_threads():
    lock = threading.Lock()
    state = {"n": 0, "closed": 0}

    def factory():
        def call():
            with lock:
                state["n"] += 1
                n = state["n"]
            time.sleep(0.001)
            if n % 10 == 0:
                raise KeyError("boom")

        def close():
            with lock:
                state["closed"] += 1

        return call, close

    result = run_load(factory, clients=3, seconds=0.2, warmup=6)
    summary = result.summary()
    assert state["closed"] == 3
    assert summary["clients"] == 3
    assert summary["calls"] > 0
    assert summary["errors"] == sum(result.errors.values()) > 0
    assert set(summary["error_kinds"]) == {"KeyError"}
    assert 0.2 <= result.seconds < 1.0


def test_machine_busy_ticks_leave_out_idle_and_iowait():
    fields = "cpu 100 5 50 1000 40 3 2 1 0 0".split()
    assert busy_ticks(fields) == 100 + 5 + 50 + 3 + 2 + 1


def test_json_safe_turns_nan_into_null_and_keys_into_strings():
    assert json_safe({1: {"p50_ms": math.nan, "x": [1.0, math.nan]}}) == {
        "1": {"p50_ms": None, "x": [1.0, None]}
    }

"""bench/scale_bench.py at smoke sizes: the whole platform on a fresh vhost
and databases, three organisations, one then two survey replicas, a large
form beside light reads. Checks the figures are there and sane, not their
values (the machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import scale_bench

ROOT = Path(__file__).resolve().parents[2]


def test_its_arguments_are_checked():
    with pytest.raises(SystemExit):
        scale_bench.parse_args(["--replicas", "2,1"])
    with pytest.raises(SystemExit):
        scale_bench.parse_args(["--orgs", "2", "--heavy-clients", "2"])
    assert scale_bench.parse_args(["--replicas", "1,3"]).replica_counts == [1, 3]


@pytest.mark.e2e
def test_the_smoke_run_prints_every_figure(tmp_path):
    out = tmp_path / "scale.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "bench/scale_bench.py",
            "--orgs", "3", "--per-org", "1", "--clients", "3", "--replicas", "1,2",
            "--heavy-clients", "1", "--heavy-certs", "3", "--heavy-establishments", "2",
            "--light-seconds", "1", "--json", str(out),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    one, two = figures["spikes"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    for phase in (one, two):
        assert phase["acknowledged"] == phase["transmissions"] == 3
        assert phase["recorded"] >= 3 and phase["lost"] == 0
        assert phase["5xx_other_than_503"] == 0
        assert phase["transmissions_per_s"] > 0 and phase["p99_ms"] >= phase["p50_ms"] > 0
        cpu = phase["cpu_ms_per_transmission"]
        assert {"gateway", "survey", "files"} <= set(cpu), cpu
        assert phase["outbox_lag"]["samples"] > 0
    heavy = figures["heavy"]
    assert heavy["heavy"]["transmitted"] > 0
    assert heavy["light_alone"]["p95_ms"] and heavy["light_during_heavy"]["p95_ms"]
    assert "spike, 2 survey replica(s)" in done.stdout and "light read" in done.stdout

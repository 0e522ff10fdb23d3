"""kit.cpu.ProcessPool under eventlet (the root conftest monkey-patches):
heavy calls run in worker processes while the hub keeps turning."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import eventlet
import pytest

from kit import cpu
from kit.errors import InvalidInput

# the workers import the jobs by name: their folder goes on sys.path, which
# the workers inherit
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))
import cpu_jobs as jobs  # noqa: E402


@pytest.fixture
def pool():
    pool = cpu.ProcessPool(2)
    yield pool
    pool.close()


def test_heavy_calls_leave_the_hub_free_and_reuse_their_workers(pool):
    pool.run(jobs.burn, 0.0)  # the workers' start-up is not measured
    pool.run(jobs.burn, 0.0)
    gaps = []

    def ticker(stop):
        last = time.perf_counter()
        while not stop.ready():
            eventlet.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    stop = eventlet.event.Event()
    ticking = eventlet.spawn(ticker, stop)
    pile = eventlet.GreenPile()
    for _ in range(4):
        pile.spawn(pool.run, jobs.burn, 0.3)
    pids = list(pile)
    stop.send()
    ticking.wait()
    # in threads these four would hold the GIL against the hub for 1.2 s
    assert max(gaps) < 0.25, max(gaps)
    assert len(set(pids)) <= 2 and set(pids) <= set(pool.pids())
    assert pool.busy == 0


def test_errors_come_back_as_raised_and_a_dead_worker_is_replaced(pool):
    with pytest.raises(InvalidInput) as caught:
        pool.run(jobs.refuse, "x.refused")
    assert (caught.value.code, caught.value.details) == ("x.refused", {"cell": "A1"})
    before = set(pool.pids())
    with pytest.raises(cpu.WorkerCrashed):
        pool.run(jobs.die)
    assert len(pool.pids()) < len(before) or set(pool.pids()) != before
    assert pool.run(jobs.burn, 0.0) in pool.pids()


def test_the_pool_size_is_configuration():
    assert cpu.pool_size({"CPU_WORKERS": "3"}) == 3
    assert 1 <= cpu.pool_size({}) <= cpu.MAX_WORKERS_DEFAULT
    with pytest.raises(ValueError):
        cpu.pool_size({"CPU_WORKERS": "0"})
    with pytest.raises(ValueError):
        cpu.ProcessPool(0)


def test_outside_eventlet_heavy_work_runs_here(monkeypatch):
    monkeypatch.setattr(cpu, "_monkey_patched", lambda: False)
    assert cpu.heavy(jobs.burn, 0.0) == __import__("os").getpid()

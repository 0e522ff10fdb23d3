"""Closed-loop load in plain threads: N clients, each calling back to back.

Each client thread opens its own client (a started ``ClusterRpcProxy``, a
``requests.Session``...), warms it up, waits for the others at a barrier,
then calls for a fixed duration, timing each call with ``perf_counter``. No
eventlet here: the bench process is never monkey-patched.

A client factory returns ``(call, close)``: ``call()`` makes one request and
raises on any failure (counted by the exception's ``kind`` attribute, else
its class name); ``close()`` releases the client.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.stats import summarize

Client = tuple[Callable[[], object], Callable[[], None]]
ClientFactory = Callable[[], Client]
Hook = Callable[[], None]

SETUP_TIMEOUT = 30.0


@dataclass
class Sample:
    """What one client thread measured."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    finished_at: float = 0.0
    failure: BaseException | None = None


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies: list[float]
    errors: Counter

    def summary(self) -> dict:
        result = summarize(self.latencies, self.seconds, sum(self.errors.values()))
        result["clients"] = self.clients
        result["error_kinds"] = dict(self.errors)
        return result


def warmup_per_client(total: int, clients: int, minimum: int = 5) -> int:
    """Warm-up calls of each client: ``total`` spread over the clients."""
    return max(minimum, -(-total // clients)) if total > 0 else 0


def _call_once(call, sample: Sample) -> bool:
    try:
        call()
        return True
    except Exception as exc:  # noqa: BLE001 - counted, reported, never fatal
        sample.errors[getattr(exc, "kind", None) or type(exc).__name__] += 1
        return False


def _client_thread(factory, warmup, barrier, clock, sample: Sample) -> None:
    try:
        call, close = factory()
    except BaseException as exc:  # noqa: BLE001 - the main thread reports it
        sample.failure = exc
        barrier.abort()
        return
    try:
        for _ in range(warmup):
            _call_once(call, sample)
        sample.errors.clear()  # warm-up failures are not measured
        barrier.wait(timeout=SETUP_TIMEOUT)
        deadline = clock["deadline"]
        latencies = sample.latencies
        while True:
            start = time.perf_counter()
            if start >= deadline:
                break
            if _call_once(call, sample):
                latencies.append(time.perf_counter() - start)
            else:
                time.sleep(0.001)  # a broken path must not spin
        sample.finished_at = time.perf_counter()
    except threading.BrokenBarrierError:
        pass
    finally:
        close()


def run_load(
    factory: ClientFactory,
    clients: int,
    seconds: float,
    warmup: int = 200,
    on_start: Hook | None = None,
) -> LoadResult:
    """``clients`` threads calling for ``seconds`` after ``warmup`` calls in
    all; ``on_start`` runs once, right before the measured window opens."""
    clock: dict[str, float] = {}

    def open_window() -> None:
        if on_start is not None:
            on_start()
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds

    barrier = threading.Barrier(clients, action=open_window, timeout=SETUP_TIMEOUT)
    samples = [Sample() for _ in range(clients)]
    per_client = warmup_per_client(warmup, clients)
    threads = [
        threading.Thread(
            target=_client_thread,
            args=(factory, per_client, barrier, clock, sample),
            name=f"bench-client-{i}",
            daemon=True,
        )
        for i, sample in enumerate(samples)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = [s.failure for s in samples if s.failure is not None]
    if failures:
        raise RuntimeError(f"a bench client could not start: {failures[0]!r}") from failures[0]
    if "start" not in clock:
        raise RuntimeError("the bench clients never all got ready")
    window = max(s.finished_at for s in samples) - clock["start"]
    latencies = [value for s in samples for value in s.latencies]
    errors = sum((s.errors for s in samples), Counter())
    return LoadResult(clients, window, latencies, errors)

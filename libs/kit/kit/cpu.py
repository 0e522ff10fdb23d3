"""CPU-heavy work (password hashing, spreadsheets, PDF) off the eventlet hub.

Under a nameko worker the hub must keep turning or the AMQP heartbeat starves
and the broker re-runs the job (docs/stack-pitfalls.md §10). Two ways out:

- ``offload``: eventlet's native thread pool. Right for work that releases
  the GIL (argon2, bcrypt, C parsers); pure-Python work in a thread still
  competes with the hub for the GIL, so light requests of the same process
  slow down while it runs (a light read's p95 went from 24 ms to 615 ms while
  five large forms were checked).
- ``heavy``: a bounded pool of worker processes of this service (``ProcessPool``),
  for pure-Python work (spreadsheet checks, form validation, generation): the
  hub only writes the call to a pipe and reads the answer, cooperatively, so
  light RPCs keep their latency whatever the heavy ones cost. At most
  ``CPU_WORKERS`` (default: the number of cores, at most 2) calls run at once
  per service process; the others wait their turn without blocking the hub.
  The function and its arguments are pickled: a module-level function and
  plain data; its exceptions come back as they were raised (``kit.errors``
  classes included). A worker that dies (a parser aborting the process) is
  replaced, and the call raises ``WorkerCrashed``.

Outside eventlet (tests, scripts) both simply run the function.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading

HEADER = struct.Struct("!Q")
MAX_WORKERS_DEFAULT = 2


def _monkey_patched() -> bool:
    try:
        from eventlet.patcher import is_monkey_patched
    except ImportError:  # pragma: no cover
        return False
    return is_monkey_patched("thread")


def offload(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in eventlet's thread pool (or here, outside eventlet)."""
    if _monkey_patched():
        from eventlet import tpool

        return tpool.execute(fn, *args, **kwargs)
    return fn(*args, **kwargs)


def heavy(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in this process's ``ProcessPool`` (or here,
    outside eventlet)."""
    if _monkey_patched():
        return default_pool().run(fn, *args, **kwargs)
    return fn(*args, **kwargs)


class WorkerCrashed(RuntimeError):
    """The worker process died during the call."""


def _read_exact(stream, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            raise EOFError("the worker closed its pipe")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


class _Worker:
    def __init__(self, python: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.popen = subprocess.Popen(
            [python, "-m", "kit.cpu"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )

    def call(self, payload: bytes) -> tuple[str, object]:
        self.popen.stdin.write(HEADER.pack(len(payload)) + payload)
        self.popen.stdin.flush()
        (size,) = HEADER.unpack(_read_exact(self.popen.stdout, HEADER.size))
        return pickle.loads(_read_exact(self.popen.stdout, size))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, kill: bool = False) -> None:
        try:
            if kill:
                self.popen.kill()
            else:
                self.popen.stdin.close()
            self.popen.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            try:
                self.popen.kill()
            except OSError:
                pass


class ProcessPool:
    """At most ``size`` calls at once, each in a worker process of its own
    (started on first need, kept for the next calls)."""

    def __init__(self, size: int, python: str | None = None):
        if size < 1:
            raise ValueError("a process pool needs at least one worker")
        self.size = size
        self.python = python or sys.executable
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self.busy = 0  # calls running now (metrics, tests)

    def run(self, fn, *args, **kwargs):
        payload = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        with self._slots:
            worker = self._take()
            self.busy += 1
            try:
                status, value = worker.call(payload)
            except (EOFError, OSError) as exc:
                self._drop(worker, kill=True)
                raise WorkerCrashed(f"the worker process ended during {fn.__name__}") from exc
            except BaseException:  # a timeout or kill of the calling greenlet
                self._drop(worker, kill=True)
                raise
            finally:
                self.busy -= 1
            self._give(worker)
        if status == "ok":
            return value
        raise value

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.remove(worker)
            worker = _Worker(self.python)
            self._all.append(worker)
            return worker

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def _drop(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        worker.stop(kill=kill)

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], []
        for worker in workers:
            worker.stop()

    def pids(self) -> list[int]:
        with self._lock:
            return [w.popen.pid for w in self._all]


_default: ProcessPool | None = None
_default_lock = threading.Lock()


def pool_size(environ=os.environ) -> int:
    raw = (environ.get("CPU_WORKERS") or "").strip()
    if raw:
        value = int(raw)
        if value < 1:
            raise ValueError("CPU_WORKERS must be at least 1")
        return value
    return max(1, min(MAX_WORKERS_DEFAULT, os.cpu_count() or 1))


def default_pool() -> ProcessPool:
    global _default
    with _default_lock:
        if _default is None:
            _default = ProcessPool(pool_size())
            atexit.register(_default.close)
        return _default


# ---------------------------------------------------------------- the worker side


def serve(stdin, stdout) -> None:
    """Answers calls until stdin closes: each request and answer is a
    length-prefixed pickle; answers are ``("ok", result)`` or ``("error", exc)``."""
    while True:
        try:
            (size,) = HEADER.unpack(_read_exact(stdin, HEADER.size))
            fn, args, kwargs = pickle.loads(_read_exact(stdin, size))
        except EOFError:
            return
        try:
            answer = ("ok", fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            answer = ("error", exc)
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)  # an exception that cannot cross comes back as one that can
        except Exception as exc:  # noqa: BLE001
            data = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        stdout.write(HEADER.pack(len(data)) + data)
        stdout.flush()


def _main() -> None:  # pragma: no cover - run as the worker process
    import signal
    import warnings

    # a SIGTERM to the service's process group must not end the calls it is
    # draining: a worker ends when its service closes the pipe (or dies)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    # the answers own the real stdout; anything printed goes to stderr
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":  # pragma: no cover
    _main()

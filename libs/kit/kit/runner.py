"""Runs nameko services with a bounded, draining shutdown (docs/architecture.md §9).

``python -m kit.runner --config deploy/nameko.yaml survey.service`` replaces
``nameko run``. What differs is the stop, on SIGTERM (Kubernetes, docker,
the launcher) as on SIGINT:

1. every entrypoint stops consuming (the RPC and event consumers are
   cancelled, timers stop ticking); the broker connection stays open so the
   workers still running can acknowledge their messages and send replies;
2. the workers in flight finish, within ``SHUTDOWN_GRACE_SECONDS`` (default
   30; the config key of the same name wins over the environment);
3. the outbox is flushed: one last ``relay_outbox`` worker publishes what
   is still pending (bounded by ``SHUTDOWN_FLUSH_SECONDS``, default 5);
4. dependencies and the broker connections are closed, and the process
   exits 0.

If the grace period runs out, the workers still running are killed: their
messages were never acknowledged, so the broker gives them to another
replica (or to this service when it is back) once the connection closes;
idempotency keys and inboxes make the second execution answer the first
one's result. The exit code is still 0 (the log says how many workers were
killed). A second SIGTERM/SIGINT during the stop kills at once.

``nameko run`` has no bound (it waits for every worker, and for a timer
worker stuck on a dead dependency, forever) and no flush.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402 - before anything else opens a socket

import argparse  # noqa: E402
import errno  # noqa: E402
import logging  # noqa: E402
import logging.config  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from nameko.containers import ServiceContainer  # noqa: E402

log = logging.getLogger("kit.runner")

GRACE_KEY = "SHUTDOWN_GRACE_SECONDS"
FLUSH_KEY = "SHUTDOWN_FLUSH_SECONDS"
DEFAULT_GRACE = 30.0
DEFAULT_FLUSH = 5.0
FLUSH_METHOD = "relay_outbox"  # kit.service.ServiceBase's outbox timer


def seconds(config: dict, key: str, default: float, environ=os.environ) -> float:
    """A non-negative number of seconds from the config, else the environment."""
    raw = config.get(key)
    if raw is None or str(raw).strip() == "":
        raw = environ.get(key, "")
    if str(raw).strip() == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SystemExit(f"{key} must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise SystemExit(f"{key} must be a finite number of seconds >= 0, got {raw!r}")
    return value


class GracefulContainer(ServiceContainer):
    """``ServiceContainer`` whose ``stop`` is bounded by the grace period and
    flushes the outbox before closing its dependencies."""

    def __init__(self, service_cls, config):
        super().__init__(service_cls, config)
        self.grace = seconds(config, GRACE_KEY, DEFAULT_GRACE)
        self.flush_timeout = seconds(config, FLUSH_KEY, DEFAULT_FLUSH)
        self.killed_workers = 0

    def stop(self):
        if self._being_killed or self._died.ready():
            return super().stop()  # nameko's own handling of these races
        started = time.monotonic()
        log.info("stopping %s: draining (grace %.0f s)", self.service_name, self.grace)
        drain = eventlet.spawn(self._drain)
        drained = _wait(drain, self.grace)
        if not drained:
            drain.kill()
            self.killed_workers = len(self._worker_threads)
            log.warning(
                "grace period of %.0f s over: killing %d worker(s) of %s; their "
                "messages go back to the queue",
                self.grace,
                self.killed_workers,
                self.service_name,
            )
            self._kill_worker_threads()
        self._flush_outbox()
        if drained:
            finish = eventlet.spawn(self._close)
            if not _wait(finish, self.flush_timeout + 5):
                finish.kill()
                log.warning("closing %s took too long: killed", self.service_name)
                self.kill()
        else:
            self.kill()  # closes the connections: unacked messages are redelivered
        log.info(
            "stopped %s in %.1f s (%d worker(s) killed)",
            self.service_name,
            time.monotonic() - started,
            self.killed_workers,
        )

    def _drain(self):
        self.entrypoints.all.stop()  # no new worker; timers finish their tick
        self._worker_pool.waitall()

    def _flush_outbox(self):
        entrypoint = next(
            (e for e in self.entrypoints if getattr(e, "method_name", None) == FLUSH_METHOD), None
        )
        if entrypoint is None or self._being_killed:
            return
        try:
            worker_ctx = self.spawn_worker(entrypoint, (), {})
        except Exception:  # noqa: BLE001 - a failed flush leaves rows for the next start
            log.warning("outbox flush of %s could not start", self.service_name, exc_info=True)
            return
        # nameko's spawn_worker returns the WorkerContext; its green thread is
        # kept in _worker_threads until it ends
        worker = self._worker_threads.get(worker_ctx)
        if worker is not None and not _wait(worker, self.flush_timeout):
            worker.kill()
            log.warning(
                "outbox flush of %s took more than %.0f s: left for the next start",
                self.service_name,
                self.flush_timeout,
            )

    def _close(self):
        self.dependencies.all.stop()
        self.subextensions.all.stop()  # the queue consumers: the connections close
        self._kill_managed_threads()
        self.started = False
        if not self._died.ready():
            self._died.send(None)


def _wait(gt, timeout: float) -> bool:
    """Waits for a green thread at most ``timeout`` seconds; True if it ended
    (an exception in it is logged, not raised)."""
    try:
        with eventlet.Timeout(timeout):
            gt.wait()
    except eventlet.Timeout:
        return False
    except Exception:  # noqa: BLE001
        log.warning("shutdown step failed", exc_info=True)
    return True


def load_config(path: str | None, broker: str | None = None) -> dict:
    """The YAML config with nameko's ``${VAR:default}`` substitution."""
    import yaml
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    if path:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    else:
        config = {"AMQP_URI": broker or "amqp://guest:guest@127.0.0.1:5672/"}
    config["SERVICE_CONTAINER_CLS"] = f"{__name__}.GracefulContainer"
    return config


def run(service_paths: list[str], config: dict) -> int:
    from nameko.cli.run import import_service
    from nameko.runners import ServiceRunner

    services = []
    for path in service_paths:
        services.extend(import_service(path))
    runner = ServiceRunner(config)
    for service_cls in services:
        runner.add_service(service_cls)
    state = {"stopping": None}

    def shutdown(signum, frame):
        # signal handlers run in the hub's main loop: no eventlet primitive here
        if state["stopping"] is None:
            log.info("%s received: stopping", signal.Signals(signum).name)
            state["stopping"] = eventlet.spawn(runner.stop)
        else:
            log.warning("second %s: killing at once", signal.Signals(signum).name)
            eventlet.spawn_n(runner.kill)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    waiter = eventlet.spawn(runner.wait)
    while True:
        try:
            waiter.wait()
        except OSError as exc:  # EINTR from the signal while the hub waits
            if exc.errno == errno.EINTR:
                continue
            raise
        break
    if state["stopping"] is not None:
        state["stopping"].wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kit.runner", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("services", nargs="+", metavar="module[:Class]")
    parser.add_argument("--config", help="nameko YAML config (deploy/nameko.yaml)")
    parser.add_argument("--broker", help="AMQP URI when no config is given")
    args = parser.parse_args(argv)
    if "." not in sys.path:
        sys.path.insert(0, ".")
    config = load_config(args.config, args.broker)
    if "LOGGING" in config:
        logging.config.dictConfig(config["LOGGING"])
    else:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(args.services, config)


if __name__ == "__main__":
    sys.exit(main())

"""The durable event queues of the platform, declared at deploy time.

    python -m kit.topology list                 # what would be declared (JSON lines)
    python -m kit.topology declare [--amqp-uri URI]

The queues are derived from the code, not kept by hand: every service under
``services/<name>/<name>/service.py`` is imported and its ``kit.handlers``
event handlers are read (source service, event type, method name). For each
consumer service this declares, as ``kit.handlers`` does when the service
starts:

- the ``<source>.events`` topic exchanges and, bound to them, every handler
  queue ``evt-<source>-<event_type>--<service>.<method>`` (durable, quorum);
- the retry exchange ``<service>.retry`` and queues ``<service>.retry.<ms>ms``
  (``EVENT_RETRY_DELAYS``) and the dead-letter queue ``<service>.deadletter``.

So an event published before its consumer first starts is queued, and the
outbox's mandatory publication finds a queue. The launcher runs
:func:`declare` after the migrations; in Kubernetes the migrations Job runs
``python -m kit.topology declare``. Where the consumer may be absent (the
topology step skipped, a consumer not deployed yet), the outbox relay itself
declares the consumers' queues of an event type the first time its
publication is refused (:func:`declare_consumers_of`), then retries.
Declaring is idempotent; a queue that exists with other arguments (a classic
queue from before quorum queues) is an error that names it (README: migrate
by draining and redeclaring).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import amqp.exceptions
from kombu import Connection
from nameko.standalone.events import get_event_exchange
from prometheus_client import Counter

from kit.handlers import EventHandler, handler_queue, retry_exchange, service_queues

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
# how often a publisher checks that every consumer's queue of a type exists
CHECK_SECONDS = float(os.environ.get("TOPOLOGY_CHECK_SECONDS", "60"))
RESTORED = Counter(
    "topology_queues_restored_total",
    "Event queues found missing by a publisher and declared again (a consumer's queue "
    "deleted while others of the same event type remained).",
    ["queue"],
)
_CHECKED: dict[tuple[str, str], float] = {}


@dataclass(frozen=True)
class Binding:
    service: str  # the consumer
    method: str
    source: str
    event_type: str

    @property
    def queue(self) -> str:
        return f"evt-{self.source}-{self.event_type}--{self.service}.{self.method}"


def handlers_of(cls) -> list[Binding]:
    """The kit event handlers of a nameko service class."""
    found = []
    for attr, fn in inspect.getmembers(cls):
        for entrypoint in getattr(fn, "nameko_entrypoints", ()) or ():
            if isinstance(entrypoint, EventHandler):
                found.append(
                    Binding(cls.name, attr, entrypoint.source_service, entrypoint.event_type)
                )
    return sorted(found, key=lambda b: b.queue)


def service_names(root: Path = ROOT) -> list[str]:
    return sorted(
        p.parent.parent.name
        for p in (root / "services").glob("*/*/service.py")
        if p.parent.name == p.parent.parent.name
    )


@cache
def platform_bindings(root: Path = ROOT) -> tuple[Binding, ...]:
    """Every handler of every service of the repository."""
    bindings = []
    for name in service_names(root):
        path = str(root / "services" / name)
        if path not in sys.path:
            sys.path.append(path)
        module = importlib.import_module(f"{name}.service")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and getattr(cls, "name", None) == name:
                bindings.extend(handlers_of(cls))
    return tuple(bindings)


def declare_bindings(amqp_uri: str, bindings, config: dict | None = None) -> list[str]:
    """Declares the queues of ``bindings`` and their services' retry and
    dead-letter queues; returns the queue names."""
    config = config or {}
    names = []
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        services = sorted({b.service for b in bindings})
        for b in bindings:
            get_event_exchange(b.source, config)(channel).declare()
            queue = handler_queue(b.source, b.event_type, b.service, b.method, config)
            queue(channel).declare()
            names.append(queue.name)
        for service in services:
            retry_exchange(service)(channel).declare()
            for queue in service_queues(service, config):
                queue(channel).declare()
                names.append(queue.name)
        channel.close()
    return names


def declare(amqp_uri: str | None = None, root: Path = ROOT) -> list[str]:
    """Declares every consumer's queues (the deploy step)."""
    amqp_uri = amqp_uri or os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    names = declare_bindings(amqp_uri, platform_bindings(root))
    log.info("topology: %d queues declared", len(names))
    return names


def declare_consumers_of(amqp_uri: str, source: str, event_type: str) -> list[str]:
    """The relay's fallback: declares the queues of the consumers of
    ``source.event_type`` known to the code (none: nothing declared)."""
    try:
        wanted = (source, event_type)
        bindings = [b for b in platform_bindings() if (b.source, b.event_type) == wanted]
    except Exception:  # noqa: BLE001 - other services' code absent from this image
        log.warning("topology: consumers of %s.%s unknown here", source, event_type, exc_info=True)
        return []
    if not bindings:
        return []
    return declare_bindings(amqp_uri, bindings)


def missing_queues(amqp_uri: str, bindings) -> list[Binding]:
    """The bindings whose queue does not exist (a passive declare each)."""
    missing = []
    with Connection(amqp_uri) as conn:
        for b in bindings:
            channel = conn.channel()
            try:
                channel.queue_declare(b.queue, passive=True)
            except amqp.exceptions.NotFound:
                missing.append(b)
                continue  # the broker closed that channel
            channel.close()
    return missing


def ensure_consumers(
    amqp_uri: str,
    source: str,
    event_type: str,
    *,
    every: float | None = None,
    now: float | None = None,
) -> list[str]:
    """At most once per ``every`` seconds (``TOPOLOGY_CHECK_SECONDS``, 60) per
    event type and process, before a mandatory publication: every consumer's
    queue of ``source.event_type`` known to the code exists, else it is
    declared again, counted (``topology_queues_restored_total``) and logged.
    Mandatory publication alone proves that *one* queue received an event: a
    type with two consumers whose one queue was deleted would reach only the
    other. Returns the queues declared again; never raises."""
    every = CHECK_SECONDS if every is None else every
    now = time.monotonic() if now is None else now
    last = _CHECKED.get((source, event_type))
    if last is not None and now - last < every:
        return []
    _CHECKED[(source, event_type)] = now
    try:
        wanted = (source, event_type)
        bindings = [b for b in platform_bindings() if (b.source, b.event_type) == wanted]
        missing = missing_queues(amqp_uri, bindings) if bindings else []
        if not missing:
            return []
        names = declare_bindings(amqp_uri, missing)
    except Exception:  # noqa: BLE001 - a check; the publication goes on
        log.warning(
            "topology: could not check the queues of %s.%s", source, event_type, exc_info=True
        )
        return []
    for b in missing:
        RESTORED.labels(queue=b.queue).inc()
        log.warning(
            "topology: queue %s was missing: declared again (its consumer %s gets "
            "the events published from now on)",
            b.queue,
            b.service,
        )
    return [n for n in names if any(n == b.queue for b in missing)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kit.topology",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["list", "declare"])
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI)
    args = parser.parse_args(argv)
    if args.command == "list":
        for b in platform_bindings():
            print(
                json.dumps(
                    {
                        "queue": b.queue,
                        "consumer": b.service,
                        "method": b.method,
                        "exchange": f"{b.source}.events",
                        "routing_key": b.event_type,
                    }
                )
            )
    else:
        names = declare(args.amqp_uri)
        print(f"{len(names)} queues declared", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What every nameko service of the platform has: a database session per
worker, the caller from context, an outbox relay, a health check, metrics
and structured logs."""

from __future__ import annotations

import logging
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from nameko.dependency_providers import Config  # noqa: E402
from nameko.events import EventDispatcher  # noqa: E402
from nameko.timer import timer  # noqa: E402
from sqlalchemy import text  # noqa: E402

from kit import events  # noqa: E402
from kit.context import CallerProvider  # noqa: E402
from kit.entrypoints import rpc  # noqa: E402  (calls that expire)
from kit.logs import LogContext  # noqa: E402
from kit.metrics import ServiceMetrics  # noqa: E402
from kit.outbox import relay, take_committed, take_emitted  # noqa: E402

log = logging.getLogger(__name__)


class ServiceBase:
    """Subclasses set ``name``, ``db = Database(name)`` and ``outbox_model``."""

    name: str
    outbox_model = None
    upload_methods: tuple[str, ...] = ()  # RPCs whose InvalidInput is an upload refused

    dispatch = EventDispatcher()
    # the outbox's: mandatory, so an event no queue received stays pending
    outbox_dispatch = EventDispatcher(mandatory=True)
    # the types no service consumes (kit.outbox: no row): no confirm awaited
    announce = EventDispatcher(use_confirms=False)
    nameko_config = Config()
    caller = CallerProvider()
    metrics = ServiceMetrics()  # kit.metrics: Prometheus on METRICS_PORT
    log_context = LogContext()  # kit.logs: request id on log lines, one line per RPC

    @rpc
    def health(self) -> dict:
        """Readiness: the service answers and its database too."""
        self.db.execute(text("SELECT 1"))
        return {"service": self.name, "status": "ok"}

    @timer(interval=1)
    def relay_outbox(self) -> None:
        """Catches events left unpublished (crash between commit and relay)."""
        self.publish_pending(everything=True)

    def _publish(self, event_type: str, payload: dict) -> None:
        """Mandatory, except for the types no service consumes (kit.events.UNCONSUMED)."""
        if (self.name, event_type) in events.UNCONSUMED:
            self.dispatch(event_type, payload)
            return
        uri = self.nameko_config.get("AMQP_URI")
        if isinstance(uri, str):  # (a unit test's worker_factory gives a mock)
            from kit.topology import ensure_consumers

            ensure_consumers(uri, self.name, event_type)  # once a minute per type
        self.outbox_dispatch(event_type, payload)

    def _declare_consumers(self, event_type: str) -> bool:
        """The relay's fallback when an event reaches no queue (kit.topology)."""
        from kit.topology import declare_consumers_of

        uri = self.nameko_config["AMQP_URI"]
        return bool(declare_consumers_of(uri, self.name, event_type))

    def publish_pending(self, everything: bool = False) -> None:
        """Called by entrypoints after their use case committed: relays the
        outbox if this worker wrote to it (a worker that wrote nothing does
        not pay a locked read of an empty outbox: the 1-second timer, with
        ``everything``, relays whatever another worker left)."""
        for event_type, payload in take_committed(self.db):
            # no consumer, no row (kit.outbox): announced once, no confirm awaited
            try:
                self.announce(event_type, payload)
            except Exception:  # noqa: BLE001 - kept for no one: never fail the call
                log.warning("%s.%s not announced", self.name, event_type, exc_info=True)
        if self.outbox_model is not None and (take_emitted(self.db) or everything):
            relay(
                self.db,
                self.outbox_model,
                self._publish,
                service=self.name,
                on_unroutable=self._declare_consumers,
            )

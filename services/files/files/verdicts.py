"""Records, after the answer, the malware verdict of a document that was
stored quarantined (``use_cases.store_file``'s ``later``).

The scan started with the upload keeps running in its green thread; a
thread of the container (``spawn_managed_thread``) waits for it, then
records the verdict in a session of its own (the worker's session is
closed with the RPC). A verdict lost on the way (the process stopped,
clamd unreachable) is taken again by the service's timer
(``use_cases.rescan_pending``), and a reader never gets the bytes before
it (``use_cases.get_file`` scans a pending file itself).
"""

from __future__ import annotations

import logging
from typing import Any

from nameko.extensions import DependencyProvider

from files import use_cases
from files.scanner import ScannerUnavailable
from files.storage import Storage
from kit.db import Database

log = logging.getLogger(__name__)


class DeferredVerdicts(DependencyProvider):
    """Gives workers ``later(sha256, job)``."""

    def setup(self):
        dependencies = self.container.dependencies
        self.database = next(d for d in dependencies if isinstance(d, Database))
        self.storage = next(d for d in dependencies if isinstance(d, Storage))

    def get_dependency(self, worker_ctx):
        return self.later

    def later(self, sha256: str, job: Any) -> None:
        self.container.spawn_managed_thread(
            lambda: self.settle(sha256, job), identifier=f"verdict-{sha256[:12]}"
        )

    def settle(self, sha256: str, job: Any) -> None:
        try:
            result = job.wait()
        except ScannerUnavailable as exc:
            log.error("verdict of %s left for the timer: %s", sha256, exc)
            return
        session = self.database.sessionmaker()
        try:
            use_cases.record_verdict(session, self.storage.storage, sha256, result)
        except Exception:  # noqa: BLE001 - the timer takes it again; never kill the container
            log.exception("verdict of %s not recorded: left for the timer", sha256)
        finally:
            session.close()

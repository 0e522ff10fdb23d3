"""The one adapter to the SIRENE registry (API Recherche d'entreprises format).

``GET {SIRENE_URL}/search?q=<siret>``: the search is fuzzy, so the SIRET of
the returned establishment is always compared with the one asked for.

A registry that hangs must not hold registrations (docs/architecture.md §9): each look-up
is bounded in total (``timeout`` seconds, connection and answer together, even
when the answer trickles in), and after a failure the client stops asking for
``breaker_seconds`` (``SIRENE_BREAKER_SECONDS``, default 30): look-ups then fail
at once with ``RegistryUnavailable``, registrations are kept in degraded mode
(``sirene_status = "pending"``) and the ``retry_sirene`` timer checks them
later. One WARNING line when the breaker opens, one INFO line when it closes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import eventlet
import requests

log = logging.getLogger(__name__)


class RegistryUnavailable(Exception):
    """The registry did not answer usefully: registration goes on in degraded mode."""


@dataclass(frozen=True)
class Establishment:
    siret: str
    name: str
    address: str
    active: bool


class SireneClient:
    def __init__(
        self,
        base_url: str,
        timeout: float = 3.0,
        session=None,
        breaker_seconds: float | None = None,
        clock=time.monotonic,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = session or requests.Session()
        if breaker_seconds is None:
            breaker_seconds = float(os.environ.get("SIRENE_BREAKER_SECONDS", "30"))
        self.breaker_seconds = breaker_seconds
        self._clock = clock
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def breaker_open(self) -> bool:
        return self._clock() < self._open_until

    def _failed(self, reason: str) -> RegistryUnavailable:
        with self._lock:
            was_closed = self._open_until == 0.0
            self._open_until = self._clock() + self.breaker_seconds
        if was_closed:
            log.warning(
                "SIRENE registry unavailable (%s): registrations kept pending, "
                "no look-up for %.0f s",
                reason,
                self.breaker_seconds,
            )
        return RegistryUnavailable(reason)

    def _succeeded(self) -> None:
        with self._lock:
            was_open = self._open_until != 0.0
            self._open_until = 0.0
        if was_open:
            log.info("SIRENE registry answers again")

    def lookup(self, siret: str) -> Establishment | None:
        """The establishment with exactly this SIRET, None if the registry has none."""
        if self.breaker_open:
            raise RegistryUnavailable("registry unavailable a moment ago (breaker open)")
        try:
            # requests' timeout bounds each read, not the whole answer: the
            # eventlet timeout bounds the total (green sockets in a service)
            with eventlet.Timeout(self.timeout + 0.5) as deadline:
                response = self.http.get(
                    f"{self.base_url}/search",
                    params={"q": siret, "page": 1, "per_page": 5},
                    timeout=(min(self.timeout, 2.0), self.timeout),
                )
        except eventlet.Timeout as exc:
            if exc is not deadline:
                raise
            raise self._failed(f"no answer within {self.timeout + 0.5:.1f} s") from None
        except requests.RequestException as exc:
            raise self._failed(type(exc).__name__) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise self._failed(f"HTTP {response.status_code}")
        self._succeeded()
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryUnavailable(f"HTTP {response.status_code}")
        try:
            results = response.json().get("results") or []
        except ValueError as exc:
            raise RegistryUnavailable("invalid JSON") from exc
        for unit in results:
            for etab in unit.get("matching_etablissements") or []:
                if str(etab.get("siret")) == siret:
                    closed = (
                        etab.get("etat_administratif") == "F"
                        or unit.get("etat_administratif") == "F"
                    )
                    return Establishment(
                        siret=siret,
                        name=(
                            unit.get("nom_complet") or unit.get("nom_raison_sociale") or ""
                        ).strip(),
                        address=(etab.get("adresse") or "").strip(),
                        active=not closed,
                    )
        return None

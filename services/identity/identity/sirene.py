"""The one adapter to the SIRENE registry (API Recherche d'entreprises format).

``GET {SIRENE_URL}/search?q=<siret>``: the search is fuzzy, so the SIRET of
the returned establishment is always compared with the one asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests


class RegistryUnavailable(Exception):
    """The registry did not answer usefully: registration goes on in degraded mode."""


@dataclass(frozen=True)
class Establishment:
    siret: str
    name: str
    address: str
    active: bool


class SireneClient:
    def __init__(self, base_url: str, timeout: float = 3.0, session=None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = session or requests.Session()

    def lookup(self, siret: str) -> Establishment | None:
        """The establishment with exactly this SIRET, None if the registry has none."""
        try:
            response = self.http.get(
                f"{self.base_url}/search",
                params={"q": siret, "page": 1, "per_page": 5},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise RegistryUnavailable(str(exc)) from exc
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

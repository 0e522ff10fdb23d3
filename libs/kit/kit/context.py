"""The caller, as the gateway passes it to services in nameko context data.

The gateway authenticates; services authorise from this. It travels as one
JSON string under ``CALLER_KEY`` (AMQP headers carry strings safely).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

from nameko.extensions import DependencyProvider

from kit.errors import Forbidden, InvalidInput, Unauthenticated

CALLER_KEY = "caller"

# Roles
AGENCY_ADMIN = "agency_admin"  # France compétences staff
MANAGER = "manager"  # gestionnaire de compte of an organisation
USER = "user"  # utilisateur CFA/OFA
SYSTEM = "system"  # internal calls (benchmarks, relays, tools)
# another public agency, authenticated by a partner API key at the gateway:
# ``user_id`` is ``partner:<partner id>``; its scope travels as an RPC argument
PARTNER = "partner"

# Carte des formations (carte accounts sign in with an identifier, not an e-mail)
CARTE_ESTABLISHMENT = "carte_establishment"  # établissement de formation (its UAI)
CARTE_NETWORK = "carte_network"  # réseau d'établissements: files for its member UAIs
CARTE_DRAAF = "carte_draaf"  # services de la DRAAF: file directly
CARTE_REVIEWER = "carte_reviewer"  # Région, académies, DRAAF: read validated requests
CARTE_ADMIN = "carte_admin"  # Carif-Oref: accounts, campaigns, catalogue
CARTE_ROLES = (CARTE_ESTABLISHMENT, CARTE_NETWORK, CARTE_DRAAF, CARTE_REVIEWER, CARTE_ADMIN)


@dataclass(frozen=True)
class Caller:
    user_id: str | None = None
    org_id: str | None = None
    roles: tuple[str, ...] = field(default_factory=tuple)
    request_id: str | None = None
    # organisations the caller manages besides their own (an OG's CFAs)
    managed_org_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def is_agency(self) -> bool:
        return AGENCY_ADMIN in self.roles

    @property
    def is_manager(self) -> bool:
        return MANAGER in self.roles

    def require_authenticated(self) -> Caller:
        if not self.authenticated:
            raise Unauthenticated()
        return self

    def require_agency(self) -> Caller:
        self.require_authenticated()
        if not self.is_agency:
            raise Forbidden("forbidden.agency_only", "Réservé aux agents de France compétences.")
        return self

    def to_header(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_header(cls, value: str | None) -> Caller:
        if not value:
            return cls()
        try:
            data = json.loads(value)
            return cls(
                user_id=data.get("user_id"),
                org_id=data.get("org_id"),
                roles=tuple(data.get("roles") or ()),
                request_id=data.get("request_id"),
                managed_org_ids=tuple(data.get("managed_org_ids") or ()),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()


class CallerProvider(DependencyProvider):
    """Injects the ``Caller`` of the current worker (anonymous if absent)."""

    def get_dependency(self, worker_ctx) -> Caller:
        return Caller.from_header(worker_ctx.data.get(CALLER_KEY))


def system_clock(caller: Caller, now) -> dt.datetime | None:
    """The time a job asked for by a system caller (a retention run with a
    clock moved forward) is made as of; ``None``: now. Errors:
    forbidden.system_only, invalid_input (now: ISO-8601, UTC when naive)."""
    if SYSTEM not in caller.roles:
        raise Forbidden("forbidden.system_only", "Réservé aux traitements internes.")
    if now is None:
        return None
    try:
        at = dt.datetime.fromisoformat(now)
    except (TypeError, ValueError):
        raise InvalidInput.fields({"now": ["Date ISO-8601 attendue."]}) from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)

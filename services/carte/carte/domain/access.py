"""Who may file, read and change which request.

The actor is the carte account as identity last announced it (kind, UAI,
network members, reviewer scope), kept by the carte service; the gateway's
token only says who is calling. What an actor may not read does not exist
for it (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carte.domain import territory

FILERS = ("establishment", "network", "draaf")
KIND_LABELS = {
    "establishment": "établissement de formation",
    "network": "réseau d'établissements",
    "draaf": "services de la DRAAF",
    "reviewer": "relecteur",
    "admin": "administrateur de la plateforme",
}


@dataclass(frozen=True)
class Actor:
    user_id: str
    kind: str  # establishment | network | draaf | reviewer | admin
    identifier: str
    label: str = ""
    uai: str | None = None
    referent_uai: str | None = None
    member_uais: frozenset[str] = field(default_factory=frozenset)
    scope: str | None = None  # reviewers: all | montpellier | toulouse | draaf

    @property
    def is_filer(self) -> bool:
        return self.kind in FILERS

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def is_reviewer(self) -> bool:
        return self.kind == "reviewer"

    @property
    def referent(self) -> str | None:
        """« Code UAI de l'établissement référent », prefilled from the identifier."""
        return self.uai or self.referent_uai

    def filing_uais(self) -> frozenset[str] | None:
        """The establishments this actor files for; None means any of the region."""
        if self.kind == "establishment":
            return frozenset({self.uai}) if self.uai else frozenset()
        if self.kind == "network":
            return self.member_uais
        if self.kind == "draaf":
            return None
        return frozenset()

    def may_file_for(self, uai: str) -> bool:
        if not self.is_filer:
            return False
        allowed = self.filing_uais()
        return territory.in_region(uai) if allowed is None else uai in allowed

    def signed_in_as(self) -> str:
        label = KIND_LABELS.get(self.kind, self.kind)
        article = "qu'" if label[:1] in "aeéiouy" else "que "
        return f"Vous êtes connecté en tant {article}{label} avec l'identifiant {self.identifier}"


def reviewer_sees(actor: Actor, *, academy: str | None, filer_kind: str) -> bool:
    """A validated request within a reviewer's scope (the administrator sees all)."""
    if actor.is_admin or actor.scope == "all":
        return True
    if actor.scope == "draaf":
        return filer_kind == "draaf"
    return actor.scope is not None and academy == actor.scope


def may_read(
    actor: Actor,
    *,
    filed_by: str,
    status: str,
    concerned_uai: str | None,
    academy: str | None,
    filer_kind: str,
) -> bool:
    """Drafts: their filer only (« consultables que par vous »). Validated
    requests: the filer, the establishments it concerns (and their networks),
    the reviewers of its scope and the administrators."""
    if filed_by == actor.user_id:
        return True
    if status != "validated":
        return actor.is_admin
    if actor.is_filer and actor.kind != "draaf" and concerned_uai:
        return concerned_uai in (actor.filing_uais() or frozenset())
    if actor.is_reviewer or actor.is_admin:
        return reviewer_sees(actor, academy=academy, filer_kind=filer_kind)
    return False


def may_edit(actor: Actor, *, filed_by: str) -> bool:
    """Only the filer changes its drafts (validation makes them read-only)."""
    return actor.is_filer and filed_by == actor.user_id

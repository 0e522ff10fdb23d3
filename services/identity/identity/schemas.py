"""Output shaping: identity's rows turned into answers and event payloads."""

from __future__ import annotations

import datetime as dt

from identity import repository as repo
from identity.domain.accounts import user_state
from identity.domain.carte_accounts import KIND_LABELS, SCOPES, signed_in_as
from identity.models import CarteAccount, Organisation, User
from kit import context

PROFILE_LABELS = {
    "manager": "Gestionnaire de comptes / Utilisateur CFA/OFA",
    "user": "Utilisateur CFA/OFA",
    "agency_admin": "Agent France compétences",
}
STATE_LABELS = {
    "not_activated": ("Compte non activé", "rouge"),
    "awaiting_validation": ("Compte activé, en attente de validation", "bleu"),
    "validated": ("Compte activé et validé", "vert"),
    "rejected": ("Inscription refusée", "gris"),
    "deactivated": ("Compte désactivé", "gris"),
}


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def person_payload(user: User) -> dict:
    return {
        "user_id": user.id,
        "org_id": user.org_id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }


def user_row(user: User, org: Organisation | None) -> dict:
    state = user_state(user)
    label, colour = STATE_LABELS[state]
    return {
        "id": user.id,
        "display_name": f"{user.last_name.upper()} {user.first_name}",
        "last_name": user.last_name,
        "first_name": user.first_name,
        "email": user.email,
        "phone": user.phone,
        "org_id": user.org_id,
        "org_name": org.name if org else None,
        "firm_name": user.firm_name,
        "organisation_or_firm": user.firm_name or (org.name if org else None),
        "role": user.role,
        "profile": PROFILE_LABELS.get(user.role, user.role),
        "state": state,
        "state_label": label,
        "state_colour": colour,
        "created_at": iso(user.created_at),
        "validated_at": iso(user.validated_at),
    }


def org_dict(org: Organisation) -> dict:
    return {
        "id": org.id,
        "account_type": org.account_type,
        "siret": org.siret,
        "nda": org.nda,
        "uai": org.uai,
        "apprentice_count": org.apprentice_count,
        "name": org.name,
        "address": org.address,
        "sirene_status": org.sirene_status,
        "parent_id": org.parent_id,
        "status": org.status,
        "created_at": iso(org.created_at),
    }


# ---------------------------------------------------------------- carte accounts


ROLES = {
    "establishment": context.CARTE_ESTABLISHMENT,
    "network": context.CARTE_NETWORK,
    "draaf": context.CARTE_DRAAF,
    "reviewer": context.CARTE_REVIEWER,
    "admin": context.CARTE_ADMIN,
}


def account_dict(session, account: CarteAccount, user: User | None = None) -> dict:
    user = user or repo.user(session, account.user_id)
    return {
        "user_id": account.user_id,
        "identifier": account.identifier,
        "kind": account.kind,
        "kind_label": KIND_LABELS[account.kind],
        "role": ROLES[account.kind],
        "label": account.label,
        "contact_email": account.contact_email,
        "uai": account.uai,
        "referent_uai": account.referent_uai,
        "member_uais": repo.network_members(session, account),
        "scope": account.scope,
        "scope_label": SCOPES.get(account.scope) if account.scope else None,
        "active": user is not None and user.deactivated_at is None,
        "revision": account.revision,
        "signed_in_as": signed_in_as(account.kind, account.identifier),
        "created_at": iso(account.created_at),
        "updated_at": iso(account.updated_at),
    }

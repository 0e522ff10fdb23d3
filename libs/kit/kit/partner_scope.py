"""A partner's scope (DESIGN §8), as every service applies it.

``{"account_types": [...], "sirets": [...], "academies": [...]}``: each key
optional; absent or ``null`` is no restriction on that dimension, ``[]`` is
nothing. Organisations (survey and identity objects) match on
``account_types`` and ``sirets``; carte requests on ``academies``. notify
validates scopes when the agency saves them (``notify.partners.scope``); the
feed, the pushes and the survey and carte services decide with ``matches``.
"""

from __future__ import annotations

ORGANISATIONS = "organisations"  # survey.* and identity.* events, transmissions
CARTE = "carte"  # carte.* events, carte requests


def matches(scope: dict | None, kind: str, facts: dict) -> bool:
    scope = scope or {}
    if kind == CARTE:
        academies = scope.get("academies")
        return academies is None or facts.get("academy") in academies
    account_types = scope.get("account_types")
    if account_types is not None and facts.get("account_type") not in account_types:
        return False
    sirets = scope.get("sirets")
    return sirets is None or facts.get("siret") in sirets

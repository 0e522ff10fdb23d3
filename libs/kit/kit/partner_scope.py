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
KEYS = ("account_types", "sirets", "academies")


def problem(scope) -> str | None:
    """Why ``scope`` is not a scope as notify stores it, or None: what a
    service checks in the scope the gateway passes on with a partner's call.
    A missing scope would mean « no restriction »: it is refused, never
    assumed."""
    if not isinstance(scope, dict):
        return "Le périmètre du partenaire doit être un objet JSON."
    for key, value in scope.items():
        if key not in KEYS:
            return f"Clé de périmètre inconnue : {key}."
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return f"« {key} » doit être une liste ou null."
    return None


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

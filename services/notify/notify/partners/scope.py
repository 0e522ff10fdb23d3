"""A partner's scope: which organisations or territory it may see.

``{"account_types": ["OFA", "OG"], "sirets": [...], "academies": ["montpellier"]}``:
each key optional; absent or ``null`` is no restriction on that dimension, ``[]``
is nothing. Survey and identity events match on ``account_types`` and
``sirets``; carte events on ``academies``. The same predicate decides the feed,
the pushes and object access (the survey and carte services apply it to the
objects they serve).
"""

from __future__ import annotations

import re

from kit import partner_scope
from kit.partner_scope import matches  # noqa: F401 - the predicate lives in kit
from notify import problems

ACCOUNT_TYPES = ("OFA", "OG")
# carte.domain.territory.ACADEMIES (notify imports no other service)
ACADEMIES = ("montpellier", "toulouse")
SIRET = re.compile(r"^\d{14}$")
MAX_SIRETS = 5000
KEYS = partner_scope.KEYS

SCOPE_INVALID = "partner.scope_invalid"


def validate(raw) -> dict:
    """The normalised scope, or 422 ``partner.scope_invalid`` naming each problem."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise problems.error(
            SCOPE_INVALID,
            fields={
                "scope": [
                    "Le périmètre doit être un objet JSON (account_types, sirets, academies)."
                ]
            },
        )
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        errors["scope"] = [
            f"Clé de périmètre inconnue : {', '.join(unknown)} "
            "(clés possibles : account_types, sirets, academies)."
        ]
    scope: dict = {}
    for key, allowed, label in (
        ("account_types", ACCOUNT_TYPES, "types de compte"),
        ("academies", ACADEMIES, "académies"),
    ):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors[f"scope.{key}"] = [f"Une liste de {label} est attendue."]
            continue
        upper = key == "account_types"
        normalised = [v.strip().upper() if upper else v.strip().lower() for v in value]
        bad = [v for v in normalised if v not in allowed]
        if bad:
            errors[f"scope.{key}"] = [
                f"Valeur inconnue : {', '.join(bad)} (valeurs possibles : {', '.join(allowed)})."
            ]
            continue
        scope[key] = sorted(set(normalised))
    sirets = raw.get("sirets")
    if sirets is not None:
        if not isinstance(sirets, list) or not all(isinstance(v, str) for v in sirets):
            errors["scope.sirets"] = ["Une liste de SIRET (14 chiffres) est attendue."]
        elif len(sirets) > MAX_SIRETS:
            errors["scope.sirets"] = [f"{MAX_SIRETS} SIRET au plus."]
        else:
            cleaned = [v.replace(" ", "") for v in sirets]
            bad = [v for v in cleaned if not SIRET.match(v)]
            if bad:
                errors["scope.sirets"] = [
                    f"SIRET invalide : {', '.join(bad[:5])} (14 chiffres attendus)."
                ]
            else:
                scope["sirets"] = sorted(set(cleaned))
    if errors:
        raise problems.error(SCOPE_INVALID, variant="scope", fields=errors)
    return scope

"""What a partner agency (DESIGN §8) may read of a transmission.

A partner sees the transmissions of the organisations its scope names
(``kit.partner_scope``: account types and SIRETs), with the values extracted
from the form minus the person to contact: public facts, never a person.
"""

from __future__ import annotations

from kit import partner_scope

# the extracted values' « Personne à contacter » (name, e-mail, phone)
PERSONAL_VALUES = ("contact",)
SCOPE_KEYS = ("account_types", "sirets", "academies")


def scope_problem(scope) -> str | None:
    """Why ``scope`` is not a scope as notify stores it, or None. A missing
    scope would mean « no restriction »: it is refused, never assumed."""
    if not isinstance(scope, dict):
        return "Le périmètre du partenaire doit être un objet JSON."
    for key, value in scope.items():
        if key not in SCOPE_KEYS:
            return f"Clé de périmètre inconnue : {key}."
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return f"« {key} » doit être une liste ou null."
    return None


def sees_organisation(scope: dict, *, account_type: str | None, siret: str | None) -> bool:
    return partner_scope.matches(
        scope, partner_scope.ORGANISATIONS, {"account_type": account_type, "siret": siret}
    )


def public_values(values: dict | None) -> dict:
    """The extracted values without the person to contact."""
    return {k: v for k, v in (values or {}).items() if k not in PERSONAL_VALUES}

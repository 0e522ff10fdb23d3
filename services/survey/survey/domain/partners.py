"""What a partner agency (DESIGN §8) may read of a transmission.

A partner sees the transmissions of the organisations its scope names
(``kit.partner_scope``: account types and SIRETs), with the values extracted
from the form minus the person to contact: public facts, never a person.
"""

from __future__ import annotations

from kit import partner_scope

# the extracted values' « Personne à contacter » (name, e-mail, phone)
PERSONAL_VALUES = ("contact",)


# one check for every service (kit.partner_scope)
scope_problem = partner_scope.problem


def sees_organisation(scope: dict, *, account_type: str | None, siret: str | None) -> bool:
    return partner_scope.matches(
        scope, partner_scope.ORGANISATIONS, {"account_type": account_type, "siret": siret}
    )


def public_values(values: dict | None) -> dict:
    """The extracted values without the person to contact."""
    return {k: v for k, v in (values or {}).items() if k not in PERSONAL_VALUES}

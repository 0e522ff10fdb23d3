"""Identifiers of French training organisations (docs/architecture.md §5)."""

from __future__ import annotations

import re

from stdnum.exceptions import ValidationError
from stdnum.fr import siret as _siret

# the UAI rule is shared with the carte service: re-exported from kit
from kit.codes import UAI_LETTERS, is_valid_uai, normalise_uai, uai_check_letter  # noqa: F401

_NDA = re.compile(r"^[0-9]{11}$")
_SPACES = re.compile(r"[\s\u00a0.-]+")


def normalise_siret(value: str) -> str:
    return _SPACES.sub("", value or "")


def is_valid_siret(value: str) -> bool:
    """14 digits; Luhn, or the La Poste rule (stdnum implements both)."""
    compact = normalise_siret(value)
    if not re.fullmatch(r"[0-9]{14}", compact):
        return False
    try:
        _siret.validate(compact)
    except ValidationError:
        return False
    return True


def normalise_nda(value: str) -> str:
    return _SPACES.sub("", value or "")


def is_valid_nda(value: str) -> bool:
    return bool(_NDA.match(normalise_nda(value)))

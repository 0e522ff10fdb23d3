"""Codes of the certification list and of the form (docs/architecture.md §5).

Each ``parse_*`` returns the normalised value, or raises ``BadCode`` whose
message says, in French, what is expected: the caller adds where it was found.
"""

from __future__ import annotations

import re

from stdnum.exceptions import ValidationError
from stdnum.fr import siret as _siret

from kit.codes import is_valid_uai, normalise_uai

_CFD = re.compile(r"^[A-Z0-9]{3}\d{3}[A-Z0-9]{2}$")
_CFD_7 = re.compile(r"^\d{7}$")  # older codes the guide shows (e.g. 1022001): kept as they are
_RNCP = re.compile(r"^(?:RNCP)?(\d{3,5})$")
_RS = re.compile(r"^RS(\d{3,5})$")
_LEVEL = re.compile(r"^(?:NIVEAU)?([0-9])$")
_SPACES = re.compile(r"[\s\u00a0._-]+")
_SIRET_SPACES = re.compile(r"[\s\u00a0.-]+")

NOT_APPLICABLE_RNCP = "NR"  # « non renseigné »: no code, as in the guide's example
LEVELS = tuple(f"niveau{n}" for n in range(3, 9))


class BadCode(ValueError):
    """``message`` is French and says what is expected."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def as_text(value) -> str:
    """A cell value as text: whole numbers lose their ``.0`` (calamine reads
    every number as a float)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "VRAI" if value else "FAUX"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_cfd(value) -> str:
    """Code diplôme: 8 characters ``^[A-Z0-9]{3}\\d{3}[A-Z0-9]{2}$``, or the
    7-digit codes of the guide's example, accepted as they are."""
    text = _SPACES.sub("", as_text(value)).upper()
    if _CFD.match(text) or _CFD_7.match(text):
        return text
    raise BadCode(
        "code diplôme invalide : 8 caractères, 3 lettres ou chiffres, 3 chiffres puis "
        "2 lettres ou chiffres (ex. 46T31203 ou 10033101)."
    )


def parse_rncp(value) -> str:
    """``RNCP`` + 3 to 5 digits (a bare number is normalised), an ``RS`` code of
    the répertoire spécifique, or ``NR`` when the certification has none."""
    text = _SPACES.sub("", as_text(value)).upper()
    if text == NOT_APPLICABLE_RNCP:
        return text
    match = _RNCP.match(text)
    if match:
        return "RNCP" + match.group(1)
    match = _RS.match(text)
    if match:
        return "RS" + match.group(1)
    raise BadCode(
        "code RNCP invalide : RNCP suivi de 3 à 5 chiffres (ex. RNCP37098), un code RS "
        "(ex. RS5432) ou NR si la certification n'a pas de code."
    )


def parse_level(value) -> str:
    """``niveau3`` … ``niveau8`` (``Niveau 4`` and ``4`` are accepted)."""
    text = _SPACES.sub("", as_text(value)).upper()
    match = _LEVEL.match(text)
    if match and f"niveau{match.group(1)}" in LEVELS:
        return f"niveau{match.group(1)}"
    raise BadCode("niveau invalide : niveau3, niveau4, niveau5, niveau6, niveau7 ou niveau8.")


def parse_positive_int(value, *, minimum: int = 1, maximum: int = 100_000) -> int:
    """A whole number between ``minimum`` and ``maximum``; text digits accepted."""
    if isinstance(value, bool):
        raise BadCode(_whole_message(minimum))
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise BadCode(_whole_message(minimum))
        number = int(value)
    else:
        text = _SPACES.sub("", as_text(value))
        if not re.fullmatch(r"[+]?\d{1,9}", text):
            raise BadCode(_whole_message(minimum))
        number = int(text)
    if number < minimum:
        raise BadCode(_whole_message(minimum))
    if number > maximum:
        raise BadCode(f"nombre trop élevé (au plus {maximum}).")
    return number


def _whole_message(minimum: int) -> str:
    if minimum == 1:
        return "nombre entier positif attendu (1 ou plus)."
    return f"nombre entier attendu ({minimum} ou plus)."


def parse_siret(value) -> str:
    """14 digits (spaces allowed); Luhn, or the La Poste rule. A SIRET typed as
    a number in a spreadsheet loses its leading zeros: they are put back."""
    if isinstance(value, float) and value.is_integer():
        text = f"{int(value):014d}"
    else:
        text = _SIRET_SPACES.sub("", as_text(value))
    if not re.fullmatch(r"\d{14}", text):
        raise BadCode("SIRET invalide : 14 chiffres attendus.")
    try:
        _siret.validate(text)
    except ValidationError:
        raise BadCode("SIRET invalide : la clé de contrôle ne correspond pas.") from None
    return text


def parse_uai(value) -> str:
    """7 digits and the check letter (``0750654D``)."""
    text = normalise_uai(as_text(value))
    if not is_valid_uai(text):
        raise BadCode("UAI invalide : 7 chiffres et une lettre de contrôle (ex. 0750654D).")
    return text

"""Pure checks of identifiers that more than one service validates (docs/architecture.md §5).

Only what several services need lives here: the UAI (identity checks the
identifiers of carte accounts and network members, carte the establishments
of each request). Codes one service alone checks stay in its domain.
"""

from __future__ import annotations

import re

UAI_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
_UAI = re.compile(r"^[0-9]{7}[A-Z]$")  # ASCII digits: \d matches any script's digits
_SPACES = re.compile(r"[\s\u00a0.-]+")


def normalise_uai(value: str) -> str:
    """Spaces, dots and dashes dropped, upper case: ``0750 654d`` → ``0750654D``."""
    return _SPACES.sub("", value or "").upper()


def uai_check_letter(digits: str) -> str:
    """The check letter of the 7 digits of a UAI."""
    return UAI_LETTERS[int(digits) % 23]


def is_valid_uai(value: str) -> bool:
    """``^\\d{7}[A-Z]$`` and the letter is ``UAI_LETTERS[int(digits) % 23]``."""
    compact = normalise_uai(value)
    return bool(_UAI.match(compact)) and compact[7] == uai_check_letter(compact[:7])

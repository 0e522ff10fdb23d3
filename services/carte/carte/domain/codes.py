"""Codes the carte checks (docs/architecture.md §5): code diplôme (CFD) and RNCP.

The UAI rule is shared with identity (``kit.codes``); here it also insists on
ASCII digits, since ``\\d`` and ``int()`` accept other scripts' digits
(``٠٣١١١١١P`` would pass the shared check)."""

from __future__ import annotations

import re

from kit import codes as shared
from kit.codes import normalise_uai  # noqa: F401 - re-exported

_CFD = re.compile(r"^[A-Z0-9]{3}[0-9]{3}[A-Z0-9]{2}$")
_CFD7 = re.compile(r"^[0-9]{7}$")  # the guide's examples: accepted and kept as they are
_RNCP = re.compile(r"^(RNCP|RS)([0-9]{1,6})$")


def is_valid_uai(value: str) -> bool:
    """docs/architecture.md §5, in ASCII digits only."""
    return normalise_uai(value).isascii() and shared.is_valid_uai(value)


def normalise_cfd(value: str) -> str:
    return re.sub(r"\s+", "", value or "").upper()


def is_valid_cfd(value: str) -> bool:
    """8 characters ``^[A-Z0-9]{3}\\d{3}[A-Z0-9]{2}$``, or 7 digits as found in
    the guide's examples (``1022001``)."""
    compact = normalise_cfd(value)
    return bool(_CFD.match(compact) or _CFD7.match(compact))


def normalise_rncp(value: str) -> str | None:
    """``RNCP`` + 3 to 5 digits, or an ``RS`` code; a bare number is an RNCP
    number. Returns the normalised code, or None when invalid."""
    compact = re.sub(r"\s+", "", value or "").upper()
    if compact.isascii() and compact.isdigit():
        compact = "RNCP" + compact
    match = _RNCP.match(compact)
    if not match:
        return None
    prefix, digits = match.groups()
    if prefix == "RNCP" and not 3 <= len(digits) <= 5:
        return None
    return compact

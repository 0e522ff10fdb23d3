"""Where an establishment is: its department from its UAI, and the academy
(Montpellier or Toulouse) of the Occitanie region the reviewers work for.

The first three digits of a UAI are the department's number (``031`` for
Haute-Garonne; ``620``/``720`` for Corsica, ``97x`` overseas).
"""

from __future__ import annotations

DEPARTMENTS = {
    "09": "Ariège",
    "11": "Aude",
    "12": "Aveyron",
    "30": "Gard",
    "31": "Haute-Garonne",
    "32": "Gers",
    "34": "Hérault",
    "46": "Lot",
    "48": "Lozère",
    "65": "Hautes-Pyrénées",
    "66": "Pyrénées-Orientales",
    "81": "Tarn",
    "82": "Tarn-et-Garonne",
}
ACADEMIES = {
    "toulouse": ("09", "12", "31", "32", "46", "65", "81", "82"),
    "montpellier": ("11", "30", "34", "48", "66"),
}
ACADEMY_LABELS = {"toulouse": "Académie de Toulouse", "montpellier": "Académie de Montpellier"}
_ACADEMY_OF = {dept: academy for academy, depts in ACADEMIES.items() for dept in depts}


def department_of(uai: str | None) -> str | None:
    if not uai or len(uai) < 3 or not uai[:3].isdigit():
        return None
    prefix = uai[:3]
    if prefix == "620":
        return "2A"
    if prefix == "720":
        return "2B"
    return prefix[1:] if prefix.startswith("0") else prefix


def academy_of(uai: str | None) -> str | None:
    """``toulouse``, ``montpellier``, or None outside the region."""
    return _ACADEMY_OF.get(department_of(uai) or "")


def in_region(uai: str | None) -> bool:
    return academy_of(uai) is not None

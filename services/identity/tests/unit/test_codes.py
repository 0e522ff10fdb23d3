"""docs/architecture.md §5 test vectors for the identifiers of an organisation."""

import pytest

from identity.domain import codes


@pytest.mark.parametrize(
    "siret",
    ["41816609600051", "73282932000074", "35600000018723", "35600000000048", "418 166 096 00051"],
)
def test_valid_sirets_are_accepted(siret):
    assert codes.is_valid_siret(siret)


@pytest.mark.parametrize(
    "siret", ["41816609600052", "73282932000079", "4181660960005", "ABCDEFGHIJKLMN", ""]
)
def test_invalid_sirets_are_refused(siret):
    assert not codes.is_valid_siret(siret)


@pytest.mark.parametrize("uai", ["0750654D", "0597114M", "0932751K", "0751234J", "0750654d"])
def test_valid_uai_are_accepted(uai):
    assert codes.is_valid_uai(uai)


@pytest.mark.parametrize("uai", ["0311234X", "075065D", "07506541", ""])
def test_invalid_uai_are_refused(uai):
    assert not codes.is_valid_uai(uai)


def test_nda_has_eleven_digits():
    assert codes.is_valid_nda("11930882293")
    assert codes.is_valid_nda("119 308 822 93")
    assert not codes.is_valid_nda("1193088229")
    assert not codes.is_valid_nda("1193088229A")


def test_digits_of_other_scripts_are_not_digits_here():
    assert not codes.is_valid_uai("٠٣١١١١١P")
    assert not codes.is_valid_siret("٤١٨١٦٦٠٩٦٠٠٠٥١")
    assert not codes.is_valid_nda("١١٩٣٠٨٨٢٢٩٣")

"""The codes of docs/architecture.md §5 with their test vectors."""

import pytest

from survey.domain.codes import (
    BadCode,
    parse_cfd,
    parse_level,
    parse_positive_int,
    parse_rncp,
    parse_siret,
    parse_uai,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("46T31203", "46T31203"),
        ("10033101", "10033101"),
        (10033101.0, "10033101"),
        ("46t 312 03", "46T31203"),
        ("1022001", "1022001"),
        (1022001.0, "1022001"),
    ],
)
def test_a_code_diplome_has_8_characters_or_is_one_of_the_guides_7_digit_codes(raw, expected):
    assert parse_cfd(raw) == expected


@pytest.mark.parametrize("raw", ["ABC", "46T31A03", "123456", "ABCDEFGH", ""])
def test_a_malformed_code_diplome_says_what_is_expected(raw):
    with pytest.raises(BadCode) as caught:
        parse_cfd(raw)
    assert "8 caractères" in caught.value.message


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("RNCP955", "RNCP955"),
        ("RNCP37098", "RNCP37098"),
        ("955", "RNCP955"),
        (37098.0, "RNCP37098"),
        ("rncp 37098", "RNCP37098"),
        ("NR", "NR"),
        ("nr", "NR"),
        ("RS5432", "RS5432"),
    ],
)
def test_rncp_codes_are_normalised(raw, expected):
    assert parse_rncp(raw) == expected


@pytest.mark.parametrize("raw", ["RNCPX1", "RNCP12", "RNCP123456", "XYZ", "RS12"])
def test_bad_rncp_codes_are_refused(raw):
    with pytest.raises(BadCode):
        parse_rncp(raw)


@pytest.mark.parametrize(
    "raw, expected",
    [("niveau4", "niveau4"), ("Niveau 8", "niveau8"), (3.0, "niveau3"), ("5", "niveau5")],
)
def test_levels_are_niveau3_to_niveau8(raw, expected):
    assert parse_level(raw) == expected


@pytest.mark.parametrize("raw", ["niveau9", "niveau2", "9", "bac+2"])
def test_other_levels_are_refused(raw):
    with pytest.raises(BadCode):
        parse_level(raw)


@pytest.mark.parametrize("raw, expected", [(1, 1), (2.0, 2), ("3", 3), (" 12 ", 12)])
def test_establishment_counts_are_positive_integers(raw, expected):
    assert parse_positive_int(raw) == expected


@pytest.mark.parametrize("raw", [0, -1, 1.5, "deux", True, "1,5"])
def test_zero_negative_and_fractions_are_not_counts(raw):
    with pytest.raises(BadCode):
        parse_positive_int(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "41816609600051",
        "73282932000074",
        "35600000018723",
        "35600000000048",
        "418 166 096 00051",
        41816609600051.0,
    ],
)
def test_valid_sirets(raw):
    assert len(parse_siret(raw)) == 14


@pytest.mark.parametrize("raw", ["41816609600052", "73282932000079", "4181660960005"])
def test_invalid_sirets(raw):
    with pytest.raises(BadCode):
        parse_siret(raw)


@pytest.mark.parametrize("raw", ["0750654D", "0597114M", "0932751K", "0751234J", "0750654d"])
def test_valid_uais(raw):
    assert parse_uai(raw) == raw.upper()


def test_an_uai_with_a_wrong_check_letter_is_refused():
    with pytest.raises(BadCode):
        parse_uai("0311234X")

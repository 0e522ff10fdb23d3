"""The « Inscription » form: every problem reported at once, per field."""

from identity.domain.registration import parse_registration, quota_problem

GOOD = {
    "account_type": "OFA",
    "siret": "418 166 096 00051",
    "nda": "11930882293",
    "uai": "0750654d",
    "apprentice_count": "42",
    "last_name": "Martin",
    "first_name": "Claire",
    "phone": "01 23 45 67 89",
    "email": "Claire@Example.org",
    "email_confirm": "claire@example.org",
    "password": "correct horse 42",
    "password_confirm": "correct horse 42",
}


def test_a_complete_form_is_normalised():
    reg, errors = parse_registration(GOOD)
    assert errors == {}
    assert reg.siret == "41816609600051"
    assert reg.uai == "0750654D"
    assert reg.email == "claire@example.org"
    assert reg.apprentice_count == 42


def test_an_empty_form_lists_every_mandatory_field():
    reg, errors = parse_registration({})
    assert reg is None
    assert set(errors) == {
        "account_type",
        "siret",
        "nda",
        "apprentice_count",
        "last_name",
        "first_name",
        "email",
        "email_confirm",
        "password",
    }
    assert errors["siret"] == ["Ce champ est obligatoire."]


def test_wrong_values_are_each_explained():
    bad = dict(
        GOOD,
        account_type="CFA",
        siret="41816609600052",
        nda="123",
        uai="0311234X",
        apprentice_count="-1",
        email="nope",
        email_confirm="other@example.org",
        password="short",
        password_confirm="different",
    )
    _reg, errors = parse_registration(bad)
    assert set(errors) >= {
        "account_type",
        "siret",
        "nda",
        "uai",
        "apprentice_count",
        "email",
        "password",
        "password_confirm",
    }
    assert "clé de contrôle" in errors["siret"][0]


def test_wrong_types_do_not_crash():
    _reg, errors = parse_registration(dict(GOOD, siret=123, apprentice_count=[1], email=None))
    assert {"siret", "apprentice_count", "email"} <= set(errors)
    assert parse_registration(["not", "a", "dict"])[1]


def test_quota_allows_five_accounts_and_two_managers():
    assert quota_problem(4, 1, "manager") is None
    assert quota_problem(5, 1, "user") == "quota.users"
    assert quota_problem(3, 2, "manager") == "quota.managers"
    assert quota_problem(3, 2, "user") is None

"""kit.catalogue: entries build the error of their code, template filled."""

from __future__ import annotations

import pytest

from kit.catalogue import FIELD, Catalogue, Entry
from kit.errors import Conflict, InvalidInput, TooManyRequests, Unauthenticated

CATALOGUE = Catalogue(
    "probe",
    [
        Entry("probe.unreadable", InvalidInput, "Le fichier n'est pas lisible : {reason}"),
        Entry(
            "probe.busy",
            TooManyRequests,
            "Réessayez dans {minutes} minute(s).",
            ("retry_after",),
        ),
        Entry(
            "probe.invalid",
            InvalidInput,
            "La demande comporte des erreurs.",
            ("fields", "codes"),
            {"short": "Erreurs."},
        ),
        Entry(
            "probe.code_invalid",
            Unauthenticated,
            "Code incorrect.",
            ("fields",),
            {"enrolment": (InvalidInput, "Code incorrect.")},
        ),
        Entry("probe.taken", Conflict, "La rentrée {year} existe déjà.", dynamic=True),
    ],
)


def test_the_template_is_filled_and_the_class_kept():
    exc = CATALOGUE.error("probe.unreadable", reason="zip tronqué")
    assert type(exc) is InvalidInput and exc.status == 422
    assert (exc.code, exc.message, exc.details) == (
        "probe.unreadable",
        "Le fichier n'est pas lisible : zip tronqué",
        {},
    )


def test_detail_keys_go_to_details_and_may_fill_the_template_too():
    exc = CATALOGUE.error("probe.busy", minutes=2, retry_after=90)
    assert exc.message == "Réessayez dans 2 minute(s)."
    assert exc.details == {"retry_after": 90}


def test_detail_keys_not_passed_are_left_out():
    exc = CATALOGUE.error("probe.invalid", fields={"uai": ["UAI invalide."]})
    assert exc.details == {"fields": {"uai": ["UAI invalide."]}}


def test_variants_change_the_text_or_the_class():
    assert CATALOGUE.error("probe.invalid", variant="short").message == "Erreurs."
    assert type(CATALOGUE.error("probe.code_invalid")) is Unauthenticated
    enrolment = CATALOGUE.error("probe.code_invalid", variant="enrolment", fields={"code": ["x"]})
    assert type(enrolment) is InvalidInput and enrolment.details == {"fields": {"code": ["x"]}}


def test_the_field_variant_takes_the_message_of_the_one_field():
    exc = CATALOGUE.error("probe.invalid", variant=FIELD, message="UAI invalide.", fields={})
    assert exc.message == "UAI invalide."


def test_unknown_values_and_codes_are_programming_errors():
    with pytest.raises(TypeError):
        CATALOGUE.error("probe.unreadable", reason="x", other=1)
    with pytest.raises(KeyError):
        CATALOGUE.error("probe.unreadable")
    with pytest.raises(LookupError):
        CATALOGUE.error("probe.unknown")


def test_a_code_is_listed_once():
    with pytest.raises(ValueError):
        Catalogue("probe", [Entry("a.b", Conflict, "x"), Entry("a.b", Conflict, "y")])


def test_the_catalogue_lists_its_codes():
    assert "probe.taken" in CATALOGUE and len(CATALOGUE) == 5
    assert CATALOGUE.entry("probe.taken").dynamic and CATALOGUE.entry("probe.taken").status == 409
    assert CATALOGUE.message("probe.taken", year=2027) == "La rentrée 2027 existe déjà."


def test_errors_still_cross_the_bus_as_before():
    exc = CATALOGUE.error("probe.busy", minutes=1, retry_after=5)
    assert exc.args == ("probe.busy", "Réessayez dans 1 minute(s).", '{"retry_after": 5}')

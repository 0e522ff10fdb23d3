"""Pure rules: codes, territory, the catalogue file, the form, rights, exports."""

from __future__ import annotations

import pytest

from carte.domain import access, codes, export, territory
from carte.domain import catalogue as cat
from carte.domain import requests as form


@pytest.mark.parametrize("code", ["46T31203", "10033101", "1022001", " 32031213 "])
def test_valid_codes_diplome(code):
    assert codes.is_valid_cfd(code)


@pytest.mark.parametrize("code", ["ABC", "46T3X203", "4631-203", "", "123456789", "463120"])
def test_invalid_codes_diplome(code):
    assert not codes.is_valid_cfd(code)


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("RNCP955", "RNCP955"),
        ("RNCP37098", "RNCP37098"),
        ("37098", "RNCP37098"),
        ("rncp 955", "RNCP955"),
        ("RS5467", "RS5467"),
        ("RNCPX1", None),
        ("RNCP12", None),
    ],
)
def test_rncp_codes_are_normalised_or_refused(raw, normalised):
    assert codes.normalise_rncp(raw) == normalised


@pytest.mark.parametrize("uai", ["0750654D", "0597114M", "0932751K", "0751234J"])
def test_design_uai_vectors_are_valid(uai):
    assert codes.is_valid_uai(uai)


def test_design_uai_counter_example_is_invalid():
    assert not codes.is_valid_uai("0311234X")


def test_the_department_and_academy_come_from_the_uai():
    assert territory.department_of("0311234A") == "31"
    assert territory.academy_of("0311234A") == "toulouse"
    assert territory.academy_of("0341234A") == "montpellier"
    assert territory.academy_of("0750654D") is None
    assert territory.department_of("6201234A") == "2A"
    assert territory.department_of("9711234A") == "971"


def test_a_catalogue_becomes_a_tree_of_durations():
    rows = [
        ["Niveau", "Diplôme", "Code diplôme", "RNCP", "Durée"],
        ["5", "BTS MCO", "32031213", "38368", "1 an"],
        ["niveau5", "BTS MCO", "32031213", "RNCP38368", "2"],
        ["3", "CAP Ébéniste", "50023418", "", "2.0"],
        ["", "", "", "", ""],
    ]
    diplomas, problems = cat.parse_catalogue(rows)
    assert problems == []
    bts = next(d for d in diplomas if d.cfd == "32031213")
    assert bts.durations == [1, 2] and bts.rncp == "RNCP38368" and bts.level == "niveau5"
    assert cat.variant_label("CAP Ébéniste", 2) == "CAP Ébéniste en 2 ans"
    assert cat.variant_label("BTS MCO", 1) == "BTS MCO en 1 an"


def test_every_problem_of_a_catalogue_is_reported_with_row_and_column():
    rows = [
        ["niveau", "diplome", "code_diplome", "rncp", "duree"],
        ["9", "BTS MCO", "ABC", "RNCPX1", "7"],
        ["5", "", "32031213", "", "1"],
        ["5", "BTS MCO", "32031213", "", "1"],
        ["5", "BTS MCO", "32031213", "", "1"],
        ["4", "Autre titre", "32031213", "", "2"],
    ]
    diplomas, problems = cat.parse_catalogue(rows)
    found = {(p.row, p.column) for p in problems}
    assert diplomas == []
    assert {(2, "niveau"), (2, "code_diplome"), (2, "rncp"), (2, "duree")} <= found
    assert (3, "diplome") in found
    assert (5, "duree") in found  # duplicate of row 4
    assert (6, "code_diplome") in found  # same code, other title
    assert all(p.message for p in problems)


def test_a_catalogue_without_its_columns_says_which_are_missing():
    _diplomas, problems = cat.parse_catalogue([["intitulé", "durée"], ["CAP", "2"]])
    assert {p.column for p in problems} == {"niveau", "code_diplome"}
    assert all(p.row == 1 for p in problems)


def test_a_partial_form_is_accepted_when_what_it_holds_is_right(make_uai):
    typed = make_uai("0311234").lower()
    values, problems = form.parse_form(
        {"concerned_uai": typed[:7] + " " + typed[7], "measure": "ouverture"}
    )
    assert not problems
    assert values["concerned_uai"] == make_uai("0311234") and values["priority"] is None


def test_format_problems_are_reported_per_field_with_codes():
    _values, problems = form.parse_form(
        {
            "concerned_uai": "0311234X",
            "manager_email": "nope",
            "priority": 0,
            "current_capacity": -1,
            "opportunity_report": "x" * 5001,
            "modality": "Z",
            "recruitment_zones": ["lune"],
            "linked": "peut-être",
        }
    )
    codes_ = problems.codes()
    assert codes_["concerned_uai"] == ["carte.uai_invalid"]
    assert codes_["manager_email"] == ["carte.email_invalid"]
    assert codes_["priority"] == ["carte.priority_invalid"]
    assert codes_["current_capacity"] == ["carte.capacity_invalid"]
    assert codes_["opportunity_report"] == ["carte.report_too_long"]
    assert set(codes_) >= {"modality", "recruitment_zones", "linked"}
    assert problems.code("carte.request_invalid") == "carte.request_invalid"


def test_a_report_of_exactly_5000_characters_is_accepted():
    _values, problems = form.parse_form({"opportunity_report": "é" * 5000})
    assert not problems


def test_a_textareas_line_breaks_count_once_and_control_characters_are_dropped():
    """Browsers send line breaks as CRLF: 5,000 characters typed in the page
    stay 5,000; a NUL (which PostgreSQL refuses) never reaches the database."""
    typed = "x" + "abcd\r\n" * 999 + "abcd"  # 6,000 sent, 5,000 as the page counts them
    values, problems = form.parse_form(
        {"opportunity_report": typed, "manager_name": "Mme\x00 Dupont\x07"}
    )
    assert not problems
    assert len(values["opportunity_report"]) == 5000 and "\r" not in values["opportunity_report"]
    assert values["manager_name"] == "Mme Dupont"


def test_digits_of_other_scripts_are_not_a_uai_or_a_code():
    arabic = "\u0660\u0663\u0661\u0661\u0661\u0661\u0661P"  # 0311111P in Arabic-Indic digits
    _values, problems = form.parse_form({"concerned_uai": arabic})
    assert problems.codes() == {"concerned_uai": ["carte.uai_invalid"]}
    assert not codes.is_valid_cfd("ABC\u0663\u0663\u066312")
    assert codes.normalise_rncp("\u00b2\u00b3\u00b9") is None


@pytest.mark.parametrize(
    "measure, current, new, ok",
    [
        ("ouverture", 0, 12, True),
        ("ouverture", 12, 24, False),
        ("fermeture", 12, 0, True),
        ("fermeture", 12, 6, False),
        ("augmentation", 12, 24, True),
        ("augmentation", 24, 12, False),
        ("diminution", 24, 12, True),
        ("diminution", 24, 0, False),
    ],
)
def test_capacities_must_fit_the_measure(measure, current, new, ok):
    assert (form.capacity_problem(measure, current, new) is None) is ok


def test_validation_requires_the_red_fields_and_those_a_yes_opens():
    problems = form.Problems()
    form.completeness({"linked": True, "first_filing": False, "works_needed": True}, problems)
    missing = set(problems.fields())
    assert {"concerned_uai", "variant_id", "opportunity_report", "recruitment_zones"} <= missing
    assert {"linked_request_id", "previous_filing_year", "works_description"} <= missing
    assert "training_site" not in missing and "other_impacts" not in missing
    assert problems.code("x") == "carte.field_required"


def test_the_previous_filing_is_before_the_campaign():
    problems = form.Problems()
    form.coherence({"previous_filing_year": 2020}, 2020, problems)
    assert problems.codes() == {"previous_filing_year": ["carte.year_invalid"]}


def test_who_files_for_whom():
    lycee = access.Actor("u1", "establishment", "0311234A", uai="0311234A")
    network = access.Actor("u2", "network", "RES", member_uais=frozenset({"0311234A"}))
    draaf = access.Actor("u3", "draaf", "DRAAF")
    reviewer = access.Actor("u4", "reviewer", "R", scope="all")
    assert lycee.may_file_for("0311234A") and not lycee.may_file_for("0311235B")
    assert network.may_file_for("0311234A") and not network.may_file_for("0341234A")
    assert draaf.may_file_for("0341234A") and not draaf.may_file_for("0750654D")
    assert not reviewer.may_file_for("0311234A")


def test_drafts_are_read_by_their_filer_only_and_validated_by_the_scope():
    lycee = access.Actor("u1", "establishment", "0311234A", uai="0311234A")
    montpellier = access.Actor("u4", "reviewer", "R", scope="montpellier")
    toulouse = access.Actor("u5", "reviewer", "R", scope="toulouse")
    draft = dict(
        filed_by="net",
        status="draft",
        concerned_uai="0311234A",
        academy="toulouse",
        filer_kind="network",
    )
    done = dict(draft, status="validated")
    assert not access.may_read(lycee, **draft) and access.may_read(lycee, **done)
    assert not access.may_read(toulouse, **draft) and access.may_read(toulouse, **done)
    assert not access.may_read(montpellier, **done)


def test_the_signed_in_banner_names_the_kind_and_the_identifier():
    lycee = access.Actor("u1", "establishment", "1234567A", uai="1234567A")
    assert lycee.signed_in_as() == (
        "Vous êtes connecté en tant qu'établissement de formation avec l'identifiant 1234567A"
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+33 6", "'+33 6"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("a\x00b\x07c", "abc"),
        ("ligne 1\nligne 2", "ligne 1\nligne 2"),
        (12, 12),
        (None, ""),
    ],
)
def test_exported_cells_cannot_become_formulas(value, expected):
    assert export.safe_cell(value) == expected

"""The certification list: tables built here, every problem at once,
addressed to sheet, row and column with how to fix it."""

from services.survey.tests.support import GUIDE_ROWS, HEADER, workbook_bytes
from survey import xlsx
from survey.domain.certifications import check_row, download_gate, parse_table


def test_the_guides_example_is_accepted_as_it_is():
    certs, problems = parse_table([HEADER, *GUIDE_ROWS])
    assert problems == []
    assert [(c["code"], c["rncp"], c["level"], c["establishments"]) for c in certs] == [
        ("10033101", "NR", "niveau8", 1),
        ("1022001", "RNCP955", "niveau4", 2),
        ("1022103", "RNCP958", "niveau3", 1),
    ]


def test_every_problem_is_reported_at_once_with_its_cell_and_how_to_fix_it():
    table = [
        HEADER,
        ["ABC", "BTS BANQUE", "RNCPX1", "niveau9", "BTS", 0],
        ["", "", "", "", "", ""],  # blank rows are skipped
        ["46T31203", "", "37098", "niveau5", "BTS", 1],
        ["46T31203", "BTS BIS", "RNCP37098", "niveau5", "BTS", "deux"],
    ]
    certs, problems = parse_table(table)
    assert certs == []
    refs = [p.ref for p in problems]
    assert refs == [
        "Certifications!A2",
        "Certifications!C2",
        "Certifications!D2",
        "Certifications!F2",
        "Certifications!B4",
        "Certifications!A5",
        "Certifications!F5",
    ]
    text = problems[0].located_text()
    assert text.startswith(
        "Feuille « Certifications », ligne 2, colonne A (Code Diplôme) : « ABC »"
    )
    assert "ex. 46T31203" in text
    assert "RNCP suivi de 3 à 5 chiffres" in problems[1].message
    assert "niveau3" in problems[2].message
    assert "déjà présent ligne 4" in problems[5].message
    assert problems[4].located_text() == (
        "Feuille « Certifications », ligne 4, colonne B (Intitulé) : intitulé obligatoire : "
        "saisissez l'intitulé du diplôme ou du titre."
    )


def test_an_empty_cell_says_what_to_enter():
    _cert, errors = check_row({})
    assert errors["code"] == "code diplôme obligatoire : 8 caractères (ex. 46T31203)."
    assert errors["level"].endswith("niveau7 ou niveau8.")
    assert all(" obligatoire" in message for message in errors.values())


def test_columns_are_found_by_their_titles_in_any_order():
    header = [HEADER[2], HEADER[0], HEADER[1], "Niveau 2019", "Type5", "Nombre d'établissements"]
    certs, problems = parse_table([header, ["RNCP955", "1022001", "MC", "niveau4", "MC", 2]])
    assert problems == [] and certs[0]["code"] == "1022001"


def test_a_missing_column_is_named():
    certs, problems = parse_table([HEADER[:5], ["1022001", "MC", "RNCP955", "niveau4", "MC"]])
    assert [p.message for p in problems] == [
        "colonne « Nombre d'établissements sur lesquels la formation correspondante est "
        "délivrée » absente : utilisez le modèle Liste-certifications.xlsx sans modifier sa "
        "première ligne."
    ]


def test_more_establishments_than_the_total_is_refused():
    _certs, problems = parse_table([HEADER, GUIDE_ROWS[1]], establishments_total=1)
    assert problems[0].ref == "Certifications!F2"
    assert "plus que le nombre d'établissements total (1)" in problems[0].message


def test_an_empty_list_is_refused():
    _certs, problems = parse_table([HEADER])
    assert "aucune certification" in problems[0].message


def test_a_row_edited_on_screen_is_checked_the_same_way():
    cert, errors = check_row(
        {
            "code": "46t31203",
            "title": " BTS  MCO ",
            "rncp": "38362",
            "level": "niveau5",
            "type": "bts",
            "establishments": "2",
        }
    )
    assert errors == {}
    assert cert == {
        "code": "46T31203",
        "title": "BTS MCO",
        "rncp": "RNCP38362",
        "level": "niveau5",
        "type": "BTS",
        "establishments": 2,
    }
    _cert, errors = check_row({"code": "46T31203"})
    assert set(errors) == {"title", "rncp", "level", "type", "establishments"}


def test_an_imported_workbook_is_read_from_its_first_sheet():
    data = workbook_bytes({"Liste": [HEADER, *GUIDE_ROWS], "Autre": [["x"]]})
    sheet, rows = xlsx.read_first_sheet(data)
    certs, problems = parse_table(rows, sheet=sheet)
    assert sheet == "Liste" and problems == [] and len(certs) == 3


def test_numbers_typed_as_numbers_keep_their_digits():
    data = workbook_bytes(
        {"Certifications": [HEADER, [10033101, "DE PHARMACIE", 955, 8, "DOCTORAT", 1]]}
    )
    certs, problems = parse_table(xlsx.read_first_sheet(data)[1])
    assert problems == []
    assert (certs[0]["code"], certs[0]["rncp"], certs[0]["level"]) == (
        "10033101",
        "RNCP955",
        "niveau8",
    )


def test_the_template_has_the_guides_columns():
    import io

    import python_calamine

    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(xlsx.certification_template()))
    assert book.sheet_names[0] == "Certifications"
    assert book.get_sheet_by_name("Certifications").to_python()[0] == HEADER


def test_the_download_opens_once_both_totals_and_the_list_are_given():
    assert download_gate(2, 3, [("1022001", 2), ("1022103", 1)]) == []
    assert download_gate(None, 0, []) == [
        "le nombre d'établissements total",
        "le nombre de formations total",
        "la liste des certifications",
    ]


def test_the_download_stays_closed_while_a_certification_has_more_establishments_than_the_total():
    gate = download_gate(2, 3, [("A1", 3), ("B2", 2), ("C3", 4)])
    assert gate == [
        "un nombre d'établissements au plus égal au nombre d'établissements total pour "
        "les certifications A1, C3"
    ]
    many = download_gate(1, 1, [(f"C{n}", 2) for n in range(7)])
    assert many[0].endswith("C0, C1, C2, C3, C4 …")
    assert download_gate(1, 1, [("A1", 2)])[0].endswith("pour la certification A1")

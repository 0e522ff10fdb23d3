"""The survey form: generated from a snapshot, filled in with openpyxl as a
person would, read back and checked."""

import io

import openpyxl
import pytest

from services.survey.tests.support import SECRET, fill_form
from survey import xlsx
from survey.domain import form as F
from survey.domain.codes import BadCode

SNAPSHOT = {
    "survey_id": "s-1",
    "campaign": {
        "id": "c-1",
        "name": "Enquête CFA",
        "direction": "DIRECTION_1",
        "return_due": "15/07/2021",
        "closes": "15/07/2021",
    },
    "organisation": {
        "id": "org-a",
        "name": "CFA DES METIERS DE L'EXEMPLE",
        "siret": "41816609600051",
        "uai": "0750654D",
        "nda": "11930882293",
        "account_type": "OFA",
        "parent_name": "OGEC FORMATION",
    },
    "establishments_count": 2,
    "trainings_count": 3,
    "certifications": [
        {
            "code": "10033101",
            "title": "DE DOCTEUR EN PHARMACIE",
            "rncp": "NR",
            "level": "niveau8",
            "type": "DOCTORAT",
            "establishments": 1,
        },
        {
            "code": "1022001",
            "title": '=HYPERLINK("http://x")',
            "rncp": "RNCP955",
            "level": "niveau4",
            "type": "MC",
            "establishments": 2,
        },
    ],
}


def generate(snapshot=SNAPSHOT, purpose=F.OFFICIAL):
    layout = F.build_layout(snapshot)
    digest = F.layout_digest(layout)
    meta = {
        "format": F.FORMAT,
        "purpose": purpose,
        "survey_id": snapshot["survey_id"],
        "org_id": snapshot["organisation"]["id"],
        "campaign_id": "c-1",
        "form_version": 1,
        "digest": digest,
    }
    content = xlsx.render_form(
        layout, F.meta_rows(SECRET, meta), protect=purpose == F.OFFICIAL, password="secret"
    )
    return layout, digest, content


def check(content, digest, snapshot=SNAPSHOT):
    book = xlsx.read_book(content)
    layout = F.build_layout(snapshot)
    structure = F.structure_problems(layout, book, digest)
    values, problems = F.check_values(layout, book)
    return book, values, [p.text for p in structure + problems]


def test_the_sheets_come_in_the_designed_order_with_identity_prefilled():
    _layout, _digest, content = generate()
    wb = openpyxl.load_workbook(io.BytesIO(content))
    assert wb.sheetnames == [*F.SHEETS, "meta"]
    assert wb["meta"].sheet_state == "veryHidden"
    identity = wb["Identité"]
    assert [identity[f"B{r}"].value for r in range(5, 9)] == [
        "CFA DES METIERS DE L'EXEMPLE",
        "41816609600051",
        "0750654D",
        "11930882293",
    ]
    # one block per certification × establishment: 1 + 2 lines
    assert [wb["Charges"].cell(r, 2).value for r in (5, 6, 7)] == ["10033101", "1022001", "1022001"]
    assert wb["Charges"].cell(6, 4).value == "1 sur 2"


def test_every_cell_is_locked_except_the_input_cells_which_have_numeric_validation():
    layout, _digest, content = generate()
    wb = openpyxl.load_workbook(io.BytesIO(content))
    for name in F.SHEETS:
        ws = wb[name]
        assert ws.protection.sheet is True
        unlocked = {
            (name, c.row, c.column)
            for row in ws.iter_rows()
            for c in row
            if c.protection.locked is False
        }
        assert unlocked == {k for k in layout.inputs if k[0] == name}
    assert wb.security.lockStructure is True
    charges = wb["Charges"].data_validations.dataValidation
    assert [(dv.type, dv.operator, dv.formula1) for dv in charges] == [
        ("decimal", "greaterThanOrEqual", "0")
    ]
    assert "E5:E7" in str(charges[0].sqref)


def test_text_that_looks_like_a_formula_is_written_as_text():
    _layout, _digest, content = generate()
    wb = openpyxl.load_workbook(io.BytesIO(content))
    cell = wb["Charges"]["C6"]
    assert cell.data_type == "s" and cell.value.startswith("=HYPERLINK")


def test_the_metadata_is_signed_and_any_change_breaks_the_signature():
    _layout, digest, content = generate()
    meta = F.read_meta(xlsx.read_book(content).values["meta"])
    assert meta["org_id"] == "org-a" and meta["digest"] == digest
    assert F.signature_valid(SECRET, meta)
    assert not F.signature_valid(b"another secret" * 3, meta)
    assert not F.signature_valid(SECRET, dict(meta, org_id="org-b"))
    assert not F.signature_valid(SECRET, dict(meta, signature=""))


def test_a_properly_filled_form_passes_and_its_values_are_extracted():
    _layout, digest, content = generate()
    filled = fill_form(content, amount=lambda sheet, row, col: 100.25 if sheet == "Charges" else 10)
    _book, cents, problems = check(filled, digest)
    assert problems == []
    assert cents["totals"] == {"charges": 270675, "produits": 18000}
    values = F.in_euros(cents)
    assert values["totals"] == {"charges": "2706.75", "produits": "180.00"}
    assert values["sums"] == values["totals"]
    assert [e["siret"] for e in values["establishments"]] == ["41816609600010", "41816609600028"]
    [first, second, third] = values["lines"]
    assert (second["code"], second["slot"], second["establishment"]) == ("1022001", 1, 1)
    assert third["establishment"] == 2 and third["apprentices"] == 4
    assert first["charges"]["locaux"] == "100.25" and first["produits"]["regions"] == "10.00"
    assert values["keys"][0]["amount"] == "300.75"


def test_the_layout_digest_is_that_of_the_form_read_back_untouched():
    layout, digest, content = generate()
    book = xlsx.read_book(content)
    assert F.structure_problems(F.build_layout(SNAPSHOT, cells=False), book, digest) == []
    assert digest == F.layout_digest(layout)


def test_a_reader_giving_whole_numbers_back_as_ints_is_not_a_structure_change():
    _layout, digest, content = generate()
    book = xlsx.read_book(fill_form(content))
    for rows in book.values.values():
        for row in rows:
            row[:] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in row]
    layout = F.build_layout(SNAPSHOT, cells=False)
    assert F.structure_problems(layout, book, digest, lambda: F.build_layout(SNAPSHOT)) == []


def test_every_value_problem_is_reported_at_once_with_its_cell():
    _layout, digest, content = generate()
    filled = fill_form(
        content,
        overrides={
            "Charges!E5": -3,
            "Charges!F6": "beaucoup",
            "Produits!G7": "1 234,50",  # numeric text is accepted
            "Identité!B20": "pas un courriel",
            "Identité!B29": "41816609600052",
            "Certifications!H7": 1,  # the same establishment twice for one certification
            "Certifications!I5": None,
        },
    )
    _book, _values, problems = check(filled, digest)
    assert "Charges!E5 : montant négatif : les montants sont positifs ou nuls." in problems
    assert "Charges!F6 : « beaucoup » n'est pas un nombre : saisissez un montant." in problems
    assert "Identité!B20 : adresse électronique invalide." in problems
    assert "Identité!B29 : SIRET invalide : la clé de contrôle ne correspond pas." in problems
    assert any(
        p.startswith("Certifications!H7 : l'établissement 1 est déjà indiqué") for p in problems
    )
    assert "Certifications!I5 : nombre d'apprentis : valeur obligatoire." in problems
    assert any(p.startswith("Identité!B24 : le total des charges") for p in problems)
    assert any(p.startswith("Identité!B25 : le total des produits") for p in problems)
    assert not any(p.startswith("Produits!G7") for p in problems)


def test_totals_must_match_and_keys_are_required_for_indirect_charges():
    _layout, digest, content = generate()
    filled = fill_form(
        content,
        overrides={"Identité!B24": 1, "Clés de répartition!B5": 2, "Clés de répartition!C6": None},
    )
    _book, _values, problems = check(filled, digest)
    assert [p.split(" : ")[0] for p in problems] == [
        "Identité!B24",
        "Clés de répartition!B5",
        "Clés de répartition!C6",
    ]
    assert "ne correspond pas à la somme de la feuille Charges" in problems[0]
    assert "1,00 €" in problems[0]


def test_formulas_in_input_cells_are_refused():
    _layout, digest, content = generate()
    filled = fill_form(content, overrides={"Charges!E5": "=1+1", "Produits!F6": "=SUM(E6:E7)"})
    _book, _values, problems = check(filled, digest)
    assert "Charges!E5 : formule interdite : saisissez une valeur." in problems
    assert "Produits!F6 : formule interdite : saisissez une valeur." in problems


def unprotected(content: bytes) -> openpyxl.Workbook:
    wb = openpyxl.load_workbook(io.BytesIO(content))
    for ws in wb.worksheets:
        ws.protection.sheet = False
    return wb


def saved(wb) -> bytes:
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_a_locked_cell_edited_after_removing_the_protection_is_named():
    _layout, digest, content = generate()
    wb = unprotected(fill_form(content))
    wb["Identité"]["B5"] = "UN AUTRE ORGANISME"
    wb["Charges"]["B5"] = None
    wb["Produits"]["Z40"] = "note"
    wb["Charges"]["A6"] = "=2"
    _book, _values, problems = check(saved(wb), digest)
    assert problems[:2] == [
        "Identité!B5 : cellule verrouillée modifiée (attendu « CFA DES METIERS DE L'EXEMPLE », "
        "trouvé « UN AUTRE ORGANISME »).",
        "Charges!B5 : cellule verrouillée effacée (attendu « 10033101 »).",
    ]
    assert "Charges!A6 : formule ajoutée dans une cellule verrouillée." in problems
    assert (
        "Produits!Z40 : contenu ajouté hors des cellules de saisie (« note ») : effacez-le."
        in problems
    )


def test_a_renamed_or_added_sheet_is_a_structure_change():
    _layout, digest, content = generate()
    wb = unprotected(fill_form(content))
    wb["Produits"].title = "Recettes"
    wb.create_sheet("Brouillon")
    _book, _values, problems = check(saved(wb), digest)
    assert "Produits : feuille supprimée ou renommée." in problems
    assert "Recettes : feuille ajoutée : supprimez-la." in problems


def test_the_working_copy_is_editable_and_says_so_in_its_metadata():
    _layout, _digest, content = generate(purpose=F.WORKING)
    wb = openpyxl.load_workbook(io.BytesIO(content))
    assert wb["Charges"].protection.sheet is False
    meta = F.read_meta(xlsx.read_book(content).values["meta"])
    assert meta["purpose"] == "working" and F.signature_valid(SECRET, meta)


@pytest.mark.parametrize(
    "value, cents",
    [(0, 0), (12, 1200), (12.5, 1250), (0.1, 10), (1.005, 101), ("1 234,56", 123456), ("7", 700)],
)
def test_amounts_are_kept_in_cents(value, cents):
    assert F.parse_amount(value) == cents


def test_the_notice_is_a_pdf_that_names_the_lines():
    from survey.notice import notice_lines, render_notice

    pdf = render_notice("Enquête CFA")
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    text = " ".join(line for line, _bold in notice_lines("Enquête CFA"))
    assert "Dotations aux amortissements" in text and "Clés de répartition" in text


def test_text_inputs_refuse_control_characters():
    # a workbook can carry them escaped (``_x0000_``); calamine gives them back raw
    name = F.Input("text", True, "nom de la personne à contacter")
    assert F.parse_input(name, "  Claire\tDurand ") == "Claire Durand"
    with pytest.raises(BadCode) as caught:
        F.parse_input(name, "Claire\x00Durand")
    assert caught.value.message.startswith("caractères de contrôle interdits")

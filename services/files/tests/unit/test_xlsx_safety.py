"""XLSX safety checks on workbooks built here: each hostile or broken upload is
refused with its own code and a French message; valid workbooks pass."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from files.xlsx_safety import XlsxLimits, check, column_index, column_letters
from kit.errors import InvalidInput

REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
MS_REL = "http://schemas.microsoft.com/office/2006/relationships"
SMALL = XlsxLimits(max_rows=10, max_columns=5, max_cell_chars=50, max_sheets=3, max_entries=20)


def refused(data: bytes, name: str | None = "formulaire.xlsx", limits=XlsxLimits()) -> str:
    with pytest.raises(InvalidInput) as caught:
        check(data, name, limits)
    error = caught.value
    assert error.code.startswith("files.xlsx.")
    assert error.message.endswith(".") and len(error.message) > 40
    return error.code


def measured(fn):
    """(result or raised error, seconds, peak traced bytes)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        outcome = fn()
    except InvalidInput as exc:
        outcome = exc
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, elapsed, peak


# --- valid workbooks ------------------------------------------------------------


def test_a_valid_workbook_passes_with_its_sheet_names(xlsx):
    data = xlsx.valid()
    verdict = check(data, "Liste-certifications.xlsx")
    assert verdict.sheets == ("Certifications",)
    assert verdict.size == len(data)


def test_a_locked_form_with_everything_a_form_has_passes(xlsx):
    from openpyxl.styles import Protection
    from openpyxl.worksheet.datavalidation import DataValidation

    def fill(wb):
        ws = wb.active
        ws.title = "Identité"
        ws["A1"] = "Organisme"
        ws["B1"] = '=CONCATENATE("CFA", " 1")'
        ws.merge_cells("A3:D3")
        ws["A4"].hyperlink = "https://www.francecompetences.fr/"
        ws["B5"].protection = Protection(locked=False)
        validation = DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="0")
        validation.add("B5:B50")
        ws.add_data_validation(validation)
        ws.protection.sheet = True
        ws.column_dimensions["Z"].hidden = True
        charges = wb.create_sheet("Charges")
        charges.append(["Compte", "Montant"])
        meta = wb.create_sheet("meta")
        meta.sheet_state = "veryHidden"
        meta["A1"] = "x" * 32_767  # exactly the longest text a cell may hold

    assert check(xlsx.build(fill), "f.XLSX").sheets == ("Identité", "Charges", "meta")


def test_limits_are_inclusive(xlsx):
    def fill(wb):
        for row in range(1, 11):
            wb.active.append([f"{row}-{col}" for col in range(1, 6)])
        wb.create_sheet("b"), wb.create_sheet("c")

    assert len(check(xlsx.build(fill), "f.xlsx", SMALL).sheets) == 3


# --- the envelope -------------------------------------------------------------------


def test_an_empty_file_is_refused():
    assert refused(b"") == "files.xlsx.empty"


def test_a_pdf_renamed_xlsx_is_refused():
    pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
    assert refused(pdf, "formulaire.xlsx") == "files.xlsx.not_xlsx"


@pytest.mark.parametrize("name", ["formulaire.xlsm", "formulaire.xls", "formulaire.pdf", "xlsx"])
def test_a_name_without_the_xlsx_extension_is_refused(xlsx, name):
    assert refused(xlsx.valid(), name) == "files.xlsx.not_xlsx"


def test_a_file_over_the_size_cap_is_refused_before_anything_else(xlsx):
    data = xlsx.valid()
    with pytest.raises(InvalidInput) as caught:
        check(data, "f.xlsx", XlsxLimits(max_bytes=len(data) - 1))
    assert caught.value.code == "files.xlsx.too_large"
    assert caught.value.message.startswith("Le fichier dépasse la taille maximale de ")
    assert check(data, "f.xlsx", XlsxLimits(max_bytes=len(data))).size == len(data)


def test_the_default_size_cap_is_10_mib():
    assert refused(b"PK\x03\x04" + bytes(10 * 1024 * 1024)) == "files.xlsx.too_large"


def test_a_truncated_zip_is_corrupt(xlsx):
    data = xlsx.valid()
    assert refused(data[: len(data) // 2]) == "files.xlsx.corrupt"


def test_flipped_bytes_in_a_compressed_sheet_are_corrupt(xlsx):
    data = bytearray(xlsx.valid())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename) + 10
    data[start : start + 20] = bytes(20)
    assert refused(bytes(data)) == "files.xlsx.corrupt"


def test_malformed_xml_is_corrupt(xlsx):
    data = xlsx.rezip(xlsx.valid(), replace={"xl/worksheets/sheet1.xml": b"<worksheet><oops>"})
    assert refused(data) == "files.xlsx.corrupt"


def test_an_entry_compressed_with_bzip2_is_corrupt(xlsx):
    data = xlsx.zip_of(
        [("[Content_Types].xml", b"<Types/>"), ("xl/workbook.xml", b"<workbook/>")],
        compression=zipfile.ZIP_BZIP2,
    )
    assert refused(data) == "files.xlsx.corrupt"


def test_an_encrypted_entry_is_corrupt(xlsx):
    data = bytearray(xlsx.valid())
    pos = data.find(b"PK\x01\x02")
    data[pos + 8] |= 0x1  # the central directory's "encrypted" flag
    assert refused(bytes(data)) == "files.xlsx.corrupt"


# --- the zip's central directory -------------------------------------------------------


def test_too_many_entries_are_refused_from_the_end_record(xlsx):
    entries = [(f"xl/media/p{i}.png", b"") for i in range(21)]
    assert refused(xlsx.zip_of(entries), limits=SMALL) == "files.xlsx.too_many_entries"


def test_2001_entries_are_refused_by_default(xlsx):
    entries = [("[Content_Types].xml", b"<Types/>")]
    entries += [(f"xl/media/p{i}.png", b"") for i in range(2000)]
    assert refused(xlsx.zip_of(entries)) == "files.xlsx.too_many_entries"


def test_an_end_record_lying_about_the_entry_count_does_not_help(xlsx):
    entries = [("[Content_Types].xml", b"<Types/>")]
    entries += [(f"xl/media/p{i}.png", b"") for i in range(2000)]
    data = bytearray(xlsx.zip_of(entries))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "one entry"
    assert refused(bytes(data)) == "files.xlsx.too_many_entries"


@pytest.mark.parametrize(
    "name",
    [
        "../evil.xml",
        "xl/../../evil.xml",
        "/etc/evil.xml",
        "xl\\worksheets\\sheet2.xml",
        "C:/evil.xml",
        "xl/a\x01b.xml",
        "xl/a\x00b.xml",
        "xl//sheet.xml",
        "xl/./sheet.xml",
    ],
)
def test_unsafe_entry_names_are_refused(xlsx, name):
    # written under a placeholder, then renamed in the raw bytes: zipfile
    # itself would cut a name at its NUL
    placeholder = "q" * len(name.encode())
    data = xlsx.rezip(xlsx.valid(), add=[(placeholder, b"<x/>")])
    data = data.replace(placeholder.encode(), name.encode())
    assert refused(data) == "files.xlsx.unsafe_entry_name"


@pytest.mark.parametrize("name", ["xl/workbook.xml", "XL/Workbook.xml"])
def test_duplicate_entry_names_are_refused(xlsx, name):
    data = xlsx.rezip(xlsx.valid(), add=[(name, b"<workbook/>")])
    assert refused(data) == "files.xlsx.duplicate_entry"


def test_a_zip_bomb_declaring_300_mib_is_refused_fast_from_the_directory(xlsx):
    data = xlsx.rezip(xlsx.valid(), add=[("xl/media/image1.png", bytes(1024))])
    bomb = xlsx.declare_size(data, "xl/media/image1.png", 300 * 1024 * 1024)
    outcome, seconds, peak = measured(lambda: check(bomb, "bomb.xlsx"))
    assert isinstance(outcome, InvalidInput) and outcome.code == "files.xlsx.zip_bomb"
    assert seconds < 5 and peak < 200 * 1024 * 1024


def test_a_really_compressed_bomb_is_refused_on_its_ratio(xlsx):
    data = xlsx.rezip(xlsx.valid(), add=[("xl/media/image1.png", bytes(30 * 1024 * 1024))])
    assert len(data) < 100 * 1024  # 30 MiB of zeros in a few dozen KiB
    outcome, seconds, peak = measured(lambda: check(data, "bomb.xlsx"))
    assert isinstance(outcome, InvalidInput) and outcome.code == "files.xlsx.zip_bomb"
    assert outcome.details["entry"] == "xl/media/image1.png"
    assert seconds < 5 and peak < 200 * 1024 * 1024


def test_an_entry_lying_small_about_its_size_cannot_smuggle_more_bytes(xlsx):
    data = xlsx.valid()
    sheet = xlsx.part(data, "xl/worksheets/sheet1.xml")
    lying = xlsx.declare_size(data, "xl/worksheets/sheet1.xml", len(sheet) // 2)
    assert refused(lying) == "files.xlsx.corrupt"


# --- parts ---------------------------------------------------------------------------------


def test_a_macro_enabled_workbook_is_refused(xlsx):
    data = xlsx.with_content_type(
        xlsx.valid(),
        '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>',
    )
    data = xlsx.edit(
        data,
        "[Content_Types].xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
    )
    data = xlsx.with_workbook_relationship(data, f"{MS_REL}/vbaProject", "vbaProject.bin")
    data = xlsx.rezip(data, add=[("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 macro")])
    with pytest.raises(InvalidInput) as caught:
        check(data, "formulaire.xlsx")
    assert caught.value.code == "files.xlsx.macro"
    assert caught.value.message == (
        "Le fichier contient des macros : enregistrez-le au format .xlsx (classeur Excel sans "
        "macros)."
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda x: x.rezip(x.valid(), add=[("xl/vbaProject.bin", b"vba")]), id="part"),
        pytest.param(
            lambda x: x.edit(
                x.valid(),
                "[Content_Types].xml",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
            ),
            id="content-type",
        ),
        pytest.param(
            lambda x: x.rezip(
                x.with_workbook_relationship(x.valid(), f"{MS_REL}/vbaProject", "data.bin"),
                add=[("xl/data.bin", b"vba")],
            ),
            id="renamed-part",
        ),
        pytest.param(
            lambda x: x.rezip(x.valid(), add=[("xl/macrosheets/sheet1.xml", b"<xm/>")]),
            id="excel4-macro-sheet",
        ),
    ],
)
def test_each_sign_of_macros_is_enough(xlsx, make):
    assert refused(make(xlsx)) == "files.xlsx.macro"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda x: x.rezip(
                x.with_content_type(
                    x.valid(),
                    '<Override PartName="/xl/externalLinks/externalLink1.xml" ContentType='
                    '"application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/>',
                ),
                add=[("xl/externalLinks/externalLink1.xml", b"<externalLink/>")],
            ),
            id="external-link-part",
        ),
        pytest.param(
            lambda x: x.edit(
                x.valid(),
                "xl/workbook.xml",
                "</workbook>",
                # the r: prefix declared here: openpyxl with et_xmlfile 2 declares
                # it on each <sheet>, not on <workbook>
                f'<externalReferences xmlns:r="{REL}"><externalReference r:id="rId9"/>'
                "</externalReferences>"
                "</workbook>",
            ),
            id="workbook-reference",
        ),
        pytest.param(
            lambda x: x.with_workbook_relationship(
                x.valid(), f"{REL}/image", "https://tracker.example/pixel.png", "External"
            ),
            id="fetched-on-open",
        ),
        pytest.param(
            lambda x: x.rezip(x.valid(), add=[("xl/connections.xml", b"<connections/>")]),
            id="data-connection",
        ),
    ],
)
def test_external_links_are_refused(xlsx, make):
    assert refused(make(xlsx)) == "files.xlsx.external_link"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda x: x.rezip(x.valid(), add=[("xl/embeddings/oleObject1.bin", b"ole")]),
            id="ole-part",
        ),
        pytest.param(
            lambda x: x.rezip(x.valid(), add=[("xl/activeX/activeX1.xml", b"<ax/>")]),
            id="activex-part",
        ),
        pytest.param(
            lambda x: x.with_content_type(
                x.valid(),
                '<Default Extension="bin" '
                'ContentType="application/vnd.openxmlformats-officedocument.oleObject"/>',
            ),
            id="content-type",
        ),
        pytest.param(
            lambda x: x.with_sheet(
                '<row r="1"><c r="A1"><v>1</v></c></row>',
                after='<oleObjects><oleObject progId="Package" shapeId="1025" r:id="rId1"/>'
                "</oleObjects>",
            ),
            id="sheet-element",
        ),
        pytest.param(
            lambda x: x.with_workbook_relationship(x.valid(), f"{REL}/package", "embed.docx"),
            id="relationship",
        ),
    ],
)
def test_embedded_objects_are_refused(xlsx, make):
    assert refused(make(xlsx)) == "files.xlsx.embedded_object"


def test_a_hyperlink_to_a_web_page_is_not_an_external_link(xlsx):
    def fill(wb):
        wb.active["A1"].hyperlink = "https://www.legifrance.gouv.fr/"

    assert check(xlsx.build(fill), "f.xlsx").sheets == ("Sheet",)


@pytest.mark.parametrize("missing", ["[Content_Types].xml", "xl/workbook.xml"])
def test_a_zip_without_a_required_part_is_refused(xlsx, missing):
    data = xlsx.rezip(xlsx.valid(), drop=(missing,))
    assert refused(data) == "files.xlsx.missing_part"


def test_a_sheet_listed_by_the_workbook_but_missing_is_refused(xlsx):
    data = xlsx.rezip(xlsx.valid(), drop=("xl/worksheets/sheet1.xml",))
    assert refused(data) == "files.xlsx.missing_part"


def test_a_plain_zip_renamed_xlsx_is_not_a_workbook(xlsx):
    data = xlsx.zip_of([("notes.txt", b"bonjour")])
    assert refused(data) == "files.xlsx.missing_part"


def test_excel_vml_that_is_not_well_formed_passes_but_not_with_a_dtd(xlsx):
    # Excel writes a button's label with an unclosed <br>; nothing of ours parses VML
    vml = b'<xml xmlns:v="urn:schemas-microsoft-com:vml"><v:textbox><div>OK<br></div></v:textbox>'
    data = xlsx.rezip(xlsx.valid(), add=[("xl/drawings/vmlDrawing1.vml", vml)])
    assert check(data, "f.xlsx").sheets == ("Certifications",)
    bomb = xlsx.rezip(xlsx.valid(), add=[("xl/drawings/vmlDrawing1.vml", xlsx.billion_laughs())])
    assert refused(bomb) == "files.xlsx.xml_entities"


# --- XML ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "part, root",
    [
        ("xl/worksheets/sheet1.xml", "worksheet"),
        ("[Content_Types].xml", "Types"),
        ("xl/workbook.xml", "workbook"),
        ("xl/styles.xml", "styleSheet"),  # a part only other parsers read
    ],
)
def test_an_xml_entity_bomb_is_refused_fast_with_little_memory(xlsx, part, root):
    data = xlsx.rezip(xlsx.valid(), replace={part: xlsx.billion_laughs(root)})
    outcome, seconds, peak = measured(lambda: check(data, "lol.xlsx"))
    assert isinstance(outcome, InvalidInput) and outcome.code == "files.xlsx.xml_entities"
    assert outcome.details["entry"] == part
    assert seconds < 5 and peak < 200 * 1024 * 1024


def test_an_element_with_a_million_attributes_is_refused_with_little_memory(xlsx):
    attributes = " ".join(f'a{i:x}=""' for i in range(1_000_000))
    sheet = xlsx.sheet_xml(f'<row r="1"><c r="A1" {attributes}><v>1</v></c></row>')
    data = xlsx.rezip(xlsx.valid(), replace={"xl/worksheets/sheet1.xml": sheet})
    outcome, seconds, peak = measured(lambda: check(data, "f.xlsx"))
    assert isinstance(outcome, InvalidInput) and outcome.code == "files.xlsx.corrupt"
    assert seconds < 5 and peak < 100 * 1024 * 1024


def test_an_external_entity_is_refused(xlsx):
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<worksheet><sheetData>&x;</sheetData></worksheet>"
    )
    data = xlsx.rezip(xlsx.valid(), replace={"xl/worksheets/sheet1.xml": xxe})
    assert refused(data) == "files.xlsx.xml_entities"


def test_a_cell_at_xfd1048576_is_refused(xlsx):
    def fill(wb):
        wb.active["A1"] = "début"
        wb.active["XFD1048576"] = "fin"

    with pytest.raises(InvalidInput) as caught:
        check(xlsx.build(fill), "f.xlsx")
    assert caught.value.code == "files.xlsx.too_many_rows"
    assert "XFD1048576" in caught.value.message


def test_a_cell_at_xfd1048576_is_refused_even_when_the_dimension_lies(xlsx):
    data = xlsx.with_sheet(
        '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>', dimension="A1:A1"
    )
    assert refused(data) == "files.xlsx.too_many_rows"


@pytest.mark.parametrize(
    "body, dimension, after, code",
    [
        ('<row r="1"><c r="XFD1"><v>1</v></c></row>', None, "", "files.xlsx.too_many_columns"),
        ('<row r="1"><c r="GS1"><v>1</v></c></row>', "A1:A1", "", "files.xlsx.too_many_columns"),
        ('<row r="100001"><c r="A100001"><v>1</v></c></row>', None, "", "files.xlsx.too_many_rows"),
        ('<row r="100001"/>', None, "", "files.xlsx.too_many_rows"),
        ("", "A1:GS1", "", "files.xlsx.too_many_columns"),
        (
            "",
            None,
            '<mergeCells count="1"><mergeCell ref="A1:A1048576"/></mergeCells>',
            "files.xlsx.too_many_rows",
        ),
        (
            "",
            None,
            '<mergeCells count="1"><mergeCell ref="A:B"/></mergeCells>',
            "files.xlsx.too_many_rows",
        ),
        (
            "",
            None,
            '<hyperlinks><hyperlink ref="A1:XFD1" location="B2"/></hyperlinks>',
            "files.xlsx.too_many_columns",
        ),
    ],
)
def test_rows_and_columns_beyond_the_limits_are_refused(xlsx, body, dimension, after, code):
    assert refused(xlsx.with_sheet(body, dimension, after)) == code


def test_rows_and_cells_without_references_are_counted(xlsx):
    rows = "".join("<row><c><v>1</v></c></row>" for _ in range(11))
    assert refused(xlsx.with_sheet(rows), limits=SMALL) == "files.xlsx.too_many_rows"
    cells = "<row>" + "<c><v>1</v></c>" * 6 + "</row>"
    assert refused(xlsx.with_sheet(cells), limits=SMALL) == "files.xlsx.too_many_columns"


def test_repeating_the_same_row_does_not_escape_the_row_limit(xlsx):
    rows = '<row r="1"><c r="A1"><v>1</v></c></row>' * 11
    assert refused(xlsx.with_sheet(rows), limits=SMALL) == "files.xlsx.too_many_rows"


def test_a_worksheet_the_workbook_does_not_list_is_checked_too(xlsx):
    hidden = xlsx.sheet_xml('<row r="1"><c r="XFD1"><v>1</v></c></row>')
    data = xlsx.rezip(xlsx.valid(), add=[("xl/worksheets/sheet9.xml", hidden)])
    assert refused(data) == "files.xlsx.too_many_columns"


def test_a_shared_string_over_32767_characters_is_refused_with_its_cell(xlsx):
    data = xlsx.with_shared_strings(
        ["court", "x" * 32_768],
        '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
        '<row r="7"><c r="C7" t="s"><v>1</v></c></row>',
    )
    with pytest.raises(InvalidInput) as caught:
        check(data, "f.xlsx")
    assert caught.value.code == "files.xlsx.cell_too_long"
    assert caught.value.details == {"sheet": "Certifications", "cell": "C7", "limit": 32_767}
    assert caught.value.message == (
        "La cellule C7 de la feuille « Certifications » dépasse 32\u00a0767 caractères : "
        "raccourcissez son contenu puis enregistrez à nouveau."
    )


@pytest.mark.parametrize(
    "cell",
    [
        '<c r="B2" t="inlineStr"><is><r><t>'
        + "x" * 30
        + "</t></r><r><t>"
        + "y" * 30
        + "</t></r></is></c>",
        '<c r="B2"><f>' + "1+" * 30 + "1</f><v>31</v></c>",
        '<c r="B2" t="str"><v>' + "z" * 51 + "</v></c>",
    ],
)
def test_inline_strings_formulas_and_values_are_bounded_too(xlsx, cell):
    data = xlsx.with_sheet(f'<row r="2">{cell}</row>')
    with pytest.raises(InvalidInput) as caught:
        check(data, "f.xlsx", SMALL)
    assert caught.value.code == "files.xlsx.cell_too_long"
    assert caught.value.details["cell"] == "B2"


def test_shared_strings_within_the_limit_pass(xlsx):
    data = xlsx.with_shared_strings(
        ["court", "x" * 50], '<row r="1"><c r="A1" t="s"><v>1</v></c></row>'
    )
    assert check(data, "f.xlsx", SMALL).sheets == ("Certifications",)


def test_an_inline_string_over_32767_characters_is_refused(xlsx):
    cell = '<c r="D4" t="inlineStr"><is><t>' + "é" * 32_768 + "</t></is></c>"
    data = xlsx.with_sheet(f'<row r="4">{cell}</row>')
    assert refused(data) == "files.xlsx.cell_too_long"


def test_an_over_long_shared_string_no_cell_uses_is_refused_all_the_same(xlsx):
    data = xlsx.with_shared_strings(
        ["court", "x" * 60], '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
    )
    assert refused(data, limits=SMALL) == "files.xlsx.cell_too_long"


def test_too_many_sheets_are_refused(xlsx):
    def fill(wb):
        for i in range(50):
            wb.create_sheet(f"Feuille {i}")

    with pytest.raises(InvalidInput) as caught:
        check(xlsx.build(fill), "f.xlsx")
    assert caught.value.code == "files.xlsx.too_many_sheets"
    assert caught.value.message.startswith("Le classeur contient plus de 50 feuilles")


def test_the_checker_streams_a_large_sheet_in_bounded_memory(xlsx):
    def fill(wb):
        ws = wb.active
        for row in range(20_000):
            ws.append([row, f"Certification {row}", "RNCP37098", "niveau5", 1.5])

    data = xlsx.build(fill)
    outcome, seconds, peak = measured(lambda: check(data, "f.xlsx"))
    assert outcome.sheets == ("Sheet",)
    # the workbook's XML is many times this: nothing of it is kept
    assert peak < 3 * len(data) + 8 * 1024 * 1024


# --- the rest ---------------------------------------------------------------------------------


def test_every_rejection_is_a_422_with_a_stable_code(xlsx):
    error = None
    try:
        check(b"", "f.xlsx")
    except InvalidInput as exc:
        error = exc
    assert error is not None and error.status == 422
    assert InvalidInput(*error.args).code == "files.xlsx.empty"  # survives the bus


@pytest.mark.parametrize(
    "letters, index", [("A", 1), ("Z", 26), ("AA", 27), ("GR", 200), ("XFD", 16_384)]
)
def test_column_letters_and_indexes(letters, index):
    assert column_index(letters) == index
    assert column_letters(index) == letters


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        XlsxLimits(max_rows=0)


def test_the_module_refuses_to_load_when_openpyxl_would_not_use_defusedxml():
    root = Path(__file__).resolve().parents[4]
    env = dict(
        os.environ,
        OPENPYXL_DEFUSEDXML="False",
        PYTHONPATH=os.pathsep.join(str(root / p) for p in ("libs/kit", "services/files")),
    )
    result = subprocess.run(
        [sys.executable, "-c", "import files.xlsx_safety"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "defusedxml" in result.stderr

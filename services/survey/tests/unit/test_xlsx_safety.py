"""Hostile or broken workbooks never reach a parser unchecked: each one is
refused with a French message (the files service checks first; these checks
keep the reader safe on its own)."""

import io
import zipfile

import pytest

from services.survey.tests.support import HEADER, workbook_bytes
from survey import xlsx


def rezip(data: bytes, change) -> bytes:
    """The same package with ``change(name, bytes) -> bytes | None`` applied."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            content = change(name, source.read(name))
            if content is not None:
                target.writestr(name, content)
    return out.getvalue()


def base() -> bytes:
    return workbook_bytes(
        {"Certifications": [HEADER, ["1022001", "MC", "RNCP955", "niveau4", "MC", 1]]}
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "vide"),
        (b"%PDF-1.4\n%%EOF\n", "n'est pas un classeur"),
        (base()[:200], "endommagé"),
    ],
    ids=["empty", "renamed-pdf", "truncated-zip"],
)
def test_what_is_not_a_workbook_is_refused(content, message):
    with pytest.raises(xlsx.Unreadable) as caught:
        xlsx.read_first_sheet(content)
    assert message in caught.value.message


def test_a_macro_enabled_package_is_refused():
    out = io.BytesIO(base())
    with zipfile.ZipFile(out, "a") as z:
        z.writestr("xl/vbaProject.bin", b"\x00" * 10)
    with pytest.raises(xlsx.Unreadable) as caught:
        xlsx.read_book(out.getvalue())
    assert "macros" in caught.value.message


def test_external_links_are_refused():
    out = io.BytesIO(base())
    with zipfile.ZipFile(out, "a") as z:
        z.writestr("xl/externalLinks/externalLink1.xml", b"<externalLink/>")
    with pytest.raises(xlsx.Unreadable) as caught:
        xlsx.read_book(out.getvalue())
    assert "liaisons" in caught.value.message


def test_a_zip_bomb_is_refused_before_decompression():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"<" + b"a" * (5 * 1024 * 1024))
    with pytest.raises(xlsx.Unreadable) as caught:
        xlsx.read_book(out.getvalue())
    assert "anormalement compressé" in caught.value.message


def test_an_xml_entity_bomb_is_refused():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b"<sheets>&lol2;</sheets></workbook>"
    )
    data = rezip(base(), lambda n, b: bomb if n == "xl/workbook.xml" else b)
    with pytest.raises(xlsx.Unreadable) as caught:
        xlsx.read_book(data)
    assert "dangereuse" in caught.value.message


def far_cell(name, content):
    if name == "xl/worksheets/sheet1.xml":
        return content.replace(
            b"</sheetData>",
            b'<row r="1048576"><c r="XFD1048576" t="n"><v>1</v></c></row></sheetData>',
        )
    return content


def test_a_cell_at_xfd1048576_is_refused_without_reading_the_sheet():
    data = rezip(base(), far_cell)
    with pytest.raises(xlsx.OutOfBounds) as caught:
        xlsx.read_first_sheet(data)
    assert caught.value.ref == "Certifications!XFD1048576"
    with pytest.raises(xlsx.OutOfBounds):
        xlsx.read_book(data)


def test_cells_without_positions_are_placed_as_a_reader_would():
    def implicit(name, content):
        if name == "xl/worksheets/sheet1.xml":
            row = b"<row>" + b"<c><v>1</v></c>" * 50 + b"</row>"
            return content.replace(b"</sheetData>", row + b"</sheetData>")
        return content

    with pytest.raises(xlsx.OutOfBounds) as caught:
        xlsx.read_first_sheet(rezip(base(), implicit))
    assert caught.value.ref == "Certifications!AO3"


def test_formulas_are_found_even_with_a_namespace_prefix():
    def prefixed(name, content):
        if name == "xl/worksheets/sheet1.xml":
            return (
                content.replace(b"<worksheet xmlns=", b"<x:worksheet xmlns:x=")
                .replace(b"</worksheet>", b"</x:worksheet>")
                .replace(b"<sheetData>", b"<x:sheetData>")
                .replace(b"</sheetData>", b"</x:sheetData>")
                .replace(b"<row ", b"<x:row ")
                .replace(b"</row>", b"</x:row>")
                .replace(b"<c ", b"<x:c ")
                .replace(b"</c>", b"</x:c>")
                .replace(b"<v>", b"<x:v>")
                .replace(b"</v>", b"</x:v>")
            )
        return content

    data = workbook_bytes({"S": [["a", "=1+1"], [None, 3]]})
    book = xlsx.read_book(rezip(data, prefixed))
    assert book.formulas["S"] == {(1, 2)}


def test_openpyxl_parses_xml_with_defusedxml():
    from openpyxl.xml import DEFUSEDXML

    assert DEFUSEDXML is True

"""Writes the reviewers' export of validated requests as XLSX, with openpyxl.

The carte service's only spreadsheet writer (reading catalogue files is
``carte.tabular``, with python-calamine). Written in write-only mode (constant
memory); every cell goes through ``export.safe_cell`` first, so no
user-entered text can become a formula.
"""

from __future__ import annotations

import io

from carte.domain import export


def validated_requests_workbook(rows: list[dict], title: str = "Demandes validées") -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for name in export.headers():
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for row in rows:
        values = export.safe_row(row)
        # text that looks like a formula must stay text: openpyxl would store
        # a leading "=" as a formula, the apostrophe prefix prevents it
        sheet.append(values)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()

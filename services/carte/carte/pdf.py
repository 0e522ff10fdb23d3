"""The printable PDF of a request (« Consulter » … « l'imprimer si besoin »).

fpdf2 (pure Python) with its built-in Helvetica, which covers Latin-1: the
few characters outside it (œ, typographic quotes and dashes) are replaced.
The layout follows the form: its sections, each label with its answer.
"""

from __future__ import annotations

_REPLACEMENTS = {
    "œ": "oe",
    "Œ": "OE",
    "’": "'",
    "‘": "'",
    "“": '"',
    "”": '"',
    "–": "-",
    "—": "-",
    "…": "...",
    "\u202f": " ",
    "€": "EUR",
}


def latin1(text) -> str:
    text = "" if text is None else str(text)
    for bad, good in _REPLACEMENTS.items():
        text = text.replace(bad, good)
    return text.encode("latin-1", "replace").decode("latin-1")


def request_pdf(view: dict) -> bytes:
    """``view`` is ``use_cases.request_view``: title, subtitle, sections."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(latin1(view["title"]))
    pdf.set_creator("Plateforme carte des formations")
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(width, 8, latin1(view["title"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(width, 6, latin1(view["subtitle"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for section in view["sections"]:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 12)
        pdf.set_fill_color(230, 234, 240)
        pdf.multi_cell(
            width, 7, latin1(section["title"]), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        for item in section["items"]:
            pdf.set_font("Helvetica", "B", 9)
            pdf.multi_cell(width, 5, latin1(item["label"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_font("Helvetica", "", 10)
            value = item["value"] if item["value"] not in (None, "") else "-"
            pdf.multi_cell(width, 5, latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
    pdf.set_y(-20)
    pdf.set_font("Helvetica", "I", 8)
    pdf.cell(width, 5, latin1(view.get("footer", "")), align="C")
    return bytes(pdf.output())

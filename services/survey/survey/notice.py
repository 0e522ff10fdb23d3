"""The explanatory notice of the form, as a small PDF made with fpdf2.

The guide offers « une notice explicative du formulaire » next to the form;
a PDF reads the same everywhere. The text is the form's own note plus the
definitions of every line, so the two never disagree. The core Helvetica
fonts with the WinAnsi (cp1252) encoding carry the French accents, « », ’
and … without embedding a font file.
"""

from __future__ import annotations

import textwrap

from fpdf import FPDF

from survey.domain.form import CHARGE_CATEGORIES, NOTE_TEXT, PRODUIT_CATEGORIES

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 56
LEADING = 14
WRAP = 92
ENCODING = "cp1252"  # what fpdf2 declares as /WinAnsiEncoding for core fonts


def notice_lines(campaign_name: str) -> list[tuple[str, bool]]:
    """(text, bold) lines of the notice, wrapped."""
    paragraphs: list[tuple[str, bool]] = [
        (f"Enquête « {campaign_name} »", True),
        (NOTE_TEXT[0], True),
    ]
    paragraphs += [(p, False) for p in NOTE_TEXT[1:]]
    paragraphs += [("", False), ("Lignes de la feuille Charges", True)]
    paragraphs += [
        (f"- {c.label}" + (" (charge indirecte, à répartir)" if c.indirect else ""), False)
        for c in CHARGE_CATEGORIES
    ]
    paragraphs += [("", False), ("Lignes de la feuille Produits", True)]
    paragraphs += [(f"- {c.label}", False) for c in PRODUIT_CATEGORIES]
    lines: list[tuple[str, bool]] = []
    for text, bold in paragraphs:
        wrapped = textwrap.wrap(text, WRAP) or [""]
        lines += [(line, bold) for line in wrapped]
    return lines


def _printable(text: str) -> str:
    """The text as the core fonts can show it: narrow and plain no-break
    spaces become spaces, anything outside cp1252 (say an emoji in a campaign
    name) becomes « ? » rather than an error."""
    text = text.replace("\u202f", " ").replace("\u00a0", " ")
    return text.encode(ENCODING, "replace").decode(ENCODING)


def render_notice(campaign_name: str) -> bytes:
    """The notice as PDF bytes: Helvetica 10 pt, titles in bold 11 pt, one
    line every LEADING points from the top margin, as many pages as needed."""
    lines = notice_lines(campaign_name)
    per_page = (PAGE_HEIGHT - 2 * MARGIN) // LEADING
    pages = [lines[i : i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    pdf = FPDF(unit="pt", format=(PAGE_WIDTH, PAGE_HEIGHT))
    pdf.pdf_version = "1.4"
    pdf.core_fonts_encoding = ENCODING
    pdf.set_auto_page_break(False)
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    for page_lines in pages:
        pdf.add_page()
        for row, (text, is_bold) in enumerate(page_lines):
            if is_bold:
                pdf.set_font("Helvetica", "B", 11)
            else:
                pdf.set_font("Helvetica", "", 10)
            if text:
                pdf.text(MARGIN, MARGIN + row * LEADING, _printable(text))
    return bytes(pdf.output())

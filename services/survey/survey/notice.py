"""The explanatory notice of the form, as a small PDF written by hand.

The guide offers « une notice explicative du formulaire » next to the form;
a PDF reads the same everywhere. The text is the form's own note plus the
definitions of every line, so the two never disagree. A few dozen lines of
PDF syntax (Helvetica, WinAnsi encoding for French accents) spare a
dependency.
"""

from __future__ import annotations

import textwrap

from survey.domain.form import CHARGE_CATEGORIES, NOTE_TEXT, PRODUIT_CATEGORIES

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 56
LEADING = 14
WRAP = 92


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


def _pdf_text(text: str) -> bytes:
    raw = text.replace("\u202f", " ").replace("\u00a0", " ").encode("cp1252", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def render_notice(campaign_name: str) -> bytes:
    lines = notice_lines(campaign_name)
    per_page = (PAGE_HEIGHT - 2 * MARGIN) // LEADING
    pages = [lines[i : i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled once the page tree number is known
    tree = add(b"")
    regular = add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    bold = add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
    )
    kids = []
    for page_lines in pages:
        stream = [b"BT", f"{MARGIN} {PAGE_HEIGHT - MARGIN} Td".encode(), f"{LEADING} TL".encode()]
        for text, is_bold in page_lines:
            stream.append(b"/F2 11 Tf" if is_bold else b"/F1 10 Tf")
            stream.append(b"(" + _pdf_text(text) + b") Tj T*")
        stream.append(b"ET")
        content = b"\n".join(stream)
        content_id = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        kids.append(
            add(
                (
                    f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
                    f"/Resources << /Font << /F1 {regular} 0 R /F2 {bold} 0 R >> >> "
                    f"/Contents {content_id} 0 R >>"
                ).encode()
            )
        )
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R >>".encode()
    objects[tree - 1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    ).encode()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)

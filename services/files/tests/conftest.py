"""Fixtures of the files service's tests: workbooks built inside the tests
(valid ones with openpyxl, hostile ones with ``zipfile``; no binary fixture)
and a local S3-compatible server (moto) for the S3 backend."""

from __future__ import annotations

import io
import logging
import socket
import struct
import uuid
import warnings
import zipfile

import openpyxl
import pytest

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"


class Workbooks:
    """Builds XLSX bytes: valid workbooks, then the same with one defect."""

    def valid(self, rows=None, title: str = "Certifications") -> bytes:
        rows = rows or [
            ("Code Diplôme", "Intitulé", "Code RNCP", "Niveau 2019"),
            ("46T31203", "BTS Management commercial opérationnel", "RNCP38368", "niveau5"),
            ("50022137", "CAP Ébéniste", "RNCP36089", "niveau3"),
        ]

        def fill(wb):
            ws = wb.active
            ws.title = title
            for row in rows:
                ws.append(row)

        return self.build(fill)

    def build(self, fill) -> bytes:
        """``fill(workbook)`` shapes a new openpyxl workbook; returns its bytes."""
        wb = openpyxl.Workbook()
        fill(wb)
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue()

    def rezip(
        self,
        data: bytes,
        replace: dict[str, bytes] | None = None,
        add: list[tuple[str, bytes]] | None = None,
        drop: tuple[str, ...] = (),
    ) -> bytes:
        """The same zip with entries replaced, dropped or added (in that order;
        ``add`` may repeat a name)."""
        replace = replace or {}
        out = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(data)) as src,
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")  # "Duplicate name" is what some tests want
            for info in src.infolist():
                if info.filename in drop:
                    continue
                dst.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
            for name, content in add or []:
                dst.writestr(zipfile.ZipInfo(name), content, zipfile.ZIP_DEFLATED)
        return out.getvalue()

    def part(self, data: bytes, name: str) -> bytes:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(name)

    def edit(self, data: bytes, name: str, old: str, new: str) -> bytes:
        """Replaces text in one XML part (which must contain it)."""
        text = self.part(data, name).decode()
        assert old in text, f"{old!r} not in {name}"
        return self.rezip(data, replace={name: text.replace(old, new, 1).encode()})

    def with_content_type(self, data: bytes, xml: str) -> bytes:
        return self.edit(data, "[Content_Types].xml", "</Types>", xml + "</Types>")

    def with_workbook_relationship(self, data: bytes, kind: str, target: str, mode="") -> bytes:
        mode = f' TargetMode="{mode}"' if mode else ""
        rel = f'<Relationship Id="rId99" Type="{kind}" Target="{target}"{mode}/>'
        return self.edit(
            data, "xl/_rels/workbook.xml.rels", "</Relationships>", rel + "</Relationships>"
        )

    def sheet_xml(self, body: str, dimension: str | None = None) -> bytes:
        dim = f'<dimension ref="{dimension}"/>' if dimension else ""
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<worksheet xmlns="{MAIN_NS}" xmlns:r="{REL_NS}">{dim}'
            f"<sheetData>{body}</sheetData></worksheet>"
        ).encode()

    def with_sheet(self, body: str, dimension: str | None = None, after: str = "") -> bytes:
        """A valid workbook whose first sheet is this ``sheetData`` body
        (``after`` goes after ``sheetData``: merged cells, hyperlinks…)."""
        xml = (
            self.sheet_xml(body, dimension).decode().replace("</sheetData>", "</sheetData>" + after)
        )
        return self.rezip(self.valid(), replace={"xl/worksheets/sheet1.xml": xml.encode()})

    def with_shared_strings(self, strings: list[str], body: str) -> bytes:
        """A valid workbook with this shared string table (openpyxl writes inline
        strings only) and this ``sheetData`` body."""
        items = "".join(f"<si><t>{text}</t></si>" for text in strings)
        table = f'<sst xmlns="{MAIN_NS}" count="{len(strings)}">{items}</sst>'.encode()
        data = self.with_sheet(body)
        data = self.with_content_type(
            data,
            '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>',
        )
        data = self.with_workbook_relationship(data, f"{REL_NS}/sharedStrings", "sharedStrings.xml")
        return self.rezip(data, add=[("xl/sharedStrings.xml", table)])

    def billion_laughs(self, root: str = "worksheet") -> bytes:
        lols = "".join(
            f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
        )
        return (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
            f'{lols}]><{root} xmlns="{MAIN_NS}"><sheetData><row r="1"><c r="A1" t="inlineStr">'
            f"<is><t>&lol9;</t></is></c></row></sheetData></{root}>"
        ).encode()

    def zip_of(self, entries: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression) as archive, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, content in entries:
                archive.writestr(zipfile.ZipInfo(name), content, compression)
        return out.getvalue()

    def declare_size(self, data: bytes, name: str, size: int) -> bytes:
        """The zip with the uncompressed size its central directory declares for
        ``name`` replaced (nothing is compressed for real)."""
        raw = bytearray(data)
        pos = raw.find(b"PK\x01\x02")
        while pos >= 0:
            name_len = struct.unpack_from("<H", raw, pos + 28)[0]
            if raw[pos + 46 : pos + 46 + name_len].decode() == name:
                struct.pack_into("<L", raw, pos + 24, size)
                return bytes(raw)
            pos = raw.find(b"PK\x01\x02", pos + 46)
        raise AssertionError(f"{name} not in the central directory")


@pytest.fixture(scope="session")
def xlsx() -> Workbooks:
    return Workbooks()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3-compatible server (moto) for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_config(s3_endpoint):
    """Settings of the S3 backend pointing at a fresh bucket."""
    from files.storage import s3_client

    config = {
        "FILES_STORAGE": "s3",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET": f"files-{uuid.uuid4().hex[:12]}",
        "S3_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
    }
    s3_client(config).create_bucket(
        Bucket=config["S3_BUCKET"],
        CreateBucketConfiguration={"LocationConstraint": config["S3_REGION"]},
    )
    return config


@pytest.fixture(scope="session")
def clamd():
    """A real clamd on a unix socket in a temp dir, with a signature database
    the test writes (EICAR: ``files.clamd_sandbox``), stopped by its pid at
    the end. Skipped, saying why, only where clamd is not installed."""
    from files import clamd_sandbox

    if not clamd_sandbox.available():
        pytest.skip("clamd is not installed (apt-get install clamav-daemon): scan tests skipped")
    with clamd_sandbox.running() as running:
        yield running

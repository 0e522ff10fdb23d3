"""``store_xlsx`` and ``check_xlsx`` on an in-memory database and a temporary
folder: a refused workbook leaves nothing behind; who may store or read is
decided before any byte is parsed."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select

from files import policy, use_cases, xlsx_safety
from files.domain.meta import check_meta
from files.models import Blob, Outbox, StoredFile
from files.storage import LocalDiskStorage
from files.xlsx_safety import XLSX_CONTENT_TYPE, XlsxLimits
from kit import outbox
from kit.context import Caller
from kit.errors import InvalidInput, NotFound, Unauthenticated

ANONYMOUS = Caller()
MANAGER_A = Caller(user_id="u-manager-a", org_id="org-a", roles=("manager",))
USER_B = Caller(user_id="u-user-b", org_id="org-b", roles=("user",))
SYSTEM = Caller(roles=("system",))
LIMITS = XlsxLimits()
MS_REL = "http://schemas.microsoft.com/office/2006/relationships"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Recorder:
    """An ``offload`` that runs the work here and remembers it ran."""

    def __init__(self):
        self.calls = []

    def __call__(self, fn, *args):
        self.calls.append(fn)
        return fn(*args)


def never(fn, *args):
    raise AssertionError("the upload should have been refused before any parsing")


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def nothing_kept(session, storage) -> bool:
    return (
        count(session, StoredFile) == 0
        and count(session, Blob) == 0
        and count(session, Outbox) == 0
        and outbox.take_committed(session) == []  # and nothing announced
        and not (storage.root.exists() and any(p.is_file() for p in storage.root.rglob("*")))
    )


def store(session, storage, data, caller=MANAGER_A, limits=LIMITS, offload=None, **meta):
    meta = {"kind": "survey_form", "name": "Compte cfa.xlsx", **meta}
    return use_cases.store_xlsx(
        session, storage, caller, meta, b64(data), limits=limits, offload=offload or Recorder()
    )


def macro_workbook(xlsx) -> bytes:
    data = xlsx.with_workbook_relationship(xlsx.valid(), f"{MS_REL}/vbaProject", "vbaProject.bin")
    return xlsx.rezip(data, add=[("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 macro")])


def test_a_valid_workbook_is_checked_in_the_offload_then_stored(session, storage, xlsx):
    offload = Recorder()
    content = xlsx.valid()  # once: a workbook built a second later has another timestamp
    stored = store(session, storage, content, offload=offload, content_type="text/html; x")
    assert offload.calls == [policy.check_content]
    assert stored["sheets"] == ["Certifications"]
    assert stored["content_type"] == XLSX_CONTENT_TYPE
    assert stored["kind"] == "survey_form" and stored["owner_org_id"] == "org-a"
    got = use_cases.get_file(session, storage, MANAGER_A, stored["id"])
    assert base64.b64decode(got["content_b64"]) == content
    ((_type, payload),) = outbox.take_committed(session)
    assert payload["file_id"] == stored["id"]


@pytest.mark.parametrize("kind", ["certification_list", "attachment", "annex", "catalogue"])
def test_every_spreadsheet_kind_can_be_stored(session, storage, xlsx, kind):
    assert store(session, storage, xlsx.valid(), kind=kind)["kind"] == kind


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda x: b"", "files.empty"),
        (lambda x: b"%PDF-1.7 pas un classeur", "files.pdf.corrupt"),
        (lambda x: b"Code;Intitule\n46T31203;BTS\n", "files.type_not_allowed"),
        (lambda x: x.valid()[:500], "files.xlsx.corrupt"),
        (macro_workbook, "files.xlsx.macro"),
        (
            lambda x: x.rezip(x.valid(), replace={"xl/worksheets/sheet1.xml": x.billion_laughs()}),
            "files.xlsx.xml_entities",
        ),
        (
            lambda x: x.declare_size(
                x.rezip(x.valid(), add=[("xl/media/a.png", b"0" * 100)]),
                "xl/media/a.png",
                300 * 1024 * 1024,
            ),
            "files.xlsx.zip_bomb",
        ),
        (
            lambda x: x.rezip(x.valid(), add=[("xl/externalLinks/externalLink1.xml", b"<e/>")]),
            "files.xlsx.external_link",
        ),
        (
            lambda x: x.rezip(x.valid(), add=[("xl/embeddings/oleObject1.bin", b"ole")]),
            "files.xlsx.embedded_object",
        ),
        (
            lambda x: x.with_sheet('<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'),
            "files.xlsx.too_many_rows",
        ),
        (
            lambda x: x.rezip(x.valid(), add=[("xl/workbook.xml", b"<workbook/>")]),
            "files.xlsx.duplicate_entry",
        ),
        (
            lambda x: x.rezip(x.valid(), add=[("../../etc/cron.d/x", b"* * * * * root id")]),
            "files.xlsx.unsafe_entry_name",
        ),
    ],
)
def test_a_refused_workbook_leaves_no_record_no_blob_and_no_event(
    session, storage, xlsx, make, code
):
    with pytest.raises(InvalidInput) as caught:
        store(session, storage, make(xlsx))
    assert caught.value.code == code
    session.rollback()  # what the worker teardown does
    assert nothing_kept(session, storage)


def test_the_type_comes_from_the_bytes_and_the_name_follows_it(session, storage, xlsx):
    stored = store(session, storage, xlsx.valid(), name="Compte cfa.xlsm")
    assert stored["name"] == "Compte cfa.xlsx"
    assert stored["content_type"] == XLSX_CONTENT_TYPE


@pytest.mark.parametrize("size", [2000, 200_000])
def test_too_large_uploads_carry_the_one_too_large_code(session, storage, xlsx, size):
    # 200 kB is refused on its base64 length, before decoding
    with pytest.raises(InvalidInput) as caught:
        store(session, storage, b"PK\x03\x04" + bytes(size), limits=XlsxLimits(max_bytes=1000))
    assert caught.value.code == "files.too_large"
    assert "1000 octets" in caught.value.message


def test_who_may_store_is_decided_before_any_parsing(session, storage, xlsx):
    with pytest.raises(Unauthenticated):
        store(session, storage, macro_workbook(xlsx), caller=ANONYMOUS, offload=never)
    with pytest.raises(InvalidInput) as caught:
        store(session, storage, macro_workbook(xlsx), kind="passport", offload=never)
    assert caught.value.code == "files.invalid_kind"


def test_the_same_workbook_stored_twice_is_kept_once(session, storage, xlsx):
    workbook = xlsx.valid()  # built once: openpyxl stamps the second it was written
    first = store(session, storage, workbook)
    second = store(session, storage, workbook, caller=USER_B)
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert count(session, Blob) == 1


def plain_store(session, storage, data, caller=MANAGER_A, name="liste.xlsx"):
    """A file stored without any check (as before the upload policy existed)."""
    meta = check_meta({"kind": "certification_list", "name": name})
    record = use_cases._save(session, storage, caller, meta, "org-a", data, use_cases.utcnow)
    return use_cases.info(record)


def check(session, storage, file_id, caller=MANAGER_A, limits=LIMITS, offload=None):
    return use_cases.check_xlsx(
        session, storage, caller, file_id, limits=limits, offload=offload or Recorder()
    )


def test_a_stored_workbook_can_be_checked_by_its_readers(session, storage, xlsx):
    data = xlsx.valid()
    stored = plain_store(session, storage, data)
    offload = Recorder()
    assert check(session, storage, stored["id"], offload=offload) == {
        "file_id": stored["id"],
        "ok": True,
        "sheets": ["Certifications"],
        "size": len(data),
    }
    assert offload.calls == [xlsx_safety.check]
    assert check(session, storage, stored["id"], caller=SYSTEM)["ok"] is True


def test_checking_a_file_the_caller_may_not_read_is_not_found(session, storage, xlsx):
    stored = plain_store(session, storage, xlsx.valid())
    for file_id in (stored["id"], "0" * 32):
        with pytest.raises(NotFound) as caught:
            check(session, storage, file_id, caller=USER_B, offload=never)
        assert caught.value.code == "files.not_found"


def test_a_stored_file_that_fails_the_checks_is_reported(session, storage, xlsx):
    stored = plain_store(session, storage, macro_workbook(xlsx))
    with pytest.raises(InvalidInput) as caught:
        check(session, storage, stored["id"])
    assert caught.value.code == "files.xlsx.macro"
    named_pdf = plain_store(session, storage, xlsx.valid(), name="liste.pdf")
    with pytest.raises(InvalidInput) as caught:
        check(session, storage, named_pdf["id"])
    assert caught.value.code == "files.xlsx.not_xlsx"


def test_a_stored_file_over_the_xlsx_cap_is_refused_without_reading_it(
    session, storage, xlsx, monkeypatch
):
    stored = plain_store(session, storage, xlsx.valid())
    monkeypatch.setattr(LocalDiskStorage, "get", lambda self, sha256: pytest.fail("read"))
    with pytest.raises(InvalidInput) as caught:
        check(session, storage, stored["id"], limits=XlsxLimits(max_bytes=100), offload=never)
    assert caught.value.code == "files.xlsx.too_large"


def test_checking_a_file_whose_bytes_are_gone_is_not_found(session, storage, xlsx):
    stored = plain_store(session, storage, xlsx.valid())
    storage.delete(stored["sha256"])
    with pytest.raises(NotFound):
        check(session, storage, stored["id"], offload=never)

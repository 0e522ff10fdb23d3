"""The upload policy (files.policy) on every slot, with a real clamd.

Each case of the hostile corpus (files.corpus) is sent to every slot (a
files ``kind``) the way its callers send it (``store_xlsx`` for the
spreadsheet slots, ``store_file`` for the others) and must get the same code
everywhere, leaving no record, no blob, no bytes and no event.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from files import corpus, use_cases
from files.domain import meta, policy
from files.models import Blob, Outbox, StoredFile
from files.scanner import ClamdScanner, build_scanner
from kit import outbox
from kit.context import Caller
from kit.errors import InvalidInput, ServiceError, Unavailable

SYSTEM = Caller(roles=("system",))
MANAGER_A = Caller(user_id="u-a", org_id="org-a", roles=("manager",))
# slot -> the RPC its callers use (gateway, survey, carte)
SLOTS = {
    "habilitation": "store_file",
    "registration_other": "store_file",
    "attachment": "store_file",
    "annex": "store_file",
    "survey_form": "store_xlsx",
    "certification_list": "store_xlsx",
    "catalogue": "store_xlsx",
}
HOSTILE = corpus.hostile()


def test_every_files_kind_has_an_upload_policy_and_a_caller_here():
    assert set(meta.KINDS) == set(policy.SLOTS), "a files kind without a policy entry"
    assert set(meta.KINDS) == set(SLOTS), "a files kind this test does not try"
    for accepted in policy.SLOTS.values():
        assert accepted and accepted <= set(policy.TYPES)


@pytest.fixture(scope="module")
def scanner(clamd):
    return ClamdScanner(clamd.address)


def store(session, storage, scanner, kind, data, name=None, caller=SYSTEM):
    method = getattr(use_cases, SLOTS[kind])
    extension = "xlsx" if SLOTS[kind] == "store_xlsx" else "pdf"
    meta_ = {"kind": kind, "name": name or f"document.{extension}", "content_type": "text/html"}
    kwargs = {"scanner": scanner}
    if method is use_cases.store_file:
        kwargs["max_bytes"] = corpus.MAX_BYTES
    else:
        kwargs["limits"] = use_cases.xlsx_safety.DEFAULT_LIMITS
    return method(session, storage, caller, meta_, base64.b64encode(data).decode(), **kwargs)


def counts(session, storage) -> tuple:
    blobs_on_disk = (
        sum(1 for p in storage.root.rglob("*") if p.is_file()) if storage.root.exists() else 0
    )
    return (
        session.scalar(select(func.count()).select_from(StoredFile)),
        session.scalar(select(func.count()).select_from(Blob)),
        session.scalar(select(func.count()).select_from(Outbox)),
        blobs_on_disk,
    )


@pytest.mark.parametrize("kind", list(SLOTS))
@pytest.mark.parametrize("case", list(corpus.EXPECTED))
def test_a_hostile_upload_gets_the_same_code_in_every_slot_and_leaves_nothing(
    session, storage, scanner, kind, case
):
    accepted_type = corpus.ACCEPTED_BY.get(case)
    if accepted_type in policy.SLOTS[kind] and SLOTS[kind] == "store_file":
        pytest.skip(f"{kind} takes a clean {accepted_type}: not hostile there")
    with pytest.raises(InvalidInput) as caught:
        store(session, storage, scanner, kind, HOSTILE[case])
    assert caught.value.code == corpus.EXPECTED[case]
    assert caught.value.status == 422
    assert caught.value.message  # French, for the user
    session.rollback()  # what the worker teardown does
    assert counts(session, storage) == (0, 0, 0, 0)
    assert outbox.take_committed(session) == []


@pytest.mark.parametrize("kind", list(SLOTS))
def test_a_valid_file_is_stored_with_the_type_decided_from_its_bytes(
    session, storage, scanner, kind
):
    if SLOTS[kind] == "store_xlsx":
        data = corpus.xlsx()
        expected = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        data, expected = corpus.pdf(payload=kind.encode()), "application/pdf"
    stored = store(session, storage, scanner, kind, data, name="envoi.html")
    assert stored["content_type"] == expected
    assert not stored["name"].endswith(".html")
    assert counts(session, storage)[:2] == (1, 1)


def test_a_catalogue_takes_csv_text_and_serves_it_as_csv(session, storage, scanner):
    stored = use_cases.store_file(
        session,
        storage,
        SYSTEM,
        {"kind": "catalogue", "name": "catalogue.csv", "content_type": "text/html"},
        base64.b64encode("niveau;diplome\n5;BTS Négociation\n".encode("cp1252")).decode(),
        max_bytes=corpus.MAX_BYTES,
        scanner=scanner,
    )
    assert stored["content_type"] == "text/csv"


@pytest.mark.parametrize("kind", ["annex", "attachment", "habilitation"])
def test_html_and_svg_never_come_back_as_markup(session, storage, scanner, kind):
    for case in ("html", "svg"):
        with pytest.raises(InvalidInput) as caught:
            store(session, storage, scanner, kind, HOSTILE[case], name="plan.html")
        assert caught.value.code == "files.type_not_allowed"


def test_a_detection_is_counted(session, storage, scanner):
    before = REGISTRY.get_sample_value("files_malware_detected_total", {"kind": "annex"}) or 0
    with pytest.raises(InvalidInput):
        store(session, storage, scanner, "annex", corpus.EICAR)
    after = REGISTRY.get_sample_value("files_malware_detected_total", {"kind": "annex"})
    assert after == before + 1


def test_a_configured_scanner_that_does_not_answer_refuses_with_503(session, storage, tmp_path):
    dead = ClamdScanner(f"unix://{tmp_path / 'nothing.sock'}", timeout=1)
    with pytest.raises(Unavailable) as caught:
        store(session, storage, dead, "annex", corpus.pdf())
    assert caught.value.status == 503
    assert caught.value.code == "files.scanner_unavailable"
    assert caught.value.details["retry_after"] > 0
    session.rollback()
    assert counts(session, storage) == (0, 0, 0, 0)


def test_no_scanner_configured_says_so_at_start(caplog, monkeypatch):
    monkeypatch.delenv("FILES_CLAMD", raising=False)
    with caplog.at_level(logging.WARNING, logger="files.scanner"):
        scanner = build_scanner({})
    assert scanner.enabled is False
    assert "NOT scanned" in caplog.text


def test_a_docx_with_a_macro_or_an_external_template_is_refused(session, storage, scanner):
    docx = corpus.docx()
    assert store(session, storage, scanner, "annex", docx, name="a.docx")["name"] == "a.docx"
    for hostile, code in (
        (corpus.docx(macro=True), "files.xlsx.macro"),
        (corpus.docx(external=True), "files.xlsx.external_link"),
    ):
        with pytest.raises(InvalidInput) as caught:
            store(session, storage, scanner, "annex", hostile, name="a.docx")
        assert caught.value.code == code


# --- nothing left behind ---------------------------------------------------------


def test_a_discarded_file_leaves_no_row_no_blob_and_no_bytes(session, storage, scanner):
    stored = store(session, storage, scanner, "annex", corpus.pdf(), caller=MANAGER_A)
    assert use_cases.discard_file(session, storage, MANAGER_A, stored["id"])["discarded"]
    assert counts(session, storage) == (0, 0, 0, 0)
    # idempotent
    assert use_cases.discard_file(session, storage, MANAGER_A, stored["id"])["discarded"]


def test_only_staff_or_the_uploader_may_discard(session, storage, scanner):
    stored = store(session, storage, scanner, "annex", corpus.pdf(), caller=MANAGER_A)
    other = Caller(user_id="u-other", org_id="org-a", roles=("manager",))
    with pytest.raises(ServiceError) as caught:
        use_cases.discard_file(session, storage, other, stored["id"])
    assert caught.value.code == "files.not_found"
    assert counts(session, storage)[:2] == (1, 1)


def test_the_sweep_removes_what_no_record_references_after_the_grace_period(
    session, storage, scanner
):
    now = dt.datetime(2030, 1, 10, tzinfo=dt.UTC)
    live = store(session, storage, scanner, "annex", corpus.pdf(payload=b"live"))
    gone = store(session, storage, scanner, "annex", corpus.pdf(payload=b"gone"))
    recent = store(session, storage, scanner, "annex", corpus.pdf(payload=b"recent"))
    use_cases.delete_file(session, storage, SYSTEM, gone["id"], now=lambda: now)
    use_cases.delete_file(
        session, storage, SYSTEM, recent["id"], now=lambda: now + dt.timedelta(hours=23)
    )
    # a blob row whose record vanished (an interrupted store)
    session.add(Blob(sha256="0" * 64, size=1, created_at=now))
    session.commit()
    grace = dt.timedelta(hours=24)
    removed = use_cases.sweep(
        session, storage, grace=grace, now=lambda: now + dt.timedelta(hours=25)
    )
    assert removed == {"files": 1, "blobs": 2}
    ids = set(session.scalars(select(StoredFile.id)))
    assert ids == {live["id"], recent["id"]}
    assert storage.exists(live["sha256"])
    assert session.get(Blob, gone["sha256"]) is None
    later = use_cases.sweep(session, storage, grace=grace, now=lambda: now + dt.timedelta(days=3))
    assert later == {"files": 1, "blobs": 1}
    assert set(session.scalars(select(StoredFile.id))) == {live["id"]}

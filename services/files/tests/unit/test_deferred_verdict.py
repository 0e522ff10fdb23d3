"""A large document answered before its malware verdict (issue 11: a valid
upload no slower than before the scan), with a real clamd.

The scan runs beside the checks; a document of a slot people open later,
larger than ``wait_bytes``, whose scan has not ended when its checks have is
stored quarantined (``pending``), and its verdict is recorded when it comes.
Nobody reads its bytes before that verdict; an infected one loses its bytes
and answers ``files.malware_detected``. The scanner here is the real clamd
made slower by a fixed sleep, so that "the scan ends after the checks" does
not depend on the machine's load.
"""

from __future__ import annotations

import base64
import datetime as dt
import random

import eventlet
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from files import corpus, use_cases, xlsx_safety
from files.models import StoredFile
from files.scanner import ClamdScanner, ScannerUnavailable
from kit.context import Caller
from kit.errors import InvalidInput, Unavailable

SYSTEM = Caller(roles=("system",))
MANAGER_A = Caller(user_id="u-a", org_id="org-a", roles=("manager",))
WAIT_BYTES = 64 * 1024


class Slow:
    """The real clamd, answering ``delay`` seconds later."""

    enabled = True

    def __init__(self, scanner: ClamdScanner, delay: float = 0.3):
        self.scanner, self.delay = scanner, delay
        self.calls = 0

    def scan(self, data: bytes):
        self.calls += 1
        eventlet.sleep(self.delay)
        return self.scanner.scan(data)


class Down:
    enabled = True

    def scan(self, data: bytes):
        raise ScannerUnavailable("clamd stopped")


@pytest.fixture(scope="module")
def clamd_scanner(clamd):
    return ClamdScanner(clamd.address)


class Later:
    """``later`` as the service gives it, kept here to be run on demand."""

    def __init__(self):
        self.jobs: list[tuple[str, object]] = []

    def __call__(self, sha256, job):
        self.jobs.append((sha256, job))

    def settle(self, session, storage):
        for sha256, job in self.jobs:
            use_cases.record_verdict(session, storage, sha256, job.wait())
        self.jobs.clear()


def big_pdf(seed: int, infected: bool = False) -> bytes:
    payload = random.Random(seed).randbytes(300_000)
    return corpus.pdf(payload=payload + (corpus.EICAR if infected else b""))


def store(session, storage, scanner, data, kind="annex", later=None, name="plan.pdf"):
    return use_cases.store_file(
        session,
        storage,
        MANAGER_A,
        {"kind": kind, "name": name},
        base64.b64encode(data).decode(),
        max_bytes=corpus.MAX_BYTES,
        scanner=scanner,
        spawn=eventlet.spawn,
        later=later,
        wait_bytes=WAIT_BYTES,
    )


def status(session, file_id) -> str:
    session.expire_all()
    return session.get(StoredFile, file_id).scan_status


def test_a_large_document_is_answered_before_its_verdict_then_becomes_clean(
    session, storage, clamd_scanner
):
    later = Later()
    data = big_pdf(1)  # built once: a PDF's trailer /ID differs at each build
    stored = store(session, storage, Slow(clamd_scanner), data, later=later)
    assert stored["scan_status"] == "pending"
    assert len(later.jobs) == 1
    later.settle(session, storage)
    assert status(session, stored["id"]) == "clean"
    served = use_cases.get_file(session, storage, MANAGER_A, stored["id"])
    assert base64.b64decode(served["content_b64"]) == data


def test_a_large_infected_document_loses_its_bytes_when_its_verdict_comes(
    session, storage, clamd_scanner
):
    before = REGISTRY.get_sample_value("files_malware_detected_total", {"kind": "annex"}) or 0
    later = Later()
    stored = store(session, storage, Slow(clamd_scanner), big_pdf(2, infected=True), later=later)
    assert stored["scan_status"] == "pending"
    later.settle(session, storage)
    assert status(session, stored["id"]) == "infected"
    assert not storage.exists(stored["sha256"])
    with pytest.raises(InvalidInput) as caught:
        use_cases.get_file(session, storage, MANAGER_A, stored["id"])
    assert caught.value.code == "files.malware_detected"
    assert "supprimé" in caught.value.message
    assert caught.value.details["signature"].startswith("Platform.Test.EICAR")
    after = REGISTRY.get_sample_value("files_malware_detected_total", {"kind": "annex"})
    assert after == before + 1
    # the description still says what happened to it
    assert use_cases.get_file_info(session, MANAGER_A, stored["id"])["scan_status"] == "infected"


def test_a_pending_document_is_scanned_before_anyone_reads_it(session, storage, clamd_scanner):
    later = Later()  # its verdicts are never recorded: the process stopped
    data = big_pdf(3)
    clean = store(session, storage, Slow(clamd_scanner), data, later=later)
    infected = store(session, storage, Slow(clamd_scanner), big_pdf(4, True), later=later)
    served = use_cases.get_file(session, storage, MANAGER_A, clean["id"], scanner=clamd_scanner)
    assert base64.b64decode(served["content_b64"]) == data
    assert served["scan_status"] == "clean"
    with pytest.raises(InvalidInput) as caught:
        use_cases.get_file(session, storage, MANAGER_A, infected["id"], scanner=clamd_scanner)
    assert caught.value.code == "files.malware_detected"
    assert status(session, infected["id"]) == "infected"
    assert not storage.exists(infected["sha256"])


def test_a_pending_document_is_kept_from_its_reader_while_clamd_is_down(
    session, storage, clamd_scanner
):
    stored = store(session, storage, Slow(clamd_scanner), big_pdf(5), later=Later())
    with pytest.raises(Unavailable) as caught:
        use_cases.get_file(session, storage, MANAGER_A, stored["id"], scanner=Down())
    assert caught.value.code == "files.scanner_unavailable"
    assert status(session, stored["id"]) == "pending"


def test_a_small_infected_file_is_still_refused_at_once_and_nothing_is_kept(
    session, storage, clamd_scanner
):
    later = Later()
    small = corpus.pdf(payload=corpus.EICAR)
    assert len(small) <= WAIT_BYTES
    with pytest.raises(InvalidInput) as caught:
        store(session, storage, Slow(clamd_scanner), small, later=later)
    assert caught.value.code == "files.malware_detected"
    session.rollback()
    assert session.scalars(select(StoredFile)).all() == []
    assert later.jobs == []


@pytest.mark.parametrize("kind", ["survey_form", "certification_list", "catalogue"])
def test_a_workbook_another_service_parses_always_waits_for_its_verdict(
    session, storage, clamd_scanner, kind
):
    later = Later()
    workbook = corpus.xlsx_of_size(200_000, seed=7)
    assert len(workbook) > WAIT_BYTES
    stored = use_cases.store_xlsx(
        session,
        storage,
        SYSTEM,
        {"kind": kind, "name": "formulaire.xlsx"},
        base64.b64encode(workbook).decode(),
        limits=xlsx_safety.DEFAULT_LIMITS,
        scanner=Slow(clamd_scanner),
        spawn=eventlet.spawn,
    )
    assert stored["scan_status"] == "clean"
    # and store_file with a later never defers these kinds either
    stored = store(
        session,
        storage,
        Slow(clamd_scanner),
        workbook,
        kind=kind,
        later=later,
        name="formulaire.xlsx",
    )
    assert stored["scan_status"] == "clean"
    assert later.jobs == []


def test_the_timer_gives_their_verdict_to_documents_left_pending(session, storage, clamd_scanner):
    clean = store(session, storage, Slow(clamd_scanner), big_pdf(8), later=Later())
    infected = store(session, storage, Slow(clamd_scanner), big_pdf(9, True), later=Later())
    # not yet: a verdict may still be on its way
    assert use_cases.rescan_pending(session, storage, clamd_scanner)["scanned"] == 0
    an_hour_later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    counts = use_cases.rescan_pending(session, storage, Down(), now=lambda: an_hour_later)
    assert counts == {"scanned": 0, "infected": 0, "unavailable": 1}
    counts = use_cases.rescan_pending(session, storage, clamd_scanner, now=lambda: an_hour_later)
    assert counts == {"scanned": 2, "infected": 1, "unavailable": 0}
    assert status(session, clean["id"]) == "clean"
    assert status(session, infected["id"]) == "infected"
    assert (
        use_cases.rescan_pending(session, storage, clamd_scanner, now=lambda: an_hour_later)[
            "scanned"
        ]
        == 0
    )


def test_an_infected_verdict_reaches_every_record_of_the_same_bytes(
    session, storage, clamd_scanner
):
    data = big_pdf(10, infected=True)
    later = Later()
    first = store(session, storage, Slow(clamd_scanner), data, later=later)
    second = store(session, storage, Slow(clamd_scanner), data, kind="attachment", later=later)
    later.settle(session, storage)
    assert status(session, first["id"]) == status(session, second["id"]) == "infected"
    # a second verdict changes nothing more
    assert (
        use_cases.record_verdict(session, storage, first["sha256"], clamd_scanner.scan(data)) == 0
    )


def test_without_a_scanner_files_are_marked_not_scanned(session, storage):
    stored = store(session, storage, None, big_pdf(11), later=Later())
    assert stored["scan_status"] == "not_scanned"

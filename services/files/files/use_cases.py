"""One function per command or query of the files service.

Collaborators come in as parameters: the SQLAlchemy session (one transaction
per call, rolled back unless committed here), the blob storage, the caller,
the clock, and ``offload`` (how CPU-heavy work runs: directly in tests,
``eventlet.tpool.execute`` in the service). Bytes go to the storage, metadata
to the database, and only ids and metadata into events.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from files import policy, problems, xlsx_safety
from files import repository as repo
from files.domain import access
from files.domain import policy as slot_policy
from files.domain.meta import (
    ANNEX,
    ATTACHMENT,
    HABILITATION,
    OWNER_MAX,
    REGISTRATION_OTHER,
    FileMeta,
    Rejected,
    check_meta,
    decode_content,
)
from files.models import Outbox, StoredFile
from files.scanner import NoScanner, Scanner, ScannerUnavailable, ScanResult
from files.storage import BlobMissing, BlobStorage
from kit.db import new_id, utcnow
from kit.errors import ServiceError
from kit.limits import format_size
from kit.outbox import emit

log = logging.getLogger(__name__)

# files.file_stored: {file_id, sha256, kind, owner_org_id, size, content_type,
#   created_by} (+ event_id, occurred_at)
FILE_STORED = "file_stored"

MAX_ATTACH = 100

# scan_status values (StoredFile.scan_status)
CLEAN, PENDING, INFECTED, NOT_SCANNED = "clean", "pending", "infected", "not_scanned"
# the slots whose files people open later, long after the answer: a large
# one may be answered before its verdict (quarantined until it comes); a
# workbook another service parses at once always waits
DEFERRABLE = frozenset({HABILITATION, REGISTRATION_OTHER, ATTACHMENT, ANNEX})
# files up to this size wait for their verdict whatever the slot: their scan
# costs a few milliseconds, hidden behind the checks (FILES_SCAN_WAIT_BYTES)
DEFAULT_SCAN_WAIT_BYTES = 256 * 1024
# a pending verdict older than this is taken again by the service's timer
# (the process that was to record it stopped, or clamd was unreachable)
PENDING_RETRY = dt.timedelta(seconds=60)

Clock = Callable[[], dt.datetime]
Offload = Callable[..., Any]
Later = Callable[[str, Any], None]


def run_here(fn: Callable[..., Any], *args: Any) -> Any:
    """The default ``offload``: run in the calling thread."""
    return fn(*args)


def _not_found() -> ServiceError:
    return problems.error("files.not_found")


def _refused(exc: access.Denied) -> ServiceError:
    """Unauthenticated or Forbidden, as the catalogue entry of its code says."""
    return problems.error(exc.code, variant=exc.variant)


def info(record: StoredFile) -> dict:
    """The public description of a file record."""
    return {
        "id": record.id,
        "kind": record.kind,
        "name": record.name,
        "content_type": record.content_type,
        "size": record.size,
        "sha256": record.sha256,
        "owner_org_id": record.owner_org_id,
        "created_at": record.created_at.astimezone(dt.UTC).isoformat(),
        "scan_status": record.scan_status,
    }


def store_file(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    meta: dict,
    content_b64: str,
    *,
    max_bytes: int,
    limits: xlsx_safety.XlsxLimits = xlsx_safety.DEFAULT_LIMITS,
    scanner: Scanner | None = None,
    offload: Offload = run_here,
    spawn: Callable[..., Any] = policy.run_now,
    only: frozenset[str] | None = None,
    later: Later | None = None,
    wait_bytes: int = DEFAULT_SCAN_WAIT_BYTES,
    now: Clock = utcnow,
) -> dict:
    """Checks an upload against its slot's policy (``files.policy``), then
    stores the bytes once per content and one new record per call.

    Who may store is checked first (a refused caller costs no parsing); the
    content checks and the malware scan run before anything is written, so a
    refused file leaves no record, no blob and no event. The stored type is
    the one decided from the bytes, whatever the caller said; the name gets
    the matching extension.

    ``later(sha256, job)``: given (the service gives it for the document
    slots, ``DEFERRABLE``), a document over ``wait_bytes`` whose scan is
    still running when its checks passed is stored quarantined
    (``scan_status: pending``) and ``later`` records the verdict when the scan
    ends (``record_verdict``). Without it, every upload waits for its
    verdict."""
    if isinstance(meta, dict):
        meta = {key: value for key, value in meta.items() if key != "content_type"}
    try:
        checked = check_meta(meta)
        owner = access.owner_for_store(caller, checked.kind, checked.owner_org_id)
        data = decode_content(content_b64, max_bytes)
    except Rejected as exc:
        raise _invalid(exc) from None
    except access.Denied as exc:
        raise _refused(exc) from None
    decision = policy.inspect(
        data,
        checked.kind,
        limits=limits,
        scanner=scanner or NoScanner(),
        offload=offload,
        spawn=spawn,
        only=only,
        may_defer=later is not None and checked.kind in DEFERRABLE,
        wait_bytes=wait_bytes,
    )
    file_type = slot_policy.TYPES[decision.type]
    checked = replace(
        checked,
        content_type=decision.content_type,
        name=slot_policy.stored_name(checked.name, file_type),
    )
    if decision.pending is not None:
        status = PENDING
    else:
        status = CLEAN if (scanner is not None and scanner.enabled) else NOT_SCANNED
    record = _save(session, storage, caller, checked, owner, data, now, status)
    if decision.pending is not None:
        assert later is not None
        later(record.sha256, decision.pending)
    result = info(record)
    if decision.type == "xlsx":
        result["sheets"] = list(decision.sheets)
    return result


XLSX_ONLY = frozenset({"xlsx"})


def store_xlsx(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    meta: dict,
    content_b64: str,
    *,
    limits: xlsx_safety.XlsxLimits,
    max_bytes: int | None = None,
    scanner: Scanner | None = None,
    offload: Offload = run_here,
    spawn: Callable[..., Any] = policy.run_now,
    now: Clock = utcnow,
) -> dict:
    """``store_file`` for a spreadsheet another service will parse: the same
    policy, narrowed to workbooks (a PDF is ``files.type_not_allowed`` even in
    a slot that takes PDFs); the answer has ``sheets``."""
    return store_file(
        session,
        storage,
        caller,
        meta,
        content_b64,
        max_bytes=max_bytes or limits.max_bytes,  # FILES_XLSX_MAX_BYTES, not FILES_MAX_BYTES
        limits=limits,
        scanner=scanner,
        offload=offload,
        spawn=spawn,
        only=XLSX_ONLY,
        now=now,
    )


def check_xlsx(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    file_id: str,
    *,
    limits: xlsx_safety.XlsxLimits,
    offload: Offload = run_here,
) -> dict:
    """Runs the XLSX checks on a stored file the caller may read."""
    record = _readable(session, caller, file_id)
    _refuse_infected(record)
    file_id, name, size, sha256 = record.id, record.name, record.size, record.sha256
    # end the read transaction: the check may take a while and needs no database
    session.commit()
    if size > limits.max_bytes:
        raise problems.error(
            "files.xlsx.too_large", size=format_size(limits.max_bytes), limit=limits.max_bytes
        )
    try:
        data = storage.get(sha256)
    except BlobMissing:
        log.error("file %s: bytes %s missing from storage", file_id, sha256)
        raise _not_found() from None
    verdict = offload(xlsx_safety.check, data, name, limits)
    return {"file_id": file_id, "ok": True, "sheets": list(verdict.sheets), "size": size}


def _invalid(exc: Rejected) -> ServiceError:
    if exc.field:
        return problems.error(exc.code, fields={exc.field: [exc.message]}, **exc.params)
    return problems.error(exc.code, **exc.params)


def _save(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    checked: FileMeta,
    owner: str | None,
    data: bytes,
    now: Clock,
    scan_status: str = "clean",
) -> StoredFile:
    """Writes the bytes (once per content), the record and its event; commits."""
    sha256 = hashlib.sha256(data).hexdigest()
    at = now()
    # the locked blob row keeps a concurrent delete of the same content from
    # removing the bytes between this put and this commit
    repo.lock_blob(session, sha256, len(data), at)
    storage.put(sha256, data)
    record = StoredFile(
        id=new_id(),
        sha256=sha256,
        owner_org_id=owner,
        kind=checked.kind,
        name=checked.name,
        content_type=checked.content_type,
        size=len(data),
        created_by=caller.user_id,
        created_at=at,
        scan_status=scan_status,
    )
    repo.add_file(session, record)
    emit(
        session,
        Outbox,
        FILE_STORED,
        {
            "file_id": record.id,
            "sha256": sha256,
            "kind": record.kind,
            "owner_org_id": owner,
            "size": record.size,
            "content_type": record.content_type,
            "created_by": caller.user_id,
        },
    )
    session.commit()
    return record


def _readable(session: Session, caller: access.Principal, file_id) -> StoredFile:
    record = repo.get_file(session, file_id)
    if (
        record is None
        or record.deleted_at is not None
        or not access.may_read(caller, record.kind, record.owner_org_id)
    ):
        raise _not_found()
    return record


def get_file_info(session: Session, caller: access.Principal, file_id: str) -> dict:
    return info(_readable(session, caller, file_id))


def get_file(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    file_id: str,
    *,
    scanner: Scanner | None = None,
) -> dict:
    """The bytes of a file, never before their verdict: a file still
    ``pending`` is scanned now (and its verdict recorded for every record of
    the same bytes); an infected one is ``files.malware_detected``."""
    record = _readable(session, caller, file_id)
    _refuse_infected(record)
    try:
        data = storage.get(record.sha256)
    except BlobMissing:
        log.error("file %s: bytes %s missing from storage", record.id, record.sha256)
        raise _not_found() from None
    if record.scan_status == PENDING:
        scanner = scanner or NoScanner()
        if scanner.enabled:
            sha256 = record.sha256
            session.commit()  # no transaction held open across the scan
            try:
                result = scanner.scan(data)
            except ScannerUnavailable as exc:
                log.error("file %s kept from its reader, no malware verdict: %s", file_id, exc)
                raise policy.scanner_unavailable() from None
            record_verdict(session, storage, sha256, result)
            record = _readable(session, caller, file_id)
            _refuse_infected(record)
    return dict(info(record), content_b64=base64.b64encode(data).decode("ascii"))


def _refuse_infected(record: StoredFile) -> None:
    if record.scan_status == INFECTED:
        details = {"signature": record.scan_signature} if record.scan_signature else {}
        raise problems.error("files.malware_detected", variant="stored", **details)


def record_verdict(session: Session, storage: BlobStorage, sha256: str, result: ScanResult) -> int:
    """Records the verdict on bytes answered before it came.

    Clean: the pending records of these bytes become ``clean``. Infected:
    every live record of these bytes becomes ``infected`` (whatever an older
    scan said: it is the same content), and the bytes leave the storage
    under the blob lock; the records stay, so the services that point at
    them get ``files.malware_detected``, not a vanished file. Idempotent.
    Returns the number of records changed."""
    blob = repo.lock_existing_blob(session, sha256)
    records = repo.files_of(session, sha256)
    changed = 0
    if result.infected:
        for record in records:
            if record.scan_status != INFECTED:
                record.scan_status, record.scan_signature = INFECTED, result.signature
                changed += 1
                policy.MALWARE.labels(record.kind).inc()
        if blob is not None:
            storage.delete(sha256)
        if changed:
            log.warning(
                "stored file found infected after its answer: bytes deleted",
                extra={"sha256": sha256, "signature": result.signature, "records": changed},
            )
    else:
        for record in records:
            if record.scan_status == PENDING:
                record.scan_status = CLEAN
                changed += 1
    session.commit()
    return changed


def rescan_pending(
    session: Session,
    storage: BlobStorage,
    scanner: Scanner,
    *,
    older_than: dt.timedelta = PENDING_RETRY,
    now: Clock = utcnow,
    batch: int = 50,
) -> dict:
    """Gives their verdict to the files still pending after ``older_than``
    (the process that was to record it stopped, clamd was unreachable): the
    bytes are scanned again. Replicas may both take the same bytes: the
    verdict is the same and ``record_verdict`` is idempotent. Returns
    ``{scanned, infected, unavailable}``."""
    counts = {"scanned": 0, "infected": 0, "unavailable": 0}
    if not scanner.enabled:
        return counts
    hashes = repo.pending_hashes(session, now() - older_than, batch)
    session.commit()
    for sha256 in hashes:
        try:
            data = storage.get(sha256)
        except BlobMissing:
            record_verdict(session, storage, sha256, ScanResult(False))
            continue
        try:
            result = scanner.scan(data)
        except ScannerUnavailable as exc:
            log.error("pending verdicts wait for clamd: %s", exc)
            counts["unavailable"] += 1
            break
        record_verdict(session, storage, sha256, result)
        counts["scanned"] += 1
        counts["infected"] += int(result.infected)
    return counts


def delete_file(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    file_id: str,
    *,
    now: Clock = utcnow,
) -> dict:
    """Soft-deletes the record, then drops the bytes if nothing live uses them.

    Idempotent: deleting a deleted file (a redelivered call) answers the same."""
    record = repo.get_file(session, file_id, for_update=True)
    if record is None or not access.may_read(caller, record.kind, record.owner_org_id):
        raise _not_found()
    if not access.may_delete(caller, record.kind, record.owner_org_id):
        raise problems.error("files.delete_forbidden")
    if record.deleted_at is None:
        record.deleted_at = now()
    session.commit()
    _collect_bytes(session, storage, record.sha256)
    return {"id": record.id, "deleted_at": record.deleted_at.isoformat()}


def _collect_bytes(session: Session, storage: BlobStorage, sha256: str) -> None:
    # a second transaction, after the delete is committed: under the blob lock
    # a concurrent store either already counts as live or waits and re-puts
    if (
        repo.lock_existing_blob(session, sha256) is not None
        and repo.live_references(session, sha256) == 0
    ):
        storage.delete(sha256)
    session.commit()


def attach_owner(
    session: Session, caller: access.Principal, file_ids: list, owner_org_id: str
) -> dict:
    """Gives files stored anonymously (at registration) their organisation.

    All or nothing; attaching to the owner they already have is a no-op."""
    if not access.may_attach_owner(caller):
        if caller.user_id is None:
            raise problems.error("unauthenticated")
        raise problems.error("files.forbidden")
    errors: dict[str, list[str]] = {}
    if (
        not isinstance(file_ids, list)
        or not file_ids
        or len(file_ids) > MAX_ATTACH
        or not all(isinstance(i, str) and i for i in file_ids)
    ):
        errors["file_ids"] = [f"Une liste de 1 à {MAX_ATTACH} identifiants est attendue."]
    if (
        not isinstance(owner_org_id, str)
        or not owner_org_id.strip()
        or len(owner_org_id) > OWNER_MAX
    ):
        errors["owner_org_id"] = ["L'organisation propriétaire est invalide."]
    if errors:
        raise problems.error("files.invalid_input", fields=errors)
    ids = list(dict.fromkeys(file_ids))
    owner = owner_org_id.strip()
    records = {r.id: r for r in repo.get_files(session, ids) if r.deleted_at is None}
    missing = [i for i in ids if i not in records]
    if missing:
        raise problems.error("files.not_found", file_ids=missing)
    taken = [i for i in ids if records[i].owner_org_id not in (None, owner)]
    if taken:
        raise problems.error("files.owner_conflict", file_ids=taken)
    for record in records.values():
        record.owner_org_id = owner
    session.commit()
    return {"file_ids": ids, "owner_org_id": owner}


def discard_file(
    session: Session, storage: BlobStorage, caller: access.Principal, file_id: str
) -> dict:
    """Forgets a file that was stored, then refused by the service it was for
    (a transmission whose form is wrong, a refused registration, a catalogue
    that does not import): its record goes for good, and its bytes and blob
    row when no other record uses them. No soft-deleted row is left behind.

    Who: agency and system callers, or the user who stored it. Idempotent:
    an unknown or already discarded id answers the same."""
    record = repo.get_file(session, file_id, for_update=True)
    if record is not None:
        if not (
            access.is_staff(caller)
            or (caller.user_id is not None and record.created_by == caller.user_id)
        ):
            raise _not_found()
        sha256 = record.sha256
        repo.delete_file_row(session, record)
        session.commit()
        _forget_blob(session, storage, sha256)
    return {"id": file_id, "discarded": True}


def _forget_blob(session: Session, storage: BlobStorage, sha256: str) -> None:
    """Under the blob lock: bytes go when nothing live uses them, the row when
    no record at all points at it."""
    blob = repo.lock_existing_blob(session, sha256)
    if blob is not None:
        if repo.live_references(session, sha256) == 0:
            storage.delete(sha256)
        if repo.any_references(session, sha256) == 0:
            repo.delete_blob_row(session, blob)
    session.commit()


def sweep(
    session: Session,
    storage: BlobStorage,
    *,
    grace: dt.timedelta,
    now: Clock = utcnow,
    batch: int = 500,
) -> dict:
    """Removes what no record references any more, once ``grace`` has passed.

    Why this definition of "unreferenced": files cannot know which of its
    files survey, carte or identity still point at (they keep the ids), and
    must never guess. What it can know: a record its owner soft-deleted
    (``delete_file``: an attachment removed, an expired registration purged)
    is referenced by nobody, and a blob row that no record points at (left by
    an interrupted store or discard) holds nobody's bytes. Live records are
    never touched: the owning services delete what they stop using. The
    grace period leaves time to a soft-deleted record (an undo, an audit
    look) and keeps the sweep away from a store in progress.

    Replicas: on PostgreSQL one sweeps at a time (a transaction advisory
    lock; the others skip this round), and blob rows are taken ``FOR UPDATE
    SKIP LOCKED`` so a store of the same content in progress is left alone.
    Returns ``{files, blobs}``, the counts removed."""
    if not repo.try_sweep_lock(session):
        session.rollback()
        return {"files": 0, "blobs": 0, "skipped": True}
    cutoff = now() - grace
    files = repo.purge_deleted_files(session, cutoff, batch)
    session.flush()
    blobs = 0
    for blob in repo.unreferenced_blobs(session, cutoff, batch):
        storage.delete(blob.sha256)
        repo.delete_blob_row(session, blob)
        blobs += 1
    session.commit()
    return {"files": files, "blobs": blobs}

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

from files import repository as repo
from files import xlsx_safety
from files.domain import access
from files.domain.meta import OWNER_MAX, FileMeta, Rejected, check_meta, decode_content
from files.models import Outbox, StoredFile
from files.storage import BlobMissing, BlobStorage
from kit.db import new_id, utcnow
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from kit.outbox import emit

log = logging.getLogger(__name__)

# files.file_stored: {file_id, sha256, kind, owner_org_id, size, content_type,
#   created_by} (+ event_id, occurred_at)
FILE_STORED = "file_stored"

MAX_ATTACH = 100

Clock = Callable[[], dt.datetime]
Offload = Callable[..., Any]


def run_here(fn: Callable[..., Any], *args: Any) -> Any:
    """The default ``offload``: run in the calling thread."""
    return fn(*args)


def _not_found() -> NotFound:
    return NotFound("files.not_found", "Fichier introuvable.")


def _refused(exc: access.Denied) -> Exception:
    if exc.reason == "unauthenticated":
        return Unauthenticated(exc.code, exc.message)
    return Forbidden(exc.code, exc.message)


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
    }


def store_file(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    meta: dict,
    content_b64: str,
    *,
    max_bytes: int,
    now: Clock = utcnow,
) -> dict:
    """Stores the bytes once per content and one new record per call."""
    try:
        checked = check_meta(meta)
        owner = access.owner_for_store(caller, checked.kind, checked.owner_org_id)
        data = decode_content(content_b64, max_bytes)
    except Rejected as exc:
        raise _invalid(exc) from None
    except access.Denied as exc:
        raise _refused(exc) from None
    return info(_save(session, storage, caller, checked, owner, data, now))


def store_xlsx(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    meta: dict,
    content_b64: str,
    *,
    limits: xlsx_safety.XlsxLimits,
    offload: Offload = run_here,
    now: Clock = utcnow,
) -> dict:
    """Checks an XLSX upload (``xlsx_safety``), then stores it as ``store_file``.

    Who may store is checked first (a refused caller costs no parsing); the
    content checks run before anything is written, so a refused file leaves
    no record, no blob and no event. The content type is set here, whatever
    the caller said."""
    if isinstance(meta, dict):
        meta = {key: value for key, value in meta.items() if key != "content_type"}
    try:
        checked = check_meta(meta)
        owner = access.owner_for_store(caller, checked.kind, checked.owner_org_id)
        data = decode_content(content_b64, limits.max_bytes)
    except Rejected as exc:
        if exc.code == "files.empty":
            raise xlsx_safety.empty() from None
        if exc.code == "files.too_large":
            raise xlsx_safety.too_large(limits) from None
        raise _invalid(exc) from None
    except access.Denied as exc:
        raise _refused(exc) from None
    verdict = offload(xlsx_safety.check, data, checked.name, limits)
    checked = replace(checked, content_type=xlsx_safety.XLSX_CONTENT_TYPE)
    record = _save(session, storage, caller, checked, owner, data, now)
    return dict(info(record), sheets=list(verdict.sheets))


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
    file_id, name, size, sha256 = record.id, record.name, record.size, record.sha256
    # end the read transaction: the check may take a while and needs no database
    session.commit()
    if size > limits.max_bytes:
        raise xlsx_safety.too_large(limits)
    try:
        data = storage.get(sha256)
    except BlobMissing:
        log.error("file %s: bytes %s missing from storage", file_id, sha256)
        raise _not_found() from None
    verdict = offload(xlsx_safety.check, data, name, limits)
    return {"file_id": file_id, "ok": True, "sheets": list(verdict.sheets), "size": size}


def _invalid(exc: Rejected) -> InvalidInput:
    details = {"fields": {exc.field: [exc.message]}} if exc.field else None
    return InvalidInput(exc.code, exc.message, details)


def _save(
    session: Session,
    storage: BlobStorage,
    caller: access.Principal,
    checked: FileMeta,
    owner: str | None,
    data: bytes,
    now: Clock,
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
    session: Session, storage: BlobStorage, caller: access.Principal, file_id: str
) -> dict:
    record = _readable(session, caller, file_id)
    try:
        data = storage.get(record.sha256)
    except BlobMissing:
        log.error("file %s: bytes %s missing from storage", record.id, record.sha256)
        raise _not_found() from None
    return dict(info(record), content_b64=base64.b64encode(data).decode("ascii"))


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
        raise Forbidden(
            "files.delete_forbidden", "Vous n'avez pas les droits pour supprimer ce fichier."
        )
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
            raise Unauthenticated()
        raise Forbidden("files.forbidden", "Réservé à l'agence et aux appels internes.")
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
        raise InvalidInput.fields(errors, "files.invalid_input")
    ids = list(dict.fromkeys(file_ids))
    owner = owner_org_id.strip()
    records = {r.id: r for r in repo.get_files(session, ids) if r.deleted_at is None}
    missing = [i for i in ids if i not in records]
    if missing:
        raise NotFound("files.not_found", "Fichier introuvable.", {"file_ids": missing})
    taken = [i for i in ids if records[i].owner_org_id not in (None, owner)]
    if taken:
        raise Conflict(
            "files.owner_conflict",
            "Certains fichiers appartiennent déjà à une autre organisation.",
            {"file_ids": taken},
        )
    for record in records.values():
        record.owner_org_id = owner
    session.commit()
    return {"file_ids": ids, "owner_org_id": owner}

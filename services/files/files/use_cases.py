"""One function per command or query of the files service.

Collaborators come in as parameters: the SQLAlchemy session (one transaction
per call, rolled back unless committed here), the blob storage, the caller and
the clock. Bytes go to the storage, metadata to the database, and only ids and
metadata into events.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from files import repository as repo
from files.domain import access
from files.domain.meta import OWNER_MAX, Rejected, check_meta, decode_content
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
        details = {"fields": {exc.field: [exc.message]}} if exc.field else None
        raise InvalidInput(exc.code, exc.message, details) from None
    except access.Denied as exc:
        raise _refused(exc) from None

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
    return info(record)


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

"""Every query of the files service.

Row locks (``FOR UPDATE``) on the blob row make storing and deleting the same
content take turns on PostgreSQL; SQLite ignores them and serialises writers
on its own.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, delete, exists, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from files.models import Blob, StoredFile

# built once: a statement whose values are bound parameters keeps its cache
# key, where ``.values(sha256=…)`` made SQLAlchemy rebuild one per call (a
# third of the files service's CPU per transmission, measured with py-spy)
_INSERT_BLOB = {
    name: dialect.insert(Blob)
    .values(sha256=bindparam("sha256"), size=bindparam("size"), created_at=bindparam("at"))
    .on_conflict_do_nothing(index_elements=["sha256"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_LOCK_BLOB = select(Blob).where(Blob.sha256 == bindparam("sha256")).with_for_update()


def lock_blob(session: Session, sha256: str, size: int, now: dt.datetime) -> Blob:
    """The blob row of ``sha256``, created if new, locked until commit."""
    insert = _INSERT_BLOB[session.get_bind().dialect.name]
    for _attempt in range(3):
        session.execute(insert, {"sha256": sha256, "size": size, "at": now})
        blob = session.scalars(_LOCK_BLOB, {"sha256": sha256}).one_or_none()
        if blob is not None:
            return blob
        # the sweep removed this unreferenced blob while we waited for its lock
    raise RuntimeError(f"blob {sha256} could not be locked")


def lock_existing_blob(session: Session, sha256: str) -> Blob | None:
    return session.scalars(
        select(Blob).where(Blob.sha256 == sha256).with_for_update()
    ).one_or_none()


def add_file(session: Session, record: StoredFile) -> None:
    session.add(record)


def get_file(session: Session, file_id: str, for_update: bool = False) -> StoredFile | None:
    if not isinstance(file_id, str) or not file_id or len(file_id) > 32:
        return None
    query = select(StoredFile).where(StoredFile.id == file_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def get_files(session: Session, file_ids: list[str]) -> list[StoredFile]:
    return list(
        session.scalars(select(StoredFile).where(StoredFile.id.in_(file_ids)).with_for_update())
    )


def live_references(session: Session, sha256: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(StoredFile)
        .where(StoredFile.sha256 == sha256, StoredFile.deleted_at.is_(None))
    )


def any_references(session: Session, sha256: str) -> int:
    return session.scalar(
        select(func.count()).select_from(StoredFile).where(StoredFile.sha256 == sha256)
    )


def delete_file_row(session: Session, record: StoredFile) -> None:
    session.delete(record)
    session.flush()


def delete_blob_row(session: Session, blob: Blob) -> None:
    session.delete(blob)
    session.flush()


def try_sweep_lock(session: Session) -> bool:
    """One sweeper at a time on PostgreSQL (released at commit or rollback)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext('files.sweep'))")))


def purge_deleted_files(session: Session, cutoff: dt.datetime, limit: int) -> int:
    ids = list(
        session.scalars(
            select(StoredFile.id)
            .where(StoredFile.deleted_at.is_not(None), StoredFile.deleted_at < cutoff)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(delete(StoredFile).where(StoredFile.id.in_(ids)))
    return len(ids)


def unreferenced_blobs(session: Session, cutoff: dt.datetime, limit: int) -> list[Blob]:
    referenced = exists().where(StoredFile.sha256 == Blob.sha256)
    return list(
        session.scalars(
            select(Blob)
            .where(Blob.created_at < cutoff, ~referenced)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def files_of(session: Session, sha256: str) -> list[StoredFile]:
    """The live records of one content, locked."""
    return list(
        session.scalars(
            select(StoredFile)
            .where(StoredFile.sha256 == sha256, StoredFile.deleted_at.is_(None))
            .with_for_update()
        )
    )


def pending_hashes(session: Session, before: dt.datetime, limit: int) -> list[str]:
    """Contents with a record still waiting for its malware verdict since before ``before``."""
    return list(
        session.scalars(
            select(StoredFile.sha256)
            .where(
                StoredFile.scan_status == "pending",
                StoredFile.deleted_at.is_(None),
                StoredFile.created_at < before,
            )
            .distinct()
            .limit(limit)
        )
    )

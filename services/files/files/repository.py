"""Every query of the files service.

Row locks (``FOR UPDATE``) on the blob row make storing and deleting the same
content take turns on PostgreSQL; SQLite ignores them and serialises writers
on its own.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from files.models import Blob, StoredFile


def lock_blob(session: Session, sha256: str, size: int, now: dt.datetime) -> Blob:
    """The blob row of ``sha256``, created if new, locked until commit."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(Blob)
        .values(sha256=sha256, size=size, created_at=now)
        .on_conflict_do_nothing(index_elements=["sha256"])
    )
    return session.scalars(select(Blob).where(Blob.sha256 == sha256).with_for_update()).one()


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

"""Files tables (SQLAlchemy 2).

A ``Blob`` is one distinct content (its sha256); a ``StoredFile`` is one upload
of it by someone, with its own name, kind and owner. The same bytes uploaded
twice make two records and one blob.

A blob row outlives its bytes: when the last live record is deleted the bytes
leave the storage, but the row stays (soft-deleted records still point at it,
and it is the row both store and delete lock to agree on whether the bytes
must exist).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import OutboxMixin, TZDateTime, make_base, new_id, utcnow

Base = make_base()


class Blob(Base):
    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class StoredFile(Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_sha256_deleted_at", "sha256", "deleted_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    # None while an anonymous registration upload waits for its organisation
    owner_org_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    # the malware verdict (``files.scanning``): clean, pending (a large
    # document answered before its verdict: served to nobody until it comes),
    # infected (its bytes are gone; reads answer files.malware_detected) or
    # not_scanned (no scanner configured when it was stored)
    scan_status: Mapped[str] = mapped_column(
        String(16), default="clean", server_default="clean", index=True
    )
    scan_signature: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"

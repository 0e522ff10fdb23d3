"""Survey tables (SQLAlchemy 2).

``Organisation`` is a small local copy of what identity knows (name, SIRET,
UAI, NDA, type, parent), refreshed whenever an organisation or the agency
uses the surveys, so listings need no call to identity. File bytes live in
the files service: only file ids are kept here.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import OutboxMixin, TZDateTime, make_base, new_id, utcnow

Base = make_base()


class Campaign(Base):
    """An « enquête » created by the agency."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120))
    details: Mapped[str] = mapped_column(Text, default="")
    form_type: Mapped[str] = mapped_column(String(16), default="CFA")
    direction: Mapped[str] = mapped_column(String(100), default="")
    online_on: Mapped[dt.date] = mapped_column(Date)
    transmission_opens_on: Mapped[dt.date] = mapped_column(Date)
    return_due_on: Mapped[dt.date] = mapped_column(Date)
    closes_on: Mapped[dt.date] = mapped_column(Date)
    target: Mapped[str] = mapped_column(String(8), default="all")  # all | OFA | OG
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    siret: Mapped[str | None] = mapped_column(String(14), nullable=True)
    uai: Mapped[str | None] = mapped_column(String(8), nullable=True)
    nda: Mapped[str | None] = mapped_column(String(11), nullable=True)
    account_type: Mapped[str | None] = mapped_column(String(8), nullable=True)
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    refreshed_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Survey(Base):
    """One organisation's survey of one campaign."""

    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("campaign_id", "org_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    org_id: Mapped[str] = mapped_column(String(32), index=True)
    # not_downloaded | downloaded | submitted
    status: Mapped[str] = mapped_column(String(16), default="not_downloaded")
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    establishments_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    trainings_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    certifications_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    certifications_file_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    certifications_imported_at: Mapped[dt.datetime | None] = mapped_column(
        TZDateTime(), nullable=True
    )
    downloaded_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    last_sent_at: Mapped[dt.datetime | None] = mapped_column(
        TZDateTime(), nullable=True, index=True
    )
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Certification(Base):
    """A row of the certification list of « Données à renseigner »."""

    __tablename__ = "certifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    survey_id: Mapped[str] = mapped_column(ForeignKey("surveys.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(255))
    rncp: Mapped[str] = mapped_column(String(12))
    level: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(50))
    establishments: Mapped[int] = mapped_column(Integer)


class Form(Base):
    """A generated version of an organisation's form: the snapshot it was
    built from and the digest of its locked cells, to check it when it comes
    back."""

    __tablename__ = "forms"
    __table_args__ = (UniqueConstraint("survey_id", "version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    survey_id: Mapped[str] = mapped_column(ForeignKey("surveys.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict] = mapped_column(JSON)
    snapshot_hash: Mapped[str] = mapped_column(String(64))
    data_hash: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Transmission(Base):
    """One transmitted form: every version is kept, even when the same file
    is sent again after another one (it becomes the latest again)."""

    __tablename__ = "transmissions"
    __table_args__ = (
        UniqueConstraint("survey_id", "seq"),
        Index("ix_transmissions_survey_key", "survey_id", "idempotency_key", unique=True),
        Index("ix_transmissions_survey_sha256", "survey_id", "sha256"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    survey_id: Mapped[str] = mapped_column(ForeignKey("surveys.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    file_id: Mapped[str] = mapped_column(String(64), index=True)
    file_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    form_version: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict] = mapped_column(JSON)
    submitted_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    submitter_name: Mapped[str] = mapped_column(String(210), default="")
    submitter_email: Mapped[str] = mapped_column(String(254), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    submitted_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Attachment(Base):
    """« Pièces à fournir »: a document of a survey; bytes in files."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    survey_id: Mapped[str] = mapped_column(ForeignKey("surveys.id"), index=True)
    file_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class SyncMark(Base):
    """When a bulk refresh from another service last ran (e.g. the agency's
    full copy of the validated organisations), to throttle it."""

    __tablename__ = "sync_marks"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"

"""Carte tables (SQLAlchemy 2)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
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

from kit.db import OutboxMixin, TZDateTime, make_base, utcnow

Base = make_base()


class Actor(Base):
    """The carte accounts as identity announced them (identity.carte_account_saved):
    what each may file and see. Only a newer ``revision`` replaces a row."""

    __tablename__ = "actors"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    uai: Mapped[str | None] = mapped_column(String(8), nullable=True)
    referent_uai: Mapped[str | None] = mapped_column(String(8), nullable=True)
    member_uais: Mapped[list] = mapped_column(JSON, default=list)
    scope: Mapped[str | None] = mapped_column(String(16), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


class Campaign(Base):
    """One per school year (« rentrée 2020 »), open between two dates (Paris time)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    school_year: Mapped[int] = mapped_column(Integer, unique=True)  # 2020: rentrée 2020
    opens_on: Mapped[dt.date] = mapped_column(Date)
    closes_on: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Level(Base):
    __tablename__ = "levels"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)  # niveau3 … niveau8
    label: Mapped[str] = mapped_column(String(100))


class Diploma(Base):
    __tablename__ = "diplomas"

    cfd: Mapped[str] = mapped_column(String(8), primary_key=True)  # code diplôme
    title: Mapped[str] = mapped_column(String(200))
    level_code: Mapped[str] = mapped_column(ForeignKey("levels.code"), index=True)
    rncp: Mapped[str | None] = mapped_column(String(12), nullable=True)
    search: Mapped[str] = mapped_column(String(300))  # folded title + codes


class Variant(Base):
    """A diploma in N years: what a request chooses. Variants missing from a
    later import are kept (requests point to them) but no longer offered."""

    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("cfd", "duration", name="uq_variants_cfd_duration"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cfd: Mapped[str] = mapped_column(ForeignKey("diplomas.cfd"), index=True)
    duration: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(220))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Request(Base):
    """A request (« demande ») of the guide's section 4: draft, then validated
    for good. The id is given at the first save."""

    __tablename__ = "requests"
    __table_args__ = (
        # « 1 le plus prioritaire, 2, etc. »: one rank per establishment and campaign
        UniqueConstraint("campaign_id", "concerned_uai", "priority", name="uq_requests_priority"),
        Index("ix_requests_campaign_status_id", "campaign_id", "status", "id"),
        Index("ix_requests_campaign_filer", "campaign_id", "filed_by"),
        Index("ix_requests_campaign_uai", "campaign_id", "concerned_uai"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    status: Mapped[str] = mapped_column(String(12), default="draft")  # draft | validated
    version: Mapped[int] = mapped_column(Integer, default=1)
    filed_by: Mapped[str] = mapped_column(String(32))
    filer_kind: Mapped[str] = mapped_column(String(16))
    filer_identifier: Mapped[str] = mapped_column(String(32))
    # A/ Etablissement de formation
    referent_uai: Mapped[str | None] = mapped_column(String(8), nullable=True)
    concerned_uai: Mapped[str | None] = mapped_column(String(8), nullable=True)
    department: Mapped[str | None] = mapped_column(String(3), nullable=True, index=True)
    academy: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    training_site: Mapped[str | None] = mapped_column(String(300), nullable=True)
    manager_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    manager_phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    manager_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    # B/ Informations sur la formation
    modality: Mapped[str | None] = mapped_column(String(1), nullable=True)
    variant_id: Mapped[int | None] = mapped_column(
        ForeignKey("variants.id"), nullable=True, index=True
    )
    measure: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    linked: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    linked_request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    current_capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_filing: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    previous_filing_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cp_ca_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    recruitment_zones: Mapped[list] = mapped_column(JSON, default=list)
    works_needed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    works_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    equipment_needed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    equipment_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    other_impacts: Mapped[str | None] = mapped_column(Text, nullable=True)
    opportunity_report: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    validated_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    validated_by: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Annex(Base):
    """A document joined to a request; the bytes live in the files service."""

    __tablename__ = "annexes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    file_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(Integer)
    added_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class ProgrammeReport(Base):
    """« Si la formation proposée n'est pas présente dans la liste » : the
    contact form to the Carif-Oref."""

    __tablename__ = "programme_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200))
    cfd: Mapped[str | None] = mapped_column(String(8), nullable=True)
    rncp: Mapped[str | None] = mapped_column(String(12), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(300), nullable=True)  # arrêté (JO)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    reporter_id: Mapped[str] = mapped_column(String(32))
    reporter_identifier: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"

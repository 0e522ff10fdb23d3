"""Identity tables (SQLAlchemy 2)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import InboxMixin, OutboxMixin, TZDateTime, make_base, new_id, utcnow

Base = make_base()


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_type: Mapped[str] = mapped_column(String(8))  # OFA | OG
    siret: Mapped[str] = mapped_column(String(14), unique=True)
    nda: Mapped[str] = mapped_column(String(11))
    uai: Mapped[str | None] = mapped_column(String(8), nullable=True)
    apprentice_count: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    address: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # ok | pending (registry unreachable) | closed (établissement fermé)
    sirene_status: Mapped[str] = mapped_column(String(16), default="pending")
    sirene_checked_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id"), nullable=True, index=True
    )
    # pending (awaiting the agency) | validated | rejected
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id"), nullable=True, index=True
    )
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    last_name: Mapped[str] = mapped_column(String(100))
    first_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    firm_name: Mapped[str | None] = mapped_column(String(200), nullable=True)  # cabinet
    role: Mapped[str] = mapped_column(String(16))  # manager | user | agency_admin
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email_confirmed_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    validated_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    rejected_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    deactivated_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    # name, e-mail and phone replaced (identity/personal_data.py): retention or erasure
    anonymised_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)


class Attachment(Base):
    """Documents given at registration; bytes live in the files service."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    file_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))  # habilitation | other
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class Token(Base):
    """Single-use, expiring links; only the sha256 of the token is kept."""

    __tablename__ = "tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # confirm | invite | reset
    expires_at: Mapped[dt.datetime] = mapped_column(TZDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(TZDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True, index=True)
    # second factor (identity/totp.py): ok (none needed, or given) | pending
    # (a TOTP code is awaited) | enrol (staff who must enrol first)
    mfa: Mapped[str] = mapped_column(String(8), default="ok", server_default="ok")
    # when a TOTP code was last given in this session (re-authentication)
    mfa_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)


class SignInAttempt(Base):
    """Failed sign-ins, for rate limiting by account and by address."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_attempts_email_at", "email", "at"),
        Index("ix_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class RegistrationAttempt(Base):
    """Self-registrations asked for, known address or not: the per-address
    rate limit (domain.registration.MAX_REGISTRATIONS_PER_EMAIL)."""

    __tablename__ = "registration_attempts"
    __table_args__ = (Index("ix_registration_attempts_email_at", "email", "at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254))
    siret: Mapped[str] = mapped_column(String(14), index=True)
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow, index=True)
    # set once the account is made (or found to exist): until then the
    # registration is in flight and counts against its organisation's limit
    finished_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)


class TotpCredential(Base):
    """A user's TOTP secret (RFC 6238). ``confirmed_at`` is set once a first
    code proved the enrolment; ``last_step`` is the time-step of the last code
    accepted, so that no code is accepted twice. ``secret`` is a Fernet token
    (identity.totp_secrets; ~140 characters), or the base32 secret in clear in
    rows written before encryption, sealed when next used."""

    __tablename__ = "totp_credentials"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(255))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    last_step: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class RecoveryCode(Base):
    """Single-use recovery codes, shown once at enrolment; only their sha256 is kept."""

    __tablename__ = "recovery_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class AuditEntry(Base):
    """Who did what and when, on which organisation or account. Entries are
    chained (kit.audit): ``hash`` covers the entry, the previous entry's hash
    and ``detail_hash`` (the sha256 of the detail as written)."""

    __tablename__ = "audit"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    subject_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    detail_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditChain(Base):
    """The head of the audit chain (kit.audit): the last entry's seq and hash.
    Appending locks this row until the transaction ends."""

    __tablename__ = "audit_chain"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"


class Inbox(InboxMixin, Base):
    __tablename__ = "inbox"


class CarteAccount(Base):
    """A carte des formations account (identity/use_cases/carte_accounts.py): it signs in with an
    identifier (an establishment's UAI, a network's or a service's code), not
    an e-mail. Its password, sessions and reset links are those of its
    ``users`` row (role ``carte``)."""

    __tablename__ = "carte_accounts"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(32), unique=True)  # upper case
    # establishment | network | draaf | reviewer | admin
    kind: Mapped[str] = mapped_column(String(16), index=True)
    label: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(254))  # « mot de passe perdu »
    uai: Mapped[str | None] = mapped_column(String(8), nullable=True)  # establishments
    referent_uai: Mapped[str | None] = mapped_column(String(8), nullable=True)
    scope: Mapped[str | None] = mapped_column(String(16), nullable=True)  # reviewers
    revision: Mapped[int] = mapped_column(Integer, default=1)  # orders copies elsewhere
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class CarteNetworkMember(Base):
    """The establishments (UAI) a network files requests for."""

    __tablename__ = "carte_network_members"

    network_id: Mapped[str] = mapped_column(ForeignKey("carte_accounts.user_id"), primary_key=True)
    uai: Mapped[str] = mapped_column(String(8), primary_key=True, index=True)

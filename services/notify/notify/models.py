"""Notify tables (SQLAlchemy 2): the delivery log, the inbox, the outbox.

A delivery keeps the rendered message (recipient, subject, body) so a failed
send can be retried later without the event that caused it; once it is
``sent`` or ``undelivered`` it is deleted after ``NOTIFY_EMAIL_RETENTION_DAYS``
(notify.personal_data).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, synonym

from kit.db import InboxMixin, OutboxMixin, TZDateTime, make_base, new_id, utcnow

Base = make_base()

PENDING = "pending"  # written, being sent (or the sender crashed: see use_cases)
SENT = "sent"
FAILED = "failed"  # waiting for its next attempt (next_attempt_at)
UNDELIVERED = "undelivered"  # retried for EMAIL_RETRY_WINDOW: given up, shown to the agency


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_status_last_attempt", "status", "last_attempt_at"),
        Index("ix_deliveries_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source_event_id: Mapped[str] = mapped_column(String(64), index=True)
    template: Mapped[str] = mapped_column(String(40))
    to: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    # failed: when to try again; null on rows written before the retry window
    # (due at once). give_up_at: a failure after it makes the row undelivered.
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    give_up_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)


class Inbox(InboxMixin, Base):
    __tablename__ = "inbox"


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"


# ---------------------------------------------------------------- partners (DESIGN §8)
# A partner is another public agency subscribed to some events within a scope.
# The feed (PartnerEvent) is the source of truth; PartnerDelivery is one push
# of one feed entry to one partner over one channel, DeliveryAttempt each try.

ACTIVE = "active"
DISABLED = "disabled"

DELIVERY_PENDING = "pending"  # waiting for its next attempt
DELIVERY_DELIVERED = "delivered"
DELIVERY_FAILED = "failed"  # the retry schedule is exhausted
DELIVERY_DISABLED = "disabled"  # the channel is off (endpoint disabled, partner disabled)
DELIVERY_STATES = (DELIVERY_PENDING, DELIVERY_DELIVERED, DELIVERY_FAILED, DELIVERY_DISABLED)

WEBHOOK = "webhook"
AMQP = "amqp"
SEQ = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
CHANNELS = (WEBHOOK, AMQP)


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(254))
    state: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    scope: Mapped[dict] = mapped_column(JSON, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    webhook_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    webhook_failing_since: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    webhook_disabled_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Standard Webhooks secrets: the current one, and the previous one while it
    # stays valid after a rotation (both sign, partners accept either)
    webhook_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret_until: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    amqp_username: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)


class PartnerKey(Base):
    __tablename__ = "partner_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)


class PartnerEvent(Base):
    """The feed: one row per event, ``seq`` in commit order (see partners.feed)."""

    __tablename__ = "partner_events"

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(80), index=True)  # short name
    # what scopes match on (partners.scope)
    account_type: Mapped[str | None] = mapped_column(String(8), nullable=True)
    siret: Mapped[str | None] = mapped_column(String(14), nullable=True)
    academy: Mapped[str | None] = mapped_column(String(40), nullable=True)
    envelope: Mapped[dict] = mapped_column(JSON)  # the structured CloudEvent
    occurred_at: Mapped[dt.datetime] = mapped_column(TZDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow, index=True)


class PartnerDelivery(Base):
    __tablename__ = "partner_deliveries"
    __table_args__ = (
        UniqueConstraint("partner_id", "event_id", "channel", name="uq_partner_delivery"),
        Index("ix_partner_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    partner_id: Mapped[str] = mapped_column(String(32), index=True)
    event_seq: Mapped[int] = mapped_column(
        SEQ, ForeignKey("partner_events.seq", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(80))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class DeliveryAttempt(Base):
    __tablename__ = "partner_delivery_attempts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("partner_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    response_excerpt: Mapped[str | None] = mapped_column(String(500), nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class PartnerAudit(Base):
    """Who changed which partner, and when: a tamper-evident chain (kit.audit).

    The columns are kit.audit's: ``org_id`` holds the partner's id (a partner
    is an agency: the organisation the entry is about), ``actor_id`` the
    agent's user id (null for the push loop), ``subject_user_id`` is unused
    (always null, still hashed). ``partner_id``, ``actor`` and ``details``
    are the names the partner code reads them by. Append only through
    ``notify.partners.admin.audit``; verify with ``python -m notify.audit_check``."""

    __tablename__ = "partner_audit"
    __table_args__ = (UniqueConstraint("seq", name="uq_partner_audit_seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(32), index=True)
    subject_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    partner_id = synonym("org_id")
    actor = synonym("actor_id")
    details = synonym("detail")


class PartnerAuditChain(Base):
    """The head of the partner audit chain (kit.audit): the last entry's seq
    and hash, in one row named ``audit``. Appending locks it until commit."""

    __tablename__ = "partner_audit_chain"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))

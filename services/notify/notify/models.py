"""Notify tables (SQLAlchemy 2): the delivery log, the inbox, the outbox.

A delivery keeps the rendered message (recipient, subject, body) so a failed
send can be retried later without the event that caused it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import InboxMixin, OutboxMixin, TZDateTime, make_base, new_id, utcnow

Base = make_base()

PENDING = "pending"  # written, being sent (or the sender crashed: see use_cases)
SENT = "sent"
FAILED = "failed"


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_status_last_attempt", "status", "last_attempt_at"),)

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


class Inbox(InboxMixin, Base):
    __tablename__ = "inbox"


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"

"""kit.outbox.emit for the event types no service consumes
(kit.events.UNCONSUMED): no outbox row; announced once after commit, never
after a rollback."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from kit import events, outbox
from kit.db import OutboxMixin, make_base, make_engine

Base = make_base()


class Outbox(OutboxMixin, Base):
    __tablename__ = "outbox"


def _session(service: str):
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False, info={"service": service})()


def _rows(session) -> int:
    return session.scalar(select(func.count()).select_from(Outbox))


def test_an_unconsumed_event_gets_no_row_and_is_taken_once_after_its_commit():
    assert (events.FILES, events.FILE_STORED) in events.UNCONSUMED
    session = _session(events.FILES)
    event_id = outbox.emit(session, Outbox, events.FILE_STORED, {"file_id": "f1"})
    assert outbox.take_committed(session) == []  # not committed yet
    session.commit()
    ((event_type, payload),) = outbox.take_committed(session)
    assert (event_type, payload["file_id"], payload["event_id"]) == (
        events.FILE_STORED,
        "f1",
        event_id,
    )
    assert outbox.take_committed(session) == []
    assert _rows(session) == 0


def test_an_unconsumed_event_of_a_rolled_back_transaction_is_never_announced():
    session = _session(events.FILES)
    outbox.emit(session, Outbox, events.FILE_STORED, {"file_id": "refused"})
    session.rollback()
    outbox.emit(session, Outbox, events.FILE_STORED, {"file_id": "kept"})
    session.commit()
    assert [p["file_id"] for _, p in outbox.take_committed(session)] == ["kept"]


def test_a_consumed_event_type_still_gets_its_outbox_row():
    session = _session(events.SURVEY)
    outbox.emit(session, Outbox, events.RESPONSE_SUBMITTED, {"survey_id": "s1"})
    # the same type name from a service that does not own it as unconsumed
    other = _session(events.SURVEY)
    outbox.emit(other, Outbox, events.FILE_STORED, {"file_id": "f"})
    session.commit()
    other.commit()
    assert _rows(session) == 1 and _rows(other) == 1
    assert outbox.take_committed(session) == [] and outbox.take_committed(other) == []

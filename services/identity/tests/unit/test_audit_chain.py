"""The audit trail is tamper-evident (kit.audit): entries are chained, the
check reports the first broken link, an erasure of personal data is not a
break, and concurrent writers on PostgreSQL keep one unbroken chain."""

import threading

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import sessionmaker

from identity import use_cases as uc
from identity.audit_check import main as _unused  # noqa: F401 - the command imports
from identity.models import AuditChain, AuditEntry, Base
from kit import audit as kit_audit
from kit.db import make_engine
from kit.migrate import upgrade


def write(session, n, **detail):
    for i in range(n):
        uc.audit(
            session, "modified", org_id="o" * 32, subject="u" * 32, actor="a" * 32, n=i, **detail
        )
    session.commit()


def check(session):
    return kit_audit.verify(session, AuditEntry, AuditChain)


def entry(session, seq):
    return session.scalar(select(AuditEntry).where(AuditEntry.seq == seq))


def test_each_entry_carries_the_hash_of_the_previous_one(session):
    write(session, 3)
    first, second, third = (entry(session, s) for s in (1, 2, 3))
    assert first.prev_hash == kit_audit.GENESIS
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    report = check(session)
    assert report.ok and report.entries == 3, report.line()


def test_an_altered_detail_is_reported_at_its_entry(session):
    write(session, 4)
    session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(detail={"n": 99}))
    session.commit()
    report = check(session)
    assert not report.ok and report.broken_at == 2
    assert "detail altered" in report.line()


def test_an_altered_actor_is_reported_at_its_entry(session):
    write(session, 4)
    session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor_id="b" * 32))
    session.commit()
    report = check(session)
    assert report.broken_at == 3 and "hash does not match" in report.problem


def test_a_removed_entry_breaks_the_next_link(session):
    write(session, 4)
    session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    session.commit()
    report = check(session)
    assert report.broken_at == 3 and not report.ok


def test_removing_the_last_entries_is_seen_from_the_head(session):
    write(session, 4)
    session.execute(delete(AuditEntry).where(AuditEntry.seq == 4))
    session.commit()
    report = check(session)
    assert not report.ok and "head says 4 entries" in report.problem


def test_a_redaction_recorded_in_the_chain_is_not_a_break(session):
    write(session, 3, detail_email="claire@example.org")
    target = entry(session, 2)
    target.detail = kit_audit.redact(dict(target.detail), {"detail_email"})
    uc.audit(session, "anonymised", subject="u" * 32, redacted_entries=[target.id])
    session.commit()
    report = check(session)
    assert report.ok and report.redacted == 1, report.line()
    assert entry(session, 2).detail["detail_email"] == kit_audit.REDACTED


def test_the_check_command_exits_non_zero_on_a_broken_chain(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'identity.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        write(s, 2)
    assert kit_audit.main("identity", AuditEntry, AuditChain, ["--db-url", url]) == 0
    assert "intact: 2 entries" in capsys.readouterr().out
    with sessionmaker(engine)() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(action="validated"))
        s.commit()
    engine.dispose()
    assert kit_audit.main("identity", AuditEntry, AuditChain, ["--db-url", url]) == 1
    assert "broken at seq 1" in capsys.readouterr().out


@pytest.mark.integration
def test_concurrent_writers_on_postgresql_keep_one_unbroken_chain(pg_database):
    url = pg_database("identity")
    upgrade("identity", url)
    engine = make_engine(url)
    make = sessionmaker(engine, expire_on_commit=False)
    errors = []

    def writer():
        try:
            with make() as s:
                for _ in range(10):
                    uc.audit(s, "modified", subject="u" * 32)
                    uc.audit(s, "validated", subject="u" * 32)
                    s.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with make() as s:
        report = check(s)
    engine.dispose()
    assert not errors
    assert report.ok and report.entries == 120, report.line()


@pytest.mark.integration
def test_the_migration_chains_the_entries_written_before_it(pg_database):
    from alembic import command

    from kit.migrate import _config

    url = pg_database("identity")
    command.upgrade(_config("identity", url), "4b1e7c2d9a10")
    engine = make_engine(url)
    with engine.begin() as conn:
        for i in range(3):
            conn.exec_driver_sql(
                "INSERT INTO audit (id, action, detail, at) VALUES "
                f"('{i:032d}', 'created', '{{\"n\": {i}}}', now() + interval '{i} second')"
            )
    upgrade("identity", url)
    with sessionmaker(engine)() as s:
        report = check(s)
        uc.audit(s, "validated")
        s.commit()
        after = check(s)
    engine.dispose()
    assert report.ok and report.entries == 3, report.line()
    assert after.ok and after.entries == 4, after.line()

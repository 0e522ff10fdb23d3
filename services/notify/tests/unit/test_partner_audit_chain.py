"""The partner audit trail is tamper-evident (kit.audit): every change the
agency or the push loop records is chained, ``python -m notify.audit_check``
reports the first broken link, and the migration chains the entries written
before it (SQLite files, and PostgreSQL for the migration and the writers)."""

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import sessionmaker

from kit import audit as kit_audit
from kit.context import AGENCY_ADMIN, Caller
from kit.db import make_engine
from kit.migrate import _config, upgrade
from notify.models import Base, PartnerAudit, PartnerAuditChain
from notify.partners import admin, ssrf
from notify.partners.settings import PartnerSettings

ROOT = Path(__file__).resolve().parents[4]
T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
AGENCY = Caller(user_id="agent-1", roles=(AGENCY_ADMIN,))
LOOPBACK = PartnerSettings(allowed=ssrf.Allowed.parse("127.0.0.0/8"))
BEFORE_CHAIN = "c3e1a7b5d902"  # the revision before the chain


def changes(session) -> str:
    """Five entries through the agency's use cases; returns the partner id."""
    body = {
        "name": "Région Occitanie",
        "contact_email": "flux@occitanie.test",
        "event_types": ["survey.response_submitted"],
        "webhook_url": "http://127.0.0.1:9/hook",
    }
    pid = admin.create_partner(session, AGENCY, body, LOOPBACK, None, T0)["partner"]["id"]
    admin.update_partner(session, AGENCY, pid, {"name": "Occitanie"}, LOOPBACK, None, T0)
    key = admin.create_key(session, AGENCY, pid, "deuxième", T0)["key"]["id"]
    admin.revoke_key(session, AGENCY, pid, key, T0)
    admin.rotate_secret(session, AGENCY, pid, LOOPBACK, T0)
    return pid


def check(session):
    return kit_audit.verify(session, PartnerAudit, PartnerAuditChain)


def test_every_partner_change_is_chained_to_the_previous_one(session):
    pid = changes(session)
    rows = session.scalars(select(PartnerAudit).order_by(PartnerAudit.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == kit_audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    assert {r.partner_id for r in rows} == {pid} and {r.actor for r in rows} == {"agent-1"}
    report = check(session)
    assert report.ok and report.entries == 5, report.line()
    listed = admin.list_audit(session, AGENCY, pid)["items"]
    assert {i["action"] for i in listed} == {
        "created", "updated", "key_created", "key_revoked", "secret_rotated",
    }  # fmt: skip
    assert set(listed[0]) == {"at", "actor", "action", "details"}  # the RPC's shape is kept


def test_an_altered_detail_is_reported_at_its_entry(session):
    changes(session)
    session.execute(
        update(PartnerAudit).where(PartnerAudit.seq == 2).values(detail={"name": "Bretagne"})
    )
    session.commit()
    report = check(session)
    assert (report.ok, report.broken_at) == (False, 2)
    assert "detail altered" in report.line()


def test_an_altered_actor_or_partner_is_reported_at_its_entry(session):
    changes(session)
    session.execute(update(PartnerAudit).where(PartnerAudit.seq == 3).values(actor_id="agent-2"))
    session.commit()
    assert check(session).broken_at == 3 and "hash does not match" in check(session).problem
    session.execute(update(PartnerAudit).where(PartnerAudit.seq == 3).values(actor_id="agent-1"))
    session.execute(update(PartnerAudit).where(PartnerAudit.seq == 1).values(org_id="x" * 32))
    session.commit()
    assert check(session).broken_at == 1


def test_a_removed_entry_breaks_the_next_link(session):
    changes(session)
    session.execute(delete(PartnerAudit).where(PartnerAudit.seq == 2))
    session.commit()
    report = check(session)
    assert (report.ok, report.broken_at) == (False, 3)
    assert "entry removed" in report.problem


def test_cutting_the_tail_is_seen_from_the_head(session):
    changes(session)
    session.execute(delete(PartnerAudit).where(PartnerAudit.seq >= 4))
    session.commit()
    report = check(session)
    assert not report.ok and "head says 5 entries, the table has 3" in report.problem


def test_an_entry_without_an_agent_joins_the_same_chain(session):
    pid = changes(session)  # the push loop disabling a webhook writes actor None
    admin.audit(session, pid, None, "webhook_disabled", reason="échecs continus")
    session.commit()
    report = check(session)
    assert report.ok and report.entries == 6, report.line()


def run_check(url: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("libs/kit", "services/notify")),
    )
    return subprocess.run(
        [sys.executable, "-m", "notify.audit_check", "--db-url", url],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_the_check_command_exits_1_with_the_first_broken_link(tmp_path):
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        changes(s)
    ok = run_check(url)
    assert ok.returncode == 0, ok.stderr
    assert "notify: audit chain intact: 5 entries" in ok.stdout
    with sessionmaker(engine)() as s:
        s.execute(update(PartnerAudit).where(PartnerAudit.seq == 4).values(action="created"))
        s.commit()
    engine.dispose()
    broken = run_check(url)
    assert broken.returncode == 1
    assert "notify: audit chain broken at seq 4" in broken.stdout


# ---------------------------------------------------------------- the migration


def old_rows(conn, n=3):
    """Entries as the code before the chain wrote them (partner_id, actor, details)."""
    for i in range(n):
        conn.execute(
            text(
                "INSERT INTO partner_audit (id, partner_id, at, actor, action, details) "
                "VALUES (:id, :pid, :at, :actor, :action, :details)"
            ),
            {
                "id": f"{i:032d}",
                "pid": "p" * 32,
                "at": T0 + dt.timedelta(seconds=10 - i),  # written in reverse id order
                "actor": "agent-1" if i else None,
                "action": ("created", "updated", "webhook_disabled")[i],
                "details": f'{{"n": {i}, "nom": "Région Île-de-France"}}',
            },
        )


def migrated_with_old_rows(url):
    command.upgrade(_config("notify", url), BEFORE_CHAIN)
    engine = make_engine(url)
    with engine.begin() as conn:
        old_rows(conn)
    upgrade("notify", url)
    return engine


def assert_chained_then_appendable(engine):
    with sessionmaker(engine, expire_on_commit=False)() as s:
        report = check(s)
        order = s.scalars(select(PartnerAudit.id).order_by(PartnerAudit.seq)).all()
        kept = s.get(PartnerAudit, "0" * 32)
        admin.audit(s, "p" * 32, "agent-2", "deleted", name="Occitanie")
        s.commit()
        after = check(s)
    assert report.ok and report.entries == 3, report.line()
    assert order == [f"{i:032d}" for i in (2, 1, 0)]  # in the order they were written
    assert (kept.partner_id, kept.actor, kept.details) == (
        "p" * 32,
        None,
        {"n": 0, "nom": "Région Île-de-France"},
    )
    assert after.ok and after.entries == 4, after.line()


def test_the_migration_chains_the_entries_written_before_it_on_sqlite(tmp_path):
    engine = migrated_with_old_rows(f"sqlite:///{tmp_path / 'notify.db'}")
    try:
        assert_chained_then_appendable(engine)
    finally:
        engine.dispose()


def test_the_migration_on_an_empty_sqlite_database_starts_an_empty_chain(tmp_path):
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    upgrade("notify", url)
    engine = make_engine(url)
    try:
        with sessionmaker(engine, expire_on_commit=False)() as s:
            head = s.get(PartnerAuditChain, "audit")
            assert (head.seq, head.hash) == (0, kit_audit.GENESIS)
            assert check(s).ok and check(s).entries == 0
            admin.audit(s, "p" * 32, "agent-1", "created")
            s.commit()
            assert check(s).entries == 1 and check(s).ok
    finally:
        engine.dispose()


def test_the_migration_goes_down_to_the_old_columns_and_up_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    engine = migrated_with_old_rows(url)
    command.downgrade(_config("notify", url), BEFORE_CHAIN)
    with engine.connect() as conn:
        names = conn.execute(text("SELECT partner_id, actor, details FROM partner_audit")).all()
    assert len(names) == 3
    upgrade("notify", url)
    try:
        with sessionmaker(engine)() as s:
            assert check(s).ok and check(s).entries == 3
    finally:
        engine.dispose()


@pytest.mark.integration
def test_the_migration_chains_the_entries_written_before_it_on_postgresql(pg_database):
    engine = migrated_with_old_rows(pg_database("notify"))
    try:
        assert_chained_then_appendable(engine)
    finally:
        engine.dispose()


@pytest.mark.integration
def test_concurrent_writers_on_postgresql_keep_one_unbroken_chain(pg_database):
    url = pg_database("notify")
    upgrade("notify", url)
    engine = make_engine(url)
    make = sessionmaker(engine, expire_on_commit=False)
    errors = []

    def writer(n):
        try:
            with make() as s:
                for i in range(10):
                    admin.audit(s, f"{n:032d}", "agent-1", "updated", i=i)
                    s.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with make() as s:
        report = check(s)
    engine.dispose()
    assert not errors
    assert report.ok and report.entries == 50, report.line()

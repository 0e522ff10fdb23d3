"""A tamper-evident audit trail: each entry carries the hash of the previous one.

Why: an audit trail that anyone with write access to the database can
rewrite silently proves nothing. Here every entry is chained to the one
before it, and a one-row *head* table holds the sequence number and hash of
the last entry, so that changing, removing or reordering an entry, or
cutting the tail, breaks a link that ``verify`` reports.

What is hashed (``entry_hash``): the entry's ``seq``, id, time, action,
organisation, subject and actor ids, the previous entry's hash, and the
sha256 of its ``detail`` (``detail_hash``), not the detail itself. That is
what lets personal data be erased from an entry without breaking the chain
(RGPD): the erasure replaces the detail's personal values and is itself
recorded as a new, chained entry that lists the entries it redacted (its
detail carries ``redacted_entries``). ``verify`` then accepts a detail that
no longer matches its ``detail_hash`` only for an entry listed by a later
redaction entry; any other mismatch is reported. Ids (users, organisations)
stay in the entries: they are pseudonyms once the person's account is
anonymised.

Concurrent writers (several replicas on PostgreSQL): ``append`` starts with
``UPDATE <head> SET seq = seq + 1``, which takes the head row's lock until
the writer's transaction ends; the next writer waits there, then reads the
head its predecessor committed. On SQLite the same statement takes the
database's write lock. One chain per service's audit table.

Usage in a service::

    append(session, AuditEntry, AuditChain, chain="audit", org_id=…, action=…, detail=…)

and ``python -m <service>.audit_check`` (see ``main``) verifies the chain.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import sys

from sqlalchemy import select, update

from kit.db import new_id, utcnow

GENESIS = "0" * 64
REDACTED = "[effacé]"
# an entry whose detail has this key redacts the listed entries' details
REDACTED_ENTRIES = "redacted_entries"
HASHED_FIELDS = ("id", "org_id", "subject_user_id", "actor_id", "action")


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _time(value: dt.datetime) -> str:
    if value.tzinfo is None:  # SQLite drops the zone: UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def detail_hash(detail) -> str:
    return hashlib.sha256(canonical(detail or {}).encode()).hexdigest()


def entry_hash(entry) -> str:
    """The hash of an entry (an ORM row or anything with the same attributes)."""
    body = {name: getattr(entry, name) for name in HASHED_FIELDS}
    body.update(
        seq=entry.seq,
        at=_time(entry.at),
        detail_hash=entry.detail_hash,
        prev_hash=entry.prev_hash,
    )
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def append(session, model, head_model, *, chain: str = "audit", at=None, **fields):
    """Adds one chained entry to ``model`` (columns: id, seq, at, action,
    org_id, subject_user_id, actor_id, detail, detail_hash, prev_hash, hash)
    and moves the head (``head_model``: name, seq, hash). Flushes the entry;
    the caller commits."""
    moved = session.execute(
        update(head_model)
        .where(head_model.name == chain)
        .values(seq=head_model.seq + 1)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount == 0:  # a database built without the migration (tests)
        session.add(head_model(name=chain, seq=1, hash=GENESIS))
        session.flush()
        seq, prev = 1, GENESIS
    else:
        seq, prev = session.execute(
            select(head_model.seq, head_model.hash).where(head_model.name == chain)
        ).one()
    detail = fields.pop("detail", None) or {}
    entry = model(
        id=fields.pop("id", None) or new_id(),
        seq=seq,
        at=at or utcnow(),
        detail=detail,
        detail_hash=detail_hash(detail),
        prev_hash=prev,
        **fields,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.execute(
        update(head_model)
        .where(head_model.name == chain)
        .values(hash=entry.hash)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return entry


def chain_existing(rows, start_hash: str = GENESIS) -> tuple[int, str]:
    """Chains entries written before the chain existed, in the order given
    (each gets seq, detail_hash, prev_hash, hash). Returns the head."""
    seq, prev = 0, start_hash
    for row in rows:
        seq += 1
        row.seq = seq
        row.detail_hash = detail_hash(row.detail)
        row.prev_hash = prev
        row.hash = entry_hash(row)
        prev = row.hash
    return seq, prev


@dataclasses.dataclass
class Report:
    entries: int = 0
    redacted: int = 0
    broken_at: int | None = None  # seq of the first entry that fails
    entry_id: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        if self.ok:
            return (
                f"audit chain intact: {self.entries} entries "
                f"({self.redacted} with personal data erased)"
            )
        where = f"seq {self.broken_at}" if self.broken_at is not None else "head"
        return f"audit chain broken at {where} (entry {self.entry_id}): {self.problem}"


def verify(session, model, head_model, *, chain: str = "audit", batch: int = 1000) -> Report:
    """Walks the chain in ``seq`` order and reports its first broken link."""
    report = Report()
    prev, expected = GENESIS, 1
    mismatched: dict[str, int] = {}  # detail altered: entry id -> seq
    redacted: set[str] = set()
    last_seq = 0
    while True:
        table = model.__table__  # plain rows: nothing joins the session's identity map
        rows = session.execute(
            select(table).where(table.c.seq > last_seq).order_by(table.c.seq).limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            report.entries += 1
            if row.seq != expected:
                return _broken(report, row, f"seq {expected} expected (entry removed?)")
            if row.prev_hash != prev:
                return _broken(report, row, "prev_hash is not the previous entry's hash")
            if entry_hash(row) != row.hash:
                return _broken(report, row, "hash does not match the entry (entry altered)")
            if detail_hash(row.detail) != row.detail_hash:
                mismatched[row.id] = row.seq
            listed = (row.detail or {}).get(REDACTED_ENTRIES)
            if isinstance(listed, list):
                redacted.update(str(i) for i in listed)
            prev, expected, last_seq = row.hash, expected + 1, row.seq
    altered = {i: s for i, s in mismatched.items() if i not in redacted}
    report.redacted = len(mismatched) - len(altered)
    if altered:
        entry_id, seq = min(altered.items(), key=lambda item: item[1])
        report.broken_at, report.entry_id = seq, entry_id
        report.problem = "detail altered and not recorded as an erasure of personal data"
        return report
    head = session.execute(
        select(head_model.seq, head_model.hash).where(head_model.name == chain)
    ).first()
    head_seq, head_hash = head if head is not None else (0, GENESIS)
    if (head_seq, head_hash) != (expected - 1, prev):
        report.problem = (
            f"the head says {head_seq} entries, the table has {expected - 1} "
            "(entries removed at the end, or the head altered)"
        )
    return report


def _broken(report: Report, row, problem: str) -> Report:
    report.broken_at, report.entry_id, report.problem = row.seq, row.id, problem
    return report


def redact(detail: dict, keys) -> dict:
    """``detail`` with the values of ``keys`` replaced by ``REDACTED``."""
    return {k: (REDACTED if k in keys and v not in (None, "") else v) for k, v in detail.items()}


def main(service: str, model, head_model, argv=None) -> int:
    """``python -m <service>.audit_check [--db-url URL]``: exit status 0 when
    the chain is intact, 1 with the first broken link otherwise."""
    from sqlalchemy.orm import sessionmaker

    from kit.db import database_url, make_engine

    parser = argparse.ArgumentParser(
        prog=f"python -m {service}.audit_check",
        description=f"Verifies the hash chain of the {service} audit trail.",
    )
    parser.add_argument("--db-url", help=f"default: {service.upper()}_DB_URL")
    args = parser.parse_args(argv)
    engine = make_engine(args.db_url or database_url(service))
    try:
        with sessionmaker(engine)() as session:
            report = verify(session, model, head_model)
    finally:
        engine.dispose()
    print(f"{service}: {report.line()}")
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover - the services' audit_check call main()
    sys.exit("use python -m <service>.audit_check")

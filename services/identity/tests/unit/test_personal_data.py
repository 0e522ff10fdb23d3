"""Personal data in identity (RGPD): retention on a clock moved forward, a
person's export and erasure by the agency, the audit trail kept consistent."""

import datetime as dt

import pytest
from sqlalchemy import select

from identity import personal_data as pd
from identity import use_cases as uc
from identity.models import AuditChain, AuditEntry, Session, Token, User
from kit import audit as kit_audit
from kit.context import SYSTEM, Caller, system_clock
from kit.db import utcnow
from kit.errors import Conflict, Forbidden, NotFound

from .test_use_cases import PASSWORD, caller_for, events, form, register_and_confirm


@pytest.fixture
def agent(session):
    uc.ensure_admin(session, "agent@agence.example", PASSWORD)
    return caller_for(session, "agent@agence.example")


@pytest.fixture
def manager(session, sirene, agent):
    claire = register_and_confirm(session, sirene)
    uc.validate_user(session, agent, claire.id)
    return caller_for(session, "claire@example.org")


def user(session, email):
    return session.scalar(select(User).where(User.email == email))


def invite(session, manager, email="paul@example.org"):
    data = {"last_name": "Durand", "first_name": "Paul", "email": email}
    return uc.create_user(session, manager, manager.org_id, data)


def chain_ok(session):
    report = kit_audit.verify(session, AuditEntry, AuditChain)
    assert report.ok, report.line()
    return report


def test_deactivated_accounts_are_anonymised_once_their_delay_has_passed(session, manager):
    invited = invite(session, manager)
    token = events(session, "user_invited")[-1]["invite_token"]
    uc.accept_invitation(session, token, PASSWORD, PASSWORD)
    uc.deactivate_user(session, manager, invited["id"])
    deactivated = user(session, "paul@example.org").deactivated_at

    early = pd.run_retention(session, lambda f: None, now=deactivated + dt.timedelta(days=300))
    assert early["accounts_anonymised"] == 0
    assert user(session, "paul@example.org") is not None

    later = pd.run_retention(session, lambda f: None, now=deactivated + dt.timedelta(days=361))
    assert later["accounts_anonymised"] == 1
    row = session.get(User, invited["id"])
    assert (row.email, row.last_name, row.phone) == (
        pd.anonymous_email(invited["id"]),
        "Anonyme",
        None,
    )
    # the audit trail keeps the id, and stays verifiable
    actions = [
        e.action
        for e in session.scalars(select(AuditEntry).where(AuditEntry.subject_user_id == row.id))
    ]
    assert actions[-1] == "anonymised" and "deactivated" in actions
    chain_ok(session)


def test_the_delay_before_anonymisation_is_configurable(session, manager, monkeypatch):
    monkeypatch.setenv("DEACTIVATED_ACCOUNT_MONTHS", "1")
    invited = invite(session, manager)
    uc.deactivate_user(session, manager, invited["id"])
    counts = pd.run_retention(session, lambda f: None, now=utcnow() + dt.timedelta(days=31))
    assert counts["accounts_anonymised"] == 1


def test_invitations_never_accepted_are_purged_when_they_expire(session, manager):
    invited = invite(session, manager)
    assert (
        pd.run_retention(session, lambda f: None, now=utcnow() + dt.timedelta(days=6))[
            "invitations_purged"
        ]
        == 0
    )
    counts = pd.run_retention(session, lambda f: None, now=utcnow() + dt.timedelta(days=8))
    assert counts["invitations_purged"] == 1
    assert session.get(User, invited["id"]) is None
    assert not session.scalars(select(Token).where(Token.user_id == invited["id"])).all()
    chain_ok(session)


def test_accepted_invitations_are_kept(session, manager):
    invite(session, manager)
    token = events(session, "user_invited")[-1]["invite_token"]
    uc.accept_invitation(session, token, PASSWORD, PASSWORD)
    counts = pd.run_retention(session, lambda f: None, now=utcnow() + dt.timedelta(days=30))
    assert counts["invitations_purged"] == 0
    assert user(session, "paul@example.org") is not None


def test_old_sessions_and_links_are_deleted(session, manager):
    uc.authenticate(session, "claire@example.org", PASSWORD)
    counts = pd.run_retention(session, lambda f: None, now=utcnow() + dt.timedelta(days=91))
    assert counts["links_and_sessions_purged"] >= 1
    assert not session.scalars(select(Session)).all()


def test_the_agency_exports_everything_identity_holds_about_a_person(session, agent, manager):
    uc.authenticate(session, "claire@example.org", PASSWORD)
    claire = user(session, "claire@example.org")
    data = pd.export_person(session, agent, claire.id)
    assert data["account"]["email"] == "claire@example.org"
    assert data["account"]["emails"] == ["claire@example.org"]
    assert len(data["sessions"]) == 1
    assert [d["file_id"] for d in data["documents"]] == ["f1"]
    assert {"registered", "email_confirmed", "validated"} <= {e["action"] for e in data["audit"]}
    [exported] = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "personal_data_exported")
    ).all()
    assert (exported.subject_user_id, exported.actor_id) == (claire.id, agent.user_id)
    chain_ok(session)


def test_only_the_agency_exports_or_erases(session, agent, manager):
    claire = user(session, "claire@example.org")
    with pytest.raises(Forbidden):
        pd.export_person(session, manager, claire.id)
    with pytest.raises(Forbidden):
        pd.erase_person(session, manager, claire.id, lambda f: None)
    with pytest.raises(NotFound):
        pd.export_person(session, agent, "0" * 32)


def test_erasure_anonymises_the_account_deletes_its_documents_and_redacts_the_trail(
    session, sirene, agent, manager
):
    # a second registration with claire's address is audited with the address
    uc.register(session, form(siret="73282932000074"), [], sirene)
    claire = user(session, "claire@example.org")
    uc.authenticate(session, "claire@example.org", PASSWORD)
    deleted = []
    result = pd.erase_person(session, agent, claire.id, deleted.append, reason="Demande n° 12")
    assert result["status"] == "erased" and result["documents_deleted"] == 1
    assert deleted == ["f1"]
    assert result["audit_entries_redacted"] >= 1
    row = session.get(User, claire.id)
    assert row.email.endswith(".invalid") and row.first_name == "Anonyme"
    assert row.deactivated_at is not None and row.password_hash is None
    # every session is revoked (the gateway learns it), none deleted
    assert all(s.revoked_at for s in session.scalars(select(Session)))
    texts = [str(e.detail) for e in session.scalars(select(AuditEntry))]
    assert not any("claire@example.org" in t for t in texts)
    [erased] = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "personal_data_erased")
    ).all()
    assert erased.actor_id == agent.user_id and erased.detail["request"] == "Demande n° 12"
    chain_ok(session)
    # run again (a redelivered call): nothing more to do
    assert pd.erase_person(session, agent, claire.id, deleted.append)["already"] is True


def test_an_agent_cannot_erase_their_own_account(session, agent):
    with pytest.raises(Conflict) as err:
        pd.erase_person(session, agent, agent.user_id, lambda f: None)
    assert err.value.code == "personal_data.own_account"


def test_retention_runs_as_of_a_time_only_for_system_callers():
    assert system_clock(Caller(user_id="ops", roles=(SYSTEM,)), "2031-01-01T00:00:00") == (
        dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    )
    with pytest.raises(Forbidden):
        system_clock(Caller(user_id="x", roles=("agency_admin",)), None)

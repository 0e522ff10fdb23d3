"""Issue 11, accounts: quota squatting, expiry and limits of pending
registrations, SIRENE confirmation at validation, plain users' 403, work
deferred until the answer is sent."""

import datetime as dt

import pytest
from sqlalchemy import select

from identity import carte
from identity import use_cases as uc
from identity.domain import registration as rules
from identity.models import Attachment, AuditEntry, Organisation, Outbox, Token, User
from kit.db import utcnow
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests

from .test_use_cases import PASSWORD, caller_for, events, form, register_and_confirm


@pytest.fixture
def agent(session):
    uc.ensure_admin(session, "agent@agence.example", PASSWORD)
    return caller_for(session, "agent@agence.example")


@pytest.fixture
def manager(session, sirene, agent):
    user = register_and_confirm(session, sirene)
    uc.validate_user(session, agent, user.id)
    return caller_for(session, "claire@example.org")


def joiner(session, sirene, n, **overrides):
    email = f"j{n}@example.org"
    return register_and_confirm(session, sirene, email=email, email_confirm=email, **overrides)


def fill(session, manager, count):
    for n in range(count):
        uc.create_user(
            session,
            manager,
            manager.org_id,
            {"last_name": f"U{n}", "first_name": "u", "email": f"u{n}@example.org"},
        )


# ---------------------------------------------------------------- quota squatting


def test_pending_self_registrations_do_not_take_the_organisations_quota_slots(
    session, sirene, manager
):
    for n in range(3):
        joiner(session, sirene, n)
    fill(session, manager, 4)  # the manager's own people: 5 accounts in all
    assert len([u for u in uc.list_users(session, manager) if u["state"] != "validated"]) >= 3


def test_the_quota_is_enforced_when_the_manager_validates_a_pending_user(session, sirene, manager):
    pending = joiner(session, sirene, 1)
    fill(session, manager, 4)
    with pytest.raises(Conflict) as full:
        uc.validate_user(session, manager, pending.id)
    assert full.value.code == "quota.users"
    assert "5 comptes" in full.value.message
    assert session.get(User, pending.id).validated_at is None


def test_a_pending_user_is_validated_while_the_quota_has_room(session, sirene, manager):
    pending = joiner(session, sirene, 1)
    fill(session, manager, 3)
    assert uc.validate_user(session, manager, pending.id)["state"] == "validated"


def test_the_quota_rule_of_the_domain_is_the_one_production_uses(session, manager, monkeypatch):
    calls = []
    real = rules.quota_problem

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(rules, "quota_problem", spy)
    fill(session, manager, 1)
    assert calls == [(1, 1, "user")]


def test_an_organisation_takes_at_most_three_pending_registrations(session, sirene, manager):
    for n in range(rules.MAX_PENDING_PER_ORG):
        joiner(session, sirene, n)
    with pytest.raises(Conflict) as refused:
        uc.register(
            session, form(email="late@example.org", email_confirm="late@example.org"), [], sirene
        )
    assert refused.value.code == "registration.too_many_pending"
    assert "en attente de validation" in refused.value.message
    with pytest.raises(Conflict):  # the gateway's check before uploading says it too
        uc.check_registration(
            form(email="late@example.org", email_confirm="late@example.org"), session
        )
    assert session.scalar(select(User).where(User.email == "late@example.org")) is None


def test_an_address_asks_for_at_most_three_registrations_a_day_known_or_not(session, sirene):
    def attempt(email, siret):
        return uc.register(session, form(email=email, email_confirm=email, siret=siret), [], sirene)

    sirets = ["41816609600051", "73282932000074", "35600000018723", "41816609600051"]
    for known in (False, True):
        email = "known@example.org" if known else "fresh@example.org"
        if known:
            attempt(email, sirets[0])  # exists now; the limit counts the same
            for siret in sirets[1:3]:
                attempt(email, siret)
        else:
            for siret in sirets[:3]:
                attempt(email, siret)
        with pytest.raises(TooManyRequests) as refused:
            attempt(email, sirets[3])
        assert refused.value.code == "registration.too_many_attempts"
        assert refused.value.details["retry_after"] > 0


# ---------------------------------------------------------------- expiry and purge


def test_expired_pending_registrations_are_purged_with_their_documents(
    session, sirene, agent, manager
):
    stale = joiner(session, sirene, 1)
    fresh_org = register_and_confirm(  # never confirmed, new organisation
        session,
        sirene,
        siret="73282932000074",
        email="new@example.org",
        email_confirm="new@example.org",
    )
    awaiting_agency = register_and_confirm(
        session,
        sirene,
        siret="35600000018723",
        email="ag@example.org",
        email_confirm="ag@example.org",
    )
    session.get(User, fresh_org.id).email_confirmed_at = None
    for user in (stale, fresh_org, awaiting_agency):
        session.get(User, user.id).created_at = utcnow() - dt.timedelta(days=15)
    recent = joiner(session, sirene, 2)
    session.commit()
    deleted = []
    count = uc.purge_expired_registrations(session, deleted.append)
    assert count == 2
    assert sorted(deleted) == ["f1", "f1"]  # each registration's document
    assert session.get(User, stale.id) is None and session.get(User, fresh_org.id) is None
    assert session.get(Organisation, fresh_org.org_id) is None  # nobody else in it
    assert session.get(User, awaiting_agency.id) is not None  # the agency decides
    assert session.get(User, recent.id) is not None
    assert session.scalar(select(Attachment).where(Attachment.user_id == stale.id)) is None
    assert session.scalar(select(Token).where(Token.user_id == stale.id)) is None
    actions = session.scalars(select(AuditEntry.action)).all()
    assert actions.count("registration_expired") == 2


def test_the_purge_delay_is_configuration(session, sirene, manager, monkeypatch):
    stale = joiner(session, sirene, 1)
    session.get(User, stale.id).created_at = utcnow() - dt.timedelta(days=3)
    session.commit()
    assert uc.purge_expired_registrations(session, lambda _id: None) == 0
    monkeypatch.setenv("PENDING_REGISTRATION_DAYS", "2")
    assert uc.purge_expired_registrations(session, lambda _id: None) == 1


def test_a_registration_whose_document_cannot_be_deleted_waits_for_the_next_round(
    session, sirene, manager
):
    stale = joiner(session, sirene, 1)
    session.get(User, stale.id).created_at = utcnow() - dt.timedelta(days=15)
    session.commit()

    def files_down(_file_id):
        raise ConnectionError("files unavailable")

    assert uc.purge_expired_registrations(session, files_down) == 0
    assert session.get(User, stale.id) is not None


# ---------------------------------------------------------------- SIRENE at validation


def closed_registration(session, sirene):
    return register_and_confirm(
        session,
        sirene,
        siret="35600000018723",
        email="f@example.org",
        email_confirm="f@example.org",
    )


def test_validating_a_closed_establishment_needs_an_explicit_confirmation(session, sirene, agent):
    user = closed_registration(session, sirene)
    with pytest.raises(Conflict) as refused:
        uc.validate_user(session, agent, user.id)
    assert refused.value.code == "validation.sirene_closed"
    assert "fermé" in refused.value.message
    assert session.get(Organisation, user.org_id).status == "pending"
    with pytest.raises(InvalidInput) as no_reason:
        uc.validate_user(session, agent, user.id, confirmation={"confirm": True, "reason": " "})
    assert no_reason.value.code == "validation.reason_required"


def test_a_confirmed_validation_of_a_closed_establishment_is_in_the_audit_trail(
    session, sirene, agent
):
    user = closed_registration(session, sirene)
    row = uc.validate_user(
        session,
        agent,
        user.id,
        confirmation={"confirm": True, "reason": "Reprise par un nouvel établissement"},
    )
    assert row["state"] == "validated"
    [entry] = [
        h
        for h in uc.organisation_history(session, agent, user.org_id)
        if h["action"] == "organisation_validated"
    ]
    assert entry["detail"] == {
        "sirene_status": "closed",
        "sirene_override_reason": "Reprise par un nouvel établissement",
    }


def test_validating_a_siret_unknown_to_sirene_needs_an_explicit_confirmation(
    session, sirene, agent
):
    sirene.down = True
    user = register_and_confirm(session, sirene, siret="73282932000074")
    sirene.down, sirene.known = False, {}
    uc.refresh_sirene(session, sirene)
    assert session.get(Organisation, user.org_id).sirene_status == "not_found"
    with pytest.raises(Conflict) as refused:
        uc.validate_user(session, agent, user.id)
    assert refused.value.code == "validation.sirene_unknown"
    assert "inconnu" in refused.value.message
    uc.validate_user(session, agent, user.id, confirmation={"confirm": True, "reason": "Créé hier"})


# ---------------------------------------------------------------- plain users


def test_a_plain_user_gets_403_on_manager_actions_inside_their_own_organisation(
    session, sirene, agent, manager
):
    plain = joiner(session, sirene, 1)
    uc.validate_user(session, manager, plain.id)
    other = joiner(session, sirene, 2)
    user = caller_for(session, "j1@example.org")
    for call in (
        lambda: uc.list_users(session, user),
        lambda: uc.create_user(session, user, manager.org_id, {}),
        lambda: uc.validate_user(session, user, other.id),
        lambda: uc.deactivate_user(session, user, manager.user_id),
        lambda: uc.update_user(session, user, manager.user_id, {}),
    ):
        with pytest.raises(Forbidden) as refused:
            call()
        assert refused.value.code == "forbidden.manager_only"
        assert "éservé au gestionnaire de compte" in refused.value.message
    assert uc.get_organisation(session, user, manager.org_id)["id"] == manager.org_id


def test_a_plain_user_still_gets_404_for_another_organisation(session, sirene, agent, manager):
    plain = joiner(session, sirene, 1)
    uc.validate_user(session, manager, plain.id)
    other = register_and_confirm(
        session,
        sirene,
        siret="73282932000074",
        email="o@example.org",
        email_confirm="o@example.org",
    )
    uc.validate_user(session, agent, other.id)
    user = caller_for(session, "j1@example.org")
    with pytest.raises(NotFound):
        uc.list_users(session, user, other.org_id)
    with pytest.raises(NotFound):
        uc.deactivate_user(session, user, other.id)


# ---------------------------------------------------------------- answer first, work after


def test_a_password_reset_answers_before_any_work_on_the_address(session, agent):
    later = []
    known = uc.request_password_reset(session, "agent@agence.example", defer=later.append)
    unknown = uc.request_password_reset(session, "nobody@example.org", defer=later.append)
    assert known == unknown and len(later) == 2
    assert events(session, "password_reset_requested") == []
    for job in later:
        job(session)
    [sent] = events(session, "password_reset_requested")
    assert sent["email"] == "agent@agence.example" and sent["reset_token"]


def test_a_carte_password_reset_answers_before_any_work_on_the_identifier(session, agent):
    carte.ensure_account(
        session,
        {
            "kind": "establishment",
            "identifier": "0750654D",
            "label": "Lycée",
            "contact_email": "lycee@example.org",
        },
        "pass-word-1234",
    )
    later = []
    known = carte.request_password_reset(session, "0750654d", defer=later.append)
    unknown = carte.request_password_reset(session, "NOBODY-1", defer=later.append)
    assert known == unknown and len(later) == 2
    assert events(session, "password_reset_requested") == []
    for job in later:
        job(session)
    [sent] = events(session, "password_reset_requested")
    assert sent["email"] == "lycee@example.org"


def test_a_registration_answers_before_the_account_is_made(session, sirene, agent):
    later = []
    answer = uc.register(session, form(), [], sirene, defer=later.append)
    again = uc.register(session, form(), [], sirene, defer=later.append)
    assert answer == again
    assert session.scalar(select(User).where(User.email == "claire@example.org")) is None
    for job in later:
        job(session)
    assert len(events(session, "user_registered")) == 1
    assert session.scalars(select(Outbox)).all()


def test_registrations_answered_but_not_yet_made_count_against_the_organisations_limit(
    session, sirene, manager
):
    later = []
    for n in range(rules.MAX_PENDING_PER_ORG):
        email = f"quick{n}@example.org"
        uc.register(session, form(email=email, email_confirm=email), [], sirene,
                    defer=later.append)  # fmt: skip
    with pytest.raises(Conflict) as refused:
        uc.register(session, form(email="q@example.org", email_confirm="q@example.org"), [],
                    sirene, defer=later.append)  # fmt: skip
    assert refused.value.code == "registration.too_many_pending"
    for job in later:
        job(session)
    assert session.scalar(select(User).where(User.email == "quick0@example.org")) is not None
    with pytest.raises(Conflict):  # now pending users, no longer in flight: the same limit
        uc.register(session, form(email="q@example.org", email_confirm="q@example.org"), [],
                    sirene)  # fmt: skip


def test_the_same_address_again_is_not_one_more_pending_registration(session, sirene, manager):
    for n in range(rules.MAX_PENDING_PER_ORG):
        joiner(session, sirene, n)
    # a client retrying the last registration after a lost answer: the same
    # answer, nothing created, not « too many pending »
    again = f"j{rules.MAX_PENDING_PER_ORG - 1}@example.org"
    answer = uc.register(session, form(email=again, email_confirm=again), [], sirene)
    assert answer["status"] == "confirmation_sent"

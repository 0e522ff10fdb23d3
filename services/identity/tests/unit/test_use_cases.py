"""Section I of the Karoussel guide, use case by use case, on an in-memory database."""

import datetime as dt

import pytest
from sqlalchemy import select

from identity import use_cases as uc
from identity.models import AuditEntry, Organisation, Outbox, Session, User
from kit.context import Caller
from kit.db import utcnow
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthenticated

PASSWORD = "correct horse 42"


def form(**overrides):
    data = {
        "account_type": "OFA",
        "siret": "41816609600051",
        "nda": "11930882293",
        "apprentice_count": 12,
        "last_name": "Martin",
        "first_name": "Claire",
        "email": "claire@example.org",
        "email_confirm": "claire@example.org",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    data.update(overrides)
    return data


def events(session, event_type):
    return [
        r.payload
        for r in session.scalars(
            select(Outbox).where(Outbox.event_type == event_type).order_by(Outbox.created_at)
        )
    ]


def caller_for(session, email):
    user = session.scalar(select(User).where(User.email == email))
    claims = uc.caller_claims(session, user)
    return Caller(user_id=claims["user_id"], org_id=claims["org_id"], roles=tuple(claims["roles"]))


@pytest.fixture
def agent(session):
    uc.ensure_admin(session, "agent@agence.example", PASSWORD)
    return caller_for(session, "agent@agence.example")


def register_and_confirm(session, sirene, **overrides):
    uc.register(
        session,
        form(**overrides),
        [{"file_id": "f1", "kind": "habilitation", "name": "habilitation.pdf"}],
        sirene,
    )
    token = events(session, "user_registered")[-1]["confirm_token"]
    uc.confirm_email(session, token)
    email = overrides.get("email", "claire@example.org")
    return session.scalar(select(User).where(User.email == email))


@pytest.fixture
def manager(session, sirene, agent):
    user = register_and_confirm(session, sirene)
    uc.validate_user(session, agent, user.id)
    return caller_for(session, "claire@example.org")


def test_registration_fills_the_organisation_from_sirene_and_emits_a_confirmation(session, sirene):
    result = uc.register(session, form(), [], sirene)
    assert result["status"] == "confirmation_sent"
    org = session.scalar(select(Organisation))
    assert (org.name, org.sirene_status, org.status) == ("CFA DE L'EXEMPLE", "ok", "pending")
    [event] = events(session, "user_registered")
    assert event["email"] == "claire@example.org" and len(event["confirm_token"]) > 30


def test_registration_with_a_known_address_answers_the_same_and_creates_nothing(session, sirene):
    first = uc.register(session, form(), [], sirene)
    second = uc.register(session, form(siret="73282932000074"), [], sirene)
    assert first == second
    assert session.query(User).count() == 1
    assert session.query(Organisation).count() == 1


def test_bad_registration_reports_every_field_and_changes_nothing(session, sirene):
    with pytest.raises(InvalidInput) as exc:
        uc.register(
            session, form(siret="41816609600052", nda="12", email_confirm="x@y.fr"), [], sirene
        )
    assert exc.value.code == "registration.invalid"
    assert set(exc.value.details["fields"]) == {"siret", "nda", "email_confirm"}
    assert session.query(User).count() == 0


def test_unknown_siret_is_refused_on_the_siret_field(session, sirene):
    with pytest.raises(InvalidInput) as exc:
        uc.register(session, form(siret="35600000000048"), [], sirene)
    assert exc.value.details["fields"]["siret"]
    assert session.query(Organisation).count() == 0


def test_registry_down_accepts_and_blocks_validation_until_resolved(session, sirene, agent):
    sirene.down = True
    user = register_and_confirm(session, sirene)
    org = session.get(Organisation, user.org_id)
    assert org.sirene_status == "pending" and org.name is None
    with pytest.raises(Conflict) as exc:
        uc.validate_user(session, agent, user.id)
    assert exc.value.code == "validation.sirene_pending"
    sirene.down = False
    assert uc.refresh_sirene(session, sirene) == 1
    assert org.name == "CFA DE L'EXEMPLE"
    assert uc.validate_user(session, agent, user.id)["state"] == "validated"


def test_closed_establishment_is_flagged(session, sirene):
    uc.register(session, form(siret="35600000018723"), [], sirene)
    assert session.scalar(select(Organisation)).sirene_status == "closed"


def test_confirmation_link_is_single_use_and_expires(session, sirene):
    uc.register(session, form(), [], sirene)
    token = events(session, "user_registered")[-1]["confirm_token"]
    assert uc.confirm_email(session, token)["status"] == "awaiting_validation"
    with pytest.raises(InvalidInput) as used:
        uc.confirm_email(session, token)
    assert used.value.code == "token.used"
    uc.register(
        session, form(email="late@example.org", email_confirm="late@example.org"), [], sirene
    )
    late = events(session, "user_registered")[-1]["confirm_token"]
    with pytest.raises(InvalidInput) as expired:
        uc.confirm_email(session, late, now=utcnow() + dt.timedelta(days=3))
    assert expired.value.code == "token.expired"
    with pytest.raises(InvalidInput) as bogus:
        uc.confirm_email(session, "x" * 40)
    assert bogus.value.code == "token.invalid"


def test_agency_validation_makes_the_first_user_manager(session, sirene, agent):
    user = register_and_confirm(session, sirene)
    row = uc.validate_user(session, agent, user.id)
    assert row["role"] == "manager" and row["state"] == "validated"
    assert session.get(Organisation, user.org_id).status == "validated"
    assert events(session, "user_validated")[-1]["role"] == "manager"
    [validated] = events(session, "organisation_validated")
    org = session.get(Organisation, user.org_id)
    assert (validated["org_id"], validated["siret"], validated["account_type"]) == (
        org.id,
        org.siret,
        org.account_type,
    )
    assert "email" not in validated and validated["validated_at"]
    manager = uc.validate_user(session, agent, user.id)  # again: nothing new to announce
    assert manager["state"] == "validated" and len(events(session, "organisation_validated")) == 1


def test_only_the_agency_validates_a_new_organisation(session, sirene, agent, manager):
    other = register_and_confirm(
        session,
        sirene,
        siret="73282932000074",
        email="o@example.org",
        email_confirm="o@example.org",
    )
    with pytest.raises(NotFound):
        uc.validate_user(session, manager, other.id)


def test_rejection_needs_a_reason_and_is_recorded(session, sirene, agent):
    user = register_and_confirm(session, sirene)
    with pytest.raises(InvalidInput):
        uc.reject_user(session, agent, user.id, "  ")
    row = uc.reject_user(session, agent, user.id, "Habilitation non signée")
    assert row["state"] == "rejected"
    assert events(session, "user_rejected")[-1]["reason"] == "Habilitation non signée"
    history = uc.organisation_history(session, agent, user.org_id)
    assert [h["action"] for h in history][-1] == "rejected"
    assert history[-1]["detail"]["reason"] == "Habilitation non signée"


def test_managers_create_up_to_five_accounts_and_two_managers(session, manager):
    org_id = manager.org_id
    uc.create_user(
        session,
        manager,
        org_id,
        {"last_name": "B", "first_name": "b", "email": "b@example.org", "role": "manager"},
    )
    with pytest.raises(Conflict) as third_manager:
        uc.create_user(
            session,
            manager,
            org_id,
            {"last_name": "C", "first_name": "c", "email": "c@example.org", "role": "manager"},
        )
    assert third_manager.value.code == "quota.managers"
    for n in range(3):
        uc.create_user(
            session,
            manager,
            org_id,
            {"last_name": f"U{n}", "first_name": "u", "email": f"u{n}@example.org"},
        )
    with pytest.raises(Conflict) as sixth:
        uc.create_user(
            session,
            manager,
            org_id,
            {"last_name": "F", "first_name": "f", "email": "f@example.org"},
        )
    assert sixth.value.code == "quota.users"
    assert len(uc.list_users(session, manager)) == 5
    invited = events(session, "user_invited")
    assert len(invited) == 4 and all(e["invite_token"] for e in invited)


def test_one_address_is_one_user_whatever_its_case(session, manager):
    with pytest.raises(Conflict) as exc:
        uc.create_user(
            session,
            manager,
            manager.org_id,
            {"last_name": "X", "first_name": "x", "email": "CLAIRE@example.org"},
        )
    assert exc.value.code == "user.email_taken"


def test_users_list_has_the_guide_columns_and_three_states(session, manager):
    uc.create_user(
        session,
        manager,
        manager.org_id,
        {
            "last_name": "durand",
            "first_name": "Paul",
            "email": "paul@example.org",
            "firm_name": "Cabinet Comptable",
        },
    )
    rows = {r["email"]: r for r in uc.list_users(session, manager)}
    paul = rows["paul@example.org"]
    assert paul["display_name"] == "DURAND Paul"
    assert paul["organisation_or_firm"] == "Cabinet Comptable"
    assert paul["profile"] == "Utilisateur CFA/OFA"
    assert (paul["state"], paul["state_colour"]) == ("not_activated", "rouge")
    assert rows["claire@example.org"]["state_colour"] == "vert"
    uc.confirm_user_email(session, manager, paul["id"])
    assert {r["email"]: r for r in uc.list_users(session, manager)}["paul@example.org"][
        "state"
    ] == "validated"


def test_invited_user_sets_a_password_and_signs_in(session, manager):
    uc.create_user(
        session,
        manager,
        manager.org_id,
        {"last_name": "Durand", "first_name": "Paul", "email": "paul@example.org"},
    )
    token = events(session, "user_invited")[-1]["invite_token"]
    with pytest.raises(InvalidInput):
        uc.accept_invitation(session, token, "short", "short")
    uc.accept_invitation(session, token, PASSWORD, PASSWORD)
    result = uc.authenticate(session, "PAUL@example.org", PASSWORD)
    assert result["caller"]["roles"] == ["user"]


def test_self_registration_into_a_validated_organisation_is_validated_by_its_manager(
    session, sirene, manager
):
    joiner = register_and_confirm(
        session, sirene, email="j@example.org", email_confirm="j@example.org"
    )
    assert joiner.org_id == manager.org_id
    assert events(session, "email_confirmed")[-1]["manager_emails"] == ["claire@example.org"]
    assert uc.validate_user(session, manager, joiner.id)["role"] == "user"


def test_another_organisations_users_are_invisible(session, sirene, agent, manager):
    other = register_and_confirm(
        session,
        sirene,
        siret="73282932000074",
        email="o@example.org",
        email_confirm="o@example.org",
    )
    uc.validate_user(session, agent, other.id)
    other_manager = caller_for(session, "o@example.org")
    for call in (
        lambda: uc.list_users(session, other_manager, manager.org_id),
        lambda: uc.create_user(session, other_manager, manager.org_id, {}),
        lambda: uc.deactivate_user(session, other_manager, manager.user_id),
        lambda: uc.update_user(session, other_manager, manager.user_id, {}),
        lambda: uc.get_organisation(session, other_manager, manager.org_id),
    ):
        with pytest.raises(NotFound):
            call()


def test_parent_og_managers_create_users_for_the_cfas_they_manage(session, sirene, agent, manager):
    og = register_and_confirm(
        session,
        sirene,
        siret="73282932000074",
        account_type="OG",
        email="og@example.org",
        email_confirm="og@example.org",
    )
    uc.validate_user(session, agent, og.id)
    uc.set_parent(session, agent, manager.org_id, og.org_id)
    og_manager = caller_for(session, "og@example.org")
    row = uc.create_user(
        session,
        og_manager,
        manager.org_id,
        {"last_name": "Cfa", "first_name": "user", "email": "cfa-user@example.org"},
    )
    assert row["org_id"] == manager.org_id
    assert len(uc.list_users(session, og_manager)) == 3  # own org + managed CFA


def test_sign_in_is_the_same_for_unknown_address_and_wrong_password(session, manager):
    with pytest.raises(Unauthenticated) as unknown:
        uc.authenticate(session, "nobody@example.org", PASSWORD)
    with pytest.raises(Unauthenticated) as wrong:
        uc.authenticate(session, "claire@example.org", "wrong password 1")
    assert unknown.value.args == wrong.value.args


def test_sign_in_is_rate_limited_per_account(session, manager):
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            uc.authenticate(session, "claire@example.org", "wrong password 1")
    with pytest.raises(TooManyRequests) as exc:
        uc.authenticate(session, "claire@example.org", PASSWORD)
    assert exc.value.details["retry_after"] > 0


def test_pending_account_cannot_sign_in(session, sirene):
    register_and_confirm(session, sirene)
    with pytest.raises(Forbidden) as exc:
        uc.authenticate(session, "claire@example.org", PASSWORD)
    assert exc.value.code == "auth.awaiting_validation"


def test_sessions_are_revoked_by_sign_out_password_change_and_deactivation(session, manager):
    first = uc.authenticate(session, "claire@example.org", PASSWORD)["session_id"]
    uc.end_session(session, manager, first)
    assert first in uc.revoked_sessions(session, None)["revoked"]
    uc.create_user(
        session,
        manager,
        manager.org_id,
        {"last_name": "B", "first_name": "b", "email": "b@example.org", "role": "manager"},
    )
    second = uc.authenticate(session, "claire@example.org", PASSWORD)["session_id"]
    uc.change_password(session, manager, PASSWORD, "another horse 43", "another horse 43")
    assert second in uc.revoked_sessions(session, None)["revoked"]
    third = uc.authenticate(session, "claire@example.org", "another horse 43")["session_id"]
    b = caller_for(session, "b@example.org")
    uc.confirm_user_email(session, manager, b.user_id)
    uc.deactivate_user(session, b, manager.user_id)
    assert session.get(Session, third).revoked_at is not None
    with pytest.raises(Unauthenticated):
        uc.get_me(session, manager)


def test_the_last_manager_cannot_be_removed(session, manager):
    with pytest.raises(Conflict) as exc:
        uc.deactivate_user(session, manager, manager.user_id)
    assert exc.value.code == "quota.last_manager"


def test_password_reset_is_silent_for_unknown_addresses(session, manager):
    assert uc.request_password_reset(session, "nobody@example.org") == uc.request_password_reset(
        session, "claire@example.org"
    )
    [event] = events(session, "password_reset_requested")
    uc.reset_password(session, event["reset_token"], "brand new pass 9", "brand new pass 9")
    assert uc.authenticate(session, "claire@example.org", "brand new pass 9")["session_id"]
    with pytest.raises(InvalidInput) as reused:
        uc.reset_password(session, event["reset_token"], "brand new pass 9", "brand new pass 9")
    assert reused.value.code == "token.used"


def test_every_account_change_is_in_the_history(session, manager, agent):
    uc.create_user(
        session,
        manager,
        manager.org_id,
        {"last_name": "B", "first_name": "b", "email": "b@example.org"},
    )
    b_id = session.scalar(select(User.id).where(User.email == "b@example.org"))
    uc.update_user(session, manager, b_id, {"role": "manager"})
    uc.deactivate_user(session, manager, b_id)
    actions = [h["action"] for h in uc.organisation_history(session, agent, manager.org_id)]
    assert actions == [
        "registered",
        "email_confirmed",
        "organisation_validated",
        "validated",
        "created",
        "role_changed",
        "deactivated",
    ]
    assert session.query(AuditEntry).filter(AuditEntry.actor_id == manager.user_id).count() >= 3


def test_history_and_organisation_list_are_for_the_agency_only(session, manager):
    with pytest.raises(Forbidden):
        uc.organisation_history(session, manager, manager.org_id)
    with pytest.raises(Forbidden):
        uc.list_organisations(session, manager)


def test_a_revocation_stamped_before_a_poll_but_committed_after_it_is_still_seen(session, manager):
    sid = uc.authenticate(session, "claire@example.org", PASSWORD)["session_id"]
    stamped = utcnow()
    # the gateway polls while the revoking transaction is still open (hashing)
    poll = uc.revoked_sessions(session, None, now=stamped + dt.timedelta(milliseconds=300))
    assert sid not in poll["revoked"]
    session.get(Session, sid).revoked_at = stamped  # …then it commits
    session.commit()
    later = uc.revoked_sessions(session, poll["now"], now=stamped + dt.timedelta(seconds=1))
    assert sid in later["revoked"]

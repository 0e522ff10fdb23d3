"""Two-factor sign-in (identity.totp): enrolment, sign-in with a code or a
recovery code, replays and wrong codes refused, staff sent to enrolment,
re-authentication."""

import datetime as dt

import pytest
from sqlalchemy import select

from identity import carte, totp
from identity import use_cases as uc
from identity.models import RecoveryCode, Session, TotpCredential
from kit.db import utcnow
from kit.errors import Conflict, Forbidden, InvalidInput, TooManyRequests, Unauthenticated

from .test_use_cases import PASSWORD, caller_for, register_and_confirm

T0 = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def code(secret: str, when: dt.datetime) -> str:
    return totp.code_at(secret, when.timestamp())


@pytest.fixture
def agent(session):
    uc.ensure_admin(session, "agent@agence.example", PASSWORD)
    return caller_for(session, "agent@agence.example")


@pytest.fixture
def manager(session, sirene, agent):
    user = register_and_confirm(session, sirene)
    uc.validate_user(session, agent, user.id)
    return caller_for(session, "claire@example.org")


def enrol(session, email, when=T0):
    """Signs in, enrols; returns (secret, recovery codes, signed-in result)."""
    first = uc.authenticate(session, email, PASSWORD, now=when)
    started = totp.begin_enrolment(session, first["session_id"], now=when)
    done = totp.confirm_enrolment(
        session, first["session_id"], code(started["secret"], when), now=when
    )
    return started["secret"], done["recovery_codes"], done


def test_staff_who_have_not_enrolled_get_a_session_good_only_for_enrolment(session, agent):
    result = uc.authenticate(session, "agent@agence.example", PASSWORD, now=T0)
    assert result["status"] == "totp_enrolment_required"
    assert result["caller"]["mfa"] == "enrol"
    with pytest.raises(Unauthenticated):
        totp.reauthenticate(session, result["session_id"], "123456", now=T0)
    started = totp.begin_enrolment(session, result["session_id"], now=T0)
    assert started["uri"].startswith("otpauth://totp/")
    assert "issuer=Plateforme" in started["uri"]


def test_staff_may_sign_in_with_a_password_only_when_configured_so(session, agent, monkeypatch):
    monkeypatch.setenv("STAFF_TOTP_REQUIRED", "0")
    result = uc.authenticate(session, "agent@agence.example", PASSWORD, now=T0)
    assert result["status"] == "signed_in"


def test_a_manager_without_totp_signs_in_with_the_password(session, manager):
    result = uc.authenticate(session, "claire@example.org", PASSWORD, now=T0)
    assert result["status"] == "signed_in" and result["caller"]["totp"] is False


def test_enrolment_shows_recovery_codes_once_stored_hashed_and_renews_the_session(session, manager):
    first = uc.authenticate(session, "claire@example.org", PASSWORD, now=T0)
    secret, codes, done = enrol(session, "claire@example.org")
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(stored) == 10 and not set(codes) & set(stored)
    assert done["status"] == "signed_in" and done["caller"]["totp"] is True
    assert done["session_id"] != first["session_id"]
    with pytest.raises(Conflict):
        totp.begin_enrolment(session, done["session_id"], now=T0)


def test_a_wrong_first_code_does_not_turn_totp_on(session, manager):
    first = uc.authenticate(session, "claire@example.org", PASSWORD, now=T0)
    totp.begin_enrolment(session, first["session_id"], now=T0)
    with pytest.raises(InvalidInput) as wrong:
        totp.confirm_enrolment(session, first["session_id"], "000000", now=T0)
    assert wrong.value.code == "auth.totp_invalid"
    assert session.get(TotpCredential, manager.user_id).confirmed_at is None


def test_sign_in_with_totp_takes_a_code_and_gives_a_new_session(session, manager):
    secret, _codes, _done = enrol(session, "claire@example.org")
    pending = uc.authenticate(session, "claire@example.org", PASSWORD, now=at(60))
    assert pending["status"] == "totp_required" and pending["caller"]["mfa"] == "pending"
    signed = totp.verify_sign_in(session, pending["session_id"], code(secret, at(60)), now=at(60))
    assert signed["status"] == "signed_in" and signed["caller"]["mfa_at"]
    assert session.get(Session, pending["session_id"]).revoked_at is not None
    assert signed["session_id"] != pending["session_id"]


def test_a_replayed_code_is_refused(session, manager):
    secret, _codes, _done = enrol(session, "claire@example.org")
    one = uc.authenticate(session, "claire@example.org", PASSWORD, now=at(60))
    used = code(secret, at(60))
    totp.verify_sign_in(session, one["session_id"], used, now=at(60))
    two = uc.authenticate(session, "claire@example.org", PASSWORD, now=at(65))
    with pytest.raises(Unauthenticated) as replay:
        totp.verify_sign_in(session, two["session_id"], used, now=at(65))
    assert replay.value.code == "auth.totp_replayed"
    # the enrolment's code (step of T0) is older still
    with pytest.raises(Unauthenticated):
        totp.verify_sign_in(session, two["session_id"], code(secret, T0), now=at(65))
    totp.verify_sign_in(session, two["session_id"], code(secret, at(90)), now=at(90))


def test_a_recovery_code_signs_in_once(session, manager):
    _secret, codes, _done = enrol(session, "claire@example.org")
    one = uc.authenticate(session, "claire@example.org", PASSWORD, now=at(60))
    assert totp.verify_sign_in(session, one["session_id"], codes[0].upper(), now=at(60))
    two = uc.authenticate(session, "claire@example.org", PASSWORD, now=at(70))
    with pytest.raises(Unauthenticated):
        totp.verify_sign_in(session, two["session_id"], codes[0], now=at(70))
    assert totp.remaining_recovery_codes(session, manager.user_id) == 9


def test_wrong_codes_are_rate_limited(session, manager):
    secret, _codes, _done = enrol(session, "claire@example.org")
    pending = uc.authenticate(session, "claire@example.org", PASSWORD, now=at(60))
    for _ in range(totp.MAX_FAILURES):
        with pytest.raises(Unauthenticated):
            totp.verify_sign_in(session, pending["session_id"], "000000", now=at(60))
    with pytest.raises(TooManyRequests) as limited:
        totp.verify_sign_in(session, pending["session_id"], code(secret, at(60)), now=at(60))
    assert limited.value.code == "auth.totp_too_many_attempts"


def test_re_authentication_moves_the_sessions_fresh_code_time(session, manager):
    secret, _codes, done = enrol(session, "claire@example.org")
    again = totp.reauthenticate(session, done["session_id"], code(secret, at(600)), now=at(600))
    assert again["session_id"] == done["session_id"]
    assert again["caller"]["mfa_at"] == at(600).isoformat()


def test_a_pending_session_is_good_for_nothing_else(session, manager):
    enrol(session, "claire@example.org")
    pending = uc.authenticate(session, "claire@example.org", PASSWORD, now=at(60))
    with pytest.raises(Unauthenticated):
        totp.begin_enrolment(session, pending["session_id"], now=at(60))
    with pytest.raises(Unauthenticated):
        totp.reauthenticate(session, pending["session_id"], "123456", now=at(60))


def test_managers_may_turn_totp_off_staff_may_not(session, agent, manager):
    secret, _codes, done = enrol(session, "claire@example.org")
    off = totp.disable(session, done["session_id"], code(secret, at(60)), now=at(60))
    assert off["caller"]["totp"] is False
    assert uc.authenticate(session, "claire@example.org", PASSWORD, now=at(90))["status"] == (
        "signed_in"
    )
    staff_secret, _c, staff = enrol(session, "agent@agence.example", when=at(120))
    with pytest.raises(Forbidden):
        totp.disable(session, staff["session_id"], code(staff_secret, at(150)), now=at(150))


def test_carte_administrators_must_enrol_too(session, agent):
    created = carte.create_account(
        session,
        agent,
        {
            "kind": "admin",
            "identifier": "CARIF-ADMIN",
            "label": "Carif-Oref",
            "contact_email": "admin@carif.example",
        },
    )
    result = carte.authenticate(session, "carif-admin", created["password"], now=utcnow())
    assert result["status"] == "totp_enrolment_required"
    assert result["user"]["identifier"] == "CARIF-ADMIN"
    started = totp.begin_enrolment(session, result["session_id"])
    assert "CARIF-ADMIN" in started["uri"]

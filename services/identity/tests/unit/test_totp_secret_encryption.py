"""TOTP secrets encrypted at rest (identity.totp_secrets, issue 11): what the
database holds is not the secret; rows stored in clear before, or under a
key since rotated, still sign in and are sealed again with the first key; a
secret no configured key opens is refused in French and logged, never a 500;
the keys come from TOTP_ENCRYPTION_KEYS and are required outside development."""

import datetime as dt
import logging

import pyotp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from identity import totp, totp_secrets
from identity import use_cases as uc
from identity.models import TotpCredential, User
from kit.db import make_engine
from kit.errors import Unauthenticated, Unavailable

from .test_use_cases import PASSWORD, caller_for, register_and_confirm

T0 = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.UTC)
EMAIL = "claire@example.org"
OLD, NEW = Fernet.generate_key(), Fernet.generate_key()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def code(secret: str, when: dt.datetime) -> str:
    return totp.code_at(secret, when.timestamp())


def use_keys(*keys: bytes) -> totp_secrets.SecretBox:
    box = totp_secrets.SecretBox(keys)
    totp_secrets.configure(box)
    return box


@pytest.fixture(autouse=True)
def keys_from_the_environment_afterwards():
    yield
    totp_secrets.configure(None)


@pytest.fixture
def manager(session, sirene):
    uc.ensure_admin(session, "agent@agence.example", PASSWORD)
    user = register_and_confirm(session, sirene)
    uc.validate_user(session, caller_for(session, "agent@agence.example"), user.id)
    return user


def enrol(session, when=T0) -> str:
    first = uc.authenticate(session, EMAIL, PASSWORD, now=when)
    secret = totp.begin_enrolment(session, first["session_id"], now=when)["secret"]
    totp.confirm_enrolment(session, first["session_id"], code(secret, when), now=when)
    return secret


def sign_in_with_code(session, secret: str, when: dt.datetime) -> dict:
    pending = uc.authenticate(session, EMAIL, PASSWORD, now=when)
    assert pending["status"] == "totp_required"
    return totp.verify_sign_in(session, pending["session_id"], code(secret, when), now=when)


def stored(session, user: User) -> str:
    session.expire_all()
    return session.scalar(select(TotpCredential.secret).where(TotpCredential.user_id == user.id))


# ---------------------------------------------------------------- at rest


def test_the_database_holds_an_encrypted_token_not_the_secret(session, manager):
    box = use_keys(NEW)
    secret = enrol(session)
    kept = stored(session, manager)
    assert secret not in kept and not totp_secrets.is_clear(kept)
    assert box.open(kept, manager.id) == (secret, False)
    assert sign_in_with_code(session, secret, at(60))["status"] == "signed_in"


def test_the_token_does_not_fit_the_former_64_character_column(session, manager):
    use_keys(NEW)
    enrol(session)
    assert len(stored(session, manager)) > 64
    assert TotpCredential.__table__.c.secret.type.length >= 200


def test_a_secret_stored_in_clear_before_still_signs_in_and_is_then_encrypted(session, manager):
    box = use_keys(NEW)
    secret = enrol(session)
    # as written before encryption
    session.get(TotpCredential, manager.id).secret = secret
    session.commit()
    assert stored(session, manager) == secret
    assert sign_in_with_code(session, secret, at(60))["status"] == "signed_in"
    kept = stored(session, manager)
    assert kept != secret and box.open(kept, manager.id) == (secret, False)


def test_a_wrong_code_on_a_secret_in_clear_also_seals_it(session, manager):
    use_keys(NEW)
    secret = enrol(session)
    session.get(TotpCredential, manager.id).secret = secret
    session.commit()
    pending = uc.authenticate(session, EMAIL, PASSWORD, now=at(60))
    wrong = "000000" if code(secret, at(60)) != "000000" else "111111"
    with pytest.raises(Unauthenticated, match="auth.totp_invalid"):
        totp.verify_sign_in(session, pending["session_id"], wrong, now=at(60))
    assert not totp_secrets.is_clear(stored(session, manager))


# ---------------------------------------------------------------- rotation


def test_after_a_rotation_a_secret_sealed_with_the_old_key_signs_in_and_moves_to_the_new(
    session, manager
):
    use_keys(OLD)
    secret = enrol(session)
    use_keys(NEW, OLD)  # the new key first: it encrypts, both decrypt
    assert sign_in_with_code(session, secret, at(60))["status"] == "signed_in"
    # the old key can now be dropped
    only_new = use_keys(NEW)
    assert only_new.open(stored(session, manager), manager.id) == (secret, False)
    assert sign_in_with_code(session, secret, at(120))["status"] == "signed_in"


def test_new_secrets_are_sealed_with_the_first_key_of_the_list(session, manager):
    use_keys(NEW, OLD)
    enrol(session)
    kept = stored(session, manager)
    assert totp_secrets.SecretBox([NEW]).open(kept, manager.id)[1] is False
    with pytest.raises(totp_secrets.Unreadable):
        totp_secrets.SecretBox([OLD]).open(kept, manager.id)


# ---------------------------------------------------------------- refusals


def test_a_secret_whose_key_was_removed_is_refused_in_french_and_logged(session, manager, caplog):
    use_keys(OLD)
    secret = enrol(session)
    before = stored(session, manager)
    use_keys(NEW)  # OLD dropped too early
    pending = uc.authenticate(session, EMAIL, PASSWORD, now=at(60))
    with caplog.at_level(logging.ERROR, logger="identity.totp"):
        with pytest.raises(Unavailable) as refused:
            totp.verify_sign_in(session, pending["session_id"], code(secret, at(60)), now=at(60))
    assert refused.value.status == 503 and refused.value.code == "auth.totp_unavailable"
    assert "double authentification" in refused.value.message
    assert manager.id in caplog.text and "TOTP_ENCRYPTION_KEYS" in caplog.text
    assert stored(session, manager) == before  # nothing rewritten, nothing lost
    use_keys(NEW, OLD)  # the key put back: the account signs in again
    assert sign_in_with_code(session, secret, at(90))["status"] == "signed_in"


def test_a_token_copied_onto_another_accounts_row_opens_nowhere():
    box = totp_secrets.SecretBox([NEW])
    sealed = box.seal(pyotp.random_base32(), "user-a")
    with pytest.raises(totp_secrets.Unreadable):
        box.open(sealed, "user-b")
    with pytest.raises(totp_secrets.Unreadable):
        box.open("not a token at all", "user-a")


def test_without_keys_in_production_every_totp_step_is_refused_cleanly(
    session, manager, monkeypatch, caplog
):
    use_keys(NEW)
    secret = enrol(session)
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("TOTP_ENCRYPTION_KEYS", raising=False)
    totp_secrets.configure(None)
    pending = uc.authenticate(session, EMAIL, PASSWORD, now=at(60))
    with caplog.at_level(logging.ERROR, logger="identity.totp"):
        with pytest.raises(Unavailable, match="auth.totp_unavailable"):
            totp.verify_sign_in(session, pending["session_id"], code(secret, at(60)), now=at(60))
    assert "TOTP_ENCRYPTION_KEYS is required" in caplog.text


# ---------------------------------------------------------------- settings


def test_the_keys_are_read_from_the_environment_first_one_encrypting():
    keys = f" {NEW.decode()} , {OLD.decode()} "
    environ = {"TOTP_ENCRYPTION_KEYS": keys, "APP_ENV": "production"}
    box = totp_secrets.load(environ)
    sealed = box.seal("JBSWY3DPEHPK3PXP", "u1")
    assert totp_secrets.SecretBox([NEW]).open(sealed, "u1") == ("JBSWY3DPEHPK3PXP", False)
    old = totp_secrets.SecretBox([OLD]).seal("JBSWY3DPEHPK3PXP", "u1")
    assert box.open(old, "u1") == ("JBSWY3DPEHPK3PXP", True)


def test_a_malformed_key_stops_loading_without_printing_it():
    with pytest.raises(totp_secrets.ConfigError, match="key 2 of 2") as error:
        totp_secrets.load({"TOTP_ENCRYPTION_KEYS": f"{NEW.decode()},not-a-key-but-a-secret"})
    assert "not-a-key-but-a-secret" not in str(error.value)


@pytest.mark.parametrize("app_env", ["production", "staging"])
def test_the_keys_are_required_outside_development(app_env, monkeypatch):
    with pytest.raises(totp_secrets.ConfigError, match="TOTP_ENCRYPTION_KEYS is required"):
        totp_secrets.load({"APP_ENV": app_env})
    monkeypatch.setenv("APP_ENV", app_env)
    monkeypatch.delenv("TOTP_ENCRYPTION_KEYS", raising=False)
    with pytest.raises(totp_secrets.ConfigError):  # the service then refuses to start
        totp_secrets.TotpKeys().setup()


def test_in_development_a_local_key_is_made_once_and_said_with_a_warning(tmp_path, caplog):
    environ = {"APP_ENV": "development", "DATA_DIR": str(tmp_path)}
    with caplog.at_level(logging.WARNING, logger="identity.totp_secrets"):
        first = totp_secrets.load(environ)
    assert "TOTP_ENCRYPTION_KEYS is not set" in caplog.text
    sealed = first.seal("JBSWY3DPEHPK3PXP", "u1")
    # another replica, or the next start, reads the same key
    assert totp_secrets.load(environ).open(sealed, "u1") == ("JBSWY3DPEHPK3PXP", False)
    key_file = tmp_path / totp_secrets.LOCAL_KEY_FILE
    assert key_file.stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == [key_file.name]


def test_without_a_data_folder_the_development_key_lives_in_the_process_only(caplog):
    with caplog.at_level(logging.WARNING, logger="identity.totp_secrets"):
        box = totp_secrets.load({})
    assert "lost at restart" in caplog.text
    assert box.open(box.seal("JBSWY3DPEHPK3PXP", "u1"), "u1")[0] == "JBSWY3DPEHPK3PXP"


# ---------------------------------------------------------------- migration


@pytest.mark.integration
def test_the_migration_widens_the_column_and_its_downgrade_opens_the_secrets(
    pg_database, monkeypatch
):
    from alembic import command
    from sqlalchemy.orm import sessionmaker

    from kit.migrate import _config, upgrade

    monkeypatch.setenv("TOTP_ENCRYPTION_KEYS", NEW.decode())
    url = pg_database("identity")
    upgrade("identity", url)
    engine = make_engine(url)
    use_keys(NEW)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        admin = uc.ensure_admin(s, "agent@agence.example", PASSWORD)
        first = uc.authenticate(s, "agent@agence.example", PASSWORD, now=T0)
        secret = totp.begin_enrolment(s, first["session_id"], now=T0)["secret"]
        assert len(stored(s, admin)) > 64  # PostgreSQL would refuse it in the old column
    command.downgrade(_config("identity", url), "7c3d9e1f2a40")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT secret FROM totp_credentials").scalar() == secret
    upgrade("identity", url)
    engine.dispose()

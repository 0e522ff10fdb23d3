"""Two-factor sign-in with TOTP (RFC 6238, ``pyotp``) and recovery codes.

Required for staff (agency administrators, carte administrators) unless
``STAFF_TOTP_REQUIRED=0``; optional for everyone else (organisation managers
enrol from their account page). A session remembers where its second factor
stands (``sessions.mfa``):

- ``ok``: nothing more is needed (no TOTP, or a code was given);
- ``pending``: the password was right, a code is awaited (``verify_sign_in``
  then replaces the session by a new one, so that a token taken before the
  code is worth nothing after it);
- ``enrol``: staff who have not enrolled yet may only enrol.

A code is accepted once: the time-step of the last accepted code is kept and
a code of that step or an earlier one is refused (a replay), even within the
one-step tolerance for clock drift. Wrong codes are rate-limited per account
(the sign-in attempts table, keyed ``totp:<user id>``). Recovery codes are
random, shown once at enrolment and kept as sha256 (they carry 50 bits of
randomness: a fast hash is enough, as for the e-mailed tokens).

``sessions.mfa_at`` is when a code was last given: the gateway asks for a
fresh one (``reauthenticate``) before sensitive actions.

Secrets are encrypted at rest (identity.totp_secrets); one that cannot be
decrypted (its key no longer configured) is logged and refused with a French
503 ``auth.totp_unavailable``, as is every operation when the keys are missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import time

import pyotp
from sqlalchemy import select

from identity import problems, totp_secrets
from identity import repository as repo
from identity.models import RecoveryCode, Session, SignInAttempt, TotpCredential, User
from kit.context import AGENCY_ADMIN
from kit.db import utcnow

log = logging.getLogger(__name__)

ISSUER = "Plateforme formations"
STEP_SECONDS = 30
DRIFT_STEPS = 1  # one step either side: clocks of phones drift
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
_DIGITS = re.compile(r"^[0-9]{6}$")


# ---------------------------------------------------------------- rules


def staff_must_enrol() -> bool:
    return os.environ.get("STAFF_TOTP_REQUIRED", "1").strip().lower() not in ("0", "false", "no")


def is_staff(session, user: User) -> bool:
    """Agency administrators and carte administrators read every organisation's data."""
    if user.role == AGENCY_ADMIN:
        return True
    from identity import carte  # carte imports use_cases, which imports this module

    return carte.is_carte_admin(session, user)


def credential(session, user_id: str, lock: bool = False) -> TotpCredential | None:
    return session.get(TotpCredential, user_id, with_for_update=lock or None)


def enrolled(session, user: User) -> bool:
    found = credential(session, user.id)
    return found is not None and found.confirmed_at is not None


def sign_in_state(session, user: User) -> str:
    """What a new session of ``user`` still needs: ok | pending | enrol."""
    if enrolled(session, user):
        return "pending"
    if staff_must_enrol() and is_staff(session, user):
        return "enrol"
    return "ok"


def claims(session, user: User, row: Session) -> dict:
    """What the gateway's token carries about the second factor."""
    return {
        "mfa": row.mfa,
        "totp": enrolled(session, user),
        "mfa_at": row.mfa_at.isoformat() if row.mfa_at else None,
    }


def _box() -> totp_secrets.SecretBox:
    try:
        return totp_secrets.current()
    except totp_secrets.ConfigError as exc:
        log.error("TOTP refused: %s", exc)
        raise problems.error("auth.totp_unavailable") from None


def _secret(cred: TotpCredential) -> str:
    """The secret in clear; one stored in clear or under an older key is
    sealed again with the first key (written by the caller's commit)."""
    box = _box()
    try:
        secret, stale = box.open(cred.secret, cred.user_id)
    except totp_secrets.Unreadable as exc:
        log.error(
            "TOTP secret of user %s cannot be decrypted (%s): was its key removed "
            "from %s too early?",
            cred.user_id,
            exc,
            totp_secrets.ENV,
        )
        raise problems.error("auth.totp_unavailable") from None
    if stale:
        cred.secret = box.seal(secret, cred.user_id)
    return secret


def _step(now: dt.datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _normalise(code) -> str:
    return re.sub(r"[\s]", "", code).lower() if isinstance(code, str) else ""


# ---------------------------------------------------------------- checking a code


def _failures(session, user: User, now: dt.datetime) -> None:
    count, oldest = repo.failures_since(
        session, email=f"totp:{user.id}", since=now - FAILURE_WINDOW
    )
    if count >= MAX_FAILURES:
        retry = int(((oldest or now) + FAILURE_WINDOW - now).total_seconds()) + 1
        raise problems.error(
            "auth.totp_too_many_attempts", minutes=max(1, retry // 60), retry_after=max(1, retry)
        )


def _refuse(session, user: User, ip: str, now: dt.datetime, error) -> None:
    session.add(SignInAttempt(email=f"totp:{user.id}", ip=(ip or "unknown")[:64], at=now))
    session.commit()
    raise error


def _match_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time-step (within the drift) whose code is ``code``, else None."""
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = _step(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # every candidate compared, in constant time
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def check_code(
    session,
    user: User,
    code,
    ip: str = "unknown",
    now: dt.datetime | None = None,
    allow_recovery: bool = True,
) -> str:
    """Accepts a TOTP code (once) or an unused recovery code; returns which.
    Errors: auth.totp_too_many_attempts (429), auth.totp_invalid (401),
    auth.totp_replayed (401), auth.totp_unavailable (503)."""
    now = now or utcnow()
    _failures(session, user, now)
    code = _normalise(code)
    cred = credential(session, user.id, lock=True)
    if cred is None or cred.confirmed_at is None:
        _refuse(session, user, ip, now, problems.error("auth.totp_invalid"))
    if _DIGITS.match(code):
        step = _match_step(_secret(cred), code, now)
        if step is not None and step <= cred.last_step:
            _refuse(session, user, ip, now, problems.error("auth.totp_replayed"))
        if step is not None:
            cred.last_step = step
            repo.clear_failures(session, f"totp:{user.id}")
            return "totp"
    elif allow_recovery and len(code) <= 20:
        row = session.get(RecoveryCode, _hash(code), with_for_update=True)
        if row is not None and row.user_id == user.id and row.used_at is None:
            row.used_at = now
            repo.clear_failures(session, f"totp:{user.id}")
            return "recovery"
    _refuse(session, user, ip, now, problems.error("auth.totp_invalid"))
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------- sessions


def live_session(session, session_id, states: tuple[str, ...], now: dt.datetime) -> Session:
    row = session.get(Session, session_id) if isinstance(session_id, str) else None
    if row is None or row.revoked_at is not None or row.expires_at <= now or row.mfa not in states:
        raise problems.error("auth.session_invalid", variant="totp")
    return row


def renew(session, row: Session, now: dt.datetime, mfa_at: dt.datetime | None) -> Session:
    """A new session in place of ``row`` (revoked), its second factor given."""
    from identity import use_cases as uc

    row.revoked_at = now
    fresh = Session(
        id=secrets.token_urlsafe(24),
        user_id=row.user_id,
        created_at=now,
        expires_at=now + uc.SESSION_TTL,
        mfa="ok",
        mfa_at=mfa_at,
    )
    session.add(fresh)
    return fresh


def _signed_in(session, user: User, row: Session) -> dict:
    from identity import carte
    from identity import use_cases as uc

    return (
        uc.signed_in(session, user, row)
        if user.role != carte.USER_ROLE
        else (carte.signed_in(session, user, row))
    )


def verify_sign_in(
    session, session_id, code, ip: str = "unknown", now: dt.datetime | None = None
) -> dict:
    """The second step of a sign-in: the code of a ``pending`` session.
    Returns what ``authenticate`` returns, for a new session."""
    from identity import use_cases as uc

    now = now or utcnow()
    row = live_session(session, session_id, ("pending",), now)
    user = session.get(User, row.user_id)
    if user is None or uc.user_state(user) != "validated":
        raise problems.error("auth.session_invalid", variant="totp")
    used = check_code(session, user, code, ip, now)
    fresh = renew(session, row, now, now)
    uc.audit(
        session,
        "signed_in_with_totp",
        org_id=user.org_id,
        subject=user.id,
        actor=user.id,
        factor=used,
    )
    session.commit()
    return _signed_in(session, user, fresh)


def begin_enrolment(session, session_id, now: dt.datetime | None = None) -> dict:
    """A new secret (not active until a first code confirms it):
    {secret, uri (otpauth://…), issuer, account}; the secret is stored encrypted.
    Errors: auth.totp_enrolled (409), auth.totp_unavailable (503)."""
    from identity import use_cases as uc

    now = now or utcnow()
    row = live_session(session, session_id, ("ok", "enrol"), now)
    user = session.get(User, row.user_id)
    if user is None or uc.user_state(user) != "validated":
        raise problems.error("auth.session_invalid", variant="totp")
    cred = credential(session, user.id, lock=True)
    if cred is not None and cred.confirmed_at is not None:
        raise problems.error("auth.totp_enrolled")
    box = _box()
    if cred is None:
        cred = TotpCredential(user_id=user.id, created_at=now, last_step=0)
        session.add(cred)
    secret = pyotp.random_base32()
    cred.secret = box.seal(secret, user.id)
    cred.created_at = now
    account = _account_name(session, user)
    session.commit()
    return {
        "secret": secret,
        "uri": pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
            name=account, issuer_name=ISSUER
        ),
        "issuer": ISSUER,
        "account": account,
    }


def _account_name(session, user: User) -> str:
    from identity import carte

    if user.role == carte.USER_ROLE:
        account = session.get(carte.CarteAccount, user.id)
        return account.identifier if account else user.id
    return user.email


def confirm_enrolment(
    session, session_id, code, ip: str = "unknown", now: dt.datetime | None = None
) -> dict:
    """The first code proves the secret is in the application: TOTP is on,
    recovery codes are made (shown this once) and the session renewed.
    Returns what ``authenticate`` returns plus ``recovery_codes``.
    Errors: auth.totp_invalid (422), auth.totp_not_started, auth.totp_enrolled
    (409), auth.totp_unavailable (503)."""
    from identity import use_cases as uc

    now = now or utcnow()
    row = live_session(session, session_id, ("ok", "enrol"), now)
    user = session.get(User, row.user_id)
    if user is None or uc.user_state(user) != "validated":
        raise problems.error("auth.session_invalid", variant="totp")
    _failures(session, user, now)
    cred = credential(session, user.id, lock=True)
    if cred is None:
        raise problems.error("auth.totp_not_started")
    if cred.confirmed_at is not None:
        raise problems.error("auth.totp_enrolled")
    normalised = _normalise(code)
    step = _match_step(_secret(cred), normalised, now) if _DIGITS.match(normalised) else None
    if step is None:
        _refuse(
            session,
            user,
            ip,
            now,
            problems.error(
                "auth.totp_invalid",
                variant="enrolment",
                fields={"code": [problems.CATALOGUE.message("auth.totp_invalid")]},
            ),
        )
    cred.last_step = step
    cred.confirmed_at = now
    session.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    for value in codes:
        session.add(RecoveryCode(code_hash=_hash(value), user_id=user.id, created_at=now))
    fresh = renew(session, row, now, now)
    uc.audit(session, "totp_enrolled", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return dict(_signed_in(session, user, fresh), recovery_codes=codes)


def reauthenticate(
    session, session_id, code, ip: str = "unknown", now: dt.datetime | None = None
) -> dict:
    """A fresh code before a sensitive action: ``mfa_at`` of the session moves
    to now. Returns the session's claims {caller, session_id, expires_at}."""
    from identity import use_cases as uc

    now = now or utcnow()
    row = live_session(session, session_id, ("ok",), now)
    user = session.get(User, row.user_id)
    if user is None or uc.user_state(user) != "validated":
        raise problems.error("auth.session_invalid", variant="totp")
    if not enrolled(session, user):
        raise problems.error("auth.totp_not_enrolled")
    check_code(session, user, code, ip, now, allow_recovery=False)
    row.mfa_at = now
    uc.audit(session, "reauthenticated", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return {
        "session_id": row.id,
        "expires_at": row.expires_at.isoformat(),
        "caller": uc.caller_claims(session, user, row),
    }


def disable(session, session_id, code, ip: str = "unknown", now: dt.datetime | None = None):
    """Organisation managers and users may turn TOTP off (a code needed);
    staff may not. Errors: auth.totp_required_for_staff (403)."""
    from identity import use_cases as uc

    now = now or utcnow()
    row = live_session(session, session_id, ("ok",), now)
    user = session.get(User, row.user_id)
    if user is None or uc.user_state(user) != "validated":
        raise problems.error("auth.session_invalid", variant="totp")
    if staff_must_enrol() and is_staff(session, user):
        raise problems.error("auth.totp_required_for_staff")
    check_code(session, user, code, ip, now, allow_recovery=False)
    session.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
    session.delete(credential(session, user.id))
    fresh = renew(session, row, now, None)
    uc.audit(session, "totp_disabled", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return _signed_in(session, user, fresh)


def remaining_recovery_codes(session, user_id: str) -> int:
    return len(
        session.scalars(
            select(RecoveryCode.code_hash).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )


def code_at(secret: str, when: float | None = None) -> str:
    """The code an application shows at ``when`` (tests and tools)."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).at(when if when is not None else time.time())

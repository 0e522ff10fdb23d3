"""Sign-in and sessions: authentication, revocation and passwords."""

from __future__ import annotations

import datetime as dt
import secrets

from identity import problems, security, totp
from identity import repository as repo
from identity.domain import registration as rules
from identity.domain.accounts import user_state
from identity.models import Outbox, Session, SignInAttempt, User
from identity.schemas import iso, person_payload
from identity.use_cases._common import (
    Defer,
    _run,
    acting_user,
    audit,
    consume_token,
    issue_token,
    revoke_sessions,
)
from identity.use_cases.organisations import profile
from kit import events
from kit.context import Caller
from kit.db import utcnow
from kit.outbox import emit

SESSION_TTL = dt.timedelta(hours=12)
FAILURE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 50

RESET_SENT = {
    "status": "reset_sent",
    "message": "Si un compte correspond à cette adresse, un courriel vient d'être envoyé.",
}


def refuse_if_throttled(session, account_key: str, ip: str, now: dt.datetime) -> None:
    """429 ``auth.too_many_attempts`` while the account or the address has
    failed too often within ``FAILURE_WINDOW`` (web and carte sign-ins alike)."""
    since = now - FAILURE_WINDOW
    for kwargs, limit in (
        ({"email": account_key}, MAX_FAILURES_PER_ACCOUNT),
        ({"ip": ip}, MAX_FAILURES_PER_IP),
    ):
        count, oldest = repo.failures_since(session, since=since, **kwargs)
        if count >= limit:
            retry = int(((oldest or now) + FAILURE_WINDOW - now).total_seconds()) + 1
            raise problems.error(
                "auth.too_many_attempts", minutes=max(1, retry // 60), retry_after=max(1, retry)
            )


def authenticate(
    session, email, password, ip: str = "unknown", now: dt.datetime | None = None
) -> dict:
    """Same answer for an unknown address and a wrong password; rate-limited
    by account and by address."""
    now = now or utcnow()
    email = rules.normalise_email(email if isinstance(email, str) else "")
    password = password if isinstance(password, str) else ""
    ip = (ip or "unknown")[:64]
    refuse_if_throttled(session, email, ip, now)
    user = repo.user_by_email(session, email) if email else None
    if not security.verify_password(user.password_hash if user else None, password[:1024]):
        session.add(SignInAttempt(email=email[:254], ip=ip, at=now))
        session.commit()
        raise problems.error("auth.invalid_credentials")
    state = user_state(user)
    if state != "validated":
        codes = {
            "not_activated": "auth.email_not_confirmed",
            "awaiting_validation": "auth.awaiting_validation",
            "rejected": "auth.account_disabled",
            "deactivated": "auth.account_disabled",
        }
        raise problems.error(codes[state])
    repo.clear_failures(session, email)
    row = open_session(session, user, now)
    session.commit()
    return signed_in(session, user, row)


SIGN_IN_STATUS = {
    "ok": "signed_in",
    "pending": "totp_required",
    "enrol": "totp_enrolment_required",
}


def open_session(session, user: User, now: dt.datetime) -> Session:
    """A new session; its second factor (identity.totp) decides its state."""
    row = Session(
        id=secrets.token_urlsafe(24),
        user_id=user.id,
        created_at=now,
        expires_at=now + SESSION_TTL,
        mfa=totp.sign_in_state(session, user),
    )
    session.add(row)
    return row


def signed_in(session, user: User, row: Session) -> dict:
    """{status, session_id, expires_at, caller, user}: ``status`` says whether
    a TOTP code (totp_required) or an enrolment (totp_enrolment_required) is
    still needed before the session is worth anything."""
    return {
        "status": SIGN_IN_STATUS[row.mfa],
        "session_id": row.id,
        "expires_at": iso(row.expires_at),
        "caller": caller_claims(session, user, row),
        "user": profile(session, user),
    }


def caller_claims(session, user: User, row: Session | None = None) -> dict:
    managed = (
        repo.child_org_ids(session, user.org_id) if user.role == "manager" and user.org_id else []
    )
    claims = {
        "user_id": user.id,
        "org_id": user.org_id,
        "roles": [user.role],
        "managed_org_ids": managed,
        # the submitter's name and address a transmission records, carried by
        # the gateway's token so that survey.transmit needs no call to identity
        "name": f"{user.last_name.upper()} {user.first_name}",
        "email": user.email,
    }
    if row is not None:
        claims.update(totp.claims(session, user, row))
    return claims


def end_session(session, caller: Caller, session_id: str, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    row = repo.session_by_id(session, session_id) if isinstance(session_id, str) else None
    if row is not None and row.user_id == caller.user_id and row.revoked_at is None:
        row.revoked_at = now
        session.commit()
    return {"status": "signed_out"}


REVOCATION_OVERLAP = dt.timedelta(minutes=2)  # far longer than any transaction


def revoked_sessions(session, since: str | None, now: dt.datetime | None = None) -> dict:
    """Sessions revoked since ``since`` (ISO-8601) that have not expired:
    the gateway polls this to refuse revoked tokens without an RPC per request.

    The ``now`` handed back (the gateway's next ``since``) lags by
    ``REVOCATION_OVERLAP``: ``revoked_at`` is stamped before its transaction
    commits (a password reset hashes in between), so a poll that runs in that
    gap must not move its cursor past a revocation it could not yet see.
    Ids already known come again for a while; the gateway keeps a set."""
    now = now or utcnow()
    try:
        start = dt.datetime.fromisoformat(since) if since else now - SESSION_TTL
    except (TypeError, ValueError):
        raise problems.error(
            "invalid_input", fields={"since": ["Date ISO-8601 attendue."]}
        ) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return {
        "now": iso(now - REVOCATION_OVERLAP),
        "revoked": repo.revoked_since(session, start, now),
    }


def request_password_reset(
    session, email, now: dt.datetime | None = None, defer: Defer = None
) -> dict:
    """Always the same answer, in the same time: the look-up and the link
    are ``defer``red until the answer is sent."""
    now = now or utcnow()
    email = rules.normalise_email(email if isinstance(email, str) else "")[: rules.EMAIL_MAX]
    if email:
        _run(defer, session, lambda s: send_password_reset(s, email, now))
    return dict(RESET_SENT)


def send_password_reset(session, email: str, now: dt.datetime) -> None:
    user = repo.user_by_email(session, email)
    if (
        user is not None
        and user_state(user) in ("validated", "awaiting_validation")
        and user.password_hash
    ):
        token = issue_token(session, user, "reset", now)
        audit(
            session, "password_reset_requested", org_id=user.org_id, subject=user.id, actor=user.id
        )
        emit(
            session,
            Outbox,
            events.PASSWORD_RESET_REQUESTED,
            dict(person_payload(user), reset_token=token),
        )
        session.commit()


def reset_password(
    session, token: str, password, password_confirm, now: dt.datetime | None = None
) -> dict:
    now = now or utcnow()
    errors: dict[str, list[str]] = {}
    rules.check_password(errors, password, password_confirm)
    if errors:
        raise problems.error("invalid_input", fields=errors)
    user = consume_token(session, token, "reset", now)
    user.password_hash = security.hash_password(password)
    revoke_sessions(session, user.id, now)
    repo.clear_failures(session, user.email)
    audit(session, "password_reset", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return {"status": "password_changed"}


def change_password(
    session, caller: Caller, current, password, password_confirm, now: dt.datetime | None = None
) -> dict:
    now = now or utcnow()
    user = acting_user(session, caller)
    if not security.verify_password(
        user.password_hash, current if isinstance(current, str) else ""
    ):
        raise problems.error(
            "invalid_input", fields={"current_password": ["Mot de passe actuel incorrect."]}
        )
    errors: dict[str, list[str]] = {}
    rules.check_password(errors, password, password_confirm)
    if errors:
        raise problems.error("invalid_input", fields=errors)
    user.password_hash = security.hash_password(password)
    revoke_sessions(session, user.id, now)
    audit(session, "password_changed", org_id=user.org_id, subject=user.id, actor=user.id)
    session.commit()
    return {"status": "password_changed"}

"""Every identity query."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, or_, select

from identity.models import (
    Attachment,
    AuditEntry,
    CarteAccount,
    CarteNetworkMember,
    Organisation,
    RegistrationAttempt,
    Session,
    SignInAttempt,
    Token,
    User,
)


def user(session, user_id: str) -> User | None:
    return session.get(User, user_id)


def organisation(session, org_id: str) -> Organisation | None:
    return session.get(Organisation, org_id)


def user_by_email(session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email))


def user_with_org(session, user_id: str) -> tuple[User, Organisation | None] | None:
    row = session.execute(
        select(User, Organisation)
        .outerjoin(Organisation, User.org_id == Organisation.id)
        .where(User.id == user_id)
    ).first()
    return tuple(row) if row else None


def org_by_siret(session, siret: str) -> Organisation | None:
    return session.scalar(select(Organisation).where(Organisation.siret == siret))


def live_users(session, org_id: str) -> list[User]:
    """Accounts that count against the quota: neither rejected nor deactivated."""
    return list(
        session.scalars(
            select(User).where(
                User.org_id == org_id, User.rejected_at.is_(None), User.deactivated_at.is_(None)
            )
        )
    )


def active_users(session, org_id: str) -> list[User]:
    """Accounts that take a quota slot: validated, neither rejected nor deactivated."""
    return [u for u in live_users(session, org_id) if u.validated_at is not None]


def pending_count(session, org_id: str, other_than: str | None = None) -> int:
    """Self-registrations of an organisation awaiting validation (those of
    another address than ``other_than``)."""
    query = select(func.count()).where(
        User.org_id == org_id,
        User.validated_at.is_(None),
        User.rejected_at.is_(None),
        User.deactivated_at.is_(None),
    )
    if other_than is not None:
        query = query.where(User.email != other_than)
    return session.scalar(query)


def registrations_in_flight(
    session, siret: str, since: dt.datetime, other_than: str | None = None
) -> int:
    """Registrations for ``siret`` answered but whose account is not made yet
    (of another address than ``other_than``)."""
    query = select(func.count()).where(
        RegistrationAttempt.siret == siret,
        RegistrationAttempt.finished_at.is_(None),
        RegistrationAttempt.at >= since,
    )
    if other_than is not None:
        query = query.where(RegistrationAttempt.email != other_than)
    return session.scalar(query)


def registration_attempts_since(
    session, email: str, since: dt.datetime
) -> tuple[int, dt.datetime | None]:
    count, oldest = session.execute(
        select(func.count(), func.min(RegistrationAttempt.at)).where(
            RegistrationAttempt.email == email, RegistrationAttempt.at >= since
        )
    ).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return count, oldest


def forget_registration_attempts(session, before: dt.datetime) -> int:
    return (
        session.query(RegistrationAttempt)
        .filter(RegistrationAttempt.at < before)
        .delete(synchronize_session=False)
    )


def registration_attempt(session, attempt_id: str) -> RegistrationAttempt | None:
    return session.get(RegistrationAttempt, attempt_id)


def expired_registrations(session, created_before: dt.datetime, limit: int = 50) -> list[User]:
    """Self-registrations past their delay: never validated (nor closed), and
    either never confirmed or joining an organisation the agency has already
    validated (those awaiting the agency's first decision stay in its queue).
    On PostgreSQL they are locked (SKIP LOCKED) until the caller commits: with
    several identity replicas each is purged by one of them only."""
    query = (
        select(User)
        .join(Organisation, User.org_id == Organisation.id)
        .where(
            User.created_at < created_before,
            User.validated_at.is_(None),
            User.rejected_at.is_(None),
            User.deactivated_at.is_(None),
            or_(User.email_confirmed_at.is_(None), Organisation.status == "validated"),
        )
        .order_by(User.created_at)
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(of=User, skip_locked=True)
    return list(session.scalars(query))


def attachments_of(session, user_id: str) -> list[Attachment]:
    return list(session.scalars(select(Attachment).where(Attachment.user_id == user_id)))


def org_attachments(session, org_id: str) -> list[Attachment]:
    return list(session.query(Attachment).filter(Attachment.org_id == org_id))


def delete_links(session, user_id: str) -> None:
    """The tokens and sessions of an account about to be deleted."""
    session.query(Token).filter(Token.user_id == user_id).delete(synchronize_session=False)
    session.query(Session).filter(Session.user_id == user_id).delete(synchronize_session=False)


def org_dependants(session, org_id: str) -> int:
    """How many accounts and child organisations still point at an organisation."""
    return session.scalar(select(func.count()).where(User.org_id == org_id)) + session.scalar(
        select(func.count()).where(Organisation.parent_id == org_id)
    )


def delete_org_attachments(session, org_id: str) -> None:
    session.query(Attachment).filter(Attachment.org_id == org_id).delete(synchronize_session=False)


def managers(session, org_id: str) -> list[User]:
    return [
        u for u in live_users(session, org_id) if u.role == "manager" and u.validated_at is not None
    ]


def users_of(session, org_ids: list[str]) -> list[tuple[User, Organisation]]:
    return list(
        session.execute(
            select(User, Organisation)
            .join(Organisation, User.org_id == Organisation.id)
            .where(User.org_id.in_(org_ids))
            .order_by(func.lower(User.last_name), func.lower(User.first_name))
        )
    )


def child_org_ids(session, org_id: str) -> list[str]:
    return list(session.scalars(select(Organisation.id).where(Organisation.parent_id == org_id)))


def token(session, token_hash: str) -> Token | None:
    return session.get(Token, token_hash, with_for_update=True)


def open_tokens(session, user_id: str, purpose: str) -> list[Token]:
    return list(
        session.scalars(
            select(Token).where(
                Token.user_id == user_id, Token.purpose == purpose, Token.used_at.is_(None)
            )
        )
    )


def failures_since(
    session, *, email: str | None = None, ip: str | None = None, since: dt.datetime
) -> tuple[int, dt.datetime | None]:
    """How many failed sign-ins since ``since``, and the oldest of them."""
    query = select(func.count(), func.min(SignInAttempt.at)).where(SignInAttempt.at >= since)
    if email is not None:
        query = query.where(SignInAttempt.email == email)
    if ip is not None:
        query = query.where(SignInAttempt.ip == ip)
    count, oldest = session.execute(query).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return count, oldest


def clear_failures(session, email: str) -> None:
    session.query(SignInAttempt).filter(SignInAttempt.email == email).delete()


def session_by_id(session, session_id: str) -> Session | None:
    return session.get(Session, session_id)


def live_sessions(session, user_id: str) -> list[Session]:
    return list(
        session.scalars(
            select(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
        )
    )


def revoked_since(session, since: dt.datetime, now: dt.datetime) -> list[str]:
    return list(
        session.scalars(
            select(Session.id).where(Session.revoked_at > since, Session.expires_at > now)
        )
    )


def history(session, org_id: str) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.org_id == org_id)
            .order_by(AuditEntry.at, AuditEntry.id)
        )
    )


def organisations(
    session,
    *,
    query: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Organisation], int]:
    stmt = select(Organisation)
    if status:
        stmt = stmt.where(Organisation.status == status)
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(
            or_(func.lower(Organisation.name).like(like), Organisation.siret.like(like))
        )
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(
        stmt.order_by(Organisation.created_at.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def awaiting_agency(session) -> list[tuple[User, Organisation]]:
    """Confirmed accounts of organisations the agency has not validated yet."""
    return list(
        session.execute(
            select(User, Organisation)
            .join(Organisation, User.org_id == Organisation.id)
            .where(
                Organisation.status == "pending",
                User.email_confirmed_at.is_not(None),
                User.validated_at.is_(None),
                User.rejected_at.is_(None),
            )
            .order_by(User.created_at)
        )
    )


def pending_sirene(session, limit: int = 20) -> list[Organisation]:
    """Organisations awaiting the registry. On PostgreSQL they are locked
    (SKIP LOCKED) until the caller commits: with several identity replicas,
    each organisation is looked up by one of them only."""
    query = select(Organisation).where(Organisation.sirene_status == "pending").limit(limit)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


# ---------------------------------------------------------------- carte accounts


def carte_account(session, user_id: str) -> CarteAccount | None:
    return session.get(CarteAccount, user_id)


def carte_account_by_identifier(session, identifier: str) -> CarteAccount | None:
    return session.scalar(select(CarteAccount).where(CarteAccount.identifier == identifier))


def network_members(session, account: CarteAccount) -> list[str]:
    """The UAI of a network's establishments, sorted; none (and no query)
    for an account that is not a network."""
    if account.kind != "network":
        return []
    return list(
        session.scalars(
            select(CarteNetworkMember.uai)
            .where(CarteNetworkMember.network_id == account.user_id)
            .order_by(CarteNetworkMember.uai)
        )
    )


def network_member_rows(session, network_id: str) -> list[CarteNetworkMember]:
    return list(
        session.scalars(
            select(CarteNetworkMember).where(CarteNetworkMember.network_id == network_id)
        )
    )


def carte_accounts(
    session, kind: str | None = None, query: str | None = None, limit: int = 1000
) -> list[tuple[CarteAccount, User]]:
    """Accounts of one ``kind`` (any if empty) whose identifier or name holds
    ``query`` (already cleaned), by kind and identifier."""
    stmt = select(CarteAccount, User).join(User, User.id == CarteAccount.user_id)
    if kind:
        stmt = stmt.where(CarteAccount.kind == kind)
    if query:
        like = f"%{query.lower()[:100]}%"
        stmt = stmt.where(
            or_(
                func.lower(CarteAccount.identifier).like(like),
                func.lower(CarteAccount.label).like(like),
            )
        )
    return list(
        session.execute(stmt.order_by(CarteAccount.kind, CarteAccount.identifier).limit(limit))
    )

"""identity.person_anonymised: an account anonymised by retention or erased
on request is announced in the same transaction, with the addresses it had,
so survey, carte and notify erase their copies; once published, the row (and
the addresses in it) leaves identity's outbox."""

import datetime as dt

import pytest
from sqlalchemy import select

from identity import carte
from identity import personal_data as pd
from identity import use_cases as uc
from identity.models import Outbox, User
from kit import events as kit_events
from kit.db import utcnow

from .test_use_cases import PASSWORD, caller_for, events, register_and_confirm


@pytest.fixture
def agent(session):
    uc.ensure_admin(session, "agent@agence.example", PASSWORD)
    return caller_for(session, "agent@agence.example")


@pytest.fixture
def manager(session, sirene, agent):
    claire = register_and_confirm(session, sirene)
    uc.validate_user(session, agent, claire.id)
    return caller_for(session, "claire@example.org")


def anonymised(session):
    return events(session, kit_events.PERSON_ANONYMISED)


def publish_all(session, at):
    for row in session.scalars(select(Outbox).where(Outbox.published_at.is_(None))):
        row.published_at = at
    session.commit()


def test_an_account_anonymised_by_retention_is_announced_with_its_old_address(session, manager):
    data = {"last_name": "Durand", "first_name": "Paul", "email": "Paul.Durand@Example.org"}
    paul = uc.create_user(session, manager, manager.org_id, data)
    uc.deactivate_user(session, manager, paul["id"])
    later = session.get(User, paul["id"]).deactivated_at + dt.timedelta(days=361)

    assert pd.run_retention(session, lambda f: None, now=later)["accounts_anonymised"] == 1

    [event] = anonymised(session)
    assert (event["user_id"], event["emails"], event["reason"]) == (
        paul["id"],
        ["paul.durand@example.org"],
        "retention",
    )
    assert event["event_id"] and session.get(User, paul["id"]).email.endswith(".invalid")
    pd.run_retention(session, lambda f: None, now=later + dt.timedelta(days=1))
    assert len(anonymised(session)) == 1  # an account is anonymised, and announced, once


def test_an_erasure_on_request_is_announced_once_with_the_old_address(session, agent, manager):
    claire = session.scalar(select(User).where(User.email == "claire@example.org"))

    pd.erase_person(session, agent, claire.id, lambda f: None, check=True)
    assert anonymised(session) == []  # the checks alone change nothing
    pd.erase_person(session, agent, claire.id, lambda f: None, reason="Demande 42")
    pd.erase_person(session, agent, claire.id, lambda f: None)  # run again: already erased

    [event] = anonymised(session)
    assert (event["user_id"], event["emails"], event["reason"]) == (
        claire.id,
        ["claire@example.org"],
        "request",
    )


def test_a_carte_accounts_erasure_announces_its_contact_address_not_its_login(session, agent):
    created = carte.create_account(
        session,
        agent,
        {
            "kind": "admin",
            "identifier": "CARIF-ADMIN",
            "label": "Carif-Oref",
            "contact_email": "Contact@Carif.example",
        },
    )
    user_id = created["account"]["user_id"]

    pd.erase_person(session, agent, user_id, lambda f: None)

    [event] = anonymised(session)
    assert (event["user_id"], event["emails"]) == (user_id, ["contact@carif.example"])


def test_a_published_announcement_leaves_the_outbox_and_a_pending_one_stays(
    session, agent, manager
):
    claire = session.scalar(select(User).where(User.email == "claire@example.org"))
    pd.erase_person(session, agent, claire.id, lambda f: None)
    now = utcnow()

    pd.run_retention(session, lambda f: None, now=now)
    assert len(anonymised(session)) == 1  # not published yet: the relay still owes it

    publish_all(session, now)
    pd.run_retention(session, lambda f: None, now=now)
    assert anonymised(session) == []
    # other published events (names, addresses, links) go a day after publication
    assert events(session, "user_registered")
    pd.run_retention(session, lambda f: None, now=now + dt.timedelta(days=1, minutes=1))
    assert session.scalars(select(Outbox)).all() == []

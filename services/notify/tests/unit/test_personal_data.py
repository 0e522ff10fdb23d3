"""The e-mails sent to a person: exported without their bodies, erased (and
an e-mail not sent yet is never sent)."""

import pytest
from sqlalchemy import select

from kit.context import AGENCY_ADMIN, MANAGER, Caller
from kit.errors import Forbidden, InvalidInput
from notify import personal_data as pd
from notify.models import FAILED, SENT, UNDELIVERED, Delivery

AGENT = Caller(user_id="a" * 32, roles=(AGENCY_ADMIN,))


@pytest.fixture
def sent(session):
    for status, to in ((SENT, "claire@example.org"), (FAILED, "claire@example.org"),
                       (SENT, "paul@example.org")):  # fmt: skip
        session.add(
            Delivery(source_event_id="e", template="user_validated", to=to,
                     subject="Votre compte est validé", body="Bonjour Claire", status=status)
        )  # fmt: skip
    session.commit()


def test_the_export_lists_the_emails_sent_to_the_persons_addresses(session, sent):
    data = pd.export_person(session, AGENT, ["Claire@example.org"])
    assert [e["status"] for e in data["emails"]] == [SENT, FAILED]
    assert all("body" not in e for e in data["emails"])


def test_erasure_replaces_address_and_body_and_gives_up_unsent_emails(session, sent):
    assert pd.erase_person(session, AGENT, ["claire@example.org"]) == {"emails_erased": 2}
    rows = session.scalars(select(Delivery).where(Delivery.to == pd.ERASED_ADDRESS)).all()
    assert {r.status for r in rows} == {SENT, UNDELIVERED}
    assert all(r.body == pd.ERASED for r in rows)
    assert pd.export_person(session, AGENT, ["claire@example.org"]) == {"emails": []}
    assert len(pd.export_person(session, AGENT, ["paul@example.org"])["emails"]) == 1


def test_only_the_agency_and_well_formed_addresses(session, sent):
    with pytest.raises(Forbidden):
        pd.export_person(session, Caller(user_id="m" * 32, roles=(MANAGER,)), ["a@b.fr"])
    with pytest.raises(InvalidInput):
        pd.erase_person(session, AGENT, "claire@example.org")

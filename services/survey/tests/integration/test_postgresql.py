"""Use cases on PostgreSQL (migrated from empty) where it differs from the
SQLite of the unit tests: thousands of organisations (a multi-row statement
of them would pass the 65,535 parameters PostgreSQL takes in one
statement), and text PostgreSQL refuses (NUL bytes) in ids and filters."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import sessionmaker

from kit.db import make_engine
from kit.errors import InvalidInput, NotFound
from kit.migrate import upgrade
from services.survey.tests.support import AGENT, MANAGER_A, FakeFiles, FakeIdentity, valid_siret
from survey import use_cases as uc

pytestmark = pytest.mark.integration

ORGANISATIONS = 8_000  # × 9 columns: 72,000 parameters in one multi-row INSERT
CAMPAIGN = {
    "name": "Enquête CFA",
    "online_on": "2021-03-23",
    "transmission_opens_on": "2021-04-30",
    "return_due_on": "2099-07-15",
    "closes_on": "2099-07-15",
}


@pytest.fixture
def session(pg_database):
    url = pg_database("survey")
    upgrade("survey", url)
    engine = make_engine(url)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        yield s
    engine.dispose()


def test_the_agency_sees_thousands_of_organisations(session):
    orgs = {
        f"org-{n}": {
            "id": f"org-{n}",
            "name": f"CFA NUMERO {n:05d}",
            "siret": valid_siret(n % 10_000),
            "uai": None,
            "nda": None,
            "account_type": "OFA" if n % 2 else "OG",
            "parent_id": None,
            "status": "validated",
        }
        for n in range(ORGANISATIONS)
    }
    identity = FakeIdentity(AGENT, orgs)
    uc.create_campaign(session, AGENT, CAMPAIGN)
    page = uc.list_statuses(session, AGENT, identity)
    assert page["label"] == f"Page 1 sur 160 ({ORGANISATIONS} lignes)"
    assert len(page["items"]) == 50


NUL = "a\x00b"  # PostgreSQL: « text fields cannot contain NUL (0x00) bytes »


def test_ids_and_filters_postgresql_cannot_hold_are_simply_not_found(session):
    campaign = uc.create_campaign(session, AGENT, CAMPAIGN)
    [survey] = uc.list_surveys(session, MANAGER_A, FakeIdentity(MANAGER_A))["items"]
    sid, files = survey["id"], FakeFiles()
    for call in (
        lambda: uc.get_survey(session, AGENT, NUL),
        lambda: uc.set_blocked(session, AGENT, NUL, True),
        lambda: uc.get_campaign(session, AGENT, NUL),
        lambda: uc.export_responses(session, AGENT, NUL, "csv", FakeIdentity(AGENT)),
        lambda: uc.get_transmission(session, MANAGER_A, sid, NUL),
        lambda: uc.update_certification(session, MANAGER_A, sid, NUL, {"title": "x"}),
        lambda: uc.get_attachment(session, MANAGER_A, sid, NUL),
        lambda: uc.delete_attachment(session, MANAGER_A, sid, NUL, files),
    ):
        with pytest.raises(NotFound):
            call()
        session.rollback()
    for filters in ({"q": NUL}, {"campaign_id": NUL}):
        with pytest.raises(InvalidInput) as caught:
            uc.list_statuses(session, AGENT, FakeIdentity(AGENT), filters)
        assert caught.value.code == "survey.filter_invalid"
    with pytest.raises(InvalidInput) as caught:
        uc.add_attachment(session, MANAGER_A, sid, NUL, files)
    assert caught.value.code == "survey.file_invalid"
    assert uc.get_campaign(session, AGENT, campaign["id"])["name"] == "Enquête CFA"

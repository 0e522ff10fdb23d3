"""The agency's views with thousands of validated organisations, on
PostgreSQL (migrated from empty): a multi-row statement of them would pass
the 65,535 parameters PostgreSQL takes in one statement."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import sessionmaker

from kit.db import make_engine
from kit.migrate import upgrade
from survey import use_cases as uc
from survey.testing import AGENT, FakeIdentity, valid_siret

pytestmark = pytest.mark.integration

ORGANISATIONS = 8_000  # × 9 columns: 72,000 parameters in one multi-row INSERT


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
    uc.create_campaign(
        session,
        AGENT,
        {
            "name": "Enquête CFA",
            "online_on": "2021-03-23",
            "transmission_opens_on": "2021-04-30",
            "return_due_on": "2021-07-15",
            "closes_on": "2021-07-15",
        },
    )
    page = uc.list_statuses(session, AGENT, identity)
    assert page["label"] == f"Page 1 sur 160 ({ORGANISATIONS} lignes)"
    assert len(page["items"]) == 50

"""A carte account's personal data: exported for the agency, and the contact
named in its requests erased while the requests stay."""

import pytest
from sqlalchemy import select

from carte import personal_data as pd
from carte.models import Actor, Campaign, ProgrammeReport, Request
from kit.context import AGENCY_ADMIN, CARTE_ADMIN, Caller
from kit.errors import Forbidden

from ..conftest import NOW

AGENT = Caller(user_id="a" * 32, roles=(AGENCY_ADMIN,))
FILER = "e" * 32


@pytest.fixture
def filed(session):
    session.add(Actor(user_id=FILER, identifier="0750654D", kind="establishment", label="Lycée"))
    campaign = Campaign(school_year=2020, opens_on=NOW.date(), closes_on=NOW.date())
    session.add(campaign)
    session.flush()
    session.add(
        Request(
            campaign_id=campaign.id, filed_by=FILER, filer_kind="establishment",
            filer_identifier="0750654D", concerned_uai="0750654D", manager_name="Jeanne Petit",
            manager_phone="0102030405", manager_email="jeanne@example.org",
        )
    )  # fmt: skip
    session.add(
        ProgrammeReport(
            title="BTS absent", message="Appelez Jeanne au 0102030405", reporter_id=FILER,
            reporter_identifier="0750654D",
        )
    )  # fmt: skip
    session.commit()


def test_the_agency_exports_a_carte_accounts_requests_and_reports(session, filed):
    data = pd.export_person(session, AGENT, FILER)
    assert data["account"]["identifier"] == "0750654D"
    [request] = data["requests"]
    assert (request["manager_email"], request["school_year"]) == ("jeanne@example.org", 2020)
    assert data["programme_reports"][0]["message"].startswith("Appelez Jeanne")


def test_erasure_removes_the_named_contact_and_keeps_the_request(session, filed):
    assert pd.erase_person(session, AGENT, FILER) == {
        "requests_anonymised": 1,
        "reports_anonymised": 1,
    }
    request = session.scalar(select(Request))
    assert (request.manager_name, request.manager_phone, request.manager_email) == (None,) * 3
    assert request.concerned_uai == "0750654D"
    assert session.scalar(select(ProgrammeReport)).message == pd.ERASED
    assert pd.erase_person(session, AGENT, FILER) == {
        "requests_anonymised": 0,
        "reports_anonymised": 0,
    }


def test_carte_administrators_are_not_the_agency(session, filed):
    with pytest.raises(Forbidden):
        pd.export_person(session, Caller(user_id="c" * 32, roles=(CARTE_ADMIN,)), FILER)

"""identity.person_anonymised in carte: the contact named in the account's
requests and its reports' messages are replaced, the requests stay, other
accounts keep theirs, and the same event delivered again changes nothing."""

from __future__ import annotations

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from carte import personal_data as pd
from carte.models import Campaign, ProgrammeReport, Request
from carte.service import CarteService

from ..conftest import NOW

FILER, OTHER = "e" * 32, "f" * 32


def anonymised(user_id, event_id="a" * 32):
    return {
        "user_id": user_id,
        "emails": ["contact@lycee.example"],
        "reason": "request",
        "event_id": event_id,
        "occurred_at": "2031-01-01T00:00:00+00:00",
    }


@pytest.fixture
def filed(session):
    campaign = Campaign(school_year=2020, opens_on=NOW.date(), closes_on=NOW.date())
    session.add(campaign)
    session.flush()
    for user_id, uai, name in ((FILER, "0750654D", "Jeanne Petit"), (OTHER, "0751234K", "Luc")):
        session.add(
            Request(
                campaign_id=campaign.id, filed_by=user_id, filer_kind="establishment",
                filer_identifier=uai, concerned_uai=uai, manager_name=name,
                manager_phone="0102030405", manager_email=f"{name[:4].lower()}@example.org",
            )
        )  # fmt: skip
        session.add(
            ProgrammeReport(
                title="BTS absent", message=f"Appelez {name}", reporter_id=user_id,
                reporter_identifier=uai,
            )
        )  # fmt: skip
    session.commit()


def contacts(session):
    requests = session.scalars(select(Request).order_by(Request.filed_by)).all()
    reports = session.scalars(select(ProgrammeReport).order_by(ProgrammeReport.reporter_id)).all()
    return [
        (r.filed_by, r.concerned_uai, r.manager_name, r.manager_phone, r.manager_email)
        for r in requests
    ] + [(p.reporter_id, p.title, p.message) for p in reports]


def test_an_anonymised_accounts_requests_and_reports_lose_the_named_contact(session, filed):
    worker_factory(CarteService, db=session).on_person_anonymised(anonymised(FILER))

    assert contacts(session) == [
        (FILER, "0750654D", None, None, None),
        (OTHER, "0751234K", "Luc", "0102030405", "luc@example.org"),
        (FILER, "BTS absent", pd.ERASED),
        (OTHER, "BTS absent", "Appelez Luc"),
    ]


def test_the_same_event_delivered_again_changes_nothing(session, filed):
    service = worker_factory(CarteService, db=session)
    service.on_person_anonymised(anonymised(FILER))
    first = contacts(session)

    service.on_person_anonymised(anonymised(FILER))

    assert contacts(session) == first
    assert pd.person_anonymised(session, anonymised(FILER)) == {
        "requests_anonymised": 0,
        "reports_anonymised": 0,
    }

"""identity.person_anonymised in survey: the name and e-mail copied on the
person's transmissions are replaced, whoever else transmitted keeps theirs,
and the same event delivered again changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from survey import personal_data as pd
from survey.models import Campaign, Survey, Transmission
from survey.service import SurveyService

CLAIRE, PAUL = "c" * 32, "p" * 32


def anonymised(user_id, event_id="e" * 32):
    return {
        "user_id": user_id,
        "emails": ["claire@example.org"],
        "reason": "retention",
        "event_id": event_id,
        "occurred_at": "2031-01-01T00:00:00+00:00",
    }


@pytest.fixture
def transmitted(session):
    campaign = Campaign(
        name="Enquête 2024",
        online_on=dt.date(2024, 3, 1),
        transmission_opens_on=dt.date(2024, 4, 1),
        return_due_on=dt.date(2024, 6, 30),
        closes_on=dt.date(2024, 7, 31),
    )
    session.add(campaign)
    session.flush()
    survey = Survey(campaign_id=campaign.id, org_id="o" * 32)
    session.add(survey)
    session.flush()
    for seq, (user_id, name, email) in enumerate(
        [
            (CLAIRE, "Claire Martin", "claire@example.org"),
            (CLAIRE, "Claire Martin", "claire@example.org"),
            (PAUL, "Paul Durand", "paul@example.org"),
        ],
        start=1,
    ):
        session.add(
            Transmission(
                survey_id=survey.id, seq=seq, file_id=f"form-{seq}", file_name="Compte cfa.xlsx",
                sha256="0" * 64, size=10, form_version=1, values={"charges": "12"},
                submitted_by=user_id, submitter_name=name, submitter_email=email,
            )
        )  # fmt: skip
    session.commit()


def senders(session):
    return [
        (t.seq, t.submitted_by, t.submitter_name, t.submitter_email, t.file_id)
        for t in session.scalars(select(Transmission).order_by(Transmission.seq))
    ]


def test_an_anonymised_persons_transmissions_lose_their_name_and_email(session, transmitted):
    worker_factory(SurveyService, db=session).on_person_anonymised(anonymised(CLAIRE))

    assert senders(session) == [
        (1, CLAIRE, "Anonyme", "", "form-1"),
        (2, CLAIRE, "Anonyme", "", "form-2"),
        (3, PAUL, "Paul Durand", "paul@example.org", "form-3"),
    ]


def test_the_same_event_delivered_again_changes_nothing(session, transmitted):
    service = worker_factory(SurveyService, db=session)
    service.on_person_anonymised(anonymised(CLAIRE))
    first = senders(session)

    service.on_person_anonymised(anonymised(CLAIRE))

    assert senders(session) == first
    assert pd.person_anonymised(session, anonymised(CLAIRE)) == {"transmissions_anonymised": 0}

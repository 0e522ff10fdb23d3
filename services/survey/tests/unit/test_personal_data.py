"""Personal data in survey (RGPD): transmissions kept for the campaign plus
SURVEY_RETENTION_YEARS, purged on a clock moved forward; a person's
transmissions exported and their copied name and e-mail erased."""

import datetime as dt

import pytest
from sqlalchemy import select

from kit.context import AGENCY_ADMIN, MANAGER, SYSTEM, Caller, system_clock
from kit.errors import Forbidden
from survey import personal_data as pd
from survey.models import Attachment, Campaign, Survey, Transmission

AGENT = Caller(user_id="a" * 32, roles=(AGENCY_ADMIN,))
CLAIRE = "c" * 32


def at(year, month=1, day=1):
    return dt.datetime(year, month, day, 12, tzinfo=dt.UTC)


@pytest.fixture
def campaign(session):
    campaign = Campaign(
        name="Enquête 2024",
        online_on=dt.date(2024, 3, 1),
        transmission_opens_on=dt.date(2024, 4, 1),
        return_due_on=dt.date(2024, 6, 30),
        closes_on=dt.date(2024, 7, 31),
    )
    session.add(campaign)
    session.flush()
    survey = Survey(campaign_id=campaign.id, org_id="o" * 32, certifications_file_id="list-1")
    session.add(survey)
    session.flush()
    session.add(
        Transmission(
            survey_id=survey.id, seq=1, file_id="form-1", file_name="Compte cfa.xlsx",
            sha256="0" * 64, size=10, form_version=1, values={"charges": "12"},
            submitted_by=CLAIRE, submitter_name="Claire Martin",
            submitter_email="claire@example.org",
        )
    )  # fmt: skip
    session.add(
        Attachment(
            survey_id=survey.id, file_id="pj-1", name="pj.pdf", content_type="application/pdf",
            size=5, uploaded_by=CLAIRE,
        )
    )  # fmt: skip
    session.commit()
    return campaign


def test_transmissions_stay_for_the_campaign_plus_the_retention_years(session, campaign):
    deleted = []
    counts = pd.run_retention(session, deleted.append, now=at(2029, 7, 31))
    assert counts == {"transmissions_purged": 0, "attachments_purged": 0, "lists_purged": 0}
    assert deleted == [] and session.scalars(select(Transmission)).all()


def test_after_the_retention_files_and_values_are_purged(session, campaign):
    deleted = []
    counts = pd.run_retention(session, deleted.append, now=at(2029, 8, 1))
    assert counts == {"transmissions_purged": 1, "attachments_purged": 1, "lists_purged": 1}
    assert sorted(deleted) == ["form-1", "list-1", "pj-1"]
    assert not session.scalars(select(Transmission)).all()
    assert not session.scalars(select(Attachment)).all()
    survey = session.scalar(select(Survey))
    assert survey is not None and survey.certifications_file_id is None


def test_the_retention_is_configurable(session, campaign, monkeypatch):
    monkeypatch.setenv("SURVEY_RETENTION_YEARS", "1")
    counts = pd.run_retention(session, lambda f: None, now=at(2025, 8, 1))
    assert counts["transmissions_purged"] == 1


def test_a_file_that_could_not_be_deleted_keeps_its_row_for_the_next_run(session, campaign):
    def refuse(file_id):
        raise RuntimeError("files is down")

    counts = pd.run_retention(session, refuse, now=at(2030, 1, 1))
    assert counts["transmissions_purged"] == 0
    assert session.scalars(select(Transmission)).all()
    again = pd.run_retention(session, lambda f: None, now=at(2030, 1, 1))
    assert again["transmissions_purged"] == 1


def test_the_agency_exports_what_a_person_transmitted(session, campaign):
    data = pd.export_person(session, AGENT, CLAIRE)
    [sent] = data["transmissions"]
    assert (sent["file_id"], sent["submitter_email"], sent["campaign"]) == (
        "form-1",
        "claire@example.org",
        "Enquête 2024",
    )
    assert sent["kept_until"] == "2029-07-31"
    assert [a["file_id"] for a in data["attachments"]] == ["pj-1"]
    assert pd.export_person(session, AGENT, "x" * 32) == {"transmissions": [], "attachments": []}


def test_erasure_replaces_the_copied_name_and_email_and_keeps_the_transmission(session, campaign):
    assert pd.erase_person(session, AGENT, CLAIRE) == {"transmissions_anonymised": 1}
    row = session.scalar(select(Transmission))
    assert (row.submitter_name, row.submitter_email, row.submitted_by) == ("Anonyme", "", CLAIRE)
    assert pd.erase_person(session, AGENT, CLAIRE) == {"transmissions_anonymised": 0}


def test_only_the_agency_reads_or_erases_a_persons_data(session, campaign):
    manager = Caller(user_id="m" * 32, org_id="o" * 32, roles=(MANAGER,))
    with pytest.raises(Forbidden):
        pd.export_person(session, manager, CLAIRE)
    with pytest.raises(Forbidden):
        pd.erase_person(session, manager, CLAIRE)
    with pytest.raises(Forbidden):
        system_clock(AGENT, "2030-01-01")
    assert system_clock(Caller(user_id="ops", roles=(SYSTEM,)), None) is None

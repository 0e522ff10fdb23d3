"""Entrypoints through nameko's ``worker_factory``: each calls its use case
with the worker's caller and relays the events after commit."""

from __future__ import annotations

import base64

import pytest
from nameko.testing.services import worker_factory

from kit.errors import TooManyRequests
from kit.rpc import Bounded
from services.survey.tests.support import (
    AGENT,
    GUIDE_ROWS,
    HEADER,
    MANAGER_A,
    SECRET,
    FakeIdentity,
    workbook_bytes,
)
from survey import service as survey_service
from survey.service import SurveyService
from survey.settings import ConfigError, SurveySettings, load

CAMPAIGN = {
    "name": "Enquête CFA",
    "online_on": "2021-03-23",
    "transmission_opens_on": "2021-03-23",
    "return_due_on": "2099-07-15",
    "closes_on": "2099-07-15",
}


def make(session, caller, files):
    return worker_factory(
        SurveyService,
        db=session,
        caller=caller,
        identity=FakeIdentity(caller),
        files=files,
        settings=SurveySettings(form_secret=SECRET),
    )


def test_a_download_is_announced_once_after_commit(session, files):
    make(session, AGENT, files).create_campaign(CAMPAIGN)
    service = make(session, MANAGER_A, files)
    [row] = service.list_surveys()["items"]
    service.save_required_data(row["id"], {"establishments_count": 2, "trainings_count": 3})
    stored = files.store(
        MANAGER_A,
        "certification_list",
        "liste.xlsx",
        workbook_bytes({"Certifications": [HEADER, *GUIDE_ROWS]}),
    )
    service.import_certifications(row["id"], stored["id"])
    form = service.generate_form(row["id"])
    assert base64.b64decode(form["content_b64"]).startswith(b"PK")
    service.dispatch.assert_called_once()
    event_type, payload = service.dispatch.call_args.args
    assert event_type == "form_downloaded" and payload["survey_id"] == row["id"]
    service.relay_outbox()
    service.dispatch.assert_called_once()


def test_the_form_secret_is_required_outside_development(tmp_path):
    with pytest.raises(ConfigError):
        load({}, {"APP_ENV": "production"})
    with pytest.raises(ConfigError):
        load({"SURVEY_FORM_SECRET": "short"}, {})
    assert load({"SURVEY_FORM_SECRET": "x" * 40}, {}).form_secret == b"x" * 40
    local = load({}, {"APP_ENV": "development", "DATA_DIR": str(tmp_path)})
    assert local == load({}, {"APP_ENV": "development", "DATA_DIR": str(tmp_path)})
    assert (tmp_path / "survey_form_secret").stat().st_mode & 0o077 == 0


def test_a_dependency_that_does_not_answer_gives_a_retryable_error():
    import eventlet

    class Slow:
        class get_me:  # noqa: N801 - stands for a nameko method proxy
            @staticmethod
            def call_async():
                class Reply:
                    def result(self):
                        eventlet.sleep(1)

                return Reply()

    with pytest.raises(TooManyRequests) as caught:
        Bounded(Slow(), 0.05, "survey.dependency_busy").get_me()
    assert caught.value.code == "survey.dependency_busy"
    assert caught.value.details["retry_after"] == 5


def test_cpu_work_runs_off_the_hub():
    assert survey_service.cpu(sum, [1, 2, 3]) == 6


def test_a_validation_in_identity_makes_the_agency_refresh_its_organisations(session, files):
    make(session, AGENT, files).create_campaign(CAMPAIGN)
    identity = FakeIdentity(AGENT)
    agency = worker_factory(
        SurveyService,
        db=session,
        caller=AGENT,
        identity=identity,
        files=files,
        settings=SurveySettings(form_secret=SECRET),
    )
    agency.list_statuses()
    agency.list_statuses()  # within 30 seconds: the local copy
    assert identity.calls == ["list_organisations"]
    make(session, AGENT, files).on_user_validated({"user_id": "u", "org_id": "org-new"})
    agency.list_statuses()
    assert identity.calls == ["list_organisations", "list_organisations"]

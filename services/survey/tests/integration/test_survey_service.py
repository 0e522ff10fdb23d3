"""The survey service in a real container with the real files service, over
real RabbitMQ, on real PostgreSQL databases migrated from empty.

Mock policy: identity is a stand-in service (same name and RPC shapes,
answering from the caller in the context) because its own tests cover it;
survey and files are the real ones."""

from __future__ import annotations

import base64
import hashlib

import pytest
from nameko.events import event_handler
from nameko.rpc import rpc
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter

from files.service import FilesService
from kit.context import CALLER_KEY, PARTNER, SYSTEM, Caller, CallerProvider
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from kit.migrate import upgrade
from services.survey.tests.support import (
    AGENT,
    GUIDE_ROWS,
    HEADER,
    MANAGER_A,
    MANAGER_B,
    USER_A,
    FakeIdentity,
    fill_form,
    workbook_bytes,
)
from survey.service import SurveyService

pytestmark = pytest.mark.integration

CAMPAIGN = {
    "name": "Enquête CFA",
    "details": "Comptabilité analytique",
    "direction": "DIRECTION_1",
    "online_on": "2021-03-23",
    "transmission_opens_on": "2021-04-30",
    "return_due_on": "2099-07-15",
    "closes_on": "2099-07-15",
}


class IdentityStandIn:
    """Answers like identity, for the caller in the context (tests/support.py)."""

    name = "identity"
    caller = CallerProvider()

    @rpc
    def get_me(self):
        return FakeIdentity(self.caller).get_me()

    @rpc
    def get_organisation(self, org_id):
        return FakeIdentity(self.caller).get_organisation(org_id)

    @rpc
    def list_organisations(self, query, status, page, per_page):
        return FakeIdentity(self.caller).list_organisations(query, status, page, per_page)


class Listener:
    name = "survey_listener"

    @event_handler("survey", "response_submitted")
    def on_response_submitted(self, payload):
        return payload


@pytest.fixture
def system(container_factory, rabbit_config, pg_database, tmp_path):
    survey_url, files_url = pg_database("survey"), pg_database("files")
    upgrade("survey", survey_url)
    upgrade("files", files_url)
    containers = [
        container_factory(
            SurveyService,
            dict(rabbit_config, SURVEY_DB_URL=survey_url, SURVEY_FORM_SECRET="k" * 40),
        ),
        container_factory(
            FilesService, dict(rabbit_config, FILES_DB_URL=files_url, FILES_DIR=str(tmp_path / "b"))
        ),
        container_factory(IdentityStandIn, rabbit_config),
    ]
    for container in containers:
        container.start()
    yield containers


@pytest.fixture
def rpc_as(rabbit_config, system):
    proxies = []

    def make(caller: Caller):
        proxy = ClusterRpcProxy(
            rabbit_config, timeout=20, context_data={CALLER_KEY: caller.to_header()}
        )
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ready_survey(rpc_as):
    rpc_as(AGENT).survey.create_campaign(CAMPAIGN)
    manager = rpc_as(MANAGER_A)
    [row] = manager.survey.list_surveys()["items"]
    manager.survey.save_required_data(row["id"], {"establishments_count": 2, "trainings_count": 3})
    plan = manager.survey.prepare_upload(row["id"], "certifications", {"name": "Liste.xlsx"})
    stored = manager.files.store_xlsx(
        plan["meta"], b64(workbook_bytes({"Certifications": [HEADER, *GUIDE_ROWS]}))
    )
    imported = manager.survey.import_certifications(row["id"], stored["id"])
    assert imported["complete"] is True
    return manager, row["id"]


def transmit(client, survey_id, content, key=None):
    plan = client.survey.prepare_upload(survey_id, "response", {"name": "formulaire.xlsx"})
    stored = getattr(client.files, plan["store"])(plan["meta"], b64(content))
    return client.survey.submit_response(survey_id, stored["id"], key)


def test_a_form_goes_out_and_comes_back_over_the_bus(rpc_as, container_factory, rabbit_config):
    manager, survey_id = ready_survey(rpc_as)
    form = manager.survey.generate_form(survey_id, "official")
    assert form["name"] == "Enquête CFA - CFA DES METIERS DE L'EXEMPLE.xlsx"
    listener = container_factory(Listener, rabbit_config)
    listener.start()
    with entrypoint_waiter(listener, "on_response_submitted", timeout=15) as waited:
        result = transmit(manager, survey_id, fill_form(base64.b64decode(form["content_b64"])))
    assert result["status"] == "recorded" and result["submitter_name"] == "DURAND Claire"
    event = waited.get()
    assert event["transmission_id"] == result["id"] and event["org_id"] == "org-a"
    got = manager.survey.get_transmission(survey_id, result["id"])
    stored = manager.files.get_file(got["file_id"])
    assert stored["name"].startswith("Enquête CFA_CFA DES METIERS DE L'EXEMPLE - ")
    statuses = rpc_as(AGENT).survey.list_statuses({"blocked": "false"})
    [mine] = [r for r in statuses["items"] if r["id"] == survey_id]
    assert mine["status_label"] == "déposée"
    assert statuses["total"] == 3  # every validated organisation of the stand-in


def test_errors_arrive_typed_with_their_codes(rpc_as):
    manager, survey_id = ready_survey(rpc_as)
    with pytest.raises(NotFound) as caught:
        rpc_as(MANAGER_B).survey.get_survey(survey_id)
    assert caught.value.code == "survey.not_found"
    with pytest.raises(Forbidden) as caught:
        rpc_as(USER_A).survey.prepare_upload(survey_id, "response", {"name": "f.xlsx"})
    assert caught.value.code == "survey.manager_only"
    manager.survey.save_required_data(
        survey_id, {"establishments_count": 2, "trainings_count": 3, "certifications": []}
    )
    with pytest.raises(Conflict) as caught:
        manager.survey.generate_form(survey_id, "official")
    assert caught.value.details["missing"] == ["la liste des certifications"]
    with pytest.raises(InvalidInput) as caught:
        manager.survey.save_required_data(survey_id, {"establishments_count": -1})
    assert set(caught.value.details["fields"]) == {"establishments_count", "trainings_count"}


def test_a_bad_form_is_refused_with_cell_references_and_leaves_no_file(rpc_as):
    manager, survey_id = ready_survey(rpc_as)
    form = base64.b64decode(manager.survey.generate_form(survey_id, "official")["content_b64"])
    plan = manager.survey.prepare_upload(survey_id, "response", {"name": "f.xlsx"})
    stored = manager.files.store_xlsx(
        plan["meta"], b64(fill_form(form, overrides={"Charges!E5": -1}))
    )
    with pytest.raises(InvalidInput) as caught:
        manager.survey.submit_response(survey_id, stored["id"], None)
    assert caught.value.code == "survey.form_invalid"
    assert (
        "Charges!E5 : montant négatif : les montants sont positifs ou nuls."
        in caught.value.details["problems"]
    )
    with pytest.raises(NotFound):
        manager.files.get_file_info(stored["id"])
    assert manager.survey.list_transmissions(survey_id) == []


def test_a_hostile_upload_is_stopped_by_files_before_survey_sees_it(rpc_as):
    manager, survey_id = ready_survey(rpc_as)
    plan = manager.survey.prepare_upload(survey_id, "response", {"name": "f.xlsx"})
    with pytest.raises(InvalidInput) as caught:
        manager.files.store_xlsx(plan["meta"], b64(b"%PDF-1.4 renamed"))
    # files' upload policy: judged from the bytes (a broken PDF), not the name
    assert caught.value.code == "files.pdf.corrupt"


def test_a_partner_reads_a_transmission_of_its_scope_and_its_file_as_the_gateway_does(rpc_as):
    manager, survey_id = ready_survey(rpc_as)
    form = manager.survey.generate_form(survey_id, "official")
    sent = transmit(manager, survey_id, fill_form(base64.b64decode(form["content_b64"])))
    partner = rpc_as(Caller(user_id="partner:p1", roles=(PARTNER,)))
    got = partner.survey.get_partner_transmission(sent["id"], {"sirets": ["41816609600051"]})
    assert got["transmission_id"] == sent["id"] and got["survey_id"] == survey_id
    assert got["account_type"] == "OFA" and len(got["values"]["lines"]) == 4
    assert "contact" not in got["values"] and "DURAND" not in str(got)
    with pytest.raises(NotFound) as outside:
        partner.survey.get_partner_transmission(sent["id"], {"sirets": ["73282932000074"]})
    with pytest.raises(NotFound) as unknown:
        partner.survey.get_partner_transmission("nope", {})
    assert outside.value.code == unknown.value.code == "survey.transmission_not_found"
    # the gateway then reads the bytes from files as the system caller
    system = rpc_as(Caller(user_id="partner:p1", roles=(SYSTEM,)))
    stored = system.files.get_file(got["file_id"])
    assert hashlib.sha256(base64.b64decode(stored["content_b64"])).hexdigest() == got["sha256"]

"""A person's data at the gateway (gateway.api.personal_data and its page)
with the services faked: the export gathers each service's part and the
person's files into a zip, the erasure runs identity's checks first and
identity last, only agents reach them, and agents with TOTP give a fresh code."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest

from gateway.api import personal_data as api
from gateway.pages import personal_data as pages
from kit.errors import Conflict, NotFound
from tests.fakes import FakeRpc, page_text, signed_in
from tests.test_totp import client_with, now_iso

USER = "c" * 32
ACCOUNT = {
    "id": USER,
    "display_name": "MARTIN Claire",
    "email": "claire@example.org",
    "phone": None,
    "org_name": "CFA",
    "profile": "Utilisateur CFA/OFA",
    "state_label": "Compte activé et validé",
    "created_at": "2026-01-01T00:00:00+00:00",
    "anonymised_at": None,
    "carte_account": None,
    "emails": ["claire@example.org"],
}


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    for module in (api, pages):
        monkeypatch.setattr(module, "rpc", fake)
    fake.answers.update(
        {
            "identity.export_person": {
                "account": ACCOUNT,
                "documents": [{"file_id": "f-doc", "kind": "habilitation", "name": "hab.pdf"}],
                "audit": [],
            },
            "identity.get_person": ACCOUNT,
            "identity.find_people": [ACCOUNT],
            "survey.export_person": {
                "transmissions": [{"file_id": "f-form", "file_name": "Compte cfa.xlsx"}],
                "attachments": [],
            },
            "notify.export_person": {"emails": [{"subject": "Votre compte est validé"}]},
            "files.get_file": lambda file_id: {
                "name": file_id,
                "content_b64": base64.b64encode(f"bytes of {file_id}".encode()).decode(),
            },
            "identity.erase_person": {"status": "erased"},
            "survey.erase_person": {"transmissions_anonymised": 1},
            "notify.erase_person": {"emails_erased": 2},
        }
    )
    return fake


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
        RATELIMIT_ENABLED=False,
    )


@pytest.fixture
def agent(app):
    return signed_in(app, ["agency_admin"])


def test_the_export_gathers_every_services_part_of_a_person(agent, fake):
    response = agent.get(f"/api/v1/people/{USER}/personal-data")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["identity"]["account"]["email"] == "claire@example.org"
    assert body["survey"]["transmissions"][0]["file_id"] == "f-form"
    assert body["notify"]["emails"][0]["subject"] == "Votre compte est validé"
    assert body["carte"] is None  # not a carte account: carte is not asked
    assert [f["file_id"] for f in body["files"]] == ["f-doc", "f-form"]
    assert ("notify", "export_person", (["claire@example.org"],)) in fake.calls
    assert "carte.export_person" not in fake.methods()


def test_the_zip_holds_the_json_and_the_persons_files(agent, fake):
    def get_file(file_id):
        if file_id == "f-doc":  # deleted meanwhile
            raise NotFound("files.not_found", "Fichier introuvable.")
        return {"content_b64": base64.b64encode(b"xlsx bytes").decode()}

    fake.answers["files.get_file"] = get_file
    response = agent.get(f"/api/v1/people/{USER}/personal-data.zip")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert "donnees-personnelles" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    data = json.loads(archive.read("donnees-personnelles.json"))
    [form] = [f for f in data["files"] if f["file_id"] == "f-form"]
    assert form["in_zip"] and archive.read(form["path"]) == b"xlsx bytes"
    [gone] = [f for f in data["files"] if f["file_id"] == "f-doc"]
    assert gone["in_zip"] is False and gone["note"] == "fichier supprimé"


def test_the_erasure_checks_first_and_anonymises_identity_last(agent, fake):
    response = agent.post(f"/api/v1/people/{USER}/erasure", json={"reason": "Demande 12"})
    assert response.status_code == 200, response.json
    assert response.json["survey"] == {"transmissions_anonymised": 1}
    assert fake.methods() == [
        "identity.erase_person",
        "identity.get_person",
        "survey.erase_person",
        "notify.erase_person",
        "identity.erase_person",
    ]
    assert fake.calls[0][2] == (USER, "Demande 12", True)  # checks only
    assert fake.calls[-1][2] == (USER, "Demande 12")


def test_a_refused_erasure_changes_nothing_elsewhere(agent, fake):
    fake.answers["identity.erase_person"] = Conflict("quota.last_manager", "Seul gestionnaire.")
    response = agent.post(f"/api/v1/people/{USER}/erasure")
    assert response.status_code == 409 and response.json["code"] == "quota.last_manager"
    assert fake.methods() == ["identity.erase_person"]


def test_only_agents_reach_a_persons_data(app, fake):
    manager = signed_in(app, ["manager"], org_id="o1")
    for method, path in (
        ("get", f"/api/v1/people/{USER}/personal-data"),
        ("get", f"/api/v1/people/{USER}/personal-data.zip"),
        ("post", f"/api/v1/people/{USER}/erasure"),
        ("get", "/api/v1/people?query=claire"),
    ):
        response = getattr(manager, method)(path)
        assert response.status_code == 403, path
        assert response.json["code"] == "forbidden.agency_only"
    assert fake.calls == []
    assert manager.get(f"/agence/donnees-personnelles/{USER}").status_code == 403


def test_agents_with_totp_give_a_fresh_code_before_exporting_or_erasing(app, fake):
    stale = client_with(app, roles=("agency_admin",), totp=True, mfa_at=now_iso(60))
    refused = stale.get(f"/api/v1/people/{USER}/personal-data")
    assert refused.status_code == 403 and refused.json["code"] == "auth.reauthentication_required"
    page = stale.post(
        f"/agence/donnees-personnelles/{USER}/effacer",
        data={"confirm": "1"},
        headers={"Referer": f"http://localhost/agence/donnees-personnelles/{USER}"},
    )
    assert page.status_code == 303 and "/compte/reauthentification" in page.headers["Location"]
    assert fake.calls == []
    fresh = client_with(app, roles=("agency_admin",), totp=True, mfa_at=now_iso(1))
    assert fresh.get(f"/api/v1/people/{USER}/personal-data").status_code == 200


def test_the_page_finds_a_person_and_offers_download_and_erasure(agent, fake):
    found = page_text(agent.get("/agence/donnees-personnelles?q=claire"))
    assert f'href="/agence/donnees-personnelles/{USER}"' in found
    person = page_text(agent.get(f"/agence/donnees-personnelles/{USER}"))
    assert "Télécharger les données (zip)" in person
    assert f'action="/agence/donnees-personnelles/{USER}/effacer"' in person
    assert "<script" not in person and "style=" not in person


def test_the_page_erases_only_once_confirmed(agent, fake):
    unconfirmed = agent.post(f"/agence/donnees-personnelles/{USER}/effacer", data={})
    assert unconfirmed.status_code == 422
    assert "Cochez la case de confirmation" in page_text(unconfirmed)
    assert "survey.erase_person" not in fake.methods()
    done = agent.post(f"/agence/donnees-personnelles/{USER}/effacer", data={"confirm": "1"})
    assert done.status_code == 303 and "fait=efface" in done.headers["Location"]
    assert "survey.erase_person" in fake.methods()

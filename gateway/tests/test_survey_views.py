"""Survey views through ``app.test_client()`` with the services faked: what
each route sends where, in which order, and what the client gets back."""

from __future__ import annotations

import base64
import io

import pytest

from gateway import create_app
from gateway.api import survey as views
from gateway.auth import issue_token
from kit.errors import Forbidden, InvalidInput
from tests.fakes import FakeRpc

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    monkeypatch.setattr(views, "rpc", fake)
    return fake


@pytest.fixture
def app():
    return create_app(
        {
            "TESTING": True,
            "SESSION_SECRET": "s" * 32,
            "REVOCATION_SOURCE": lambda since: {"now": None, "revoked": []},
            "SURVEY_HEAVY_CONCURRENCY": 1,
        }
    )


def headers(app, roles=("manager",), org="org-a", **claims):
    with app.app_context():
        token = issue_token("sid", {"user_id": "u1", "org_id": org, "roles": list(roles), **claims})
    return {"Authorization": f"Bearer {token}"}


def upload(content=b"PK\x03\x04 form", name="formulaire.xlsx"):
    return {"file": (io.BytesIO(content), name)}


def test_a_transmission_is_one_rpc_to_survey_with_the_bytes(app, fake):
    fake.answers["survey.transmit"] = {"id": "t1", "number": 1, "status": "recorded"}
    response = app.test_client().post(
        "/api/v1/surveys/s1/transmissions",
        headers={**headers(app), "Idempotency-Key": "key-0000001"},
        data=upload(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 201 and response.json["id"] == "t1"
    assert response.json["download_url"] == "/api/v1/surveys/s1/transmissions/t1/file"
    # survey has files check and store the bytes: they cross the bus once from here
    assert fake.methods() == ["survey.transmit"]
    _s, _m, (survey_id, sent, key, submitter) = fake.calls[0]
    assert (survey_id, key, submitter) == ("s1", "key-0000001", None)  # a token without them
    assert sent == {
        "name": "formulaire.xlsx",
        "content_b64": base64.b64encode(b"PK\x03\x04 form").decode(),
    }


def test_a_transmission_carries_the_submitter_of_the_session_token(app, fake):
    # identity puts the name and address in the sign-in claims: survey records
    # them without a call to identity.get_me
    fake.answers["survey.transmit"] = {"id": "t1", "number": 1, "status": "recorded"}
    token = headers(app, name="MARTIN Claire", email="claire@example.org")
    response = app.test_client().post(
        "/api/v1/surveys/s1/transmissions",
        headers=token,
        data=upload(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    assert fake.calls[0][2][3] == {"name": "MARTIN Claire", "email": "claire@example.org"}


def test_a_retried_transmission_answers_200(app, fake):
    fake.answers["survey.transmit"] = {"id": "t1", "status": "already_recorded"}
    response = app.test_client().post(
        "/api/v1/surveys/s1/transmissions",
        headers=headers(app),
        data=upload(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert fake.calls[0][2][2] is None  # no Idempotency-Key header


def test_a_plain_user_is_refused_with_surveys_answer(app, fake):
    fake.answers["survey.transmit"] = Forbidden(
        "survey.manager_only",
        "Seuls les gestionnaires de compte peuvent déposer le formulaire d'enquête.",
    )
    response = app.test_client().post(
        "/api/v1/surveys/s1/transmissions",
        headers=headers(app, ("user",)),
        data=upload(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 403
    assert response.json["code"] == "survey.manager_only"
    assert "gestionnaires de compte" in response.json["title"]
    assert fake.methods() == ["survey.transmit"]


def test_a_refused_form_lists_every_problem_by_cell(app, fake):
    fake.answers["survey.transmit"] = InvalidInput(
        "survey.form_invalid",
        "Le formulaire comporte 2 erreurs.",
        {
            "fields": {
                "Charges!D12": ["montant négatif"],
                "Produits!E5": ["formule interdite"],
            },
            "problems": [
                "Charges!D12 : montant négatif",
                "Produits!E5 : formule interdite",
            ],
            "count": 2,
        },
    )
    response = app.test_client().post(
        "/api/v1/surveys/s1/transmissions",
        headers=headers(app),
        data=upload(),
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["code"] == "survey.form_invalid"
    assert body["errors"]["Charges!D12"] == ["montant négatif"]
    assert body["details"]["problems"][0] == "Charges!D12 : montant négatif"


def test_uploads_without_a_file_or_too_big_are_refused_before_any_call(app, fake):
    client = app.test_client()
    none = client.post(
        "/api/v1/surveys/s1/transmissions",
        headers=headers(app),
        data={},
        content_type="multipart/form-data",
    )
    assert none.status_code == 422 and none.json["code"] == "survey.file_missing"
    big = client.post(
        "/api/v1/surveys/s1/attachments",
        headers=headers(app),
        data=upload(b"x" * (10 * 1024 * 1024 + 1), "gros.pdf"),
        content_type="multipart/form-data",
    )
    assert big.status_code == 422 and big.json["code"] == "files.too_large"
    assert fake.calls == []


def test_a_plan_can_only_name_a_store_method_of_files(app, fake):
    fake.answers["survey.prepare_upload"] = {"store": "delete_file", "meta": {}}
    response = app.test_client().post(
        "/api/v1/surveys/s1/attachments",
        headers=headers(app),
        data=upload(b"%PDF-1", "a.pdf"),
        content_type="multipart/form-data",
    )
    assert response.status_code == 500
    assert fake.methods() == ["survey.prepare_upload"]


def test_the_form_is_sent_as_an_xlsx_attachment_with_a_safe_name(app, fake):
    fake.answers["survey.generate_form"] = {
        "name": 'Enquête CFA - CFA "1".xlsx',
        "content_type": XLSX,
        "content_b64": base64.b64encode(b"PK form").decode(),
    }
    response = app.test_client().get("/api/v1/surveys/s1/form", headers=headers(app))
    assert response.status_code == 200 and response.data == b"PK form"
    assert response.mimetype == XLSX
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Enquete CFA - CFA _1_.xlsx"')
    assert "filename*=UTF-8''Enqu%C3%AAte" in disposition
    assert fake.calls[0][2] == ("s1", "official")
    client = app.test_client()
    client.get("/api/v1/surveys/s1/form/working-copy", headers=headers(app))
    assert fake.calls[-1][2] == ("s1", "working")


def test_heavy_routes_shed_load_with_503_and_retry_after(app, fake):
    client = app.test_client()
    gate = app.extensions.setdefault(views.EXTENSION, __import__("threading").BoundedSemaphore(1))
    gate.acquire()
    try:
        views.HEAVY_WAIT, saved = 0.01, views.HEAVY_WAIT
        response = client.get("/api/v1/surveys/s1/form", headers=headers(app))
    finally:
        views.HEAVY_WAIT = saved
        gate.release()
    assert response.status_code == 503
    assert response.json["code"] == "survey.busy" and response.headers["Retry-After"] == "5"


def test_agency_routes_are_refused_to_organisations_without_a_call(app, fake):
    client = app.test_client()
    for method, path in (
        ("post", "/api/v1/survey-campaigns"),
        ("get", "/api/v1/survey-campaigns"),
        ("post", "/api/v1/surveys/s1/block"),
        ("get", "/api/v1/survey-campaigns/c1/export"),
    ):
        response = getattr(client, method)(path, headers=headers(app), json={})
        assert response.status_code == 403, path
    assert fake.calls == []
    assert client.get("/api/v1/surveys").status_code == 401


def test_the_status_list_passes_its_filters(app, fake):
    fake.answers["survey.list_statuses"] = {
        "items": [],
        "page": 2,
        "pages": 2,
        "total": 95,
        "label": "Page 2 sur 2 (95 lignes)",
    }
    response = app.test_client().get(
        "/api/v1/survey-statuses?blocked=true&page=2&per_page=50",
        headers=headers(app, ("agency_admin",), None),
    )
    assert response.json["label"] == "Page 2 sur 2 (95 lignes)"
    assert fake.calls[0][2] == ({"blocked": "true", "page": "2", "per_page": "50"},)


def test_replacing_an_attachment_checks_it_exists_before_storing(app, fake):
    fake.answers.update(
        {
            "survey.get_attachment": {"id": "a1", "file_id": "f0"},
            "survey.prepare_upload": {"store": "store_file", "meta": {"kind": "attachment"}},
            "files.store_file": {"id": "f9"},
            "survey.replace_attachment": {"id": "a1", "name": "PJ 2.pdf"},
        }
    )
    response = app.test_client().put(
        "/api/v1/surveys/s1/attachments/a1",
        headers=headers(app),
        data=upload(b"%PDF-1.4", "PJ 2.pdf"),
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert fake.methods() == [
        "survey.get_attachment",
        "survey.prepare_upload",
        "files.store_file",
        "survey.replace_attachment",
    ]
    assert fake.calls[1][2][2]["replacing"] is True


def test_transmitted_files_and_attachments_carry_their_download_link(app, fake):
    fake.answers.update(
        {
            "survey.get_survey": {
                "id": "s1",
                "transmissions": [{"id": "t1", "number": 1, "file_name": "Compte.xlsx"}],
            },
            "survey.list_transmissions": [{"id": "t1"}, {"id": "t2"}],
            "survey.list_attachments": [{"id": "a1", "name": "PJ Numéro 1.pdf"}],
        }
    )
    client = app.test_client()
    page = client.get("/api/v1/surveys/s1", headers=headers(app)).json
    assert page["transmissions"][0]["download_url"] == "/api/v1/surveys/s1/transmissions/t1/file"
    listed = client.get("/api/v1/surveys/s1/transmissions", headers=headers(app)).json
    assert [t["download_url"] for t in listed["items"]] == [
        "/api/v1/surveys/s1/transmissions/t1/file",
        "/api/v1/surveys/s1/transmissions/t2/file",
    ]
    pieces = client.get("/api/v1/surveys/s1/attachments", headers=headers(app)).json
    assert pieces["items"][0]["download_url"] == "/api/v1/surveys/s1/attachments/a1/file"

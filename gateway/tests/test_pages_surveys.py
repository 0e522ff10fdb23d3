"""The HTML pages of section II (``gateway.pages.surveys``) with the services
faked: what each page shows, what its forms call, and how refusals read."""

from __future__ import annotations

import base64
import html
import io

import pytest

from gateway.api import survey as api_views
from gateway.auth import COOKIE, issue_token
from gateway.pages import surveys as pages
from kit.errors import Conflict, Forbidden, InvalidInput
from tests.fakes import FakeRpc

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PLAN = {
    "store": "store_xlsx",
    "meta": {
        "kind": "survey_form",
        "name": "Enquête CFA_CFA 1 - 20210310_1225.xlsx",
        "content_type": XLSX,
        "owner_org_id": "org-a",
    },
}

ROW = {
    "id": "s1",
    "campaign_id": "c1",
    "name": "Enquete CFA",
    "details": "Enquete CFA",
    "form": "CFA - CFA",
    "organisation": "A.F.T.I.",
    "parent": None,
    "direction": "DIRECTION_1",
    "online_on": "2021-03-23",
    "return_due_on": "2021-07-15",
    "closes_on": "2021-07-15",
    "last_sent_at": None,
    "status": "not_downloaded",
    "status_label": "non téléchargée",
    "blocked": False,
    "updated_at": "2020-12-07T11:26:04+00:00",
}
REQUIRED = {
    "survey_id": "s1",
    "establishments_count": 2,
    "trainings_count": 3,
    "certifications": [
        {
            "id": "k1",
            "code": "10033101",
            "title": "DE DOCTEUR EN PHARMACIE",
            "rncp": "NR",
            "level": "niveau8",
            "type": "DOCTORAT",
            "establishments": 1,
        }
    ],
    "certifications_file": None,
    "template_name": "Liste-certifications.xlsx",
    "complete": True,
    "missing": [],
}


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    monkeypatch.setattr(pages, "rpc", fake)
    monkeypatch.setattr(api_views, "rpc", fake)  # the shared upload helpers
    return fake


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
    )


def browser(app, roles=("manager",)):
    client = app.test_client()
    with app.app_context():
        token = issue_token("sid", {"user_id": "u1", "org_id": "org-a", "roles": list(roles)})
    client.set_cookie(COOKIE, token)
    return client


def text(response) -> str:
    """The page as a reader sees it (entities decoded)."""
    return html.unescape(response.get_data(as_text=True))


def upload(content=b"PK\x03\x04 form", name="formulaire.xlsx", **fields):
    return {"file": (io.BytesIO(content), name), **fields}


def test_signed_out_visitors_are_sent_to_sign_in(app, fake):
    for path in ("/enquetes", "/enquetes/s1/donnees", "/transmission", "/statuts"):
        response = app.test_client().get(path)
        assert response.status_code == 302 and response.location.endswith("/connexion")
    assert fake.calls == []


def test_the_survey_list_shows_tiles_columns_and_passes_the_date_filter(app, fake):
    fake.answers["survey.list_surveys"] = {"items": [ROW], "total": 1}
    response = browser(app).get("/enquetes?sent_from=2021-01-01&sent_to=2021-12-31")
    page = text(response)
    assert response.status_code == 200
    assert "Accéder à la transmission" in page and "Accéder au statut des enquêtes" in page
    for column in ("Nom enquête", "Organisme parent", "Date de dernier envoi", "Télécharger"):
        assert column in page
    assert "23/03/2021" in page and "non téléchargée" in page
    assert 'href="/enquetes/s1/donnees"' in page and "Appliquer" in page
    assert fake.calls == [
        ("survey", "list_surveys", ({"sent_from": "2021-01-01", "sent_to": "2021-12-31"},))
    ]


def test_a_refused_download_shows_the_message_on_the_list(app, fake):
    fake.answers["survey.list_surveys"] = {"items": [ROW], "total": 1}
    fake.answers["survey.generate_form"] = Conflict(
        "survey.required_data_incomplete",
        "Le téléchargement de l'enquête est bloqué : renseignez d'abord les données.",
        {"missing": ["le nombre d'établissements total"]},
    )
    response = browser(app).get("/enquetes/s1/telecharger/formulaire")
    page = text(response)
    assert response.status_code == 409 and response.mimetype == "text/html"
    assert "Le téléchargement de l'enquête est bloqué" in page
    assert "le nombre d'établissements total" in page and "Nom enquête" in page


def test_the_form_downloads_as_a_file(app, fake):
    fake.answers["survey.generate_form"] = {
        "name": "Enquete.xlsx",
        "content_type": "application/vnd.ms-excel",
        "content_b64": base64.b64encode(b"PK form").decode(),
    }
    response = browser(app, roles=("user",)).get("/enquetes/s1/telecharger/version-de-travail")
    assert response.status_code == 200 and response.data == b"PK form"
    assert fake.calls == [("survey", "generate_form", ("s1", "working"))]


def test_required_data_page_shows_the_table_and_saves_the_totals(app, fake):
    fake.answers["survey.get_required_data"] = REQUIRED
    fake.answers["survey.save_required_data"] = REQUIRED
    client = browser(app, roles=("user",))
    page = text(client.get("/enquetes/s1/donnees"))
    assert "Nombre d'établissements total" in page and "Liste-certifications.xlsx" in page
    assert "Format accepté : .xlsx" in page and "DE DOCTEUR EN PHARMACIE" in page
    saved = client.post(
        "/enquetes/s1/donnees",
        data={"action": "save", "establishments_count": "2", "trainings_count": "x"},
    )
    assert saved.status_code == 200 and "Vos valeurs sont enregistrées." in text(saved)
    assert (
        "survey",
        "save_required_data",
        ("s1", {"establishments_count": 2, "trainings_count": "x"}),
    ) in fake.calls  # noqa: E501


def test_an_import_with_problems_lists_each_cell(app, fake):
    fake.answers.update(
        {
            "survey.get_required_data": REQUIRED,
            "survey.prepare_upload": PLAN,
            "files.store_xlsx": {"id": "f1"},
            "survey.import_certifications": InvalidInput(
                "survey.certifications_invalid",
                "La liste comporte 2 erreurs.",
                {
                    "problems": [
                        "Feuille « Certifications », ligne 2, colonne A (Code Diplôme) : « ABC »",
                        "Feuille « Certifications », ligne 2, colonne D (Niveau 2019)",
                    ]
                },
            ),
        }
    )
    response = browser(app).post(
        "/enquetes/s1/donnees", data=upload(action="import"), content_type="multipart/form-data"
    )
    page = text(response)
    assert response.status_code == 422 and "La liste comporte 2 erreurs." in page
    assert "ligne 2, colonne A (Code Diplôme)" in page and "colonne D (Niveau 2019)" in page
    assert fake.methods()[:3] == [
        "survey.prepare_upload",
        "files.store_xlsx",
        "survey.import_certifications",
    ]


def test_a_successful_import_says_so(app, fake):
    fake.answers.update(
        {
            "survey.get_required_data": REQUIRED,
            "survey.prepare_upload": PLAN,
            "files.store_xlsx": {"id": "f1"},
            "survey.import_certifications": REQUIRED,
        }
    )
    response = browser(app).post(
        "/enquetes/s1/donnees", data=upload(action="import"), content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert "Les données ont bien été importées" in text(response)


def test_a_certification_row_is_edited_and_deleted(app, fake):
    fake.answers["survey.get_required_data"] = REQUIRED
    client = browser(app)
    client.post(
        "/enquetes/s1/donnees",
        data={"action": "update", "cert_id": "k1", "code": "10033101", "rncp": "37098",
              "title": "T", "level": "niveau8", "type": "DOCTORAT", "establishments": "2"},
    )  # fmt: skip
    client.post("/enquetes/s1/donnees", data={"action": "delete", "cert_id": "k1"})
    [update] = [c for c in fake.calls if c[1] == "update_certification"]
    assert update[2][1] == "k1" and update[2][2]["rncp"] == "37098"
    assert update[2][2]["establishments"] == 2
    assert ("survey", "delete_certification", ("s1", "k1")) in fake.calls


def test_attachments_are_listed_and_added(app, fake):
    fake.answers.update(
        {
            "survey.list_attachments": [{"id": "a1", "name": "PJ Numéro 1.pdf"}],
            "survey.prepare_upload": {"store": "store_file", "meta": {"kind": "attachment"}},
            "files.store_file": {"id": "f2"},
            "survey.add_attachment": {"id": "a2", "name": "PJ Numéro 2.pdf"},
        }
    )
    client = browser(app)
    page = text(client.get("/enquetes/s1/pieces"))
    assert "PJ Numéro 1.pdf" in page and "Exporter" in page and "Ajouter" in page
    added = client.post(
        "/enquetes/s1/pieces",
        data=upload(b"%PDF-1.4", "PJ Numéro 2.pdf", action="add"),
        content_type="multipart/form-data",
    )
    assert added.status_code == 200 and "PJ Numéro 2.pdf" in text(added)
    assert ("survey", "add_attachment", ("s1", "f2")) in fake.calls


def test_only_managers_see_the_transmission_form(app, fake):
    page = text(browser(app, roles=("user",)).get("/transmission"))
    assert "Seuls les gestionnaires de compte peuvent" in page and "<select" not in page
    refused = browser(app, roles=("user",)).post("/transmission", data=upload(survey_id="s1"))
    assert "survey.prepare_upload" not in fake.methods() and refused.status_code == 200


def test_a_transmission_shows_each_problem_or_the_recorded_file(app, fake):
    fake.answers.update(
        {
            "survey.list_surveys": {"items": [ROW], "total": 1},
            "survey.prepare_upload": PLAN,
            "files.store_xlsx": {"id": "f1"},
            "survey.submit_response": InvalidInput(
                "survey.form_invalid",
                "Le formulaire comporte des erreurs.",
                {"problems": ["Charges!E12 : un montant est attendu."]},
            ),
        }
    )
    client = browser(app)
    page = text(client.get("/transmission"))
    assert "Envoyer une enquête" in page and "Format accepté : .xlsx" in page
    bad = client.post("/transmission", data=upload(survey_id="s1"))
    assert bad.status_code == 422 and "Charges!E12 : un montant est attendu." in text(bad)
    fake.answers["survey.submit_response"] = {"id": "t1", "file_name": "Enquete CFA_A.F.T.I..xlsx"}
    good = client.post("/transmission", data=upload(survey_id="s1"))
    assert good.status_code == 200 and "Enquete CFA_A.F.T.I..xlsx" in text(good)


def test_a_refused_upload_reads_as_a_page_not_json(app, fake):
    fake.answers["survey.list_surveys"] = {"items": [ROW], "total": 1}
    fake.answers["survey.prepare_upload"] = Forbidden("survey.blocked", "L'enquête est bloquée.")
    response = browser(app).post("/transmission", data=upload(survey_id="s1"))
    assert response.status_code == 403 and response.mimetype == "text/html"
    assert "L'enquête est bloquée." in text(response)


def test_statuses_page_filters_and_paginates(app, fake):
    fake.answers["survey.list_statuses"] = {
        "items": [{**ROW, "number": 1, "status": "submitted", "status_label": "déposée"}],
        "page": 1,
        "pages": 2,
        "per_page": 50,
        "total": 95,
        "label": "Page 1 sur 2 (95 lignes)",
    }
    page = text(browser(app).get("/statuts?blocked=true"))
    assert "Page 1 sur 2 (95 lignes)" in page and "Enquête déposée" in page
    assert "Filtrer par enquête bloquée/débloquée" in page
    assert "/statuts?blocked=true&page=2" in page
    assert fake.calls == [("survey", "list_statuses", ({"blocked": "true", "page": "1"},))]


def test_a_survey_status_page_lists_its_transmitted_files(app, fake):
    fake.answers["survey.get_survey"] = {
        **ROW,
        "transmissions": [
            {
                "id": "t1",
                "number": 1,
                "file_name": "Compte cfa_CFA 1 - 20210310_1225.xlsx",
                "submitted_at": "2020-12-07T11:26:04+00:00",
                "submitter_name": "JOUARD Nadine",
                "submitter_email": "n.jouard@cfa1.com",
            }
        ],
    }
    page = text(browser(app).get("/statuts/s1"))
    assert "Compte cfa_CFA 1 - 20210310_1225.xlsx" in page and "07/12/2020 12:26:04" in page
    assert 'href="/api/v1/surveys/s1/transmissions/t1/file"' in page

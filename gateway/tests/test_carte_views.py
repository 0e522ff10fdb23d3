"""Carte views through ``app.test_client()`` with the services faked: what
each route sends where, in which order, and what the client gets back."""

from __future__ import annotations

import base64
import contextlib
import io

import pytest

from gateway import create_app
from gateway.api import carte as views
from gateway.auth import issue_token
from kit.errors import Conflict, InvalidInput, Unauthenticated
from tests.fakes import FakeRpc

ACCOUNT = {
    "user_id": "u1",
    "identifier": "0311234T",
    "kind": "establishment",
    "signed_in_as": "Vous êtes connecté en tant qu'établissement de formation avec "
    "l'identifiant 0311234T",
}


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    monkeypatch.setattr(views, "rpc", fake)
    monkeypatch.setattr(views, "_system", lambda: contextlib.nullcontext(fake))
    return fake


@pytest.fixture
def app():
    return create_app(
        {
            "TESTING": True,
            "SESSION_SECRET": "s" * 32,
            "REVOCATION_SOURCE": lambda since: {"now": None, "revoked": []},
            "RATELIMIT_ENABLED": True,
        }
    )


def headers(app, roles=("carte_establishment",)):
    with app.app_context():
        token = issue_token("sid", {"user_id": "u1", "roles": list(roles)})
    return {"Authorization": f"Bearer {token}"}


def test_sign_in_by_identifier_gives_a_carte_token_and_says_who_is_signed_in(app, fake):
    fake.answers["identity.carte_authenticate"] = {
        "session_id": "sid",
        "expires_at": "2030-01-01T00:00:00+00:00",
        "caller": {"user_id": "u1", "roles": ["carte_establishment"]},
        "user": ACCOUNT,
    }
    response = app.test_client().post(
        "/api/v1/carte/sessions", json={"identifier": "0311234t", "password": "secret"}
    )
    assert response.status_code == 201
    assert response.json["signed_in_as"].endswith("0311234T")
    assert "session=" in response.headers["Set-Cookie"]
    assert fake.calls[0][2][:2] == ("0311234t", "secret")


def test_sign_in_is_rate_limited_per_identifier_whatever_the_address(app, fake):
    fake.answers["identity.carte_authenticate"] = Unauthenticated(
        "auth.invalid_credentials", "Identifiant ou mot de passe incorrect."
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/api/v1/carte/sessions",
            json={"identifier": "0311234T", "password": "x"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{i}"},
        ).status_code
        for i in range(12)
    ]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]


def test_an_annex_is_stored_only_after_carte_allowed_it(app, fake):
    fake.answers["carte.prepare_annex"] = Conflict(
        "carte.request_validated", "La demande est validée."
    )
    client = app.test_client()
    refused = client.post(
        "/api/v1/carte/requests/7/annexes",
        data={"file": (io.BytesIO(b"%PDF-1.4"), "plan.pdf")},
        headers=headers(app),
    )
    assert refused.status_code == 409 and refused.json["code"] == "carte.request_validated"
    assert fake.methods() == ["carte.prepare_annex"]

    fake.calls.clear()
    fake.answers["carte.prepare_annex"] = {"remaining": 10}
    fake.answers["files.store_file"] = {
        "id": "f1",
        "name": "plan.pdf",
        "size": 8,
        "content_type": "application/pdf",
    }
    fake.answers["carte.add_annex"] = {"id": 7, "annexes": [{"id": 1, "name": "plan.pdf"}]}
    added = client.post(
        "/api/v1/carte/requests/7/annexes",
        data={"file": (io.BytesIO(b"%PDF-1.4"), "plan.pdf")},
        headers=headers(app),
    )
    assert added.status_code == 201
    assert fake.methods() == ["carte.prepare_annex", "files.store_file", "carte.add_annex"]
    assert fake.calls[1][2][0]["kind"] == "annex"
    assert fake.calls[2][2] == (
        7,
        {"file_id": "f1", "name": "plan.pdf", "size": 8, "content_type": "application/pdf"},
    )


def test_the_catalogue_import_is_refused_to_others_before_any_byte_travels(app, fake):
    response = app.test_client().post(
        "/api/v1/carte/catalogue/imports",
        data={"file": (io.BytesIO(b"a;b"), "c.csv")},
        headers=headers(app),
    )
    assert response.status_code == 403 and fake.calls == []


def test_an_xlsx_catalogue_goes_through_the_xlsx_checks(app, fake):
    fake.answers["files.store_xlsx"] = {"id": "x1"}
    fake.answers["carte.import_catalogue"] = {"created": 3}
    response = app.test_client().post(
        "/api/v1/carte/catalogue/imports",
        data={"file": (io.BytesIO(b"PK\x03\x04"), "catalogue.xlsx")},
        headers=headers(app, roles=("carte_admin",)),
    )
    assert response.status_code == 200 and response.json == {"created": 3}
    assert fake.methods() == ["files.store_xlsx", "carte.import_catalogue"]
    assert fake.calls[0][2][0]["kind"] == "catalogue"


def test_errors_of_a_save_come_back_per_field_with_their_codes(app, fake):
    fake.answers["carte.save_request"] = InvalidInput(
        "carte.uai_outside_network",
        "L'établissement ne fait pas partie de votre réseau.",
        {
            "fields": {"concerned_uai": ["hors réseau"]},
            "codes": {"concerned_uai": ["carte.uai_outside_network"]},
        },
    )
    response = app.test_client().put(
        "/api/v1/carte/requests/3", json={"concerned_uai": "0341234A"}, headers=headers(app)
    )
    assert response.status_code == 422
    assert response.json["code"] == "carte.uai_outside_network"
    assert response.json["errors"] == {"concerned_uai": ["hors réseau"]}
    assert response.json["details"]["codes"]["concerned_uai"] == ["carte.uai_outside_network"]


def test_exports_and_pdf_are_files_with_safe_names(app, fake):
    fake.answers["carte.export_validated"] = {
        "name": "demandes-validées.csv",
        "content_type": "text/csv; charset=utf-8",
        "content_b64": base64.b64encode(b"\xef\xbb\xbfId;").decode(),
    }
    fake.answers["carte.request_pdf"] = {
        "name": "demande-3.pdf",
        "content_type": "application/pdf",
        "content_b64": base64.b64encode(b"%PDF-1.4").decode(),
    }
    client = app.test_client()
    csv = client.get(
        "/api/v1/carte/reviews/export.csv?academy=toulouse&measure=ouverture&x=1",
        headers=headers(app, ("carte_reviewer",)),
    )
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert csv.headers["Content-Disposition"].startswith("attachment;")
    assert fake.calls[0][2] == ({"academy": "toulouse", "measure": "ouverture"}, "csv")
    pdf = client.get("/api/v1/carte/requests/3/pdf", headers=headers(app))
    assert pdf.data.startswith(b"%PDF") and pdf.headers["Content-Disposition"].startswith("inline")


def test_the_dashboard_page_shows_who_is_signed_in_and_the_guides_columns(app, fake):
    fake.answers["carte.dashboard"] = {
        "signed_in_as": ACCOUNT["signed_in_as"],
        "campaign": {
            "label": "Rentrée 2020",
            "state_label": "Ouverte",
            "opens_on": "2019-12-01",
            "closes_on": "2020-02-28",
        },
        "can_file": True,
        "drafts": [
            {
                "id": 16819,
                "measure": "Ouverture",
                "diploma": "Pas encore saisi",
                "modality": "S",
                "linked": "Non",
                "operation": "Continuer la saisie",
                "editable": True,
            }
        ],
        "validated": [],
    }
    page = app.test_client().get("/carte/", headers=headers(app)).get_data(as_text=True)
    assert "établissement de formation avec l&#39;identifiant 0311234T" in page
    for column in ("Id", "Mesure", "Diplôme", "Modalité", "Projet lié", "Opération"):
        assert f"<th>{column}</th>" in page
    assert "Continuer la saisie" in page and "Déposer une nouvelle demande" in page
    assert app.test_client().get("/carte/").status_code == 302  # not signed in


REVIEWER = "Vous êtes connecté en tant que relecteur avec l'identifiant AC-TLS"


def _board(**changes):
    board = {
        "signed_in_as": REVIEWER,
        "campaign": {"label": "Rentrée 2020", "state_label": "Ouverte"},
        "items": [
            {
                "id": 16845,
                "concerned_uai": "0311234T",
                "academy_label": "Académie de Toulouse",
                "department": "31",
                "measure_label": "Fermeture",
                "diploma": {"label": "CAP Ébéniste en 2 ans"},
                "modality": "S",
                "current_capacity": 24,
                "new_capacity": 0,
                "validated_at": "2020-01-15T10:00:00+00:00",
            }
        ],
        "total": 120,
        "page": 1,
        "per_page": 50,
        "choices": {
            "academy": {"toulouse": "Académie de Toulouse"},
            "measure": {"fermeture": "Fermeture"},
        },
    }
    board.update(changes)
    return board


def test_reviewers_land_on_the_validated_requests_of_their_scope_with_filters_and_exports(
    app, fake
):
    fake.answers["carte.list_validated"] = _board()
    client = app.test_client()
    landing = client.get("/carte/", headers=headers(app, ("carte_reviewer",)))
    assert landing.status_code == 302 and landing.location.endswith("/carte/relecture")
    assert fake.calls == []  # not the filers' dashboard, which would refuse them

    page = client.get(
        "/carte/relecture?academy=toulouse&measure=fermeture&x=1",
        headers=headers(app, ("carte_reviewer",)),
    )
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert fake.calls[0][2] == ({"academy": "toulouse", "measure": "fermeture"}, "1", "50")
    assert "relecteur avec l&#39;identifiant AC-TLS" in text and "Déconnexion" in text
    assert '<option value="toulouse" selected>' in text
    assert "/api/v1/carte/reviews/export.csv?academy=toulouse&amp;measure=fermeture" in text
    assert "/carte/demandes/16845/impression" in text and "15/01/2020" in text
    assert "/carte/relecture?academy=toulouse&amp;measure=fermeture&amp;page=2" in text
    assert "Page précédente" not in text


def test_a_bad_filter_shows_the_list_page_again_with_the_error_next_to_it(app, fake):
    refused = InvalidInput(
        "carte.filter_invalid",
        "Numéro de département attendu (ex. 31).",
        {"fields": {"department": ["Numéro de département attendu (ex. 31)."]}},
    )
    answers = iter([refused, _board(items=[], total=0)])

    def list_validated(*args):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    fake.answers["carte.list_validated"] = list_validated
    page = app.test_client().get(
        "/carte/relecture?department=%C2%B2", headers=headers(app, ("carte_reviewer",))
    )
    text = page.get_data(as_text=True)
    assert page.status_code == 422
    assert 'value="²"' in text and "Numéro de département attendu (ex. 31)." in text
    assert "Aucune demande validée ne correspond." in text


def test_the_catalogue_page_browses_and_searches_the_tree(app, fake):
    fake.answers["identity.get_carte_me"] = ACCOUNT
    fake.answers["carte.get_catalogue"] = {
        "levels": [
            {
                "code": "niveau3",
                "label": "Niveau 3 (CAP…)",
                "diplomas": [
                    {
                        "cfd": "50023418",
                        "rncp": "RNCP35282",
                        "title": "CAP Ébéniste",
                        "variants": [{"id": 4, "duration": 2, "label": "CAP Ébéniste en 2 ans"}],
                    }
                ],
            }
        ],
        "variant_count": 1,
    }
    page = app.test_client().get("/carte/catalogue?q=ébéniste", headers=headers(app))
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert ("carte", "get_catalogue", ("ébéniste",)) in fake.calls
    assert "CAP Ébéniste en 2 ans" in text and "RNCP35282" in text
    assert "1 formation pour « ébéniste »" in text and "identifiant 0311234T" in text


def test_the_missing_programme_page_says_who_is_signed_in_and_shows_errors_by_field(app, fake):
    fake.answers["identity.get_carte_me"] = ACCOUNT
    fake.answers["carte.report_missing_programme"] = InvalidInput(
        "carte.report_invalid",
        "Code RNCP invalide (ex. RNCP37098).",
        {"fields": {"rncp": ["Code RNCP invalide (ex. RNCP37098)."]}},
    )
    page = app.test_client().post(
        "/carte/formation-manquante",
        data={"title": "CAP Tapissier", "rncp": "RNCPX"},
        headers=headers(app),
    )
    text = page.get_data(as_text=True)
    assert page.status_code == 422 and "identifiant 0311234T" in text
    assert 'value="RNCPX"><ul class="errors"><li>Code RNCP invalide' in text


def test_a_form_typed_with_odd_characters_comes_back_with_its_errors_not_a_500(app, fake):
    fake.answers["carte.new_request_form"] = {
        "signed_in_as": ACCOUNT["signed_in_as"],
        "campaign": {"label": "Rentrée 2020"},
        "prefilled": {"referent_uai": "0311234T", "concerned_uai": "0311234T"},
        "establishments": ["0311234T"],
        "labels": {},
        "choices": {"modality": {}, "measure": {}, "recruitment_zones": {}},
    }
    fake.answers["carte.get_catalogue"] = {"levels": [], "variant_count": 0}
    fake.answers["carte.create_request"] = InvalidInput(
        "carte.diploma_unknown",
        "Choisissez un diplôme de la liste.",
        {"fields": {"variant_id": ["Choisissez un diplôme de la liste."]}},
    )
    page = app.test_client().post(
        "/carte/demandes/nouvelle",
        data={"variant_id": "²", "action": "save"},
        headers=headers(app),
    )
    assert page.status_code == 422
    assert "Choisissez un diplôme de la liste." in page.get_data(as_text=True)

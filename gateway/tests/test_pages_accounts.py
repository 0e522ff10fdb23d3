"""Account pages (section I of the Karoussel guide) through ``app.test_client()``
with the services faked: what each page sends where, and what the user sees,
errors included (next to their fields, never JSON)."""

from __future__ import annotations

import html
import io

import pytest

from gateway import create_app, web
from gateway.api import identity as identity_api
from gateway.auth import issue_token
from gateway.pages import accounts as views
from kit.errors import Conflict, InvalidInput
from tests.fakes import FakeRpc

FORM = {
    "account_type": "OFA",
    "siret": "86903209400011",
    "nda": "11930882293",
    "uai": "0750654D",
    "apprentice_count": "42",
    "last_name": "Martin",
    "first_name": "Claire",
    "phone": "01 23 45 67 89",
    "email": "claire@example.org",
    "email_confirm": "claire@example.org",
    "password": "correct horse 42",
    "password_confirm": "correct horse 42",
}
ROW = {
    "id": "u2",
    "display_name": "DUPONT Jean",
    "last_name": "Dupont",
    "first_name": "Jean",
    "email": "jean@example.org",
    "phone": "",
    "firm_name": None,
    "organisation_or_firm": "CFA DE L'INDUSTRIE SIMULEE",
    "role": "user",
    "profile": "Utilisateur CFA/OFA",
    "state": "not_activated",
    "state_label": "Compte non activé",
    "state_colour": "rouge",
}
PENDING = {
    **ROW,
    "id": "u9",
    "state": "awaiting_validation",
    "organisation": {
        "name": "ANCIEN CFA DU PORT IMAGINAIRE",
        "siret": "80733173100016",
        "account_type": "OFA",
        "sirene_status": "closed",
        "address": None,
    },
    "attachments": [{"file_id": "f1", "kind": "habilitation", "name": "habilitation.pdf"}],
    "has_habilitation": True,
}


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    monkeypatch.setattr(views, "rpc", fake)
    monkeypatch.setattr(identity_api, "rpc", fake)
    monkeypatch.setattr(web, "rpc", fake)
    return fake


@pytest.fixture
def app():
    return create_app(
        {
            "TESTING": True,
            "SESSION_SECRET": "s" * 32,
            "REVOCATION_SOURCE": lambda since: {"now": None, "revoked": []},
            "RATELIMIT_ENABLED": False,
        }
    )


def client_as(app, *roles, org_id="o1"):
    client = app.test_client()
    with app.app_context():
        token = issue_token("sid", {"user_id": "u1", "org_id": org_id, "roles": list(roles)})
    client.set_cookie("session", token)
    return client


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# ---------------------------------------------------------------- inscription


def test_the_registration_form_has_every_field_of_the_guide(app):
    page = text(app.test_client().get("/inscription"))
    for label in (
        "Type de compte",
        "SIRET",
        "Numéro de déclaration d'activité",
        "UAI",
        "Effectifs d'apprentis pour votre organisme au 31/12/",
        "Document d'habilitation",
        "Autres pièces jointes",
        "Nom",
        "Prénom",
        "Téléphone",
        "E-mail",
        "Confirmer l'E-mail",
        "Mot de passe",
        "Confirmer le mot de passe",
        "* champs obligatoires",
        "S'inscrire",
    ):
        assert label in page, label
    assert 'enctype="multipart/form-data"' in page
    assert '<label for="siret">' in page


def test_registering_checks_then_stores_the_files_then_registers(app, fake):
    fake.answers["files.store_file"] = {"id": "f1", "name": "habilitation.pdf"}
    fake.answers["identity.register_organisation"] = {"status": "confirmation_sent"}
    response = app.test_client().post(
        "/inscription",
        data={**FORM, "habilitation": (io.BytesIO(b"%PDF"), "habilitation.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert "Vous recevez un courriel vous invitant à confirmer votre adresse" in text(response)
    assert fake.methods() == [
        "identity.check_registration",
        "files.store_file",
        "identity.register_organisation",
    ]
    attachments = fake.calls[-1][2][1]
    assert attachments == [{"file_id": "f1", "kind": "habilitation", "name": "habilitation.pdf"}]


def test_an_invalid_registration_shows_the_form_again_with_messages_by_field(app, fake):
    fake.answers["identity.check_registration"] = InvalidInput.fields(
        {"siret": ["Le SIRET compte 14 chiffres."], "email_confirm": ["Les adresses diffèrent."]},
        "registration.invalid",
    )
    response = app.test_client().post(
        "/inscription", data={**FORM, "siret": "123"}, content_type="multipart/form-data"
    )
    page = text(response)
    assert response.status_code == 422
    assert 'role="alert"' in page
    assert 'id="siret-err"' in page and "Le SIRET compte 14 chiffres." in page
    assert "Les adresses diffèrent." in page
    assert 'value="123"' in page and 'value="Martin"' in page  # typed values kept
    assert "correct horse 42" not in page  # never the passwords
    assert fake.methods() == ["identity.check_registration"]  # nothing uploaded


# ---------------------------------------------------------------- navigation


def test_the_navigation_follows_the_role(app, fake):
    fake.answers["identity.get_me"] = {"display_name": "MARTIN Claire", "profile": "x"}
    manager = text(client_as(app, "manager").get("/"))
    assert 'href="/utilisateurs"' in manager and 'href="/enquetes"' in manager
    assert "/agence/inscriptions" not in manager and "Déconnexion" in manager
    agent = text(client_as(app, "agency_admin", org_id=None).get("/"))
    assert 'href="/agence/inscriptions"' in agent and 'href="/utilisateurs"' not in agent
    visitor = text(app.test_client().get("/"))
    assert "Déconnexion" not in visitor
    assert "href='/inscription'" in visitor


def test_account_pages_send_visitors_to_sign_in_and_refuse_other_roles(app, fake):
    assert app.test_client().get("/utilisateurs").headers["Location"].endswith("/connexion")
    refused = client_as(app, "user").get("/utilisateurs")
    assert refused.status_code == 403 and "éservé au gestionnaire de compte" in text(refused)
    assert client_as(app, "manager").get("/agence/inscriptions").status_code == 403
    assert fake.calls == []


# ---------------------------------------------------------------- gestion des utilisateurs


def test_the_users_table_shows_the_state_as_a_dot_with_its_label(app, fake):
    fake.answers["identity.list_users"] = [ROW]
    page = text(client_as(app, "manager").get("/utilisateurs"))
    for column in ("NOM Prénom", "E-mail", "Organisme / Cabinet", "Profil", "Etat"):
        assert f'<th scope="col">{column}</th>' in page
    assert "DUPONT Jean" in page and "CFA DE L'INDUSTRIE SIMULEE" in page
    assert 'class="dot dot-rouge" aria-hidden="true"></span>Compte non activé' in page
    assert 'action="/utilisateurs/u2/confirmer-adresse"' in page
    assert 'action="/utilisateurs/u2/desactiver"' in page
    assert 'href="/utilisateurs/u2/modifier"' in page


def test_creating_a_user_sends_the_form_for_the_callers_organisation(app, fake):
    fake.answers["identity.create_user"] = {**ROW}
    data = {"last_name": "Dupont", "first_name": "Jean", "email": "jean@example.org",
            "phone": "", "role": "user", "firm_name": ""}  # fmt: skip
    response = client_as(app, "manager").post("/utilisateurs", data=data)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/utilisateurs?fait=cree")
    assert fake.calls == [("identity", "create_user", ("o1", data))]


def test_a_quota_error_is_shown_on_the_page_with_what_was_typed(app, fake):
    fake.answers["identity.list_users"] = [ROW]
    fake.answers["identity.create_user"] = Conflict(
        "quota.users", "Un organisme compte au plus 5 comptes utilisateurs."
    )
    response = client_as(app, "manager").post(
        "/utilisateurs", data={"last_name": "Sixième", "email": "six@example.org"}
    )
    page = text(response)
    assert response.status_code == 409
    assert '<p class="error" role="alert">Un organisme compte au plus 5' in page
    assert 'value="Sixième"' in page and "{" not in page.split("<main>")[1][:40]


def test_row_actions_call_identity_and_come_back_to_the_list(app, fake):
    fake.answers["identity.list_users"] = [ROW]
    client = client_as(app, "manager")
    for path, method in (
        ("valider", "validate_user"),
        ("confirmer-adresse", "confirm_user_email"),
        ("desactiver", "deactivate_user"),
    ):
        response = client.post(f"/utilisateurs/u2/{path}")
        assert response.status_code == 303
        assert fake.calls[-1] == ("identity", method, ("u2",))
    assert "Le compte est désactivé." in text(client.get("/utilisateurs?fait=desactive"))


def test_deactivating_the_last_manager_is_refused_on_the_page(app, fake):
    fake.answers["identity.list_users"] = [ROW]
    fake.answers["identity.deactivate_user"] = Conflict(
        "quota.last_manager", "L'organisme doit garder un gestionnaire de compte."
    )
    response = client_as(app, "manager").post("/utilisateurs/u2/desactiver")
    assert response.status_code == 409
    assert "L'organisme doit garder un gestionnaire" in text(response)


def test_modifier_shows_the_row_then_saves_it(app, fake):
    fake.answers["identity.list_users"] = [ROW]
    client = client_as(app, "manager")
    form = text(client.get("/utilisateurs/u2/modifier"))
    assert 'value="Dupont"' in form and "jean@example.org" in form
    response = client.post(
        "/utilisateurs/u2/modifier",
        data={"last_name": "Dupont", "first_name": "Jean", "role": "manager"},
    )
    assert response.status_code == 303
    assert fake.calls[-1][1:] == ("update_user", ("u2", {
        "last_name": "Dupont", "first_name": "Jean", "phone": "", "role": "manager",
        "firm_name": ""}))  # fmt: skip
    assert client.get("/utilisateurs/nobody/modifier").status_code == 404


# ---------------------------------------------------------------- agency


def test_the_agency_queue_flags_a_closed_establishment_and_links_the_documents(app, fake):
    fake.answers["identity.list_registrations"] = [PENDING]
    page = text(client_as(app, "agency_admin", org_id=None).get("/agence/inscriptions"))
    assert "ANCIEN CFA DU PORT IMAGINAIRE" in page and "80733173100016" in page
    assert "établissement fermé" in page
    assert 'href="/api/v1/files/f1"' in page
    assert 'action="/agence/inscriptions/u9/valider"' in page
    assert '<label for="reason-u9">Motif du refus *</label>' in page


def test_refusing_without_a_reason_asks_for_one_and_calls_nothing(app, fake):
    fake.answers["identity.list_registrations"] = [PENDING]
    client = client_as(app, "agency_admin", org_id=None)
    response = client.post("/agence/inscriptions/u9/refuser", data={"reason": "  "})
    assert response.status_code == 422
    assert "Indiquez le motif du refus." in text(response)
    assert "identity.reject_user" not in fake.methods()
    done = client.post("/agence/inscriptions/u9/refuser", data={"reason": "Pièces illisibles"})
    assert done.status_code == 303
    assert fake.calls[-1] == ("identity", "reject_user", ("u9", "Pièces illisibles"))


def test_a_validation_error_is_shown_on_the_queue(app, fake):
    fake.answers["identity.list_registrations"] = [PENDING]
    fake.answers["identity.validate_user"] = Conflict(
        "validation.closed", "L'établissement est fermé dans SIRENE."
    )
    client = client_as(app, "agency_admin", org_id=None)
    response = client.post("/agence/inscriptions/u9/valider")
    assert response.status_code == 409
    assert "L'établissement est fermé dans SIRENE." in text(response)


def test_signing_out_closes_the_session_and_clears_the_cookie(app, fake):
    response = client_as(app, "manager").post("/deconnexion")
    assert response.status_code == 303 and response.headers["Location"].endswith("/connexion")
    assert fake.calls == [("identity", "end_session", ("sid",))]
    assert "session=;" in response.headers["Set-Cookie"]

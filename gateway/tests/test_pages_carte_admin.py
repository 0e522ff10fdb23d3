"""The carte administrator's pages and the filers' « Priorités » with the
services faked (the fake rpc of ``test_carte_views``)."""

from __future__ import annotations

import html
import io

import pytest

from kit.errors import Conflict, InvalidInput

from . import test_carte_views as base

headers = base.headers


@pytest.fixture
def fake(monkeypatch):
    return base.fake.__wrapped__(monkeypatch)


@pytest.fixture
def app():
    return base.app.__wrapped__()


ADMIN = ("agency_admin",)
ACCOUNT = {
    "user_id": "u9",
    "identifier": "0311234T",
    "kind": "establishment",
    "kind_label": "Établissement de formation",
    "label": "Lycée des métiers",
    "uai": "0311234T",
    "member_uais": [],
    "scope": None,
    "scope_label": None,
    "referent_uai": None,
    "active": True,
}


def _admin_page(fake, client, app, path, **kwargs):
    fake.answers.setdefault("identity.get_carte_me", {"signed_in_as": ""})
    method = client.post if "data" in kwargs else client.get
    return method(path, headers=headers(app, ADMIN), **kwargs)


def test_admin_pages_refuse_visitors_and_filers(app, fake):
    client = app.test_client()
    for path in ("/carte/admin/comptes", "/carte/admin/campagnes", "/carte/admin/catalogue"):
        assert client.get(path).status_code == 302
        refused = client.get(path, headers=headers(app))
        assert refused.status_code == 403
        assert "Réservé aux administrateurs" in html.unescape(refused.text)
    assert fake.calls == []


def test_accounts_list_create_shows_password_once_and_errors(app, fake):
    client = app.test_client()
    fake.answers["identity.list_carte_accounts"] = [ACCOUNT]
    listed = _admin_page(fake, client, app, "/carte/admin/comptes")
    assert listed.status_code == 200 and "0311234T" in listed.text
    assert "Lycée des métiers" in html.unescape(listed.text)
    assert "Administration" in listed.text  # the admin links

    fake.answers["identity.create_carte_account"] = {"account": ACCOUNT, "password": "Xy7-secret"}
    created = _admin_page(
        fake,
        client,
        app,
        "/carte/admin/comptes",
        data={
            "kind": "network",
            "identifier": "RESEAU1",
            "label": "Réseau",
            "contact_email": "r@example.org",
            "member_uais": "0311234T, 0311235U",
            "referent_uai": "0311234T",
            "scope": "all",
        },
    )
    assert created.status_code == 201 and "Xy7-secret" in created.text
    sent = next(a for s, m, a in fake.calls if m == "create_carte_account")[0]
    assert sent["member_uais"] == ["0311234T", "0311235U"] and "scope" not in sent

    fake.answers["identity.create_carte_account"] = InvalidInput.fields(
        {"identifier": ["Code UAI invalide."]},
        "identity.carte_account_invalid",
        "Le compte comporte des erreurs.",
    )
    refused = _admin_page(
        fake, client, app, "/carte/admin/comptes", data={"kind": "establishment", "identifier": "X"}
    )
    text = html.unescape(refused.text)
    assert refused.status_code == 422 and "Code UAI invalide." in text
    assert "Le compte comporte des erreurs." in text and "Xy7-secret" not in text

    fake.answers["identity.regenerate_carte_password"] = {
        "account": ACCOUNT,
        "password": "New-pw-1",
    }
    regenerated = _admin_page(fake, client, app, "/carte/admin/comptes/u9/mot-de-passe", data={})
    assert regenerated.status_code == 200 and "New-pw-1" in regenerated.text
    assert ("identity", "regenerate_carte_password", ("u9",)) in fake.calls


def test_campaigns_list_create_and_conflict(app, fake):
    client = app.test_client()
    campaign = {
        "id": 1,
        "school_year": 2026,
        "label": "Rentrée 2026",
        "programming_year": "2026-2027",
        "opens_on": "2026-01-05",
        "closes_on": "2026-03-01",
        "state": "open",
        "state_label": "Ouverte",
    }
    fake.answers["carte.list_campaigns"] = [campaign]
    listed = _admin_page(fake, client, app, "/carte/admin/campagnes")
    assert "Rentrée 2026" in html.unescape(listed.text) and "05/01/2026" in listed.text

    fake.answers["carte.create_campaign"] = campaign
    form = {"school_year": "2026", "opens_on": "2026-01-05", "closes_on": "2026-03-01"}
    created = _admin_page(fake, client, app, "/carte/admin/campagnes", data=form)
    assert created.status_code == 201 and "créée" in html.unescape(created.text)
    assert ("carte", "create_campaign", (form,)) in fake.calls

    fake.answers["carte.create_campaign"] = Conflict(
        "carte.campaign_exists", "Cette rentrée a déjà sa campagne."
    )
    conflict = _admin_page(fake, client, app, "/carte/admin/campagnes", data=form)
    assert conflict.status_code == 409
    assert "Cette rentrée a déjà sa campagne." in html.unescape(conflict.text)
    assert '"code"' not in conflict.text


def test_catalogue_import_shows_every_problem_and_the_reports(app, fake):
    client = app.test_client()
    fake.answers["carte.list_programme_reports"] = [
        {"id": 1, "title": "CAP Tapissier", "cfd": "", "rncp": "RNCP37098", "reference": "",
         "message": "", "reporter_identifier": "0311234T", "created_at": "2026-01-02T10:00:00Z"}
    ]  # fmt: skip
    fake.answers["files.store_file"] = {"id": "f1"}
    fake.answers["carte.import_catalogue"] = InvalidInput(
        "carte.catalogue_invalid",
        "Le catalogue comporte des erreurs.",
        {
            "problems": [
                {"row": 3, "column": "code_diplome", "message": "Code diplôme : 8 chiffres."}
            ]
        },
    )
    refused = _admin_page(
        fake,
        client,
        app,
        "/carte/admin/catalogue",
        data={"file": (io.BytesIO(b"niveau;diplome\n"), "catalogue.csv")},
        content_type="multipart/form-data",
    )
    text = html.unescape(refused.text)
    assert refused.status_code == 422 and "Le catalogue comporte des erreurs." in text
    assert "<td>3</td><td>code_diplome</td><td>Code diplôme : 8 chiffres.</td>" in text
    assert "CAP Tapissier" in text

    fake.answers["carte.import_catalogue"] = {
        "diplomas": 2, "variants": 3, "created": 1, "updated": 0, "withdrawn": 0
    }  # fmt: skip
    done = _admin_page(
        fake,
        client,
        app,
        "/carte/admin/catalogue",
        data={"file": (io.BytesIO(b"niveau;diplome\n"), "catalogue.csv")},
        content_type="multipart/form-data",
    )
    assert done.status_code == 200 and "Catalogue importé" in html.unescape(done.text)

    wrong = _admin_page(
        fake,
        client,
        app,
        "/carte/admin/catalogue",
        data={"file": (io.BytesIO(b"x"), "catalogue.pdf")},
        content_type="multipart/form-data",
    )
    assert wrong.status_code == 422 and ".xlsx ou .csv" in html.unescape(wrong.text)


def test_a_filer_reorders_the_priorities_of_its_drafts(app, fake):
    client = app.test_client()
    drafts = [
        {"id": 7, "measure": "Ouverture", "diploma": "CAP", "priority": 1,
         "concerned_uai": "0311234T", "editable": True},
        {"id": 9, "measure": "Fermeture", "diploma": "BTS", "priority": 2,
         "concerned_uai": "0311234T", "editable": True},
    ]  # fmt: skip
    fake.answers["carte.dashboard"] = {"signed_in_as": "Vous êtes connecté", "drafts": drafts}
    assert client.get("/carte/priorites").status_code == 302
    shown = client.get("/carte/priorites", headers=headers(app))
    assert shown.status_code == 200 and 'name="rank_7" ' in shown.text

    fake.answers["carte.reorder_priorities"] = {"uai": "0311234T", "priorities": []}
    done = client.post(
        "/carte/priorites",
        headers=headers(app),
        data={"uai": "0311234T", "rank_7": "2", "rank_9": "1"},
    )
    assert done.status_code == 200 and "enregistré" in html.unescape(done.text)
    assert ("carte", "reorder_priorities", ("0311234T", [9, 7])) in fake.calls

    fake.answers["carte.reorder_priorities"] = InvalidInput.fields(
        {"order": ["Indiquez une fois chacune de vos demandes."]},
        "carte.order_invalid",
        "Ordre invalide.",
    )
    refused = client.post("/carte/priorites", headers=headers(app), data={"uai": "0311234T"})
    assert refused.status_code == 422
    assert "Indiquez une fois chacune de vos demandes." in html.unescape(refused.text)

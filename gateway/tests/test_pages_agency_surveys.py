"""The agency's survey pages (``gateway.pages.agency_surveys``) with the
services faked: campaigns and their counts, « Nouvelle enquête » and its
per-field refusals, a campaign's statuses, blocking, pagination, exports."""

from __future__ import annotations

import pytest

from gateway.pages import agency_surveys as pages
from kit.errors import InvalidInput, NotFound
from tests.fakes import FakeRpc, page_text, signed_in

CAMPAIGN = {
    "id": "c1",
    "name": "Enquete CFA 2021",
    "details": "Comptabilité analytique",
    "form_type": "CFA",
    "form_label": "CFA - CFA",
    "direction": "DIRECTION_1",
    "online_on": "2021-03-23",
    "transmission_opens_on": "2021-04-01",
    "return_due_on": "2021-07-15",
    "closes_on": "2021-07-31",
    "target": "all",
    "target_label": "Tous les organismes validés",
    "counts": {"total": 7, "not_downloaded": 4, "downloaded": 2, "submitted": 1, "blocked": 3},
}
STATUS = {
    "id": "s1",
    "number": 1,
    "organisation": "A.F.T.I.",
    "status": "submitted",
    "status_label": "déposée",
    "last_sent_at": "2020-12-07T11:26:04+00:00",
    "blocked": False,
}
PAGE = {"items": [STATUS], "page": 1, "pages": 2, "per_page": 50, "total": 51,
        "label": "Page 1 sur 2 (51 lignes)"}  # fmt: skip


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    monkeypatch.setattr(pages, "rpc", fake)
    fake.answers.update(
        {
            "survey.list_campaigns": [CAMPAIGN],
            "survey.get_campaign": CAMPAIGN,
            "survey.list_statuses": PAGE,
            "survey.create_campaign": CAMPAIGN,
            "survey.set_blocked": {**STATUS, "blocked": True},
        }
    )
    return fake


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
    )


def browser(app, roles=("agency_admin",)):
    return signed_in(app, roles)


text = page_text


def test_visitors_go_to_sign_in_and_organisations_are_refused(app, fake):
    visitor = app.test_client().get("/agence/enquetes")
    assert visitor.status_code == 303 and visitor.headers["Location"].endswith("/connexion")
    for path in ("/agence/enquetes", "/agence/enquetes/c1"):
        refused = browser(app, ("manager",)).get(path)
        assert refused.status_code == 403
        assert "réservée aux agents de France compétences" in text(refused)
    posted = browser(app, ("manager",)).post("/agence/enquetes/c1/organismes/s1/bloquer")
    assert posted.status_code == 403
    assert fake.calls == []


def test_the_list_shows_each_campaign_with_its_counts_and_the_form(app, fake):
    response = browser(app).get("/agence/enquetes")
    page = text(response)
    assert response.status_code == 200
    assert 'href="/agence/enquetes/c1"' in page and "Enquete CFA 2021" in page
    assert "23/03/2021" in page and "31/07/2021" in page
    row = [r for r in page.split("<tr>") if "Enquete CFA 2021" in r][0]
    assert all(
        c in row for c in ("<td>7</td>", "<td>4</td>", "<td>2</td>", "<td>1</td>", "<td>3</td>")
    )
    assert "Nouvelle enquête" in page
    for name in ("name", "details", "form_type", "direction", "online_on",
                 "transmission_opens_on", "return_due_on", "closes_on", "target"):  # fmt: skip
        assert f'name="{name}"' in page
    assert 'value="OFA"' in page and 'value="OG"' in page
    assert 'href="/agence/enquetes">Enquêtes (agence)</a>' in page
    assert fake.methods() == ["survey.list_campaigns"]


def test_creating_a_campaign_calls_the_service_and_redirects(app, fake):
    form = {
        "name": " Enquete ",
        "details": "d",
        "form_type": "CFA",
        "direction": "DIRECTION_1",
        "online_on": "2021-03-23",
        "transmission_opens_on": "2021-04-01",
        "return_due_on": "2021-07-15",
        "closes_on": "2021-07-31",
        "target": "OG",
    }
    response = browser(app).post("/agence/enquetes", data=form)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/agence/enquetes?fait=cree")
    [(_s, _m, (sent,))] = [c for c in fake.calls if c[1] == "create_campaign"]
    assert sent == {**form, "name": "Enquete"}
    after = browser(app).get(response.headers["Location"])
    assert "L'enquête est créée." in text(after)


def test_a_refused_campaign_shows_each_message_next_to_its_field(app, fake):
    fake.answers["survey.create_campaign"] = InvalidInput.fields(
        {
            "name": ["Le nom de l'enquête est obligatoire (120 caractères au plus)."],
            "closes_on": ["Date de clôture ne peut pas précéder la date de retour souhaité."],
        },
        "survey.campaign_invalid",
        "L'enquête est mal renseignée.",
    )
    response = browser(app).post(
        "/agence/enquetes", data={"details": "Gardé", "closes_on": "2021-01-01", "target": "OFA"}
    )
    page = text(response)
    assert response.status_code == 422
    assert "L'enquête est mal renseignée." in page
    assert 'id="name" name="name" type="text" required\n value="" aria-invalid="true"' in page
    assert '<ul class="errors" id="name-err">' in page
    assert '<ul class="errors" id="closes_on-err">' in page
    assert (
        page.index('id="closes_on"')
        < page.index("ne peut pas précéder")
        < page.index('id="target"')
    )
    assert 'value="Gardé"' in page and '<option value="OFA" selected>' in page


def test_a_campaign_statuses_page_lists_every_organisation(app, fake):
    response = browser(app).get("/agence/enquetes/c1?blocked=false&page=1")
    page = text(response)
    assert response.status_code == 200
    assert (
        "survey",
        "list_statuses",
        ({"campaign_id": "c1", "blocked": "false", "page": "1"},),
    ) in (fake.calls)
    for heading in ("#", "Organisme", "Statut", "Date de dernier envoi", "Bloquée"):
        assert f'<th scope="col">{heading}</th>' in page
    assert "A.F.T.I." in page and "Enquête déposée" in page and "07/12/2020 12:26:04" in page
    assert (
        'action="/agence/enquetes/c1/organismes/s1/bloquer"' in page and ">Bloquer</button>" in page
    )
    assert "Page 1 sur 2 (51 lignes)" in page
    assert 'href="/agence/enquetes/c1?blocked=false&page=2">Page suivante' in page
    assert 'href="/api/v1/survey-campaigns/c1/export?format=xlsx"' in page
    assert 'href="/api/v1/survey-campaigns/c1/export?format=csv"' in page
    assert '<option value="false" selected>' in page


def test_a_blocked_survey_offers_to_unblock(app, fake):
    fake.answers["survey.list_statuses"] = {**PAGE, "items": [{**STATUS, "blocked": True}]}
    page = text(browser(app).get("/agence/enquetes/c1"))
    assert 'action="/agence/enquetes/c1/organismes/s1/debloquer"' in page
    assert ">Débloquer</button>" in page and "<td>Oui</td>" in page


def test_block_and_unblock_call_set_blocked_and_come_back(app, fake):
    client = browser(app)
    blocked = client.post(
        "/agence/enquetes/c1/organismes/s1/bloquer", data={"blocked": "false", "page": "2"}
    )
    assert blocked.status_code == 303
    assert blocked.headers["Location"].endswith(
        "/agence/enquetes/c1?blocked=false&page=2&fait=bloquee"
    )
    unblocked = client.post("/agence/enquetes/c1/organismes/s1/debloquer")
    assert unblocked.headers["Location"].endswith("/agence/enquetes/c1?fait=debloquee")
    assert [c for c in fake.calls if c[1] == "set_blocked"] == [
        ("survey", "set_blocked", ("s1", True)),
        ("survey", "set_blocked", ("s1", False)),
    ]
    shown = text(client.get(blocked.headers["Location"]))
    assert "L'enquête de l'organisme est bloquée." in shown


def test_refusals_read_as_pages(app, fake):
    fake.answers["survey.get_campaign"] = NotFound(
        "survey.campaign_not_found", "Cette enquête n'existe pas."
    )
    missing = browser(app).get("/agence/enquetes/nope")
    assert missing.status_code == 404 and "Cette enquête n'existe pas." in text(missing)
    fake.answers["survey.get_campaign"] = CAMPAIGN
    fake.answers["survey.list_statuses"] = InvalidInput.fields(
        {"blocked": ["Filtre : true (bloquées), false (débloquées) ou vide."]},
        "survey.filter_invalid",
        "Filtre invalide.",
    )
    bad = browser(app).get("/agence/enquetes/c1?blocked=x")
    assert bad.status_code == 422 and "blocked : Filtre : true" in text(bad)
    fake.answers["survey.set_blocked"] = NotFound("survey.not_found", "Enquête introuvable.")
    gone = browser(app).post("/agence/enquetes/c1/organismes/zz/bloquer")
    assert gone.status_code == 404 and "Enquête introuvable." in text(gone)


def test_the_organisation_search_is_passed_on_and_kept(app, fake):
    page = text(browser(app).get("/agence/enquetes/c1?q=AFTI&blocked=true"))
    assert (
        "survey",
        "list_statuses",
        ({"campaign_id": "c1", "blocked": "true", "q": "AFTI", "page": "1"},),
    ) in fake.calls
    assert 'id="q" name="q" value="AFTI"' in page
    assert 'href="/agence/enquetes/c1?blocked=true&q=AFTI&page=2">Page suivante' in page
    back = browser(app).post(
        "/agence/enquetes/c1/organismes/s1/bloquer", data={"q": "AFTI", "page": "1"}
    )
    assert back.headers["Location"].endswith("/agence/enquetes/c1?q=AFTI&page=1&fait=bloquee")

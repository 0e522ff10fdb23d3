"""The agency's page « Courriels non remis » (``gateway.pages.undelivered_emails``)
with notify faked: the list, « Renvoyer », the menu link, and the gate."""

from __future__ import annotations

import pytest

from gateway.pages import undelivered_emails as pages
from kit.errors import NotFound, Unavailable
from tests.fakes import FakeRpc, page_text, signed_in

EMAIL = {
    "id": "m1",
    "template": "user_registered",
    "to": "nina.roux@example.test",
    "subject": "Confirmez votre adresse",
    "attempts": 31,
    "last_error": "serveur SMTP injoignable : ConnectionRefusedError",
    "created_at": "2026-12-01T08:00:00+00:00",
    "last_attempt_at": "2026-12-02T08:00:00+00:00",
}


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    monkeypatch.setattr(pages, "rpc", fake)
    fake.answers["notify.list_undelivered_emails"] = {"items": [EMAIL], "total": 1}
    fake.answers["notify.resend_email"] = {"id": "m1", "status": "failed"}
    return fake


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
        RATE_LIMIT_PER_MINUTE=0,
        CSRF_PROTECTION=False,
    )


@pytest.fixture
def agent(app):
    return signed_in(app, ["agency_admin"])


def test_the_page_lists_undelivered_emails_with_a_resend_button(agent, fake):
    response = agent.get("/agence/courriels")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    text = page_text(response)
    assert "Courriels non remis" in text
    for shown in ("nina.roux@example.test", "Confirmez votre adresse", "31", "injoignable"):
        assert shown in text
    assert 'action="/agence/courriels/m1/renvoyer"' in text
    assert 'href="/agence/courriels"' in text  # in the agency's menu
    assert "/agence/partenaires/livraisons?state=failed" in text
    assert fake.calls == [("notify", "list_undelivered_emails", (50, 0))]


def test_a_later_page_asks_for_its_offset(agent, fake):
    fake.answers["notify.list_undelivered_emails"] = {"items": [EMAIL], "total": 120}
    text = page_text(agent.get("/agence/courriels?page=3"))
    assert fake.calls[-1] == ("notify", "list_undelivered_emails", (50, 100))
    assert "Page 3 sur 3" in text and "Page précédente" in text


def test_nothing_undelivered(agent, fake):
    fake.answers["notify.list_undelivered_emails"] = {"items": [], "total": 0}
    assert "Aucun courriel non remis." in page_text(agent.get("/agence/courriels"))


def test_resend_queues_it_again_and_says_so(agent, fake):
    response = agent.post("/agence/courriels/m1/renvoyer")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/agence/courriels?fait=renvoye")
    assert ("notify", "resend_email", ("m1",)) in fake.calls
    assert "programmé" in page_text(agent.get(response.headers["Location"]))


def test_resend_of_one_already_sent_again_just_goes_back(agent, fake):
    fake.answers["notify.resend_email"] = NotFound("email.not_undelivered", "Plus en échec.")
    response = agent.post("/agence/courriels/m1/renvoyer")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/agence/courriels")


def test_notify_down_is_a_503_page_not_a_500(agent, fake):
    fake.answers["notify.list_undelivered_emails"] = Unavailable(
        "service.database_unavailable", "La base de données est indisponible.", {"retry_after": 5}
    )
    response = agent.get("/agence/courriels")
    assert response.status_code == 503
    assert "indisponible" in page_text(response)


def test_only_agents_see_it(app, fake):
    assert app.test_client().get("/agence/courriels").status_code == 303  # to /connexion
    user = signed_in(app, ["user"], org_id="o1")
    assert user.get("/agence/courriels").status_code == 403
    assert user.post("/agence/courriels/m1/renvoyer").status_code == 403
    assert fake.calls == []

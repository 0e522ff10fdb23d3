"""Partner API views (``gateway.api.partners``) with the services faked: which
credential opens which route, what goes to which service, long polling, and
the agency's administration routes."""

from __future__ import annotations

import base64
import time

import pytest
import yaml

from gateway.api import partners as views
from gateway.auth import COOKIE, issue_token
from kit.context import Caller
from kit.errors import BadRequest, Gone, NotFound, Unauthenticated
from tests.fakes import FakeRpc

KEY = "fpk_abcdefgh_" + "x" * 43
ME = {"partner_id": "p1", "name": "Région", "scope": {"account_types": ["OFA"]},
      "event_types": ["survey.response_submitted"], "key_id": "k1"}  # fmt: skip
EVENT = {"specversion": "1.0", "id": "e1", "type": "fr.formation.survey.response_submitted.v1"}


class RecordingRpc(FakeRpc):
    """Also records the caller each call is made as (``g.caller``)."""

    def __init__(self):
        super().__init__()
        self.callers: list[Caller] = []

    def __getattr__(self, service):
        inner = super().__getattr__(service)
        fake = self

        class Service:
            def __getattr__(self, method):
                call = getattr(inner, method)

                def recorded(*args, **kwargs):
                    from flask import g

                    fake.callers.append(g.caller)
                    return call(*args, **kwargs)

                return recorded

        return Service()


@pytest.fixture
def fake(monkeypatch):
    fake = RecordingRpc()
    monkeypatch.setattr(views, "rpc", fake)
    fake.answers["notify.authenticate_partner"] = ME
    return fake


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
        PUBLIC_URL="https://formation.example.fr",
    )


def session_token(app, roles=("agency_admin",)):
    with app.app_context():
        return issue_token("sid", {"user_id": "u1", "org_id": None, "roles": list(roles)})


def as_partner(key=KEY):
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------- credentials


def test_a_partner_route_without_a_key_is_refused_with_a_french_401_saying_how(app, fake):
    response = app.test_client().get("/api/v1/partner/events")

    assert response.status_code == 401
    assert response.get_json()["code"] == "partner.key_missing"
    assert "X-Api-Key" in response.get_json()["title"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="partner"'
    assert fake.calls == []


def test_a_session_token_never_opens_a_partner_route(app, fake):
    token = session_token(app)
    client = app.test_client()
    client.set_cookie(COOKIE, token)

    by_header = client.get("/api/v1/partner/events", headers={"Authorization": f"Bearer {token}"})
    by_cookie = client.get("/api/v1/partner/transmissions/t1")

    assert by_header.status_code == 401
    assert by_header.get_json()["code"] == "partner.key_invalid"
    assert by_cookie.status_code == 401
    assert by_cookie.get_json()["code"] == "partner.key_missing"
    assert fake.calls == []


def test_a_partner_key_opens_no_organisation_or_agency_route(app, fake):
    client = app.test_client()

    for path in ("/api/v1/partners", "/api/v1/surveys", "/api/v1/me"):
        response = client.get(path, headers=as_partner())
        assert response.status_code == 401, path
        response = client.get(path, headers={"X-Api-Key": KEY})
        assert response.status_code == 401, path
    assert not any(s == "notify" and m == "authenticate_partner" for s, m, _ in fake.calls)


def test_an_unknown_or_revoked_key_is_401_from_notify(app, fake):
    fake.answers["notify.partner_feed"] = Unauthenticated(
        "partner.key_invalid", "Clé d'API inconnue ou révoquée."
    )

    response = app.test_client().get("/api/v1/partner/events", headers={"X-Api-Key": KEY})

    assert response.status_code == 401
    assert response.get_json()["title"] == "Clé d'API inconnue ou révoquée."
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="partner"'


# ---------------------------------------------------------------- the feed


def test_the_feed_is_one_rpc_with_the_key_cursor_and_limit(app, fake):
    page = {"items": [EVENT], "next_cursor": "v1.1.0", "has_more": False}
    fake.answers["notify.partner_feed"] = page

    response = app.test_client().get(
        "/api/v1/partner/events?after=v1.0.0&limit=10", headers=as_partner()
    )

    assert response.status_code == 200
    assert response.get_json() == page
    assert fake.calls == [("notify", "partner_feed", (KEY, "v1.0.0", "10"))]


@pytest.mark.parametrize(
    "error, status",
    [
        (BadRequest("partner.cursor_invalid", "Curseur invalide."), 400),
        (Gone("partner.cursor_expired", "Curseur antérieur à la conservation."), 410),
        (BadRequest("partner.limit_invalid", "« limit » entre 1 et 500."), 400),
    ],
)
def test_the_feed_keeps_notifys_cursor_and_limit_errors(app, fake, error, status):
    fake.answers["notify.partner_feed"] = error

    response = app.test_client().get("/api/v1/partner/events?after=zz", headers=as_partner())

    assert response.status_code == status
    assert response.get_json()["code"] == error.code
    assert response.get_json()["title"] == error.message


@pytest.mark.parametrize("wait", ["-1", "31", "abc", "2.5"])
def test_a_wait_outside_0_to_30_seconds_is_refused(app, fake, wait):
    response = app.test_client().get(f"/api/v1/partner/events?wait={wait}", headers=as_partner())

    assert response.status_code == 400
    assert response.get_json()["code"] == "partner.wait_invalid"
    assert fake.calls == []


def test_long_polling_answers_as_soon_as_an_event_arrives(app, fake, monkeypatch):
    monkeypatch.setattr(views, "POLL_EVERY", 0.05)
    pages = [
        {"items": [], "next_cursor": "v1.7.0", "has_more": False},
        {"items": [], "next_cursor": "v1.7.0", "has_more": False},
        {"items": [EVENT], "next_cursor": "v1.8.0", "has_more": False},
    ]
    fake.answers["notify.partner_feed"] = lambda *args: pages.pop(0)

    started = time.monotonic()
    response = app.test_client().get("/api/v1/partner/events?wait=5", headers=as_partner())

    assert response.get_json()["items"] == [EVENT]
    assert time.monotonic() - started < 2
    # after the first empty page, it polls from the cursor notify gave back
    assert [c[2][1] for c in fake.calls] == [None, "v1.7.0", "v1.7.0"]


def test_long_polling_gives_the_empty_page_after_the_wait(app, fake, monkeypatch):
    monkeypatch.setattr(views, "POLL_EVERY", 0.1)
    fake.answers["notify.partner_feed"] = {"items": [], "next_cursor": "v1.7.0", "has_more": False}

    started = time.monotonic()
    response = app.test_client().get("/api/v1/partner/events?wait=1", headers=as_partner())
    took = time.monotonic() - started

    assert response.status_code == 200
    assert response.get_json()["items"] == []
    assert 0.9 <= took < 2.5
    assert 5 <= len(fake.calls) <= 12


def test_beyond_the_long_poll_cap_the_empty_page_is_answered_at_once(app, fake):
    fake.answers["notify.partner_feed"] = {"items": [], "next_cursor": "c", "has_more": False}
    with app.test_request_context():
        held = views._long_poll_gate()
        while held.acquire(blocking=False):
            pass  # every waiting slot taken

        started = time.monotonic()
        response = app.test_client().get("/api/v1/partner/events?wait=30", headers=as_partner())

    assert response.status_code == 200
    assert time.monotonic() - started < 1
    assert len(fake.calls) == 1


# ---------------------------------------------------------------- objects within the scope


def test_a_transmission_is_read_as_the_partner_within_its_scope_with_links(app, fake):
    fake.answers["survey.get_partner_transmission"] = {
        "transmission_id": "t1",
        "file_id": "f1",
        "siret": "41816609600051",
    }

    response = app.test_client().get("/api/v1/partner/transmissions/t1", headers=as_partner())

    assert response.status_code == 200
    body = response.get_json()
    assert body["links"] == {
        "transmission": "https://formation.example.fr/api/v1/partner/transmissions/t1",
        "file": "https://formation.example.fr/api/v1/partner/transmissions/t1/file",
    }
    assert fake.calls[1] == ("survey", "get_partner_transmission", ("t1", ME["scope"]))
    assert fake.callers[1].user_id == "partner:p1"
    assert fake.callers[1].roles == ("partner",)


def test_a_transmission_outside_the_scope_is_404(app, fake):
    fake.answers["survey.get_partner_transmission"] = NotFound(
        "survey.transmission_not_found", "Fichier transmis introuvable."
    )

    response = app.test_client().get("/api/v1/partner/transmissions/t9", headers=as_partner())

    assert response.status_code == 404
    assert response.get_json()["code"] == "survey.transmission_not_found"


def test_the_file_is_read_only_after_survey_checked_the_scope(app, fake):
    fake.answers["survey.get_partner_transmission"] = {"transmission_id": "t1", "file_id": "f1",
                                                      "sha256": "ab" * 32}  # fmt: skip
    fake.answers["files.get_file"] = {
        "name": "Enquête.xlsx",
        "content_b64": base64.b64encode(b"PK\x03\x04").decode(),
    }

    response = app.test_client().get("/api/v1/partner/transmissions/t1/file", headers=as_partner())

    assert response.status_code == 200
    assert response.data == b"PK\x03\x04"
    assert response.headers["Cache-Control"] == "no-store"
    assert [m for _s, m, _a in fake.calls] == [
        "authenticate_partner",
        "get_partner_transmission",
        "get_file",
    ]
    assert fake.calls[2][2] == ("f1",)  # the id survey gave, never one from the client


def test_the_file_of_a_transmission_outside_the_scope_is_never_fetched(app, fake):
    fake.answers["survey.get_partner_transmission"] = NotFound(
        "survey.transmission_not_found", "Fichier transmis introuvable."
    )

    response = app.test_client().get("/api/v1/partner/transmissions/t9/file", headers=as_partner())

    assert response.status_code == 404
    assert "files.get_file" not in fake.methods()


def test_a_carte_request_is_read_within_the_scope(app, fake):
    fake.answers["carte.get_partner_request"] = {"request_id": 7, "academy": "montpellier"}

    response = app.test_client().get("/api/v1/partner/carte/requests/7", headers=as_partner())

    assert response.status_code == 200
    assert fake.calls[1] == ("carte", "get_partner_request", ("7", ME["scope"]))


def test_the_partner_sees_its_own_deliveries_with_filters(app, fake):
    fake.answers["notify.partner_deliveries"] = {"items": [], "total": 0, "page": 1, "per_page": 50}

    response = app.test_client().get(
        "/api/v1/partner/deliveries?state=failed&partner_id=other", headers=as_partner()
    )

    assert response.status_code == 200
    assert fake.calls == [("notify", "partner_deliveries", (KEY, {"state": "failed"}))]


def test_the_asyncapi_document_is_served_as_yaml(app):
    response = app.test_client().get("/api/v1/asyncapi.yaml")

    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert yaml.safe_load(response.data)["asyncapi"] == "3.0.0"


# ---------------------------------------------------------------- the agency


def agency(app):
    return {"Authorization": f"Bearer {session_token(app)}"}


def test_the_agency_creates_a_partner_and_gets_its_secrets_once(app, fake):
    created = {"partner": {"id": "p1"}, "api_key": KEY, "webhook_secret": "whsec_x"}
    fake.answers["notify.create_partner"] = created
    body = {"name": "Région", "contact_email": "si@region.fr", "event_types": ["x"]}

    response = app.test_client().post("/api/v1/partners", json=body, headers=agency(app))

    assert response.status_code == 201
    assert response.get_json() == created
    assert fake.calls == [("notify", "create_partner", (body,))]


def test_organisation_users_cannot_administer_partners(app, fake):
    token = session_token(app, roles=("manager",))

    response = app.test_client().get(
        "/api/v1/partners", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403
    assert fake.calls == []


@pytest.mark.parametrize(
    "method, path, rpc_method, status",
    [
        ("patch", "/api/v1/partners/p1", "update_partner", 200),
        ("delete", "/api/v1/partners/p1", "delete_partner", 200),
        ("post", "/api/v1/partners/p1/keys", "create_partner_key", 201),
        ("delete", "/api/v1/partners/p1/keys/k1", "revoke_partner_key", 200),
        ("post", "/api/v1/partners/p1/webhook-secret", "rotate_webhook_secret", 200),
        ("post", "/api/v1/partners/p1/replay", "replay_partner", 202),
        ("get", "/api/v1/partners/p1/audit", "list_partner_audit", 200),
        ("get", "/api/v1/partner-deliveries?state=failed", "list_deliveries", 200),
        ("get", "/api/v1/partner-deliveries/d1", "get_delivery", 200),
        ("post", "/api/v1/partner-deliveries/d1/redeliver", "redeliver", 202),
        ("get", "/api/v1/partner-event-types", "list_event_types", 200),
    ],
)
def test_each_admin_route_calls_its_notify_rpc(app, fake, method, path, rpc_method, status):
    fake.answers[f"notify.{rpc_method}"] = {"ok": True}
    kwargs = {"json": {"since": "2026-11-30", "label": "l"}} if method in ("patch", "post") else {}

    response = getattr(app.test_client(), method)(path, headers=agency(app), **kwargs)

    assert response.status_code == status, response.get_json()
    assert fake.methods() == [f"notify.{rpc_method}"]

"""Cross-site form posts are refused (gateway.security): by Fetch Metadata,
else by Origin; same-origin posts, non-browser clients and requests
authenticated by a bearer token or a partner key go through."""

from __future__ import annotations

import pytest

from gateway import web
from gateway.api import carte as carte_views
from gateway.api import partners as partner_views
from gateway.auth import COOKIE
from gateway.pages import accounts as account_pages
from tests.fakes import FakeRpc, page_text, signed_in

CALLER = {"user_id": "u1", "org_id": "o1", "roles": ["manager"]}
FORM = {"email": "a@example.org", "password": "correct horse battery"}
REFUSED = "ce formulaire a été envoyé depuis un autre site"


@pytest.fixture
def app(make_app):
    return make_app(
        SESSION_SECRET="s" * 32,
        PUBLIC_URL="https://formations.example.org",
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
        RATELIMIT_ENABLED=False,
    )


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    fake.answers["identity.authenticate"] = {"session_id": "sid-new", "caller": CALLER}
    fake.answers["identity.end_session"] = {"status": "signed_out"}
    monkeypatch.setattr(web, "rpc", fake)
    monkeypatch.setattr(carte_views, "rpc", fake)
    monkeypatch.setattr(partner_views, "rpc", fake)
    monkeypatch.setattr(account_pages, "rpc", fake)
    return fake


def sign_in(app, **headers):
    return app.test_client().post(
        "/connexion", data=FORM, headers={"Accept": "text/html", **headers}
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling sub-domain is another origin
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},  # metadata wins
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # sandboxed frames, data: pages
        {"Origin": "http://localhost.evil.example"},
    ],
    ids=["cross-site", "same-site", "metadata-first", "foreign-origin", "null", "look-alike"],
)
def test_a_cross_site_form_post_is_refused_in_french_before_any_rpc(app, fake, headers):
    response = sign_in(app, **headers)
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    text = page_text(response)
    assert REFUSED in text and "request.cross_site" in text
    assert fake.calls == [] and "Set-Cookie" not in response.headers


@pytest.mark.parametrize("path", ["/deconnexion", "/carte/deconnexion"])
def test_a_cross_site_sign_out_does_not_end_the_victims_session(app, fake, path):
    client = signed_in(app, ["manager"], org_id="o1")
    refused = client.post(path, headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403 and fake.calls == []
    assert client.get_cookie(COOKIE) is not None


def test_a_cross_site_upload_to_the_api_with_the_cookie_is_refused(app, fake):
    client = signed_in(app, ["carte_establishment"])
    refused = client.post(
        "/api/v1/carte/requests/7/annexes",
        data={"file": (b"%PDF-1.4", "a.pdf")},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "request.cross_site"
    assert fake.calls == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed or bookmarked by the user
        {"Origin": "http://localhost"},  # the test client's own host
        {"Origin": "https://formations.example.org"},  # PUBLIC_URL behind the ingress
        {},  # curl, a script: no browser to trick
    ],
    ids=["same-origin", "user-initiated", "own-origin", "public-url", "no-browser-headers"],
)
def test_a_same_origin_form_post_signs_in(app, fake, headers):
    response = sign_in(app, **headers)
    assert response.status_code in (302, 303)  # home, or the second factor's step
    assert f"{COOKIE}=" in response.headers["Set-Cookie"]
    assert fake.methods() == ["identity.authenticate"]


@pytest.mark.parametrize("path", ["/deconnexion", "/carte/deconnexion"])
def test_a_same_origin_sign_out_ends_the_session(app, fake, path):
    client = signed_in(app, ["manager"], org_id="o1")
    done = client.post(
        path, headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    )
    assert done.status_code in (302, 303)
    assert fake.methods() == ["identity.end_session"]
    assert client.get_cookie(COOKIE) is None


def test_reads_are_never_refused_whatever_their_origin(app, fake):
    response = app.test_client().get("/connexion", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200


def test_the_api_with_a_bearer_token_is_unaffected(app, fake):
    with app.app_context():
        from gateway.auth import issue_token

        token = issue_token("sid", {"user_id": "u1", "roles": ["carte_admin"]})
    fake.answers["carte.create_campaign"] = {"id": 3, "school_year": "2026-2027"}
    response = app.test_client().post(
        "/api/v1/carte/campaigns",
        json={"school_year": "2026-2027", "opens_on": "2026-01-05", "closes_on": "2026-03-01"},
        headers={
            "Authorization": f"Bearer {token}",
            "Sec-Fetch-Site": "cross-site",
            "Origin": "https://partner-app.example",
        },
    )
    assert response.status_code == 201, response.get_json()
    assert fake.methods() == ["carte.create_campaign"]


def test_a_partner_key_is_unaffected(app, fake):
    fake.answers["notify.partner_feed"] = {"items": [], "next_cursor": None}
    response = app.test_client().get(
        "/api/v1/partner/events",
        headers={"X-Api-Key": "fpk_" + "a" * 40, "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 200, response.get_json()
    assert fake.methods() == ["notify.partner_feed"]


def test_a_cross_site_post_with_a_key_header_goes_through(app, fake):
    # a browser cannot attach X-Api-Key cross-site without a CORS preflight
    # (never granted), so such a request is a partner's server, not a victim
    fake.answers["identity.carte_request_password_reset"] = {"message": "ok"}
    response = app.test_client().post(
        "/api/v1/carte/password-resets",
        json={"identifier": "0311234T"},
        headers={"X-Api-Key": "fpk_x", "Origin": "https://evil.example"},
    )
    assert response.status_code == 202

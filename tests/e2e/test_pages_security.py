"""Web hardening through the real gateway (gunicorn, behind one trusted proxy
hop as in the cluster): the headers on pages, API answers, errors and static
files; a cross-site sign-in form refused, the same form from our own pages
accepted; the API with a bearer token unaffected; https seen through
``X-Forwarded-Proto`` gives HSTS and a ``Secure`` cookie."""

from __future__ import annotations

import html

from tests.e2e.conftest import GatewaySession


def test_every_answer_of_the_running_gateway_carries_the_security_headers(gateway):
    answers = {
        "page": gateway.get("/connexion"),
        "api": gateway.get("/api/v1/openapi.json"),
        "error": gateway.get("/api/v1/me"),
        "404": gateway.get("/nulle-part", headers={"Accept": "text/html"}),
        "static": gateway.get("/static/css/surveys.css"),
    }
    assert [a.status_code for a in answers.values()] == [200, 200, 401, 404, 200]
    for kind, answer in answers.items():
        csp = answer.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp, kind
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", kind
        assert answer.headers.get("Referrer-Policy") == "same-origin", kind
        assert "Strict-Transport-Security" not in answer.headers, kind  # plain http
    assert "script-src 'self'" in answers["page"].headers["Content-Security-Policy"]
    assert "<script>" not in answers["page"].text


def test_a_cross_site_sign_in_is_refused_and_ours_goes_through(system):
    form = {"email": "personne@example.org", "password": "pas le bon mot de passe"}
    with GatewaySession(system.gateway_url) as browser:
        forged = browser.post(
            "/connexion",
            data=form,
            headers={"Origin": "https://evil.example", "Accept": "text/html"},
            allow_redirects=False,
        )
        assert forged.status_code == 403
        assert "depuis un autre site" in html.unescape(forged.text)

        # the same form from our own page reaches identity: wrong password
        ours = browser.post(
            "/connexion",
            data=form,
            headers={"Origin": system.gateway_url.rstrip("/"), "Sec-Fetch-Site": "same-origin"},
            allow_redirects=False,
        )
        assert ours.status_code == 401
        assert "mot de passe incorrect" in html.unescape(ours.text)


def test_the_api_with_a_bearer_token_ignores_browser_origin_headers(gateway, admin, unique):
    signed = gateway.post(
        "/api/v1/sessions", json={"email": admin["email"], "password": admin["password"]}
    )
    assert signed.status_code in (200, 201, 202), signed.text
    bearer = {"Authorization": f"Bearer {signed.json()['token']}"}
    foreign = {"Origin": "https://partner-app.example", "Sec-Fetch-Site": "cross-site"}
    body = {"name": f"Enquête CSRF {unique}"}

    with_token = gateway.post("/api/v1/survey-campaigns", json=body, headers={**bearer, **foreign})
    # whatever identity and survey decide about this session, the cross-site
    # check stays out of the way of a bearer token
    assert with_token.json().get("code") != "request.cross_site"

    gateway.cookies.set("session", signed.json()["token"])
    with_cookie = gateway.post("/api/v1/survey-campaigns", json=body, headers=foreign)
    assert with_cookie.status_code == 403
    assert with_cookie.json()["code"] == "request.cross_site"


def test_https_at_the_ingress_gives_hsts_and_a_secure_cookie(system, admin):
    with GatewaySession(system.gateway_url) as browser:
        browser.headers["X-Forwarded-Proto"] = "https"
        page = browser.get("/connexion")
        assert "max-age=" in page.headers.get("Strict-Transport-Security", "")
        signed = browser.post(
            "/connexion",
            data={"email": admin["email"], "password": admin["password"]},
            allow_redirects=False,
        )
        assert signed.status_code in (302, 303)  # home, or the second factor's step
        cookie = signed.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie

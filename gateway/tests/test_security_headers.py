"""Security headers on every kind of gateway answer (gateway.security): pages,
API answers, errors, 404s, redirects and static files; HSTS only over https,
including behind the ingress; the session cookie's flags."""

from __future__ import annotations

import mimetypes

import pytest

from gateway import security
from gateway.api import carte as carte_views
from gateway.auth import COOKIE
from gateway.web import LAYOUT
from tests.fakes import FakeRpc

JS = mimetypes.guess_type("print.js")[0]
COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@pytest.fixture
def app(make_app):
    app = make_app(
        SESSION_SECRET="s" * 32,
        REVOCATION_SOURCE=lambda since: {"now": None, "revoked": []},
        RATELIMIT_ENABLED=False,
    )

    @app.get("/api/v1/_boom")
    def boom():
        raise RuntimeError("an unexpected failure")

    return app


def policy(response) -> dict[str, str]:
    """The Content-Security-Policy as {directive: sources}."""
    header = response.headers.get("Content-Security-Policy", "")
    pairs = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {name: (rest[0] if rest else "") for name, *rest in pairs}


def assert_hardened(response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert "camera=()" in response.headers.get("Permissions-Policy", "")
    assert policy(response).get("frame-ancestors") == "'none'"


def assert_page_policy(response) -> None:
    directives = policy(response)
    assert directives["script-src"] == "'self'"
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"


ANSWERS = {  # kind: method, path, Accept, status, mimetype
    "a page": ("GET", "/connexion", "text/html", 200, "text/html"),
    "a JSON API answer": ("GET", "/api/v1/openapi.json", None, 200, "application/json"),
    "a health answer": ("GET", "/health/live", None, 200, "application/json"),
    "an API error (401)": ("GET", "/api/v1/me", None, 401, "application/problem+json"),
    "an API 404": ("GET", "/api/v1/nowhere", None, 404, "application/problem+json"),
    "a page 404": ("GET", "/nulle-part", "text/html", 404, "text/html"),
    "a 405": ("DELETE", "/api/v1/openapi.json", None, 405, "application/problem+json"),
    "a 500": ("GET", "/api/v1/_boom", None, 500, "application/problem+json"),
    "a redirect": ("GET", "/carte/", "text/html", 302, "text/html"),
    "a stylesheet": ("GET", "/static/css/site.css", None, 200, "text/css"),
    "a script": ("GET", "/static/js/print.js", None, 200, JS),
    "a static 404": ("GET", "/static/css/absent.css", None, 404, "application/problem+json"),
}


@pytest.mark.parametrize("kind", list(ANSWERS))
def test_every_kind_of_answer_carries_the_security_headers(app, kind):
    method, path, accept, status, mimetype = ANSWERS[kind]
    headers = {"Accept": accept} if accept else {}
    response = app.test_client().open(path, method=method, headers=headers)
    assert response.status_code == status
    assert response.mimetype == mimetype
    assert_hardened(response)
    if mimetype == "text/html":
        assert_page_policy(response)
    else:  # nothing in data is meant to run, even if a browser renders it
        assert policy(response)["default-src"] == "'none'"
    assert "Strict-Transport-Security" not in response.headers  # plain http


def test_a_conditional_request_for_a_static_file_gets_a_304_with_the_headers(app):
    client = app.test_client()
    first = client.get("/static/css/surveys.css")
    again = client.get("/static/css/surveys.css", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert_hardened(again)


def test_an_inline_pdf_may_only_be_framed_by_nobody(app, monkeypatch):
    fake = FakeRpc()
    fake.answers["carte.request_pdf"] = {
        "content_b64": "JVBERi0xLjQK",
        "content_type": "application/pdf",
        "name": "demande.pdf",
    }
    monkeypatch.setattr(carte_views, "rpc", fake)
    from tests.fakes import signed_in

    response = signed_in(app, ["carte_establishment"]).get("/api/v1/carte/requests/7/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert_hardened(response)
    assert policy(response) == {"frame-ancestors": "'none'"}


def test_a_page_token_in_the_address_never_leaves_for_another_site(app):
    # same-origin keeps the token of the address at home,
    # and lets our own form posts carry their Origin (see the CSRF tests)
    response = app.test_client().get("/invitation?token=secret-token")
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_hsts_is_sent_over_https_only(app):
    client = app.test_client()
    assert "Strict-Transport-Security" not in client.get("/connexion").headers
    secure = client.get("/connexion", base_url="https://formations.example.org")
    assert secure.headers["Strict-Transport-Security"] == f"max-age={security.HSTS_MAX_AGE}"
    api = client.get("/api/v1/openapi.json", base_url="https://formations.example.org")
    assert "max-age=" in api.headers["Strict-Transport-Security"]


def test_behind_a_trusted_proxy_https_is_read_from_x_forwarded_proto(make_app):
    proxied = make_app(TRUSTED_PROXIES=1, RATELIMIT_ENABLED=False).test_client()
    answer = proxied.get("/connexion", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in answer.headers
    assert "Strict-Transport-Security" not in proxied.get("/connexion").headers


def test_without_a_trusted_proxy_a_forwarded_proto_header_is_ignored(make_app):
    direct = make_app(TRUSTED_PROXIES=0, RATELIMIT_ENABLED=False).test_client()
    answer = direct.get("/connexion", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in answer.headers


def test_the_proxy_fix_leaves_the_client_address_to_the_rate_limiter(make_app):
    # ProxyFix handles the scheme only: ratelimit.client_ip reads X-Forwarded-For
    app = make_app(TRUSTED_PROXIES=1, RATELIMIT_ENABLED=False)

    @app.get("/api/v1/_addr")
    def addr():
        from flask import request

        from gateway.ratelimit import client_ip

        return {"remote": request.remote_addr, "client": client_ip()}

    body = (
        app.test_client()
        .get(
            "/api/v1/_addr",
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        )
        .get_json()
    )
    assert body == {"remote": "10.0.0.1", "client": "203.0.113.9"}


def test_the_layouts_inline_style_is_allowed_by_its_hash_and_nothing_else_is(app):
    inline = security._STYLE_BLOCK.findall(LAYOUT)  # [] once the layout links site.css
    response = app.test_client().get("/connexion")
    style_src = policy(response)["style-src"].split()
    assert style_src[0] == "'self'"
    assert all(security.style_hash(css) in style_src for css in inline)
    assert all(source.startswith("'sha256-") for source in style_src[1:])
    injected = security.style_hash("body{background:url(//evil.example/x)}")
    assert injected not in style_src


def test_the_session_cookie_is_httponly_lax_and_secure_over_https(app, monkeypatch):
    from gateway import web

    fake = FakeRpc()
    fake.answers["identity.authenticate"] = {
        "session_id": "new-sid",
        "caller": {"user_id": "u1", "org_id": "o1", "roles": ["manager"]},
    }
    monkeypatch.setattr(web, "rpc", fake)
    form = {"email": "a@example.org", "password": "x" * 12}

    plain = app.test_client().post("/connexion", data=form)
    cookie = plain.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # http://127.0.0.1 in development

    secure = app.test_client().post("/connexion", data=form, base_url="https://formations.test")
    assert "Secure" in secure.headers["Set-Cookie"] and "HttpOnly" in secure.headers["Set-Cookie"]

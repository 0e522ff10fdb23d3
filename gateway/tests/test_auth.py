"""Gateway authentication: signed tokens checked locally, revocations polled."""

import time

import pytest

from gateway import create_app
from gateway.auth import Revocations


class Feed:
    """Stands in for identity.revoked_sessions."""

    def __init__(self):
        self.revoked = []
        self.calls = 0
        self.fail = False

    def __call__(self, since):
        self.calls += 1
        if self.fail:
            raise ConnectionError("identity down")
        return {"now": "2026-01-01T00:00:00+00:00", "revoked": list(self.revoked)}


@pytest.fixture
def feed():
    return Feed()


@pytest.fixture
def app(feed):
    app = create_app(
        {
            "TESTING": True,
            "SESSION_SECRET": "s" * 32,
            "REVOCATION_SOURCE": feed,
            "REVOCATION_POLL_SECONDS": 0.05,
            "RATELIMIT_ENABLED": False,
        }
    )

    @app.get("/api/v1/_whoami")
    def whoami():
        from flask import g, jsonify

        from gateway.auth import login_required

        @login_required
        def inner():
            return jsonify({"user_id": g.caller.user_id, "roles": list(g.caller.roles)})

        return inner()

    yield app
    app.extensions["revocations"].stop()


def token_for(app, sid="sid-1"):
    from gateway.auth import issue_token

    with app.test_request_context():
        return issue_token(sid, {"user_id": "u1", "org_id": "o1", "roles": ["manager"]})


def test_a_signed_token_authenticates_without_any_rpc(app):
    client = app.test_client()
    response = client.get("/api/v1/_whoami", headers={"Authorization": f"Bearer {token_for(app)}"})
    assert response.status_code == 200
    assert response.json == {"user_id": "u1", "roles": ["manager"]}


def test_a_tampered_or_missing_token_is_refused(app):
    client = app.test_client()
    token = token_for(app)
    payload, _, signature = token.rpartition(".")
    flipped = "A" if signature[0] != "A" else "B"  # a different first signature char
    tampered = f"{payload}.{flipped}{signature[1:]}"
    for headers in (
        {},
        {"Authorization": f"Bearer {tampered}"},
        {"Authorization": "Bearer nonsense"},
    ):
        response = client.get("/api/v1/_whoami", headers=headers)
        assert response.status_code == 401
        assert response.json["code"] == "unauthenticated"


def test_a_revoked_session_is_refused_once_the_list_is_polled(app, feed):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(app, 'sid-9')}"}
    assert client.get("/api/v1/_whoami", headers=headers).status_code == 200
    feed.revoked.append("sid-9")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if client.get("/api/v1/_whoami", headers=headers).status_code == 401:
            break
        time.sleep(0.05)
    assert client.get("/api/v1/_whoami", headers=headers).status_code == 401


def test_a_stale_revocation_list_fails_closed():
    feed = Feed()
    revocations = Revocations(feed, interval=0.02, max_staleness=0.1)
    assert revocations.is_revoked("x") is False
    feed.fail = True
    time.sleep(0.3)
    from gateway.auth import AuthUnavailable

    with pytest.raises(AuthUnavailable):
        revocations.is_revoked("x")
    revocations.stop()


def test_the_session_cookie_is_our_token_and_flask_keeps_no_session(app):
    from flask import session

    client = app.test_client()
    client.set_cookie("session", token_for(app))

    response = client.get("/api/v1/_whoami")

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    with app.test_request_context(headers={"Cookie": f"session={token_for(app)}"}):
        assert dict(session) == {}
        with pytest.raises(RuntimeError, match="no Flask session"):
            session["x"] = 1


def test_a_token_signed_with_another_secret_is_refused(app, feed):
    other = create_app(
        {
            "TESTING": True,
            "SESSION_SECRET": "t" * 32,
            "REVOCATION_SOURCE": feed,
            "RATELIMIT_ENABLED": False,
        }
    )
    other.add_url_rule("/api/v1/_whoami", view_func=app.view_functions["whoami"])

    response = other.test_client().get(
        "/api/v1/_whoami", headers={"Authorization": f"Bearer {token_for(app)}"}
    )

    assert response.status_code == 401

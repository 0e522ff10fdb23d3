"""Two-factor sign-in at the gateway (gateway.auth, the sign-in API and pages)
with identity faked: half sessions open only their own step, staff are sent
to enrolment, sensitive actions want a fresh code, SIRENE confirmations and
plain users' 403 reach the pages."""

from __future__ import annotations

import datetime as dt
import html

import pytest

from gateway import create_app, web
from gateway.api import identity as identity_api
from gateway.auth import issue_token
from gateway.pages import accounts as views
from kit.errors import Conflict, Forbidden, Unauthenticated
from tests.fakes import FakeRpc


@pytest.fixture
def fake(monkeypatch):
    fake = FakeRpc()
    for module in (views, identity_api, web):
        monkeypatch.setattr(module, "rpc", fake)
    return fake


@pytest.fixture
def app():
    app = create_app(
        {
            "TESTING": True,
            "SESSION_SECRET": "s" * 32,
            "REVOCATION_SOURCE": lambda since: {"now": None, "revoked": []},
            "RATELIMIT_ENABLED": False,
        }
    )
    yield app
    app.extensions["revocations"].stop()


def claims(roles=("manager",), mfa="ok", totp=False, mfa_at=None, org_id="o1"):
    return {
        "user_id": "u1",
        "org_id": org_id,
        "roles": list(roles),
        "mfa": mfa,
        "totp": totp,
        "mfa_at": mfa_at,
    }


def result(status="signed_in", sid="sid2", **kw):
    mfa = {"signed_in": "ok", "totp_required": "pending", "totp_enrolment_required": "enrol"}
    return {
        "status": status,
        "session_id": sid,
        "expires_at": "2030-01-01T00:00:00+00:00",
        "caller": claims(mfa=mfa[status], **kw),
        "user": {"id": "u1"},
    }


def client_with(app, sid="sid", **kw):
    client = app.test_client()
    with app.app_context():
        client.set_cookie("session", issue_token(sid, claims(**kw)))
    return client


def now_iso(minutes_ago=0.0):
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)).isoformat()


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# ---------------------------------------------------------------- API sign-in


def test_an_api_sign_in_with_totp_gives_a_token_good_only_for_the_code(app, fake):
    fake.answers["identity.authenticate"] = result("totp_required", sid="half", totp=True)
    client = app.test_client()
    first = client.post("/api/v1/sessions", json={"email": "a@b.fr", "password": "x"})
    assert first.status_code == 200
    body = first.json
    assert body["status"] == "totp_required" and body["next"] == "/api/v1/sessions/totp"
    assert "user" not in body
    bearer = {"Authorization": f"Bearer {body['token']}"}
    refused = client.get("/api/v1/me", headers=bearer)
    assert refused.status_code == 401 and refused.json["code"] == "auth.totp_required"
    assert "identity.get_me" not in fake.methods()

    fake.answers["identity.totp_verify_sign_in"] = result(totp=True, mfa_at=now_iso())
    second = client.post("/api/v1/sessions/totp", json={"code": "123456"}, headers=bearer)
    assert second.status_code == 201 and second.json["status"] == "signed_in"
    assert fake.calls[-1][:3] == (
        "identity",
        "totp_verify_sign_in",
        ("half", "123456", "127.0.0.1"),
    )
    fake.answers["identity.get_me"] = {"id": "u1"}
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {second.json['token']}"})
    assert me.status_code == 200


def test_a_wrong_code_is_the_services_error(app, fake):
    fake.answers["identity.totp_verify_sign_in"] = Unauthenticated(
        "auth.totp_replayed", "Ce code a déjà été utilisé."
    )
    client = client_with(app, sid="half", mfa="pending", totp=True)
    response = client.post("/api/v1/sessions/totp", json={"code": "123456"})
    assert response.status_code == 401 and response.json["code"] == "auth.totp_replayed"


def test_staff_who_must_enrol_can_only_enrol(app, fake):
    client = client_with(app, sid="half", roles=("agency_admin",), mfa="enrol", org_id=None)
    refused = client.get("/api/v1/registrations")
    assert refused.status_code == 401 and refused.json["code"] == "auth.totp_enrolment_required"
    fake.answers["identity.totp_begin_enrolment"] = {
        "secret": "JBSWY3DPEHPK3PXP",
        "uri": "otpauth://totp/Plateforme%20formations:a%40b.fr?secret=JBSWY3DPEHPK3PXP",
        "issuer": "Plateforme formations",
        "account": "a@b.fr",
    }
    started = client.post("/api/v1/me/totp/enrolment")
    assert started.status_code == 200 and started.json["qr_svg"].startswith("<svg")
    fake.answers["identity.totp_confirm_enrolment"] = dict(
        result(roles=("agency_admin",), totp=True, org_id=None), recovery_codes=["abcde-fghjk"]
    )
    done = client.post("/api/v1/me/totp/enrolment/confirm", json={"code": "123456"})
    assert done.status_code == 201 and done.json["recovery_codes"] == ["abcde-fghjk"]


# ---------------------------------------------------------------- pages


def test_the_sign_in_page_asks_for_the_code_then_lands_at_home(app, fake):
    fake.answers["identity.authenticate"] = result("totp_required", sid="half", totp=True)
    client = app.test_client()
    first = client.post("/connexion", data={"email": "a@b.fr", "password": "x"})
    assert first.status_code == 303 and first.headers["Location"].endswith("/connexion/code")
    elsewhere = client.get("/utilisateurs")
    assert elsewhere.status_code == 303 and elsewhere.headers["Location"].endswith(
        "/connexion/code"
    )
    form = client.get("/connexion/code")
    assert form.status_code == 200 and 'autocomplete="one-time-code"' in text(form)
    assert "<script" not in text(form)
    fake.answers["identity.totp_verify_sign_in"] = result(totp=True, mfa_at=now_iso())
    done = client.post("/connexion/code", data={"code": "123456"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/")
    fake.answers["identity.list_users"] = []
    assert client.get("/utilisateurs").status_code == 200


def test_a_carte_administrator_lands_on_the_carte_after_the_code(app, fake):
    client = client_with(app, sid="half", roles=("carte_admin",), mfa="pending", totp=True)
    assert client.get("/carte/").headers["Location"].endswith("/connexion/code")
    fake.answers["identity.totp_verify_sign_in"] = result(roles=("carte_admin",), totp=True)
    done = client.post("/connexion/code", data={"code": "654321"})
    assert done.headers["Location"].endswith("/carte/")


def test_staff_are_sent_to_enrolment_which_shows_a_qr_code_and_the_secret(app, fake):
    client = client_with(app, sid="half", roles=("agency_admin",), mfa="enrol", org_id=None)
    home = client.get("/agence/inscriptions")
    assert home.headers["Location"].endswith("/compte/double-authentification")
    fake.answers["identity.totp_begin_enrolment"] = {
        "secret": "JBSWY3DPEHPK3PXP",
        "uri": "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&issuer=Plateforme",
        "issuer": "Plateforme formations",
        "account": "admin@agence.fr",
    }
    page = text(client.get("/compte/double-authentification"))
    assert "<svg" in page and "JBSWY3DPEHPK3PXP" in page and "<script" not in page
    assert "obligatoire" in page
    fake.answers["identity.totp_confirm_enrolment"] = dict(
        result(roles=("agency_admin",), totp=True, org_id=None),
        recovery_codes=["abcde-fghjk", "mnpqr-stuvw"],
    )
    done = client.post(
        "/compte/double-authentification", data={"action": "confirm", "code": "123456"}
    )
    shown = text(done)
    assert done.status_code == 200 and "abcde-fghjk" in shown and "mnpqr-stuvw" in shown
    assert "session=" in done.headers["Set-Cookie"]


def test_a_manager_with_totp_may_turn_it_off_staff_may_not(app, fake):
    manager = client_with(app, totp=True, mfa_at=now_iso())
    assert "Désactiver" in text(manager.get("/compte/double-authentification"))
    staff = client_with(app, roles=("agency_admin",), totp=True, mfa_at=now_iso(), org_id=None)
    page = text(staff.get("/compte/double-authentification"))
    assert "Désactiver" not in page and "obligatoire" in page


# ------------------------------------------------------- a fresh code before sensitive actions


def test_a_sensitive_action_wants_a_fresh_code_from_accounts_with_totp(app, fake):
    fake.answers["identity.validate_user"] = {"id": "u9", "state": "validated"}
    stale = client_with(app, roles=("agency_admin",), totp=True, mfa_at=now_iso(30), org_id=None)
    refused = stale.post("/api/v1/users/u9/validate")
    assert refused.status_code == 403 and refused.json["code"] == "auth.reauthentication_required"
    assert "identity.validate_user" not in fake.methods()
    fresh = client_with(app, roles=("agency_admin",), totp=True, mfa_at=now_iso(1), org_id=None)
    assert fresh.post("/api/v1/users/u9/validate").status_code == 200
    without_totp = client_with(app, roles=("manager",))
    assert without_totp.post("/api/v1/users/u9/validate").status_code == 200


def test_the_page_sends_a_sensitive_action_through_re_authentication_and_back(app, fake):
    stale = client_with(app, roles=("agency_admin",), totp=True, mfa_at=now_iso(30), org_id=None)
    sent = stale.post(
        "/agence/inscriptions/u9/valider",
        headers={"Referer": "http://localhost/agence/inscriptions"},
    )
    assert sent.status_code == 303
    assert sent.headers["Location"].endswith(
        "/compte/reauthentification?suite=/agence/inscriptions"
    )
    fake.answers["identity.totp_reauthenticate"] = {
        "session_id": "sid",
        "expires_at": "2030-01-01T00:00:00+00:00",
        "caller": claims(roles=("agency_admin",), totp=True, mfa_at=now_iso(), org_id=None),
    }
    back = stale.post(
        "/compte/reauthentification", data={"code": "123456", "suite": "/agence/inscriptions"}
    )
    assert back.status_code == 303 and back.headers["Location"].endswith("/agence/inscriptions")
    fake.answers["identity.validate_user"] = {"id": "u9"}
    assert stale.post("/agence/inscriptions/u9/valider").status_code == 303
    assert fake.calls[-1][1] == "validate_user"


def test_re_authentication_never_sends_elsewhere(app, fake):
    client = client_with(app, totp=True, mfa_at=now_iso(30))
    fake.answers["identity.totp_reauthenticate"] = {
        "session_id": "sid",
        "expires_at": "2030-01-01T00:00:00+00:00",
        "caller": claims(totp=True, mfa_at=now_iso()),
    }
    for suite in ("https://evil.example/", "//evil.example/x"):
        back = client.post("/compte/reauthentification", data={"code": "1", "suite": suite})
        assert back.headers["Location"] in ("/", "http://localhost/")


def test_exports_and_partner_keys_are_sensitive_too(app):
    stale = client_with(app, roles=("agency_admin",), totp=True, mfa_at=now_iso(30), org_id=None)
    for method, path in (
        ("get", "/api/v1/survey-campaigns/c1/export"),
        ("get", "/api/v1/carte/reviews/export.csv"),
        ("post", "/api/v1/partners/p1/keys"),
    ):
        response = getattr(stale, method)(path)
        assert response.status_code == 403, path
        assert response.json["code"] == "auth.reauthentication_required", path


# ---------------------------------------------------------------- SIRENE confirmation, plain users


PENDING = {
    "id": "u9",
    "display_name": "DUPONT Jean",
    "email": "jean@example.org",
    "phone": "",
    "organisation": {
        "name": "ANCIEN CFA",
        "siret": "80733173100016",
        "account_type": "OFA",
        "sirene_status": "closed",
        "address": None,
    },
    "attachments": [],
    "has_habilitation": False,
}


def test_the_agency_confirms_a_closed_establishment_with_a_reason_on_the_page(app, fake):
    fake.answers["identity.list_registrations"] = [PENDING]
    agent = client_with(app, roles=("agency_admin",), org_id=None)
    page = text(agent.get("/agence/inscriptions"))
    assert "Je confirme la validation malgré l'état SIRENE" in page
    assert '<label for="vreason-u9">Motif de la validation *</label>' in page
    fake.answers["identity.validate_user"] = Conflict(
        "validation.sirene_closed", "Cet établissement est fermé selon la base SIRENE."
    )
    refused = agent.post("/agence/inscriptions/u9/valider")
    assert refused.status_code == 409 and "fermé selon la base SIRENE" in text(refused)
    assert ("identity", "validate_user", ("u9", None)) in fake.calls
    fake.answers["identity.validate_user"] = {"id": "u9"}
    done = agent.post("/agence/inscriptions/u9/valider", data={"confirm": "1", "reason": "Repris"})
    assert done.status_code == 303
    assert fake.calls[-1] == (
        "identity",
        "validate_user",
        ("u9", {"confirm": True, "reason": "Repris"}),
    )


def test_the_api_passes_the_sirene_confirmation(app, fake):
    fake.answers["identity.validate_user"] = {"id": "u9"}
    agent = client_with(app, roles=("agency_admin",), org_id=None)
    agent.post("/api/v1/users/u9/validate", json={"confirm": True, "reason": "Repris"})
    assert fake.calls[-1] == (
        "identity",
        "validate_user",
        ("u9", {"confirm": True, "reason": "Repris"}),
    )
    agent.post("/api/v1/users/u9/validate")
    assert fake.calls[-1] == ("identity", "validate_user", ("u9", None))


def test_a_plain_user_gets_the_managers_only_message_from_the_api(app, fake):
    fake.answers["identity.create_user"] = Forbidden(
        "forbidden.manager_only", "Réservé au gestionnaire de compte de votre organisme."
    )
    user = client_with(app, roles=("user",))
    response = user.post("/api/v1/organisations/o1/users", json={"last_name": "x"})
    assert response.status_code == 403 and response.json["code"] == "forbidden.manager_only"
    assert "éservé au gestionnaire de compte" in response.json["title"]

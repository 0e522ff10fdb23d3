"""Two-factor sign-in through HTTP on the running system (issue 11): an
organisation manager enrols (QR code, first code, recovery codes), signs in
with a code and with a recovery code; a replayed code and a used recovery
code are refused. The codes are computed as an application would (pyotp);
the next time-step's code is accepted within the one-step drift, so the
test never waits for the clock."""

from __future__ import annotations

import html
import re
import time

import pyotp

from tests.e2e.journeys import PASSWORD, manager_of, sign_in


def code_for_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def test_a_manager_enrols_then_signs_in_with_a_code_or_a_recovery_code(
    gateway, mailbox, admin, unique
):
    admin_headers = sign_in(gateway, admin["email"], admin["password"])
    email = f"totp.{unique}@example.org"
    headers, _org_id = manager_of(gateway, mailbox, admin_headers, email, "64739542500026")

    # enrolment: a QR code (inline SVG) and the secret, then a first code
    started = gateway.post("/api/v1/me/totp/enrolment", headers=headers)
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    assert started.json()["qr_svg"].startswith("<svg")
    assert started.json()["uri"].startswith("otpauth://totp/")
    step = int(time.time()) // 30
    confirmed = gateway.post(
        "/api/v1/me/totp/enrolment/confirm",
        headers=headers,
        json={"code": code_for_step(secret, step)},
    )
    assert confirmed.status_code == 201, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    assert len(recovery) == 10

    # the password alone no longer signs in
    first = gateway.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
    assert first.status_code == 200 and first.json()["status"] == "totp_required"
    half = {"Authorization": f"Bearer {first.json()['token']}"}
    assert gateway.get("/api/v1/me", headers=half).status_code == 401

    # the enrolment's code again: a replay, refused
    replay = gateway.post(
        "/api/v1/sessions/totp", headers=half, json={"code": code_for_step(secret, step)}
    )
    assert replay.status_code == 401 and replay.json()["code"] == "auth.totp_replayed"
    # the next code is accepted, once
    signed = gateway.post(
        "/api/v1/sessions/totp", headers=half, json={"code": code_for_step(secret, step + 1)}
    )
    assert signed.status_code == 201, signed.text
    full = {"Authorization": f"Bearer {signed.json()['token']}"}
    assert gateway.get("/api/v1/me", headers=full).json()["email"] == email
    assert gateway.get("/api/v1/me", headers=half).status_code == 401  # replaced

    # a recovery code signs in once
    again = gateway.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
    half = {"Authorization": f"Bearer {again.json()['token']}"}
    used = gateway.post("/api/v1/sessions/totp", headers=half, json={"code": recovery[0]})
    assert used.status_code == 201, used.text
    third = gateway.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
    half = {"Authorization": f"Bearer {third.json()['token']}"}
    reused = gateway.post("/api/v1/sessions/totp", headers=half, json={"code": recovery[0]})
    assert reused.status_code == 401 and reused.json()["code"] == "auth.totp_invalid"


def test_the_sign_in_page_asks_for_the_code_after_the_password(gateway, mailbox, admin, unique):
    admin_headers = sign_in(gateway, admin["email"], admin["password"])
    email = f"totp-page.{unique}@example.org"
    headers, _org_id = manager_of(gateway, mailbox, admin_headers, email, "40300920200025")
    # enrolment on the page: the QR code and the secret are shown
    page = gateway.get("/compte/double-authentification", headers=headers)
    assert page.status_code == 200 and "<svg" in page.text and "<script" not in page.text
    secret = re.search(r"<code>([A-Z2-7]{16,})</code>", page.text).group(1)
    step = int(time.time()) // 30
    done = gateway.post(
        "/compte/double-authentification",
        headers=headers,
        data={"action": "confirm", "code": code_for_step(secret, step)},
    )
    assert done.status_code == 200 and "codes de secours" in html.unescape(done.text)

    browser = gateway  # a fresh cookie jar: this test's own client
    browser.cookies.clear()
    signed = browser.post("/connexion", data={"email": email, "password": PASSWORD},
                          allow_redirects=False)  # fmt: skip
    assert signed.status_code == 303 and signed.headers["Location"].endswith("/connexion/code")
    assert (
        browser.get("/utilisateurs", allow_redirects=False)
        .headers["Location"]
        .endswith("/connexion/code")
    )
    coded = browser.post(
        "/connexion/code", data={"code": code_for_step(secret, step + 1)}, allow_redirects=False
    )
    assert coded.status_code == 303, coded.text
    assert browser.get("/utilisateurs").status_code == 200

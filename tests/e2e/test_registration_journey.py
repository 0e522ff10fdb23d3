"""Section I of the Karoussel guide through HTTP on the running system:
register → confirm by the e-mailed link → the agency validates → the manager
creates users up to the quota (the sixth and the third manager are refused)
→ an invited user activates the account from the e-mail and signs in.
E-mails really go through SMTP to the mail catcher."""

from __future__ import annotations

import time

from tests.e2e.journeys import (
    PASSWORD,
    PDF,
    follow_form_link,
    register_confirm_validate,
    registration,
    sign_in,
)


def test_the_whole_registration_journey(gateway, mailbox, admin, unique):
    manager_email = f"claire.{unique}@example.org"
    admin_headers = sign_in(gateway, admin["email"], admin["password"])

    # 1. registration with the habilitation document
    response = gateway.post(
        "/api/v1/registrations",
        data=registration(manager_email, "41816609600051"),
        files={"habilitation": ("habilitation signée.pdf", PDF, "application/pdf")},
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "confirmation_sent"

    # 2. the confirmation e-mail, its link followed
    message = mailbox.wait_for(manager_email)
    assert "Confirmez" in message["subject"]
    link = mailbox.link(manager_email, r"https?://\S+/inscription/confirmer\?token=\S+")
    confirmed = follow_form_link(gateway, link)
    assert confirmed.status_code == 200
    assert "L'activation de votre compte a bien été effectuée" in confirmed.page
    again = follow_form_link(gateway, link)  # single use
    assert again.status_code == 422 and "déjà été utilisé" in again.page

    # not validated yet: no sign-in
    early = gateway.post("/api/v1/sessions", json={"email": manager_email, "password": PASSWORD})
    assert early.status_code == 403 and early.json()["code"] == "auth.awaiting_validation"

    # 3. the agency sees the request with the document, and validates it
    pending = gateway.get("/api/v1/registrations", headers=admin_headers)
    assert pending.status_code == 200
    [row] = [r for r in pending.json()["items"] if r["email"] == manager_email]
    assert row["organisation"]["name"].startswith("CFA DES METIERS DE L'EXEMPLE")
    assert row["has_habilitation"] is True
    document = gateway.get(
        f"/api/v1/files/{row['attachments'][0]['file_id']}", headers=admin_headers
    )
    assert document.status_code == 200 and document.content == PDF
    assert "attachment;" in document.headers["Content-Disposition"]
    validated = gateway.post(f"/api/v1/users/{row['id']}/validate", headers=admin_headers)
    assert validated.status_code == 200 and validated.json()["role"] == "manager"
    assert "validé" in mailbox.wait_for(manager_email, subject="validé")["subject"]

    # 4. the manager signs in; the profile shows the organisation from SIRENE
    manager = sign_in(gateway, manager_email)
    me = gateway.get("/api/v1/me", headers=manager).json()
    assert me["profile"] == "Gestionnaire de comptes / Utilisateur CFA/OFA"
    org_id = me["organisation"]["id"]
    assert me["organisation"]["siret"] == "41816609600051"

    # 5. up to 5 accounts, 2 managers
    def create(n, role="user"):
        return gateway.post(
            f"/api/v1/organisations/{org_id}/users",
            headers=manager,
            json={
                "last_name": f"Durand{n}",
                "first_name": "Paul",
                "role": role,
                "email": f"user{n}.{unique}@example.org",
                "firm_name": "Cabinet Exemple",
            },
        )

    assert create(1, "manager").status_code == 201
    third_manager = create(2, "manager")
    assert third_manager.status_code == 409
    assert third_manager.json()["code"] == "quota.managers"
    assert third_manager.headers["Content-Type"].startswith("application/problem+json")
    for n in (2, 3, 4):
        assert create(n).status_code == 201
    sixth = create(5)
    assert sixth.status_code == 409 and sixth.json()["code"] == "quota.users"
    assert "5 comptes" in sixth.json()["title"]
    duplicate = gateway.post(
        f"/api/v1/organisations/{org_id}/users",
        headers=manager,
        json={"last_name": "X", "first_name": "Y", "email": manager_email.upper()},
    )
    assert duplicate.status_code == 409

    users = gateway.get("/api/v1/users", headers=manager).json()["items"]
    assert len(users) == 5
    states = {u["email"]: u["state"] for u in users}
    assert states[manager_email] == "validated"
    assert states[f"user2.{unique}@example.org"] == "not_activated"

    # 6. an invited user activates the account from the e-mail and signs in
    invited = f"user2.{unique}@example.org"
    link = mailbox.link(
        invited, r"https?://\S+/invitation\?token=\S+", subject="Un compte a été créé"
    )
    weak = follow_form_link(gateway, link, {"password": "short", "password_confirm": "short"})
    assert weak.status_code == 422 and "12 caractères" in weak.page
    activated = follow_form_link(
        gateway, link, {"password": PASSWORD, "password_confirm": PASSWORD}
    )
    assert activated.status_code == 200 and "activé" in activated.page
    user = sign_in(gateway, invited)
    assert gateway.get("/api/v1/me", headers=user).json()["profile"] == "Utilisateur CFA/OFA"
    # a plain user is not a manager: 403 inside their own organisation (issue 11)
    refused = gateway.post(
        f"/api/v1/organisations/{org_id}/users",
        headers=user,
        json={"last_name": "Z", "first_name": "z", "email": f"z.{unique}@example.org"},
    )
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden.manager_only"

    # 7. the agency reads the history: who did what and when
    history = gateway.get(f"/api/v1/organisations/{org_id}/history", headers=admin_headers)
    actions = [h["action"] for h in history.json()["items"]]
    assert actions[:4] == ["registered", "email_confirmed", "organisation_validated", "validated"]
    assert actions.count("created") == 4 and "activated" in actions

    # 8. sign-out revokes the session server-side
    out = gateway.delete("/api/v1/sessions/current", headers=user)
    assert out.status_code == 200
    deadline = time.monotonic() + 5
    while gateway.get("/api/v1/me", headers=user).status_code != 401:
        assert time.monotonic() < deadline, "revoked token still accepted"
        time.sleep(0.2)


def test_an_organisation_cannot_reach_another_ones_users(gateway, mailbox, admin, unique):
    admin_headers = sign_in(gateway, admin["email"], admin["password"])
    a_email, b_email = f"a.{unique}@example.org", f"b.{unique}@example.org"
    register_confirm_validate(gateway, mailbox, admin_headers, a_email, "73282932000074")
    register_confirm_validate(gateway, mailbox, admin_headers, b_email, "35600000000048")
    a, b = sign_in(gateway, a_email), sign_in(gateway, b_email)
    a_me = gateway.get("/api/v1/me", headers=a).json()
    a_org, a_user = a_me["organisation"]["id"], a_me["id"]
    for method, path, body in (
        ("get", f"/api/v1/organisations/{a_org}", None),
        ("get", f"/api/v1/organisations/{a_org}/users", None),
        (
            "post",
            f"/api/v1/organisations/{a_org}/users",
            {"last_name": "X", "first_name": "x", "email": f"x.{unique}@example.org"},
        ),
        ("patch", f"/api/v1/users/{a_user}", {"phone": "0102030405"}),
        ("post", f"/api/v1/users/{a_user}/validate", None),
        ("post", f"/api/v1/users/{a_user}/confirm-email", None),
        ("post", f"/api/v1/users/{a_user}/deactivate", None),
        ("post", f"/api/v1/users/{a_user}/reject", {"reason": "non"}),
    ):
        response = getattr(gateway, method)(path, headers=b, json=body)
        assert response.status_code == 404, (method, path, response.text)
    for path in (
        "/api/v1/registrations",
        f"/api/v1/organisations/{a_org}/history",
        "/api/v1/organisations",
    ):
        assert gateway.get(path, headers=b).status_code == 403, path
    # A is untouched
    assert gateway.get("/api/v1/me", headers=a).json()["phone"] == "01 23 45 67 89"


def test_bad_registrations_are_refused_cleanly_and_change_nothing(gateway, admin, unique):
    empty = gateway.post("/api/v1/registrations", json={})
    assert empty.status_code == 422
    body = empty.json()
    assert body["code"] == "registration.invalid"
    assert {
        "account_type",
        "siret",
        "nda",
        "apprentice_count",
        "last_name",
        "first_name",
        "email",
        "email_confirm",
        "password",
    } <= set(body["errors"])
    assert body["errors"]["siret"] == ["Ce champ est obligatoire."]

    bad = registration(f"bad.{unique}@example.org", "41816609600052")
    bad.update(nda="123", uai="0311234X")
    response = gateway.post("/api/v1/registrations", json=bad)
    assert response.status_code == 422
    assert {"siret", "nda", "uai"} <= set(response.json()["errors"])

    unknown = gateway.post(
        "/api/v1/registrations", json=registration(f"u.{unique}@example.org", "77727974600013")
    )
    assert unknown.status_code == 422 and "SIRENE" in unknown.json()["errors"]["siret"][0]

    assert (
        gateway.post(
            "/api/v1/registrations", data="siret=1", headers={"Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert (
        gateway.post(
            "/api/v1/registrations", data=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    huge = gateway.post(
        "/api/v1/registrations",
        data=b"x" * (13 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    typed = gateway.post(
        "/api/v1/registrations",
        json=dict(
            registration(f"t.{unique}@example.org", "41816609600051"),
            apprentice_count=[1],
            email=None,
        ),
    )
    assert typed.status_code == 422
    bogus = gateway.post("/api/v1/registrations/confirm", json={"token": "x" * 43})
    assert bogus.status_code == 422 and bogus.json()["code"] == "token.invalid"

    admin_headers = sign_in(gateway, admin["email"], admin["password"])
    pending = gateway.get("/api/v1/registrations", headers=admin_headers).json()["items"]
    assert not [r for r in pending if unique in r["email"]]


def test_sign_in_does_not_reveal_accounts_and_password_reset_works(gateway, mailbox, admin, unique):
    wrong = gateway.post(
        "/api/v1/sessions", json={"email": admin["email"], "password": "wrong password 1"}
    )
    unknown = gateway.post(
        "/api/v1/sessions",
        json={"email": f"nobody.{unique}@example.org", "password": "wrong password 1"},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["title"] == unknown.json()["title"]

    email = f"reset.{unique}@example.org"
    admin_headers = sign_in(gateway, admin["email"], admin["password"])
    register_confirm_validate(gateway, mailbox, admin_headers, email, "41816609600028")
    before = sign_in(gateway, email)
    a = gateway.post("/api/v1/password-resets", json={"email": email})
    b = gateway.post("/api/v1/password-resets", json={"email": f"nobody.{unique}@example.org"})
    assert a.status_code == b.status_code == 202 and a.json() == b.json()
    link = mailbox.link(
        email, r"https?://\S+/mot-de-passe/reinitialiser\?token=\S+", subject="Réinitialisation"
    )
    new_password = f"new horse {unique}"
    done = follow_form_link(
        gateway, link, {"password": new_password, "password_confirm": new_password}
    )
    assert done.status_code == 200 and "modifié" in done.page
    sign_in(gateway, email, new_password)
    old = gateway.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
    assert old.status_code == 401
    deadline = time.monotonic() + 5  # the reset closed the earlier session
    while gateway.get("/api/v1/me", headers=before).status_code != 401:
        assert time.monotonic() < deadline, "session survived the password reset"
        time.sleep(0.2)

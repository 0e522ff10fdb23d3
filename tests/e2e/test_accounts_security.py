"""Issue 11, accounts, through HTTP on the running system: quota squatting
refused (pending registrations take no slot and are capped per
organisation), the quota enforced at validation, plain users' 403 with its
French message, and a closed establishment validated only with a reason."""

from __future__ import annotations

import html

from tests.e2e.journeys import (
    PDF,
    follow_form_link,
    manager_of,
    registration,
    sign_in,
)


def register(gateway, email, siret):
    return gateway.post(
        "/api/v1/registrations",
        data=registration(email, siret),
        files={"habilitation": ("habilitation.pdf", PDF, "application/pdf")},
    )


def test_strangers_cannot_fill_an_organisations_quota(gateway, mailbox, admin, unique):
    admin_headers = sign_in(gateway, admin["email"], admin["password"])
    manager, org_id = manager_of(
        gateway, mailbox, admin_headers, f"m.{unique}@example.org", "57128327400025"
    )
    # three strangers join as pending users; the fourth is refused, by the API and the page
    strangers = [f"s{n}.{unique}@example.org" for n in range(4)]
    for email in strangers[:3]:
        assert register(gateway, email, "57128327400025").status_code == 202
    fourth = register(gateway, strangers[3], "57128327400025")
    assert fourth.status_code == 409 and fourth.json()["code"] == "registration.too_many_pending"
    page = gateway.post("/inscription", data=registration(strangers[3], "57128327400025"))
    assert page.status_code == 409
    assert "inscriptions en attente de validation" in html.unescape(page.text)

    # the organisation's own people still fit: 4 more accounts (5 in all)
    for n in range(3):
        created = gateway.post(
            f"/api/v1/organisations/{org_id}/users",
            headers=manager,
            json={"last_name": f"Durand{n}", "first_name": "Paul",
                  "email": f"u{n}.{unique}@example.org"},
        )  # fmt: skip
        assert created.status_code == 201, created.text

    # a stranger confirmed and validated by the manager takes the fifth slot
    link = mailbox.link(strangers[0], r"https?://\S+/inscription/confirmer\?token=\S+")
    assert follow_form_link(gateway, link).status_code == 200
    link = mailbox.link(strangers[1], r"https?://\S+/inscription/confirmer\?token=\S+")
    assert follow_form_link(gateway, link).status_code == 200
    users = {u["email"]: u for u in gateway.get("/api/v1/users", headers=manager).json()["items"]}
    first = gateway.post(f"/api/v1/users/{users[strangers[0]]['id']}/validate", headers=manager)
    assert first.status_code == 200, first.text
    # now full: the next validation is refused with the quota's code
    full = gateway.post(f"/api/v1/users/{users[strangers[1]]['id']}/validate", headers=manager)
    assert full.status_code == 409 and full.json()["code"] == "quota.users"
    assert "5 comptes" in full.json()["title"]

    # the plain user gets 403 (not 404) on manager actions, and the page says why
    plain = sign_in(gateway, strangers[0])
    refused = gateway.post(
        f"/api/v1/organisations/{org_id}/users",
        headers=plain,
        json={"last_name": "Z", "first_name": "z", "email": f"z.{unique}@example.org"},
    )
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden.manager_only"
    assert "éservé au gestionnaire de compte" in refused.json()["title"]
    listed = gateway.get("/api/v1/users", headers=plain)
    assert listed.status_code == 403
    page = gateway.get("/utilisateurs", headers=plain)
    assert page.status_code == 403
    assert "éservé au gestionnaire de compte" in html.unescape(page.text)


def test_a_closed_establishment_is_validated_only_with_a_recorded_reason(
    gateway, mailbox, admin, unique
):
    admin_headers = sign_in(gateway, admin["email"], admin["password"])
    email = f"closed.{unique}@example.org"
    assert register(gateway, email, "72656521100018").status_code == 202
    link = mailbox.link(email, r"https?://\S+/inscription/confirmer\?token=\S+")
    assert follow_form_link(gateway, link).status_code == 200
    pending = gateway.get("/api/v1/registrations", headers=admin_headers).json()["items"]
    [row] = [r for r in pending if r["email"] == email]
    assert row["organisation"]["sirene_status"] == "closed"

    refused = gateway.post(f"/api/v1/users/{row['id']}/validate", headers=admin_headers)
    assert refused.status_code == 409 and refused.json()["code"] == "validation.sirene_closed"
    assert "fermé" in refused.json()["title"]
    page = html.unescape(gateway.get("/agence/inscriptions", headers=admin_headers).text)
    assert "Je confirme la validation malgré l'état SIRENE" in page

    reason = "Établissement repris, nouveau SIRET en cours d'attribution"
    done = gateway.post(
        f"/api/v1/users/{row['id']}/validate",
        headers=admin_headers,
        json={"confirm": True, "reason": reason},
    )
    assert done.status_code == 200, done.text
    history = gateway.get(
        f"/api/v1/organisations/{row['organisation']['id']}/history", headers=admin_headers
    ).json()["items"]
    [entry] = [h for h in history if h["action"] == "organisation_validated"]
    assert entry["detail"]["sirene_override_reason"] == reason
    assert entry["detail"]["sirene_status"] == "closed"

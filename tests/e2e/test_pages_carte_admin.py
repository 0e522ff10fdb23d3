"""The Carif-Oref administrator through the carte admin pages on the running
system: sign in on /connexion, create an establishment account and read its
password, open a campaign if none is, and see a bad catalogue row refused."""

from __future__ import annotations

import datetime as dt
import html
import re

from .test_carte_journey import new_uai

BAD_CATALOGUE = (
    "niveau;diplome;code_diplome;rncp;duree\n"
    "3;CAP Ébéniste;50023418;RNCP35282;2\n"
    "3;CAP Y;ABC;RNCP35282;2\n"
).encode()


def test_the_administrator_manages_accounts_campaigns_and_catalogue_on_pages(
    gateway, admin, unique
):
    signed = gateway.post(
        "/connexion", data={"email": admin["email"], "password": admin["password"]}
    )
    assert signed.status_code == 200, signed.text

    accounts = gateway.get("/carte/admin/comptes")
    assert accounts.status_code == 200 and "Créer un compte" in accounts.text
    uai = new_uai()
    created = gateway.post(
        "/carte/admin/comptes",
        data={
            "kind": "establishment",
            "identifier": uai,
            "label": f"Lycée admin {unique}",
            "contact_email": f"admin.page.{unique}@example.org",
        },
    )
    assert created.status_code == 201, created.text
    password = re.search(r'<code id="issued-password">([^<]+)</code>', created.text).group(1)
    assert uai in created.text

    with type(gateway)(gateway.url("")) as other:
        signin = other.post(
            "/api/v1/carte/sessions",
            json={"identifier": uai, "password": html.unescape(password)},
        )
        assert signin.status_code == 201, signin.text

    campaigns = gateway.get("/carte/admin/campagnes")
    assert campaigns.status_code == 200
    if "Ouverte" not in campaigns.text:
        today = dt.date.today()
        opened = gateway.post(
            "/carte/admin/campagnes",
            data={
                "school_year": str(today.year + 1),
                "opens_on": (today - dt.timedelta(days=1)).isoformat(),
                "closes_on": (today + dt.timedelta(days=60)).isoformat(),
            },
        )
        assert opened.status_code in (201, 409), opened.text
        assert "Rentrée" in html.unescape(opened.text)

    refused = gateway.post(
        "/carte/admin/catalogue",
        files={"file": ("catalogue.csv", BAD_CATALOGUE, "text/csv")},
    )
    text = html.unescape(refused.text)
    assert refused.status_code == 422, text
    assert "<td>3</td><td>code_diplome</td>" in text
    assert "Formations signalées comme manquantes" in text

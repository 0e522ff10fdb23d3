"""The agency's survey pages, as France compétences' browser would go:
« Enquêtes (agence) » → « Nouvelle enquête » → the campaign listed with its
counts → its organisations' statuses → « Bloquer » then « Débloquer » one
organisation → the CSV export link."""

from __future__ import annotations

import html
import re

from tests.e2e.conftest import GatewaySession
from tests.e2e.journeys import campaign_data, register_confirm_validate, sign_in

SIRET = "57128327400017"  # CAMPUS NUMERIQUE DE DEMONSTRATION, used by no other test
ORGANISATION = "CAMPUS NUMERIQUE"


def seen(response) -> str:
    assert response.status_code == 200, response.text
    return html.unescape(response.text)


def test_the_agency_creates_a_campaign_and_blocks_an_organisation(
    system, gateway, mailbox, admin, unique
):
    agency = sign_in(gateway, admin["email"], admin["password"])
    email = f"agence.pages.{unique}@example.org"
    register_confirm_validate(gateway, mailbox, agency, email, SIRET, account_type="OFA")

    with GatewaySession(system.gateway_url) as browser:
        signed_in = browser.post(
            "/connexion",
            data={"email": admin["email"], "password": admin["password"]},
            allow_redirects=False,
        )
        assert signed_in.status_code == 303 and "session" in browser.cookies  # See Other
        assert "Enquêtes (agence)" in seen(browser.get("/"))

        # « Nouvelle enquête », then the campaign in the list
        name = f"Enquête agence {unique}"
        created = browser.post("/agence/enquetes", data=campaign_data(name))
        listing = seen(created)
        assert "L'enquête est créée." in listing
        [line] = [r for r in listing.split("<tr>") if name in r]
        campaign_id = re.search(r'href="/agence/enquetes/([^"/]+)"', line).group(1)

        # a refused one: the message next to its field
        refused = browser.post("/agence/enquetes", data={**campaign_data(""), "name": ""})
        assert refused.status_code == 422
        assert 'id="name-err"' in refused.text

        # the campaign's statuses, found by the organisation's name
        path = f"/agence/enquetes/{campaign_id}"
        statuses = seen(browser.get(path, params={"q": ORGANISATION}))
        assert re.search(r"Page 1 sur \d+ \(\d+ lignes?\)", statuses)
        [row, *_] = [r for r in statuses.split("<tr>")[1:] if ORGANISATION in r]
        assert "Enquête non téléchargée" in row and "<td>Non</td>" in row
        block = re.search(r'action="(/agence/enquetes/[^"]+/bloquer)"', row).group(1)
        survey_path = block.rsplit("/", 1)[0]

        blocked = seen(browser.post(block, data={"q": ORGANISATION}))
        assert "L'enquête de l'organisme est bloquée." in blocked
        only_blocked = seen(browser.get(path, params={"blocked": "true", "q": ORGANISATION}))
        assert f'action="{survey_path}/debloquer"' in only_blocked

        unblocked = seen(browser.post(f"{survey_path}/debloquer", data={"q": ORGANISATION}))
        assert "L'enquête de l'organisme est débloquée." in unblocked
        assert f'action="{survey_path}/bloquer"' in unblocked

        # the export links go to the API, which reads the same cookie
        link = re.search(r'href="(/api/v1/survey-campaigns/[^"]+format=csv)"', unblocked).group(1)
        export = browser.get(html.unescape(link))
        assert export.status_code == 200, export.text

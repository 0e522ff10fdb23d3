"""Section II of the Karoussel guide through its HTML pages, as a manager's
browser would go: « Enquêtes en ligne » → « Valeurs à renseigner » (totals,
the guide's list imported) → the form downloaded, filled in → « Envoyer une
enquête » → « Statut des enquêtes » and the survey's transmitted file."""

from __future__ import annotations

import html
import re

from services.survey.tests.support import fill_form, workbook_bytes
from tests.e2e.conftest import GatewaySession
from tests.e2e.journeys import (
    CERTIFICATION_HEADER,
    GUIDE_CERTIFICATIONS,
    PASSWORD,
    XLSX,
    create_campaign,
    register_confirm_validate,
    sign_in,
)

GUIDE_LIST = workbook_bytes({"Certifications": [CERTIFICATION_HEADER, *GUIDE_CERTIFICATIONS]})
SIRET = "88321991700019"  # CFA AGRICOLE DES COLLINES FICTIVES, used by no other test


def seen(response) -> str:
    assert response.status_code == 200, response.text
    return html.unescape(response.text)


def test_a_manager_transmits_a_survey_through_the_pages(system, gateway, mailbox, admin, unique):
    agency = sign_in(gateway, admin["email"], admin["password"])
    campaign = create_campaign(gateway, agency, f"Enquête pages {unique}")
    email = f"pages.{unique}@example.org"
    register_confirm_validate(gateway, mailbox, agency, email, SIRET, account_type="OFA")

    with GatewaySession(system.gateway_url) as browser:
        signed_in = browser.post(
            "/connexion", data={"email": email, "password": PASSWORD}, allow_redirects=False
        )
        assert signed_in.status_code == 303 and "session" in browser.cookies  # See Other

        # « Enquêtes en ligne »: the tiles and the campaign's line
        listing = seen(browser.get("/enquetes"))
        assert "Accéder à la transmission" in listing and "Date de dernier envoi" in listing
        [line] = [r for r in listing.split("<tr>") if campaign["name"] in r]
        sid = re.search(r'href="/enquetes/([^/"]+)/donnees"', line).group(1)
        assert "non téléchargée" in line

        # the download waits for « Données à renseigner », with the service's words
        early = browser.get(f"/enquetes/{sid}/telecharger/formulaire")
        assert early.status_code == 409
        assert "Le téléchargement de l'enquête est bloqué" in html.unescape(early.text)

        # « Valeurs à renseigner »: the totals, then the guide's list
        saved = browser.post(
            f"/enquetes/{sid}/donnees",
            data={"action": "save", "establishments_count": "2", "trainings_count": "3"},
        )
        assert "Vos valeurs sont enregistrées." in seen(saved)
        imported = seen(
            browser.post(
                f"/enquetes/{sid}/donnees",
                data={"action": "import"},
                files={"file": ("Liste-certifications.xlsx", GUIDE_LIST, XLSX)},
            )
        )
        assert "Les données ont bien été importées" in imported
        assert "EMPLOYE TRAITEUR (MC NIVEAU V)" in imported

        # the form, filled in as a person would, sent on « Envoyer une enquête »
        form = browser.get(f"/enquetes/{sid}/telecharger/formulaire")
        assert form.status_code == 200 and form.content.startswith(b"PK")
        sent = seen(
            browser.post(
                "/transmission",
                data={"survey_id": sid},
                files={"file": ("Compte cfa.xlsx", fill_form(form.content), XLSX)},
            )
        )
        recorded = re.search(r"fichier enregistré « ([^»]+) »", sent).group(1)
        assert recorded.startswith(f"Enquête pages {unique}_")

        # « Statut des enquêtes » and the survey's page
        statuses = seen(browser.get("/statuts"))
        [status] = [r for r in statuses.split("<tr>") if campaign["name"] in r]
        assert "Enquête déposée" in status
        detail = seen(browser.get(f"/statuts/{sid}"))
        assert recorded in detail and email in detail
        link = re.search(r'href="(/api/v1/surveys/[^"]+/file)"', detail).group(1)
        again = browser.get(link)
        assert again.status_code == 200 and again.content.startswith(b"PK")

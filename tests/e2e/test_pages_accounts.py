"""Section I of the Karoussel guide through its HTML pages, as a browser would:
« Inscription » with the habilitation → the e-mailed link → the agency
validates on « Inscriptions à valider » → the manager signs in on /connexion
→ creates a user on « Gestion des utilisateurs » and sees its red dot."""

from __future__ import annotations

import html
import re

from tests.e2e.journeys import PASSWORD, PDF, follow_form_link, registration

SIRET = "86903209400011"  # CFA DE L'INDUSTRIE SIMULEE: used by no other test


def _page(response) -> str:
    assert response.status_code == 200, response.text
    return html.unescape(response.text)


def _sign_in(gateway, email: str, password: str) -> str:
    response = gateway.post("/connexion", data={"email": email, "password": password})
    return _page(response)  # redirected to the home page


def test_register_validate_and_manage_users_through_the_pages(gateway, mailbox, admin, unique):
    email = f"pages.{unique}@example.org"

    # 1. « Inscription », with the habilitation document
    form = _page(gateway.get("/inscription"))
    assert "Document d'habilitation" in form and "S'inscrire" in form
    sent = gateway.post(
        "/inscription",
        data=registration(email, SIRET),
        files={"habilitation": ("habilitation signée.pdf", PDF, "application/pdf")},
    )
    assert "Vous recevez un courriel vous invitant à confirmer votre adresse" in _page(sent)

    # 2. the e-mailed link
    link = mailbox.link(
        email, r"https?://\S+/inscription/confirmer\?token=\S+", subject="Confirmez"
    )
    confirmed = follow_form_link(gateway, link).page
    assert "L'activation de votre compte a bien été effectuée" in confirmed

    # 3. the agency validates it on its queue
    home = _sign_in(gateway, admin["email"], admin["password"])
    assert 'href="/agence/inscriptions"' in home
    queue = _page(gateway.get("/agence/inscriptions"))
    [section] = [s for s in queue.split("<section")[1:] if email in s]
    assert "CFA DE L'INDUSTRIE SIMULEE" in section and SIRET in section
    assert "habilitation signée.pdf" in section
    document = re.search(r'href="(/api/v1/files/[^"]+)"', section).group(1)
    assert gateway.get(document).content == PDF
    user_id = re.search(r'action="/agence/inscriptions/([^/"]+)/valider"', section).group(1)
    validated = _page(gateway.post(f"/agence/inscriptions/{user_id}/valider"))
    assert "Le compte est validé." in validated and email not in validated
    signed_out = gateway.post("/deconnexion")
    assert signed_out.url.endswith("/connexion") and "session" not in gateway.cookies

    # 4. the manager signs in and creates a user
    home = _sign_in(gateway, email, PASSWORD)
    assert "MARTIN Claire" in home and 'href="/utilisateurs"' in home
    users = _page(gateway.get("/utilisateurs"))
    assert "Gestion des utilisateurs" in users and email in users
    colleague = f"paul.{unique}@example.org"
    created = _page(
        gateway.post(
            "/utilisateurs",
            data={
                "last_name": "Durand",
                "first_name": "Paul",
                "email": colleague,
                "phone": "",
                "role": "user",
                "firm_name": "",
            },
        )
    )
    assert "Le compte est créé" in created
    [row] = [r for r in created.split("<tr>") if colleague in r]
    assert "DURAND Paul" in row
    assert 'class="dot dot-rouge"' in row and "Compte non activé" in row

"""Steps of the guides' journeys shared by the end-to-end tests: registering,
confirming and validating an organisation's manager, signing in, and the
survey side's set-up (a campaign, an organisation's survey ready to be
downloaded, uploads). Each step asserts what a user would notice."""

from __future__ import annotations

import datetime as dt
import html
import re

PASSWORD = "correct horse 42"
PDF = (  # a real one-page PDF: files checks PDFs with qpdf (files.pdf_safety)
    b"%PDF-1.3\n1 0 obj\n<< /Pages 2 0 R /Type /Catalog >>\nendobj\n2 0 obj\n"
    b"<< /Count 1 /Kids [ 3 0 R ] /Type /Pages >>\nendobj\n3 0 obj\n"
    b"<< /Contents 4 0 R /MediaBox [ 0 0 612 792 ] /Parent 2 0 R /Resources << >> "
    b"/Type /Page >>\nendobj\n4 0 obj\n<< /Length 0 >>\nstream\n\nendstream\nendobj\n"
    b"trailer << /Root 1 0 R /Size 5 >>\n%%EOF\n"
)


def registration(email: str, siret: str, account_type: str = "OFA") -> dict:
    return {
        "account_type": account_type,
        "siret": siret,
        "nda": "11930882293",
        "uai": "0750654D",
        "apprentice_count": "42",
        "last_name": "Martin",
        "first_name": "Claire",
        "phone": "01 23 45 67 89",
        "email": email,
        "email_confirm": email,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }


def follow_form_link(gateway, link: str, data: dict | None = None):
    """Opens an e-mailed link (a page with a form), then submits that form."""
    page = gateway.get(link)
    assert page.status_code == 200, page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    response = gateway.post(link.split("?")[0], data={"token": token, **(data or {})})
    response.page = html.unescape(response.text)
    return response


def sign_in(gateway, email: str, password: str = PASSWORD) -> dict:
    response = gateway.post("/api/v1/sessions", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def register_confirm_validate(gateway, mailbox, admin_headers, email, siret, **kw) -> dict:
    response = gateway.post(
        "/api/v1/registrations",
        data=registration(email, siret, **kw),
        files={"habilitation": ("habilitation.pdf", PDF, "application/pdf")},
    )
    assert response.status_code == 202, response.text
    link = mailbox.link(
        email, r"https?://\S+/inscription/confirmer\?token=\S+", subject="Confirmez"
    )
    assert "Vous serez informé" in follow_form_link(gateway, link).page
    pending = gateway.get("/api/v1/registrations", headers=admin_headers).json()["items"]
    [row] = [r for r in pending if r["email"] == email]
    validated = gateway.post(f"/api/v1/users/{row['id']}/validate", headers=admin_headers)
    assert validated.status_code == 200, validated.text
    return row


# --- survey side (section II of the Karoussel guide) -------------------------

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CERTIFICATION_HEADER = [
    "Code Diplôme",
    "Intitulé",
    "Code RNCP",
    "Niveau 2019",
    "Type",
    "Nombre d'établissements sur lesquels la formation correspondante est délivrée",
]
# the guide's example of « Données à renseigner »
GUIDE_CERTIFICATIONS = [
    ["10033101", "DE DOCTEUR EN PHARMACIE", "NR", "niveau8", "DOCTORAT", 1],
    ["1022001", "AGENT DE CONTROLE NON DESTRUCTIF (MC NIVEAU IV)", "RNCP955", "niveau4", "MC", 2],
    ["1022103", "EMPLOYE TRAITEUR (MC NIVEAU V)", "RNCP958", "niveau3", "MC", 1],
]


def manager_of(gateway, mailbox, admin_headers, email: str, siret: str, **kw) -> tuple[dict, str]:
    """A validated organisation's first user (its manager): (headers, org id)."""
    register_confirm_validate(gateway, mailbox, admin_headers, email, siret, **kw)
    headers = sign_in(gateway, email)
    return headers, gateway.get("/api/v1/me", headers=headers).json()["organisation"]["id"]


def campaign_data(name: str, *, online=-30, opens=-1, due=30, closes=60, target="all") -> dict:
    """An « enquête » whose dates are days from today."""
    today = dt.date.today()

    def day(offset: int) -> str:
        return (today + dt.timedelta(days=offset)).isoformat()

    return {
        "name": name,
        "details": f"{name} : comptabilité analytique",
        "form_type": "CFA",
        "direction": "DIRECTION_1",
        "online_on": day(online),
        "transmission_opens_on": day(opens),
        "return_due_on": day(due),
        "closes_on": day(closes),
        "target": target,
    }


def create_campaign(gateway, admin_headers, name: str, **dates) -> dict:
    response = gateway.post(
        "/api/v1/survey-campaigns", headers=admin_headers, json=campaign_data(name, **dates)
    )
    assert response.status_code == 201, response.text
    return response.json()


def survey_of(gateway, headers, campaign_id: str) -> dict:
    """The organisation's line of « Enquêtes en ligne » for a campaign."""
    response = gateway.get("/api/v1/surveys", headers=headers)
    assert response.status_code == 200, response.text
    [row] = [r for r in response.json()["items"] if r["campaign_id"] == campaign_id]
    return row


def xlsx_upload(content: bytes, name: str = "fichier.xlsx") -> dict:
    return {"file": (name, content, XLSX)}


def make_ready(gateway, headers, survey_id: str, certification_list: bytes) -> dict:
    """« Données à renseigner » completed: 2 establishments, 3 trainings, a list."""
    saved = gateway.put(
        f"/api/v1/surveys/{survey_id}/required-data",
        headers=headers,
        json={"establishments_count": 2, "trainings_count": 3},
    )
    assert saved.status_code == 200, saved.text
    imported = gateway.post(
        f"/api/v1/surveys/{survey_id}/certifications/import",
        headers=headers,
        files=xlsx_upload(certification_list, "Liste-certifications.xlsx"),
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["complete"] is True
    return imported.json()


def download_form(gateway, headers, survey_id: str) -> bytes:
    response = gateway.get(f"/api/v1/surveys/{survey_id}/form", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def transmit(gateway, headers, survey_id: str, content: bytes, name="Compte cfa.xlsx", key=None):
    extra = {"Idempotency-Key": key} if key else {}
    return gateway.post(
        f"/api/v1/surveys/{survey_id}/transmissions",
        headers={**headers, **extra},
        files=xlsx_upload(content, name),
    )

"""The Carif-Oref guide through HTTP on the running system: an establishment's
whole journey (sign in → new request → partial draft → continue → annexes →
validation errors → fix → recap → confirm → read-only → consult/print), a
network filing for two of its establishments with linked projects, a
reviewer's filtered export, and « mot de passe perdu » by e-mail.

The system is shared by the whole session: accounts get unique identifiers,
the campaign is created once if none is open, the catalogue file is the same
for every test (importing it again changes nothing)."""

from __future__ import annotations

import csv
import html
import io
import random
import re

import pytest

from kit.codes import uai_check_letter

CATALOGUE = (
    "niveau;diplome;code_diplome;rncp;duree\n"
    "5;BTS Management commercial opérationnel;32031213;RNCP38368;1\n"
    "5;BTS Management commercial opérationnel;32031213;RNCP38368;2\n"
    "3;CAP Ébéniste;50023418;RNCP35282;2\n"
).encode()
PDF = (  # a real one-page PDF: files checks PDFs with qpdf (files.pdf_safety)
    b"%PDF-1.3\n1 0 obj\n<< /Pages 2 0 R /Type /Catalog >>\nendobj\n2 0 obj\n"
    b"<< /Count 1 /Kids [ 3 0 R ] /Type /Pages >>\nendobj\n3 0 obj\n"
    b"<< /Contents 4 0 R /MediaBox [ 0 0 612 792 ] /Parent 2 0 R /Resources << >> "
    b"/Type /Page >>\nendobj\n4 0 obj\n<< /Length 0 >>\nstream\n\nendstream\nendobj\n"
    b"trailer << /Root 1 0 R /Size 5 >>\n%%EOF\n"
)
_used: set[str] = set()


def new_uai(department: str = "031") -> str:
    while True:
        digits = department + f"{random.randrange(10_000):04d}"
        uai = digits + uai_check_letter(digits)
        if uai not in _used:
            _used.add(uai)
            return uai


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_headers(gateway, admin):
    response = gateway.post(
        "/api/v1/sessions", json={"email": admin["email"], "password": admin["password"]}
    )
    assert response.status_code == 201, response.text
    return bearer(response.json()["token"])


@pytest.fixture
def carte(gateway, admin_headers):
    """An open campaign and the catalogue; returns the variant ids by label."""
    current = gateway.get("/api/v1/carte/campaigns/current", headers=admin_headers).json()
    if not current["campaign"] or current["campaign"]["state"] != "open":
        import datetime as dt

        today = dt.date.today()
        created = gateway.post(
            "/api/v1/carte/campaigns",
            headers=admin_headers,
            json={
                "school_year": today.year + 1,
                "opens_on": (today - dt.timedelta(days=1)).isoformat(),
                "closes_on": (today + dt.timedelta(days=60)).isoformat(),
            },
        )
        assert created.status_code in (201, 409), created.text
    imported = gateway.post(
        "/api/v1/carte/catalogue/imports",
        headers=admin_headers,
        files={"file": ("catalogue.csv", CATALOGUE, "text/csv")},
    )
    assert imported.status_code == 200, imported.text
    tree = gateway.get("/api/v1/carte/catalogue", headers=admin_headers).json()
    return {
        v["label"]: v["id"]
        for level in tree["levels"]
        for diploma in level["diplomas"]
        for v in diploma["variants"]
    }


def create_account(gateway, admin_headers, **data) -> dict:
    response = gateway.post("/api/v1/carte/accounts", headers=admin_headers, json=data)
    assert response.status_code == 201, response.text
    return response.json()


def sign_in(gateway, identifier: str, password: str) -> dict:
    response = gateway.post(
        "/api/v1/carte/sessions", json={"identifier": identifier, "password": password}
    )
    assert response.status_code == 201, response.text
    return response.json()


def establishment(gateway, admin_headers, unique, department="031") -> tuple[str, dict]:
    uai = new_uai(department)
    created = create_account(
        gateway,
        admin_headers,
        kind="establishment",
        identifier=uai,
        label=f"Lycée des métiers {unique}",
        contact_email=f"lycee.{unique}.{uai.lower()}@example.org",
    )
    return uai, bearer(sign_in(gateway, uai, created["password"])["token"])


def full_form(variant_id: int, uai: str, **changes) -> dict:
    data = {
        "concerned_uai": uai,
        "training_site": "",
        "manager_name": "Responsable du projet",
        "manager_phone": "05 61 00 00 00",
        "manager_email": "projet@lycee.example",
        "modality": "S",
        "variant_id": variant_id,
        "measure": "ouverture",
        "linked": False,
        "priority": 1,
        "current_capacity": 0,
        "new_capacity": 12,
        "first_filing": False,
        "previous_filing_year": 2018,
        "cp_ca_date": "2019-11-20",
        "recruitment_zones": ["academique", "regional"],
        "works_needed": True,
        "works_description": "Aménagement d'un atelier de 120 m².",
        "equipment_needed": False,
        "other_impacts": "",
        "opportunity_report": "Les entreprises du bois recrutent : synthèse du rapport.",
    }
    data.update(changes)
    return data


def validate(gateway, headers, request_id) -> dict:
    checked = gateway.post(f"/api/v1/carte/requests/{request_id}/check", headers=headers)
    assert checked.status_code == 200, checked.text
    confirmed = gateway.post(
        f"/api/v1/carte/requests/{request_id}/confirm",
        headers=headers,
        json={"version": checked.json()["version"]},
    )
    assert confirmed.status_code == 200, confirmed.text
    return confirmed.json()


def test_an_establishments_whole_journey(gateway, admin_headers, carte, unique):
    cap = carte["CAP Ébéniste en 2 ans"]
    uai = new_uai()
    created = create_account(
        gateway,
        admin_headers,
        kind="establishment",
        identifier=uai.lower(),
        label=f"Lycée {unique}",
        contact_email=f"lycee.{unique}@example.org",
    )
    assert created["account"]["identifier"] == uai and created["password"]

    # sections 1-2: identification, then « vous êtes connecté en tant que … »
    wrong = gateway.post("/api/v1/carte/sessions", json={"identifier": uai, "password": "x"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "auth.invalid_credentials"
    signed = sign_in(gateway, uai, created["password"])
    expected = f"Vous êtes connecté en tant qu'établissement de formation avec l'identifiant {uai}"
    assert signed["signed_in_as"] == expected
    headers = bearer(signed["token"])
    assert gateway.get("/api/v1/carte/me", headers=headers).json()["signed_in_as"] == expected

    # section 3: the dashboard starts empty
    board = gateway.get("/api/v1/carte/requests", headers=headers).json()
    assert board["drafts"] == [] and board["validated"] == [] and board["can_file"]
    blank = gateway.get("/api/v1/carte/requests/new", headers=headers).json()
    assert blank["prefilled"]["referent_uai"] == uai
    assert blank["prefilled"]["school_year_label"] == board["campaign"]["label"]

    # section 4-5: a partial draft gets its id at the first save…
    first = gateway.post(
        "/api/v1/carte/requests",
        headers=headers,
        json={"measure": "ouverture", "manager_name": "Responsable du projet"},
    )
    assert first.status_code == 201, first.text
    request_id = first.json()["id"]
    [row] = gateway.get("/api/v1/carte/requests", headers=headers).json()["drafts"]
    assert row["id"] == request_id and row["operation"] == "Continuer la saisie"
    assert (row["measure"], row["diploma"], row["linked"]) == (
        "Ouverture",
        "Pas encore saisi",
        "Non",
    )

    # … « Continuer la saisie » reopens it as saved
    reopened = gateway.get(f"/api/v1/carte/requests/{request_id}", headers=headers).json()
    assert reopened["manager_name"] == "Responsable du projet"
    assert reopened["concerned_uai"] == uai and reopened["referent_uai"] == uai

    # annexes, through the files service
    annex = gateway.post(
        f"/api/v1/carte/requests/{request_id}/annexes",
        headers=headers,
        files={"file": ("PV du conseil d'administration.pdf", PDF, "application/pdf")},
    )
    assert annex.status_code == 201, annex.text
    [stored] = annex.json()["annexes"]
    downloaded = gateway.get(
        f"/api/v1/carte/requests/{request_id}/annexes/{stored['id']}", headers=headers
    )
    assert downloaded.status_code == 200 and downloaded.content == PDF

    # section 6: validation lists every missing field …
    incomplete = gateway.post(f"/api/v1/carte/requests/{request_id}/check", headers=headers)
    assert incomplete.status_code == 422
    problem = incomplete.json()
    assert problem["code"] == "carte.field_required"
    assert {"variant_id", "priority", "opportunity_report", "recruitment_zones"} <= set(
        problem["errors"]
    )

    # … a wrong value is refused and nothing changes …
    too_long = gateway.put(
        f"/api/v1/carte/requests/{request_id}",
        headers=headers,
        json=full_form(cap, uai, opportunity_report="x" * 5001),
    )
    assert too_long.status_code == 422 and too_long.json()["code"] == "carte.report_too_long"
    assert "opportunity_report" in too_long.json()["errors"]
    unchanged = gateway.get(f"/api/v1/carte/requests/{request_id}", headers=headers).json()
    assert unchanged["version"] == reopened["version"] + 1  # the annex only
    assert unchanged["variant_id"] is None

    # … fixed, the recap, then « Confirmer »
    saved = gateway.put(
        f"/api/v1/carte/requests/{request_id}",
        headers=headers,
        json=dict(full_form(cap, uai), version=unchanged["version"]),
    )
    assert saved.status_code == 200, saved.text
    recap = gateway.post(f"/api/v1/carte/requests/{request_id}/check", headers=headers)
    assert recap.status_code == 200, recap.text
    sections = {s["title"]: s["items"] for s in recap.json()["recap"]["sections"]}
    assert "A/ Établissement de formation" in sections
    diploma = next(
        i for i in sections["B/ Informations sur la formation"] if i["label"] == "Diplôme"
    )
    assert diploma["value"].startswith("CAP Ébéniste en 2 ans")
    confirmed = gateway.post(
        f"/api/v1/carte/requests/{request_id}/confirm",
        headers=headers,
        json={"version": recap.json()["version"]},
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "validated"

    # read-only for good
    again = gateway.put(
        f"/api/v1/carte/requests/{request_id}", headers=headers, json=full_form(cap, uai)
    )
    assert again.status_code == 409 and again.json()["code"] == "carte.request_validated"
    late_annex = gateway.post(
        f"/api/v1/carte/requests/{request_id}/annexes",
        headers=headers,
        files={"file": ("lettre.pdf", PDF, "application/pdf")},
    )
    assert late_annex.status_code == 409
    board = gateway.get("/api/v1/carte/requests", headers=headers).json()
    assert board["drafts"] == []
    assert [(r["id"], r["operation"]) for r in board["validated"]] == [(request_id, "Consulter")]

    # « Consulter »: the print page, the PDF, and the dashboard page
    printed = gateway.get(f"/carte/demandes/{request_id}/impression", headers=headers)
    assert printed.status_code == 200
    text = html.unescape(printed.text)
    assert f"Demande n° {request_id}" in text and "Aménagement d'un atelier" in text
    # its print layout is a stylesheet of its own (no inline style: gateway.security)
    assert '<link rel="stylesheet" href="/static/css/print.css">' in text
    assert "@media print" in gateway.get("/static/css/print.css").text
    pdf = gateway.get(f"/api/v1/carte/requests/{request_id}/pdf", headers=headers)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    page = html.unescape(gateway.get("/carte/", headers=headers).text)
    assert expected in page and "Demandes validées" in page

    # another establishment does not see it
    _other, other_headers = establishment(gateway, admin_headers, unique)
    hidden = gateway.get(f"/api/v1/carte/requests/{request_id}", headers=other_headers)
    assert hidden.status_code == 404 and hidden.json()["code"] == "carte.request_not_found"


def test_a_network_files_for_two_of_its_establishments_with_linked_projects(
    gateway, admin_headers, carte, unique
):
    bts = carte["BTS Management commercial opérationnel en 2 ans"]
    first_uai, second_uai, outside_uai = new_uai("031"), new_uai("032"), new_uai("034")
    network = create_account(
        gateway,
        admin_headers,
        kind="network",
        identifier=f"RES-{unique}".upper(),
        label="Réseau sectoriel commerce",
        contact_email=f"reseau.{unique}@example.org",
        member_uais=[first_uai, second_uai],
    )
    signed = sign_in(gateway, f"res-{unique}", network["password"])
    assert signed["signed_in_as"].startswith("Vous êtes connecté en tant que réseau")
    headers = bearer(signed["token"])

    outside = gateway.post(
        "/api/v1/carte/requests", headers=headers, json=full_form(bts, outside_uai)
    )
    assert outside.status_code == 422 and outside.json()["code"] == "carte.uai_outside_network"
    malformed = gateway.post(
        "/api/v1/carte/requests", headers=headers, json={"concerned_uai": "0311234X"}
    )
    assert malformed.status_code == 422 and malformed.json()["code"] == "carte.uai_invalid"

    first = gateway.post("/api/v1/carte/requests", headers=headers, json=full_form(bts, first_uai))
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]
    assert first.json()["referent_uai"] == first_uai  # the network's referent

    duplicate = gateway.post(
        "/api/v1/carte/requests", headers=headers, json=full_form(bts, first_uai, priority=1)
    )
    assert duplicate.status_code == 422 and duplicate.json()["code"] == "carte.priority_taken"
    incoherent = gateway.post(
        "/api/v1/carte/requests",
        headers=headers,
        json=full_form(bts, second_uai, measure="fermeture", current_capacity=24, new_capacity=6),
    )
    assert incoherent.status_code == 422
    assert incoherent.json()["code"] == "carte.capacity_incoherent"
    _foreign_uai, foreign_headers = establishment(gateway, admin_headers, unique, "031")
    foreign = gateway.post(
        "/api/v1/carte/requests", headers=foreign_headers, json=full_form(bts, _foreign_uai)
    )
    not_visible = gateway.post(
        "/api/v1/carte/requests",
        headers=headers,
        json=full_form(bts, second_uai, linked=True, linked_request_id=foreign.json()["id"]),
    )
    assert not_visible.status_code == 422
    assert not_visible.json()["code"] == "carte.linked_request_not_found"
    unknown_diploma = gateway.post(
        "/api/v1/carte/requests", headers=headers, json=full_form(999999, second_uai)
    )
    assert unknown_diploma.json()["code"] == "carte.diploma_unknown"

    second = gateway.post(
        "/api/v1/carte/requests",
        headers=headers,
        json=full_form(
            bts,
            second_uai,
            measure="fermeture",
            current_capacity=24,
            new_capacity=0,
            linked=True,
            linked_request_id=first_id,
        ),
    )
    assert second.status_code == 201, second.text
    second_id = second.json()["id"]
    assert validate(gateway, headers, first_id)["status"] == "validated"
    done = validate(gateway, headers, second_id)
    assert done["linked"] is True and done["linked_request_id"] == first_id

    board = gateway.get("/api/v1/carte/requests", headers=headers).json()
    rows = {r["id"]: r for r in board["validated"]}
    assert rows[second_id]["linked"] == "Oui" and rows[second_id]["measure"] == "Fermeture"
    assert {first_id, second_id} <= set(rows)


def test_a_reviewer_filters_and_exports_the_validated_requests_of_its_scope(
    gateway, admin_headers, carte, unique
):
    cap = carte["CAP Ébéniste en 2 ans"]
    toulouse_uai, toulouse_headers = establishment(gateway, admin_headers, unique, "031")
    montpellier_uai, montpellier_headers = establishment(gateway, admin_headers, unique, "034")
    formula = '=HYPERLINK("http://example.invalid","cliquez")'
    ids = {}
    for uai, headers in ((toulouse_uai, toulouse_headers), (montpellier_uai, montpellier_headers)):
        made = gateway.post(
            "/api/v1/carte/requests",
            headers=headers,
            json=full_form(cap, uai, opportunity_report=formula),
        )
        assert made.status_code == 201, made.text
        ids[uai] = validate(gateway, headers, made.json()["id"])["id"]
    gateway.post(
        "/api/v1/carte/requests",
        headers=toulouse_headers,
        json=full_form(cap, toulouse_uai, priority=2),
    )  # a draft: reviewers never see it

    reviewer = create_account(
        gateway,
        admin_headers,
        kind="reviewer",
        identifier=f"AC-TLS-{unique}".upper(),
        label="Académie de Toulouse",
        contact_email=f"ac.{unique}@example.org",
        scope="toulouse",
    )
    headers = bearer(sign_in(gateway, f"AC-TLS-{unique}", reviewer["password"])["token"])

    listed = gateway.get(
        "/api/v1/carte/reviews",
        headers=headers,
        params={"department": "31", "measure": "ouverture"},
    ).json()
    found = {r["id"] for r in listed["items"]}
    assert ids[toulouse_uai] in found and ids[montpellier_uai] not in found
    assert all(r["status"] == "validated" and r["academy"] == "toulouse" for r in listed["items"])
    out_of_scope = gateway.get(
        "/api/v1/carte/reviews", headers=headers, params={"uai": montpellier_uai}
    ).json()
    assert out_of_scope["total"] == 0

    exported = gateway.get(
        "/api/v1/carte/reviews/export.csv", headers=headers, params={"uai": toulouse_uai}
    )
    assert exported.status_code == 200 and exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][0] == "Id" and [r[0] for r in rows[1:]] == [str(ids[toulouse_uai])]
    report = rows[1][rows[0].index("Rapport d'opportunité")]
    assert report == "'" + formula

    workbook = gateway.get(
        "/api/v1/carte/reviews/export.xlsx", headers=headers, params={"academy": "toulouse"}
    )
    assert workbook.status_code == 200
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(workbook.content), read_only=True).active
    values = [row for row in sheet.iter_rows(values_only=True)]
    assert str(ids[toulouse_uai]) in {str(r[0]) for r in values[1:]}
    assert not any(isinstance(c, str) and c.startswith("=") for r in values for c in r)

    refused = gateway.get("/api/v1/carte/reviews", headers=toulouse_headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden.carte_reviewers_only"


def test_a_lost_password_is_reset_through_the_contact_email(
    gateway, admin_headers, mailbox, unique
):
    uai = new_uai()
    contact = f"contact.{unique}@example.org"
    create_account(
        gateway,
        admin_headers,
        kind="establishment",
        identifier=uai,
        label=f"Lycée {unique}",
        contact_email=contact,
    )
    answer = gateway.post("/api/v1/carte/password-resets", json={"identifier": uai})
    unknown = gateway.post("/api/v1/carte/password-resets", json={"identifier": "INCONNU"})
    assert answer.status_code == unknown.status_code == 202
    assert answer.json() == unknown.json()

    link = mailbox.link(contact, r"https?://\S+/mot-de-passe/reinitialiser\?token=\S+")
    page = gateway.get(link)
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    changed = gateway.post(
        link.split("?")[0],
        data={
            "token": token,
            "password": "nouveau mot 2020",
            "password_confirm": "nouveau mot 2020",
        },
    )
    assert changed.status_code == 200, changed.text
    assert sign_in(gateway, uai, "nouveau mot 2020")["account"]["identifier"] == uai


def _xlsx(rows) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_the_administrator_imports_the_catalogue_from_xlsx_and_sees_every_problem(
    gateway, admin_headers, carte
):
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    lines = [line.split(";") for line in CATALOGUE.decode().splitlines()]
    same = gateway.post(
        "/api/v1/carte/catalogue/imports",
        headers=admin_headers,
        files={"file": ("catalogue.xlsx", _xlsx(lines), xlsx)},
    )
    assert same.status_code == 200, same.text
    assert same.json()["created"] == 0 and same.json()["withdrawn"] == 0

    wrong = _xlsx(
        lines[:1] + [["9", "", "ABC", "RNCPX1", "7"], ["3", "CAP Y", "50023499", "", "2"]]
    )
    refused = gateway.post(
        "/api/v1/carte/catalogue/imports",
        headers=admin_headers,
        files={"file": ("catalogue.xlsx", wrong, xlsx)},
    )
    assert refused.status_code == 422 and refused.json()["code"] == "carte.catalogue_invalid"
    problems = refused.json()["details"]["problems"]
    assert {(p["row"], p["column"]) for p in problems} == {
        (2, "niveau"),
        (2, "diplome"),
        (2, "code_diplome"),
        (2, "rncp"),
        (2, "duree"),
    }
    search = gateway.get("/api/v1/carte/catalogue", headers=admin_headers, params={"q": "CAP Y"})
    assert search.json()["variant_count"] == 0  # nothing imported

    macro = gateway.post(
        "/api/v1/carte/catalogue/imports",
        headers=admin_headers,
        files={"file": ("catalogue.xlsx", b"not a zip at all", xlsx)},
    )
    assert macro.status_code == 422 and macro.json()["code"].startswith(("files.", "xlsx."))


def test_the_guides_screens_in_html_from_identification_to_confirmation(
    gateway, admin_headers, carte, unique, mailbox
):
    """The same journey as people click it: pages, a session cookie, forms."""
    cap = carte["CAP Ébéniste en 2 ans"]
    uai = new_uai()
    created = create_account(
        gateway,
        admin_headers,
        kind="establishment",
        identifier=uai,
        label=f"Lycée {unique}",
        contact_email=f"web.{unique}@example.org",
    )
    login = gateway.post(
        "/carte/connexion", data={"identifier": uai, "password": created["password"]}
    )
    assert login.status_code == 200 and login.url.endswith("/carte/")
    assert (
        f"avec l&#39;identifiant {uai}" in login.text
        and "Déposer une nouvelle demande" in login.text
    )

    blank = gateway.get("/carte/demandes/nouvelle")
    assert blank.status_code == 200 and f'value="{uai}" disabled' in blank.text
    saved = gateway.post(
        "/carte/demandes/nouvelle",
        data={"measure": "ouverture", "manager_name": "Responsable", "action": "save"},
    )
    assert saved.status_code == 200 and "Votre saisie a été enregistrée" in saved.text
    request_id = int(re.search(r"/carte/demandes/(\d+)", saved.url).group(1))

    form = {k: v for k, v in full_form(cap, uai).items() if k != "recruitment_zones"}
    form = {k: ("true" if v is True else "false" if v is False else v) for k, v in form.items()}
    version = re.search(r'name="version" value="(\d+)"', saved.text).group(1)
    incomplete = gateway.post(
        f"/carte/demandes/{request_id}",
        data=dict(form, version=version, action="validate"),
    )
    assert incomplete.status_code == 422
    assert "Cochez au moins une zone de recrutement." in html.unescape(incomplete.text)

    current = gateway.get(f"/carte/demandes/{request_id}")
    version = re.search(r'name="version" value="(\d+)"', current.text).group(1)
    recap = gateway.post(
        f"/carte/demandes/{request_id}",
        data=dict(
            form, recruitment_zones=["local", "academique"], version=version, action="validate"
        ),
    )
    assert recap.status_code == 200 and "Récapitulatif de la demande" in recap.text
    version = re.search(r'name="version" value="(\d+)"', recap.text).group(1)
    done = gateway.post(f"/carte/demandes/{request_id}/confirmer", data={"version": version})
    assert done.status_code == 200 and done.url.endswith("/carte/")
    assert "Consulter" in done.text
    consult = gateway.get(f"/carte/demandes/{request_id}")
    assert consult.url.endswith(f"/carte/demandes/{request_id}/impression")

    reported = gateway.post(
        "/carte/formation-manquante", data={"title": "CAP Tapissier", "rncp": "RNCP37098"}
    )
    assert reported.status_code == 200 and "transmis au Carif-Oref" in html.unescape(reported.text)
    mail = mailbox.wait_for("carte-admin@localhost", subject="Formation manquante")
    assert "CAP Tapissier" in mail["text"] and uai in mail["text"]

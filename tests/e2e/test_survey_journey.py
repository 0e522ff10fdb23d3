"""Section II of the Karoussel guide through HTTP on the running system:
the agency creates a campaign → an organisation fills in « Données à
renseigner » (numbers, the certification list imported from the template,
a row edited) → downloads the locked form (and its working copy and notice)
→ fills it in with openpyxl as a person would → a manager transmits it →
status and history → the file downloaded again → « Pièces à fournir » →
the agency blocks, filters and exports. Then every hostile upload, and the
cross-organisation 404 matrix."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import uuid
import zipfile
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from services.survey.tests.support import Text, fill_form, workbook_bytes
from tests.e2e.conftest import GatewaySession, Mailbox
from tests.e2e.journeys import (
    CERTIFICATION_HEADER,
    GUIDE_CERTIFICATIONS,
    PASSWORD,
    XLSX,
    create_campaign,
    download_form,
    follow_form_link,
    make_ready,
    manager_of,
    register_confirm_validate,
    sign_in,
    survey_of,
    transmit,
    xlsx_upload,
)

GUIDE_LIST = workbook_bytes({"Certifications": [CERTIFICATION_HEADER, *GUIDE_CERTIFICATIONS]})
PDF = (  # a real one-page PDF: files checks PDFs with qpdf (files.pdf_safety)
    b"%PDF-1.3\n1 0 obj\n<< /Pages 2 0 R /Type /Catalog >>\nendobj\n2 0 obj\n"
    b"<< /Count 1 /Kids [ 3 0 R ] /Type /Pages >>\nendobj\n3 0 obj\n"
    b"<< /Contents 4 0 R /MediaBox [ 0 0 612 792 ] /Parent 2 0 R /Resources << >> "
    b"/Type /Page >>\nendobj\n4 0 obj\n<< /Length 0 >>\nstream\n\nendstream\nendobj\n"
    b"trailer << /Root 1 0 R /Size 5 >>\n%%EOF\n"
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
# SIRETs of the SIRENE stand-in used by no other test
SIRET_A, SIRET_B, SIRET_C = "91129745500014", "86403373300014", "93850004800013"
SIRET_SILENT = "61956458600011"  # an OG validated by the agency that never signs in


def test_the_whole_survey_journey(gateway, mailbox, admin, unique):
    agency = sign_in(gateway, admin["email"], admin["password"])
    campaign = create_campaign(gateway, agency, f"Enquête CFA {unique}")
    manager, org_id = manager_of(gateway, mailbox, agency, f"gestion.{unique}@example.org", SIRET_A)

    # a second, plain user of the organisation, from the invitation e-mail
    user_email = f"collab.{unique}@example.org"
    created = gateway.post(
        f"/api/v1/organisations/{org_id}/users",
        headers=manager,
        json={"last_name": "Collab", "first_name": "Léa", "email": user_email, "role": "user"},
    )
    assert created.status_code == 201, created.text
    link = mailbox.link(user_email, r"https?://\S+/invitation\?token=\S+")
    follow_form_link(gateway, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    user = sign_in(gateway, user_email)

    # 1. « Enquêtes en ligne »: the guide's columns
    row = survey_of(gateway, manager, campaign["id"])
    assert row["name"] == campaign["name"] and row["form"] == "CFA - CFA"
    assert row["organisation"] == "CFA REGIONAL DU BATIMENT FICTIF"
    assert row["direction"] == "DIRECTION_1" and "parent" in row
    assert row["status_label"] == "non téléchargée" and row["last_sent_at"] is None
    sid = row["id"]

    # 2. the download waits for « Données à renseigner »
    early = gateway.get(f"/api/v1/surveys/{sid}/form", headers=manager)
    assert early.status_code == 409
    assert early.json()["code"] == "survey.required_data_incomplete"
    assert early.json()["title"].startswith("Le téléchargement de l'enquête est bloqué")

    template = gateway.get("/api/v1/survey-templates/certifications", headers=user)
    assert template.status_code == 200
    assert "Liste-certifications.xlsx" in template.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(template.content))["Certifications"]
    assert [c.value for c in sheet[1]] == CERTIFICATION_HEADER

    bad_numbers = gateway.put(
        f"/api/v1/surveys/{sid}/required-data",
        headers=user,
        json={"establishments_count": 0, "trainings_count": ""},
    )
    assert bad_numbers.status_code == 422
    assert set(bad_numbers.json()["errors"]) == {"establishments_count", "trainings_count"}

    csv_list = gateway.post(
        f"/api/v1/surveys/{sid}/certifications/import",
        headers=user,
        files={"file": ("liste.csv", b"a;b", "text/csv")},
    )
    assert csv_list.status_code == 422 and csv_list.json()["title"] == "Format accepté : .xlsx"

    bad_list = gateway.post(
        f"/api/v1/surveys/{sid}/certifications/import",
        headers=user,
        files=xlsx_upload(
            workbook_bytes(
                {
                    "Certifications": [
                        CERTIFICATION_HEADER,
                        ["ABC", "BTS", "RNCPX1", "niveau9", "BTS", 0],
                        GUIDE_CERTIFICATIONS[1],
                    ]
                }
            )
        ),
    )
    assert bad_list.status_code == 422
    body = bad_list.json()
    assert body["code"] == "survey.certifications_invalid" and body["details"]["count"] == 4
    assert set(body["errors"]) == {
        "Certifications!A2",
        "Certifications!C2",
        "Certifications!D2",
        "Certifications!F2",
    }
    assert body["details"]["problems"][0].startswith(
        "Feuille « Certifications », ligne 2, colonne A (Code Diplôme) : « ABC »"
    )

    ready = make_ready(gateway, user, sid, GUIDE_LIST)
    assert [c["code"] for c in ready["certifications"]] == ["10033101", "1022001", "1022103"]
    current = gateway.get(f"/api/v1/surveys/{sid}/certifications/file", headers=manager)
    assert current.status_code == 200 and current.content == GUIDE_LIST
    first = ready["certifications"][0]["id"]
    edited = gateway.patch(
        f"/api/v1/surveys/{sid}/certifications/{first}", headers=user, json={"rncp": "37098"}
    )
    assert edited.status_code == 200 and edited.json()["rncp"] == "RNCP37098"

    # 3. the locked form, the working copy and the notice
    form = download_form(gateway, user, sid)  # users may download and prepare it
    workbook = openpyxl.load_workbook(io.BytesIO(form))
    assert workbook.sheetnames[:6] == [
        "Identité",
        "Certifications",
        "Charges",
        "Produits",
        "Clés de répartition",
        "Note explicative",
    ]
    assert workbook["Identité"]["B6"].value == SIRET_A
    assert workbook["Charges"].protection.sheet is True
    assert (
        workbook["Charges"].cell(7, 2).value == "1022001"
    )  # one row per certification × establishment
    assert survey_of(gateway, manager, campaign["id"])["status_label"] == "téléchargée"
    working = gateway.get(f"/api/v1/surveys/{sid}/form/working-copy", headers=user)
    assert working.status_code == 200
    assert "Version de travail" in working.headers["Content-Disposition"]
    notice = gateway.get(f"/api/v1/surveys/{sid}/form/notice", headers=user)
    assert notice.status_code == 200 and notice.content.startswith(b"%PDF")

    # 4. transmission: managers only
    contact = {"Identité!B19": Text('=HYPERLINK("http://x")')}  # typed as text
    filled = fill_form(form, overrides=contact)
    refused = transmit(gateway, user, sid, filled)
    assert refused.status_code == 403 and refused.json()["code"] == "survey.manager_only"
    assert "gestionnaires de compte" in refused.json()["title"]
    sent = transmit(gateway, manager, sid, filled, key=f"envoi-{unique}")
    assert sent.status_code == 201, sent.text
    transmission = sent.json()
    assert transmission["number"] == 1
    assert transmission["file_name"].startswith(
        f"Enquête CFA {unique}_CFA REGIONAL DU BATIMENT FICTIF - "
    )
    assert transmission["submitter_email"] == f"gestion.{unique}@example.org"
    retried = transmit(gateway, manager, sid, filled, key=f"envoi-{unique}")
    assert retried.status_code == 200 and retried.json()["id"] == transmission["id"]

    # 5. status and history
    statuses = gateway.get("/api/v1/survey-statuses", headers=manager).json()
    [line] = [r for r in statuses["items"] if r["id"] == sid]
    assert line["status_label"] == "déposée" and line["last_sent_at"]
    assert statuses["label"].startswith("Page 1 sur 1 (")
    second = transmit(gateway, manager, sid, fill_form(form, lambda *cell: 3, contact))
    assert second.status_code == 201 and second.json()["number"] == 2
    page = gateway.get(f"/api/v1/surveys/{sid}", headers=manager).json()
    assert [(t["number"], t["submitter_name"]) for t in page["transmissions"]] == [
        (1, "MARTIN Claire"),
        (2, "MARTIN Claire"),
    ]
    assert page["transmissions"][0]["download_url"].endswith(
        f"/surveys/{sid}/transmissions/{transmission['id']}/file"
    )
    again = gateway.get(page["transmissions"][0]["download_url"], headers=user)  # Téléchargement
    assert again.status_code == 200 and again.content == filled
    back = transmit(gateway, manager, sid, filled)  # the first file again: the latest now
    assert back.status_code == 201 and back.json()["number"] == 3
    values = gateway.get(
        f"/api/v1/surveys/{sid}/transmissions/{transmission['id']}/values", headers=manager
    ).json()["values"]
    assert len(values["lines"]) == 4 and values["totals"]["charges"] == values["sums"]["charges"]
    sent_at = dt.datetime.fromisoformat(line["last_sent_at"])
    today = sent_at.astimezone(ZoneInfo("Europe/Paris")).date().isoformat()
    filtered = gateway.get(f"/api/v1/surveys?sent_from={today}&sent_to={today}", headers=manager)
    assert [r["id"] for r in filtered.json()["items"]] == [sid]
    assert gateway.get("/api/v1/surveys?sent_to=2000-01-01", headers=manager).json()["items"] == []

    # 6. « Pièces à fournir »: add, replace, export, delete
    added = gateway.post(
        f"/api/v1/surveys/{sid}/attachments",
        headers=user,
        files={"file": ("PJ Numéro 1.pdf", PDF, "application/pdf")},
    )
    assert added.status_code == 201, added.text
    attachment = added.json()
    renamed_exe = gateway.post(
        f"/api/v1/surveys/{sid}/attachments",
        headers=user,
        files={"file": ("facture.pdf", b"MZ\x90\x00 an executable", "application/pdf")},
    )
    assert renamed_exe.status_code == 422 and renamed_exe.json()["code"] == "files.type_not_allowed"
    replaced = gateway.put(
        f"/api/v1/surveys/{sid}/attachments/{attachment['id']}",
        headers=user,
        files={"file": ("PJ Numéro 2.png", PNG, "image/png")},
    )
    assert replaced.status_code == 200 and replaced.json()["name"] == "PJ Numéro 2.png"
    exported = gateway.get(replaced.json()["download_url"], headers=manager)  # « Exporter »
    assert exported.status_code == 200 and exported.content == PNG
    listed = gateway.get(f"/api/v1/surveys/{sid}/attachments", headers=manager).json()["items"]
    assert [a["name"] for a in listed] == ["PJ Numéro 2.png"]
    assert gateway.delete(f"/api/v1/surveys/{sid}/attachments/{attachment['id']}", headers=user).ok
    assert gateway.get(f"/api/v1/surveys/{sid}/attachments", headers=user).json()["items"] == []

    # 7. the agency: statuses, blocking, exports
    everyone = gateway.get(
        f"/api/v1/survey-statuses?campaign_id={campaign['id']}&per_page=200", headers=agency
    ).json()
    assert sid in [r["id"] for r in everyone["items"]]
    assert everyone["total"] >= 1 and everyone["pages"] >= 1
    assert gateway.post(f"/api/v1/surveys/{sid}/block", headers=agency).json()["blocked"] is True
    blocked = gateway.get(
        f"/api/v1/survey-statuses?campaign_id={campaign['id']}&blocked=true", headers=agency
    ).json()
    assert [r["id"] for r in blocked["items"]] == [sid]
    while_blocked = transmit(gateway, manager, sid, filled)
    assert while_blocked.status_code == 409 and while_blocked.json()["code"] == "survey.blocked"
    assert gateway.post(f"/api/v1/surveys/{sid}/unblock", headers=agency).json()["blocked"] is False

    export = gateway.get(
        f"/api/v1/survey-campaigns/{campaign['id']}/export?format=csv", headers=agency
    )
    assert export.status_code == 200 and export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig")), delimiter=";"))
    mine = [r for r in rows if r[1] == "CFA REGIONAL DU BATIMENT FICTIF"]
    assert len(mine) == 4 and mine[0][7] == "déposée"
    assert mine[0][11].startswith("'=HYPERLINK")  # neutralised
    as_xlsx = gateway.get(f"/api/v1/survey-campaigns/{campaign['id']}/export", headers=agency)
    assert as_xlsx.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content)).active
    contacts = [r[11] for r in sheet.iter_rows(min_row=2, values_only=True) if r[11]]
    assert contacts and all(not str(c).startswith("=") for c in contacts)
    assert gateway.get("/api/v1/survey-campaigns", headers=manager).status_code == 403


# --- hostile uploads: one organisation, one ready survey, shared by the cases


def rezip(data: bytes, change=None, add=()) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            content = source.read(name)
            content = change(name, content) if change else content
            if content is not None:
                target.writestr(name, content)
        for name, content in add:
            target.writestr(name, content)
    return out.getvalue()


def unlocked(content: bytes, edit) -> bytes:
    wb = openpyxl.load_workbook(io.BytesIO(content))
    for ws in wb.worksheets:
        ws.protection.sheet = False
    edit(wb)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def far_cell(name, content):
    if name == "xl/worksheets/sheet3.xml":
        return content.replace(
            b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'
        )
    return content


def entity_bomb(name, content):
    if name == "xl/workbook.xml":
        return content.replace(
            b"<workbook",
            b'<!DOCTYPE w [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><workbook',
            1,
        )
    return content


def zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", b"<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", b" " * (20 * 1024 * 1024))
    return out.getvalue()


def tampered_signature(wb):
    wb["meta"]["B8"] = "0" * 64


def edited_lock(wb):
    wb["Identité"]["B5"] = "UN AUTRE ORGANISME"


@pytest.fixture(scope="module")
def hostile(system):
    """An organisation with a ready survey, its form, and another
    organisation's form and another survey's form of the same organisation."""
    with GatewaySession(system.gateway_url) as gateway:
        mailbox = Mailbox(system.mail_api_url)
        unique = uuid.uuid4().hex[:8]
        agency = sign_in(gateway, system.admin["email"], system.admin["password"])
        first = create_campaign(gateway, agency, f"Enquête hostile {unique}")
        other = create_campaign(gateway, agency, f"Autre enquête {unique}")
        manager, _org = manager_of(gateway, mailbox, agency, f"h.{unique}@example.org", SIRET_B)
        stranger, _ = manager_of(gateway, mailbox, agency, f"s.{unique}@example.org", SIRET_C)
        sid = survey_of(gateway, manager, first["id"])["id"]
        other_sid = survey_of(gateway, manager, other["id"])["id"]
        stranger_sid = survey_of(gateway, stranger, first["id"])["id"]
        for headers, survey_id in ((manager, sid), (manager, other_sid), (stranger, stranger_sid)):
            make_ready(gateway, headers, survey_id, GUIDE_LIST)
        form = download_form(gateway, manager, sid)
        working = gateway.get(f"/api/v1/surveys/{sid}/form/working-copy", headers=manager).content
        yield {
            "manager": manager,
            "stranger": stranger,
            "agency": agency,
            "sid": sid,
            "other_sid": other_sid,
            "stranger_sid": stranger_sid,
            "form": form,
            "filled": fill_form(form),
            "working": fill_form(working),
            "other_survey": fill_form(download_form(gateway, manager, other_sid)),
            "other_org": fill_form(download_form(gateway, stranger, stranger_sid)),
        }


HOSTILE = [
    ("empty", lambda h: b"", "files.empty"),
    ("renamed-pdf", lambda h: PDF, "files.type_not_allowed"),
    ("truncated-zip", lambda h: h["filled"][: len(h["filled"]) // 2], "files.xlsx.corrupt"),
    ("zip-bomb", lambda h: zip_bomb(), "files.xlsx.zip_bomb"),
    ("entity-bomb", lambda h: rezip(h["filled"], entity_bomb), "files.xlsx.xml_entities"),
    (
        "macro",
        lambda h: rezip(h["filled"], add=[("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0")]),
        "files.xlsx.macro",
    ),
    (
        "external-link",
        lambda h: rezip(
            h["filled"], add=[("xl/externalLinks/externalLink1.xml", b"<externalLink/>")]
        ),
        "files.xlsx.external_link",
    ),
    (
        "cell-at-XFD1048576",
        lambda h: rezip(h["filled"], far_cell),
        ("files.xlsx.too_many_rows", "files.xlsx.too_many_columns"),
    ),
    (
        "formula-in-input",
        lambda h: fill_form(h["form"], overrides={"Charges!E5": "=1+1"}),
        "survey.form_invalid",
    ),
    (
        "negative-amount",
        lambda h: fill_form(h["form"], overrides={"Charges!E5": -1}),
        "survey.form_invalid",
    ),
    ("another-organisation", lambda h: h["other_org"], "survey.form_other_organisation"),
    ("another-survey", lambda h: h["other_survey"], "survey.form_other_survey"),
    ("working-copy", lambda h: h["working"], "survey.form_working_copy"),
    (
        "tampered-signature",
        lambda h: unlocked(h["filled"], tampered_signature),
        "survey.form_signature_invalid",
    ),
    (
        "locked-cell-edited",
        lambda h: unlocked(h["filled"], edited_lock),
        "survey.form_structure_changed",
    ),
    (
        "plain-workbook",
        lambda h: workbook_bytes({"Feuil1": [["Charges", 1]]}),
        "survey.form_not_preformatted",
    ),
]


@pytest.mark.parametrize(
    "build, code", [(b, c) for _n, b, c in HOSTILE], ids=[n for n, *_ in HOSTILE]
)
def test_a_hostile_upload_gets_a_clear_4xx_and_changes_nothing(gateway, hostile, build, code):
    response = transmit(gateway, hostile["manager"], hostile["sid"], build(hostile))
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["code"] in ((code,) if isinstance(code, str) else code), body
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert body["title"] and body["title"][0].isupper()  # a French sentence for people
    page = gateway.get(f"/api/v1/surveys/{hostile['sid']}", headers=hostile["manager"]).json()
    assert page["transmissions"] == [] and page["status_label"] == "téléchargée"


def test_every_problem_of_a_form_is_listed_with_its_cell(gateway, hostile):
    bad = fill_form(hostile["form"], overrides={"Charges!E5": -5, "Produits!F6": "beaucoup"})
    response = transmit(gateway, hostile["manager"], hostile["sid"], bad)
    body = response.json()
    assert response.status_code == 422 and body["code"] == "survey.form_invalid"
    assert (
        "Charges!E5 : montant négatif : les montants sont positifs ou nuls."
        in body["details"]["problems"]
    )
    assert "Produits!F6" in body["errors"]
    assert "Identité!B24" in body["errors"] and "Identité!B25" in body["errors"]


def test_transmission_windows_are_enforced(gateway, hostile, unique):
    agency, manager = hostile["agency"], hostile["manager"]
    closed = create_campaign(
        gateway, agency, f"Close {unique}", online=-30, opens=-20, due=-5, closes=-1
    )
    later = create_campaign(
        gateway, agency, f"Plus tard {unique}", online=-1, opens=10, due=20, closes=30
    )
    for campaign, code in ((closed, "survey.closed"), (later, "survey.transmission_not_open")):
        sid = survey_of(gateway, manager, campaign["id"])["id"]
        response = transmit(gateway, manager, sid, hostile["filled"])
        assert response.status_code == 409 and response.json()["code"] == code


def test_another_organisation_gets_404_on_everything(gateway, hostile):
    sid, stranger = hostile["sid"], hostile["stranger"]
    upload = {"file": ("a.xlsx", hostile["filled"], XLSX)}
    for method, path, kwargs in (
        ("get", f"/api/v1/surveys/{sid}", {}),
        ("get", f"/api/v1/surveys/{sid}/required-data", {}),
        ("put", f"/api/v1/surveys/{sid}/required-data", {"json": {"establishments_count": 1}}),
        ("post", f"/api/v1/surveys/{sid}/certifications", {"json": {"code": "46T31203"}}),
        ("post", f"/api/v1/surveys/{sid}/certifications/import", {"files": upload}),
        ("get", f"/api/v1/surveys/{sid}/certifications/file", {}),
        ("get", f"/api/v1/surveys/{sid}/form", {}),
        ("get", f"/api/v1/surveys/{sid}/form/working-copy", {}),
        ("get", f"/api/v1/surveys/{sid}/form/notice", {}),
        ("post", f"/api/v1/surveys/{sid}/transmissions", {"files": upload}),
        ("get", f"/api/v1/surveys/{sid}/transmissions", {}),
        ("get", f"/api/v1/surveys/{sid}/attachments", {}),
        ("post", f"/api/v1/surveys/{sid}/attachments", {"files": {"file": ("a.pdf", PDF)}}),
    ):
        response = getattr(gateway, method)(path, headers=stranger, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "survey.not_found"
    mine = gateway.get("/api/v1/surveys", headers=stranger).json()["items"]
    assert sid not in [r["id"] for r in mine]


def test_another_organisation_gets_404_on_every_object_of_a_survey(gateway, hostile):
    """A transmission, a certification and an attachment of the first
    organisation, by their real ids: the stranger learns nothing of them."""
    manager, stranger, sid = hostile["manager"], hostile["stranger"], hostile["other_sid"]
    sent = transmit(gateway, manager, sid, hostile["other_survey"])
    assert sent.status_code in (200, 201), sent.text
    tid = sent.json()["id"]
    [cert, *_] = gateway.get(f"/api/v1/surveys/{sid}/required-data", headers=manager).json()[
        "certifications"
    ]
    added = gateway.post(
        f"/api/v1/surveys/{sid}/attachments", headers=manager, files={"file": ("PJ.pdf", PDF)}
    )
    assert added.status_code == 201, added.text
    aid = added.json()["id"]
    for method, path, kwargs in (
        ("get", f"/transmissions/{tid}/file", {}),
        ("get", f"/transmissions/{tid}/values", {}),
        ("patch", f"/certifications/{cert['id']}", {"json": {"title": "PIRATE"}}),
        ("delete", f"/certifications/{cert['id']}", {}),
        ("get", f"/attachments/{aid}/file", {}),
        ("put", f"/attachments/{aid}", {"files": {"file": ("b.pdf", PDF)}}),
        ("delete", f"/attachments/{aid}", {}),
    ):
        url = f"/api/v1/surveys/{sid}{path}"
        response = getattr(gateway, method)(url, headers=stranger, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "survey.not_found"
    for path in (f"/api/v1/surveys/{sid}/block", f"/api/v1/surveys/{sid}/unblock"):
        assert gateway.post(path, headers=stranger).status_code == 403
    # a NUL byte (PostgreSQL refuses it in text) is a malformed request, refused
    # by the gateway before any service sees it (the services also answer 404/422)
    for path in (
        "/api/v1/surveys/a%00b",
        f"/api/v1/surveys/{sid}/transmissions/%00/file",
        "/api/v1/survey-statuses?q=%00",
    ):
        refused = gateway.get(path, headers=hostile["agency"] if "statuses" in path else manager)
        assert refused.status_code == 400, path
        assert refused.json()["code"] == "request.malformed"
    # nothing changed
    assert gateway.get(f"/api/v1/surveys/{sid}/attachments/{aid}/file", headers=manager).ok
    again = gateway.get(f"/api/v1/surveys/{sid}/required-data", headers=manager).json()
    assert again["certifications"][0] == cert


def test_the_agency_follows_every_organisation_aimed_at_even_one_never_signed_in(
    gateway, mailbox, admin, unique
):
    agency = sign_in(gateway, admin["email"], admin["password"])
    register_confirm_validate(
        gateway, mailbox, agency, f"og.{unique}@example.org", SIRET_SILENT, account_type="OG"
    )
    for_og = create_campaign(gateway, agency, f"Enquête OG {unique}", target="OG")
    for_ofa = create_campaign(gateway, agency, f"Enquête OFA {unique}", target="OFA")
    name = "INSTITUT DES METIERS DE BOUCHE DE L'EXEMPLE"

    def organisations(campaign):
        rows = gateway.get(
            f"/api/v1/survey-statuses?campaign_id={campaign['id']}&per_page=200", headers=agency
        ).json()["items"]
        return {r["organisation"]: r["status_label"] for r in rows}

    # identity.user_validated reaches the survey service asynchronously
    deadline = time.monotonic() + 15
    while name not in organisations(for_og) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert organisations(for_og)[name] == "non téléchargée"
    assert name not in organisations(for_ofa)
    export = gateway.get(
        f"/api/v1/survey-campaigns/{for_og['id']}/export?format=csv", headers=agency
    )
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig")), delimiter=";"))
    assert [r[7] for r in rows if r[1] == name] == ["non téléchargée"]


def test_a_cfa_managed_by_an_og_sees_its_organisme_parent(gateway, mailbox, admin, unique):
    """« Organisme parent »: the OG's name on the CFA's own line, at once
    (not only once the agency's copy of the organisations was refreshed)."""
    agency = sign_in(gateway, admin["email"], admin["password"])
    campaign = create_campaign(gateway, agency, f"Enquête parent {unique}")
    og, og_id = manager_of(
        gateway, mailbox, agency, f"og.{unique}@example.org", "35600000018723", account_type="OG"
    )
    cfa, cfa_id = manager_of(
        gateway, mailbox, agency, f"cfa.{unique}@example.org", "40300920200017"
    )
    assert survey_of(gateway, cfa, campaign["id"])["parent"] in (None, "")
    linked = gateway.put(
        f"/api/v1/organisations/{cfa_id}/parent", headers=agency, json={"parent_id": og_id}
    )
    assert linked.status_code == 200, linked.text
    og_name = gateway.get("/api/v1/me", headers=og).json()["organisation"]["name"]
    assert survey_of(gateway, cfa, campaign["id"])["parent"] == og_name

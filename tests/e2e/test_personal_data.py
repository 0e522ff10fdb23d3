"""Issue 11, personal data (RGPD), on the running system: the retention
jobs run on a clock moved forward (a system caller's ``run_retention(now)``)
purge expired invitations, anonymise old deactivated accounts and delete a
campaign's transmitted files once its retention is over; the agency exports
everything about a person (zip: JSON + files) and erases it; the audit
trail's hash chain stays intact throughout (``python -m identity.audit_check``).

The retention runs act on the whole e2e database: they only touch data
older (on the moved clock) than any test needs."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.survey.tests.support import fill_form, workbook_bytes
from tests.e2e.journeys import (
    CERTIFICATION_HEADER,
    GUIDE_CERTIFICATIONS,
    create_campaign,
    download_form,
    follow_form_link,
    make_ready,
    registration,
    sign_in,
    survey_of,
    transmit,
)

ROOT = Path(__file__).resolve().parents[2]
SIRET = "40300920200033"  # a SIRENE stand-in establishment no other test uses
SYSTEM_CALLER = {"user_id": "e2e-operations", "roles": ["system"]}


def system_rpc(system, service: str, method: str, *args):
    """A call as the system caller, as an operator's tool would make it."""
    config = {"AMQP_URI": system.config.amqp_uri}
    context = {"caller": json.dumps(SYSTEM_CALLER)}
    with ClusterRpcProxy(config, context_data=context, timeout=60) as rpc:
        return getattr(getattr(rpc, service), method)(*args)


def audit_check(e2e_databases) -> subprocess.CompletedProcess:
    env = dict(os.environ, IDENTITY_DB_URL=e2e_databases["IDENTITY_DB_URL"])
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("libs/kit", "services/identity"))
    return subprocess.run(
        [sys.executable, "-m", "identity.audit_check"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def a_pdf() -> bytes:
    """A well-formed one-page PDF (files checks PDFs before storing them)."""
    import pikepdf

    document, out = pikepdf.new(), io.BytesIO()
    document.add_blank_page()
    document.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def organisation(system):
    """A validated organisation of this module, registered with a document:
    (manager headers, org id, manager e-mail)."""
    from tests.e2e.conftest import GatewaySession, Mailbox

    email = f"rgpd.{os.urandom(4).hex()}@example.org"
    with GatewaySession(system.gateway_url) as gateway:
        agency = sign_in(gateway, system.admin["email"], system.admin["password"])
        registered = gateway.post(
            "/api/v1/registrations",
            data=registration(email, SIRET),
            files={"habilitation": ("habilitation.pdf", a_pdf(), "application/pdf")},
        )
        assert registered.status_code == 202, registered.text
        link = Mailbox(system.mail_api_url).link(
            email, r"https?://\S+/inscription/confirmer\?token=\S+", subject="Confirmez"
        )
        assert follow_form_link(gateway, link).status_code == 200
        pending = gateway.get("/api/v1/registrations", headers=agency).json()["items"]
        [row] = [r for r in pending if r["email"] == email]
        validated = gateway.post(f"/api/v1/users/{row['id']}/validate", headers=agency)
        assert validated.status_code == 200, validated.text
        manager = sign_in(gateway, email)
    return manager, row["organisation"]["id"], email


def users_of(gateway, manager) -> dict:
    response = gateway.get("/api/v1/users", headers=manager)
    assert response.status_code == 200, response.text
    return {u["id"]: u for u in response.json()["items"]}


def test_retention_on_a_clock_moved_forward_purges_and_anonymises(
    system, gateway, admin, organisation, e2e_databases, unique
):
    manager, org_id, _email = organisation
    invited = gateway.post(
        f"/api/v1/organisations/{org_id}/users", headers=manager,
        json={"last_name": "Invite", "first_name": "Ines", "email": f"inv.{unique}@example.org"},
    ).json()  # fmt: skip
    leaving = gateway.post(
        f"/api/v1/organisations/{org_id}/users", headers=manager,
        json={"last_name": "Depart", "first_name": "Denis", "email": f"dep.{unique}@example.org",
              "phone": "01 02 03 04 05"},
    ).json()  # fmt: skip
    assert gateway.post(f"/api/v1/users/{leaving['id']}/deactivate", headers=manager).ok

    # today: nothing is due yet
    now = dt.datetime.now(dt.UTC)
    counts = system_rpc(system, "identity", "run_retention", now.isoformat())
    users = users_of(gateway, manager)
    assert invited["id"] in users and users[leaving["id"]]["email"] == f"dep.{unique}@example.org"

    # notify holds the invitation e-mail sent to the address (sent at once)
    address = [f"dep.{unique}@example.org"]
    deadline = time.monotonic() + 10
    while not system_rpc(system, "notify", "export_person", address)["emails"]:
        assert time.monotonic() < deadline, "the invitation e-mail never reached notify"
        time.sleep(0.2)

    # 13 months later: the invitation has expired, the deactivation is old
    later = (now + dt.timedelta(days=400)).isoformat()
    counts = system_rpc(system, "identity", "run_retention", later)
    assert counts["invitations_purged"] >= 1 and counts["accounts_anonymised"] >= 1
    # identity.person_anonymised reaches notify: the e-mails to that address go
    deadline = time.monotonic() + 10
    while system_rpc(system, "notify", "export_person", address)["emails"]:
        assert time.monotonic() < deadline, "notify kept the e-mails of an anonymised person"
        time.sleep(0.2)
    users = users_of(gateway, manager)
    assert invited["id"] not in users  # its quota slot is free again
    gone = users[leaving["id"]]
    assert gone["email"].endswith(".invalid") and gone["last_name"] == "Anonyme"
    assert gone["phone"] is None
    assert f"dep.{unique}" not in json.dumps(users)

    # the agency's history keeps the account's id, and the chain holds
    agency = sign_in(gateway, admin["email"], admin["password"])
    history = gateway.get(f"/api/v1/organisations/{org_id}/history", headers=agency).json()
    actions = {(h["action"], h["subject_user_id"]) for h in history["items"]}
    assert ("anonymised", leaving["id"]) in actions
    assert ("invitation_expired", invited["id"]) in actions
    checked = audit_check(e2e_databases)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "audit chain intact" in checked.stdout


def test_transmitted_files_are_purged_once_the_campaign_retention_is_over(
    system, gateway, admin, organisation, unique
):
    manager, _org_id, _email = organisation
    agency = sign_in(gateway, admin["email"], admin["password"])
    campaign = create_campaign(gateway, agency, f"Enquête RGPD {unique}", closes=60)
    sid = survey_of(gateway, manager, campaign["id"])["id"]
    make_ready(gateway, manager, sid, workbook_bytes(
        {"Certifications": [CERTIFICATION_HEADER, *GUIDE_CERTIFICATIONS]}
    ))  # fmt: skip
    sent = transmit(gateway, manager, sid, fill_form(download_form(gateway, manager, sid)))
    assert sent.status_code == 201, sent.text
    url = f"/api/v1/surveys/{sid}/transmissions/{sent.json()['id']}/file"
    assert gateway.get(url, headers=manager).status_code == 200

    closes = dt.date.fromisoformat(campaign["closes_on"])
    within = dt.datetime.combine(closes.replace(year=closes.year + 5), dt.time(12), dt.UTC)
    system_rpc(system, "survey", "run_retention", within.isoformat())
    assert gateway.get(url, headers=manager).status_code == 200  # kept 5 years after closing

    after = within + dt.timedelta(days=1)
    counts = system_rpc(system, "survey", "run_retention", after.isoformat())
    assert counts["transmissions_purged"] >= 1
    page = gateway.get(f"/api/v1/surveys/{sid}", headers=manager).json()
    assert page["transmissions"] == []
    assert gateway.get(url, headers=manager).status_code == 404


def test_the_agency_exports_a_persons_data_then_erases_it(
    gateway, mailbox, admin, organisation, e2e_databases
):
    _manager, org_id, email = organisation
    manager = sign_in(gateway, email)  # a session of today (the retention test ended others)
    agency = sign_in(gateway, admin["email"], admin["password"])
    found = gateway.get("/api/v1/people", params={"query": email}, headers=agency).json()["items"]
    [person] = [p for p in found if p["email"] == email]

    # export: a zip with the JSON and the registration document
    exported = gateway.get(f"/api/v1/people/{person['id']}/personal-data.zip", headers=agency)
    assert exported.status_code == 200, exported.text
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    data = json.loads(archive.read("donnees-personnelles.json"))
    assert data["identity"]["account"]["email"] == email
    assert data["identity"]["sessions"], "the manager's sign-ins"
    assert {"registered", "validated"} <= {e["action"] for e in data["identity"]["audit"]}
    assert any("Confirmez" in m["subject"] for m in data["notify"]["emails"])
    [document] = [f for f in data["files"] if f["source"] == "registration"]
    assert document["in_zip"] and archive.read(document["path"]).startswith(b"%PDF")

    # erasure: the page asks for a confirmation, then the API erases
    page = gateway.get(f"/agence/donnees-personnelles/{person['id']}", headers=agency)
    assert "Effacer les données" in page.text
    erased = gateway.post(
        f"/api/v1/people/{person['id']}/erasure", headers=agency, json={"reason": "Demande 42"}
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["identity"]["documents_deleted"] == 1
    assert erased.json()["notify"]["emails_erased"] >= 1

    after = gateway.get(f"/api/v1/people/{person['id']}/personal-data", headers=agency).json()
    assert after["identity"]["account"]["email"].endswith(".invalid")
    assert after["notify"]["emails"] == []
    assert email not in json.dumps(after)
    assert (
        gateway.post(
            "/api/v1/sessions", json={"email": email, "password": "correct horse 42"}
        ).status_code
        == 401
    )
    assert gateway.get("/api/v1/me", headers=manager).status_code == 401  # sessions revoked
    history = gateway.get(f"/api/v1/organisations/{org_id}/history", headers=agency).json()
    actions = [h["action"] for h in history["items"] if h["subject_user_id"] == person["id"]]
    assert "personal_data_exported" in actions and "personal_data_erased" in actions
    checked = audit_check(e2e_databases)
    assert checked.returncode == 0, checked.stdout + checked.stderr

"""The hostile-upload corpus (files.corpus) sent to every upload slot through
the real gateway: registration documents (API), carte request annexes, the
carte catalogue import, survey attachments, the certification list and the
survey transmission. Each case gets the same code whatever the slot, and
nothing is stored: the files database has as many records, blobs and outbox
rows after as before. The malware cases run against the test clamd
(``e2e_clamd``), EICAR included inside a transmitted form's text cell.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from files import corpus
from tests.e2e.conftest import require_clamd
from tests.e2e.journeys import (
    create_campaign,
    manager_of,
    registration,
    sign_in,
    survey_of,
)
from tests.e2e.test_carte_journey import CATALOGUE, establishment, full_form

pytestmark = pytest.mark.e2e

SIRET = "52193847200011"  # its own organisation (deploy/sirene_data.json)
HOSTILE = corpus.hostile()


@pytest.fixture(scope="module")
def files_db(e2e_databases):
    url = e2e_databases["FILES_DB_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def stored_counts(engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return tuple(
            connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("files", "blobs", "outbox")
        )


def carte_catalogue(gateway, agency) -> dict:
    """As test_carte_journey's ``carte`` fixture: variant ids by label."""
    import datetime as dt

    current = gateway.get("/api/v1/carte/campaigns/current", headers=agency).json()
    if not current["campaign"] or current["campaign"]["state"] != "open":
        today = dt.date.today()
        gateway.post(
            "/api/v1/carte/campaigns",
            headers=agency,
            json={
                "school_year": today.year + 1,
                "opens_on": (today - dt.timedelta(days=1)).isoformat(),
                "closes_on": (today + dt.timedelta(days=60)).isoformat(),
            },
        )
    imported = gateway.post(
        "/api/v1/carte/catalogue/imports",
        headers=agency,
        files={"file": ("catalogue.csv", CATALOGUE, "text/csv")},
    )
    assert imported.status_code == 200, imported.text
    tree = gateway.get("/api/v1/carte/catalogue", headers=agency).json()
    return {
        v["label"]: v["id"]
        for level in tree["levels"]
        for diploma in level["diplomas"]
        for v in diploma["variants"]
    }


@pytest.fixture(scope="module")
def slots(system, e2e_clamd):
    """{slot: send(name, bytes) -> response} for every upload a user can reach."""
    from tests.e2e.conftest import GatewaySession, Mailbox

    gateway = GatewaySession(system.gateway_url)
    mailbox = Mailbox(system.mail_api_url)
    admin = system.admin  # (the admin fixture is per test)
    agency = sign_in(gateway, admin["email"], admin["password"])
    unique = "policy"
    campaign = create_campaign(gateway, agency, f"Enquête dépôts {unique}")
    manager, _org = manager_of(gateway, mailbox, agency, f"depots.{unique}@example.org", SIRET)
    sid = survey_of(gateway, manager, campaign["id"])["id"]
    # carte: an open campaign, the catalogue, a request of an establishment
    variants = carte_catalogue(gateway, agency)
    uai, carte_headers = establishment(gateway, agency, unique)
    created = gateway.post(
        "/api/v1/carte/requests",
        headers=carte_headers,
        json=full_form(next(iter(variants.values())), uai),
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]

    anonymous = GatewaySession(system.gateway_url)  # no session cookie

    def registration_document(name, data):
        form = registration(f"inscription.{len(data)}.{name}@example.org", "91129745500014")
        return anonymous.post(
            "/api/v1/registrations",
            data=form,
            files={"habilitation": (name + ".pdf", data, "application/pdf")},
        )

    def post(path, headers, name, data, ext):
        return gateway.post(
            path, headers=headers, files={"file": (f"{name}.{ext}", data, "text/plain")}
        )

    return {
        "registration": registration_document,
        "annex": lambda n, d: post(
            f"/api/v1/carte/requests/{request_id}/annexes", carte_headers, n, d, "pdf"
        ),
        "catalogue": lambda n, d: post("/api/v1/carte/catalogue/imports", agency, n, d, "xlsx"),
        "attachment": lambda n, d: post(f"/api/v1/surveys/{sid}/attachments", manager, n, d, "pdf"),
        "certification_list": lambda n, d: post(
            f"/api/v1/surveys/{sid}/certifications/import", manager, n, d, "xlsx"
        ),
        "transmission": lambda n, d: post(
            f"/api/v1/surveys/{sid}/transmissions", manager, n, d, "xlsx"
        ),
    }


PDF_SLOTS = {"registration", "annex", "attachment"}


@pytest.mark.parametrize("case", sorted(corpus.EXPECTED))
def test_a_hostile_upload_is_refused_with_one_code_in_every_slot_and_nothing_is_stored(
    slots, files_db, e2e_clamd, case
):
    if case in corpus.NEEDS_SCANNER:
        require_clamd(e2e_clamd)
    for slot, send in slots.items():
        if corpus.ACCEPTED_BY.get(case) == "pdf" and slot in PDF_SLOTS:
            continue  # a clean PDF is a fine document there
        before = stored_counts(files_db)
        response = send(case, HOSTILE[case])
        assert 400 <= response.status_code < 500, (slot, response.status_code, response.text)
        assert response.json()["code"] == corpus.EXPECTED[case], (slot, response.text)
        assert stored_counts(files_db) == before, f"{slot}: something was stored for {case}"

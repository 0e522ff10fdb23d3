"""Section II of the Karoussel guide, use case by use case, on an in-memory
database with fakes of identity and files."""

import base64
import datetime as dt
import io
import json

import openpyxl
import pytest
from sqlalchemy import select

from kit.context import Caller
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from services.survey.tests.support import (
    AGENT,
    GUIDE_ROWS,
    HEADER,
    MANAGER_A,
    MANAGER_B,
    NOW,
    ORGS,
    SECRET,
    USER_A,
    FakeFiles,
    FakeIdentity,
    Text,
    fill_form,
    workbook_bytes,
)
from survey import use_cases as uc
from survey.models import Outbox, Survey

CAMPAIGN = {
    "name": "Enquête CFA",
    "details": "Comptabilité analytique 2020",
    "form_type": "CFA",
    "direction": "DIRECTION_1",
    "online_on": "2021-03-23",
    "transmission_opens_on": "30/04/2021",
    "return_due_on": "2021-07-15",
    "closes_on": "2021-07-15",
    "target": "all",
}


def clock(at=NOW):
    return lambda: at


def events(session, event_type):
    return [
        r.payload for r in session.scalars(select(Outbox).where(Outbox.event_type == event_type))
    ]


@pytest.fixture
def campaign(session):
    return uc.create_campaign(session, AGENT, CAMPAIGN, now=clock())


def survey_of(session, caller, campaign_id=None):
    listing = uc.list_surveys(session, caller, FakeIdentity(caller), now=clock())
    [row] = [r for r in listing["items"] if campaign_id is None or r["campaign_id"] == campaign_id]
    return row


@pytest.fixture
def survey(session, campaign):
    return survey_of(session, MANAGER_A)


def import_list(session, files, survey_id, rows=GUIDE_ROWS, caller=MANAGER_A):
    stored = files.store(
        caller,
        "certification_list",
        "Liste-certifications.xlsx",
        workbook_bytes({"Certifications": [HEADER, *rows]}),
    )
    return uc.import_certifications(session, caller, survey_id, stored["id"], files, now=clock())


@pytest.fixture
def ready(session, files, survey):
    """« Données à renseigner » complete: 2 establishments, 3 trainings, the guide's list."""
    uc.save_required_data(
        session,
        MANAGER_A,
        survey["id"],
        {"establishments_count": 2, "trainings_count": 3},
        now=clock(),
    )
    import_list(session, files, survey["id"])
    return survey


def download(session, caller, survey_id, purpose="official", at=NOW):
    result = uc.generate_form(
        session, caller, survey_id, purpose, FakeIdentity(caller), SECRET, now=clock(at)
    )
    return base64.b64decode(result["content_b64"]), result


@pytest.fixture(params=["three calls", "survey.transmit"])
def files(request):
    """Every test with files runs twice: the form stored by files first, then
    submit_response (``prepare_upload`` as the pages do it), and the one call
    survey.transmit that the gateway makes."""
    fake = FakeFiles()
    fake.path = request.param
    return fake


def transmit(session, files, survey_id, content, caller=MANAGER_A, at=NOW, key=None):
    if getattr(files, "path", None) == "survey.transmit":
        return uc.transmit(
            session,
            caller,
            survey_id,
            {"name": "Compte.xlsx", "content_b64": base64.b64encode(content).decode()},
            files,
            FakeIdentity(caller),
            SECRET,
            now=clock(at),
            idempotency_key=key,
        )
    stored = files.store(caller, "survey_form", "Compte.xlsx", content)
    return uc.submit_response(
        session,
        caller,
        survey_id,
        stored["id"],
        files,
        FakeIdentity(caller),
        SECRET,
        now=clock(at),
        idempotency_key=key,
    )


# ---------------------------------------------------------------- campaigns


def test_the_agency_creates_a_campaign_with_every_problem_reported_at_once(session):
    with pytest.raises(InvalidInput) as caught:
        uc.create_campaign(
            session,
            AGENT,
            {
                "name": "",
                "online_on": "2021-05-01",
                "transmission_opens_on": "2021-04-01",
                "target": "CFA",
            },
            now=clock(),
        )
    errors = caught.value.details["fields"]
    assert caught.value.code == "survey.campaign_invalid"
    assert set(errors) == {"name", "target", "transmission_opens_on", "return_due_on", "closes_on"}
    assert "ne peut pas précéder" in errors["transmission_opens_on"][0]


def test_only_the_agency_manages_campaigns(session, campaign):
    with pytest.raises(Forbidden):
        uc.create_campaign(session, MANAGER_A, CAMPAIGN)
    with pytest.raises(Forbidden):
        uc.list_campaigns(session, MANAGER_A, FakeIdentity(MANAGER_A))
    with pytest.raises(Unauthenticated):
        uc.list_campaigns(session, Caller(), FakeIdentity(Caller()))
    assert uc.list_campaigns(session, AGENT, FakeIdentity(AGENT))[0]["name"] == "Enquête CFA"


def test_an_organisation_sees_campaigns_online_and_aimed_at_its_type(session, campaign):
    uc.create_campaign(session, AGENT, dict(CAMPAIGN, name="Pour les OG", target="OG"), now=clock())
    uc.create_campaign(
        session,
        AGENT,
        dict(
            CAMPAIGN, name="Plus tard", online_on="2021-06-01", transmission_opens_on="2021-06-01"
        ),
        now=clock(),
    )
    rows = uc.list_surveys(session, MANAGER_A, FakeIdentity(MANAGER_A), now=clock())["items"]
    assert [r["name"] for r in rows] == ["Enquête CFA"]
    row = rows[0]
    assert row["organisation"] == "CFA DES METIERS DE L'EXEMPLE"
    assert row["status"] == "not_downloaded" and row["status_label"] == "non téléchargée"
    assert row["form"] == "CFA - CFA" and row["direction"] == "DIRECTION_1"
    assert (row["online_on"], row["return_due_on"], row["closes_on"]) == (
        "2021-03-23",
        "2021-07-15",
        "2021-07-15",
    )
    assert row["last_sent_at"] is None and row["required_data_complete"] is False
    # listing twice creates nothing more
    uc.list_surveys(session, MANAGER_A, FakeIdentity(MANAGER_A), now=clock())
    assert len(session.scalars(select(Survey)).all()) == 1


def test_the_parent_organisation_is_shown_once_known(session, campaign):
    uc.list_statuses(
        session, AGENT, FakeIdentity(AGENT), now=clock()
    )  # the agency syncs every organisation
    row = survey_of(session, MANAGER_A)
    assert row["parent"] == "OGEC FORMATION DE L'EXEMPLE"


def test_the_agency_sees_every_validated_organisation_with_pagination(session, campaign):
    page = uc.list_statuses(session, AGENT, FakeIdentity(AGENT), {"per_page": 2}, now=clock())
    assert (page["total"], page["pages"], page["label"]) == (3, 2, "Page 1 sur 2 (3 lignes)")
    assert [r["number"] for r in page["items"]] == [1, 2]
    second = uc.list_statuses(
        session, AGENT, FakeIdentity(AGENT), {"per_page": 2, "page": 2}, now=clock()
    )
    assert [r["number"] for r in second["items"]] == [3]


def test_the_status_list_pages_as_in_the_guide(session, campaign):
    orgs = {f"org-{n}": dict(ORGS["org-b"], id=f"org-{n}", name=f"CFA {n:02d}") for n in range(95)}
    identity = FakeIdentity(AGENT, orgs)
    first = uc.list_statuses(session, AGENT, identity, now=clock())
    assert first["label"] == "Page 1 sur 2 (95 lignes)" and len(first["items"]) == 50
    last = uc.list_statuses(session, AGENT, identity, {"page": "2"}, now=clock())
    assert [r["number"] for r in last["items"]] == list(range(51, 96))
    assert last["label"] == "Page 2 sur 2 (95 lignes)"


@pytest.mark.parametrize(
    "filters",
    [
        {"page": "99999999999999999999999"},
        {"page": "0"},
        {"page": "1.5"},
        {"per_page": "1000"},
        {"blocked": "peut-être"},
        {"status": "perdue"},
        {"q": "x" * 101},
    ],
)
def test_malformed_status_filters_are_refused_with_the_field(session, campaign, filters):
    with pytest.raises(InvalidInput) as caught:
        uc.list_statuses(session, AGENT, FakeIdentity(AGENT), filters, now=clock())
    assert caught.value.code == "survey.filter_invalid"
    field = "page" if "per_page" in filters else next(iter(filters))
    assert set(caught.value.details["fields"]) == {field}


def test_blocking_filters_and_is_announced(session, campaign, survey):
    blocked = uc.set_blocked(session, AGENT, survey["id"], True, now=clock())
    assert blocked["blocked"] is True
    [announced] = events(session, "survey_blocked")
    assert announced["survey_id"] == survey["id"] and announced["at"] == NOW.isoformat()
    # the public facts partners receive (kit.events), never a person
    assert {"siret", "uai", "account_type", "campaign_name"} <= set(announced)
    assert announced["campaign_name"] and announced["siret"]
    uc.set_blocked(session, AGENT, survey["id"], True, now=clock())  # idempotent
    assert len(events(session, "survey_blocked")) == 1
    only = uc.list_statuses(session, AGENT, FakeIdentity(AGENT), {"blocked": "true"}, now=clock())
    assert [r["id"] for r in only["items"]] == [survey["id"]]
    others = uc.list_statuses(
        session, AGENT, FakeIdentity(AGENT), {"blocked": "false"}, now=clock()
    )
    assert survey["id"] not in [r["id"] for r in others["items"]]
    with pytest.raises(Forbidden):
        uc.set_blocked(session, MANAGER_A, survey["id"], False)


# ---------------------------------------------------------------- données à renseigner


def test_required_data_are_mandatory_positive_integers(session, survey):
    with pytest.raises(InvalidInput) as caught:
        uc.save_required_data(
            session,
            MANAGER_A,
            survey["id"],
            {"establishments_count": 0, "trainings_count": "trois"},
            now=clock(),
        )
    assert set(caught.value.details["fields"]) == {"establishments_count", "trainings_count"}
    saved = uc.save_required_data(
        session,
        USER_A,
        survey["id"],
        {"establishments_count": "2", "trainings_count": 3},
        now=clock(),
    )
    assert (saved["establishments_count"], saved["trainings_count"]) == (2, 3)
    assert saved["complete"] is False and saved["missing"] == ["la liste des certifications"]


def test_an_imported_list_fills_the_table_and_a_bad_one_changes_nothing(session, files, survey):
    result = import_list(session, files, survey["id"])
    assert result["message"] == "Les données ont bien été importées"
    assert [c["code"] for c in result["certifications"]] == ["10033101", "1022001", "1022103"]
    assert result["certifications_file"]["name"] == "Liste-certifications.xlsx"
    before = set(files.records)
    with pytest.raises(InvalidInput) as caught:
        import_list(session, files, survey["id"], rows=[["ABC", "X", "RNCPX1", "niveau9", "MC", 0]])
    error = caught.value
    assert error.code == "survey.certifications_invalid"
    assert error.details["count"] == 4
    assert error.details["problems"][0].startswith("Feuille « Certifications », ligne 2, colonne A")
    assert set(error.details["fields"]) == {
        "Certifications!A2",
        "Certifications!C2",
        "Certifications!D2",
        "Certifications!F2",
    }
    assert set(files.records) == before  # the refused upload was deleted
    after = uc.get_required_data(session, MANAGER_A, survey["id"], now=clock())
    assert [c["code"] for c in after["certifications"]] == ["10033101", "1022001", "1022103"]


def test_an_unreadable_list_is_refused(session, files, survey):
    stored = files.store(MANAGER_A, "certification_list", "liste.xlsx", b"%PDF-1.4 not a workbook")
    with pytest.raises(InvalidInput) as caught:
        uc.import_certifications(session, MANAGER_A, survey["id"], stored["id"], files, now=clock())
    assert caught.value.code == "survey.certifications_unreadable"


def test_rows_are_edited_one_by_one(session, files, ready):
    data = uc.get_required_data(session, MANAGER_A, ready["id"], now=clock())
    first = data["certifications"][0]["id"]
    edited = uc.update_certification(
        session, USER_A, ready["id"], first, {"rncp": "37098"}, now=clock()
    )
    assert edited["rncp"] == "RNCP37098" and edited["code"] == "10033101"
    with pytest.raises(InvalidInput) as caught:
        uc.update_certification(
            session, USER_A, ready["id"], first, {"establishments": 3}, now=clock()
        )
    assert (
        "plus que le nombre d'établissements total (2)"
        in caught.value.details["fields"]["establishments"][0]
    )
    added = uc.add_certification(
        session,
        MANAGER_A,
        ready["id"],
        {
            "code": "46T31203",
            "title": "BTS BANQUE",
            "rncp": "RNCP38362",
            "level": "niveau5",
            "type": "BTS",
            "establishments": 1,
        },
        now=clock(),
    )
    with pytest.raises(InvalidInput):
        uc.add_certification(session, MANAGER_A, ready["id"], dict(cert_fields(added)), now=clock())
    uc.delete_certification(session, MANAGER_A, ready["id"], added["id"], now=clock())
    with pytest.raises(NotFound):
        uc.delete_certification(session, MANAGER_A, ready["id"], added["id"], now=clock())


def cert_fields(row):
    return {k: v for k, v in row.items() if k != "id"}


def test_saving_the_whole_table_reports_every_row_problem(session, ready):
    with pytest.raises(InvalidInput) as caught:
        uc.save_required_data(
            session,
            MANAGER_A,
            ready["id"],
            {
                "establishments_count": 1,
                "trainings_count": 3,
                "certifications": [
                    {
                        "code": "1022001",
                        "title": "MC",
                        "rncp": "RNCP955",
                        "level": "niveau4",
                        "type": "MC",
                        "establishments": 2,
                    },
                    {"code": "X"},
                ],
            },
            now=clock(),
        )
    fields = caught.value.details["fields"]
    assert "certifications[0].establishments" in fields
    assert {"certifications[1].code", "certifications[1].title"} <= set(fields)


# ---------------------------------------------------------------- the form


def test_the_form_cannot_be_downloaded_before_the_required_data_are_complete(session, survey):
    with pytest.raises(Conflict) as caught:
        download(session, MANAGER_A, survey["id"])
    assert caught.value.code == "survey.required_data_incomplete"
    assert caught.value.message == (
        "Le téléchargement de l'enquête est bloqué tant que les données à renseigner ne sont "
        "pas complètes : renseignez le nombre d'établissements total, le nombre de formations "
        "total et la liste des certifications (« Données à renseigner »)."
    )
    assert caught.value.details["missing"] == [
        "le nombre d'établissements total",
        "le nombre de formations total",
        "la liste des certifications",
    ]


def test_a_form_beyond_its_line_limit_is_refused_with_a_clear_message(session, survey):
    fields = ("code", "title", "rncp", "level", "type", "establishments")
    row = dict(zip(fields, GUIDE_ROWS[0], strict=True), establishments=3_000)
    uc.save_required_data(
        session,
        MANAGER_A,
        survey["id"],
        {
            "establishments_count": 5_000,
            "trainings_count": 2,
            "certifications": [row, dict(row, code="46T31203")],
        },
        now=clock(),
    )
    with pytest.raises(Conflict) as caught:
        download(session, MANAGER_A, survey["id"])
    assert caught.value.code == "survey.form_too_large"
    assert caught.value.message.startswith(
        "Le formulaire compterait 6000 lignes (une par certification et par établissement"
    )
    with pytest.raises(InvalidInput) as caught:
        uc.save_required_data(
            session,
            MANAGER_A,
            survey["id"],
            {"establishments_count": 5_001, "trainings_count": 2},
            now=clock(),
        )
    assert "au plus 5000" in caught.value.details["fields"]["establishments_count"][0]


def test_the_first_download_sets_the_status_and_identical_downloads_share_a_version(session, ready):
    content, result = download(session, USER_A, ready["id"])
    assert result["name"] == "Enquête CFA - CFA DES METIERS DE L'EXEMPLE.xlsx"
    assert content.startswith(b"PK") and result["form_version"] == 1
    assert survey_of(session, MANAGER_A)["status_label"] == "téléchargée"
    assert events(session, "form_downloaded")[0]["form_version"] == 1
    assert download(session, MANAGER_A, ready["id"])[1]["form_version"] == 1
    working, result = download(session, MANAGER_A, ready["id"], "working")
    assert result["name"].startswith("Version de travail - ") and result["form_version"] == 0


def test_a_filled_form_is_transmitted_with_its_values_and_announced(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    result = transmit(session, files, ready["id"], fill_form(content))
    assert result["status"] == "recorded" and result["number"] == 1
    assert result["submitter_name"] == "DURAND Claire"
    assert result["submitter_email"] == "claire@cfa-a.example"
    page = uc.get_survey(session, MANAGER_A, ready["id"], now=clock())
    assert page["status_label"] == "déposée" and page["last_sent_at"] == NOW.isoformat()
    assert [t["number"] for t in page["transmissions"]] == [1]
    [event] = events(session, "response_submitted")
    assert event["transmission_id"] == result["id"] and "values" not in event
    assert event["size"] > 0 and event["campaign_name"] and event["siret"]
    assert event["account_type"] in ("OFA", "OG")
    values = uc.get_response_values(session, AGENT, ready["id"], result["id"], now=clock())[
        "values"
    ]
    assert len(values["lines"]) == 4 and values["form_version"] == 1


def test_a_transmission_with_the_submitter_of_the_token_asks_identity_nothing(session, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    files, identity = FakeFiles(), FakeIdentity(MANAGER_A)
    result = uc.transmit(
        session,
        MANAGER_A,
        ready["id"],
        {"name": "Compte.xlsx", "content_b64": base64.b64encode(fill_form(content)).decode()},
        files,
        identity,
        SECRET,
        now=clock(),
        submitter={"name": "DURAND Claire (jeton)", "email": "claire.jeton@cfa-a.example"},
    )
    assert result["status"] == "recorded"
    assert result["submitter_name"] == "DURAND Claire (jeton)"
    assert result["submitter_email"] == "claire.jeton@cfa-a.example"
    assert identity.calls == []
    # a malformed submitter is ignored: identity says who sends
    again = uc.transmit(
        session,
        MANAGER_A,
        ready["id"],
        {
            "name": "Compte.xlsx",
            "content_b64": base64.b64encode(fill_form(content, lambda s, r, c: 7)).decode(),
        },
        files,
        identity,
        SECRET,
        now=clock(),
        submitter={"name": "", "email": "pas-une-adresse"},
    )
    assert identity.calls == ["get_me"]
    assert (again["status"], again["submitter_name"]) == ("recorded", "DURAND Claire")


def test_retransmission_keeps_every_version_and_retries_are_idempotent(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    first = transmit(session, files, ready["id"], fill_form(content), key="essai-000001")
    again = transmit(session, files, ready["id"], fill_form(content), key="essai-000001")
    assert again["id"] == first["id"] and again["status"] == "already_recorded"
    later = NOW + dt.timedelta(days=1)
    second_bytes = fill_form(content, amount=lambda *a: 1)
    second = transmit(session, files, ready["id"], second_bytes, at=later)
    assert second["number"] == 2
    same_bytes = fill_form(content, amount=lambda *a: 2)
    third = transmit(session, files, ready["id"], same_bytes)
    assert transmit(session, files, ready["id"], same_bytes)["id"] == third["id"]
    assert [
        t["number"] for t in uc.list_transmissions(session, MANAGER_A, ready["id"], now=clock())
    ] == [1, 2, 3]
    assert len(events(session, "response_submitted")) == 3
    # going back to the second file: a fourth version, now the latest
    back = transmit(session, files, ready["id"], second_bytes)
    assert (back["number"], back["status"]) == (4, "recorded")
    values = uc.get_response_values(session, AGENT, ready["id"], back["id"], now=clock())
    assert values["values"]["lines"][0]["charges"]["locaux"] == "1.00"
    assert len(events(session, "response_submitted")) == 4


def test_enquetes_en_ligne_filters_on_the_last_sent_date(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    just_after_midnight = dt.datetime(2021, 5, 10, 22, 30, tzinfo=dt.UTC)  # 11/05 in Paris
    transmit(session, files, ready["id"], fill_form(content), at=just_after_midnight)

    def listed(**filters):
        rows = uc.list_surveys(session, MANAGER_A, FakeIdentity(MANAGER_A), filters, clock())
        return [r["id"] for r in rows["items"]]

    assert listed() == [ready["id"]]
    assert listed(sent_from="11/05/2021", sent_to="11/05/2021") == [ready["id"]]
    assert listed(sent_from="2021-05-12") == [] and listed(sent_to="2021-05-10") == []
    for filters, field in (
        ({"sent_from": "31/02/2021"}, "sent_from"),
        ({"sent_from": "2021-05-12", "sent_to": "2021-05-11"}, "sent_to"),
    ):
        with pytest.raises(InvalidInput) as caught:
            listed(**filters)
        assert caught.value.code == "survey.filter_invalid"
        assert list(caught.value.details["fields"]) == [field]


def test_one_call_stores_once_and_a_known_key_stores_nothing(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    filled = fill_form(content)
    upload = {"name": "Compte cfa.xlsx", "content_b64": base64.b64encode(filled).decode()}

    def send(caller=MANAGER_A, key="cle-00000001", sent=upload):
        return uc.transmit(
            session,
            caller,
            ready["id"],
            sent,
            files,
            FakeIdentity(caller),
            SECRET,
            now=clock(),
            idempotency_key=key,
        )

    before = set(files.records)
    with pytest.raises(InvalidInput) as caught:  # the name first, as prepare_upload
        send(sent={"name": "compte.ods", "content_b64": upload["content_b64"]})
    assert caught.value.code == "survey.xlsx_only"
    with pytest.raises(Forbidden) as caught:  # a plain user's token: refused at once
        send(caller=USER_A)
    assert caught.value.code == "survey.manager_only"
    demoted = Caller(user_id="user-a", org_id="org-a", roles=("manager",))  # an older token
    with pytest.raises(Forbidden):
        send(caller=demoted)
    assert set(files.records) == before and files.deleted == []
    first = send()
    [stored] = set(files.records) - before
    assert first["status"] == "recorded" and first["file_name"].endswith(".xlsx")
    record = files.records[stored]
    assert (record["kind"], record["owner_org_id"]) == ("survey_form", "org-a")
    assert send()["id"] == first["id"]  # the retry: answered, nothing stored
    assert set(files.records) - before == {stored}
    assert send(key="cle-00000002")["status"] == "already_recorded"  # same bytes: its copy goes
    assert set(files.records) - before == {stored}


def test_only_a_manager_transmits(session, files, ready):
    content, _ = download(session, USER_A, ready["id"])
    with pytest.raises(Forbidden) as caught:
        transmit(session, files, ready["id"], fill_form(content), caller=USER_A)
    assert caught.value.code == "survey.manager_only"
    assert "gestionnaires de compte" in caught.value.message


def test_a_transmission_refused_before_its_checks_leaves_no_file(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    before = set(files.records)
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], fill_form(content), key="court")
    assert caught.value.code == "survey.invalid_input"
    demoted = Caller(user_id="user-a", org_id="org-a", roles=("manager",))  # an older token
    with pytest.raises(Forbidden):
        transmit(session, files, ready["id"], fill_form(content), caller=demoted)
    assert set(files.records) == before
    assert uc.list_transmissions(session, MANAGER_A, ready["id"], now=clock()) == []


@pytest.mark.parametrize(
    "at, code",
    [
        (dt.datetime(2021, 4, 20, tzinfo=dt.UTC), "survey.transmission_not_open"),
        (dt.datetime(2021, 7, 15, 21, 59, tzinfo=dt.UTC), None),  # 23:59 in Paris: still open
        (dt.datetime(2021, 7, 15, 22, 1, tzinfo=dt.UTC), "survey.closed"),
    ],
)
def test_transmission_follows_the_campaign_dates(session, files, ready, at, code):
    content, _ = download(session, MANAGER_A, ready["id"])
    filled = fill_form(content)
    if code is None:
        assert transmit(session, files, ready["id"], filled, at=at)["status"] == "recorded"
        return
    with pytest.raises(Conflict) as caught:
        transmit(session, files, ready["id"], filled, at=at)
    assert caught.value.code == code


def test_a_blocked_survey_refuses_transmission_and_changes(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    uc.set_blocked(session, AGENT, ready["id"], True, now=clock())
    with pytest.raises(Conflict) as caught:
        transmit(session, files, ready["id"], fill_form(content))
    assert caught.value.code == "survey.blocked"
    with pytest.raises(Conflict):
        uc.save_required_data(
            session,
            MANAGER_A,
            ready["id"],
            {"establishments_count": 2, "trainings_count": 3},
            now=clock(),
        )


def test_bad_forms_are_refused_with_every_problem_and_leave_nothing(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    bad = fill_form(content, overrides={"Charges!E5": -12, "Produits!F6": "=1+1"})
    before = set(files.records)
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], bad)
    error = caught.value
    # a formula in an input cell is a value to correct, not a structure change
    assert error.code == "survey.form_invalid"
    assert error.message.startswith("Le formulaire comporte 4 erreurs")  # and both totals
    problems = error.details["problems"]
    assert "Charges!E5 : montant négatif : les montants sont positifs ou nuls." in problems
    assert "Produits!F6 : formule interdite : saisissez une valeur." in problems
    assert (
        set(files.records) == before
        and uc.list_transmissions(session, MANAGER_A, ready["id"], now=clock()) == []
    )
    wb = openpyxl.load_workbook(io.BytesIO(bad))
    wb["Identité"].protection.sheet = False
    wb["Identité"]["B5"] = "UN AUTRE ORGANISME"
    out = io.BytesIO()
    wb.save(out)
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], out.getvalue())
    assert caught.value.code == "survey.form_structure_changed"
    assert [p.split(" : ")[0] for p in caught.value.details["problems"]] == [
        "Identité!B5",
        "Identité!B24",
        "Identité!B25",
        "Charges!E5",
        "Produits!F6",
    ]


def test_the_working_copy_another_survey_and_other_files_are_refused(
    session, files, ready, campaign
):
    working, _ = download(session, MANAGER_A, ready["id"], "working")
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], fill_form(working))
    assert caught.value.code == "survey.form_working_copy"

    other = uc.create_campaign(session, AGENT, dict(CAMPAIGN, name="Autre enquête"), now=clock())
    second = survey_of(session, MANAGER_A, other["id"])
    uc.save_required_data(
        session,
        MANAGER_A,
        second["id"],
        {"establishments_count": 2, "trainings_count": 3},
        now=clock(),
    )
    import_list(session, files, second["id"])
    form_of_other, _ = download(session, MANAGER_A, second["id"])
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], fill_form(form_of_other))
    assert caught.value.code == "survey.form_other_survey"

    plain = workbook_bytes({"Feuil1": [["Charges", 12]]})
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], plain)
    assert caught.value.code == "survey.form_not_preformatted"


def test_another_organisations_form_is_refused(session, files, ready):
    other = survey_of(session, MANAGER_B)
    uc.save_required_data(
        session,
        MANAGER_B,
        other["id"],
        {"establishments_count": 2, "trainings_count": 3},
        now=clock(),
    )
    import_list(session, files, other["id"], caller=MANAGER_B)
    b_form, _ = download(session, MANAGER_B, other["id"])
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], fill_form(b_form))
    assert caught.value.code == "survey.form_other_organisation"


def test_a_tampered_signature_is_refused(session, files, ready):
    import io

    import openpyxl

    content, _ = download(session, MANAGER_A, ready["id"])
    wb = openpyxl.load_workbook(io.BytesIO(fill_form(content)))
    wb["meta"]["B4"] = "org-b"
    out = io.BytesIO()
    wb.save(out)
    with pytest.raises(InvalidInput) as caught:
        transmit(session, files, ready["id"], out.getvalue())
    assert caught.value.code == "survey.form_signature_invalid"


def test_a_form_made_before_the_certifications_changed_is_outdated(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    first = uc.get_required_data(session, MANAGER_A, ready["id"], now=clock())["certifications"][0]
    uc.update_certification(
        session, MANAGER_A, ready["id"], first["id"], {"title": "AUTRE"}, now=clock()
    )
    with pytest.raises(Conflict) as caught:
        transmit(session, files, ready["id"], fill_form(content))
    assert caught.value.code == "survey.form_outdated"
    new_content, result = download(session, MANAGER_A, ready["id"])
    assert result["form_version"] == 2
    assert transmit(session, files, ready["id"], fill_form(new_content))["status"] == "recorded"


# ---------------------------------------------------------------- object-level authorisation


def test_another_organisation_gets_not_found_on_everything(session, files, ready):
    survey_of(session, MANAGER_B)
    sid = ready["id"]
    for call in (
        lambda: uc.get_survey(session, MANAGER_B, sid, now=clock()),
        lambda: uc.get_required_data(session, MANAGER_B, sid, now=clock()),
        lambda: uc.save_required_data(session, MANAGER_B, sid, {}, now=clock()),
        lambda: uc.generate_form(
            session, MANAGER_B, sid, "official", FakeIdentity(MANAGER_B), SECRET, now=clock()
        ),
        lambda: uc.prepare_upload(
            session, MANAGER_B, sid, "response", {"name": "a.xlsx"}, now=clock()
        ),
        lambda: uc.list_attachments(session, MANAGER_B, sid, now=clock()),
        lambda: uc.list_transmissions(session, MANAGER_B, sid, now=clock()),
        lambda: uc.certifications_file(session, MANAGER_B, sid, now=clock()),
    ):
        with pytest.raises(NotFound):
            call()


# ---------------------------------------------------------------- uploads and attachments


def test_uploads_are_prepared_before_anything_is_stored(session, ready):
    head = base64.b64encode(b"%PDF-1.7\n").decode()
    plan = uc.prepare_upload(
        session,
        USER_A,
        ready["id"],
        "attachment",
        {"name": "PJ Numéro 1.pdf", "size": 1000, "head_b64": head},
        now=clock(),
    )
    assert plan == {
        "store": "store_file",
        "meta": {
            "kind": "attachment",
            "name": "PJ Numéro 1.pdf",
            "content_type": "application/pdf",
            "owner_org_id": "org-a",
        },
    }
    with pytest.raises(InvalidInput) as caught:
        uc.prepare_upload(
            session,
            USER_A,
            ready["id"],
            "attachment",
            {"name": "virus.exe", "size": 10, "head_b64": head},
            now=clock(),
        )
    assert caught.value.code == "files.type_not_allowed"
    # the content is for files to judge (files.policy: the same code in every slot)
    plan = uc.prepare_upload(
        session,
        USER_A,
        ready["id"],
        "attachment",
        {"name": "faux.pdf", "size": 10, "head_b64": base64.b64encode(b"MZ").decode()},
        now=clock(),
    )
    assert plan["store"] == "store_file"
    with pytest.raises(InvalidInput) as caught:
        uc.prepare_upload(
            session,
            USER_A,
            ready["id"],
            "attachment",
            {"name": "gros.pdf", "size": 11 * 1024 * 1024, "head_b64": head},
            now=clock(),
        )
    assert caught.value.code == "files.too_large"
    with pytest.raises(InvalidInput) as caught:
        uc.prepare_upload(
            session, USER_A, ready["id"], "certifications", {"name": "liste.csv"}, now=clock()
        )
    assert caught.value.code == "survey.xlsx_only"
    response = uc.prepare_upload(
        session, MANAGER_A, ready["id"], "response", {"name": "x.xlsx"}, now=clock()
    )
    assert (
        response["meta"]["name"] == "Enquête CFA_CFA DES METIERS DE L'EXEMPLE - 20210510_1130.xlsx"
    )
    with pytest.raises(Forbidden):
        uc.prepare_upload(session, USER_A, ready["id"], "response", {"name": "x.xlsx"}, now=clock())


def test_attachments_are_added_replaced_exported_and_deleted(session, files, ready):
    sid = ready["id"]
    one = files.store(USER_A, "attachment", "PJ Numéro 1.pdf", b"%PDF-1 un")
    added = uc.add_attachment(session, USER_A, sid, one["id"], files, now=clock())
    assert (
        uc.add_attachment(session, USER_A, sid, one["id"], files, now=clock())["id"] == added["id"]
    )
    assert [a["name"] for a in uc.list_attachments(session, MANAGER_A, sid, now=clock())] == [
        "PJ Numéro 1.pdf"
    ]
    two = files.store(USER_A, "attachment", "PJ Numéro 2.pdf", b"%PDF-1 deux")
    replaced = uc.replace_attachment(
        session, USER_A, sid, added["id"], two["id"], files, now=clock()
    )
    assert replaced["name"] == "PJ Numéro 2.pdf" and one["id"] in files.deleted
    assert uc.get_attachment(session, AGENT, sid, added["id"], now=clock())["file_id"] == two["id"]
    foreign = files.store(MANAGER_B, "attachment", "b.pdf", b"%PDF b")
    with pytest.raises(InvalidInput):
        uc.add_attachment(session, USER_A, sid, foreign["id"], files, now=clock())
    uc.delete_attachment(session, USER_A, sid, added["id"], files, now=clock())
    assert uc.list_attachments(session, MANAGER_A, sid, now=clock()) == []
    assert two["id"] in files.deleted


def test_a_survey_holds_20_attachments_at_most_but_each_can_still_be_replaced(
    session, files, ready
):
    sid, pdf = ready["id"], base64.b64encode(b"%PDF-1.4").decode()
    info = {"name": "PJ.pdf", "size": 8, "head_b64": pdf}
    added = [
        uc.add_attachment(
            session,
            USER_A,
            sid,
            files.store(USER_A, "attachment", f"PJ {n}.pdf", b"%PDF-1.4 " + bytes([n]))["id"],
            files,
            now=clock(),
        )
        for n in range(20)
    ]
    with pytest.raises(Conflict) as caught:
        uc.prepare_upload(session, USER_A, sid, "attachment", info, now=clock())
    assert caught.value.code == "survey.attachments_full"
    assert caught.value.message == "20 pièces au plus par enquête : supprimez-en une."
    extra = files.store(USER_A, "attachment", "PJ 21.pdf", b"%PDF-1.4 21")
    with pytest.raises(Conflict):
        uc.add_attachment(session, USER_A, sid, extra["id"], files, now=clock())
    assert extra["id"] in files.deleted  # nothing left behind
    plan = uc.prepare_upload(
        session, USER_A, sid, "attachment", dict(info, replacing=True), now=clock()
    )
    assert plan["store"] == "store_file"
    with pytest.raises(InvalidInput) as caught:
        uc.prepare_upload(session, USER_A, sid, "attachment", dict(info, size=0), now=clock())
    assert caught.value.code == "files.empty"
    assert len(uc.list_attachments(session, USER_A, sid, now=clock())) == len(added) == 20


# ---------------------------------------------------------------- agency export


def test_the_agency_exports_every_organisation_safely(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    transmit(
        session,
        files,
        ready["id"],
        fill_form(content, overrides={"Identité!B19": Text("=cmd|' /C calc'!A0")}),
    )
    campaign_id, identity = ready["campaign_id"], FakeIdentity(AGENT)
    # no status list seen first: org-b and org-og never signed in, and are there
    csv_export = uc.export_responses(session, AGENT, campaign_id, "csv", identity, now=clock())
    text = base64.b64decode(csv_export["content_b64"]).decode("utf-8-sig")
    lines = text.splitlines()
    assert lines[0].startswith("Enquête;Organisme;SIRET")
    assert len(lines) == 1 + 4 + 2  # 4 lines of org-a, one blank row for org-b and org-og
    assert "OGEC FORMATION DE L'EXEMPLE" in text and "INSTITUT FICTIF" in text
    assert "'=cmd|' /C calc'!A0" in text and ";=cmd" not in text
    xlsx_export = uc.export_responses(session, AGENT, campaign_id, "xlsx", identity, now=clock())
    assert xlsx_export["name"].endswith(".xlsx") and xlsx_export["rows"] == 6
    with pytest.raises(Forbidden):
        uc.export_responses(session, MANAGER_A, campaign_id, "csv", identity)


def test_the_agency_counts_and_exports_the_organisations_a_campaign_is_aimed_at(session):
    for name, target in (("Pour tous", "all"), ("Pour les OG", "OG"), ("Pour les OFA", "OFA")):
        uc.create_campaign(session, AGENT, dict(CAMPAIGN, name=name, target=target), now=clock())
    identity = FakeIdentity(AGENT)  # org-a and org-b are OFA, org-og an OG; none signed in
    counts = {c["name"]: c["counts"] for c in uc.list_campaigns(session, AGENT, identity)}
    assert {name: c["total"] for name, c in counts.items()} == {
        "Pour tous": 3,
        "Pour les OG": 1,
        "Pour les OFA": 2,
    }
    assert counts["Pour tous"]["not_downloaded"] == 3
    campaigns = {c["name"]: c["id"] for c in uc.list_campaigns(session, AGENT, identity)}
    exported = uc.export_responses(
        session, AGENT, campaigns["Pour les OG"], "csv", identity, now=clock()
    )
    rows = base64.b64decode(exported["content_b64"]).decode("utf-8-sig").splitlines()[1:]
    assert [row.split(";")[1] for row in rows] == ["OGEC FORMATION DE L'EXEMPLE"]
    statuses = uc.list_statuses(
        session, AGENT, identity, {"campaign_id": campaigns["Pour les OFA"]}, now=clock()
    )
    assert {r["organisation"] for r in statuses["items"]} == {
        "CFA DES METIERS DE L'EXEMPLE",
        "INSTITUT FICTIF",
    }


def test_the_agencys_copy_of_the_organisations_is_refreshed_at_most_every_30_seconds(
    session, campaign
):
    identity = FakeIdentity(AGENT)
    uc.list_statuses(session, AGENT, identity, now=clock())
    uc.list_statuses(session, AGENT, identity, now=clock(NOW + dt.timedelta(seconds=10)))
    assert identity.calls == ["list_organisations"]
    uc.list_statuses(session, AGENT, identity, now=clock(NOW + dt.timedelta(seconds=31)))
    assert identity.calls == ["list_organisations", "list_organisations"]


def test_a_validation_in_identity_refreshes_the_agencys_copy_at_once(session, campaign):
    orgs = dict(ORGS)
    identity = FakeIdentity(AGENT, orgs)
    assert uc.list_statuses(session, AGENT, identity, now=clock())["total"] == 3
    orgs["org-new"] = dict(ORGS["org-b"], id="org-new", name="CFA TOUT JUSTE VALIDE")
    uc.organisations_changed(session)  # identity.user_validated
    soon = clock(NOW + dt.timedelta(seconds=5))
    rows = uc.list_statuses(session, AGENT, identity, now=soon)["items"]
    assert "CFA TOUT JUSTE VALIDE" in [r["organisation"] for r in rows]


# ---------------------------------------------------------------- partners (DESIGN §8)

PARTNER = Caller(user_id="partner:p1", roles=("partner",))
ORG_A = ORGS["org-a"]  # OFA, SIRET 41816609600051


@pytest.fixture
def transmitted(session, files, ready):
    content, _ = download(session, MANAGER_A, ready["id"])
    return transmit(session, files, ready["id"], fill_form(content))


def partner_read(session, transmission_id, scope, caller=PARTNER):
    return uc.get_partner_transmission(session, caller, transmission_id, scope)


def test_a_partner_reads_a_transmission_of_its_scope_with_its_values(session, transmitted):
    scope = {"account_types": ["OFA"], "sirets": [ORG_A["siret"]]}
    got = partner_read(session, transmitted["id"], scope)
    [event] = events(session, "response_submitted")
    public = (
        "transmission_id survey_id campaign_id campaign_name siret uai account_type seq "
        "form_version sha256 size file_name submitted_at file_id"
    ).split()
    assert {k: got[k] for k in public} == {k: event[k] for k in public}
    assert (got["siret"], got["uai"], got["account_type"]) == (ORG_A["siret"], "0750654D", "OFA")
    assert got["file_id"] and got["seq"] == 1 and got["campaign_name"] == "Enquête CFA"
    values = got["values"]
    assert len(values["lines"]) == 4 and values["form_version"] == 1
    assert values["unit"] == "euros" and isinstance(values["sums"]["charges"], str)
    assert partner_read(session, transmitted["id"], {})["transmission_id"] == transmitted["id"]


def test_a_partner_never_learns_who_submitted_or_whom_to_contact(session, transmitted):
    got = partner_read(session, transmitted["id"], {})
    agency = uc.get_response_values(session, AGENT, got["survey_id"], got["transmission_id"])
    assert agency["values"]["contact"]["name"] == "Claire Durand"  # kept, but not for partners
    assert "contact" not in got["values"]
    assert not {"submitted_by", "submitter_name", "submitter_email"} & set(got)
    text = json.dumps(got, ensure_ascii=False)
    for personal in ("DURAND Claire", "claire@cfa-a.example", "Claire Durand", "claire@example"):
        assert personal not in text
    assert MANAGER_A.user_id not in text


@pytest.mark.parametrize(
    "scope",
    [
        {"sirets": [ORGS["org-b"]["siret"]]},
        {"account_types": ["OG"]},
        {"account_types": ["OFA"], "sirets": []},
        {"sirets": [ORG_A["siret"]], "account_types": []},
    ],
)
def test_a_transmission_outside_the_scope_does_not_exist_for_a_partner(session, transmitted, scope):
    with pytest.raises(NotFound) as outside:
        partner_read(session, transmitted["id"], scope)
    with pytest.raises(NotFound) as unknown:
        partner_read(session, "t" * 32, scope)
    assert outside.value.code == unknown.value.code == "survey.transmission_not_found"
    assert outside.value.message == unknown.value.message == "Fichier transmis introuvable."


@pytest.mark.parametrize("transmission_id", ["unknown", "", None, "../x", "a\x00b", 12])
def test_an_unknown_transmission_is_not_found_for_a_partner(session, transmitted, transmission_id):
    with pytest.raises(NotFound) as caught:
        partner_read(session, transmission_id, {})
    assert caught.value.code == "survey.transmission_not_found"


def test_only_a_partner_caller_with_a_stored_scope_reads_partner_transmissions(
    session, transmitted
):
    with pytest.raises(Unauthenticated):
        partner_read(session, transmitted["id"], {}, caller=Caller())
    for caller in (MANAGER_A, AGENT):
        with pytest.raises(Forbidden) as caught:
            partner_read(session, transmitted["id"], {}, caller=caller)
        assert caught.value.code == "forbidden.partners_only"
    # a missing scope would mean « everything »: refused, never assumed
    for scope in (None, [], {"sirets": ORG_A["siret"]}, {"regions": ["occitanie"]}):
        with pytest.raises(InvalidInput) as caught:
            partner_read(session, transmitted["id"], scope)
        assert caught.value.code == "partner.scope_invalid"

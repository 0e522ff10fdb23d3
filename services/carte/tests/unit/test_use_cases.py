"""Carte use cases on an in-memory database: the guide's journey and every
bad input refused with its code, changing nothing."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json

import pytest

from carte import use_cases as uc
from carte.models import Outbox, Request
from kit.context import Caller
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

LATER = dt.datetime(2020, 3, 2, 10, 0, tzinfo=dt.UTC)  # after the campaign closed


def events(session, event_type):
    return [o.payload for o in session.query(Outbox).filter_by(event_type=event_type)]


def codes_of(exc):
    return exc.value.details.get("codes", {})


# ---------------------------------------------------------------- the journey


def test_an_establishment_files_saves_continues_validates_and_cannot_change_it(
    session, world, form, now
):
    lycee = world.lycee
    board = uc.dashboard(session, lycee, now=now)
    assert board["drafts"] == board["validated"] == [] and board["can_file"]
    assert board["signed_in_as"].endswith(lycee.identifier)

    draft = uc.create_request(session, lycee, {"measure": "ouverture"}, now=now)
    assert draft["id"] and draft["status"] == "draft"
    assert draft["referent_uai"] == lycee.uai == draft["concerned_uai"]  # prefilled
    assert draft["school_year_label"] == "Rentrée 2020"
    [row] = uc.dashboard(session, lycee, now=now)["drafts"]
    assert row == {
        "id": draft["id"],
        "status": "draft",
        "measure": "Ouverture",
        "diploma": "Pas encore saisi",
        "modality": "",
        "linked": "Non",
        "linked_request_id": None,
        "concerned_uai": lycee.uai,
        "priority": None,
        "operation": "Continuer la saisie",
        "editable": True,
    }

    with pytest.raises(InvalidInput) as incomplete:
        uc.check_request(session, lycee, draft["id"], now=now)
    assert incomplete.value.code == "carte.field_required"
    assert "variant_id" in incomplete.value.details["fields"]

    saved = uc.save_request(session, lycee, draft["id"], form(version=draft["version"]), now=now)
    checked = uc.check_request(session, lycee, draft["id"], now=now)
    assert checked["status"] == "ready" and checked["version"] == saved["version"]
    titles = [s["title"] for s in checked["recap"]["sections"]]
    assert titles[0] == "A/ Établissement de formation"

    done = uc.confirm_request(session, lycee, draft["id"], checked["version"], now=now)
    assert done["status"] == "validated" and not done["editable"]
    [event] = events(session, "request_validated")
    assert event["request_id"] == draft["id"] and event["academy"] == "toulouse"
    assert event["diploma_code"] == "50023418"

    board = uc.dashboard(session, lycee, now=now)
    assert board["drafts"] == [] and board["validated"][0]["operation"] == "Consulter"
    with pytest.raises(Conflict) as read_only:
        uc.save_request(session, lycee, draft["id"], form(priority=2), now=now)
    assert read_only.value.code == "carte.request_validated"
    # confirming twice (a redelivered message) answers the same, emits nothing more
    again = uc.confirm_request(session, lycee, draft["id"], checked["version"], now=now)
    assert again["status"] == "validated" and len(events(session, "request_validated")) == 1


def test_confirming_a_changed_draft_is_refused(session, world, form, now):
    draft = uc.create_request(session, world.lycee, form(), now=now)
    checked = uc.check_request(session, world.lycee, draft["id"], now=now)
    uc.save_request(session, world.lycee, draft["id"], form(new_capacity=15), now=now)
    with pytest.raises(Conflict) as changed:
        uc.confirm_request(session, world.lycee, draft["id"], checked["version"], now=now)
    assert changed.value.code == "carte.request_changed"


def test_a_network_files_for_two_members_with_linked_projects(session, world, form, make_uai, now):
    network = world.network
    first = uc.create_request(session, network, form(concerned_uai=make_uai("0311234")), now=now)
    second = uc.create_request(
        session,
        network,
        form(
            concerned_uai=make_uai("0311235"),
            measure="fermeture",
            current_capacity=24,
            new_capacity=0,
            linked=True,
            linked_request_id=first["id"],
        ),
        now=now,
    )
    assert second["referent_uai"] == make_uai("0311234")
    assert second["linked_request_id"] == first["id"]
    for req in (first, second):
        checked = uc.check_request(session, network, req["id"], now=now)
        uc.confirm_request(session, network, req["id"], checked["version"], now=now)
    # the member establishment consults the validated request filed for it
    assert uc.get_request(session, world.lycee, first["id"])["status"] == "validated"
    with pytest.raises(NotFound):
        uc.get_request(session, world.lycee, second["id"])  # another member's


def test_the_draaf_files_directly_for_an_establishment_of_the_region(
    session, world, form, make_uai, now
):
    made = uc.create_request(session, world.draaf, form(concerned_uai=make_uai("0341234")), now=now)
    assert made["academy"] == "montpellier" and made["referent_uai"] is None
    with pytest.raises(InvalidInput) as outside:
        uc.create_request(session, world.draaf, form(concerned_uai="0750654D"), now=now)
    assert outside.value.code == "carte.uai_outside_network"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "changes, field, code",
    [
        ({"concerned_uai": "0311234X"}, "concerned_uai", "carte.uai_invalid"),
        ({"variant_id": 99999}, "variant_id", "carte.diploma_unknown"),
        ({"current_capacity": 12, "new_capacity": 24}, "new_capacity", "carte.capacity_incoherent"),
        ({"opportunity_report": "x" * 5001}, "opportunity_report", "carte.report_too_long"),
        (
            {"linked": True, "linked_request_id": 424242},
            "linked_request_id",
            "carte.linked_request_not_found",
        ),
        ({"manager_phone": "appelez-moi"}, "manager_phone", "carte.phone_invalid"),
    ],
)
def test_bad_input_is_refused_with_its_code_and_changes_nothing(
    session, world, form, now, changes, field, code
):
    draft = uc.create_request(session, world.lycee, {"measure": "ouverture"}, now=now)
    with pytest.raises(InvalidInput) as refused:
        uc.save_request(session, world.lycee, draft["id"], form(**changes), now=now)
    assert refused.value.code == code
    assert codes_of(refused) == {field: [code]}
    assert refused.value.message and refused.value.details["fields"][field]
    after = uc.get_request(session, world.lycee, draft["id"])
    assert after["version"] == draft["version"] and after["variant_id"] is None


def test_a_uai_outside_the_network_is_refused(session, world, form, make_uai, now):
    with pytest.raises(InvalidInput) as refused:
        uc.create_request(session, world.network, form(concerned_uai=make_uai("0341234")), now=now)
    assert refused.value.code == "carte.uai_outside_network"
    with pytest.raises(InvalidInput):
        uc.create_request(session, world.lycee, form(concerned_uai=make_uai("0311235")), now=now)
    assert session.query(Request).count() == 0


def test_a_duplicate_priority_is_refused_and_priorities_can_be_reordered(session, world, form, now):
    first = uc.create_request(session, world.lycee, form(priority=1), now=now)
    with pytest.raises(InvalidInput) as taken:
        uc.create_request(session, world.lycee, form(priority=1), now=now)
    assert taken.value.code == "carte.priority_taken"
    second = uc.create_request(session, world.lycee, form(priority=2), now=now)
    third = uc.create_request(session, world.lycee, form(priority=None), now=now)
    # the first is validated: its rank 1 is fixed; the drafts share the free ranks
    uc.confirm_request(session, world.lycee, first["id"], None, now=now)
    result = uc.reorder_priorities(
        session, world.lycee, world.lycee.uai, [third["id"], second["id"]], now=now
    )
    assert result["priorities"] == [
        {"id": third["id"], "priority": 2},
        {"id": second["id"], "priority": 3},
    ]
    with pytest.raises(InvalidInput) as partial:
        uc.reorder_priorities(session, world.lycee, world.lycee.uai, [third["id"]], now=now)
    assert partial.value.code == "carte.order_invalid"


def test_a_linked_project_must_be_visible_to_the_filer(session, world, form, make_uai, now):
    elsewhere = uc.create_request(
        session, world.other, form(concerned_uai=make_uai("0341234")), now=now
    )
    with pytest.raises(InvalidInput) as hidden:
        uc.create_request(
            session, world.lycee, form(linked=True, linked_request_id=elsewhere["id"]), now=now
        )
    assert hidden.value.code == "carte.linked_request_not_found"


def test_a_request_of_another_establishment_does_not_exist(session, world, form, now):
    mine = uc.create_request(session, world.lycee, form(), now=now)
    for call in (
        lambda: uc.get_request(session, world.other, mine["id"]),
        lambda: uc.save_request(session, world.other, mine["id"], form(), now=now),
        lambda: uc.check_request(session, world.other, mine["id"], now=now),
        lambda: uc.confirm_request(session, world.other, mine["id"], None, now=now),
        lambda: uc.prepare_annex(session, world.other, mine["id"], now=now),
        lambda: uc.get_request(session, world.region, mine["id"]),  # a draft
        lambda: uc.get_request(session, world.lycee, 999999),
    ):
        with pytest.raises(NotFound) as missing:
            call()
        assert missing.value.code == "carte.request_not_found"


@pytest.mark.parametrize(
    "call",
    [
        lambda s, w, rid: uc.update_campaign(s, w.admin, 2**31, {"closes_on": "2020-03-01"}),
        lambda s, w, rid: uc.update_campaign(s, w.admin, "1; drop", {"closes_on": "2020-03-01"}),
        lambda s, w, rid: uc.remove_annex(s, w.lycee, rid, 10**20),
        lambda s, w, rid: uc.annex_file(s, w.lycee, rid, "\u00b2"),
        lambda s, w, rid: uc.get_request(s, w.lycee, 2**63),
        lambda s, w, rid: uc.get_request(s, w.lycee, "\u0661"),
    ],
)
def test_ids_out_of_range_or_not_numbers_are_simply_not_found(session, world, form, now, call):
    draft = uc.create_request(session, world.lycee, form(), now=now)
    with pytest.raises(NotFound):
        call(session, world, draft["id"])


@pytest.mark.parametrize(
    "filters, field",
    [
        ({"diploma": "\u00b2"}, "diploma"),
        ({"diploma": "\u0663"}, "diploma"),
        ({"department": "\u00b2"}, "department"),
        ({"department": "9" * 40}, "department"),
        ({"uai": "\u0660\u0663\u0661\u0661\u0661\u0661\u0661P"}, "uai"),
        ({"academy": "lyon"}, "academy"),
        ({"measure": "=1+1"}, "measure"),
        ({"campaign_id": "x"}, "campaign_id"),
    ],
)
def test_a_bad_filter_is_refused_with_its_field(session, world, filters, field):
    for call in (uc.list_validated, uc.export_validated):
        with pytest.raises(InvalidInput) as refused:
            call(session, world.region, filters)
        assert refused.value.code == "carte.filter_invalid"
        assert list(refused.value.details["fields"]) == [field]


def test_nothing_is_saved_or_validated_after_the_campaign_closed(session, world, form, now):
    draft = uc.create_request(session, world.lycee, form(), now=now)
    for call in (
        lambda: uc.confirm_request(session, world.lycee, draft["id"], None, now=LATER),
        lambda: uc.save_request(session, world.lycee, draft["id"], form(), now=LATER),
        lambda: uc.create_request(session, world.lycee, form(priority=3), now=LATER),
    ):
        with pytest.raises(Conflict) as closed:
            call()
        assert closed.value.code == "carte.campaign_closed"
    assert uc.get_request(session, world.lycee, draft["id"])["status"] == "draft"
    assert uc.dashboard(session, world.lycee, now=LATER)["can_file"] is False


def test_campaigns_are_unique_per_year_and_do_not_overlap(session, world, now):
    with pytest.raises(Conflict) as exists:
        uc.create_campaign(
            session,
            world.admin,
            {"school_year": 2020, "opens_on": "2021-01-01", "closes_on": "2021-02-01"},
            now=now,
        )
    assert exists.value.code == "carte.campaign_exists"
    with pytest.raises(Conflict) as overlap:
        uc.create_campaign(
            session,
            world.admin,
            {"school_year": 2021, "opens_on": "2020-02-01", "closes_on": "2020-03-01"},
            now=now,
        )
    assert overlap.value.code == "carte.campaign_overlap"
    with pytest.raises(Forbidden):
        uc.create_campaign(session, world.lycee, {"school_year": 2022}, now=now)


def test_requests_of_an_earlier_campaign_are_not_carried_over(session, world, form, now):
    uc.create_request(session, world.lycee, form(), now=now)
    uc.create_campaign(
        session,
        world.admin,
        {"school_year": 2021, "opens_on": "2020-12-01", "closes_on": "2021-02-28"},
        now=now,
    )
    next_year = dt.datetime(2020, 12, 10, tzinfo=dt.UTC)
    board = uc.dashboard(session, world.lycee, now=next_year)
    assert board["campaign"]["label"] == "Rentrée 2021" and board["drafts"] == []
    made = uc.create_request(session, world.lycee, form(), now=next_year)
    assert made["priority"] == 1 and made["school_year"] == 2021  # rank 1 free again


# ---------------------------------------------------------------- catalogue


def test_the_catalogue_is_a_searchable_tree(session, world):
    tree = uc.get_catalogue(session, world.lycee)
    assert [lv["code"] for lv in tree["levels"]] == ["niveau3", "niveau4", "niveau5"]
    bts = tree["levels"][2]["diplomas"][0]
    assert [v["label"] for v in bts["variants"]] == [
        "BTS Management commercial opérationnel en 1 an",
        "BTS Management commercial opérationnel en 2 ans",
    ]
    found = uc.get_catalogue(session, world.lycee, "ébéniste")
    assert found["variant_count"] == 1
    assert uc.get_catalogue(session, world.lycee, "38368")["variant_count"] == 2


def test_a_catalogue_with_errors_imports_nothing_and_lists_every_problem(session, world):
    bad = b"niveau;diplome;code_diplome;rncp;duree\n9;X;ABC;RNCPX1;7\n3;CAP Y;50023499;;2\n"
    with pytest.raises(InvalidInput) as refused:
        uc.import_catalogue(session, world.admin, "c.csv", lambda: bad)
    assert refused.value.code == "carte.catalogue_invalid"
    assert {p["column"] for p in refused.value.details["problems"]} == {
        "niveau",
        "code_diplome",
        "rncp",
        "duree",
    }
    assert uc.get_catalogue(session, world.admin, "CAP Y")["variant_count"] == 0
    with pytest.raises(InvalidInput) as unreadable:
        uc.import_catalogue(session, world.admin, "c.pdf", lambda: b"%PDF")
    assert unreadable.value.code == "carte.catalogue_unreadable"
    with pytest.raises(Forbidden):
        uc.import_catalogue(session, world.lycee, "c.csv", lambda: bad)


def test_an_unreadable_csv_is_explained_in_french(session, world):
    """The csv module's own errors are English and name no line."""
    unclosed = b'niveau;diplome;code_diplome;duree\n3;"CAP ' + b"x" * 200_000 + b"\n"
    with pytest.raises(InvalidInput) as refused:
        uc.import_catalogue(session, world.admin, "c.csv", lambda: unclosed)
    assert refused.value.code == "carte.catalogue_unreadable"
    assert refused.value.message == (
        "CSV mal formé : une cellule dépasse la taille permise, ou un guillemet n'est pas refermé."
    )
    too_long = b"niveau;diplome;code_diplome;duree\n" + b"3;CAP;50023418;2\n" * 20_001
    with pytest.raises(InvalidInput) as long_file:
        uc.import_catalogue(session, world.admin, "c.csv", lambda: too_long)
    assert long_file.value.message == "Le fichier dépasse 20\u202f000 lignes."


def test_a_catalogue_is_imported_from_xlsx_and_a_reimport_withdraws_what_is_gone(session, world):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Niveau", "Diplôme", "Code diplôme", "RNCP", "Durée"])
    sheet.append([3, "CAP Ébéniste", "50023418", 35282, 2])
    sheet.append([3, "CAP Menuisier", 1022001, None, 2])  # a 7-digit code, as a number
    buffer = io.BytesIO()
    workbook.save(buffer)
    result = uc.import_catalogue(session, world.admin, "cat.xlsx", buffer.getvalue)
    assert result["variants"] == 2 and result["withdrawn"] == 3
    tree = uc.get_catalogue(session, world.lycee)
    cfds = {d["cfd"] for lv in tree["levels"] for d in lv["diplomas"]}
    assert cfds == {"50023418", "1022001"}


def test_a_missing_programme_is_reported_to_the_administrator(session, world):
    with pytest.raises(InvalidInput) as bad:
        uc.report_missing_programme(session, world.lycee, {"title": "", "rncp": "RNCPX1"})
    assert set(bad.value.details["fields"]) == {"title", "rncp"}
    done = uc.report_missing_programme(
        session, world.lycee, {"title": "CAP Tapissier", "rncp": "37098", "message": "JO du…"}
    )
    assert done["status"] == "received"
    [event] = events(session, "programme_reported")
    assert event["rncp"] == "RNCP37098" and event["reporter_identifier"] == world.lycee.identifier
    assert uc.list_programme_reports(session, world.admin)[0]["title"] == "CAP Tapissier"


# ---------------------------------------------------------------- reviewers


def _validated(session, world, form, make_uai, now):
    made = []
    for actor, uai, measure, cur, new in (
        (world.lycee, make_uai("0311234"), "ouverture", 0, 12),
        (world.other, make_uai("0341234"), "fermeture", 24, 0),
        (world.draaf, make_uai("0321234"), "augmentation", 12, 24),
    ):
        req = uc.create_request(
            session,
            actor,
            form(
                concerned_uai=uai,
                measure=measure,
                current_capacity=cur,
                new_capacity=new,
                opportunity_report='=HYPERLINK("http://evil")',
            ),
            now=now,
        )
        made.append(uc.confirm_request(session, actor, req["id"], None, now=now))
    uc.create_request(session, world.lycee, form(priority=5), now=now)  # a draft
    return made


def test_reviewers_see_the_validated_requests_of_their_scope(session, world, form, make_uai, now):
    lycee, other, draaf = _validated(session, world, form, make_uai, now)
    everything = uc.list_validated(session, world.region, now=now)
    assert everything["total"] == 3
    toulouse = uc.list_validated(session, world.toulouse, now=now)
    assert {r["id"] for r in toulouse["items"]} == {lycee["id"], draaf["id"]}
    filtered = uc.list_validated(
        session, world.region, {"department": "34", "measure": "fermeture"}, now=now
    )
    assert [r["id"] for r in filtered["items"]] == [other["id"]]
    by_uai = uc.list_validated(session, world.region, {"uai": make_uai("0311234")}, now=now)
    assert [r["id"] for r in by_uai["items"]] == [lycee["id"]]
    by_diploma = uc.list_validated(session, world.region, {"diploma": "50023418"}, now=now)
    assert by_diploma["total"] == 3
    with pytest.raises(InvalidInput) as bad:
        uc.list_validated(session, world.region, {"academy": "paris"}, now=now)
    assert bad.value.code == "carte.filter_invalid"
    with pytest.raises(Forbidden):
        uc.list_validated(session, world.lycee, now=now)


def test_exports_are_formula_injection_safe(session, world, form, make_uai, now):
    _validated(session, world, form, make_uai, now)
    csv = uc.export_validated(session, world.montpellier, {}, "csv", now=now)
    text = base64.b64decode(csv["content_b64"]).decode("utf-8-sig")
    assert csv["count"] == 1 and text.startswith("Id;Campagne;")
    assert "'=HYPERLINK" in text and ";=HYPERLINK" not in text

    xlsx = uc.export_validated(session, world.region, {"academy": "toulouse"}, "xlsx", now=now)
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(base64.b64decode(xlsx["content_b64"]))).active
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == 3 and rows[0][0] == "Id"
    report = rows[1][[h for h in rows[0]].index("Rapport d'opportunité")]
    assert report.startswith("'=")
    assert all(not (isinstance(c, str) and c.startswith("=")) for row in rows for c in row)


def test_a_validated_request_prints_as_pdf(session, world, form, make_uai, now):
    lycee, *_ = _validated(session, world, form, make_uai, now)
    pdf = uc.request_pdf(session, world.lycee, lycee["id"])
    assert base64.b64decode(pdf["content_b64"]).startswith(b"%PDF")
    view = uc.print_view(session, world.region, lycee["id"])
    assert view["title"].startswith(f"Demande n° {lycee['id']}")


def test_an_account_not_announced_yet_is_fetched_once_from_identity(session, world):
    calls = []

    def fetch(user_id):
        calls.append(user_id)
        return {
            "user_id": user_id,
            "identifier": "NEW-RES",
            "kind": "network",
            "member_uais": [],
            "active": True,
            "revision": 1,
        }

    actor = uc.acting(session, Caller(user_id="new", roles=("carte_network",)), fetch)
    again = uc.acting(session, Caller(user_id="new", roles=("carte_network",)), fetch)
    assert actor.kind == again.kind == "network" and calls == ["new"]
    with pytest.raises(Forbidden):
        uc.acting(session, Caller(user_id="karoussel-user", roles=("user",)), lambda _u: None)


def test_account_events_apply_newest_first_only(session, world):
    stale = {
        "user_id": "lycee",
        "identifier": world.lycee.identifier,
        "kind": "establishment",
        "uai": world.lycee.uai,
        "active": False,
        "revision": 1,
    }
    assert uc.save_account(session, stale) is False
    assert uc.acting(session, Caller(user_id="lycee", roles=()), None).kind == "establishment"


def test_the_dashboard_and_the_reviewers_list_cost_the_same_few_queries_however_many_rows(
    session, world, form, now
):
    """No query per line (the bench's 10,000 requests would pay for it):
    the dashboard is one statement, the list a fixed handful."""
    from sqlalchemy import event

    statements = []
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def count(call) -> int:
        statements.clear()
        call()
        return len(statements)

    for priority in range(1, 13):
        made = uc.create_request(session, world.lycee, form(priority=priority), now=now)
        uc.add_annex(session, world.lycee, made["id"], {"file_id": "f", "name": "a.pdf"}, now=now)
        if priority % 2:
            uc.confirm_request(session, world.lycee, made["id"], None, now=now)
    board = count(lambda: uc.dashboard(session, world.lycee, now=now))
    assert board == 1
    listed = count(lambda: uc.list_validated(session, world.region, {}, 1, 50, now=now))
    paged = count(lambda: uc.list_validated(session, world.region, {}, 2, 4, now=now))
    assert listed == 3  # campaign, page with diplomas, annexes (the page gives the count)
    assert paged == 4  # and the count
    result = uc.list_validated(session, world.region, {}, 1, 50, now=now)
    assert result["total"] == 6 and all(len(item["annexes"]) == 1 for item in result["items"])
    assert result["items"][0]["diploma"]["label"] == "CAP Ébéniste en 2 ans"


# ---------------------------------------------------------------- partners (DESIGN §8)

PARTNER = Caller(user_id="partner:p1", roles=("partner",))


def validated(session, actor, form, now, **changes):
    draft = uc.create_request(session, actor, form(**changes), now=now)
    checked = uc.check_request(session, actor, draft["id"], now=now)
    return uc.confirm_request(session, actor, draft["id"], checked["version"], now=now)


def test_a_partner_reads_a_validated_request_of_its_academies(session, world, form, now):
    done = validated(session, world.lycee, form, now)
    got = uc.get_partner_request(session, PARTNER, done["id"], {"academies": ["toulouse"]})
    [event] = events(session, "request_validated")
    for key in (
        "request_id",
        "campaign_id",
        "school_year",
        "concerned_uai",
        "referent_uai",
        "academy",
        "department",
        "measure",
        "modality",
        "diploma_code",
        "validated_at",
    ):
        assert got[key] == event[key], key
    assert got["academy"] == "toulouse" and got["department"] == "31"
    assert got["status"] == "validated" and got["school_year"] == 2020
    assert got["diploma"]["cfd"] == got["diploma_code"] == "50023418"
    assert got["new_capacity"] == 12 and got["measure_label"] == "Ouverture"
    assert got["opportunity_report"] == "Forte demande des entreprises du bois."
    assert got["annex_count"] == 0
    # no restriction on academies: every validated request
    assert uc.get_partner_request(session, PARTNER, str(done["id"]), {})["request_id"] == done["id"]


def test_a_partner_never_receives_personal_data_of_a_request(session, world, form, now):
    done = validated(session, world.network, form, now)
    assert done["manager_email"] == "projet@lycee.example"  # kept for those who may see it
    got = uc.get_partner_request(session, PARTNER, done["id"], {})
    assert not {
        "filed_by",
        "filer_identifier",
        "validated_by",
        "manager_name",
        "manager_phone",
        "manager_email",
        "annexes",
    } & set(got)
    text = json.dumps(got, ensure_ascii=False)
    for personal in ("Responsable Projet", "05 61 00 00 00", "projet@lycee.example", "RES-TLS"):
        assert personal not in text


def test_a_draft_an_unknown_request_and_another_academy_are_not_found(session, world, form, now):
    draft = uc.create_request(session, world.lycee, form(), now=now)
    done = validated(session, world.other, form, now, concerned_uai=world.other.uai)
    assert done["academy"] == "montpellier"
    cases = [
        (draft["id"], {}),  # still a draft, even with no restriction
        (done["id"], {"academies": ["toulouse"]}),
        (done["id"], {"academies": []}),
        (999_999, {}),
        ("nope", {}),
        (None, {}),
    ]
    for request_id, scope in cases:
        with pytest.raises(NotFound) as caught:
            uc.get_partner_request(session, PARTNER, request_id, scope)
        assert caught.value.code == "carte.request_not_found", (request_id, scope)
    # the scope's organisation keys do not apply to carte requests
    scope = {"academies": ["montpellier"], "sirets": [], "account_types": []}
    assert uc.get_partner_request(session, PARTNER, done["id"], scope)["request_id"] == done["id"]


def test_only_a_partner_caller_with_a_stored_scope_reads_partner_requests(
    session, world, form, now
):
    done = validated(session, world.lycee, form, now)
    with pytest.raises(Unauthenticated):
        uc.get_partner_request(session, Caller(), done["id"], {})
    for caller in (
        Caller(user_id="lycee", roles=("carte_establishment",)),
        Caller(user_id="agent", roles=("agency_admin",)),
    ):
        with pytest.raises(Forbidden) as caught:
            uc.get_partner_request(session, caller, done["id"], {})
        assert caught.value.code == "forbidden.partners_only"
    for scope in (None, "toulouse", {"academies": "toulouse"}, {"region": ["occitanie"]}):
        with pytest.raises(InvalidInput) as caught:
            uc.get_partner_request(session, PARTNER, done["id"], scope)
        assert caught.value.code == "partner.scope_invalid"

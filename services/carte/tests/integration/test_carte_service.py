"""carte in a real nameko container, on RabbitMQ and PostgreSQL: accounts
arrive by identity's event, errors arrive typed, the validation leaves
through the outbox, and the migration builds an empty database."""

from __future__ import annotations

import pytest
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter
from sqlalchemy import inspect

from carte.service import CarteService
from kit.codes import uai_check_letter
from kit.context import PARTNER, Caller
from kit.db import make_engine
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from kit.migrate import upgrade

pytestmark = pytest.mark.integration

UAI = "0311234" + uai_check_letter("0311234")
CSV = ("niveau;diplome;code_diplome;rncp;duree\n3;CAP Ébéniste;50023418;RNCP35282;2\n").encode()


class Listener:
    name = "carte_test_listener"
    received = []

    @event_handler("carte", "request_validated")
    def on_request_validated(self, payload):
        self.received.append(payload)


@pytest.fixture
def carte(container_factory, rabbit_config, pg_database):
    url = pg_database("carte")
    upgrade("carte", url)
    config = dict(rabbit_config, CARTE_DB_URL=url)
    container = container_factory(CarteService, config)
    container.start()
    listener = container_factory(Listener, rabbit_config)
    listener.start()
    Listener.received.clear()
    return config, container, listener, url


def proxy(config, caller=None):
    context = {"caller": caller.to_header()} if caller else None
    return ClusterRpcProxy(config, context_data=context, timeout=10)


def announce(config, container, user_id, kind, identifier, **extra):
    payload = dict(
        user_id=user_id,
        identifier=identifier,
        kind=kind,
        label=identifier,
        uai=extra.get("uai"),
        referent_uai=extra.get("uai"),
        member_uais=[],
        scope=extra.get("scope"),
        active=True,
        revision=1,
    )
    with entrypoint_waiter(container, "on_carte_account_saved", timeout=10):
        event_dispatcher(config)("identity", "carte_account_saved", payload)
    return Caller(user_id=user_id, roles=(f"carte_{kind}",))


def import_catalogue(url, admin):
    """The catalogue through the use case (the files service is not running here)."""
    from sqlalchemy.orm import sessionmaker

    from carte import use_cases as uc

    engine = make_engine(url)
    with sessionmaker(engine)() as session:
        uc.import_catalogue(session, uc.acting(session, admin), "c.csv", lambda: CSV)
    engine.dispose()


def complete_form(rpc) -> dict:
    variants = rpc.carte.get_catalogue("ébéniste")["levels"][0]["diplomas"][0]["variants"]
    return {
        "concerned_uai": UAI,
        "manager_name": "R. Projet",
        "manager_phone": "0561000000",
        "manager_email": "p@lycee.example",
        "modality": "S",
        "variant_id": variants[0]["id"],
        "measure": "ouverture",
        "linked": False,
        "priority": 1,
        "current_capacity": 0,
        "new_capacity": 12,
        "first_filing": True,
        "cp_ca_date": "2019-11-20",
        "recruitment_zones": ["local"],
        "works_needed": False,
        "equipment_needed": False,
        "opportunity_report": "Synthèse.",
    }


def test_the_migration_builds_every_table(carte):
    _config, _container, _listener, url = carte
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "actors",
        "campaigns",
        "levels",
        "diplomas",
        "variants",
        "requests",
        "annexes",
        "programme_reports",
        "outbox",
        "alembic_version_carte",
    } <= tables


def test_a_request_is_validated_and_announced_once_through_the_outbox(carte):
    config, container, listener, _url = carte
    admin = Caller(user_id="agent", roles=("agency_admin",))
    lycee = announce(config, container, "lycee", "establishment", UAI, uai=UAI)
    with proxy(config, admin) as rpc:
        campaign = rpc.carte.create_campaign(
            {"school_year": 2099, "opens_on": "2000-01-01", "closes_on": "2099-01-01"}
        )
        assert campaign["state"] == "open"
    import_catalogue(carte[3], admin)

    with proxy(config, lycee) as rpc:
        draft = rpc.carte.create_request({"measure": "ouverture"})
        rpc.carte.save_request(draft["id"], complete_form(rpc))
        checked = rpc.carte.check_request(draft["id"])
        with entrypoint_waiter(listener, "on_request_validated", timeout=10):
            done = rpc.carte.confirm_request(draft["id"], checked["version"])
        assert done["status"] == "validated"
        rpc.carte.confirm_request(draft["id"], checked["version"])  # again: same answer
    [event] = Listener.received
    assert event["request_id"] == draft["id"] and event["concerned_uai"] == UAI
    assert event["event_id"] and event["diploma_code"] == "50023418"


def test_every_error_class_arrives_typed(carte):
    config, container, _listener, _url = carte
    lycee = announce(config, container, "lycee", "establishment", UAI, uai=UAI)
    reviewer = announce(config, container, "region", "reviewer", "REGION", scope="all")
    admin = Caller(user_id="agent", roles=("agency_admin",))
    with proxy(config, admin) as rpc:
        rpc.carte.create_campaign(
            {"school_year": 2098, "opens_on": "2000-01-01", "closes_on": "2098-01-01"}
        )
        with pytest.raises(Conflict) as conflict:
            rpc.carte.create_campaign(
                {"school_year": 2098, "opens_on": "2000-01-01", "closes_on": "2098-01-01"}
            )
        assert conflict.value.code == "carte.campaign_exists"
        # PostgreSQL refuses a key beyond its integer: that is no campaign, not a 500
        with pytest.raises(NotFound) as beyond:
            rpc.carte.update_campaign(2**31, {"closes_on": "2098-02-01"})
        assert beyond.value.code == "carte.campaign_not_found"
    with proxy(config, lycee) as rpc:
        # nor is a NUL in a text field (PostgreSQL refuses it in text)
        assert rpc.carte.create_request({"manager_name": "Mme\x00 Projet"})["manager_name"] == (
            "Mme Projet"
        )
        with pytest.raises(InvalidInput) as invalid:
            rpc.carte.create_request({"concerned_uai": "0311234X"})
        assert invalid.value.code == "carte.uai_invalid"
        assert invalid.value.details["codes"] == {"concerned_uai": ["carte.uai_invalid"]}
        with pytest.raises(NotFound) as missing:
            rpc.carte.get_request(123456)
        assert missing.value.code == "carte.request_not_found"
    with proxy(config, reviewer) as rpc:
        with pytest.raises(Forbidden) as forbidden:
            rpc.carte.dashboard()
        assert forbidden.value.code == "forbidden.carte_filers_only"
    with proxy(config) as rpc:
        with pytest.raises(Unauthenticated):
            rpc.carte.dashboard()


def test_a_partner_reads_a_validated_request_of_its_academies_only(carte):
    config, container, _listener, url = carte
    admin = Caller(user_id="agent", roles=("agency_admin",))
    lycee = announce(config, container, "lycee", "establishment", UAI, uai=UAI)
    with proxy(config, admin) as rpc:
        rpc.carte.create_campaign(
            {"school_year": 2097, "opens_on": "2000-01-01", "closes_on": "2097-01-01"}
        )
    import_catalogue(url, admin)
    with proxy(config, lycee) as rpc:
        draft = rpc.carte.create_request(complete_form(rpc))
        draft_only = rpc.carte.create_request(dict(complete_form(rpc), priority=2))
        checked = rpc.carte.check_request(draft["id"])
        rpc.carte.confirm_request(draft["id"], checked["version"])
    partner = Caller(user_id="partner:p1", roles=(PARTNER,))
    with proxy(config, partner) as rpc:
        got = rpc.carte.get_partner_request(draft["id"], {"academies": ["toulouse"]})
        assert got["request_id"] == draft["id"] and got["academy"] == "toulouse"
        assert got["concerned_uai"] == UAI and got["diploma_code"] == "50023418"
        assert not {"manager_name", "manager_phone", "manager_email", "filer_identifier"} & set(got)
        assert "p@lycee.example" not in str(got)
        for request_id, scope in (
            (draft["id"], {"academies": ["montpellier"]}),
            (draft_only["id"], {}),
            (2**31, {}),
        ):
            with pytest.raises(NotFound) as caught:
                rpc.carte.get_partner_request(request_id, scope)
            assert caught.value.code == "carte.request_not_found"
    with proxy(config, lycee) as rpc:
        with pytest.raises(Forbidden) as forbidden:
            rpc.carte.get_partner_request(draft["id"], {})
        assert forbidden.value.code == "forbidden.partners_only"

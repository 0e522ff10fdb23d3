"""Fixtures for carte's tests: an in-memory database, accounts as identity
announces them, an open campaign and a small catalogue."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import sessionmaker

from carte import use_cases as uc
from carte.models import Base
from kit.codes import uai_check_letter
from kit.context import Caller
from kit.db import make_engine

NOW = dt.datetime(2020, 1, 15, 10, 0, tzinfo=dt.UTC)
CATALOGUE_CSV = (
    "niveau;diplome;code_diplome;rncp;duree\n"
    "5;BTS Management commercial opérationnel;32031213;RNCP38368;1\n"
    "5;BTS Management commercial opérationnel;32031213;RNCP38368;2\n"
    "3;CAP Ébéniste;50023418;RNCP35282;2\n"
    "4;Bac pro Métiers du commerce et de la vente;40031209;;3\n"
).encode()


def uai(digits: str) -> str:
    return digits + uai_check_letter(digits)


@pytest.fixture
def session():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        yield s
    engine.dispose()


class World:
    """Accounts, a campaign and a catalogue, built through the use cases."""

    def __init__(self, session):
        self.session = session
        self.revision = 0

    def account(self, user_id, kind, identifier, **extra):
        self.revision += 1
        payload = {
            "user_id": user_id,
            "identifier": identifier,
            "kind": kind,
            "label": extra.pop("label", identifier),
            "uai": identifier if kind == "establishment" else None,
            "referent_uai": extra.pop(
                "referent_uai", identifier if kind == "establishment" else None
            ),
            "member_uais": extra.pop("member_uais", []),
            "scope": extra.pop("scope", None),
            "active": extra.pop("active", True),
            "revision": self.revision,
        }
        uc.save_account(self.session, payload)
        return uc.acting(self.session, Caller(user_id=user_id, roles=("carte_" + kind,)))


@pytest.fixture
def world(session):
    w = World(session)
    w.admin = w.account("admin", "admin", "CARIF-ADMIN")
    w.lycee = w.account("lycee", "establishment", uai("0311234"), label="Lycée A")
    w.other = w.account("other", "establishment", uai("0341234"), label="Lycée B")
    w.network = w.account(
        "network",
        "network",
        "RES-TLS",
        member_uais=[uai("0311234"), uai("0311235")],
        referent_uai=uai("0311234"),
    )
    w.draaf = w.account("draaf", "draaf", "DRAAF-OCC")
    w.region = w.account("region", "reviewer", "REGION", scope="all")
    w.montpellier = w.account("acmtp", "reviewer", "AC-MTP", scope="montpellier")
    w.toulouse = w.account("actls", "reviewer", "AC-TLS", scope="toulouse")
    w.campaign = uc.create_campaign(
        session,
        w.admin,
        {"school_year": 2020, "opens_on": "2019-12-01", "closes_on": "2020-02-28"},
        now=NOW,
    )
    uc.import_catalogue(session, w.admin, "catalogue.csv", lambda: CATALOGUE_CSV, now=NOW)
    tree = uc.get_catalogue(session, w.admin)
    w.variants = {
        v["label"]: v["id"]
        for level in tree["levels"]
        for d in level["diplomas"]
        for v in d["variants"]
    }
    return w


def complete_form(w, **changes) -> dict:
    data = {
        "concerned_uai": uai("0311234"),
        "training_site": "",
        "manager_name": "Responsable Projet",
        "manager_phone": "05 61 00 00 00",
        "manager_email": "projet@lycee.example",
        "modality": "S",
        "variant_id": w.variants["CAP Ébéniste en 2 ans"],
        "measure": "ouverture",
        "linked": False,
        "priority": 1,
        "current_capacity": 0,
        "new_capacity": 12,
        "first_filing": True,
        "cp_ca_date": "2019-11-20",
        "recruitment_zones": ["academique"],
        "works_needed": False,
        "equipment_needed": True,
        "equipment_description": "Établis et machines",
        "other_impacts": "",
        "opportunity_report": "Forte demande des entreprises du bois.",
    }
    data.update(changes)
    return data


@pytest.fixture
def form(world):
    """``form(**changes)``: a complete, valid request form."""
    return lambda **changes: complete_form(world, **changes)


@pytest.fixture
def make_uai():
    return uai


@pytest.fixture
def now():
    return NOW

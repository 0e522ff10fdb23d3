"""The demo data (``python -m carte.seed``): an open campaign and a small
catalogue on a fresh database, and nothing changed on a used one."""

from __future__ import annotations

import datetime as dt

from carte import seed
from carte import use_cases as uc
from carte.domain.access import Actor

NOW = dt.datetime(2019, 12, 10, 9, 0, tzinfo=dt.UTC)
FILER = Actor(user_id="lycee", kind="establishment", identifier="0810001L", uai="0810001L")


def test_a_fresh_database_gets_an_open_campaign_and_a_catalogue_to_file_against(session):
    done = seed.seed(session, now=NOW)
    assert done == {
        "campaign": "created: Rentrée 2020, open until 2020-03-09",
        "catalogue": "imported: 8 programmes",
    }
    board = uc.dashboard(session, FILER, now=NOW)
    assert board["can_file"] and board["campaign"]["programming_year"] == "2020-2021"
    labels = {
        v["label"]
        for level in uc.get_catalogue(session, FILER)["levels"]
        for d in level["diplomas"]
        for v in d["variants"]
    }
    assert "BTS Management commercial opérationnel en 1 an" in labels
    assert "CAP Ébéniste en 2 ans" in labels


def test_a_second_run_or_a_used_database_is_left_as_it_is(session, world):
    """``world`` has its own campaign (rentrée 2020, open) and catalogue."""
    before = uc.get_catalogue(session, world.admin)
    assert seed.seed(session, now=NOW) == {
        "campaign": "kept: Rentrée 2020 is open",
        "catalogue": "kept: a catalogue is there",
    }
    assert uc.get_catalogue(session, world.admin) == before
    later = NOW + dt.timedelta(days=400)  # that campaign closed long ago: a new one opens
    assert seed.seed(session, now=later)["campaign"].startswith("created: Rentrée 2022")
    assert len(uc.list_campaigns(session, world.admin, now=later)) == 2

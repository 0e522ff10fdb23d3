"""Demo data of the carte des formations: an open campaign and a small
diploma catalogue, so that the demo accounts of ``identity.seed`` can file a
request as soon as the platform starts.

``python -m carte.seed`` (the launcher runs it after the migrations, before
the services start) writes straight into carte's database through the use
cases, as an administrator would. It never changes what is there: no
campaign when one is open or would overlap, no catalogue when one exists.
It prints one JSON line saying what it did.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy.orm import sessionmaker

from carte import repository as repo
from carte import use_cases as uc
from carte.domain.access import Actor
from kit.db import database_url, make_engine, utcnow
from kit.errors import Conflict

SEEDER = Actor(user_id="carte-seed", kind="admin", identifier="DEMO", label="Démonstration")
CAMPAIGN_DAYS_BEFORE, CAMPAIGN_DAYS_AFTER = 7, 90
CATALOGUE = (
    "niveau;diplome;code_diplome;rncp;duree\n"
    "3;CAP Ébéniste;50023418;RNCP35282;2\n"
    "3;CAP Ébéniste;50023418;RNCP35282;1\n"
    "3;CAP Cuisine;50022135;RNCP37859;2\n"
    "4;Baccalauréat professionnel Métiers du commerce et de la vente;40031209;RNCP32208;3\n"
    "4;Baccalauréat professionnel Technicien menuisier agenceur;40023403;RNCP35256;3\n"
    "5;BTS Management commercial opérationnel;32031213;RNCP38368;1\n"
    "5;BTS Management commercial opérationnel;32031213;RNCP38368;2\n"
    "5;BTSA Gestion et protection de la nature;32303201;RNCP35850;2\n"
).encode()


def seed(session, now: dt.datetime | None = None) -> dict:
    """An open campaign for next September's rentrée and the demo catalogue,
    each only if nothing is in its way. Returns what was done."""
    now = now or utcnow()
    done: dict = {}
    current = uc.campaign_dict(repo.current_campaign(session, uc.today(now)), now)
    if current and current["state"] == "open":
        done["campaign"] = f"kept: {current['label']} is open"
    else:
        day = uc.today(now)
        try:
            created = uc.create_campaign(
                session,
                SEEDER,
                {
                    "school_year": day.year + 1,
                    "opens_on": (day - dt.timedelta(days=CAMPAIGN_DAYS_BEFORE)).isoformat(),
                    "closes_on": (day + dt.timedelta(days=CAMPAIGN_DAYS_AFTER)).isoformat(),
                },
                now=now,
            )
            done["campaign"] = f"created: {created['label']}, open until {created['closes_on']}"
        except Conflict as exc:
            session.rollback()
            done["campaign"] = f"none created: {exc.message}"
    if repo.diplomas(session):
        done["catalogue"] = "kept: a catalogue is there"
    else:
        imported = uc.import_catalogue(session, SEEDER, "demo.csv", lambda: CATALOGUE, now=now)
        done["catalogue"] = f"imported: {imported['variants']} programmes"
    return done


def main() -> None:
    engine = make_engine(database_url("carte"))
    with sessionmaker(engine, expire_on_commit=False)() as session:
        done = seed(session)
    engine.dispose()
    print(json.dumps(done, ensure_ascii=False))


if __name__ == "__main__":
    main()

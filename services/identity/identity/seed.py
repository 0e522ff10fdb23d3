"""Demo data: creates or resets the agency administrator account, and the
demo accounts of the carte des formations.

``python -m identity.seed`` prints one JSON object as its last line:
``{"email": ..., "password": ..., "carte": [{"identifier", "password",
"kind", "label"}, ...]}`` (the launcher reads it and shows the credentials).
The administrator's password comes from ``DEMO_ADMIN_PASSWORD``, the carte
accounts' from ``DEMO_CARTE_PASSWORD``; each is generated when unset. The
carte accounts are an establishment (signs in with its UAI), a network of two
establishments (that one and another) and a reviewer of the whole region; an
account that already exists gets the new password and keeps its rights.
Their UAIs are in the Tarn and the Tarn-et-Garonne, departments the tests and
benchmarks never use, so they cannot collide with accounts those create.
"""

from __future__ import annotations

import json
import os
import secrets

from sqlalchemy.orm import sessionmaker

from identity import carte
from identity.use_cases import ensure_admin
from kit.codes import uai_check_letter
from kit.db import database_url, make_engine


def _uai(digits: str) -> str:
    return digits + uai_check_letter(digits)


LYCEE = _uai("0810001")  # Albi (Tarn), académie de Toulouse
OTHER = _uai("0820001")  # Montauban (Tarn-et-Garonne), académie de Toulouse
CARTE_ACCOUNTS = (
    {
        "kind": "establishment",
        "identifier": LYCEE,
        "label": "Lycée des métiers de démonstration (Albi)",
        "contact_email": "lycee.demo@carte.localhost",
    },
    {
        "kind": "network",
        "identifier": "RESEAU-DEMO",
        "label": "Réseau d'établissements du Tarn et du Tarn-et-Garonne (démonstration)",
        "contact_email": "reseau.demo@carte.localhost",
        "member_uais": [LYCEE, OTHER],
        "referent_uai": LYCEE,
    },
    {
        "kind": "reviewer",
        "identifier": "REGION-DEMO",
        "label": "Région Occitanie (démonstration)",
        "contact_email": "region.demo@carte.localhost",
        "scope": "all",
    },
)


def main() -> None:
    email = os.environ.get("DEMO_ADMIN_EMAIL", "admin@agence.localhost")
    password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    engine = make_engine(database_url("identity"))
    accounts = []
    with sessionmaker(engine, expire_on_commit=False)() as session:
        ensure_admin(session, email, password)
        for data in CARTE_ACCOUNTS:
            issued = os.environ.get("DEMO_CARTE_PASSWORD") or carte.new_password()
            account = carte.ensure_account(session, data, issued)
            accounts.append(
                {
                    "identifier": account["identifier"],
                    "password": issued,
                    "kind": account["kind"],
                    "label": account["label"],
                }
            )
    engine.dispose()
    print(json.dumps({"email": email, "password": password, "carte": accounts}))


if __name__ == "__main__":
    main()

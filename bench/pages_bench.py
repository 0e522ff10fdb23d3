"""HTML pages' server time and size through Flask's test client, services
faked: the agency's statuses page with 50 rows (the heaviest) and the other
most used pages, N loads each.

    PYTHONPATH=. .venv/bin/python bench/pages_bench.py [--loads 20]

No broker, no database: every gateway module's ``rpc`` answers from the
canned data below (the page tests' way, ``gateway/tests/fakes.py``), and the
session cookie is signed like ``tests.fakes.signed_in`` does. Prints, per
page, the status, p50/p95 of the time ``client.get`` takes (the whole WSGI
request: routing, hooks, RPC fakes, rendering) in ms and the body's size in bytes.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "gateway", ROOT / "libs" / "kit", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
warnings.filterwarnings("ignore", message=r"DSA is deprecated")  # dnspython, via nameko

from bench.stats import percentile  # noqa: E402

ROWS = 50


class FakeRpc:
    """``rpc().<service>.<method>(...)`` answered from ``answers``."""

    def __init__(self, answers: dict):
        self.answers = answers

    def __call__(self, timeout=None):
        return self

    def __getattr__(self, service):
        answers = self.answers

        class Service:
            def __getattr__(self, method):
                def call(*args, **kwargs):
                    answer = answers[f"{service}.{method}"]
                    return answer(*args) if callable(answer) else answer

                return call

        return Service()


def answers() -> dict:
    campaign = {
        "id": "c1",
        "name": "Enquete CFA 2021",
        "details": "Comptabilité analytique",
        "form_type": "CFA",
        "form_label": "CFA - CFA",
        "direction": "DIRECTION_1",
        "online_on": "2021-03-23",
        "transmission_opens_on": "2021-04-01",
        "return_due_on": "2021-07-15",
        "closes_on": "2021-07-31",
        "target": "all",
        "target_label": "Tous les organismes validés",
        "counts": {"total": 7, "not_downloaded": 4, "downloaded": 2, "submitted": 1, "blocked": 3},
    }
    statuses = {
        "items": [
            {
                "id": f"s{i}",
                "number": i,
                "name": "Enquete CFA 2021",
                "organisation": f"Organisme de formation n° {i}",
                "status": "submitted",
                "status_label": "déposée",
                "last_sent_at": "2020-12-07T11:26:04+00:00",
                "return_due_on": "2021-07-15",
                "blocked": i % 3 == 0,
            }
            for i in range(1, ROWS + 1)
        ],
        "page": 1,
        "pages": 3,
        "per_page": ROWS,
        "total": 120,
        "label": "Page 1 sur 3 (120 lignes)",
    }
    surveys = [
        {
            "id": f"s{i}",
            "name": "Enquete CFA 2021",
            "details": "Comptabilité analytique",
            "form": "CFA",
            "organisation": "A.F.T.I.",
            "parent": None,
            "direction": "DIRECTION_1",
            "online_on": "2021-03-23",
            "return_due_on": "2021-07-15",
            "closes_on": "2021-07-31",
            "last_sent_at": "2020-12-07T11:26:04+00:00",
            "status": "downloaded",
            "status_label": "téléchargée",
            "blocked": False,
        }
        for i in range(1, 11)
    ]
    survey = dict(
        surveys[0],
        updated_at="2020-12-07T11:26:04+00:00",
        transmissions=[
            {
                "id": f"t{i}",
                "number": i,
                "file_name": f"enquete-{i}.xlsx",
                "submitted_at": "2020-12-07T11:26:04+00:00",
                "submitter_name": "Jeanne Martin",
                "submitter_email": "jeanne.martin@example.org",
            }
            for i in range(1, 6)
        ],
    )
    user = {
        "id": "u2",
        "display_name": "MARTIN Jeanne",
        "email": "jeanne.martin@example.org",
        "organisation_or_firm": "CFA DE L'INDUSTRIE SIMULEE",
        "role": "user",
        "profile": "Utilisateur CFA/OFA",
        "state": "awaiting_validation",
        "state_label": "Activé, en attente de validation",
        "state_colour": "bleu",
        "phone": "0102030405",
        "firm_name": None,
    }
    users = [dict(user, id=f"u{i}") for i in range(1, 6)]
    registrations = [
        dict(
            user,
            id=f"r{i}",
            organisation={
                "name": f"CFA n° {i}",
                "siret": "80733173100016",
                "account_type": "OFA",
                "sirene_status": "closed" if i % 2 else "active",
                "address": "1 rue de la Paix, 75002 Paris",
            },
            attachments=[{"file_id": "f1", "kind": "habilitation", "name": "habilitation.pdf"}],
            has_habilitation=True,
        )
        for i in range(1, 11)
    ]
    carte_me = (
        "Vous êtes connecté en tant qu'établissement de formation avec l'identifiant 0311234T"
    )
    draft = {
        "id": 16819,
        "measure": "Ouverture",
        "diploma": "CAP Ébéniste en 2 ans",
        "modality": "S",
        "linked": "Non",
        "operation": "Continuer la saisie",
        "editable": True,
        "priority": 1,
        "concerned_uai": "0311234T",
    }
    dashboard = {
        "signed_in_as": carte_me,
        "campaign": {
            "label": "Rentrée 2020",
            "state_label": "Ouverte",
            "opens_on": "2019-12-01",
            "closes_on": "2020-02-28",
        },
        "can_file": True,
        "drafts": [dict(draft, id=16800 + i) for i in range(5)],
        "validated": [
            dict(draft, id=16900 + i, operation="Consulter", editable=False) for i in range(5)
        ],
    }
    labels = {
        name: name.replace("_", " ").capitalize()
        for name in (
            "referent_uai concerned_uai training_site manager_name manager_phone "
            "manager_email modality variant_id measure linked linked_request_id priority "
            "current_capacity new_capacity first_filing previous_filing_year cp_ca_date "
            "recruitment_zones school_year works_needed works_description equipment_needed "
            "equipment_description other_impacts opportunity_report"
        ).split()
    }
    blank = {
        "signed_in_as": carte_me,
        "campaign": {"label": "Rentrée 2026"},
        "prefilled": {"referent_uai": "0311234T", "concerned_uai": "0311234T"},
        "establishments": ["0311234T", "0311235U"],
        "labels": labels,
        "choices": {
            "modality": {"S": "Scolaire", "A": "Apprentissage"},
            "measure": {"ouverture": "Ouverture", "fermeture": "Fermeture"},
            "recruitment_zones": {"31": "Haute-Garonne", "34": "Hérault"},
        },
    }
    catalogue = {
        "variant_count": 30,
        "levels": [
            {
                "label": f"Niveau {level}",
                "diplomas": [
                    {
                        "title": f"Diplôme {level}-{d}",
                        "cfd": f"5002341{d}",
                        "rncp": "RNCP35282",
                        "variants": [
                            {"id": level * 100 + d * 10 + v, "label": f"Diplôme {d} en {v} ans"}
                            for v in (1, 2)
                        ],
                    }
                    for d in range(5)
                ],
            }
            for level in (3, 4, 5)
        ],
    }
    reviews = {
        "signed_in_as": "Vous êtes connecté en tant que relecteur avec l'identifiant AC-TLS",
        "campaign": {"label": "Rentrée 2020", "state_label": "Ouverte"},
        "items": [
            {
                "id": 16800 + i,
                "concerned_uai": "0311234T",
                "academy_label": "Académie de Toulouse",
                "department": "31",
                "measure_label": "Fermeture",
                "diploma": {"label": "CAP Ébéniste en 2 ans"},
                "modality": "S",
                "current_capacity": 24,
                "new_capacity": 0,
                "validated_at": "2020-01-15T10:00:00+00:00",
            }
            for i in range(ROWS)
        ],
        "total": 120,
        "page": 1,
        "per_page": ROWS,
        "choices": {
            "academy": {"toulouse": "Académie de Toulouse", "montpellier": "Montpellier"},
            "measure": {"fermeture": "Fermeture", "ouverture": "Ouverture"},
        },
    }
    return {
        "identity.get_me": {
            "display_name": "Jeanne Martin",
            "profile": "Gestionnaire de compte",
            "org_name": "A.F.T.I.",
        },
        "identity.list_users": users,
        "identity.list_registrations": registrations,
        "identity.get_carte_me": {"signed_in_as": carte_me},
        "survey.list_surveys": {"items": surveys},
        "survey.get_survey": survey,
        "survey.get_campaign": campaign,
        "survey.list_statuses": statuses,
        "carte.dashboard": dashboard,
        "carte.new_request_form": blank,
        "carte.get_catalogue": catalogue,
        "carte.list_validated": reviews,
    }


MANAGER = ("manager",)
AGENCY = ("agency_admin",)
ESTABLISHMENT = ("carte_establishment",)
REVIEWER = ("carte_reviewer",)
PAGES = [  # (name, roles or None for a visitor, path)
    ("sign-in", None, "/connexion"),
    ("home", MANAGER, "/"),
    ("surveys (tiles)", MANAGER, "/enquetes"),
    ("survey detail", MANAGER, "/statuts/s1"),
    ("users", MANAGER, "/utilisateurs"),
    ("agency registrations", AGENCY, "/agence/inscriptions"),
    ("agency statuses (50)", AGENCY, "/agence/enquetes/c1"),
    ("carte dashboard", ESTABLISHMENT, "/carte/"),
    ("carte request form", ESTABLISHMENT, "/carte/demandes/nouvelle"),
    ("carte reviews (50)", REVIEWER, "/carte/relecture"),
]


def build_app():
    import gateway
    from gateway import create_app

    app = create_app(
        {
            "TESTING": True,
            "AMQP_URI": "amqp://guest:guest@127.0.0.1:1/",  # never reached: rpc is faked
            "SESSION_SECRET": "s" * 32,
            "REVOCATION_SOURCE": lambda since: {"now": None, "revoked": []},
            "RATELIMIT_ENABLED": False,
        }
    )
    fake = FakeRpc(answers())
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        module = importlib.import_module(info.name)
        if callable(getattr(module, "rpc", None)) and info.name != "gateway.rpc":
            module.rpc = fake
    return app


def client_for(app, roles):
    from gateway.auth import COOKIE, issue_token

    client = app.test_client()
    if roles:
        with app.app_context():
            token = issue_token("sid", {"user_id": "u1", "org_id": "o1", "roles": list(roles)})
        client.set_cookie(COOKIE, token)
    return client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=20, help="loads of each page (N)")
    parser.add_argument("--dump", type=Path, help="write each page's body in this folder")
    args = parser.parse_args()
    app = build_app()
    print(f"# {len(PAGES)} pages, N={args.loads} loads each, services faked, test client")
    print(f"{'page':<24} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>8}  path")
    for name, roles, path in PAGES:
        client = client_for(app, roles)
        client.get(path)  # warm-up: templates compiled, caches filled
        times, size, status = [], 0, 0
        for _ in range(args.loads):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            size, status = len(response.get_data()), response.status_code
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            (args.dump / (name.split(" (")[0].replace(" ", "-") + ".html")).write_bytes(
                response.get_data()
            )
        print(
            f"{name:<24} {status:>6} {percentile(times, 50):>8.2f} "
            f"{percentile(times, 95):>8.2f} {size:>8}  {path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Carte des formations: dashboard and reviewer-list latency and throughput
through the gateway with 10,000 requests in the campaign, against the bare
RPC behind them (``carte.dashboard``, ``carte.list_validated``), in one run.

    PYTHONPATH=. .venv/bin/python bench/carte_bench.py [--requests 10000]
        [--seconds 5] [--clients 1,10]

The platform is started on a fresh vhost and fresh databases (``bench.harness``);
accounts, campaign and catalogue are made through the gateway like an
administrator would; the 10,000 validated requests are written straight into
the carte database (COPY), spread over 500 establishments of both academies.
The measured establishment has 20 requests; the reviewer (scope « all »)
reads the first page of 50 of the 10,000, with their count.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
import urllib.parse

import requests

from bench import clients as bench_clients
from bench.harness import PG_ADMIN_DSN, platform
from bench.load import run_load
from bench.stats import ratio

CATALOGUE = (
    "niveau;diplome;code_diplome;rncp;duree\n"
    "5;BTS Management commercial opérationnel;32031213;RNCP38368;2\n"
    "3;CAP Ébéniste;50023418;RNCP35282;2\n"
    "4;Bac pro Métiers du commerce et de la vente;40031209;;3\n"
).encode()
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
ESTABLISHMENTS = 500


def uai(department: str, number: int) -> str:
    digits = f"{department}{number:04d}"
    return digits + LETTERS[int(digits) % 23]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def post(url: str, headers: dict, **kwargs) -> dict:
    response = requests.post(url, headers=headers, timeout=60, **kwargs)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {url}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def carte_sign_in(base: str, identifier: str, password: str) -> str:
    return post(
        f"{base}/api/v1/carte/sessions", {}, json={"identifier": identifier, "password": password}
    )["token"]


def seed(base: str, admin: dict, prefix: str, total: int) -> dict:
    """Accounts, campaign and catalogue through the gateway; requests by COPY."""
    admin_headers = bench_clients.bearer(
        bench_clients.sign_in(base, admin["email"], admin["password"])
    )
    today = dt.date.today()
    current = requests.get(
        f"{base}/api/v1/carte/campaigns/current", headers=admin_headers, timeout=30
    ).json()["campaign"]
    if current and current["state"] == "open":  # the demo data's (carte.seed)
        campaign = current
    else:
        campaign = post(
            f"{base}/api/v1/carte/campaigns",
            admin_headers,
            json={
                "school_year": today.year + 1,
                "opens_on": (today - dt.timedelta(days=1)).isoformat(),
                "closes_on": (today + dt.timedelta(days=30)).isoformat(),
            },
        )
    post(
        f"{base}/api/v1/carte/catalogue/imports",
        admin_headers,
        files={"file": ("catalogue.csv", CATALOGUE, "text/csv")},
    )
    tree = requests.get(f"{base}/api/v1/carte/catalogue", headers=admin_headers, timeout=30).json()
    variants = [v["id"] for lv in tree["levels"] for d in lv["diplomas"] for v in d["variants"]]
    mine = uai("031", 1)
    lycee = post(
        f"{base}/api/v1/carte/accounts",
        admin_headers,
        json={
            "kind": "establishment",
            "identifier": mine,
            "label": "Lycée mesuré",
            "contact_email": "lycee@bench.invalid",
        },
    )
    region = post(
        f"{base}/api/v1/carte/accounts",
        admin_headers,
        json={
            "kind": "reviewer",
            "identifier": "REGION-BENCH",
            "label": "Région",
            "contact_email": "region@bench.invalid",
            "scope": "all",
        },
    )
    rows = []
    per_uai = max(1, total // ESTABLISHMENTS)
    now = dt.datetime.now(dt.UTC)
    report = "Synthèse du rapport d'opportunité. " * 15
    rng = random.Random(2020)
    for index in range(total):
        number = index // per_uai + 1
        department = "031" if number % 2 else "034"
        concerned = mine if number == 1 else uai(department, number)
        measure = rng.choice(["ouverture", "fermeture", "augmentation", "diminution"])
        current, new = {
            "ouverture": (0, 12),
            "fermeture": (24, 0),
            "augmentation": (12, 24),
            "diminution": (24, 12),
        }[measure]
        filed_by = lycee["account"]["user_id"] if number == 1 else f"bench{number:027d}"
        rows.append(
            (
                campaign["id"],
                "validated",
                1,
                filed_by,
                "establishment",
                concerned[:32],
                concerned,
                concerned,
                department[1:],
                "toulouse" if department == "031" else "montpellier",
                "Responsable",
                "0561000000",
                "projet@bench.invalid",
                "S",
                rng.choice(variants),
                measure,
                False,
                index % per_uai + 1,
                current,
                new,
                True,
                today - dt.timedelta(days=30),
                '["academique"]',
                False,
                False,
                report,
                now,
                now,
                now,
            )
        )
    import psycopg

    parts = urllib.parse.urlsplit(PG_ADMIN_DSN)
    dsn = urllib.parse.urlunsplit(parts._replace(path=f"/{prefix}_carte"))
    columns = (
        "campaign_id, status, version, filed_by, filer_kind, filer_identifier, referent_uai,"
        " concerned_uai, department, academy, manager_name, manager_phone, manager_email,"
        " modality, variant_id, measure, linked, priority, current_capacity, new_capacity,"
        " first_filing, cp_ca_date, recruitment_zones, works_needed, equipment_needed,"
        " opportunity_report, created_at, updated_at, validated_at"
    )
    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy(f"COPY requests ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("ANALYZE requests")
    return {
        "lycee": carte_sign_in(base, mine, lycee["password"]),
        "region": carte_sign_in(base, "REGION-BENCH", region["password"]),
        "mine": mine,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,10")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    results: dict = {}
    with platform(log=log) as running:
        base = running.gateway_url
        log(f"seeding {args.requests} validated requests…")
        started = time.perf_counter()
        tokens = seed(base, running.system.admin, running.db_prefix, args.requests)
        log(f"seeded in {time.perf_counter() - started:.1f} s")
        lycee, region = tokens["lycee"], tokens["region"]
        scenarios = {
            # the floor: the same client, one RPC to carte and a SELECT 1
            "carte.health bare RPC": bench_clients.bare_rpc(
                running.amqp_uri, "carte", "health", bench_clients.caller_context(region)
            ),
            "dashboard via gateway": bench_clients.http_get(
                f"{base}/api/v1/carte/requests", bench_clients.bearer(lycee)
            ),
            "dashboard bare RPC": bench_clients.bare_rpc(
                running.amqp_uri, "carte", "dashboard", bench_clients.caller_context(lycee)
            ),
            "reviewer list via gateway": bench_clients.http_get(
                f"{base}/api/v1/carte/reviews?per_page=50", bench_clients.bearer(region)
            ),
            "reviewer list bare RPC": bench_clients.bare_rpc(
                running.amqp_uri, "carte", "list_validated", bench_clients.caller_context(region)
            ),
        }
        check = requests.get(f"{base}/api/v1/carte/reviews", headers=bench_clients.bearer(region))
        total = check.json()["total"]
        dashboard = requests.get(
            f"{base}/api/v1/carte/requests", headers=bench_clients.bearer(lycee)
        ).json()
        log(f"reviewer sees {total} requests; the dashboard lists {len(dashboard['validated'])}")
        for clients in counts:
            for name, factory in scenarios.items():
                log(f"{name}: {clients} client(s), {args.seconds:g} s…")
                result = run_load(factory, clients, args.seconds, args.warmup)
                results.setdefault(name, {})[clients] = result.summary()
    print_report(results, counts, args, total, len(dashboard["validated"]))
    return 0


def print_report(results: dict, counts: list[int], args, total: int, listed: int) -> None:
    print(
        f"\ncarte bench: {total} validated requests in the campaign; the dashboard lists "
        f"{listed}; the reviewer list is a page of 50 with its count; {args.seconds:g} s each."
    )
    print(f"{'scenario':<28}{'clients':>8}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, per in results.items():
        for clients in counts:
            s = per[clients]
            print(
                f"{name:<28}{clients:>8}{s['calls_per_s']:>10}{s['p50_ms']:>9}"
                f"{s['p99_ms']:>9}{s['errors']:>8}"
            )
    floor = results.get("carte.health bare RPC")
    if floor:
        print("\nthe use case's own work: bare RPC p50 minus carte.health's (RPC + SELECT 1):")
        for page in ("dashboard", "reviewer list"):
            for clients in counts:
                own = results[f"{page} bare RPC"][clients]["p50_ms"] - floor[clients]["p50_ms"]
                print(f"  {page:<14} {clients:>3} client(s): {own:.2f} ms")
    print("\ngateway / bare RPC (same run, same machine):")
    for page in ("dashboard", "reviewer list"):
        for clients in counts:
            gw = results[f"{page} via gateway"][clients]
            bare = results[f"{page} bare RPC"][clients]
            through = ratio(gw["calls_per_s"], bare["calls_per_s"])
            latency = ratio(gw["p50_ms"], bare["p50_ms"])
            print(
                f"  {page:<14} {clients:>3} client(s): throughput x{through:.2f}, "
                f"p50 x{latency:.2f}"
            )
    print(json.dumps({"results": results}, default=str), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

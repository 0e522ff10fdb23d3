"""Survey side, measured in one run on this machine (docs/architecture.md §6):

1. generation of the locked form for 50 certifications × 5 establishments;
2. validation of the filled form against python-calamine's plain read of the
   same file (target: within 3×);
3. import of a 10,000-row certification list (read + every row checked);
4. a deadline spike through the gateway (loopback only, stops by itself):
   many organisations transmitting at once, with retries honouring
   ``Retry-After``; transmissions/s, p50/p99, status codes, 5xx, and a
   count of what was recorded against what was acknowledged.

    PYTHONPATH=. .venv/bin/python bench/survey_bench.py [--orgs 60] [--per-org 3]
        [--clients 24] [--deadline 240] [--skip-spike]

1–3 run in this process (the survey service's own code, no network). 4
starts the platform on a fresh RabbitMQ vhost and fresh PostgreSQL databases
(``bench.harness`` helpers) with a SIRENE stand-in serving generated
fictional organisations, registers and validates them through the gateway as
people would, prepares each one's survey, then releases all transmissions at
once. Everything started is removed at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "libs" / "kit", ROOT / "services" / "survey"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)

import openpyxl  # noqa: E402
import python_calamine  # noqa: E402
import requests  # noqa: E402

from bench.stats import percentile  # noqa: E402
from services.survey.tests.support import GUIDE_ROWS, HEADER, fill_form, workbook_bytes  # noqa: E402
from survey import use_cases as uc  # noqa: E402
from survey import xlsx  # noqa: E402
from survey.domain import form as form_rules  # noqa: E402

SECRET = b"bench-secret-" * 4


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------- 1–3: in process


def big_snapshot(certifications: int = 50, establishments: int = 5) -> dict:
    return {
        "survey_id": "bench-survey",
        "campaign": {
            "id": "bench-campaign",
            "name": "Enquête CFA",
            "direction": "DIRECTION_1",
            "return_due": "15/07/2021",
            "closes": "15/07/2021",
        },
        "organisation": {
            "id": "bench-org",
            "name": "CFA DE MESURE",
            "siret": "41816609600051",
            "uai": "0750654D",
            "nda": "11930882293",
            "account_type": "OFA",
            "parent_name": "",
        },
        "establishments_count": establishments,
        "trainings_count": certifications,
        "certifications": [
            {
                "code": f"{46000000 + i:08d}",
                "title": f"CERTIFICATION DE MESURE {i}",
                "rncp": f"RNCP{30000 + i}",
                "level": f"niveau{3 + i % 6}",
                "type": "BTS",
                "establishments": establishments,
            }
            for i in range(certifications)
        ],
    }


def generate(snapshot: dict) -> tuple[bytes, str]:
    layout = form_rules.build_layout(snapshot)
    digest = form_rules.layout_digest(layout)
    meta = {
        "format": form_rules.FORMAT,
        "purpose": form_rules.OFFICIAL,
        "survey_id": snapshot["survey_id"],
        "org_id": snapshot["organisation"]["id"],
        "campaign_id": snapshot["campaign"]["id"],
        "form_version": 1,
        "digest": digest,
    }
    content = xlsx.render_form(
        layout, form_rules.meta_rows(SECRET, meta), protect=True, password="bench"
    )
    return content, digest


def calamine_read(content: bytes) -> None:
    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(content))
    for name in book.sheet_names:
        book.get_sheet_by_name(name).to_python(skip_empty_area=False)
    book.close()


def validate(content: bytes, snapshot: dict, digest: str) -> None:
    """What the survey service does with a transmitted form once files has
    stored it: read it (bounded), check the signature, then every cell."""
    book = xlsx.read_book(content)
    meta = form_rules.read_meta(book.values[form_rules.META])
    assert form_rules.signature_valid(SECRET, meta)
    _values, structure, problems = uc._check_form(book, snapshot, digest)
    assert not structure and not problems, (structure[:3], problems[:3])


def certification_list(rows: int) -> bytes:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Certifications")
    ws.append(HEADER)
    for i in range(rows):
        ws.append(
            [
                f"{10000000 + i:08d}",
                f"CERTIFICATION {i}",
                f"RNCP{10000 + i % 80000}",
                f"niveau{3 + i % 6}",
                "BTS",
                1 + i % 3,
            ]
        )
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def in_process(runs: int) -> dict:
    snapshot = big_snapshot()
    generation = median_time(lambda: generate(snapshot), max(3, runs // 3))
    content, digest = generate(snapshot)
    filled = fill_form(content)
    validate(filled, snapshot, digest)  # warm-up and correctness
    read_times, validate_times = [], []
    for _ in range(runs):  # interleaved: both see the same machine load
        start = time.perf_counter()
        calamine_read(filled)
        read_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        validate(filled, snapshot, digest)
        validate_times.append(time.perf_counter() - start)
    listing = certification_list(10_000)
    certs, problems = uc._read_certifications(listing, 3)
    assert len(certs) == 10_000 and not problems
    imported = median_time(lambda: uc._read_certifications(listing, 3), 3)
    read_ms = statistics.median(read_times) * 1000
    validate_ms = statistics.median(validate_times) * 1000
    return {
        "form_cells": len(form_rules.build_layout(snapshot).inputs),
        "form_bytes": len(content),
        "generation_ms": round(generation * 1000, 1),
        "calamine_read_ms": round(read_ms, 2),
        "validation_ms": round(validate_ms, 2),
        "validation_ratio": round(validate_ms / read_ms, 2),
        "import_10000_rows_ms": round(imported * 1000, 1),
        "list_bytes": len(listing),
    }


# ---------------------------------------------------------------- 4: the deadline spike


def fictional_registry(count: int) -> dict:
    """SIRENE stand-in data: ``count`` active training organisations."""
    from stdnum import luhn

    units, sirets = [], []
    for n in range(count):
        base = f"{81000000 + n:08d}"
        siren = base + luhn.calc_check_digit(base)
        siret = siren + "0001" + luhn.calc_check_digit(siren + "0001")
        sirets.append(siret)
        units.append(
            {
                "siren": siren,
                "nom_complet": f"CFA DE CHARGE {n}",
                "nom_raison_sociale": f"CFA DE CHARGE {n}",
                "sigle": None,
                "etat_administratif": "A",
                "etablissements": [
                    {
                        "siret": siret,
                        "est_siege": True,
                        "etat_administratif": "A",
                        "adresse": f"{n} RUE DE LA MESURE 75001 PARIS",
                        "libelle_commune": "PARIS",
                        "code_postal": "75001",
                    }
                ],
            }
        )
    return {"_about": "generated by bench/survey_bench.py", "unites_legales": units}, sirets


class Spike:
    def __init__(self, base: str, mail_api: str, admin: dict, args):
        self.base = base.rstrip("/")
        self.mail_api = mail_api
        self.admin = admin
        self.args = args
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def call(self, method: str, path: str, expect=(200, 201), **kwargs) -> requests.Response:
        response = self.session().request(method, self.base + path, timeout=120, **kwargs)
        if expect and response.status_code not in expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def sign_in(self, email: str, password: str) -> dict:
        token = self.call("POST", "/api/v1/sessions", json={"email": email, "password": password})
        return {"Authorization": f"Bearer {token.json()['token']}"}

    def confirm_link(self, email: str) -> str:
        import re

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for message in requests.get(self.mail_api, params={"to": email}, timeout=10).json():
                found = re.search(
                    r"https?://\S+/inscription/confirmer\?token=\S+", message["text"] or ""
                )
                if found:
                    return found.group(0).rstrip(".,;)>\"'")
            time.sleep(0.2)
        raise RuntimeError(f"no confirmation e-mail for {email}")

    def register(self, siret: str, index: int, password: str) -> str:
        import re

        email = f"charge{index}.{uuid.uuid4().hex[:6]}@bench.invalid"
        self.call(
            "POST",
            "/api/v1/registrations",
            expect=(202,),
            json={
                "account_type": "OFA",
                "siret": siret,
                "nda": "11930882293",
                "uai": "0750654D",
                "apprentice_count": "10",
                "last_name": "Mesure",
                "first_name": f"Gestion{index}",
                "email": email,
                "email_confirm": email,
                "password": password,
                "password_confirm": password,
            },
        )
        link = self.confirm_link(email)
        page = self.session().get(link, timeout=30)
        token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
        confirmed = self.session().post(link.split("?")[0], data={"token": token}, timeout=30)
        if confirmed.status_code != 200:
            raise RuntimeError(f"confirmation of {email}: {confirmed.status_code}")
        return email

    def prepare(
        self, agency: dict, sirets: list[str], forms_per_org: int | None = None
    ) -> list[dict]:
        password = "bench horse 4242"
        with ThreadPoolExecutor(4) as pool:
            emails = list(
                pool.map(lambda p: self.register(p[1], p[0], password), enumerate(sirets))
            )
        pending = self.call("GET", "/api/v1/registrations", headers=agency).json()["items"]
        by_email = {row["email"]: row["id"] for row in pending}
        for email in emails:
            self.call("POST", f"/api/v1/users/{by_email[email]}/validate", headers=agency)
        campaign = self.call(
            "POST",
            "/api/v1/survey-campaigns",
            headers=agency,
            json={
                "name": "Enquête CFA (charge)",
                "online_on": "2020-01-01",
                "transmission_opens_on": "2020-01-01",
                "return_due_on": "2099-01-01",
                "closes_on": "2099-01-01",
            },
        ).json()
        certification_file = workbook_bytes({"Certifications": [HEADER, *GUIDE_ROWS]})

        def ready(email: str) -> dict:
            headers = self.sign_in(email, password)
            items = self.call("GET", "/api/v1/surveys", headers=headers).json()["items"]
            [row] = [r for r in items if r["campaign_id"] == campaign["id"]]
            sid = row["id"]
            self.call(
                "PUT",
                f"/api/v1/surveys/{sid}/required-data",
                headers=headers,
                json={"establishments_count": 2, "trainings_count": 3},
            )
            self.call(
                "POST",
                f"/api/v1/surveys/{sid}/certifications/import",
                headers=headers,
                files={"file": ("Liste-certifications.xlsx", certification_file)},
            )
            form = self.call("GET", f"/api/v1/surveys/{sid}/form", headers=headers).content
            filled = [
                fill_form(form, lambda s, r, c, k=k: (r + c + k) % 90 + 0.5)
                for k in range(forms_per_org or self.args.per_org)
            ]
            return {"headers": headers, "sid": sid, "forms": filled}

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(ready, emails))

    def run(self, orgs: list[dict], first: int = 0, count: int | None = None) -> dict:
        """Releases every organisation's forms ``first`` to ``first + count``
        (default: ``per_org`` from the first) at once."""
        count = self.args.per_org if count is None else count
        tasks = [(org, k) for org in orgs for k in range(first, first + count)]
        random.Random(7 + first).shuffle(tasks)
        lock = threading.Lock()
        statuses: Counter = Counter()
        latencies: list[float] = []
        acknowledged: Counter = Counter()
        failures: list[str] = []
        retry_after_missing = 0
        deadline = time.monotonic() + self.args.deadline
        barrier = threading.Barrier(self.args.clients)
        queue = list(tasks)

        def worker() -> None:
            nonlocal retry_after_missing
            barrier.wait()
            while True:
                with lock:
                    if not queue:
                        return
                    org, k = queue.pop()
                key = f"{org['sid']}-{k}"
                while True:
                    if time.monotonic() > deadline:
                        with lock:
                            failures.append(f"{key}: deadline")
                        break
                    start = time.perf_counter()
                    try:
                        response = self.session().post(
                            f"{self.base}/api/v1/surveys/{org['sid']}/transmissions",
                            headers={**org["headers"], "Idempotency-Key": key},
                            files={"file": ("Compte cfa.xlsx", org["forms"][k])},
                            timeout=120,
                        )
                    except requests.RequestException as exc:
                        with lock:
                            statuses["connection-error"] += 1
                            failures.append(f"{key}: {exc!r}")
                        time.sleep(1)
                        continue
                    elapsed = time.perf_counter() - start
                    with lock:
                        statuses[response.status_code] += 1
                    if response.status_code in (200, 201):
                        with lock:
                            latencies.append(elapsed)
                            acknowledged[org["sid"]] += 1
                        break
                    if response.status_code in (429, 503):
                        wait = response.headers.get("Retry-After")
                        if wait is None:
                            with lock:
                                retry_after_missing += 1
                        time.sleep(min(float(wait or 1), 5) * random.uniform(0.5, 1.0))
                        continue
                    with lock:
                        failures.append(f"{key}: {response.status_code} {response.text[:200]}")
                    break

        threads = [threading.Thread(target=worker) for _ in range(self.args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        window = time.perf_counter() - started
        recorded = 0
        lost = 0
        for org in orgs:
            items = self.call(
                "GET", f"/api/v1/surveys/{org['sid']}/transmissions", headers=org["headers"]
            ).json()["items"]
            recorded += len(items)
            lost += max(0, acknowledged[org["sid"]] - len(items))
        server_errors = sum(
            n
            for code, n in statuses.items()
            if isinstance(code, int) and code >= 500 and code != 503
        )
        return {
            "organisations": len(orgs),
            "transmissions": len(tasks),
            "clients": self.args.clients,
            "seconds": round(window, 2),
            "acknowledged": sum(acknowledged.values()),
            "recorded": recorded,
            "lost": lost,
            "transmissions_per_s": round(sum(acknowledged.values()) / window, 2) if window else 0,
            "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "5xx_other_than_503": server_errors,
            "overload_without_retry_after": retry_after_missing,
            "failures": failures[:10],
        }


def spike(args) -> dict:
    with spike_platform(args) as (_system, runner, orgs):
        return runner.run(orgs)


@contextmanager
def spike_platform(args, forms_per_org: int | None = None):
    """The platform with ``args.orgs`` organisations registered, validated
    and ready to transmit (``forms_per_org`` filled forms each, default
    ``args.per_org``): yields ``(system, Spike, orgs)``; removes everything
    on the way out."""
    from bench.harness import _cleanup, create_databases, create_vhost
    from deploy.launcher import Config, System

    data, sirets = fictional_registry(args.orgs)
    work = Path(tempfile.mkdtemp(prefix="survey-bench-"))
    registry = work / "sirene.json"
    registry.write_text(json.dumps(data), encoding="utf-8")
    stand_in = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "deploy" / "sirene_standin.py"),
            "--port",
            "0",
            "--data",
            str(registry),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    token = uuid.uuid4().hex[:10]
    vhost = prefix = f"bench_survey_{token}"
    created: list[str] = []
    system = None
    vhost_made = False
    try:
        port = json.loads(stand_in.stdout.readline())["port"]
        amqp_uri = create_vhost(vhost)
        vhost_made = True
        env = create_databases(prefix, created) | {
            "RATELIMIT_ENABLED": "false",
            "STAFF_TOTP_REQUIRED": "0",  # the admin signs in without a code
        }
        system = System(
            Config(
                data_dir=work / "data",
                amqp_uri=amqp_uri,
                env=env,
                sirene_url=f"http://127.0.0.1:{port}",
                web_concurrency=2,
                ready_timeout=180.0,
                python=sys.executable,
                root=ROOT,
            )
        )
        log("starting the platform…")
        system.start()
        runner = Spike(system.gateway_url, system.mail_api_url, system.admin, args)
        agency = runner.sign_in(system.admin["email"], system.admin["password"])
        log(f"registering, validating and preparing {args.orgs} organisations…")
        started = time.perf_counter()
        orgs = runner.prepare(agency, sirets, forms_per_org)
        log(
            f"  ready in {time.perf_counter() - started:.0f} s; the spike begins "
            f"({len(orgs) * args.per_org} transmissions, {args.clients} clients)…"
        )
        yield system, runner, orgs
    finally:
        _cleanup(system, vhost if vhost_made else None, created, work / "data", log)
        stand_in.terminate()
        stand_in.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=15, help="repetitions of the in-process timings"
    )
    parser.add_argument("--orgs", type=int, default=60, help="organisations in the spike")
    parser.add_argument("--per-org", type=int, default=3, help="transmissions per organisation")
    parser.add_argument("--clients", type=int, default=24, help="concurrent HTTP clients")
    parser.add_argument("--deadline", type=float, default=240, help="seconds the spike may last")
    parser.add_argument("--skip-spike", action="store_true", help="only the in-process figures")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    log("in-process measurements…")
    figures = {"in_process": in_process(args.runs)}
    local = figures["in_process"]
    print(
        f"form 50 certifications × 5 establishments: generation {local['generation_ms']} ms "
        f"({local['form_cells']} input cells, {local['form_bytes'] // 1024} KiB)"
    )
    verdict = "PASS" if local["validation_ratio"] <= 3 else "MISS"
    print(
        f"validation of the filled form: {local['validation_ms']} ms vs calamine read "
        f"{local['calamine_read_ms']} ms → ratio {local['validation_ratio']} "
        f"(target ≤ 3: {verdict})"
    )
    print(
        f"import of a 10,000-row certification list: {local['import_10000_rows_ms']} ms "
        f"({local['list_bytes'] // 1024} KiB)"
    )
    if not args.skip_spike:
        result = spike(args)
        figures["spike"] = result
        ok = result["lost"] == 0 and result["5xx_other_than_503"] == 0
        print(
            f"deadline spike: {result['acknowledged']}/{result['transmissions']} transmissions of "
            f"{result['organisations']} organisations in {result['seconds']} s = "
            f"{result['transmissions_per_s']}/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms; "
            f"statuses {result['statuses']}; recorded {result['recorded']}, lost {result['lost']}, "
            f"5xx other than 503: {result['5xx_other_than_503']}, overload answers without "
            f"Retry-After: {result['overload_without_retry_after']} ({'PASS' if ok else 'MISS'})"
        )
        for failure in result["failures"]:
            print(f"  failure: {failure}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

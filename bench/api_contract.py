"""Schemathesis against the running gateway, signed in as the agency
administrator: does the API do what its OpenAPI document says?

    PYTHONPATH=. .venv/bin/python bench/api_contract.py            # all checks, all phases
    PYTHONPATH=. .venv/bin/python bench/api_contract.py --max-examples 5 --phases examples,coverage

Starts the whole platform on its own vhost and databases (``bench.harness``),
signs the seeded administrator in, runs ``schemathesis run`` with the bearer
token on ``/api/v1/openapi.json``, prints its summary and removes everything on
the way out. The exit code is schemathesis's (0: no failure).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.clients import sign_in
from bench.harness import platform

ROOT = Path(__file__).resolve().parent.parent

# Operations that end the run's own session or change its credentials: run, they
# turn every later case into a 401 that says nothing about the operation tested.
SELF_DESTRUCTIVE = [
    "signOut",
    "changePassword",
    "beginTotpEnrolment",
    "confirmTotpEnrolment",
    "disableTotp",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", default="all")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--max-examples", type=int, default=20)
    parser.add_argument("--max-time", type=int, default=900, help="seconds for the whole run")
    parser.add_argument("--report-dir", default=str(ROOT / "bench" / "results" / "schemathesis"))
    parser.add_argument("--include-path-regex", default=None)
    args = parser.parse_args()

    with platform(log=lambda line: print(line, file=sys.stderr)) as running:
        base = running.system.gateway_url.rstrip("/")
        admin = running.system.admin or {}
        token = sign_in(base, admin["email"], admin["password"])
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{base}/api/v1/openapi.json",
            "--url",
            base,
            "--checks",
            args.checks,
            "--phases",
            args.phases,
            "--max-examples",
            str(args.max_examples),
            "--max-time",
            str(args.max_time),
            "--header",
            f"Authorization: Bearer {token}",
            "--workers",
            "2",
            "--seed",
            "1",
            "--report",
            "ndjson",
            "--report-dir",
            args.report_dir,
            "--no-color",
        ]
        for operation_id in SELF_DESTRUCTIVE:
            command += ["--exclude-operation-id", operation_id]
        if args.include_path_regex:
            command += ["--include-path-regex", args.include_path_regex]
        started = time.monotonic()
        done = subprocess.run(command, env=dict(os.environ), check=False)
        print(f"schemathesis: exit {done.returncode} after {time.monotonic() - started:.0f} s")
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())

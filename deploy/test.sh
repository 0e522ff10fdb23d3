#!/usr/bin/env bash
# README command 2: install the dependencies, make sure RabbitMQ (with its
# management API, used to create a vhost per test) and PostgreSQL answer on
# this machine, then lint and run the whole test suite.
# Usage: bash deploy/test.sh [pytest arguments…]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { echo "test.sh: $*" >&2; }

install() {
    local python="${PYTHON:-}"
    if [[ -z "$python" ]]; then
        python="$(command -v python3.11 || command -v python3 || true)"
    fi
    if [[ ! -x .venv/bin/python ]]; then
        if [[ -z "$python" ]] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            say "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)."
            exit 1
        fi
        "$python" -m venv .venv || { say "cannot create .venv (Debian: apt-get install python3-venv)"; exit 1; }
    fi
    local stamp=.venv/.requirements.sha256 sum
    sum="$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' requirements.txt)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$sum" ]]; then
        say "installing dependencies"
        .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
        echo "$sum" > "$stamp"
    fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            say "$what did not answer within ${seconds}s"
            return 1
        fi
        sleep 1
    done
}

rabbit_api_up() {
    .venv/bin/python - <<'PY' 2>/dev/null
import base64, sys, urllib.request
request = urllib.request.Request("http://127.0.0.1:15672/api/overview")
request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
sys.exit(0 if urllib.request.urlopen(request, timeout=3).status == 200 else 1)
PY
}

ensure_rabbitmq() {
    if ! port_open 127.0.0.1 5672; then
        if ! command -v rabbitmq-server >/dev/null; then
            say "RabbitMQ is not running on 127.0.0.1:5672 and is not installed:"
            say "install it (Debian/Ubuntu: apt-get install rabbitmq-server) and run again."
            exit 1
        fi
        say "starting RabbitMQ"
        rabbitmq-server -detached
        wait_for 120 "RabbitMQ (127.0.0.1:5672)" port_open 127.0.0.1 5672
    fi
    if ! rabbit_api_up; then
        say "enabling the RabbitMQ management plugin"
        rabbitmq-plugins enable rabbitmq_management >/dev/null
        wait_for 60 "the RabbitMQ management API (127.0.0.1:15672)" rabbit_api_up
    fi
}

pg_up() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h 127.0.0.1 -p 5432
    else
        port_open 127.0.0.1 5432
    fi
}

ensure_postgres() {
    pg_up && return 0
    if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
        say "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
        wait_for 60 "PostgreSQL (127.0.0.1:5432)" pg_up
    else
        say "PostgreSQL does not answer on 127.0.0.1:5432: install and start it"
        say "(Debian/Ubuntu: apt-get install postgresql), or set TEST_PG_DSN."
        exit 1
    fi
}

# the offline checks of deploy/: kubectl renders the kustomize overlays and
# docker compose validates docker-compose.yml (no engine needed for either)
ensure_deploy_tools() {
    local missing=()
    command -v kubectl >/dev/null || missing+=(kubectl)
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
        missing+=(docker-compose)
    fi
    ((${#missing[@]})) || return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} (offline manifest checks)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
            || say "could not install ${missing[*]}: their checks are skipped"
    else
        say "${missing[*]} missing: their checks are skipped (Debian: apt-get install ${missing[*]})"
    fi
}

# the malware-scan tests start a real clamd with a signature database they
# write (files.clamd_sandbox): no freshclam, no internet needed
ensure_clamd() {
    command -v clamd >/dev/null || [[ -x /usr/sbin/clamd ]] && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing clamav-daemon (malware-scan tests)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q clamav-daemon >/dev/null \
            || say "could not install clamav-daemon: the scan tests are skipped"
        # the package starts its own daemon, which needs signatures we do not
        # have offline: the tests start their own
        if command -v systemctl >/dev/null; then
            systemctl disable --now clamav-daemon clamav-freshclam >/dev/null 2>&1 || true
        fi
    else
        say "clamd missing: the scan tests are skipped (Debian: apt-get install clamav-daemon)"
    fi
}

install
ensure_deploy_tools
ensure_clamd
ensure_rabbitmq
if [[ -z "${TEST_PG_DSN:-}" ]]; then
    ensure_postgres
fi

say "ruff check . && ruff format --check ."
.venv/bin/ruff check .
.venv/bin/ruff format --check .

status=0
.venv/bin/python -m pytest -q "$@" || status=$?
if ((status == 5)); then
    say "pytest collected no test: that is a failure"
    exit 1
fi
exit "$status"

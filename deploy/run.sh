#!/usr/bin/env bash
# README command 1: install the dependencies and start the whole platform on
# its embedded defaults (SQLite files under ./data, a local mail catcher and
# SIRENE stand-in). RabbitMQ is the one server it needs (AMQP_URI); a local
# rabbitmq-server is started when installed and not running.
# Usage: bash deploy/run.sh    (Ctrl-C stops everything it started)
#   REPLICAS=survey=3,notify=2 bash deploy/run.sh   several processes of a service
#   (PostgreSQL databases needed: <SERVICE>_DB_URL; logs/survey.1.log, ...).
#   SHUTDOWN_GRACE_SECONDS (30): how long a stopping service or gateway lets
#   its in-flight work finish; STOP_GRACE (40): when the launcher kills.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

install() {
    local python="${PYTHON:-}"
    if [[ -z "$python" ]]; then
        python="$(command -v python3.11 || command -v python3 || true)"
    fi
    if [[ ! -x .venv/bin/python ]]; then
        if [[ -z "$python" ]] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "Python 3.11 ou plus récent est requis / Python 3.11 or newer is required" \
                 "(PYTHON=/chemin/vers/python3.11)." >&2
            exit 1
        fi
        "$python" -m venv .venv || {
            echo "Impossible de créer .venv / cannot create .venv" \
                 "(Debian/Ubuntu: sudo apt-get install python3-venv)." >&2
            exit 1
        }
    fi
    # Reinstall only when requirements.txt changed since the last install.
    local stamp=.venv/.requirements.sha256 sum
    sum="$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' requirements.txt)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$sum" ]]; then
        echo "Installation des dépendances / installing dependencies…"
        .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
        echo "$sum" > "$stamp"
    fi
}

install
exec .venv/bin/python deploy/launcher.py run

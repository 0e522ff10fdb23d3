#!/usr/bin/env bash
# One command for the bench: bash bench/run.sh [--seconds 5] [--clients 1,20] [--json out.json]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-$root/.venv/bin/python}"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" bench/run.py "$@"

#!/usr/bin/env bash
# Set up, then run the lint and the test suite (slow checks excluded; add -m slow for them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
# Without arguments, the fast tier on every core, at most 4 (pytest-xdist); with
# arguments (e.g. `-m slow`), exactly what they say, in one process.
if [ $# -eq 0 ]; then
  set -- -n auto --maxprocesses 4
fi
exec "$VENV/bin/python" -m pytest "$@"

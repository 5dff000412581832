#!/usr/bin/env bash
# Set up, then run the lint and the test suite (slow checks excluded; add -m slow for them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest "$@"

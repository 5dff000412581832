#!/usr/bin/env bash
# Set up, then train the default configuration (synthetic 3D data, tiny U-Net,
# distance task) for a short demo. Extra arguments are Hydra overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
exec "$VENV/bin/python" train.py "$@"

#!/usr/bin/env bash
# Create .venv (or $VENV) and install the project into it.
# torch is installed first and pinned (the CPU build on machines without a GPU), so that
# installing the project never pulls a multi-GB CUDA build. A torch already in the
# virtual environment (e.g. a CUDA build you installed yourself) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "setup: installing torch==$TORCH_VERSION"
  "$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" 2>&1 | grep -v '^WARNING: Location' || true
fi
echo "setup: installing dacapo-hydra and its dependencies"
"$VENV/bin/python" -m pip install --quiet -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c 'import dacapo_hydra, torch; print(f"setup: dacapo_hydra {dacapo_hydra.__version__}, torch {torch.__version__}")'

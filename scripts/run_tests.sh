#!/usr/bin/env bash
# The test command: set up (idempotent), then run every test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
PY="${DIFFUSION_CACHE_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
"$PY" -m pytest tests -q "$@"

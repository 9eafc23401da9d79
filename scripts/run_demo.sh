#!/usr/bin/env bash
# The main command: set up (idempotent), then run the demo workflow on the bundled tiny model.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
PY="${DIFFUSION_CACHE_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
exec "$PY" scripts/demo.py "$@"

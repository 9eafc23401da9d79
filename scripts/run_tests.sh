#!/usr/bin/env bash
# The test command: set up (idempotent), then run every test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
PY="${DIFFUSION_CACHE_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
if command -v node >/dev/null 2>&1; then
  node --test tests/web/
else
  echo "node not found: the widget's JavaScript tests are skipped" >&2
fi
"$PY" -m pytest tests -q "$@"

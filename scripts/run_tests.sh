#!/usr/bin/env bash
# The test command: set up (idempotent), then run every test suite:
#   - the widget's JavaScript tests (node --test tests/web/), once;
#   - tests/core (no ComfyUI), once, in .venv;
#   - tests/host and tests/web once per ComfyUI version found, each in its own pytest
#     process and its own environment (.venv/comfyui-<version>);
# then a summary per ComfyUI version (scripts/run_suites.py). Arguments go to every pytest run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
PY="${DIFFUSION_CACHE_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
JS=0
if command -v node >/dev/null 2>&1; then
  node --test tests/web/ || JS=$?
else
  echo "node not found: the widget's JavaScript tests are skipped" >&2
fi
PYRC=0
"$PY" scripts/run_suites.py "$@" || PYRC=$?
if [ "$JS" != 0 ]; then
  echo "FAILED  the widget's JavaScript tests (node --test tests/web/, exit $JS)"
fi
[ "$JS" = 0 ] && [ "$PYRC" = 0 ]

#!/usr/bin/env bash
# The main command: set up (idempotent), then run the demo workflow on the bundled tiny model,
# on the newest ComfyUI found (DIFFUSION_CACHE_COMFYUI=<folder> picks another), in its environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${DIFFUSION_CACHE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
cd "$ROOT"
if PICK="$("$PY" scripts/comfy_host.py pick 2>/dev/null)"; then
  IFS=$'\t' read -r VERSION COMFY <<< "$PICK"
  EPY="$VENV/comfyui-$VERSION/bin/python"
  if [ -x "$EPY" ]; then
    export DIFFUSION_CACHE_COMFYUI="$COMFY"
    exec "$EPY" scripts/demo.py "$@"
  fi
  echo "no environment for ComfyUI $VERSION at $EPY; running with $PY" >&2
fi
exec "$PY" scripts/demo.py "$@"   # says why when no ComfyUI is found

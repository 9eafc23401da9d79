#!/usr/bin/env bash
# Set up everything the demo, benchmark and tests need, idempotently:
#   - a virtual environment (.venv, or $DIFFUSION_CACHE_VENV) with torch and ComfyUI's requirements;
#   - a real ComfyUI: $COMFYUI_PATH, the ComfyUI whose custom_nodes/ holds this checkout,
#     ~/comfy/ComfyUI, or a clone of the pinned release into .comfyui where the network allows.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIFFUSION_CACHE_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet $TORCH_SPEC
fi

COMFY="$("$PY" -c "import sys; sys.path.insert(0, '$ROOT/scripts'); import comfy_host; print(comfy_host.ensure_comfyui())" 2>/dev/null || true)"
STAMP="$VENV/.diffusion_cache_setup"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" ${COMFY:+"$COMFY/requirements.txt"} 2>/dev/null | sha1sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  if [ -n "$COMFY" ]; then
    echo "[setup] installing ComfyUI's requirements from $COMFY (torch kept, torchaudio left out)"
    grep -v -E '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$VENV/comfyui-requirements.txt"
    "$PY" -m pip install --quiet -r "$VENV/comfyui-requirements.txt"
  fi
  echo "[setup] installing the pack's test and demo requirements"
  "$PY" -m pip install --quiet -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
  echo "$WANT" > "$STAMP"
fi
# browser tests: Debian's Chromium and playwright-core (never a downloaded browser build)
if [ -z "${DIFFUSION_CACHE_NO_BROWSER:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "[setup] installing Debian's chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "[setup] chromium could not be installed; the browser test will be skipped" >&2
  fi
  if command -v npm >/dev/null 2>&1 && [ ! -d "$ROOT/node_modules/playwright-core" ]; then
    echo "[setup] npm ci (playwright-core)"
    (cd "$ROOT" && npm ci --silent --no-audit --no-fund) || echo "[setup] npm ci failed; the browser test will be skipped" >&2
  fi
fi
if [ -z "$COMFY" ]; then
  echo "[setup] WARNING: no ComfyUI found or cloned; host tests will be skipped. Set COMFYUI_PATH." >&2
else
  echo "[setup] ComfyUI: $COMFY"
fi
echo "[setup] python: $PY"

#!/usr/bin/env bash
# Set up everything the demo, benchmark and tests need, idempotently:
#   - a base virtual environment (.venv, or $DIFFUSION_CACHE_VENV) with torch, torchvision
#     and the pack's own requirements (requirements.txt, requirements-dev.txt);
#   - every real ComfyUI found (scripts/comfy_host.py: $COMFYUI_PATH, which may list several,
#     the ComfyUI whose custom_nodes/ holds this checkout, ~/comfy/ComfyUI, ~/comfy/ComfyUI-0.33,
#     .comfyui), or a clone of the newest tested release into .comfyui where the network allows;
#   - for each ComfyUI version, its own environment .venv/comfyui-<version>: a venv that sees the
#     base environment's packages (torch is shared, never reinstalled) and holds that version's
#     requirements.txt (torch, torchvision and torchaudio lines left out), plus torchaudio
#     ($TORCHAUDIO_SPEC, installed without dependencies) only where that version's core imports it;
#   - a newer ComfyUI frontend ($DIFFUSION_CACHE_EXTRA_FRONTENDS) in .venv/frontends/<version>,
#     for one more browser test run with the newest ComfyUI found.
# Each step is skipped when its stamp file says it is already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DIFFUSION_CACHE_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
TORCHAUDIO_SPEC="${TORCHAUDIO_SPEC:-torchaudio==2.11.1}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# one setup at a time (the tests, the demo and a person may start it together)
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV/.setup.lock"
  flock 9
fi
"$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet $TORCH_SPEC
fi

STAMP="$VENV/.diffusion_cache_base"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha1sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing the pack's test and demo requirements into $VENV"
  "$PY" -m pip install --quiet -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
  echo "$WANT" > "$STAMP"
fi

# ---- one environment per ComfyUI version
HOST="$ROOT/scripts/comfy_host.py"
INSTALLS="$("$PY" "$HOST" ensure || true)"
BASE_SITE="$("$PY" -c "import sysconfig; p = sysconfig.get_paths(); print(p['purelib']); print(p['platlib'])" | sort -u)"

env_pip() {  # PYTHON ARGS...: pip install into a per-version environment
  local epy="$1"; shift
  local log rc=0
  log="$(mktemp)"
  "$epy" -m pip install --quiet "$@" >"$log" 2>&1 || rc=$?
  # pip warns about the shared base packages it does not own; those lines are noise
  grep -v -E "Location .* is ignored|outside environment|^\s*$" "$log" >&2 || true
  rm -f "$log"
  [ "$rc" = 0 ] || echo "[setup] ERROR: pip install $* failed ($rc)" >&2
  return "$rc"
}

setup_version() {  # VERSION PATH
  local version="$1" comfy="$2"
  local env="$VENV/comfyui-$version"
  local epy="$env/bin/python"
  local audio=""
  if "$PY" "$HOST" needs "$comfy" torchaudio; then audio="$TORCHAUDIO_SPEC"; fi
  local want
  want="$({ "$PY" "$HOST" requirements "$comfy"; echo "torchaudio: ${audio:-none}"; echo "$BASE_SITE"; \
            echo "$comfy"; } | sha1sum | cut -c1-16)"
  if [ -x "$epy" ] && [ "$(cat "$env/.diffusion_cache_setup" 2>/dev/null)" = "$want" ]; then
    echo "[setup] ComfyUI $version at $comfy: environment $env (up to date)"
    return 0
  fi
  if [ ! -x "$epy" ]; then
    echo "[setup] ComfyUI $version: creating its environment $env (on top of $VENV)"
    "$PY" -m venv --without-pip "$env" || return 1
  fi
  # the base environment's packages (torch, pytest, ...) come after this environment's own
  local site
  for site in $("$epy" -c "import sysconfig; p = sysconfig.get_paths(); print(p['purelib']); print(p['platlib'])" | sort -u); do
    mkdir -p "$site"
    echo "$BASE_SITE" > "$site/_diffusion_cache_base.pth"
  done
  echo "[setup] ComfyUI $version: installing its requirements from $comfy/requirements.txt (torch shared)"
  "$PY" "$HOST" requirements "$comfy" > "$env/comfyui-requirements.txt"
  env_pip "$epy" -r "$env/comfyui-requirements.txt" || return 1
  if [ -n "$audio" ]; then
    echo "[setup] ComfyUI $version: its core imports torchaudio; installing $audio (no dependencies: torch stays)"
    # shellcheck disable=SC2086
    env_pip "$epy" --no-deps $audio || return 1
    "$epy" -c "import torch, torchaudio" \
      || { echo "[setup] ERROR: torchaudio does not import beside torch in $env" >&2; return 1; }
  fi
  "$epy" -c "import torch, aiohttp, yaml, safetensors" \
    || { echo "[setup] ERROR: ComfyUI $version's requirements did not install into $env" >&2; return 1; }
  echo "$comfy" > "$env/diffusion_cache_comfyui"
  echo "$want" > "$env/.diffusion_cache_setup"
  echo "[setup] ComfyUI $version at $comfy: environment $env"
}

FOUND=0
while IFS=$'\t' read -r version comfy _source <&3; do
  [ -n "${comfy:-}" ] || continue
  FOUND=1
  setup_version "$version" "$comfy" \
    || echo "[setup] ERROR: the environment for ComfyUI $version at $comfy is incomplete; its tests will fail" >&2
done 3<<< "$INSTALLS"
while read -r version; do
  [ -n "$version" ] && echo "[setup] NOT FOUND: ComfyUI $version (a tested version); set COMFYUI_PATH to test it too" >&2
done <<< "$("$PY" "$HOST" missing)"

# a newer ComfyUI frontend than any tested version pins, for one more browser test run
# (ComfyUI's --front-end-root); set DIFFUSION_CACHE_EXTRA_FRONTENDS="" to skip
for fv in ${DIFFUSION_CACHE_EXTRA_FRONTENDS-1.58.1}; do
  target="$VENV/frontends/$fv"
  if [ ! -f "$target/comfyui_frontend_package/static/index.html" ]; then
    echo "[setup] installing ComfyUI frontend $fv into $target (for one more browser test run)"
    rm -rf "$target"
    "$PY" -m pip install --quiet --no-deps --target "$target" "comfyui-frontend-package==$fv" 2>&1 \
      | grep -v -E "Location .* is ignored|^\s*$" >&2 || true
    [ -f "$target/comfyui_frontend_package/static/index.html" ] \
      || { echo "[setup] frontend $fv could not be installed; its browser run is skipped" >&2; rm -rf "$target"; }
  fi
done

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
if [ "$FOUND" = 0 ]; then
  echo "[setup] WARNING: no ComfyUI found or cloned; host tests will be skipped. Set COMFYUI_PATH." >&2
fi
echo "[setup] python: $PY"

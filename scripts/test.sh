#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, the venv (torch pinned, the
# pack, ComfyUI 0.33.0 and 0.3.75 with frontends 1.58.1, 1.49.6 and 1.32.9), then pytest:
# the whole suite on the newest bench (ComfyUI 0.33.0 + frontend 1.58.1), then the smoke
# subset (pytest -m smoke) on ComfyUI 0.33.0 + frontend 1.49.6 and on ComfyUI 0.3.75 + 1.32.9.
# Usage: bash scripts/test.sh [pytest args...]   (with args: those tests, newest bench only)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/system_deps.sh"
bash "$here/scripts/setup_env.sh"
cd "$here"

run_pytest() {  # BENCH_LABEL PYTEST_ARGS...
  local label="$1"; shift
  echo "== pytest on ${label} =="
  set +e
  "$here/.venv/bin/python" -m pytest "$@"
  local status=$?
  set -e
  if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests on ${label}: that is a failure here, not a pass" >&2
    return 1
  fi
  return "$status"
}

status=0
run_pytest "ComfyUI 0.33.0 + frontend 1.58.1 (whole suite)" "$@" || status=$?
if [ "$#" -eq 0 ]; then
  COMFYUI_HDR_COMFYUI=0.33.0 COMFYUI_HDR_FRONTEND=1.49.6 \
    run_pytest "ComfyUI 0.33.0 + frontend 1.49.6 (smoke)" -m smoke -p no:cacheprovider \
    || status=$?
  COMFYUI_HDR_COMFYUI=0.3.75 COMFYUI_HDR_FRONTEND=1.32.9 \
    run_pytest "ComfyUI 0.3.75 + frontend 1.32.9 (smoke)" -m smoke -p no:cacheprovider \
    || status=$?
fi
exit "$status"

#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, the venv (torch pinned, the
# pack, ComfyUI 0.3.75), then pytest (unit oracles, the real server, headless Chromium).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/system_deps.sh"
bash "$here/scripts/setup_env.sh"
cd "$here"
set +e
"$here/.venv/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here, not a pass" >&2
  exit 1
fi
exit "$status"

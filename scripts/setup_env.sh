#!/usr/bin/env bash
# One venv for everything: torch (pinned), the pack with its test extra, ComfyUI 0.3.75.
# Usage: bash scripts/setup_env.sh [VENV_DIR]     (default: .venv beside this repo)
# Idempotent: a second run only checks what is there.
set -euo pipefail
# This machine's pip config lists local index folders that may not exist; drop that noise.
exec 2> >(grep -v --line-buffered "is ignored: it is neither a file nor a directory" >&2)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$here/.venv}"
constraints="$here/scripts/constraints.txt"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
pip_() { "$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$constraints" "$@"; }

"$venv/bin/python" -c "import torch, torchvision" 2>/dev/null || pip_ torch==2.14.1 torchvision==0.29.1
# Reinstall the pack (editable, with its test extra) only when its metadata changed.
stamp="$venv/.comfyui_hdr-deps"
want="$(cat "$here/pyproject.toml" "$constraints" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip_ -e "$here[test]"
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -m comfyui_hdr.harness install --venv "$venv"
echo "environment ready: $venv"

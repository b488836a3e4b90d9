#!/usr/bin/env bash
# README command one: set up everything (idempotent), then run the demo workflow in a real
# ComfyUI server and print where its HDR output went. Extra args go to the demo.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup_env.sh"
exec "$here/.venv/bin/python" -m comfyui_hdr.harness.demo "$@"

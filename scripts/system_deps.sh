#!/usr/bin/env bash
# Debian packages the tests use as oracles and for the browser: chromium (headless UI tests)
# and openexr (exrheader), g++ (torch.compile's CPU backend: the fused transfer kernels and
# their tests), and blender-data, whose eight CC0 captured HDRIs
# (datafiles/studiolights/world/*.exr) are the real HDR data of the tests and the training
# scripts. Installs only what is missing; needs root (or sudo).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v exrheader >/dev/null 2>&1 || missing+=(openexr)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
[ -f /usr/share/blender/datafiles/studiolights/world/forest.exr ] || missing+=(blender-data)
[ ${#missing[@]} -eq 0 ] && exit 0
run() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
echo "installing Debian packages: ${missing[*]}"
run apt-get update -qq
DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# The GPU path as a tested path: run every test that takes the `device` fixture on CUDA
# (tests/_devices.py; the CPU runs are CI's), plus the node contract with ComfyUI's model
# management on the GPU, and print a compact summary per file.
#
# Usage: bash scripts/gpu_check.sh [pytest args...]   (on a machine with CUDA)
# Needs the venv (scripts/setup_env.sh); PYTHON names another interpreter. GPU_CHECK_EXCLUDE
# is a pytest -k expression of tests to leave out (e.g. "h264" where PyAV is missing).
# Exit status: pytest's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
cd "$here"

"$python" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch.cuda.is_available() is False; run this on a machine with CUDA")
name = torch.cuda.get_device_name(0)
free, total = torch.cuda.mem_get_info()
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, {name}, "
      f"{total / 2**30:.0f} GiB ({free / 2**30:.0f} free)")
EOF

select="cuda${GPU_CHECK_EXCLUDE:+ and not (${GPU_CHECK_EXCLUDE})}"
leave_out=(${GPU_CHECK_EXCLUDE:+-k "not (${GPU_CHECK_EXCLUDE})"})
report="$(mktemp -d)"
trap 'rm -rf "$report"' EXIT
set +e
# Library and model tests: only the tests taking `device`, only their CUDA parameters
# (the CPU ones are CI's).
COMFYUI_HDR_DEVICES=cuda "$python" -m pytest tests/unit -q -p no:cacheprovider -k "$select" \
  --junitxml="$report/unit.xml" "$@"
unit=$?
# Nodes in-process, with ComfyUI's model management on the GPU (harness/inprocess.py).
COMFYUI_HDR_DEVICES=cuda COMFYUI_HDR_INPROCESS_GPU=1 "$python" -m pytest \
  tests/comfy_inprocess/test_every_node.py -q -p no:cacheprovider "${leave_out[@]}" \
  --junitxml="$report/nodes.xml" "$@"
nodes=$?
set -e

"$python" - "$report" <<'EOF'
import collections
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

rows = collections.defaultdict(lambda: collections.Counter())
failures = []
for xml in sorted(Path(sys.argv[1]).glob("*.xml")):
    for case in ET.parse(xml).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                failures.append(f"{module}::{case.get('name')}: "
                                f"{(child.get('message') or '').splitlines()[0][:160]}")
            elif child.tag == "skipped":
                outcome = "skipped"
        rows[module][outcome] += 1
        rows[module]["seconds"] += float(case.get("time", 0))
print("\ngpu_check summary (CUDA parameters only)")
print(f"{'test module':44} {'passed':>7} {'failed':>7} {'skipped':>8} {'seconds':>8}")
total = collections.Counter()
for module, counts in sorted(rows.items()):
    total.update(counts)
    print(f"{module:44} {counts['passed']:7d} {counts['failed']:7d} {counts['skipped']:8d} "
          f"{counts['seconds']:8.1f}")
print(f"{'all':44} {total['passed']:7d} {total['failed']:7d} {total['skipped']:8d} "
      f"{total['seconds']:8.1f}")
for line in failures:
    print("FAILED", line)
EOF
exit $(( unit != 0 ? unit : nodes ))

"""ComfyUI 0.3.75 imported in the test process (CPU), for tests of model patches.

The ComfyUI folder installed by ``python -m comfyui_hdr.harness install`` (under
``$COMFYUI_HDR_HOME``, default ``.comfyui/``) goes on ``sys.path``, and ``args.cpu`` is
set before ``comfy.model_management`` is imported, so it never probes CUDA. A missing
install is a collection error with the install command in it, never a skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from comfyui_hdr.harness import comfyui

COMFYUI_HOME = Path(os.environ.get("COMFYUI_HDR_HOME", comfyui.DEFAULT_HOME))
COMFYUI_DIR = comfyui.comfyui_dir(COMFYUI_HOME)

if not (COMFYUI_DIR / "comfy" / "model_management.py").is_file():
    raise RuntimeError(f"ComfyUI is not installed in {COMFYUI_DIR}; run "
                       "`python -m comfyui_hdr.harness install` (scripts/setup_env.sh does it)")
if str(COMFYUI_DIR) not in sys.path:
    sys.path.insert(0, str(COMFYUI_DIR))

from comfy.cli_args import args  # noqa: E402

args.cpu = True

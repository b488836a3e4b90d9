"""Import ComfyUI's own modules in this process (CPU), for tests and model tools.

The installed ComfyUI folder goes on ``sys.path`` and ``args.cpu`` is set before
``comfy.model_management`` is imported, so it never probes CUDA (COMFYUI_HARNESS.md,
"Importing ComfyUI modules in-process"). ``COMFYUI_HDR_INPROCESS_GPU=1`` leaves the GPU
to ComfyUI instead (``scripts/gpu_check.sh`` uses it on a machine with CUDA), so its model
management loads models onto the card as a server would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import comfyui
from .benches import selected


def use_comfyui(home: Path | None = None) -> Path:
    """Make ``import comfy`` work here; returns the ComfyUI folder. Raises RuntimeError
    with the install command when ComfyUI is not installed (never a silent skip)."""
    home = Path(home or os.environ.get("COMFYUI_HDR_HOME", comfyui.DEFAULT_HOME))
    release = selected().comfyui
    folder = comfyui.comfyui_dir(home, release)
    if not (folder / "comfy" / "model_management.py").is_file():
        raise RuntimeError(f"ComfyUI is not installed in {folder}; run `python -m "
                           f"comfyui_hdr.harness install --comfyui {release}` "
                           "(scripts/setup_env.sh does it)")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    from comfy.cli_args import args

    args.cpu = os.environ.get("COMFYUI_HDR_INPROCESS_GPU") != "1"
    return folder

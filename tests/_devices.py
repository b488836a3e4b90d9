"""The ``device`` fixture: every test that takes it runs once per available device.

"cpu" always; "cuda" when ``torch.cuda.is_available()``. On a machine without a GPU (CI)
the CUDA parameter is not generated at all (not skipped), so the same tests prove the CPU
path there and both paths on a GPU machine (``scripts/gpu_check.sh``).
``COMFYUI_HDR_DEVICES=cuda`` (a comma-separated list) limits the run to the devices named,
so a GPU check need not repeat the CPU run; naming a device that is not available is a
usage error.
"""

from __future__ import annotations

import os

import pytest
import torch


def available_devices() -> list[str]:
    """The device names the fixture runs on, in order."""
    present = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    wanted = [name.strip() for name in os.environ.get("COMFYUI_HDR_DEVICES", "").split(",")
              if name.strip()]
    if not wanted:
        return present
    missing = [name for name in wanted if name not in present]
    if missing:
        raise pytest.UsageError(f"COMFYUI_HDR_DEVICES names {missing}, but this machine has "
                                f"only {present}; unset it or name available devices")
    return wanted


@pytest.fixture(params=available_devices())
def device(request) -> torch.device:
    """A torch device to build inputs on; results are compared with ``.cpu()`` oracles."""
    return torch.device(request.param)

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

import numpy as np
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


def on(device, value, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` (numpy, a list or a tensor) as a tensor on ``device`` (dtype kept unless
    given)."""
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    return tensor.to(device=device, dtype=dtype or tensor.dtype)


def back(tensor: torch.Tensor) -> np.ndarray:
    """A result as numpy on the CPU, to compare with a numpy or colour-science oracle."""
    return tensor.detach().cpu().numpy()


def is_array_function(function) -> bool:
    """True for a function decorated with ``hdr._array.array_function``."""
    from comfyui_hdr.hdr import _array

    return getattr(function, "__code__", None) is _array.array_function(len).__code__


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*map(_to_numpy, value))
    if isinstance(value, tuple):
        return tuple(map(_to_numpy, value))
    return value


class OnDevice:
    """A module whose functions take their numpy-array arguments on ``device``.

    Every ``np.ndarray`` argument (and list of them) becomes a tensor on ``device`` (same
    dtype); the
    ``array_function`` curves given a numpy first argument then return numpy again
    (``.cpu()``), so a test written
    against numpy and a colour-science oracle runs unchanged on every device. Other
    functions return what they return (tensors stay on the device) unless named in
    ``numpy_results`` (functions documented to return their input's array type). Numbers and
    lists pass through (they are the library's scalar, CPU path). Used as a fixture that
    shadows the module's name in the tests asking for it.
    """

    def __init__(self, module, device: torch.device, numpy_results: tuple[str, ...] = ()):
        self._module, self._device, self._numpy_results = module, device, numpy_results

    def __getattr__(self, name: str):
        value = getattr(self._module, name)
        if not callable(value) or isinstance(value, type):
            return value
        device = self._device

        def moved(item):
            if isinstance(item, list) and item and all(isinstance(x, np.ndarray) for x in item):
                return [on(device, x) for x in item]  # a list of frames
            return on(device, item) if isinstance(item, np.ndarray) else item

        def run(*args, **kwargs):
            result = value(*map(moved, args), **{key: moved(item) for key, item in kwargs.items()})
            first = args[0] if args else None
            first = first[0] if isinstance(first, list) and first else first
            numpy_in = isinstance(first, np.ndarray)  # the result follows the first array
            follows = is_array_function(value) or name in self._numpy_results
            return _to_numpy(result) if numpy_in and follows else result

        return run

"""Fused transfer-curve kernels: a whole frame in one compiled pass, or ``None``.

Eager torch evaluates a curve formula one operation at a time, each step a pass over
memory and, for a 4K frame, a 100 MB temporary. ``torch.compile`` turns the same formula
into one fused loop (C++/OpenMP on the CPU, Triton on CUDA) that reads each value once,
computes the whole curve in registers and writes the result once. :func:`run` hands a
frame to such a kernel when it is worth it and returns ``None`` otherwise, so that
:func:`.transfer_blockwise.evaluate` runs the eager formula instead:

- only float32, float16 and bfloat16 frames of at least :data:`MIN_VALUES` values whose
  autograd graph is not being recorded (float64 frames and gradients stay eager, so they
  stay exactly what they were);
- ``COMFYUI_HDR_COMPILE`` chooses when: ``never`` (the default for now: fused results
  are within 2 ulp of eager for 30 of 36 curve/direction cases, but LogC3 decode reaches
  3 ulp and HLG up to 8, where issue 15 allows 2); ``always``; or ``auto``, which compiles
  a formula on a device type only once it has processed :data:`PAYBACK_VALUES` values
  there in this process. Compiling costs seconds (the first one in a process also imports
  the compiler), so single pictures never wait for it; sequences and training loops,
  where it pays back, get it after about ten UHD frames;
- a formula compiles once per set of parameters (EI, nits, gamma ...), device, dtype
  and row width (``dynamic=True``: any frame size reuses it), in the thread that first
  needs it; other threads meanwhile run it eagerly. ``auto`` counts the values per set
  of parameters, so scrubbing a parameter on single pictures never compiles;
- if compiling fails (no C++ compiler for the CPU backend, no Triton for CUDA, an
  unsupported operation) the reason is logged once and that device type stays eager.

Results equal the eager ones within float32 rounding (the tests allow 2 units in the
last place, more only where a formula itself amplifies a last-bit difference).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch

MIN_VALUES = 2**20
"""Smallest frame (about 0.35 megapixels of RGB) that may run compiled; below it the
eager formula's per-call cost is already small."""

PAYBACK_VALUES = 2**28
"""Values (about ten 3840x2160 RGB frames) a formula processes on a device type before
``auto`` compiles it there: by then the eager passes it saves outweigh the compile time."""

MODES = ("auto", "always", "never")
ENVIRONMENT = "COMFYUI_HDR_COMPILE"
"""Environment variable choosing among :data:`MODES`; read at every call."""

_FUSABLE = (torch.float32, torch.float16, torch.bfloat16)
_log = logging.getLogger(__name__)


@dataclass
class _Kernel:
    """A compiled formula: ``ready`` once its first call (the compile) returned."""

    function: Callable[..., torch.Tensor]
    ready: bool = False
    busy: bool = False


_FLOATS_AS_CONSTANTS = {"specialize_float": True}
"""Dynamo setting for tracing and calling the kernels. By default torch 2.14 turns the
Python floats of a formula into kernel inputs, yet bakes some of them in (a clamp_min
bound computed from parameters) and then serves the compiled kernel from its graph cache
to another parameter set: LogC3 EI 200 decoded with EI 800's cut. As constants, each
parameter set gets a graph, a cache entry and a kernel of its own. Dynamo's settings are
process-wide, so a compile in another thread during a kernel call specialises its floats
too (more graphs for it, never wrong ones)."""

_lock = threading.Lock()
_kernels: dict[tuple, _Kernel] = {}
_processed: dict[tuple, int] = {}
_failed: dict[str, str] = {}


def power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """``base ** exponent`` in a curve formula; for a float64 ``base`` in a fused kernel,
    ``exp2(exponent log2 base)``.

    SLEEF's vectorised float64 pow, which a fused kernel would call, costs 2.5x its log2
    and exp2 together; the pair agrees with pow to ~1e-15 relative, far inside the
    float32 rounding of the curves that compute in float64 (PQ, PU21), and gives pow's 0,
    inf and NaN (negative bases give NaN for the fractional exponents used here). A
    float32 ``base`` keeps pow, the same SLEEF function eager torch calls, so its result
    keeps every bit. Eager evaluation, and with it every gradient and every float64
    frame, keeps torch's pow.
    """
    if base.dtype != torch.float64 or not torch.compiler.is_compiling():
        return base.pow(exponent)
    return torch.exp2(torch.log2(base) * exponent)


def exp10(exponent: torch.Tensor) -> torch.Tensor:
    """``10 ** exponent`` in a curve formula: torch's pow eagerly; in a fused kernel the
    correctly rounded ``exp2(exponent log2(10))`` computed in float64, for a fifth of the
    cost of SLEEF's float32 pow and within 1 ulp of it."""
    if not torch.compiler.is_compiling():
        return torch.pow(10.0, exponent)
    return torch.exp2(exponent.double() * math.log2(10)).to(exponent.dtype)


def mode() -> str:
    """The compile mode from ``COMFYUI_HDR_COMPILE``; a ValueError names the valid ones."""
    chosen = os.environ.get(ENVIRONMENT, "never").strip().lower() or "never"
    if chosen not in MODES:
        raise ValueError(
            f"{ENVIRONMENT} must be one of {', '.join(MODES)} (got {chosen!r}); "
            "unset it to compile transfer curves once they pay back"
        )
    return chosen


def failure(device_type: str) -> str | None:
    """Why compiled kernels are off on ``device_type`` ("cpu", "cuda"), or None."""
    return _failed.get(device_type)


def _compiled(formula: Callable[..., torch.Tensor], args: tuple, work: torch.dtype) -> Callable:
    def kernel(rows):
        return formula(rows.to(work), *args).to(rows.dtype)

    # The parameters are constants of the kernel (see _FLOATS_AS_CONSTANTS). A code object
    # of its own per formula and key, named after them, keeps each kernel's variants
    # (dtype, inference mode) within dynamo's 8 per code object and apart from other
    # kernels in its profile-guided "automatic dynamic" records.
    digest = hashlib.sha1(repr((formula.__qualname__, args, work)).encode()).hexdigest()[:12]
    name = f"fused_{formula.__name__}_{digest}"
    own = types.FunctionType(kernel.__code__.replace(co_name=name), kernel.__globals__, name,
                             None, kernel.__closure__)
    return torch.compile(own, dynamic=True, fullgraph=True)


def _claim(formula, args: tuple, rows: torch.Tensor, work: torch.dtype,
           auto: bool) -> _Kernel | None:
    """The kernel for these rows if this thread may use it now: ready, or to be compiled
    by this thread. None while it does not pay back yet or another thread compiles it."""
    device_type = rows.device.type
    with _lock:
        if device_type in _failed:
            return None
        if auto:
            seen = _processed.get((formula, args, device_type), 0) + rows.numel()
            _processed[(formula, args, device_type)] = seen
            if seen < PAYBACK_VALUES:
                return None
        key = (formula, args, rows.device, rows.dtype, rows.shape[1], work)
        kernel = _kernels.get(key)
        if kernel is None:
            kernel = _kernels[key] = _Kernel(_compiled(formula, args, work))
        if kernel.ready:
            return kernel
        if kernel.busy:
            return None
        kernel.busy = True
        return kernel


def run(formula, value: torch.Tensor, args: tuple, work: torch.dtype, group: int):
    """``formula(value, *args)`` from a fused kernel, or None to evaluate it eagerly.

    ``work`` is the precision the formula computes in, ``group`` the number of values
    along the last axis that the formula reads together (3 for an RGB formula).
    """
    if value.dtype not in _FUSABLE or value.numel() < MIN_VALUES:
        return None
    chosen = mode()
    if chosen == "never":
        return None
    rows = value.reshape(-1, group)
    kernel = _claim(formula, args, rows, work, auto=chosen == "auto")
    if kernel is None:
        return None
    try:
        with torch.no_grad():
            with torch._dynamo.config.patch(**_FLOATS_AS_CONSTANTS):
                result = kernel.function(rows)
    except torch.OutOfMemoryError:
        kernel.busy = False
        raise
    except Exception as error:  # noqa: BLE001 - any compiler failure means: run eagerly
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        reason = f"{type(error).__name__}: {first_line}"
        with _lock:
            _failed.setdefault(value.device.type, reason)
        _log.warning(
            "transfer curves run eagerly on %s: torch.compile failed (%s); set %s=never "
            "to skip the attempt", value.device.type, _failed[value.device.type], ENVIRONMENT,
        )
        return None
    kernel.ready, kernel.busy = True, False
    return result.view(value.shape)

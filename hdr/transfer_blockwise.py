"""Evaluate a transfer-function formula on a whole frame quickly and precisely.

The formulas in ``transfer_*.py`` are plain, differentiable torch expressions. On a 4K
frame each step of such an expression would allocate and stream a 100 MB temporary, and
each of torch's parallel steps would end in a barrier between threads. :func:`evaluate`
first offers the frame to a fused, compiled kernel (:mod:`.transfer_fused`, for large
frames once compiling pays back); otherwise, whenever no gradient is being recorded, it
cuts a CPU frame into blocks that fit the CPU cache and hands whole blocks to
``torch.get_num_threads()`` worker threads (torch releases the GIL while it computes).
It also picks the working precision: float16 and bfloat16 are computed in float32, and a
curve whose maths needs it asks for float64. The result always has the input's dtype, and
the input is never modified.

Formulas are module-level functions taking the frame and plain numbers, so that a
compiled kernel can be cached per formula.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from . import transfer_fused

BLOCK_ELEMENTS = 3 * 10922
"""Values per block: just under torch's 32768-value grain size, so each step of a formula
runs on its worker thread without starting another thread team, and a multiple of 3 so
that RGB triplets stay whole."""

BLOCKS_PER_TASK = 16
"""Blocks a worker takes at a time: few enough tasks to keep scheduling overhead small,
enough that a worker slowed by a busy machine leaves the rest to the others."""


def evaluate(
    formula: Callable[..., torch.Tensor],
    value: torch.Tensor,
    *args,
    float64: bool = False,
    group: int = 1,
) -> torch.Tensor:
    """Apply ``formula(value, *args)`` fused, blockwise or whole, in the right precision.

    Parameters
    ----------
    formula
        Differentiable torch expression, a module-level function (compiled kernels are
        cached per formula); it must not modify its input in place.
    value
        Floating-point tensor of any shape.
    args
        Further arguments passed to ``formula`` unchanged: numbers (or tuples of them),
        not tensors.
    float64
        Compute in float64 whatever the input dtype.
    group
        Values that belong together along the last axis (3 for an RGB formula such as
        the HLG OOTF); blocks never split a group.

    Returns
    -------
    ``formula``'s result with ``value``'s dtype and shape.
    """
    work = torch.float64 if float64 or value.dtype == torch.float64 else torch.float32
    recording = torch.is_grad_enabled() and value.requires_grad
    traced = torch.compiler.is_compiling()  # inside a caller's compiled graph: plain ops
    if not (recording or traced):
        fused = transfer_fused.run(formula, value, args, work, group)
        if fused is not None:
            return fused
    if recording or traced or value.device.type != "cpu" or value.numel() <= BLOCK_ELEMENTS:
        return formula(value.to(work), *args).to(value.dtype)
    rows = value.reshape(-1, group)
    result = torch.empty_like(rows)
    step = BLOCK_ELEMENTS // group
    task = step * BLOCKS_PER_TASK

    # Worker threads inherit neither inference mode (ComfyUI runs nodes under it: writing
    # into ``result``, an inference tensor, would raise) nor no_grad (a frame that requires
    # grad, passed in under no_grad, would come back requiring grad). Nothing here records.
    inference = torch.is_inference_mode_enabled()

    def run_blocks(first: int) -> None:
        with torch.inference_mode(inference), torch.no_grad():
            for start in range(first, min(first + task, rows.shape[0]), step):
                result[start : start + step] = formula(rows[start : start + step].to(work),
                                                       *args)

    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as workers:
        list(workers.map(run_blocks, range(0, rows.shape[0], task)))  # re-raises errors
    return result.view(value.shape)

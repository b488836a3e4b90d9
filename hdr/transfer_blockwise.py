"""Evaluate a transfer-function formula on a whole frame quickly and precisely.

The formulas in ``transfer_*.py`` are plain, differentiable torch expressions. On a 4K
frame each step of such an expression would allocate and stream a 100 MB temporary, and
each of torch's parallel steps would end in a barrier between threads. :func:`evaluate`
instead cuts the frame into blocks that fit the CPU cache and hands whole blocks to
``torch.get_num_threads()`` worker threads (torch releases the GIL while it computes),
whenever no gradient is being recorded. It also picks the working precision: float16
and bfloat16 are computed in float32, and a curve whose maths needs it asks for float64.
The result always has the input's dtype, and the input is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

BLOCK_ELEMENTS = 3 * 10922
"""Values per block: just under torch's 32768-value grain size, so each step of a formula
runs on its worker thread without starting another thread team, and a multiple of 3 so
that RGB triplets stay whole."""


def evaluate(
    formula: Callable[..., torch.Tensor],
    value: torch.Tensor,
    *args,
    float64: bool = False,
    group: int = 1,
) -> torch.Tensor:
    """Apply ``formula(value, *args)`` blockwise, in the right working precision.

    Parameters
    ----------
    formula
        Differentiable torch expression; it must not modify its input in place.
    value
        Floating-point tensor of any shape.
    args
        Further arguments passed to ``formula`` unchanged.
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
    if recording or value.device.type != "cpu" or value.numel() <= BLOCK_ELEMENTS:
        return formula(value.to(work), *args).to(value.dtype)
    rows = value.reshape(-1, group)
    result = torch.empty_like(rows)
    step = BLOCK_ELEMENTS // group

    def run_block(start: int) -> None:
        result[start : start + step] = formula(rows[start : start + step].to(work), *args)

    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as workers:
        list(workers.map(run_block, range(0, rows.shape[0], step)))  # re-raises errors
    return result.view(value.shape)

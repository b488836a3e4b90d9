"""What a training run will cost, worked out before any weight is loaded: the frozen base's
weights on the device (by ``--weight-dtype`` and ``--blocks-to-swap``), the trainable
parameters with their gradients and optimizer moments, and the activations (by
``--gradient-checkpointing``), from the weights' safetensors headers and the model config.

Activations are a rule of thumb: per token and transformer block, ``12 * hidden + ffn``
values, counted as float32 whatever the weight dtype (Wan keeps its norms and modulation in
float32; an all-bf16 model is over-counted). A LoRA on a frozen base keeps no inputs of its
frozen Linear layers, only those of norms, attention (flash attention: q, k, v, output),
the FFN activation and the LoRA layers; Korthikanti et al. (2022), "Reducing Activation
Recomputation in Large Transformer Models", eq. 2, count 34 bytes per token and hidden
unit for a fully trained fp16 layer with a ``4 * hidden`` FFN. With gradient checkpointing
only each block's input (``hidden`` values per token, in the compute dtype) is kept, plus
one block's activations during its recomputation; an fp8 base adds one block's weights
dequantized to bf16 (kept for its backward). Checked against the peaks
``tests/bench/bench_train_memory.py`` measured on an H200 (rank 16, batch 1): with
checkpointing -4 % to +7 % for Wan 1.3B/14B, Qwen-Image and Flux in bf16 and fp8 (block
swap included); without it -10 % (Wan 1.3B, fp32) and +6 % (bf16).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

__all__ = ["ACTIVATION_RULE", "BaseWeights", "MemoryEstimate", "MemoryPlan", "base_weights",
           "check_fits", "device_memory", "estimate_memory", "format_bytes",
           "read_base_weights"]

GIB = 2**30
ACTIVATION_RULE = (12, 1)
"""Activation values per token and block: ``12 * hidden + 1 * ffn`` (module docstring)."""
CUDA_OVERHEAD = 0.5 * GIB
"""CUDA context-free workspace: cuBLAS/attention workspaces and allocator slack."""
_BLOCK = re.compile(r"^([A-Za-z_]+)\.(\d+)\.")
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 2}  # fp8: what is not fp8 stays bf16
_OPTIMIZER_BYTES = {"adamw": 8, "adamw8bit": 2}  # two moments per trainable value


def format_bytes(count: float) -> str:
    """``count`` bytes in GiB, or MiB below one GiB."""
    return f"{count / GIB:.2f} GiB" if count >= GIB else f"{count / 2**20:.1f} MiB"


@dataclass(frozen=True)
class BaseWeights:
    """Parameter counts of a frozen base: ``total``; ``fp8`` (block Linear weights that
    ``--weight-dtype fp8`` stores in 8 bits) with their ``fp8_rows`` (one float32 scale
    each); ``fp32`` (in ``_keep_in_fp32_modules``); ``blocks``: each transformer block's
    count, in order; ``fp8_blocks``: each block's share of ``fp8``."""

    total: int
    fp8: int
    fp8_rows: int
    fp32: int
    blocks: tuple[int, ...]
    fp8_blocks: tuple[int, ...]

    def bytes(self, weight_dtype: str, blocks: Iterable[int] | None = None) -> int:
        """Bytes of the whole base (or of the given blocks) stored as ``weight_dtype``."""
        if blocks is not None:
            indices = list(blocks)
            total = sum(self.blocks[i] for i in indices)
            fp8 = sum(self.fp8_blocks[i] for i in indices)
            share = fp8 / self.fp8 if self.fp8 else 0.0
            fp32, rows = 0, int(self.fp8_rows * share)
        else:
            total, fp8, fp32, rows = self.total, self.fp8, self.fp32, self.fp8_rows
        size = _BYTES[weight_dtype]
        if weight_dtype == "fp8":
            return (total - fp8 - fp32) * size + fp8 + 4 * rows + 4 * fp32
        return (total - fp32) * size + 4 * fp32


def read_base_weights(folder: str | Path, keep_in_fp32: Iterable[str] = ()) -> BaseWeights:
    """:class:`BaseWeights` of the safetensors files in ``folder`` (headers only)."""
    shapes = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as stored:
            shapes |= {name: stored.get_slice(name).get_shape() for name in stored.keys()}
    return base_weights(shapes, keep_in_fp32)


def base_weights(shapes: Mapping[str, Sequence[int]],
                 keep_in_fp32: Iterable[str] = ()) -> BaseWeights:
    """:class:`BaseWeights` of a state dict's tensor shapes.

    Blocks are the entries of top-level numbered lists (``blocks.3.``,
    ``transformer_blocks.3.``); fp8-eligible weights are the 2-D ``.weight`` tensors inside
    them outside ``keep_in_fp32`` and norm/modulation modules, as
    :func:`~.memory.prepare_frozen_base` picks them.
    """
    kept = set(keep_in_fp32)
    total = fp8 = rows = fp32 = 0
    blocks: dict[tuple[str, int], list[int]] = {}
    for name, shape in shapes.items():
        count = int(torch.Size(shape).numel())
        total += count
        parts = name.split(".")
        if kept & set(parts):
            fp32 += count
            continue
        match = _BLOCK.match(name)
        if not match:
            continue
        block = blocks.setdefault((match.group(1), int(match.group(2))), [0, 0])
        block[0] += count
        if (len(shape) == 2 and name.endswith(".weight")
                and not any(part.startswith("norm") for part in parts)):
            fp8 += count
            rows += shape[0]
            block[1] += count
    order = sorted(blocks, key=lambda key: (_list_order(key[0]), key[1]))
    return BaseWeights(total, fp8, rows, fp32, tuple(blocks[key][0] for key in order),
                       tuple(blocks[key][1] for key in order))


def _list_order(name: str) -> int:
    """Forward order of block lists: Flux runs its double blocks before its single ones."""
    return 1 if name.startswith("single") else 0


@dataclass(frozen=True)
class MemoryPlan:
    """The memory options of a run."""

    weight_dtype: str
    gradient_checkpointing: bool
    blocks_to_swap: int
    optimizer: str

    def flags(self) -> str:
        """The command-line flags of this plan."""
        checkpointing = ("" if self.gradient_checkpointing
                         else " --no-gradient-checkpointing")
        return (f"--weight-dtype {self.weight_dtype}{checkpointing} --blocks-to-swap "
                f"{self.blocks_to_swap} --optimizer {self.optimizer}")


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes on the device, by part."""

    weights: int
    trainable: int
    activations: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.activations + self.overhead

    def describe(self) -> str:
        return (f"about {format_bytes(self.total)} (base weights {format_bytes(self.weights)}, "
                f"trainable parameters with gradients and optimizer state "
                f"{format_bytes(self.trainable)}, activations {format_bytes(self.activations)})")


def estimate_memory(base: BaseWeights, plan: MemoryPlan, trainable: int, tokens: int,
                    hidden: int, ffn: int, device: torch.device) -> MemoryEstimate:
    """Peak device memory of a training step with ``plan``: ``tokens`` per step (all items
    of a micro-batch, text tokens included where they pass through the blocks)."""
    count = len(base.blocks)
    swapped = range(count - plan.blocks_to_swap, count)
    weights = base.bytes(plan.weight_dtype)
    if plan.blocks_to_swap:  # one swapped block is on the device at a time
        largest = max(base.bytes(plan.weight_dtype, [index]) for index in swapped)
        weights += largest - base.bytes(plan.weight_dtype, swapped)
    if plan.weight_dtype == "fp8":  # one block's weights dequantized, kept for its backward
        weights += 2 * max(base.fp8_blocks, default=0)
    state = trainable * (4 + 4 + _OPTIMIZER_BYTES[plan.optimizer])
    value = 4 if plan.weight_dtype == "fp32" else 2
    per_block = tokens * (ACTIVATION_RULE[0] * hidden + ACTIVATION_RULE[1] * ffn) * 4
    if plan.gradient_checkpointing:
        activations = count * tokens * hidden * value + per_block
    else:
        activations = count * per_block
    overhead = CUDA_OVERHEAD if device.type == "cuda" else 0
    return MemoryEstimate(weights, state, activations, overhead)


def device_memory(device: torch.device, limit_gib: float) -> int | None:
    """Bytes a run may use: ``limit_gib`` if set, else the free memory of a CUDA device;
    None (no limit) on other devices."""
    if limit_gib:
        return int(limit_gib * GIB)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return None


def check_fits(estimate, plan: MemoryPlan, blocks: int, limit: int | None) -> None:
    """A ValueError naming the flag(s) that make ``estimate(plan)`` fit under ``limit``.

    ``estimate`` maps a :class:`MemoryPlan` to a :class:`MemoryEstimate`. Tried in turn:
    gradient checkpointing on, ``--weight-dtype fp8``, then the fewest ``--blocks-to-swap``.
    """
    if limit is None or estimate(plan).total <= limit:
        return
    candidates = [plan.__class__(plan.weight_dtype, True, plan.blocks_to_swap, plan.optimizer)]
    candidates.append(plan.__class__("fp8", True, plan.blocks_to_swap, plan.optimizer))
    for weight_dtype in (plan.weight_dtype, "fp8"):
        candidates += [plan.__class__(weight_dtype, True, count, plan.optimizer)
                       for count in range(plan.blocks_to_swap + 1, blocks)]
    need, free = format_bytes(estimate(plan).total), format_bytes(limit)
    for candidate in candidates:
        if estimate(candidate).total <= limit:
            raise ValueError(f"this run needs {estimate(plan).describe()} but {free} are free "
                             f"(--max-memory); it fits with {candidate.flags()} (about "
                             f"{format_bytes(estimate(candidate).total)})")
    raise ValueError(f"this run needs about {need} but {free} are free (--max-memory), and "
                     f"even --weight-dtype fp8 --blocks-to-swap {blocks - 1} does not fit: "
                     "lower --batch-size, --size/--crop or --frames")

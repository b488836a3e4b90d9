"""Trainer memory options the trainers share: the frozen base's weight dtype, gradient
checkpointing and the optimizer (block swapping: :mod:`.block_swap`; the cost printed
before a run: :mod:`.memory_estimate`).

- ``--weight-dtype`` stores the frozen base in ``fp32``, ``bf16``, ``fp16`` or ``fp8``. The
  modules a diffusers model lists in ``_keep_in_fp32_modules`` stay float32 (as diffusers'
  ``from_pretrained(torch_dtype=...)`` keeps them). ``fp8`` is weight-only, musubi-tuner's
  scheme: the ``nn.Linear`` weights inside the transformer blocks are stored as
  ``float8_e4m3fn`` with one float32 scale per output channel (:class:`Fp8Linear`) and
  dequantized for each forward; norms, embeddings, modulation projections and everything
  outside the blocks stay bf16, and the model computes in bf16. It runs wherever torch has
  float8 dtypes and bf16 arithmetic (CPU, and CUDA GPUs with bf16), unlike fp8 matmul
  kernels (torchao's float8 inference tensors need CUDA compute capability 8.9+ and are
  not parameters peft's LoRA layers wrap).
- LoRA parameters (everything that trains) are float32 whatever the base dtype; the
  model's inputs are cast to the base's compute dtype, its prediction back to float32.
- ``--gradient-checkpointing`` (diffusers' non-reentrant ``torch.utils.checkpoint`` around
  each transformer block) is on by default: a block's activations are recomputed in
  backward, so only the blocks' inputs are kept.
- ``--optimizer adamw8bit`` keeps AdamW's two moments in 8 bits (torchao's ``AdamW8bit``,
  block-wise dynamic quantization of Dettmers et al. 2022, "8-bit Optimizers via
  Block-wise Quantization", ICLR); the optional extra ``comfyui-hdr[train]`` installs it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FP8_E4M3_MAX", "OPTIMIZERS", "WEIGHT_DTYPES", "Fp8Linear", "check_weight_dtype",
           "compute_dtype", "enable_gradient_checkpointing", "keep_in_fp32",
           "make_optimizer", "prepare_frozen_base", "quantize_fp8", "repeated_blocks",
           "resolve_weight_dtype", "safe_attention_kernels", "storage_dtype"]

WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "fp8")
"""``--weight-dtype`` values; ``auto`` picks bf16 on CUDA and fp32 elsewhere."""
OPTIMIZERS = ("adamw", "adamw8bit")
_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FP8_E4M3_MAX = 448.0
"""Largest finite float8 E4M3 value: OCP 8-bit Floating Point Specification (OFP8) 1.0
(2023), table 1: S.1111.110 = 1.75 * 2**8 (``torch.finfo(torch.float8_e4m3fn).max``)."""


def resolve_weight_dtype(name: str, device: torch.device) -> str:
    """The weight dtype ``--weight-dtype name`` means on ``device`` (``auto``: bf16 on CUDA,
    fp32 elsewhere), checked with :func:`check_weight_dtype`."""
    resolved = name if name != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    check_weight_dtype(resolved, device)
    return resolved


def safe_attention_kernels(device: torch.device) -> str | None:
    """Turn off cuDNN's scaled-dot-product attention kernel on CUDA; a note saying so, or
    None elsewhere (nothing changes on the CPU).

    Measured on an H200 (torch 2.11, CUDA 13, ``tests/bench/bench_train_memory.py``): the
    cuDNN kernel fails a FLUX.1-dev LoRA step (4,608 tokens, bf16) with
    ``mha_graph.execute(...).is_good()`` and then an illegal memory access; the flash and
    memory-efficient kernels that ``scaled_dot_product_attention`` picks instead ran every
    family at every size. A process-wide switch: the trainers are their own processes.
    """
    if device.type != "cuda":
        return None
    torch.backends.cuda.enable_cudnn_sdp(False)
    return ("cuDNN attention off (it fails FLUX.1 LoRA steps on torch 2.11 + CUDA 13); "
            "flash / memory-efficient attention instead")


def check_weight_dtype(name: str, device: torch.device) -> None:
    """A ValueError naming ``--weight-dtype`` and the fix if ``device`` cannot run ``name``."""
    if name not in WEIGHT_DTYPES:
        raise ValueError(f"--weight-dtype {name!r} is not one of auto, {', '.join(WEIGHT_DTYPES)}")
    if device.type == "cuda" and name in ("bf16", "fp8") and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        gpu = torch.cuda.get_device_name(device)
        needs = "computes in bfloat16, which" if name == "fp8" else "is bfloat16, which"
        raise ValueError(f"--weight-dtype {name} {needs} this GPU ({gpu}) cannot run; use "
                         "--weight-dtype fp16 (or fp32)")
    if name == "fp8" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"--weight-dtype fp8 needs float8 tensors, which {device.type} "
                         "lacks; use --weight-dtype bf16 (or fp32)")


def storage_dtype(name: str) -> torch.dtype:
    """The dtype a base with weight dtype ``name`` is loaded in (fp8 quantizes bf16)."""
    return torch.bfloat16 if name == "fp8" else _TORCH_DTYPES[name]


def compute_dtype(name: str) -> torch.dtype:
    """The dtype the model's activations take with weight dtype ``name``."""
    return storage_dtype(name)


def keep_in_fp32(name: str, model: torch.nn.Module) -> bool:
    """Whether parameter/module ``name`` lies in one of the diffusers model's
    ``_keep_in_fp32_modules`` (matched against whole dotted components, as diffusers does)."""
    kept = getattr(model, "_keep_in_fp32_modules", None) or ()
    parts = name.split(".")
    return any(module in parts for module in kept)


def _diffusers_model(model: torch.nn.Module) -> torch.nn.Module:
    """The diffusers model inside a peft wrapper (or ``model`` itself): the first module
    whose class declares ``_keep_in_fp32_modules`` (peft's wrappers only forward it)."""
    return next((module for module in model.modules()
                 if any("_keep_in_fp32_modules" in vars(cls) for cls in type(module).__mro__)),
                model)


def repeated_blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The transformer blocks, in forward order: modules whose class the diffusers model
    lists in ``_repeated_blocks`` (Wan's ``blocks``; Flux's double then single blocks)."""
    names = set(getattr(_diffusers_model(model), "_repeated_blocks", None) or ())
    return [(name, module) for name, module in model.named_modules()
            if type(module).__name__ in names]


class Fp8Linear(torch.nn.Linear):
    """An ``nn.Linear`` whose frozen weight is float8 E4M3 with a float32 scale per output
    channel (buffer ``weight_scale``, ``[out, 1]``); each forward dequantizes it in float32
    and computes in the input's dtype (musubi-tuner's fp8 base)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = (self.weight.float() * self.weight_scale).to(input.dtype)
        bias = None if self.bias is None else self.bias.to(input.dtype)
        return F.linear(input, weight, bias)


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, scale)``: ``weight`` ``[out, in]`` as float8 E4M3 codes and float32 scales
    ``[out, 1]`` with ``codes * scale ~ weight``; each row's largest magnitude maps to
    :data:`FP8_E4M3_MAX` (a row of zeros keeps a tiny scale and zero codes)."""
    values = weight.float()
    scale = values.abs().amax(dim=1, keepdim=True).clamp_min(
        torch.finfo(torch.float32).tiny) / FP8_E4M3_MAX
    codes = (values / scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return codes, scale


def _fp8_eligible(name: str, module: torch.nn.Module, model: torch.nn.Module) -> bool:
    """Frozen block Linears, except kept-fp32 modules and modulation/norm projections."""
    return (type(module) is torch.nn.Linear and not module.weight.requires_grad
            and not keep_in_fp32(name, model)
            and not any(part.startswith("norm") for part in name.split(".")))


def prepare_frozen_base(model: torch.nn.Module, weight_dtype: str) -> None:
    """Store ``model``'s frozen tensors in ``weight_dtype`` and its trainable ones in float32.

    Frozen floating-point parameters and buffers take :func:`storage_dtype` (float32 inside
    ``_keep_in_fp32_modules``); with ``fp8`` the eligible block Linears then become
    :class:`Fp8Linear`. Call after the LoRA layers are added (peft would give an fp8
    base's adapters fp8 weights).
    """
    diffusers_model = _diffusers_model(model)
    storage = storage_dtype(weight_dtype)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point():
            continue
        if tensor.requires_grad:
            tensor.data = tensor.data.float()
        else:
            kept = keep_in_fp32(name, diffusers_model)
            tensor.data = tensor.data.to(torch.float32 if kept else storage)
    if weight_dtype != "fp8":
        return
    for block_name, block in repeated_blocks(model):
        for name, module in block.named_modules():
            if _fp8_eligible(f"{block_name}.{name}", module, diffusers_model):
                codes, scale = quantize_fp8(module.weight.data)
                module.weight = torch.nn.Parameter(codes, requires_grad=False)
                module.register_buffer("weight_scale", scale)
                module.__class__ = Fp8Linear


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Checkpoint each block of the diffusers model in ``model`` (peft-wrapped or not)."""
    diffusers_model = _diffusers_model(model)
    if not getattr(diffusers_model, "_supports_gradient_checkpointing", False):
        raise ValueError(f"{type(diffusers_model).__name__} has no gradient checkpointing; "
                         "pass --no-gradient-checkpointing")
    diffusers_model.enable_gradient_checkpointing()


def _adamw8bit_class():
    try:
        from torchao.optim import AdamW8bit
    except ImportError:
        raise ValueError("--optimizer adamw8bit needs torchao; install it with "
                         "pip install 'comfyui-hdr[train]' (or pick --optimizer adamw)") from None

    class EagerOnCpuAdamW8bit(AdamW8bit):
        """torchao's AdamW8bit; on the CPU its per-parameter update runs eagerly (torch.compile
        of each parameter shape takes ~45 s there for a kilobyte-sized LoRA)."""

        def step(self, closure=None):
            on_cpu = any(parameter.device.type == "cpu" for group in self.param_groups
                         for parameter in group["params"])
            if not on_cpu:
                return super().step(closure)
            with torch.compiler.set_stance("force_eager"):
                return super().step(closure)

    return EagerOnCpuAdamW8bit


def make_optimizer(name: str, parameters, learning_rate: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """``--optimizer``: ``adamw`` (torch) or ``adamw8bit`` (torchao, 8-bit moments for
    tensors of 4096+ values, float32 below, as bitsandbytes does)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"--optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    return _adamw8bit_class()(parameters, lr=learning_rate, weight_decay=weight_decay)

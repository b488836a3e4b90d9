"""``train-lora``'s memory plan, settled before any weight is loaded: the options checked
against the device and the model's config, the cost printed, and a run that will not fit
refused with the flag that makes it fit (:mod:`.memory_estimate`).

Token counts: all three families' VAEs compress 8x in space, their transformers take 2x2
patches, so a latent frame of ``H x W`` pixels is ``H/16 * W/16`` tokens; Wan's VAE packs
frames ``1 + 4k`` into ``1 + k`` latent frames. Flux and Qwen-Image run the text tokens
through every block beside the image's (joint attention); Wan only attends to them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from .block_swap import check_blocks_to_swap
from .common import check_safetensors_dir
from .lora_export import FAMILIES
from .lora_models import FAMILY_LAYOUTS, is_target
from .memory import resolve_weight_dtype
from .memory_estimate import (
    MemoryPlan,
    check_fits,
    device_memory,
    estimate_memory,
    format_bytes,
    read_base_weights,
)

__all__ = ["model_folder", "plan_memory"]


def model_folder(path: str, part: str) -> Path:
    """A model folder, or a pipeline folder's ``part/`` when it has one."""
    folder = Path(path)
    return folder / part if (folder / part / "config.json").is_file() else folder


def _lora_parameters(folder: Path, family: str, endings: list[str], rank: int) -> int:
    """Trainable values of a rank-``rank`` LoRA on the target Linears (headers only)."""
    count = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as stored:
            for name in stored.keys():
                shape = stored.get_slice(name).get_shape()
                module = name.removesuffix(".weight")
                if (len(shape) == 2 and name.endswith(".weight")
                        and is_target(module, family, endings)):
                    count += rank * (shape[0] + shape[1])
    return count


def _tokens(options, family: str, item_shape: torch.Size, text_tokens: int) -> int:
    """Tokens of one micro-batch through the blocks (module docstring)."""
    frames, height, width = item_shape[0], item_shape[1], item_shape[2]
    if frames == 1 and FAMILY_LAYOUTS[family].clips:
        frames = options.still_frames  # a still trains as a clip (lora_latents.still_as_clip)
    side = options.crop or None
    height, width = (side, side) if side else (height, width)
    latent_frames = 1 + (frames - 1) // 4 if FAMILY_LAYOUTS[family].clips else 1
    tokens = latent_frames * (height // 16) * (width // 16)
    if options.mode == "reference":
        factor = options.reference_downscale_factor
        tokens += latent_frames * (height // 16 // factor) * (width // 16 // factor)
    if family != "wan":
        tokens += text_tokens
    return tokens * options.batch_size


def plan_memory(options, accelerator, item_shape: torch.Size, text_tokens: int,
                name: str = "train-lora") -> str:
    """Check the memory options, print the run's cost and refuse a run that will not fit
    (a ValueError naming the flag); returns the resolved ``--weight-dtype``.

    ``item_shape``: one dataset item's ``[frames, H, W, 3]``; ``text_tokens``: the
    prompt embeddings' length; ``name``: the command, for the printed line.
    """
    import diffusers

    device = accelerator.device
    weight_dtype = resolve_weight_dtype(options.weight_dtype, device)
    folder = model_folder(options.model, "transformer")
    config = check_safetensors_dir(folder, "--model")
    family = FAMILIES.get(config.get("_class_name"))
    if family not in FAMILY_LAYOUTS:
        return weight_dtype  # load_model / model_family name the problem
    model_class = getattr(diffusers, config["_class_name"])
    base = read_base_weights(folder, model_class._keep_in_fp32_modules or ())
    check_blocks_to_swap(options.blocks_to_swap, len(base.blocks),
                         options.gradient_checkpointing)
    trainable = _lora_parameters(folder, family, options.targets.split(","), options.rank)
    hidden = config.get("num_attention_heads", 1) * config.get("attention_head_dim", 1)
    ffn = config.get("ffn_dim") or 4 * hidden
    tokens = _tokens(options, family, item_shape, text_tokens)
    plan = MemoryPlan(weight_dtype, options.gradient_checkpointing, options.blocks_to_swap,
                      options.optimizer)

    def estimate(candidate: MemoryPlan):
        return estimate_memory(base, candidate, trainable, tokens, hidden, ffn, device)

    limit = device_memory(device, options.max_memory)
    available = "no limit" if limit is None else f"{format_bytes(limit)} available"
    accelerator.print(
        f"{name}: memory plan {plan.flags()}: {base.total:,} base parameters "
        f"({format_bytes(base.bytes(weight_dtype))} as {weight_dtype}) in "
        f"{len(base.blocks)} blocks, {trainable:,} LoRA parameters "
        f"({100 * trainable / (base.total + trainable):.3f}% trainable), {tokens:,} tokens a "
        f"micro-batch; needs {estimate(plan).describe()} on {device.type} ({available})")
    check_fits(estimate, plan, len(base.blocks), limit)
    return weight_dtype

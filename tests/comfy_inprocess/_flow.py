"""The velocity a ComfyUI model predicts, through the path KSampler takes."""

from __future__ import annotations

import comfy.model_management
import torch


def comfy_velocity(patcher, noisy: torch.Tensor, conditioning: list, sigma: float):
    """Velocity at ``sigma`` for one CONDITIONING entry: its options become model kwargs
    via ``extra_conds`` (which normalises reference latents), ``apply_model`` denoises
    (flow models: ``x - sigma * v``) and ``v`` comes back."""
    embeds, options = conditioning[0]
    conds = patcher.model.extra_conds(**options, cross_attn=embeds, noise=noisy,
                                      device=noisy.device)
    comfy.model_management.load_models_gpu([patcher])
    with torch.no_grad():
        denoised = patcher.model.apply_model(noisy, torch.tensor([sigma]),
                                             **{key: cond.cond for key, cond in conds.items()})
    return (noisy - denoised) / sigma

"""Tiny, randomly initialised models in the formats ComfyUI's own loaders read.

No weights can be downloaded here, so tests and the demo build the smallest models that
ComfyUI's UNETLoader / VAELoader accept (COMFYUI_HARNESS.md, "Tiny models through
ComfyUI's own loaders"), with seeded weights, and save them as safetensors into a ComfyUI
models folder. ComfyUI's modules are imported in-process (:mod:`.inprocess`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from .inprocess import use_comfyui

TINY_WAN = {"model_type": "t2v", "dim": 128, "ffn_dim": 256, "num_heads": 1, "num_layers": 1,
            "in_dim": 16, "out_dim": 16, "text_dim": 4096}
"""Smallest Wan 2.1 t2v ComfyUI detects (head width 128, text width 4096): 0.9 M params."""
TINY_WAN_VAE_DIM = 8
"""Base width of the tiny Wan 2.1 VAE (ComfyUI reads it from decoder.head.0.gamma)."""


def seeded_state_dict(model: torch.nn.Module, seed: int, dtype: torch.dtype) -> dict:
    """Random weights for every tensor of a (meta-device) model: weights N(0, 1/fan_in),
    biases N(0, 0.02^2), 1-D scales 1."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, meta in model.state_dict().items():
        if name.endswith(".bias"):
            value = 0.02 * torch.randn(meta.shape, generator=generator)
        elif meta.ndim <= 1 or meta.numel() == meta.shape[0]:
            value = torch.ones(meta.shape)
        else:
            value = torch.randn(meta.shape, generator=generator) / math.sqrt(meta[0].numel())
        tensors[name] = value.to(dtype)
    return tensors


def tiny_wan_state_dict(seed: int = 21) -> dict:
    use_comfyui()
    import comfy.ops
    from comfy.ldm.wan.model import WanModel

    skeleton = WanModel(device="meta", operations=comfy.ops.disable_weight_init, **TINY_WAN)
    return seeded_state_dict(skeleton, seed, torch.float32)


def tiny_wan_vae_state_dict(seed: int = 5) -> dict:
    use_comfyui()
    from comfy.ldm.wan.vae import WanVAE

    with torch.device("meta"):
        skeleton = WanVAE(dim=TINY_WAN_VAE_DIM, z_dim=16, dim_mult=[1, 2, 4, 4],
                          num_res_blocks=2, attn_scales=[],
                          temperal_downsample=[False, True, True], dropout=0.0)
    return seeded_state_dict(skeleton, seed, torch.float32)


def prompt_embeddings(seed: int, tokens: int = 8, width: int = 4096) -> dict:
    """A stand-in for a text encoder's output: ``prompt_embeds`` [1, tokens, width]."""
    generator = torch.Generator().manual_seed(seed)
    return {"prompt_embeds": torch.randn((1, tokens, width), generator=generator)}


def write_tiny_wan_set(models_dir: Path) -> dict[str, str]:
    """Write the tiny Wan model, its VAE and four prompt embeddings (base, over, under,
    negative) into a ComfyUI models folder; returns the file names for a workflow."""
    models_dir = Path(models_dir)
    names = {"model": "tiny_wan21_t2v.safetensors", "vae": "tiny_wan21_vae.safetensors"}
    for folder, name, make in (("diffusion_models", names["model"], tiny_wan_state_dict),
                               ("vae", names["vae"], tiny_wan_vae_state_dict)):
        path = models_dir / folder / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(make(), str(path))
    for seed, role in enumerate(("base", "over", "under", "negative")):
        name = f"tiny_wan_{role}.safetensors"
        path = models_dir / "prompt_embeddings" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(prompt_embeddings(100 + seed), str(path))
        names[role] = name
    return names

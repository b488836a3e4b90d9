"""Tiny, randomly initialised models in the formats ComfyUI's own loaders read.

No weights can be downloaded here, so tests and the demo build the smallest models that
ComfyUI's UNETLoader / VAELoader accept (COMFYUI_HARNESS.md, "Tiny models through
ComfyUI's own loaders"), with seeded weights, and save them as safetensors into a ComfyUI
models folder. ComfyUI's modules are imported in-process (:mod:`.inprocess`).

The HDR set is what the pack's own loaders read: a dual-head HDR VAE directory in
``models/vae_hdr`` ("Load HDR VAE") and a Qwen-Image-style DiT widened 16 -> 32 latent
channels with its model card in ``models/diffusion_models`` ("Load HDR Diffusion Model",
which builds the model from explicit dimensions, so it can be far smaller than anything
ComfyUI's detection accepts).
"""

from __future__ import annotations

import json
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


def wan_vae_comfyui_state_dict(vae) -> dict:
    """A diffusers ``AutoencoderKLWan``'s weights under ComfyUI's (the original Wan 2.1)
    names, so VAELoader builds the same VAE a trainer used.

    The names come from diffusers' own single-file converter
    (``convert_wan_vae_to_diffusers``, a pure renaming) run on the keys of ComfyUI's
    ``WanVAE`` skeleton of the same widths, and inverted. ComfyUI fixes ``num_res_blocks``
    at 2 and the Wan 2.1 layout; a VAE it cannot hold raises ValueError.
    """
    use_comfyui()
    from comfy.ldm.wan.vae import WanVAE
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    config = vae.config
    with torch.device("meta"):
        skeleton = WanVAE(dim=config.base_dim, z_dim=config.z_dim, dim_mult=[1, 2, 4, 4],
                          num_res_blocks=2, attn_scales=[],
                          temperal_downsample=[False, True, True], dropout=0.0)
    native = skeleton.state_dict()
    comfy_name = {id(value): key for key, value in native.items()}
    renamed = convert_wan_vae_to_diffusers(dict(native))
    weights = vae.state_dict()
    if set(renamed) != set(weights) or any(
            weights[key].shape != value.shape for key, value in renamed.items()):
        raise ValueError(f"{type(vae).__name__} {dict(config)} is not the Wan 2.1 VAE layout "
                         "ComfyUI loads (dim_mult 1,2,4,4, num_res_blocks 2, no attention "
                         "scales)")
    return {comfy_name[id(value)]: weights[key].detach().contiguous()
            for key, value in renamed.items()}


def flux_params(**params) -> dict:
    """Flux.1 parameters for ComfyUI's ``FluxParams`` on any supported release: 0.33's takes
    ``txt_ids_dims`` (``[]`` for Flux.1, as comfy/model_detection.py sets it), which 0.3.75's
    does not know."""
    import dataclasses

    use_comfyui()
    from comfy.ldm.flux.model import FluxParams

    if "txt_ids_dims" in {field.name for field in dataclasses.fields(FluxParams)}:
        params.setdefault("txt_ids_dims", [])
    return params


def comfy_flux(**params):
    """ComfyUI's Flux module for a Flux.1 layout (:func:`flux_params`)."""
    from comfy.ldm.flux.model import Flux

    return Flux(**flux_params(**params))


def flux_comfyui_state_dict(state: dict, depth: int, depth_single_blocks: int,
                            hidden_size: int) -> dict:
    """A diffusers ``FluxTransformer2DModel`` state dict under ComfyUI's Flux names: its
    own key map (``comfy.utils.flux_to_diffusers``) inverted, q/k/v (and the single
    blocks' MLP input) fused at their offsets, the final modulation's scale/shift swapped."""
    use_comfyui()
    import comfy.utils

    config = {"depth": depth, "depth_single_blocks": depth_single_blocks,
              "hidden_size": hidden_size}
    fused: dict = {}
    for key, target in comfy.utils.flux_to_diffusers(config).items():
        if key not in state:
            continue
        if isinstance(target, str):
            fused[target] = {0: state[key]}
        elif target[1] is None:
            fused[target[0]] = {0: target[2](state[key])}
        else:
            fused.setdefault(target[0], {})[target[1][1]] = state[key]
    return {key: torch.cat([parts[start] for start in sorted(parts)])
            for key, parts in fused.items()}


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


TINY_QWEN_IMAGE = {"num_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2,
                   "joint_attention_dim": 32, "axes_dims_rope": (4, 14, 14), "in_channels": 64,
                   "out_channels": 16}
"""A Qwen-Image DiT at 2 heads x 32 and text width 32 (16 latent channels before widening)."""
TINY_HDR_VAE = {"block_out_channels": (16, 16, 16, 16), "layers_per_block": 1,
                "norm_num_groups": 8, "down_block_types": ("DownEncoderBlock2D",) * 4,
                "up_block_types": ("UpDecoderBlock2D",) * 4, "scene_log2_min": -12.0,
                "scene_log2_max": 10.0}
"""A dual-head HDR VAE with the full 8x compression at width 16 (code 0 = 0.5 scene-linear)."""
TINY_HDR_VAE_LINEAR_GAIN = 0.25
"""Scale of the random linear head's last layer, so its picture stays inside float16 for the
viewer and still passes diffuse white: the hdr_vae_widened_dit workflow decodes to 0.053-9.25
scene-linear, 13% of values above 1 (measured; unscaled, a unit-normal latent reaches 8e9)."""
HDR_LATENT_CHANNELS = 32


def tiny_qwen_image_state_dict(seed: int = 31) -> dict:
    """The tiny 16-channel Qwen-Image DiT in ComfyUI's format (ComfyUI's own class)."""
    use_comfyui()
    import comfy.ops
    from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel

    skeleton = QwenImageTransformer2DModel(device="meta", operations=comfy.ops.disable_weight_init,
                                           **TINY_QWEN_IMAGE)
    return seeded_state_dict(skeleton, seed, torch.float32)


def hdr_model_card(family: str, channels: int = HDR_LATENT_CHANNELS, **model) -> dict:
    """The JSON written beside a widened DiT (``<name>.json``) that Load HDR Diffusion Model
    reads: family, latent channels in and out, the latent format and its colour encoding."""
    card = {"family": family, "in_channels": channels, "out_channels": channels,
            "latent_format": {"channels": channels, "scaling_factor": 1.0, "shift_factor": 0.0},
            "colour_encoding": "HDR VAE latent (scene-linear, dual-head)"}
    if model:
        card["model"] = model
    return card


def write_widened_model(path: Path, state_dict: dict, family: str, mode: str = "copy",
                        **model) -> Path:
    """Widen a 16-channel ComfyUI-format DiT to 32 channels and save it with its model card."""
    from ..hdr.models.widen import widen_state_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(widen_state_dict(state_dict, family, HDR_LATENT_CHANNELS, mode), str(path))
    card = {**hdr_model_card(family, **model), "widen_mode": mode}
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return path


TINY_HDR_VAE_STATS_SCENES = 8
"""Procedural 64 px scenes the tiny HDR VAE's latent statistics are measured on."""


def write_tiny_hdr_vae(directory: Path, seed: int = 11) -> Path:
    """A randomly initialised tiny dual-head HDR VAE directory (config.json + safetensors),
    with the latent statistics of :data:`TINY_HDR_VAE_STATS_SCENES` procedural scenes."""
    from ..hdr.models.hdr_vae import HDRAutoencoder
    from ..hdr.models.latent_stats import write_latent_stats
    from ..training.data import ProceduralScenes
    from ..training.latent_stats import dataset_latent_stats

    directory = Path(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vae = HDRAutoencoder(**TINY_HDR_VAE)
    with torch.no_grad():
        conv_out = vae.linear_head.decoder.conv_out
        conv_out.weight.mul_(TINY_HDR_VAE_LINEAR_GAIN)
        conv_out.bias.mul_(TINY_HDR_VAE_LINEAR_GAIN)
    vae.save_pretrained(directory, safe_serialization=True)
    scenes = ProceduralScenes(TINY_HDR_VAE_STATS_SCENES, 64)
    write_latent_stats(directory, dataset_latent_stats(vae.eval(), scenes), {
        "kind": "procedural", "scenes": TINY_HDR_VAE_STATS_SCENES, "size": 64, "seed": 0})
    return directory


def write_tiny_hdr_set(models_dir: Path) -> dict[str, str]:
    """Write the tiny HDR VAE, the tiny widened Qwen-Image DiT (+ card) and two prompt
    embeddings of its text width into a ComfyUI models folder; returns the names a
    workflow uses (``vae``, ``model``, ``positive``, ``negative``)."""
    models_dir = Path(models_dir)
    names = {"vae": "tiny_hdr_vae", "model": "tiny_hdr_qwen_image_32ch.safetensors"}
    vae_dir = models_dir / "vae_hdr" / names["vae"]
    if not (vae_dir / "config.json").exists():
        write_tiny_hdr_vae(vae_dir)
    model_path = models_dir / "diffusion_models" / names["model"]
    if not model_path.exists():
        write_widened_model(model_path, tiny_qwen_image_state_dict(), "qwen_image",
                            axes_dims_rope=list(TINY_QWEN_IMAGE["axes_dims_rope"]))
    width = TINY_QWEN_IMAGE["joint_attention_dim"]
    for seed, role in enumerate(("positive", "negative")):
        name = f"tiny_qwen_image_{role}.safetensors"
        path = models_dir / "prompt_embeddings" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(prompt_embeddings(200 + seed, width=width), str(path))
        names[role] = name
    return names

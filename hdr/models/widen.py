"""Widen a DiT's latent input and prediction from 16 to 32 channels for the HDR VAE.

Seed 002 denoises in the dual-head HDR VAE's 32-channel latent with a DiT whose input
projection was widened from the base VAE's 16 channels. Only two layers change: the
input projection (Qwen-Image ``img_in``, Flux ``x_embedder``, Wan ``patch_embedding``)
gains input columns, and the output projection gains rows so the model predicts every
latent channel. Two initialisations:

- ``"copy"``: each new input column is a copy of its source column and both are halved,
  so the widened model fed ``[z, z]`` computes exactly what the original computed on
  ``z`` (up to float32 summation order); the new output rows copy the old ones, so it
  predicts ``[v, v]`` where the original predicted ``v``. Fine-tuning starts from the
  original model on a latent whose new channels mirror the old ones.
- ``"zero"``: the new input columns and output rows are zero: whatever the new channels
  hold, the old channels' prediction is the original model's, and the new channels'
  prediction is 0 (a flow-matching sampler leaves them at their starting noise until
  training teaches the model to denoise them).

Latents are packed differently per family; widening keeps each family's order: Qwen-Image
and Flux pack 2x2 patches channel-major (feature ``c * 4 + 2 * py + px``) for input and
output; Wan's patch embedding is a Conv3d (channels on its own axis) and its head writes
channel-minor rows (``patch * C + c``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "COMFY_LAYOUTS",
    "DIFFUSERS_LAYOUTS",
    "ProjectionLayout",
    "widen_columns",
    "widen_input_projection",
    "widen_rows",
    "widen_state_dict",
]

MODES = ("copy", "zero")


@dataclass(frozen=True)
class ProjectionLayout:
    """Where a DiT keeps its latent projections and how it lays out latent channels."""

    family: str
    input: str
    output: str
    # Input features per latent channel, channel-major (4 for 2x2-packed tokens; 1 for a
    # Conv3d patch embedding, whose patch lives in the kernel).
    input_group: int
    # Output rows ordered (channel, patch) if True, (patch, channel) if False.
    output_channel_major: bool
    # diffusers config: in_channels / out_channels per latent channel.
    config_in: int = 1
    config_out: int = 1


# Qwen-Image keeps diffusers' key names in ComfyUI; Flux and Wan are renamed
# (comfy/ldm/flux/model.py: img_in, final_layer.linear; comfy/ldm/wan/model.py:
# patch_embedding, head.head).
DIFFUSERS_LAYOUTS = {
    "QwenImageTransformer2DModel": ProjectionLayout("qwen_image", "img_in", "proj_out", 4, True,
                                                    config_in=4, config_out=1),
    "FluxTransformer2DModel": ProjectionLayout("flux", "x_embedder", "proj_out", 4, True,
                                               config_in=4, config_out=4),
    "WanTransformer3DModel": ProjectionLayout("wan", "patch_embedding", "proj_out", 1, False),
}
COMFY_LAYOUTS = {
    "qwen_image": ProjectionLayout("qwen_image", "img_in", "proj_out", 4, True),
    "flux": ProjectionLayout("flux", "img_in", "final_layer.linear", 4, True),
    "wan": ProjectionLayout("wan", "patch_embedding", "head.head", 1, False),
}


def _latent_channels(weight: torch.Tensor, layout: ProjectionLayout) -> tuple[int, int]:
    """(latent channels, output rows per channel) read from the input projection's weight."""
    channels = weight.shape[1] // layout.input_group
    patch = layout.input_group if weight.ndim == 2 else math.prod(weight.shape[2:])
    return channels, patch


def _check(channels: int, new_in: int, mode: str, output_rows: int, patch: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if new_in <= channels:
        raise ValueError(f"new_in ({new_in}) must exceed the model's {channels} latent channels")
    if mode == "copy" and new_in % channels:
        raise ValueError(f"copy mode needs new_in to be a multiple of {channels} (the model's "
                         f"latent channels), got {new_in}; use mode='zero' for other widths")
    if output_rows != channels * patch:
        raise ValueError(f"the output projection has {output_rows} rows but the model takes "
                         f"{channels} latent channels x {patch}: inpainting, control and "
                         "image-to-video variants (extra conditioning channels) are not widened")


@torch.no_grad()
def widen_columns(weight: torch.Tensor, channels: int, group: int, new_in: int,
                  mode: str) -> torch.Tensor:
    """Widen an input projection's weight ``[out, channels * group, ...]`` to ``new_in``.

    >>> widen_columns(torch.tensor([[2.0, 4.0]]), 2, 1, 4, "copy").tolist()
    [[1.0, 2.0, 1.0, 2.0]]
    """
    blocks = weight.unflatten(1, (channels, group))
    if mode == "copy":
        copies = new_in // channels
        widened = blocks.repeat(1, copies, *[1] * (blocks.ndim - 2)) / copies
    else:
        extra = blocks.new_zeros(blocks.shape[0], new_in - channels, *blocks.shape[2:])
        widened = torch.cat([blocks, extra], dim=1)
    return widened.flatten(1, 2).contiguous()


@torch.no_grad()
def widen_rows(tensor: torch.Tensor, channels: int, patch: int, new_in: int, mode: str,
               channel_major: bool) -> torch.Tensor:
    """Widen an output projection's weight or bias (rows = channels x patch) to ``new_in``.

    >>> widen_rows(torch.tensor([1.0, 2.0]), 2, 1, 4, "copy", True).tolist()
    [1.0, 2.0, 1.0, 2.0]
    """
    axis = 0 if channel_major else 1
    rows = tensor.unflatten(0, (channels, patch) if channel_major else (patch, channels))
    if mode == "copy":
        repeats = [1] * rows.ndim
        repeats[axis] = new_in // channels
        widened = rows.repeat(*repeats)
    else:
        shape = list(rows.shape)
        shape[axis] = new_in - channels
        widened = torch.cat([rows, rows.new_zeros(shape)], dim=axis)
    return widened.flatten(0, 1).contiguous()


def _widen_layers(input_layer: nn.Module, output_layer: nn.Module, layout: ProjectionLayout,
                  new_in: int, mode: str) -> int:
    channels, patch = _latent_channels(input_layer.weight, layout)
    _check(channels, new_in, mode, output_layer.weight.shape[0], patch)
    input_layer.weight = nn.Parameter(
        widen_columns(input_layer.weight, channels, layout.input_group, new_in, mode))
    if isinstance(input_layer, nn.Linear):
        input_layer.in_features = input_layer.weight.shape[1]
    else:
        input_layer.in_channels = new_in
    output_layer.weight = nn.Parameter(widen_rows(output_layer.weight, channels, patch, new_in,
                                                  mode, layout.output_channel_major))
    if output_layer.bias is not None:
        output_layer.bias = nn.Parameter(widen_rows(output_layer.bias, channels, patch, new_in,
                                                    mode, layout.output_channel_major))
    output_layer.out_features = output_layer.weight.shape[0]
    return channels


def widen_input_projection(model: nn.Module, new_in: int = 32, mode: str = "copy") -> nn.Module:
    """Widen a diffusers DiT (Qwen-Image, Flux, Wan) to ``new_in`` latent channels, in place.

    Parameters
    ----------
    model
        ``QwenImageTransformer2DModel``, ``FluxTransformer2DModel`` or
        ``WanTransformer3DModel``; changed in place and returned.
    new_in
        Latent channels after widening (32 for the HDR VAE).
    mode
        ``"copy"`` or ``"zero"`` (see the module docstring).

    Returns
    -------
    The model, with explicit ``in_channels`` and ``out_channels`` in its config so
    ``save_pretrained`` / ``from_pretrained`` rebuild the widened shapes (a Flux config
    without ``out_channels`` would default it to the old ``in_channels`` and fail).
    """
    name = type(model).__name__
    if name not in DIFFUSERS_LAYOUTS:
        raise ValueError(f"{name} cannot be widened; supported diffusers models: "
                         + ", ".join(DIFFUSERS_LAYOUTS))
    layout = DIFFUSERS_LAYOUTS[name]
    _widen_layers(model.get_submodule(layout.input), model.get_submodule(layout.output),
                  layout, new_in, mode)
    model.register_to_config(in_channels=new_in * layout.config_in,
                             out_channels=new_in * layout.config_out)
    if "out_channels" in vars(model):
        model.out_channels = new_in * layout.config_out
    return model


def _prefix(state_dict: dict, layout: ProjectionLayout) -> str:
    """The key prefix (``""``, ``"model.diffusion_model."``, ...) of the projections."""
    suffix = f"{layout.input}.weight"
    prefixes = [key[:-len(suffix)] for key in state_dict
                if key.endswith(suffix) and (key == suffix or key[-len(suffix) - 1] == ".")]
    if len(prefixes) != 1 or f"{prefixes[0]}{layout.output}.weight" not in state_dict:
        raise ValueError(f"the state dict has no single {layout.input!r} / {layout.output!r} "
                         f"pair: is it a {layout.family} diffusion model in ComfyUI's format?")
    return prefixes[0]


@torch.no_grad()
def widen_state_dict(state_dict: dict, family: str, new_in: int = 32,
                     mode: str = "copy") -> dict:
    """Widen a ComfyUI-format DiT state dict (``family``: qwen_image, flux, wan).

    Keys may carry a prefix such as ``model.diffusion_model.``. Returns a new dict; the
    tensors that did not change are shared with ``state_dict``. ComfyUI reads the latent
    width back from the tensor shapes (``comfy/model_detection.py``).
    """
    if family not in COMFY_LAYOUTS:
        raise ValueError(f"family must be one of {tuple(COMFY_LAYOUTS)}, got {family!r}")
    layout = COMFY_LAYOUTS[family]
    prefix = _prefix(state_dict, layout)
    input_weight = state_dict[f"{prefix}{layout.input}.weight"]
    output_key = f"{prefix}{layout.output}"
    channels, patch = _latent_channels(input_weight, layout)
    _check(channels, new_in, mode, state_dict[f"{output_key}.weight"].shape[0], patch)
    widened = dict(state_dict)
    widened[f"{prefix}{layout.input}.weight"] = widen_columns(
        input_weight, channels, layout.input_group, new_in, mode)
    for name in ("weight", "bias"):
        if f"{output_key}.{name}" in state_dict:
            widened[f"{output_key}.{name}"] = widen_rows(
                state_dict[f"{output_key}.{name}"], channels, patch, new_in, mode,
                layout.output_channel_major)
    return widened

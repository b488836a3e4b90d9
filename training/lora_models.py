"""The diffusers models ``train-lora`` adapts: loading, LoRA targets, latents and velocity.

One place knows how each family lays out its latents and sequence:

- Flux (``FluxTransformer2DModel``): image latents ``[B, C, h, w]``, 2x2-packed tokens with
  3-axis position ids; a reference's tokens follow with ids ``(1, y, x)`` on its own grid
  (the first axis marks another image, as Flux Kontext does, whatever the reference's
  size: a downscaled reference is not stretched over the target, because ComfyUI's Flux
  cannot place one that way).
- Wan 2.1 (``WanTransformer3DModel``): video latents ``[B, C, T, h, w]``; a reference's
  latent frames follow the target's along time (the rotary grid continues; factor 1).
- Qwen-Image (``QwenImageTransformer2DModel``): one-frame video latents ``[B, C, 1, h, w]``
  (its VAE is Wan-style), 2x2-packed tokens; a reference is a second entry of
  ``img_shapes`` (frame index 1, its own centred grid, as Qwen-Image-Edit feeds one).

ComfyUI feeds the same arrangements: ``time_dim_concat`` for Wan, ``reference_latents``
(method ``index``) for Flux and Qwen-Image ("HDR Reference (in-context)").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..hdr.models.checkpoint_dir import config_sha256
from .common import check_safetensors_dir
from .lora_export import FAMILIES

__all__ = ["DEFAULT_TARGETS", "FAMILY_LAYOUTS", "FamilyLayout", "config_sha256",
           "decode_latents", "discover_targets", "encode_latents", "is_target", "load_model",
           "model_family", "predict_velocity"]

DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj",
                   "add_v_proj", "to_add_out")
"""Attention projections of the image stream (``to_*``) and the text stream (``add_*``,
``to_add_out``) of joint-attention DiTs; Wan's self- and cross-attention ``to_*``."""


@dataclass(frozen=True)
class FamilyLayout:
    """How a model family's latents and conditioning look to ``train-lora``.

    ``video_latents``: the VAE takes and gives ``[B, C, T, H, W]``; ``clips``: the model
    generates several frames (1 + 4k); ``text_width``: the config entry of the text
    embedding width; ``pooled``: a pooled text vector is required; ``any_downscale``: a
    downscaled reference keeps a consistent position grid; ``excluded``: layer-name
    patterns never adapted (the image-conditioning branch).
    """

    video_latents: bool
    clips: bool
    text_width: str
    pooled: bool = False
    any_downscale: bool = True
    excluded: tuple[str, ...] = ()


FAMILY_LAYOUTS = {
    "flux": FamilyLayout(video_latents=False, clips=False, text_width="joint_attention_dim",
                         pooled=True),
    "wan": FamilyLayout(video_latents=True, clips=True, text_width="text_dim",
                        any_downscale=False, excluded=(r"\.attn2\.add_[kv]_proj$",)),
    "qwen_image": FamilyLayout(video_latents=True, clips=False,
                               text_width="joint_attention_dim"),
}
"""The families ``train-lora`` trains (keys of :data:`~.lora_export.FAMILIES`' values)."""


def model_family(model: torch.nn.Module, argument: str = "--model") -> str:
    """The family name of a diffusers transformer; a ValueError names the supported ones."""
    family = FAMILIES.get(type(model).__name__)
    if family not in FAMILY_LAYOUTS:
        supported = sorted(name for name, value in FAMILIES.items() if value in FAMILY_LAYOUTS)
        raise ValueError(f"{argument} is a {type(model).__name__}; train-lora trains "
                         f"{', '.join(supported)}")
    return family


def is_target(name: str, family: str, endings: Sequence[str] = DEFAULT_TARGETS) -> bool:
    """Whether layer ``name`` ends with one of ``endings`` (as whole dot-separated words)
    and lies outside the family's conditioning branch."""
    return (any(name == ending or name.endswith("." + ending) for ending in endings)
            and not any(re.search(pattern, name)
                        for pattern in FAMILY_LAYOUTS[family].excluded))


def discover_targets(model: torch.nn.Module, family: str,
                     endings: Sequence[str] = DEFAULT_TARGETS) -> list[str]:
    """Names of the ``nn.Linear`` layers of ``model`` that :func:`is_target` picks."""
    found = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and is_target(name, family, endings)]
    if not found:
        raise ValueError(f"--targets {','.join(endings)} matches no Linear layer of "
                         f"{type(model).__name__}; use layer-name endings such as to_q")
    return found


def load_model(path: str, part: str, argument: str,
               dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A frozen diffusers model from a model folder or a pipeline folder's ``part/``, on
    the CPU in ``dtype`` (its ``_keep_in_fp32_modules`` in float32)."""
    import diffusers

    folder = Path(path)
    if (folder / part / "config.json").is_file():
        folder = folder / part
    config = check_safetensors_dir(folder, argument)
    model_class = getattr(diffusers, config.get("_class_name", ""), None)
    if model_class is None:
        raise ValueError(f"{argument} {folder}: config.json names no diffusers class "
                         f"({config.get('_class_name')!r})")
    return model_class.from_pretrained(folder, torch_dtype=dtype).eval().requires_grad_(False)


def _pack(latent: torch.Tensor) -> torch.Tensor:
    """2x2 packing ``[B, C, h, w]`` -> ``[B, h/2 * w/2, 4C]`` (features c, py, px)."""
    b, c, h, w = latent.shape
    if h % 2 or w % 2:
        raise ValueError(f"latent {h}x{w} must have even sides for 2x2 patches; use a crop "
                         "(divided by the reference downscale) that is a multiple of 16 "
                         "pixels")
    patches = latent.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def _unpack(tokens: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    b = tokens.shape[0]
    patches = tokens.reshape(b, height // 2, width // 2, channels, 2, 2)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(b, channels, height, width)


def _flux_ids(height: int, width: int, image: int) -> torch.Tensor:
    rows, columns = torch.meshgrid(torch.arange(height // 2), torch.arange(width // 2),
                                   indexing="ij")
    return torch.stack([torch.full_like(rows, image), rows, columns], -1).reshape(-1, 3).float()


def _flux_velocity(model, noisy, sigma, text, pooled, reference, guidance):
    channels, height, width = noisy.shape[1:]
    tokens, ids = _pack(noisy), _flux_ids(height, width, 0)
    if reference is not None:
        tokens = torch.cat([tokens, _pack(reference)], 1)
        ids = torch.cat([ids, _flux_ids(*reference.shape[2:], 1)])
    extra = {} if guidance is None else {"guidance": torch.full_like(sigma, guidance)}
    output = model(hidden_states=tokens, encoder_hidden_states=text, pooled_projections=pooled,
                   timestep=sigma, img_ids=ids.to(noisy), return_dict=False,
                   txt_ids=torch.zeros(text.shape[1], 3).to(noisy), **extra)[0]
    return _unpack(output[:, :height * width // 4], channels, height, width)


def _check_even_token_grid(latent: torch.Tensor, name: str) -> None:
    """Qwen-Image's rotary positions are centred on the token grid; at an odd grid side
    diffusers and ComfyUI centre it one position apart, so only even grids train what
    ComfyUI will sample (sides that are multiples of 32 pixels)."""
    tokens = (latent.shape[-2] // 2, latent.shape[-1] // 2)
    if tokens[0] % 2 or tokens[1] % 2:
        raise ValueError(f"the {name} is {tokens[1]}x{tokens[0]} Qwen-Image tokens; both sides "
                         "must be even (pictures in multiples of 32 pixels, times the reference "
                         "downscale factor for the target): change --size/--crop")


def _qwen_image_velocity(model, noisy, sigma, text, reference, text_mask):
    channels, frames, height, width = noisy.shape[1:]
    if frames != 1:
        raise ValueError(f"Qwen-Image latents have 1 frame, got {frames}; use --frames 1")
    _check_even_token_grid(noisy, "target")
    if reference is not None:
        _check_even_token_grid(reference, "reference")
    tokens, shapes = _pack(noisy[:, :, 0]), [(1, height // 2, width // 2)]
    if reference is not None:
        tokens = torch.cat([tokens, _pack(reference[:, :, 0])], 1)
        shapes.append((1, reference.shape[3] // 2, reference.shape[4] // 2))
    mask = (torch.ones(text.shape[:2], dtype=torch.long, device=text.device)
            if text_mask is None else text_mask.to(text.device, torch.long))
    output = model(hidden_states=tokens, encoder_hidden_states=text,
                   encoder_hidden_states_mask=mask, timestep=sigma,
                   img_shapes=[shapes] * noisy.shape[0], return_dict=False)[0]
    return _unpack(output[:, :height * width // 4], channels, height, width)[:, :, None]


def predict_velocity(model, family: str, noisy: torch.Tensor, sigma: torch.Tensor,
                     text: torch.Tensor, pooled: torch.Tensor | None = None,
                     reference: torch.Tensor | None = None,
                     guidance: float | None = None,
                     text_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The transformer's velocity for latents ``noisy`` at flow time ``sigma`` ``[B]``.

    ``reference`` (clean latents) joins the sequence as the module docstring describes.
    Flux and Qwen-Image take ``sigma`` as their timestep (they scale by 1000 inside), Wan
    ``sigma * 1000`` (its pipelines' scheduler timesteps), as ComfyUI's model sampling
    does. ``text_mask`` ``[B, tokens]`` (1 = real token) reaches Qwen-Image, which then
    ignores the padding; without one every token is real.
    """
    if family == "wan":
        frames = noisy.shape[2]
        hidden = noisy if reference is None else torch.cat([noisy, reference], 2)
        return model(hidden_states=hidden, timestep=sigma * 1000, encoder_hidden_states=text,
                     return_dict=False)[0][:, :, :frames]
    if family == "qwen_image":
        return _qwen_image_velocity(model, noisy, sigma, text, reference, text_mask)
    return _flux_velocity(model, noisy, sigma, text, pooled, reference, guidance)


def _statistics(vae, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel ``(latents_mean, latents_std)`` of a VAE config that has them (Wan,
    Qwen-Image), shaped to broadcast over ``latent``; None for scaling/shift VAEs."""
    config = vae.config
    if getattr(config, "latents_mean", None) is None:
        return None
    shape = (1, -1) + (1,) * (latent.ndim - 2)
    return (torch.tensor(config.latents_mean).view(shape).to(latent),
            torch.tensor(config.latents_std).view(shape).to(latent))


def encode_latents(vae, codes: torch.Tensor, video: bool) -> torch.Tensor:
    """VAE latent means of ``[B, T, H, W, 3]`` code values, normalised like the pipelines."""
    pixels = codes.to(vae.device, torch.float32) * 2 - 1
    pixels = pixels.permute(0, 4, 1, 2, 3) if video else pixels[:, 0].permute(0, 3, 1, 2)
    with torch.no_grad():
        latent = vae.encode(pixels).latent_dist.mean
    statistics = _statistics(vae, latent)
    if statistics is not None:
        return (latent - statistics[0]) / statistics[1]
    return (latent - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor


def decode_latents(vae, latents: torch.Tensor, video: bool) -> torch.Tensor:
    """Code values ``[B, H, W, 3]`` (first frame) of normalised latents: the inverse of
    :func:`encode_latents`, never clamped here (some VAEs clamp to [-1, 1] themselves)."""
    latents = latents.to(vae.device, torch.float32)
    statistics = _statistics(vae, latents)
    if statistics is not None:
        latents = latents * statistics[1] + statistics[0]
    else:
        latents = latents / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
    with torch.no_grad():
        sample = vae.decode(latents).sample.float()
    codes = (sample + 1) / 2
    return codes[:, :, 0].permute(0, 2, 3, 1) if video else codes.permute(0, 2, 3, 1)

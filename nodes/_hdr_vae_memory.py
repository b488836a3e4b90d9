"""The HDR VAE under ComfyUI's model management: loaded and offloaded like a stock VAE.

ComfyUI's own ``comfy.sd.VAE`` wraps its model in a ``comfy.model_patcher.ModelPatcher``
(load device: ``vae_device()``, offload device: ``vae_offload_device()``) and calls
``comfy.model_management.load_models_gpu([patcher], memory_required=...)`` before every
encode and decode: that moves the VAE onto the GPU, first offloading other models (the
diffusion model, text encoders) until the weights and the pass's activations fit, and
lets later loads offload the VAE in turn. :class:`ManagedHDRVAE` does the same for the
dual-head HDR VAE, so ``--lowvram``, ``--novram``, ``--gpu-only`` and ``--cpu-vae`` apply
to it as to any VAE.
"""

from __future__ import annotations

import torch
from torch import nn

ENCODE_VALUES_PER_PIXEL = 1767
"""ComfyUI's activation estimate for an AutoencoderKL encode with 128-wide first blocks
(``comfy/sd.py``, ``memory_used_encode``: 1767 values per input pixel)."""
DECODE_VALUES_PER_PIXEL = 2178
"""The same for a decode (``memory_used_decode``: 2178 x 64 per latent pixel at 8x, i.e.
2178 values per output pixel)."""
REFERENCE_WIDTH = 128
"""First-block width those estimates were measured for (SD/SDXL/Flux VAEs)."""
RESIDENT_FRAMES = 3
"""Whole-frame activations a tiled pass keeps between GroupNorms: a resnet's input, its
hidden state and its output (``hdr/models/tiling.py``)."""


class _Holder(nn.Module):
    """What the ModelPatcher moves: it sets ``model.device``, which diffusers' ModelMixin
    exposes read-only, so the VAE rides inside a plain module."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae


class ManagedHDRVAE:
    """An :class:`~comfyui_hdr.hdr.models.hdr_vae.HDRAutoencoder` with its ModelPatcher.

    ``vae`` is the model (float32, eval mode); :meth:`load` brings it onto its load device
    through ComfyUI's model management and returns that device.
    """

    def __init__(self, vae: nn.Module):
        import comfy.model_management
        import comfy.model_patcher

        self.vae = vae
        self.patcher = comfy.model_patcher.ModelPatcher(
            _Holder(vae), load_device=comfy.model_management.vae_device(),
            offload_device=comfy.model_management.vae_offload_device())

    def memory_required(self, frames: int, height: int, width: int, tile: int | None,
                        encode: bool) -> int:
        """Bytes of activations a pass over ``frames`` pictures of ``height`` x ``width``
        pixels needs (``tile``: tile edge in latent pixels, None for whole frames).

        ComfyUI's AutoencoderKL estimates scaled by this VAE's first-block width; a decode
        runs both heads one after the other, so one head's activations plus the other's
        3-channel result. A tiled pass keeps :data:`RESIDENT_FRAMES` whole frames of the
        first block's width and one tile's worth of the untiled estimate.
        """
        width_ratio = self.vae.first_block_width / REFERENCE_WIDTH
        per_pixel = (ENCODE_VALUES_PER_PIXEL if encode else DECODE_VALUES_PER_PIXEL) * width_ratio
        pixels = frames * height * width
        if tile is None:
            values = per_pixel * pixels
        else:
            factor = self.vae.spatial_compression_ratio
            tile_pixels = frames * min(height, tile * factor) * min(width, tile * factor)
            values = (RESIDENT_FRAMES * self.vae.first_block_width * pixels
                      + per_pixel * tile_pixels)
        if not encode:
            values += 3 * pixels
        return int(values * torch.finfo(torch.float32).bits // 8)

    def load(self, frames: int, height: int, width: int, tile: int | None,
             encode: bool) -> torch.device:
        """Load the VAE for a pass (see :meth:`memory_required`); returns its device."""
        import comfy.model_management

        comfy.model_management.load_models_gpu(
            [self.patcher], memory_required=self.memory_required(frames, height, width, tile,
                                                                 encode))
        return self.patcher.load_device

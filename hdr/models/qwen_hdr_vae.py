"""The dual-head HDR VAE on Qwen-Image's VAE blocks, warm-started from ``AutoencoderKLQwenImage``.

Seed 002 (HDR Qwen-Image) fine-tuned Qwen-Image's own VAE (diffusers'
``AutoencoderKLQwenImage``, the Wan 2.1-style causal 3D VAE) into the dual-head HDR VAE:
a learned per-channel scale/offset normalisation in front of the encoder and its inverse
after the scene-linear head, the latent doubled 16 -> 32 channels, a display head and a
scene-linear head decoding the same latent (pixel-aligned by construction). This module
builds that model from the released blocks (``QwenImageEncoder3d``/``QwenImageDecoder3d``)
with the interface of :class:`~.hdr_vae.HDRAutoencoder`, so the nodes, ``train-vae`` and
:func:`~.hdr_vae.load_hdr_vae` (the config's ``_class_name`` decides) take either.

Pictures are single frames: the 3D blocks run on ``T = 1``, where their causal time
padding and temporal resampling reduce to what ``AutoencoderKLQwenImage`` does for the
first frame (its ``feat_cache`` is empty then: diffusers
``autoencoder_kl_qwenimage.py``, ``QwenImageResample.forward`` skips ``time_conv`` for the
first chunk). The blocks normalise with RMS norm per pixel, so a frame needs no
whole-frame statistics; there is no tiled path here, and a tiled call runs the whole
frame (the same pixels, without the memory saving of the 2D-block model's tiles).

Warm start (:meth:`QwenHDRAutoencoder.from_qwen_image`): the source's encoder, quant convs
and decoder are copied into the first 16 latent channels of both heads
(:func:`.warm_start.copy_autoencoder_kl`), the new channels start at zero wherever they
would change the source's output, and the input normalisation starts mapping the
training range ``[scene_log2_min, scene_log2_max]`` stops onto the encoder's code range
[-1, 1]. At step 0, a scene-linear picture whose normalised code values are an SDR
picture's ``x`` (``scene = model.input_normalisation.inverse(x)``) encodes to the latent
the source gives ``x`` (first 16 channels) and the display head decodes it to the
source's reconstruction of ``x``; the scene-linear head decodes the same values through
the inverse normalisation.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.autoencoder_kl_qwenimage import (
    QwenImageCausalConv3d,
    QwenImageDecoder3d,
    QwenImageEncoder3d,
)
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..tonemap import TONE_MAPPERS
from .hdr_vae import HDRAutoencoder, HDRDecoderOutput, SceneLinearNormalisation
from .precision import strict_fp32
from .warm_start import copy_autoencoder_kl

__all__ = ["QwenDecoderHead", "QwenHDRAutoencoder"]


def _run(module: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """``module(frames)``, recomputed in backward when gradient checkpointing is on (diffusers'
    ``enable_gradient_checkpointing`` sets the flag and function on the Qwen-Image blocks)."""
    if torch.is_grad_enabled() and getattr(module, "gradient_checkpointing", False):
        return module._gradient_checkpointing_func(module, frames)
    return module(frames)


def _one_tile(result, progress):
    """``result`` of a whole-frame pass, reported to ``progress`` as one tile of one."""
    if progress is not None:
        progress(1, 1)
    return result


class QwenDecoderHead(nn.Module):
    """One head: Qwen-Image's 1x1x1 ``post_quant_conv`` and ``QwenImageDecoder3d`` on a
    single frame (``[B, C, h, w]`` in, ``[B, 3, H, W]`` out)."""

    def __init__(self, latent_channels: int, out_channels: int, **blocks):
        super().__init__()
        self.post_quant_conv = QwenImageCausalConv3d(latent_channels, latent_channels, 1)
        self.decoder = QwenImageDecoder3d(z_dim=latent_channels, input_channels=out_channels,
                                          **blocks)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return _run(self.decoder, self.post_quant_conv(latent[:, :, None]))[:, :, 0]


class QwenHDRAutoencoder(HDRAutoencoder):
    """Dual-head HDR VAE on Qwen-Image's VAE blocks (see the module).

    Parameters
    ----------
    in_channels, out_channels
        Colour channels (3).
    latent_channels
        Latent channels; 32 (Qwen-Image's 16, doubled).
    base_dim, dim_mult, num_res_blocks, attn_scales, temperal_downsample, dropout
        As in diffusers' ``AutoencoderKLQwenImage`` (Qwen-Image: 96, (1, 2, 4, 4), 2, (),
        (False, True, True), 0): 8x spatial compression.
    scene_log2_min, scene_log2_max, display_tone_mapper, scaling_factor, shift_factor
        As in :class:`~.hdr_vae.HDRAutoencoder`.

    References
    ----------
    Issue 16, item 1; seed 002 (HDR Qwen-Image); diffusers ``AutoencoderKLQwenImage``.

    >>> vae = QwenHDRAutoencoder(base_dim=8, dim_mult=(1, 2), num_res_blocks=1,
    ...                          temperal_downsample=(False,))
    >>> latent = vae.encode(torch.full((1, 3, 8, 8), 4.0)).mode()
    >>> tuple(latent.shape), tuple(vae.decode(latent).linear.shape)
    ((1, 32, 4, 4), (1, 3, 8, 8))
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 32,
        base_dim: int = 96,
        dim_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_scales: tuple[float, ...] = (),
        temperal_downsample: tuple[bool, ...] = (False, True, True),
        dropout: float = 0.0,
        scene_log2_min: float = -12.0,
        scene_log2_max: float = 17.0,
        display_tone_mapper: str = "reinhard",
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
    ):
        ModelMixin.__init__(self)
        if len(temperal_downsample) != len(dim_mult) - 1:
            raise ValueError(f"temperal_downsample needs one entry per downsampling block "
                             f"({len(dim_mult) - 1} for dim_mult {tuple(dim_mult)}), got "
                             f"{tuple(temperal_downsample)}")
        if display_tone_mapper not in TONE_MAPPERS:
            raise ValueError(f"display_tone_mapper {display_tone_mapper!r} is unknown; use one "
                             "of: " + ", ".join(TONE_MAPPERS))
        blocks = dict(dim=base_dim, dim_mult=list(dim_mult), num_res_blocks=num_res_blocks,
                      attn_scales=list(attn_scales), dropout=dropout)
        self.input_normalisation = SceneLinearNormalisation(in_channels, scene_log2_min,
                                                            scene_log2_max)
        self.encoder = QwenImageEncoder3d(z_dim=2 * latent_channels, input_channels=in_channels,
                                          temperal_downsample=list(temperal_downsample),
                                          **blocks)
        self.quant_conv = QwenImageCausalConv3d(2 * latent_channels, 2 * latent_channels, 1)
        upsample = list(temperal_downsample)[::-1]
        self.display_head = QwenDecoderHead(latent_channels, out_channels,
                                            temperal_upsample=upsample, **blocks)
        self.linear_head = QwenDecoderHead(latent_channels, out_channels,
                                           temperal_upsample=upsample, **blocks)
        self.output_normalisation = SceneLinearNormalisation(out_channels, scene_log2_min,
                                                             scene_log2_max)

    @property
    def spatial_compression_ratio(self) -> int:
        """Pixels per latent pixel along each axis (8 for Qwen-Image's layout)."""
        return 2 ** len(self.config.temperal_downsample)

    @property
    def first_block_width(self) -> int:
        """Channels of the first encoder block (what memory estimates scale with)."""
        return self.config.base_dim * self.config.dim_mult[0]

    def encode(self, x_linear: torch.Tensor) -> DiagonalGaussianDistribution:
        """Encode scene-linear ``[B, 3, H, W]`` (H, W multiples of 8) to the latent posterior."""
        self._check_image(x_linear)
        with strict_fp32():
            code = self.input_normalisation(x_linear)[:, :, None]
            moments = self.quant_conv(_run(self.encoder, code))
            return DiagonalGaussianDistribution(moments[:, :, 0])

    def encode_tiled(self, x_linear: torch.Tensor, tile_latent: int = 64,
                     progress=None) -> DiagonalGaussianDistribution:
        """:meth:`encode` on the whole frame (no tiled path: see the module)."""
        return _one_tile(self.encode(x_linear), progress)

    def decode_tiled(self, z: torch.Tensor, tile_latent: int = 64,
                     progress=None) -> HDRDecoderOutput:
        """:meth:`decode` on the whole frame (no tiled path: see the module)."""
        return _one_tile(self.decode(z), progress)

    @classmethod
    def from_autoencoder_kl(cls, vae, latent_channels: int = 32, **config):
        """Refused: this model warm-starts from Qwen-Image's VAE (:meth:`from_qwen_image`)."""
        raise ValueError(f"QwenHDRAutoencoder warm-starts from an AutoencoderKLQwenImage, not "
                         f"a {type(vae).__name__}; use QwenHDRAutoencoder.from_qwen_image, or "
                         "HDRAutoencoder.from_autoencoder_kl for an AutoencoderKL")

    @classmethod
    def from_qwen_image(cls, vae, latent_channels: int = 32, **config) -> QwenHDRAutoencoder:
        """Warm-start from a diffusers ``AutoencoderKLQwenImage`` (see the module).

        ``config`` overrides the HDR fields (``scene_log2_min``, ``display_tone_mapper``, ...).
        """
        source = vae.config
        model = cls(in_channels=source.input_channels, out_channels=source.input_channels,
                    latent_channels=latent_channels, base_dim=source.base_dim,
                    dim_mult=tuple(source.dim_mult), num_res_blocks=source.num_res_blocks,
                    attn_scales=tuple(source.attn_scales),
                    temperal_downsample=tuple(source.temperal_downsample),
                    dropout=source.dropout, **config)
        copy_autoencoder_kl(vae, model)
        return model

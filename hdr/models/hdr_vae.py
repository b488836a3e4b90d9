"""The dual-head HDR VAE: one 32-channel latent, a display head and a scene-linear head.

Seed 002 (HDR Qwen-Image) encodes scene-linear light once and decodes the latent twice:
a display-referred (tone-mapped) head and a scene-linear head. Both heads read the same
latent, so their pictures are pixel-aligned by construction. A learned per-channel
normalisation (scale + offset on log2 stops, invertible) sits in front of the encoder and
after the scene-linear head; it starts as the fixed log2 mapping of the training set's
range ``[scene_log2_min, scene_log2_max]`` onto the network's [-1, 1].

Blocks: diffusers' 2D ``Encoder``/``Decoder`` (the AutoencoderKL blocks), chosen by a
measurement on CPU: tiny dual-head models (block widths 32/64, one layer per block) on 64
procedural 32x32 scenes, AdamW, batch 8, 200 steps, held-out mean |log2 error| of the
scene-linear head. At lr 1e-3 the 2D blocks went 3.92 -> 0.70 -> 0.64 -> 0.59 -> 0.54
stops (every 50 steps), the Qwen-Image blocks 2.51 -> 0.81 -> 0.85 -> 0.70 -> 0.54, at
2.3x the step time; at 3e-3 the 2D blocks ended at 0.66 and the Qwen-Image ones at 0.86
after climbing to 1.00. Both train at 1e-3 at this size; the 2D blocks train more
steadily, run faster, and let :meth:`HDRAutoencoder.from_autoencoder_kl` warm-start from
the 16- and 4-channel AutoencoderKLs (FLUX.1, SD3, SD/SDXL).

The display head outputs display code values in diffusers' image range ([-1, 1] is black
to the SDR peak, sRGB-encoded); ``(display + 1) / 2`` is a ComfyUI IMAGE. The scene-linear
head outputs scene-linear light (1.0 = diffuse white) and is never clamped. The model
runs in float32 only: bf16 and fp16 band smooth HDR gradients, and so does TF32, so its
encodes and decodes run under :func:`.precision.strict_fp32` (TF32 off for its own
convolutions and matmuls, the caller's settings restored afterwards). Training's backward
pass runs outside that block, under the trainer's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder, DiagonalGaussianDistribution, Encoder
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..gamut import luminance
from ..tonemap import TONE_MAPPERS, get_tone_mapper
from ..transfer import srgb_encode
from .checkpoint_dir import check_safetensors_dir
from .latent_stats import LATENT_STATS_FILE, LatentStatistics, read_latent_stats
from .precision import strict_fp32
from .tiling import decode_tiled, encode_tiled
from .warm_start import copy_autoencoder_kl

__all__ = [
    "HDRAutoencoder",
    "HDRAutoencoderOutput",
    "HDRDecoderOutput",
    "HDRVAELoss",
    "SceneLinearNormalisation",
    "display_target",
    "load_hdr_vae",
    "vae_loss",
]



@dataclass
class HDRDecoderOutput(BaseOutput):
    """What both heads decode from one latent.

    display: ``[B, 3, H, W]`` display code values, [-1, 1] = black to the SDR peak.
    linear: ``[B, 3, H, W]`` scene-linear light, 1.0 = diffuse white, unclamped.
    """

    display: torch.Tensor
    linear: torch.Tensor


@dataclass
class HDRAutoencoderOutput(BaseOutput):
    """A forward pass: both heads' pictures and the posterior they were decoded from."""

    display: torch.Tensor
    linear: torch.Tensor
    latent_dist: DiagonalGaussianDistribution


class SceneLinearNormalisation(nn.Module):
    """Learned, invertible per-channel map between scene-linear light and code values.

    ``code = scale * stops(x) + offset`` with ``scale = exp(log_scale) > 0`` and
    ``stops(x) = asinh(x / (2 floor)) / ln 2 + log2(floor)``: log2 of ``x`` to within
    0.01 stops above 8x the floor, linear through zero below it (so small negatives from
    wide-gamut conversions survive), and exactly invertible with ``sinh``.

    Parameters
    ----------
    channels
        Colour channels (3).
    log2_min, log2_max
        The training set's range in log2 stops; it starts mapped onto code [-1, 1], and
        ``2**log2_min`` is the floor.

    >>> norm = SceneLinearNormalisation(3, -12.0, 17.0)
    >>> code = norm(torch.tensor([[[[0.18]], [[1.0]], [[1e4]]]]))
    >>> [round(value, 4) for value in code.flatten().tolist()]  # 18% grey, white, 1e4
    [-0.343, -0.1724, 0.744]
    """

    def __init__(self, channels: int, log2_min: float, log2_max: float):
        super().__init__()
        if not log2_max > log2_min:
            raise ValueError(f"scene_log2_max ({log2_max}) must be above scene_log2_min "
                             f"({log2_min}); give the training set's range in log2 stops")
        self.log2_floor = float(log2_min)
        span = log2_max - log2_min
        self.log_scale = nn.Parameter(torch.full((channels,), math.log(2.0 / span)))
        self.offset = nn.Parameter(torch.full((channels,), -(log2_max + log2_min) / span))

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_scale.exp()[None, :, None, None], self.offset[None, :, None, None]

    def forward(self, scene_linear: torch.Tensor) -> torch.Tensor:
        """Scene-linear ``[B, C, H, W]`` -> code values."""
        floor = 2.0**self.log2_floor
        stops = torch.asinh(scene_linear / (2 * floor)) / math.log(2) + self.log2_floor
        scale, offset = self._affine()
        return stops * scale + offset

    def inverse(self, code: torch.Tensor) -> torch.Tensor:
        """Code values ``[B, C, H, W]`` -> scene-linear (never clamped)."""
        scale, offset = self._affine()
        stops = (code - offset) / scale
        return 2 * 2.0**self.log2_floor * torch.sinh((stops - self.log2_floor) * math.log(2))


class DecoderHead(nn.Module):
    """One head: an optional 1x1 ``post_quant_conv`` and a diffusers 2D ``Decoder``."""

    def __init__(self, latent_channels: int, out_channels: int, use_post_quant_conv: bool,
                 **decoder_config):
        super().__init__()
        self.post_quant_conv = (nn.Conv2d(latent_channels, latent_channels, 1)
                                if use_post_quant_conv else None)
        self.decoder = Decoder(in_channels=latent_channels, out_channels=out_channels,
                               **decoder_config)

    def prepare(self, latent: torch.Tensor) -> torch.Tensor:
        return latent if self.post_quant_conv is None else self.post_quant_conv(latent)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.prepare(latent))


class HDRAutoencoder(ModelMixin, ConfigMixin):
    """Dual-head HDR VAE: scene-linear in, a display picture and a scene-linear picture out.

    Parameters
    ----------
    in_channels, out_channels
        Colour channels (3, scene-linear Rec.709 unless trained otherwise).
    latent_channels
        Latent channels; 32 in seed 002.
    down_block_types, up_block_types, block_out_channels, layers_per_block, act_fn,
    norm_num_groups, mid_block_add_attention, use_quant_conv, use_post_quant_conv
        As in diffusers' ``AutoencoderKL``.
    scene_log2_min, scene_log2_max
        The training set's scene-linear range in log2 stops (the normalisation's start).
    display_tone_mapper
        Name in :data:`~comfyui_hdr.hdr.tonemap.TONE_MAPPERS` the display head learns.
    scaling_factor, shift_factor
        Latent statistics for the diffusion model, ``(z - shift) * scale``, as in diffusers.

    References
    ----------
    Issue 6 (the HDR model stack), item 1; seed 002 (HDR Qwen-Image).

    >>> vae = HDRAutoencoder(block_out_channels=(32, 64), layers_per_block=1,
    ...                      down_block_types=("DownEncoderBlock2D",) * 2,
    ...                      up_block_types=("UpDecoderBlock2D",) * 2)
    >>> latent = vae.encode(torch.full((1, 3, 16, 16), 4.0)).mode()
    >>> decoded = vae.decode(latent)
    >>> tuple(latent.shape), tuple(decoded.display.shape), tuple(decoded.linear.shape)
    ((1, 32, 8, 8), (1, 3, 16, 16), (1, 3, 16, 16))
    """

    _supports_gradient_checkpointing = True
    latent_stats: LatentStatistics | None = None
    """Per-channel latent statistics from the folder's ``latent_stats.json`` (None: none)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 32,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4,
        block_out_channels: tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        mid_block_add_attention: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        scene_log2_min: float = -12.0,
        scene_log2_max: float = 17.0,
        display_tone_mapper: str = "reinhard",
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
    ):
        super().__init__()
        for name, kinds, allowed in (("down_block_types", down_block_types, "DownEncoderBlock2D"),
                                     ("up_block_types", up_block_types, "UpDecoderBlock2D")):
            if set(kinds) != {allowed}:
                raise ValueError(f"{name} must all be {allowed!r} (the AutoencoderKL blocks the "
                                 f"tiled decode supports), got {tuple(kinds)}")
        if display_tone_mapper not in TONE_MAPPERS:
            raise ValueError(f"display_tone_mapper {display_tone_mapper!r} is unknown; use one "
                             "of: " + ", ".join(TONE_MAPPERS))
        blocks = dict(block_out_channels=tuple(block_out_channels),
                      layers_per_block=layers_per_block, act_fn=act_fn,
                      norm_num_groups=norm_num_groups,
                      mid_block_add_attention=mid_block_add_attention)
        self.input_normalisation = SceneLinearNormalisation(in_channels, scene_log2_min,
                                                            scene_log2_max)
        self.encoder = Encoder(in_channels=in_channels, out_channels=latent_channels,
                               down_block_types=tuple(down_block_types), double_z=True, **blocks)
        self.quant_conv = (nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
                           if use_quant_conv else None)
        decoder = dict(up_block_types=tuple(up_block_types), **blocks)
        self.display_head = DecoderHead(latent_channels, out_channels, use_post_quant_conv,
                                        **decoder)
        self.linear_head = DecoderHead(latent_channels, out_channels, use_post_quant_conv,
                                       **decoder)
        self.output_normalisation = SceneLinearNormalisation(out_channels, scene_log2_min,
                                                             scene_log2_max)

    @property
    def spatial_compression_ratio(self) -> int:
        """Pixels per latent pixel along each axis (8 for four blocks)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def first_block_width(self) -> int:
        """Channels of the first encoder block (what memory estimates scale with)."""
        return self.config.block_out_channels[0]

    def _check_fp32(self, tensor: torch.Tensor, name: str) -> None:
        if self.dtype != torch.float32:
            raise ValueError(f"the HDR VAE's weights are {self.dtype}; it runs in float32 "
                             "(fp32) only, since fp16/bf16 band HDR gradients: call .float() "
                             "on it or load it with load_hdr_vae")
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32:
            dtype = getattr(tensor, "dtype", type(tensor).__name__)
            raise ValueError(f"{name} is {dtype}; the HDR VAE takes float32 (fp32) tensors "
                             f"only: pass {name}.float()")
        if tensor.ndim != 4:
            raise ValueError(f"{name} must be [batch, channels, height, width], got shape "
                             f"{tuple(tensor.shape)}")

    def _check_image(self, x_linear: torch.Tensor) -> None:
        self._check_fp32(x_linear, "x_linear")
        factor = self.spatial_compression_ratio
        if x_linear.shape[1] != self.config.in_channels:
            raise ValueError(f"x_linear has {x_linear.shape[1]} channels; the HDR VAE encodes "
                             f"{self.config.in_channels}-channel scene-linear RGB")
        if x_linear.shape[-2] % factor or x_linear.shape[-1] % factor:
            raise ValueError(f"x_linear is {x_linear.shape[-2]}x{x_linear.shape[-1]}; height "
                             f"and width must be multiples of {factor}: pad or crop it")
        _check_finite(x_linear, "x_linear", "the scene-linear input must be finite")

    def _posterior(self, moments: torch.Tensor) -> DiagonalGaussianDistribution:
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return DiagonalGaussianDistribution(moments)

    def encode(self, x_linear: torch.Tensor) -> DiagonalGaussianDistribution:
        """Encode scene-linear ``[B, 3, H, W]`` (H, W multiples of 8) to the latent posterior."""
        self._check_image(x_linear)
        with strict_fp32():
            return self._posterior(self.encoder(self.input_normalisation(x_linear)))

    def encode_tiled(self, x_linear: torch.Tensor, tile_latent: int = 64,
                     progress=None) -> DiagonalGaussianDistribution:
        """Encode a large frame tile by tile, equal to :meth:`encode` to float32 rounding
        (whole-frame GroupNorm statistics, true neighbours for every convolution: see
        :mod:`.tiling`). ``tile_latent`` and ``progress`` as :meth:`decode_tiled`."""
        self._check_image(x_linear)
        with strict_fp32():
            return self._posterior(encode_tiled(self.input_normalisation, self.encoder,
                                                x_linear, tile_latent, progress))

    def check_latent(self, z: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``z`` is a finite float32 HDR-VAE latent."""
        self._check_fp32(z, "z")
        channels = self.config.latent_channels
        if z.shape[1] != channels:
            raise ValueError(
                f"the latent has {z.shape[1]} channels; this HDR VAE needs a {channels}-channel "
                f"HDR-VAE latent (from HDR VAE Encode, Empty HDR Latent or a widened model); "
                f"a {z.shape[1]}-channel latent belongs to a standard VAE: decode it with that VAE")
        _check_finite(z, "the latent", "sample and decode HDR latents in float32 (fp32)")

    def _finish(self, display: torch.Tensor, linear_code: torch.Tensor) -> HDRDecoderOutput:
        output = HDRDecoderOutput(display=display,
                                  linear=self.output_normalisation.inverse(linear_code))
        for name in ("display", "linear"):
            _check_finite(getattr(output, name), f"the decoded {name} picture",
                          "run the HDR VAE in float32 (fp32), not fp16/bf16")
        return output

    def decode(self, z: torch.Tensor) -> HDRDecoderOutput:
        """Decode a 32-channel latent through both heads."""
        self.check_latent(z)
        with strict_fp32():
            return self._finish(self.display_head(z), self.linear_head(z))

    def decode_tiled(self, z: torch.Tensor, tile_latent: int = 64,
                     progress=None) -> HDRDecoderOutput:
        """Decode a large latent tile by tile, equal to :meth:`decode` to float32 rounding.

        Every GroupNorm normalises with whole-frame statistics and every convolution reads
        its true neighbours, so tiles show no seam and need no overlap or feathering (see
        :mod:`.tiling`); only the per-tile temporaries shrink with the tile.

        Parameters
        ----------
        z
            ``[B, latent_channels, h, w]`` float32 latent.
        tile_latent
            Tile size in latent pixels (x8 in output pixels for four blocks).
        progress
            ``progress(done, total)`` called after every tile, or None.
        """
        self.check_latent(z)
        with strict_fp32():
            display, linear_code = decode_tiled((self.display_head, self.linear_head), z,
                                                tile_latent, progress)
            return self._finish(display, linear_code)

    def forward(self, x_linear: torch.Tensor, sample_posterior: bool = False,
                generator: torch.Generator | None = None) -> HDRAutoencoderOutput:
        """Encode, take the posterior's mode (or a sample), decode through both heads."""
        posterior = self.encode(x_linear)
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        decoded = self.decode(z)
        return HDRAutoencoderOutput(display=decoded.display, linear=decoded.linear,
                                    latent_dist=posterior)

    @classmethod
    def from_autoencoder_kl(cls, vae, latent_channels: int = 32, **config) -> HDRAutoencoder:
        """Warm-start from a pretrained diffusers ``AutoencoderKL`` (16 or 4 channels).

        The source's encoder and decoder are copied into both heads' first channels and the
        new channels start at zero, so at step 0 the display head *is* the source decoder:
        ``decode(cat([z, anything])).display == vae.decode(z).sample`` exactly (0.0 on CPU,
        where zero-weight channels add exact zeros). The 1x1 quant convs get identity on the
        new channels' diagonal so training gradients reach them. ``config`` overrides the
        HDR fields (``scene_log2_min``, ``display_tone_mapper``, ...).
        """
        source = vae.config
        model = cls(in_channels=source.in_channels, out_channels=source.out_channels,
                    latent_channels=latent_channels,
                    down_block_types=tuple(source.down_block_types),
                    up_block_types=tuple(source.up_block_types),
                    block_out_channels=tuple(source.block_out_channels),
                    layers_per_block=source.layers_per_block, act_fn=source.act_fn,
                    norm_num_groups=source.norm_num_groups,
                    mid_block_add_attention=source.mid_block_add_attention,
                    use_quant_conv=source.use_quant_conv,
                    use_post_quant_conv=source.use_post_quant_conv, **config)
        copy_autoencoder_kl(vae, model)
        return model


def _check_finite(tensor: torch.Tensor, name: str, fix: str) -> None:
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        raise ValueError(f"{name} contains NaN or inf at {bad} values; {fix}")


def display_target(scene_linear: torch.Tensor, tone_mapper: str = "reinhard") -> torch.Tensor:
    """The display head's target: tone-map scene-linear ``[B, 3, H, W]``, sRGB-encode, [-1, 1].

    >>> target = display_target(torch.ones(1, 3, 1, 1))  # Reinhard: 1.0 -> 0.5 -> sRGB 0.7354
    >>> [round(value, 4) for value in target.flatten().tolist()]
    [0.4707, 0.4707, 0.4707]
    """
    display_linear = get_tone_mapper(tone_mapper)(scene_linear.movedim(1, -1)).movedim(-1, 1)
    return srgb_encode(display_linear.clamp(0.0, 1.0)) * 2 - 1


@dataclass
class HDRVAELoss:
    """The terms of :func:`vae_loss`; ``total`` is the one to backpropagate."""

    total: torch.Tensor
    linear: torch.Tensor
    display: torch.Tensor
    kl: torch.Tensor


def vae_loss(output: HDRDecoderOutput | HDRAutoencoderOutput, target_linear: torch.Tensor,
             target_display: torch.Tensor, posterior: DiagonalGaussianDistribution, *,
             floor: float = 2.0**-12, display_weight: float = 1.0, kl_weight: float = 1e-6,
             highlight_weight: float = 0.0, highlight_threshold: float = 1.0) -> HDRVAELoss:
    """The HDR VAE's training loss (issue 6, item 3).

    ``linear`` = mean of ``w |log2 max(pred, floor) - log2 max(target, floor)|`` (L1 in
    stops), ``w = 1 + highlight_weight`` where the target's luminance exceeds
    ``highlight_threshold`` (diffuse white) and 1 elsewhere; ``display`` = mean L1 against
    ``target_display`` (see :func:`display_target`); ``kl`` = the posterior's KL divergence
    from N(0, 1), summed over the latent and averaged over the batch (diffusers' ``kl()``).
    ``total = linear + display_weight * display + kl_weight * kl``.
    """
    stops_error = (torch.log2(output.linear.clamp_min(floor))
                   - torch.log2(target_linear.clamp_min(floor))).abs()
    bright = luminance(target_linear.movedim(1, -1)).unsqueeze(1) > highlight_threshold
    weight = 1 + highlight_weight * bright.to(stops_error.dtype)
    linear = (stops_error * weight).mean()
    display = (output.display - target_display).abs().mean()
    kl = posterior.kl().mean()
    return HDRVAELoss(total=linear + display_weight * display + kl_weight * kl,
                      linear=linear, display=display, kl=kl)


def load_hdr_vae(path: str | Path) -> HDRAutoencoder:
    """Load an HDR VAE directory (``config.json`` + ``*.safetensors``) in float32, eval mode,
    with its ``latent_stats.json`` (if any) as ``model.latent_stats``. The config's
    ``_class_name`` picks the model: ``HDRAutoencoder`` (2D blocks) or
    ``QwenHDRAutoencoder`` (Qwen-Image's blocks, :mod:`.qwen_hdr_vae`).

    Pickle checkpoints (``.bin``, ``.pt``, ``.ckpt``, ...) are refused: unpickling can run
    arbitrary code.
    """
    directory = Path(path)
    check_safetensors_dir(directory, "HDR VAE folder")
    from .qwen_hdr_vae import QwenHDRAutoencoder

    classes = {model.__name__: model for model in (HDRAutoencoder, QwenHDRAutoencoder)}
    class_name = HDRAutoencoder.load_config(directory).get("_class_name")
    if class_name not in classes:
        raise ValueError(f"{directory} holds a {class_name}, not an HDRAutoencoder or "
                         "QwenHDRAutoencoder; convert a 16-channel AutoencoderKL with "
                         "HDRAutoencoder.from_autoencoder_kl, or Qwen-Image's VAE with "
                         "QwenHDRAutoencoder.from_qwen_image")
    model = classes[class_name].from_pretrained(directory, use_safetensors=True,
                                                torch_dtype=torch.float32, disable_mmap=True)
    stats = model.latent_stats = read_latent_stats(directory)
    if stats is not None and stats.channels != model.config.latent_channels:
        raise ValueError(f"{directory / LATENT_STATS_FILE} holds statistics of "
                         f"{stats.channels} channels but the VAE's latent has "
                         f"{model.config.latent_channels}; measure them again with "
                         f"`python -m comfyui_hdr.training latent-stats --vae {directory}`")
    return model.eval()

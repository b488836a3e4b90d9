"""LumaFlux's adapter parts in plain torch: physical features, TLAM, the gated value LoRA
(PGA), the perceptual FiLM (PCM), the coupler, and the frozen SigLIP encoder they read.

Every part that writes into the frozen transformer starts at an exact no-op (a zero
LoRA up-projection, FiLM at ``gamma = 1, zeta = 0``, a zero coupler), so attaching the
adapters leaves the base model's output bit for bit unchanged until they are trained.
:mod:`.lumaflux` hooks them into a diffusers ``FluxTransformer2DModel``.

References
----------
LumaFlux poster: PGA (physically gated value LoRA, V = z (W_V0 + R_v(t, l)), optional
spectral gating), PCM (SigLIP -> cross-attention -> FiLM, h = gamma_{t,l} LN(h) +
zeta_{t,l}), TLAM (Psi(t, l) -> 6 scalars), coupler (z += lambda (W_p T_phys +
W_c C(T_perc))). E. Perez et al. (2018), FiLM, AAAI. E. Hu et al. (2022), LoRA, ICLR.
X. Zhai et al. (2023), SigLIP, ICCV.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding

from ..gamut import luminance_weights
from .tone_field import check_sdr

PHYSICAL_FEATURES = ("mean_luma", "luma_contrast", "gradient", "saturation",
                     "mid_band_energy", "high_band_energy")
"""T_phys, per image: the poster's luminance, gradient magnitude, saturation and FFT
band-energy terms (the last two are the spectral ones that spectral gating scales)."""

SPECTRAL_BANDS = (0.125, 0.25)
"""Radial frequency edges in cycles per pixel (0.5 = Nyquist): mid band [0.125, 0.25),
high band [0.25, Nyquist]; octave bands, as in classic band-energy texture measures."""

TLAM_SCALARS = ("pga_alpha", "pga_beta", "pcm_alpha", "pcm_beta", "spectral_gate",
                "coupler_lambda")
"""The poster's 6 scalars per (timestep, layer), in the order TLAM returns them."""

TLAM_START = (1.0, 0.0, 1.0, 1.0, 0.0, 1.0)
"""TLAM's initial output: PGA's alpha 1 and beta 0 (the gates' logits unscaled and
unshifted: gates 0.5), PCM's alpha and beta 1 (the FiLM reads its zero-initialised
projections unscaled; a beta of 0 would be a saddle where ``zeta = beta W_zeta c`` and
both of its factors get zero gradient, so the FiLM shift never trained), spectral-gate
logit 0 (sigmoid 0.5), coupler lambda 1."""

_SATURATION_EPS = 1e-6  # HSV saturation (max - min) / max is undefined at black


def physical_features(sdr: torch.Tensor) -> torch.Tensor:
    """T_phys of SDR images: ``[B, H, W, 3]`` sRGB code values -> ``[B, 6]``.

    Rec.709 luma (the SDR input's own weights) mean and standard deviation, mean
    gradient magnitude of luma (forward differences), mean HSV saturation, and the shares
    of luma's spectral energy (DC removed) in the mid and high bands of
    :data:`SPECTRAL_BANDS`.

    >>> physical_features(torch.full((1, 8, 8, 3), 0.5)).tolist()
    [[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]]
    """
    check_sdr(sdr)
    weights = torch.tensor(luminance_weights("rec709"), dtype=sdr.dtype, device=sdr.device)
    luma = sdr @ weights
    gradient = torch.sqrt(F.pad(luma.diff(dim=-1), (0, 1)).square()
                          + F.pad(luma.diff(dim=-2), (0, 0, 0, 1)).square())
    high, low = sdr.amax(dim=-1), sdr.amin(dim=-1)
    saturation = (high - low) / high.clamp_min(_SATURATION_EPS)
    energy = torch.fft.fft2((luma - luma.mean(dim=(-2, -1), keepdim=True)).float()).abs()
    energy = energy.square()
    fy = torch.fft.fftfreq(luma.shape[-2], device=sdr.device)[:, None]
    fx = torch.fft.fftfreq(luma.shape[-1], device=sdr.device)[None, :]
    radius = torch.sqrt(fy.square() + fx.square())
    total = energy.sum(dim=(-2, -1)).clamp_min(torch.finfo(energy.dtype).tiny)
    mid = (energy * ((radius >= SPECTRAL_BANDS[0]) & (radius < SPECTRAL_BANDS[1]))).sum((-2, -1))
    top = (energy * (radius >= SPECTRAL_BANDS[1])).sum(dim=(-2, -1))
    return torch.stack([luma.mean(dim=(-2, -1)), luma.std(dim=(-2, -1), correction=0),
                        gradient.mean(dim=(-2, -1)), saturation.mean(dim=(-2, -1)),
                        (mid / total).to(sdr.dtype), (top / total).to(sdr.dtype)], dim=-1)


class TimestepLayerModulation(torch.nn.Module):
    """TLAM: Psi(t, l) -> the 6 scalars of :data:`TLAM_SCALARS` for timestep t and layer l.

    A sinusoidal embedding of ``t * 1000`` (Flux's timestep scale) plus a learned
    embedding of the layer, through a two-layer MLP whose last layer starts at zero
    weights and bias :data:`TLAM_START`.
    """

    def __init__(self, layers: int, width: int = 64):
        super().__init__()
        self.width = width
        self.layer_embedding = torch.nn.Embedding(layers, width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.SiLU(),
                                       torch.nn.Linear(width, len(TLAM_SCALARS)))
        torch.nn.init.zeros_(self.mlp[2].weight)
        with torch.no_grad():
            self.mlp[2].bias.copy_(torch.tensor(TLAM_START))

    def forward(self, timestep: torch.Tensor, layer: int) -> torch.Tensor:
        """``timestep`` ``[B]`` in [0, 1] and a layer index -> ``[B, 6]``."""
        if not 0 <= layer < self.layer_embedding.num_embeddings:
            raise ValueError(f"layer is {layer}; TLAM was built for "
                             f"{self.layer_embedding.num_embeddings} layers (0-based)")
        weight = self.layer_embedding.weight
        time = get_timestep_embedding(timestep.reshape(-1).to(weight.dtype) * 1000, self.width)
        return self.mlp(time.to(weight.device) + weight[layer])


class GatedValueLoRA(torch.nn.Module):
    """PGA on one value projection: ``delta V = gates * (x A^T B^T)``, per head.

    The gates are ``sigmoid(alpha * W_g T_phys + beta)`` per head, alpha and beta from
    TLAM; with spectral gating the band-energy features enter ``W_g`` scaled by TLAM's
    ``sigmoid(spectral_gate)``, without it they are left out. ``B`` starts at zero (LoRA's
    init), so the delta starts at exactly zero. With ``gated=False`` the gates are left
    out: a plain LoRA of the value projection (the poster's "plain LoRA r8" row).
    """

    def __init__(self, in_features: int, heads: int, head_dim: int, rank: int = 8,
                 spectral: bool = True, gated: bool = True):
        super().__init__()
        self.heads, self.head_dim, self.spectral = heads, head_dim, spectral
        self.gated = gated
        self.down = torch.nn.Linear(in_features, rank, bias=False)
        self.up = torch.nn.Linear(rank, heads * head_dim, bias=False)
        torch.nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))  # peft's LoRA A
        torch.nn.init.zeros_(self.up.weight)
        self.gate = torch.nn.Linear(len(PHYSICAL_FEATURES), heads)

    def gates(self, physical: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        """Per-head gates ``[B, heads]`` from T_phys ``[B, 6]`` and TLAM's ``[B, 6]``."""
        spectral = torch.sigmoid(scalars[:, 4:5]) if self.spectral else 0.0
        features = torch.cat([physical[:, :4], physical[:, 4:] * spectral], dim=-1)
        logits = self.gate(features.to(self.gate.weight.dtype))
        return torch.sigmoid(scalars[:, :1] * logits + scalars[:, 1:2])

    def forward(self, x: torch.Tensor, physical: torch.Tensor, scalars: torch.Tensor
                ) -> torch.Tensor:
        """The value delta for tokens ``x`` ``[B, N, in_features]``."""
        delta = self.up(self.down(x.to(self.down.weight.dtype)))
        if not self.gated:
            return delta.to(x.dtype)
        gates = self.gates(physical, scalars).to(delta.dtype)
        delta = delta.unflatten(-1, (self.heads, self.head_dim)) * gates[:, None, :, None]
        return delta.flatten(-2).to(x.dtype)


class PerceptualFiLM(torch.nn.Module):
    """PCM on one block: image tokens attend to SigLIP tokens, and the context sets a FiLM
    ``h = gamma * LN(h) + zeta`` with ``gamma = 1 + alpha W_gamma c``, ``zeta = beta
    W_zeta c`` (alpha, beta from TLAM). W_gamma and W_zeta start at zero: the identity."""

    def __init__(self, dim: int, siglip_dim: int, width: int = 64):
        super().__init__()
        self.query = torch.nn.Linear(dim, width)
        self.key = torch.nn.Linear(siglip_dim, width)
        self.value = torch.nn.Linear(siglip_dim, width)
        self.gamma = torch.nn.Linear(width, dim)
        self.zeta = torch.nn.Linear(width, dim)
        for layer in (self.gamma, self.zeta):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)

    def forward(self, normed: torch.Tensor, tokens: torch.Tensor, scalars: torch.Tensor
                ) -> torch.Tensor:
        """FiLM of the LayerNormed hidden states ``normed`` ``[B, N, dim]``, conditioned
        on SigLIP ``tokens`` ``[B, M, siglip_dim]``."""
        dtype = self.query.weight.dtype
        context = F.scaled_dot_product_attention(
            self.query(normed.to(dtype)), self.key(tokens.to(dtype)), self.value(tokens.to(dtype)))
        gamma = 1 + scalars[:, 2, None, None] * self.gamma(context)
        zeta = scalars[:, 3, None, None] * self.zeta(context)
        return (gamma * normed + zeta).to(normed.dtype)


class PhysicalPerceptualCoupler(torch.nn.Module):
    """The coupler at a block's output: ``z + lambda (W_p T_phys + W_c C(T_perc))``, C the
    mean of the SigLIP tokens; W_p and W_c start at zero: the identity."""

    def __init__(self, dim: int, siglip_dim: int):
        super().__init__()
        self.physical = torch.nn.Linear(len(PHYSICAL_FEATURES), dim, bias=False)
        self.perceptual = torch.nn.Linear(siglip_dim, dim, bias=False)
        torch.nn.init.zeros_(self.physical.weight)
        torch.nn.init.zeros_(self.perceptual.weight)

    def forward(self, z: torch.Tensor, physical: torch.Tensor, tokens: torch.Tensor,
                scalars: torch.Tensor) -> torch.Tensor:
        """Add the coupling to hidden states ``z`` ``[B, N, dim]``."""
        dtype = self.physical.weight.dtype
        coupling = (self.physical(physical.to(dtype))
                    + self.perceptual(tokens.to(dtype).mean(dim=1)))
        return z + (scalars[:, 5, None] * coupling)[:, None, :].to(z.dtype)


def load_siglip(folder) -> torch.nn.Module:
    """Load a frozen ``transformers.SiglipVisionModel`` from a local folder (eval, no grad).

    Raises
    ------
    ValueError
        Naming the folder and the fix when it is missing or holds another model class.
    """
    from transformers import SiglipVisionModel

    folder = Path(folder)
    fix = ("pass the folder of a SiglipVisionModel saved with save_pretrained "
           "(config.json with model_type 'siglip_vision_model' + model.safetensors), e.g. "
           "SiglipVisionModel.from_pretrained('google/siglip-so400m-patch14-384')"
           ".save_pretrained(folder)")
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"SigLIP folder {folder} has no config.json (missing or not a "
                         f"model folder); {fix}")
    kind = json.loads(config.read_text()).get("model_type")
    if kind != "siglip_vision_model":
        raise ValueError(f"SigLIP folder {folder} holds a {kind!r} model, not a SigLIP "
                         f"vision tower; {fix}")
    model = SiglipVisionModel.from_pretrained(folder).eval()
    model.requires_grad_(False)
    return model


def siglip_tokens(encoder: torch.nn.Module, sdr: torch.Tensor) -> torch.Tensor:
    """T_perc: the frozen encoder's last hidden states for SDR ``[B, H, W, 3]`` in [0, 1],
    resized (bilinear) to its ``image_size`` and normalised with SigLIP's mean = std = 0.5
    (its image processor's defaults) -> ``[B, M, hidden_size]``."""
    check_sdr(sdr)
    size = encoder.config.image_size
    pixels = F.interpolate(sdr.movedim(-1, 1), size=(size, size), mode="bilinear",
                           align_corners=False)
    dtype = next(encoder.parameters()).dtype
    with torch.no_grad():
        return encoder(pixel_values=((pixels - 0.5) / 0.5).to(dtype)).last_hidden_state

"""What a ``train-dit`` step consumes: the dual-head HDR VAE's latents of scene-linear
targets (normalised per channel), and the highlight weights of the loss.

- :class:`HdrVae`: the frozen HDR VAE of ``--vae`` (an :class:`~comfyui_hdr.hdr.models.
  hdr_vae.HDRAutoencoder` folder), loaded when an item first needs encoding, named in
  latent-cache keys by its weights and config as ``train-lora``'s VAE is.
- :func:`latent_statistics` / :func:`normalise_latents`: the one place the latent's
  per-channel mean and standard deviation come from and are applied.
- :func:`highlight_weights`: ``log2(1 + Y / diffuse_white)`` per pixel, area-averaged onto
  the latent grid; the loss weight is ``1 + --highlight-weight * that`` (:func:`~.lora_step.
  flow_loss`).
- :class:`DitLatents`: :class:`~.lora_latents.LoraLatents` (cache, batches, held-out set)
  with the HDR VAE's encoding in place of a log curve and a stock VAE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..hdr.gamut import luminance
from ..hdr.models.hdr_vae import HDRAutoencoder, load_hdr_vae
from ..hdr.models.latent_stats import LATENT_STATS_FILE, STATS_FIX, read_latent_stats
from .lora_latents import LoraLatents, pool_to_latent
from .lora_vae import FrozenVae

__all__ = ["SCENE_LINEAR", "DitLatents", "HdrVae", "highlight_weights", "latent_statistics",
           "normalise_latents", "vae_latent_channels"]


@dataclass(frozen=True)
class _TargetEncoding:
    """The target's encoding as latent-cache keys name it (``train-lora``: a log curve)."""

    name: str
    parameters: dict = field(default_factory=dict)


HDR_VAE_CLASSES = ("HDRAutoencoder", "QwenHDRAutoencoder")
"""The dual-head HDR VAEs ``load_hdr_vae`` reads (2D blocks, or Qwen-Image's)."""
SCENE_LINEAR = _TargetEncoding("scene-linear")
"""``train-dit`` targets are scene-linear: the HDR VAE encodes light, no curve."""


class HdrVae(FrozenVae):
    """The HDR VAE of ``--vae`` (checked now, loaded in float32 on the CPU when needed)."""

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = load_hdr_vae(self.folder)
        return self._model


def vae_latent_channels(folder: str | Path) -> int:
    """Latent channels of an HDR VAE folder, read from its ``config.json`` (a ValueError
    names the folder when it holds another kind of VAE)."""
    config = HDRAutoencoder.load_config(str(folder))
    if config.get("_class_name") not in HDR_VAE_CLASSES:
        raise ValueError(f"--vae {folder} holds a {config.get('_class_name')}, not a dual-head "
                         "HDR VAE (HDRAutoencoder or QwenHDRAutoencoder); train one with "
                         "train-vae")
    return int(config.get("latent_channels", 32))


def latent_statistics(vae_folder: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(mean, std)`` of the HDR VAE's latent, float32 ``[C]``: the
    ``latent_stats.json`` that ``train-vae`` and ``latent-stats`` write into its folder
    (:mod:`~comfyui_hdr.hdr.models.latent_stats`), the single source of the statistics
    ``train-dit`` normalises with and "Load HDR Diffusion Model" applies. A folder without
    them, or with another channel count than its VAE, is refused naming the fix."""
    channels = vae_latent_channels(vae_folder)
    stats = read_latent_stats(vae_folder)
    if stats is None:
        raise ValueError(f"--vae {vae_folder} has no {LATENT_STATS_FILE}: the DiT must learn "
                         "unit-variance latents; " + STATS_FIX.format(vae=vae_folder))
    if stats.channels != channels:
        raise ValueError(f"{Path(vae_folder) / LATENT_STATS_FILE} holds {stats.channels} "
                         f"channels but the VAE's latent has {channels}; "
                         + STATS_FIX.format(vae=vae_folder) + " --overwrite")
    return (torch.tensor(stats.mean, dtype=torch.float32),
            torch.tensor(stats.std, dtype=torch.float32))


def normalise_latents(latents: torch.Tensor, mean: torch.Tensor,
                      std: torch.Tensor) -> torch.Tensor:
    """``(latents - mean) / std`` per channel (axis 1), as ComfyUI's latent formats'
    ``process_in`` and the Wan/Qwen-Image pipelines normalise (``latents_mean/std``).

    >>> normalise_latents(torch.tensor([[[3.0]], [[1.0]]])[None], torch.tensor([1.0, 0.0]),
    ...                   torch.tensor([2.0, 1.0])).flatten().tolist()
    [1.0, 1.0]
    """
    shape = (1, -1) + (1,) * (latents.ndim - 2)
    return (latents - mean.view(shape).to(latents)) / std.view(shape).to(latents)


def highlight_weights(hdr: torch.Tensor, diffuse_white: float,
                      latent: torch.Tensor) -> torch.Tensor:
    """``log2(1 + Y / diffuse_white)`` of the scene-linear luminance ``Y`` (BT.709 weights,
    :func:`~comfyui_hdr.hdr.gamut.luminance`) of ``hdr`` ``[B, T, H, W, 3]``, area-averaged
    onto ``latent``'s grid, ``[B, 1, ...]``.

    Why this weight: it is ``Y / diffuse_white / ln 2`` in the shadows (almost no extra
    weight below diffuse white) and the number of stops above diffuse white for highlights
    (a sun at 2^15 x diffuse white weighs 16, not 32768 as a linear weight would), so every
    stop of highlight range counts alike, as the stop-domain loss of the HDR VAE does
    (:func:`~comfyui_hdr.hdr.models.hdr_vae.vae_loss`; log-luminance losses in HDR
    reconstruction: Eilertsen et al., "HDR image reconstruction from a single exposure
    using deep CNNs", SIGGRAPH Asia 2017, section 3.3). Negative luminance counts as 0.

    >>> hdr = torch.full((1, 1, 8, 8, 3), 3.0)
    >>> highlight_weights(hdr, 1.0, torch.zeros(1, 32, 1, 1)).flatten().tolist()
    [2.0]
    """
    stops = torch.log2(1 + luminance(hdr).clamp(min=0) / diffuse_white)
    return pool_to_latent(stops, latent)


class DitLatents(LoraLatents):
    """:class:`~.lora_latents.LoraLatents` for ``train-dit``: targets are the HDR VAE's
    normalised latent means of the scene-linear frames, ``highlights`` their weights."""

    def __init__(self, dataset, vae: HdrVae, family: str, options,
                 device: torch.device | str = "cpu"):
        super().__init__(dataset, vae, family, SCENE_LINEAR, options, device)
        self.statistics = latent_statistics(vae.folder)

    def encode(self, batch: dict) -> dict:
        """Latents of a collated batch: ``target`` and, with a highlight weight,
        ``highlights``."""
        hdr = batch["hdr"]
        if hdr.shape[1] != 1:
            raise ValueError(f"--frames {hdr.shape[1]}: the HDR VAE encodes single frames; "
                             "use --frames 1")
        vae = self.vae.model.to(self.device)
        pixels = hdr[:, 0].permute(0, 3, 1, 2).to(self.device, torch.float32)
        with torch.no_grad():
            latent = normalise_latents(vae.encode(pixels).mean, *self.statistics).cpu()
        if self.video:  # Wan and Qwen-Image take one-frame video latents
            latent = latent[:, :, None]
        latents = {"target": latent, "prompts": list(batch["prompt"])}
        if self.options.highlight_weight:
            latents["highlights"] = highlight_weights(hdr, self.options.highlight_threshold,
                                                      latent)
        return latents

    def _key(self, index: int) -> dict:
        mean, std = self.statistics
        return super()._key(index) | {"latent_statistics": [mean.tolist(), std.tolist()]}

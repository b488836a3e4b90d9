"""Per-channel statistics of an HDR VAE's latent, and the latent format they define.

A diffusion model expects unit-variance latents (Qwen-Image and Wan 2.1 normalise each
channel with the VAE's ``latents_mean`` / ``latents_std``; Flux and SD3 with one
``shift_factor`` / ``scaling_factor``). The HDR VAE's 32-channel latent has no published
statistics, so they are measured over the training set and stored in the VAE folder as
``latent_stats.json``; the DiT then sees ``process_in(z) = (z - mean) / std`` and the
sampler returns ``process_out(x) = x * std + mean``, as ComfyUI's ``Wan21`` latent format
does (comfy/latent_formats.py).

Precision: each batch is reduced in float64 by a two-pass mean and sum of squared
deviations, and batches are merged with Chan, Golub and LeVeque's pairwise update
(Chan et al., "Updating formulae and a pairwise algorithm for computing sample variances",
1979). The merge's relative error is bounded by about ``log2(batches) * 2**-52`` times the
condition number ``1 + mean**2 / var``, so float64 keeps the variance of a channel whose
mean is 1000 standard deviations away from zero to ~1e-9 relative (a naive float32
sum/sum-of-squares would lose it entirely). The std is the population std (ddof 0), as
numpy's default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_path

__all__ = ["LATENT_STATS_FILE", "LatentStatistics", "LatentStatsAccumulator",
           "latent_statistics", "measure_latent_stats", "read_latent_stats",
           "write_latent_stats"]

LATENT_STATS_FILE = "latent_stats.json"
"""The file in an HDR VAE folder that holds its latent's per-channel mean and std."""
FORMAT = "comfyui-hdr/latent-stats"
MIN_STD = 1e-6
"""Smallest std stored: a channel the encoder never uses (constant) would divide by zero."""
STATS_FIX = ("measure them with `python -m comfyui_hdr.training latent-stats --vae {vae} "
             "--data <training EXR folder or --procedural N>`")


def _channel_view(values: tuple[float, ...], latent: torch.Tensor) -> torch.Tensor:
    """``values`` as ``[1, C, 1, ...]`` on ``latent``'s device and dtype."""
    shape = (1, len(values)) + (1,) * (latent.ndim - 2)
    return torch.tensor(values, dtype=latent.dtype, device=latent.device).view(shape)


@dataclass(frozen=True)
class LatentStatistics:
    """Per-channel ``mean`` and ``std`` of a latent, measured over ``count`` values each.

    >>> stats = LatentStatistics(mean=(1.0, -2.0), std=(2.0, 0.5), count=8)
    >>> z = torch.tensor([[[[3.0]], [[-1.0]]]])
    >>> stats.process_in(z).flatten().tolist(), stats.process_out(stats.process_in(z)).equal(z)
    ([1.0, 2.0], True)
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    count: int

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"latent statistics need one mean and one std per channel, got "
                             f"{len(self.mean)} means and {len(self.std)} stds")
        bad = [index for index, (mean, std) in enumerate(zip(self.mean, self.std, strict=True))
               if not (math.isfinite(mean) and math.isfinite(std) and std > 0)]
        if bad:
            raise ValueError(f"latent statistics of channels {bad[:8]} are not finite with a "
                             "positive std; measure them again on finite latents")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def _check(self, latent: torch.Tensor) -> None:
        if latent.ndim < 3 or latent.shape[1] != self.channels:
            raise ValueError(f"the latent has shape {tuple(latent.shape)}; these statistics "
                             f"are for {self.channels}-channel latents [B, C, ...]")

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        """VAE latent ``[B, C, ...]`` -> the diffusion model's ``(z - mean) / std``."""
        self._check(latent)
        return (latent - _channel_view(self.mean, latent)) / _channel_view(self.std, latent)

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        """The diffusion model's latent -> the VAE's, ``x * std + mean``."""
        self._check(latent)
        return latent * _channel_view(self.std, latent) + _channel_view(self.mean, latent)

    def matches(self, other: LatentStatistics, relative: float = 1e-6) -> bool:
        """Same channel count and every mean/std equal to ``relative`` of the std."""
        return self.channels == other.channels and all(
            abs(a - b) <= relative * scale for a, b, scale in zip(
                self.mean + self.std, other.mean + other.std, self.std + self.std, strict=True))


class LatentStatsAccumulator:
    """Streaming per-channel mean and std over latents ``[B, C, ...]`` (float64, see module).

    >>> accumulator = LatentStatsAccumulator()
    >>> accumulator.update(torch.tensor([[[0.0, 2.0]], [[4.0, 6.0]]]))
    >>> stats = accumulator.result()
    >>> stats.mean, round(stats.std[0], 6), stats.count
    ((3.0,), 2.236068, 4)
    """

    def __init__(self):
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, latent: torch.Tensor) -> None:
        """Add every value of ``latent`` ``[B, C, ...]`` to its channel's statistics."""
        if latent.ndim < 3:
            raise ValueError(f"latent must be [batch, channels, ...], got {tuple(latent.shape)}")
        if self.mean is not None and latent.shape[1] != self.mean.numel():
            raise ValueError(f"the latent has {latent.shape[1]} channels, the earlier ones "
                             f"{self.mean.numel()}; measure one VAE's latents at a time")
        values = latent.detach().movedim(1, 0).flatten(1).to(torch.float64).cpu()
        if not bool(torch.isfinite(values).all()):
            raise ValueError("the latent contains NaN or inf; encode in float32 (fp32)")
        count = values.shape[1]
        mean = values.mean(dim=1)
        m2 = ((values - mean[:, None]) ** 2).sum(dim=1)
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def result(self) -> LatentStatistics:
        """The population mean and std (std at least :data:`MIN_STD`)."""
        if self.mean is None:
            raise ValueError("no latents were measured; give a non-empty dataset")
        std = (self.m2 / self.count).sqrt().clamp_min(MIN_STD)
        return LatentStatistics(mean=tuple(self.mean.tolist()), std=tuple(std.tolist()),
                                count=self.count)


def latent_statistics(latents: Iterable[torch.Tensor]) -> LatentStatistics:
    """Per-channel statistics of every latent ``[B, C, ...]`` in ``latents`` (streamed)."""
    accumulator = LatentStatsAccumulator()
    for latent in latents:
        accumulator.update(latent)
    return accumulator.result()


def write_latent_stats(vae_folder: str | Path, stats: LatentStatistics,
                       source: dict | None = None) -> Path:
    """Write ``latent_stats.json`` into ``vae_folder`` atomically (replacing an older one)."""
    path = Path(vae_folder) / LATENT_STATS_FILE
    payload = {"format": FORMAT, "version": 1, "channels": stats.channels,
               "count": stats.count, "mean": list(stats.mean), "std": list(stats.std),
               "source": source or {}}
    with atomic_path(path, overwrite=True) as temporary:
        temporary.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def read_latent_stats(vae_folder: str | Path) -> LatentStatistics | None:
    """The statistics in ``vae_folder``'s ``latent_stats.json``, or None if it has none."""
    path = Path(vae_folder) / LATENT_STATS_FILE
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") != FORMAT:
            raise ValueError(f"format is {payload.get('format')!r}, not {FORMAT!r}")
        stats = LatentStatistics(mean=tuple(float(v) for v in payload["mean"]),
                                 std=tuple(float(v) for v in payload["std"]),
                                 count=int(payload["count"]))
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{path} is not valid latent statistics ({error}); "
                         + STATS_FIX.format(vae=Path(vae_folder))) from None
    if stats.channels != int(payload.get("channels", stats.channels)):
        raise ValueError(f"{path} says {payload['channels']} channels but holds "
                         f"{stats.channels}; " + STATS_FIX.format(vae=Path(vae_folder)))
    return stats


@torch.no_grad()
def measure_latent_stats(vae, scenes: Iterable[torch.Tensor]) -> LatentStatistics:
    """Statistics of ``vae``'s latent (the posterior's mode, as HDR VAE Encode gives it) over
    scene-linear batches ``[B, 3, H, W]`` (each moved to the VAE's device)."""
    return latent_statistics(vae.encode(scene.to(vae.device)).mode() for scene in scenes)

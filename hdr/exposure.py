"""Exposure in stops, and the headroom and peak statistics of a scene-linear image.

A stop doubles the light: scene-linear ``x`` pushed by ``s`` stops is ``x * 2**s``.
18% grey (0.18) is the reference for "stops from mid grey"; diffuse white (1.0 unless a
node says otherwise) is the reference for headroom.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ._array import array_function, to_tensor
from .gamut import Gamut, luminance, luminance_weights

__all__ = ["HDRStats", "apply_stops", "hdr_stats", "luminance", "percentile_rank_tolerance",
           "stops_between", "to_stops"]

MID_GREY = 0.18
"""Scene-linear 18% grey, the exposure reference of ACES and camera metering."""


@array_function
def apply_stops(x, stops):
    """Push scene-linear ``x`` by ``stops`` stops of exposure: ``x * 2**stops``.

    Parameters
    ----------
    x
        Scene-linear values (negatives scale too; nothing is clamped).
    stops
        Exposure change in stops: a number, or an array broadcasting against ``x``.

    Returns
    -------
    ``x * 2**stops`` in ``x``'s dtype; whole stops are exact powers of two.

    >>> apply_stops(0.18, 3.0)
    1.44
    """
    return x * torch.exp2(torch.as_tensor(stops, dtype=x.dtype, device=x.device))


@array_function
def stops_between(a, b):
    """Return how many stops ``b`` is above ``a``: ``log2(b / a)`` (positive values).

    >>> stops_between(0.18, 1.44)
    3.0
    """
    return torch.log2(to_tensor(b).to(device=a.device, dtype=a.dtype) / a)


@array_function
def to_stops(x, reference: float = MID_GREY, floor_stops: float = -20.0):
    """Return scene-linear ``x`` in stops from ``reference``: ``log2(x / reference)``.

    Parameters
    ----------
    x
        Scene-linear values.
    reference
        The value read as 0 stops; 18% grey by default.
    floor_stops
        Result for ``x <= reference * 2**floor_stops``, zero and negatives included, so
        black reads as a finite number of stops.

    Returns
    -------
    Stops from ``reference``, never below ``floor_stops``.

    >>> to_stops(0.72)
    2.0
    >>> to_stops(0.0)
    -20.0
    """
    if not reference > 0:
        raise ValueError(f"reference must be > 0, got {reference}; use 0.18 for mid grey")
    return torch.log2(x.clamp_min(reference * 2.0**floor_stops) / reference)


@dataclass(frozen=True)
class HDRStats:
    """Peak, headroom and health of a scene-linear image (luminance in its gamut)."""

    peak_luminance: float
    peak_channel: float
    min_luminance: float
    min_channel: float
    mean_luminance: float
    luminance_p1: float
    luminance_p50: float
    luminance_p99: float
    luminance_p99_9: float
    peak_stops: float
    """Stops of the peak luminance above diffuse white."""
    diffuse_white: float
    share_above_diffuse_white: float
    """Fraction of finite pixels whose largest channel exceeds diffuse white."""
    share_negative: float
    """Fraction of finite pixels with a channel below zero."""
    nan_pixels: int
    inf_pixels: int
    shape: tuple[int, ...]
    percentile_samples: int | None = None
    """None: the percentiles are exact; else how many pixels they were estimated from
    (see :data:`PERCENTILE_SAMPLES` for the tolerance)."""

    def as_dict(self) -> dict:
        """Return the statistics as a plain dict (JSON-ready)."""
        return asdict(self)

    def _sampled(self) -> str:
        if self.percentile_samples is None:
            return ""
        return (f" (from {self.percentile_samples:,} sampled pixels, rank within "
                f"{percentile_rank_tolerance(50.0, self.percentile_samples):.2g} pt)")

    def as_text(self) -> str:
        """Return a short multi-line summary for an artist, as a node shows it."""
        return "\n".join([
            f"peak {self.peak_luminance:.6g} ({self.peak_stops:+.1f} stops over diffuse "
            f"white {self.diffuse_white:g}); brightest channel {self.peak_channel:.6g}",
            f"percentiles{self._sampled()} 1% {self.luminance_p1:.4g}, "
            f"median {self.luminance_p50:.4g}, "
            f"99% {self.luminance_p99:.4g}, 99.9% {self.luminance_p99_9:.4g}",
            f"mean {self.mean_luminance:.4g}, min {self.min_luminance:.4g} "
            f"(darkest channel {self.min_channel:.4g})",
            f"above diffuse white {100 * self.share_above_diffuse_white:.2f}% of pixels, "
            f"negative {100 * self.share_negative:.2f}%",
            f"NaN {self.nan_pixels} pixels, Inf {self.inf_pixels} pixels; "
            f"shape {list(self.shape)}",
        ])


EXACT_PIXELS = 2**20
"""Images up to this many pixels get exact percentiles (``numpy.percentile`` over every
finite pixel); larger float32 images get them from :data:`PERCENTILE_SAMPLES` pixels."""

PERCENTILE_SAMPLES = 2**18
"""Pixels drawn (uniformly, with replacement, from a fixed seed) for the percentiles of a
large image. Each estimate's rank error is binomial, ``sqrt(q (1 - q) / n)``; the stated
tolerance is five of those (:func:`percentile_rank_tolerance`): with n = 2**18 the median
is within 0.49 percentage points of rank, the 1st and 99th within 0.098, the 99.9th within
0.031 (a 5-sigma bound: about one estimate in 3.5 million may fall outside)."""

_SEED = 0x5EED


def percentile_rank_tolerance(percentile: float, samples: int = PERCENTILE_SAMPLES) -> float:
    """Percentage points of rank a sampled percentile may be off: ``5 sqrt(q (1 - q) / n)``.

    The estimate for percentile ``p`` lies between the exact percentiles at ``p - t`` and
    ``p + t``.

    >>> round(percentile_rank_tolerance(50.0), 4)
    0.4883
    """
    q = percentile / 100.0
    return 500.0 * math.sqrt(q * (1.0 - q) / samples)


def _any_per_pixel(mask: np.ndarray) -> int:
    """Pixels of a [N, 3] bool mask with any channel set (three column reads, no reduce)."""
    return int(np.count_nonzero(mask[:, 0] | mask[:, 1] | mask[:, 2]))


def _sampled_stats(rgb: torch.Tensor, gamut: str | Gamut, diffuse_white: float,
                   shape: tuple[int, ...]) -> HDRStats | None:
    """The statistics of a large finite float32 image in a few float32 passes.

    The peak luminance (recomputed in float64 on every pixel float32 rounding could have
    misranked), the channel extremes and the shares are exact; the minimum and mean are
    those of float32 luminances (each within ``2**-21 * sum(|w_i c_i|)`` of float64's);
    the percentiles come from :data:`PERCENTILE_SAMPLES` pixels. Returns None when a
    luminance is NaN or Inf (the exact path counts those).
    """
    pixels = rgb.to("cpu").reshape(-1, 3).numpy()
    weights = luminance_weights(gamut)
    lum = pixels @ weights.astype(np.float32)
    low, high = (float(v) for v in torch.aminmax(torch.from_numpy(lum)))
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    channel_min, channel_max = (float(v) for v in torch.aminmax(torch.from_numpy(pixels)))
    # float32 dot products are off by at most ~3 units of 2**-24 of sum |w_i c_i|.
    slack = 8 * 2.0**-24 * float(np.abs(weights).sum()) * max(-channel_min, channel_max)

    count = len(lum)
    sample = lum[np.random.default_rng(_SEED).integers(0, count, PERCENTILE_SAMPLES)]
    p1, p50, p99, p99_9 = np.percentile(sample.astype(np.float64), [1, 50, 99, 99.9]).tolist()
    near_peak = pixels[np.flatnonzero(lum >= high - slack)]
    peak = float((near_peak.astype(np.float64) @ weights).max())
    return HDRStats(
        peak_luminance=peak, peak_channel=channel_max,
        min_luminance=low, min_channel=channel_min,
        mean_luminance=float(lum.sum(dtype=np.float64)) / count,
        luminance_p1=p1, luminance_p50=p50, luminance_p99=p99, luminance_p99_9=p99_9,
        peak_stops=math.log2(peak / diffuse_white) if peak > 0 else -math.inf,
        diffuse_white=float(diffuse_white),
        share_above_diffuse_white=(_any_per_pixel(pixels > diffuse_white) / count
                                   if channel_max > diffuse_white else 0.0),
        share_negative=_any_per_pixel(pixels < 0) / count if channel_min < 0 else 0.0,
        nan_pixels=0, inf_pixels=0, shape=shape, percentile_samples=PERCENTILE_SAMPLES)


def hdr_stats(image, gamut: str | Gamut = "rec709", diffuse_white: float = 1.0) -> HDRStats:
    """Measure the peak, percentiles and headroom of a scene-linear image.

    Parameters
    ----------
    image
        Scene-linear RGB(A), channels last: an IMAGE ``[B, H, W, C]`` with ``C >= 3``
        (channels past the third, such as alpha, are ignored), a torch tensor or numpy.
    gamut
        The gamut of ``image``, for luminance weights.
    diffuse_white
        Scene-linear value of diffuse white, the reference for headroom.

    Returns
    -------
    :class:`HDRStats`. Pixels with a NaN or Inf channel are counted, then left out of
    every other statistic; percentiles interpolate linearly (``numpy.percentile``). A
    finite float32 image over :data:`EXACT_PIXELS` pixels gets its percentiles from a
    seeded sample (tolerance: :data:`PERCENTILE_SAMPLES`); every other value stays exact.

    >>> hdr_stats(np.array([[0.18] * 3, [4096.0] * 3])).peak_stops
    12.0
    """
    if not diffuse_white > 0:
        raise ValueError(f"diffuse_white must be > 0, got {diffuse_white}; use 1.0")
    tensor = to_tensor(image)
    if tensor.ndim == 0 or tensor.shape[-1] < 3:
        raise ValueError(f"image must have at least 3 channels on its last axis, got shape "
                         f"{tuple(tensor.shape)}")
    rgb = tensor.detach()[..., :3]
    if rgb.dtype == torch.float32 and rgb.numel() // 3 > EXACT_PIXELS:
        stats = _sampled_stats(rgb, gamut, diffuse_white, tuple(tensor.shape))
        if stats is not None:
            return stats
    rgb = rgb.reshape(-1, 3).to(device="cpu", dtype=torch.float64)
    nan = rgb.isnan().any(-1)
    finite = rgb.isfinite().all(-1)
    rgb = rgb[finite]
    lum = luminance(rgb, gamut).numpy()
    channels = rgb.numpy()
    empty = lum.size == 0

    def reduce(values: np.ndarray, how) -> float:
        return math.nan if empty else float(how(values))

    p1, p50, p99, p99_9 = (
        [math.nan] * 4 if empty else np.percentile(lum, [1, 50, 99, 99.9]).tolist())
    peak = reduce(lum, np.max)
    return HDRStats(
        peak_luminance=peak,
        peak_channel=reduce(channels, np.max),
        min_luminance=reduce(lum, np.min),
        min_channel=reduce(channels, np.min),
        mean_luminance=reduce(lum, np.mean),
        luminance_p1=p1,
        luminance_p50=p50,
        luminance_p99=p99,
        luminance_p99_9=p99_9,
        peak_stops=(math.nan if empty else
                    math.log2(peak / diffuse_white) if peak > 0 else -math.inf),
        diffuse_white=float(diffuse_white),
        share_above_diffuse_white=reduce(channels.max(-1, initial=-np.inf) > diffuse_white,
                                         np.mean),
        share_negative=reduce(channels.min(-1, initial=np.inf) < 0, np.mean),
        nan_pixels=int(nan.sum()),
        inf_pixels=int((~finite & ~nan).sum()),
        shape=tuple(tensor.shape),
    )

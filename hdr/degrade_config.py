"""What :func:`~.degrade.degrade_pair` may do to an SDR reference: one frozen dataclass per
step (its probability and the ranges its strength is drawn from, each drawing its own
parameters from a :class:`numpy.random.Generator`), and :class:`DegradationConfig`
holding them all with the tone mappers to choose from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch

from .tonemap import TONE_MAPPERS

__all__ = [
    "AppliedDegradation",
    "Contrast",
    "DegradationConfig",
    "DegradedPair",
    "ExposureShift",
    "H264Compression",
    "JpegCompression",
    "Quantisation",
    "SelectiveBlur",
    "ShadowNoise",
    "WhiteBalance",
]


def _check_step(name: str, probability: float, **ranges: tuple[float, float]) -> None:
    if not 0 <= probability <= 1:
        raise ValueError(f"{name}.probability must be in [0, 1], got {probability}")
    for key, (low, high) in ranges.items():
        if not low <= high:
            raise ValueError(f"{name}.{key} must be a (low, high) range, got ({low}, {high})")


@dataclass(frozen=True)
class ExposureShift:
    """Push both images by ``stops`` drawn uniformly (camera exposure error, seed 004)."""

    probability: float = 0.5
    stops: tuple[float, float] = (-2.0, 2.0)

    def __post_init__(self):
        _check_step("exposure", self.probability, stops=self.stops)

    def draw(self, rng: np.random.Generator) -> dict:
        return {"stops": float(rng.uniform(*self.stops))}


@dataclass(frozen=True)
class ShadowNoise:
    """Signal-dependent sensor noise, strongest in the shadows relative to the signal.

    Variance ``scale**2 * (shot * Y + read)`` on display-linear luminance Y (LumiPic model
    card: shot 1.5e-3, read 1e-5); the chroma noise has ``chroma_ratio`` times the luma
    noise's standard deviation; the noise is high-passed by removing its
    ``highpass_kernel``-wide box mean, then renormalised.
    """

    probability: float = 0.5
    shot: float = 1.5e-3
    read: float = 1e-5
    chroma_ratio: float = 0.35
    highpass_kernel: int = 7
    scale: tuple[float, float] = (0.5, 2.0)

    def __post_init__(self):
        _check_step("shadow_noise", self.probability, scale=self.scale)
        if self.shot < 0 or self.read < 0 or self.chroma_ratio < 0:
            raise ValueError("shadow_noise.shot, .read and .chroma_ratio must be >= 0")
        if self.highpass_kernel < 2:
            raise ValueError(f"shadow_noise.highpass_kernel must be >= 2 pixels, got "
                             f"{self.highpass_kernel}; the LumiPic value is 7")

    def draw(self, rng: np.random.Generator) -> dict:
        return {"scale": float(rng.uniform(*self.scale)), "seed": int(rng.integers(2**62))}


@dataclass(frozen=True)
class WhiteBalance:
    """Red and blue gains (green fixed) drawn log-uniformly from ``gain``."""

    probability: float = 0.5
    gain: tuple[float, float] = (0.8, 1.25)

    def __post_init__(self):
        _check_step("white_balance", self.probability, gain=self.gain)
        if not self.gain[0] > 0:
            raise ValueError(f"white_balance.gain must be > 0, got {self.gain}")

    def draw(self, rng: np.random.Generator) -> dict:
        red, blue = np.exp(rng.uniform(*np.log(self.gain), size=2))
        return {"gains": (float(red), 1.0, float(blue))}


@dataclass(frozen=True)
class Contrast:
    """Scale code values about the frame's mean luma by a factor drawn from ``scale``."""

    probability: float = 0.5
    scale: tuple[float, float] = (0.7, 1.3)

    def __post_init__(self):
        _check_step("contrast", self.probability, scale=self.scale)

    def draw(self, rng: np.random.Generator) -> dict:
        return {"scale": float(rng.uniform(*self.scale))}


@dataclass(frozen=True)
class SelectiveBlur:
    """A Gaussian blur of ``sigma`` pixels, weighted by a luma mask over ``region``.

    The weight ramps (smoothstep) over the luma code values ``ramp``: for highlights from
    0 at ``ramp[0]`` to 1 at ``ramp[1]``; for shadows from 1 at ``ramp[0]`` to 0 at
    ``ramp[1]``. Outside the ramp on the mid-tone side the weight is exactly 0.
    """

    probability: float = 0.5
    region: str = "highlights"
    ramp: tuple[float, float] = (0.75, 0.9)
    sigma: tuple[float, float] = (0.5, 2.5)

    def __post_init__(self):
        _check_step(f"{self.region}_blur", self.probability, ramp=self.ramp, sigma=self.sigma)
        if self.region not in ("highlights", "shadows"):
            raise ValueError(f"region must be 'highlights' or 'shadows', got {self.region!r}")
        if not self.sigma[0] > 0:
            raise ValueError(f"{self.region}_blur.sigma must be > 0 pixels, got {self.sigma}")

    def draw(self, rng: np.random.Generator) -> dict:
        return {"sigma": float(rng.uniform(*self.sigma))}


@dataclass(frozen=True)
class JpegCompression:
    """Baseline JPEG through Pillow at a quality drawn from ``quality`` (inclusive)."""

    probability: float = 0.5
    quality: tuple[int, int] = (30, 95)

    def __post_init__(self):
        _check_step("jpeg", self.probability, quality=self.quality)

    def draw(self, rng: np.random.Generator) -> dict:
        return {"quality": int(rng.integers(self.quality[0], self.quality[1] + 1))}


@dataclass(frozen=True)
class H264Compression:
    """H.264 (libx264, yuv420p, MP4) at a CRF drawn from ``crf`` (inclusive)."""

    probability: float = 0.25
    crf: tuple[int, int] = (18, 40)
    preset: str = "medium"

    def __post_init__(self):
        _check_step("h264", self.probability, crf=self.crf)

    def draw(self, rng: np.random.Generator) -> dict:
        return {"crf": int(rng.integers(self.crf[0], self.crf[1] + 1)), "preset": self.preset}


@dataclass(frozen=True)
class Quantisation:
    """Round code values to ``bit_depth`` bits (an 8-bit SDR file)."""

    probability: float = 1.0
    bit_depth: int = 8

    def __post_init__(self):
        _check_step("quantisation", self.probability)

    def draw(self, rng: np.random.Generator) -> dict:
        return {"bit_depth": self.bit_depth}


_STEPS = ("exposure", "shadow_noise", "white_balance", "contrast", "highlight_blur",
          "shadow_blur", "jpeg", "h264", "quantisation")


@dataclass(frozen=True)
class DegradationConfig:
    """Which tone mapper makes the SDR reference and each degradation's odds and strength.

    ``tone_mappers`` are names in :data:`~.tonemap.TONE_MAPPERS`, one drawn per pair.
    :meth:`clean` gives a config with every degradation off (tone mapping, clipping and
    sRGB encoding only).
    """

    tone_mappers: tuple[str, ...] = ("bt2390_max_rgb",)
    exposure: ExposureShift = field(default_factory=ExposureShift)
    shadow_noise: ShadowNoise = field(default_factory=ShadowNoise)
    white_balance: WhiteBalance = field(default_factory=WhiteBalance)
    contrast: Contrast = field(default_factory=Contrast)
    highlight_blur: SelectiveBlur = field(default_factory=SelectiveBlur)
    shadow_blur: SelectiveBlur = field(
        default_factory=lambda: SelectiveBlur(region="shadows", ramp=(0.1, 0.25)))
    jpeg: JpegCompression = field(default_factory=JpegCompression)
    h264: H264Compression = field(default_factory=H264Compression)
    quantisation: Quantisation = field(default_factory=Quantisation)

    def __post_init__(self):
        unknown = [name for name in self.tone_mappers if name not in TONE_MAPPERS]
        if not self.tone_mappers or unknown:
            raise ValueError(f"tone_mappers {unknown or '()'} invalid; use names from: "
                             + ", ".join(TONE_MAPPERS))

    @classmethod
    def clean(cls, tone_mappers: tuple[str, ...] = ("bt2390_max_rgb",)) -> DegradationConfig:
        """A config that only tone maps, clips and sRGB-encodes."""
        config = cls(tone_mappers=tone_mappers)
        return replace(config, **{name: replace(getattr(config, name), probability=0.0)
                                  for name in _STEPS})


@dataclass(frozen=True)
class AppliedDegradation:
    """One step :func:`degrade_pair` applied, with the parameters it drew."""

    name: str
    params: dict


class DegradedPair(NamedTuple):
    """The HDR target, its SDR reference (sRGB code values) and what was applied."""

    hdr: torch.Tensor
    sdr_reference: torch.Tensor
    applied: list[AppliedDegradation]

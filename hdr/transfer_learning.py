"""Encodings for learning and measuring HDR: DiffHDR log-gamma, mu-law and PU21.

These are not camera or display standards: log-gamma and mu-law squeeze scene-linear
HDR into [0, 1]-ish values a diffusion model or a loss can work with, and PU21 maps
absolute luminance to perceptually uniform units for HDR image-quality metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._array import array_function
from .transfer_blockwise import evaluate
from .transfer_fused import power as _pow


def _positive(name: str, value: float, meaning: str) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive (got {value!r}); it is {meaning}")


@dataclass(frozen=True)
class _LogGammaConstants:
    """DiffHDR's log-gamma parameters. gamma = 2.2 and M (``ceiling``) = 1000, about 10
    stops over SDR white, as the seed's implementation README sets them; the upstream
    code's ``Lin_to_Log`` uses M = 65536 (``upstream_ceiling``), which LoRAs trained before
    M was a parameter used and still decode with (:func:`.transfer.lora_curve`)."""

    gamma: float = 2.2
    ceiling: float = 1000.0
    upstream_ceiling: float = 65536.0


LOGGAMMA = _LogGammaConstants()


def _loggamma_encode(x, gamma, scale):
    return _pow(torch.log1p(x.abs() * gamma) / scale, 1 / gamma).copysign(x)


def _loggamma_decode(y, gamma, scale):
    return torch.expm1(_pow(y.abs(), gamma) * scale).div(gamma).copysign(y)


def _loggamma_scale(gamma: float, ceiling: float) -> float:
    """``ln(gamma ceiling + 1)``, after checking both parameters."""
    _positive("gamma", gamma, "the log-gamma curve's exponent, DiffHDR uses 2.2")
    _positive("ceiling", ceiling, "M, the scene-linear value that encodes to 1.0, e.g. 1000")
    return math.log1p(gamma * ceiling)


@array_function
def loggamma_encode(x, gamma: float = LOGGAMMA.gamma, ceiling: float = LOGGAMMA.ceiling):
    """Encode scene-linear with DiffHDR's log-gamma curve.

    ``(ln(gamma x + 1) / ln(gamma M + 1)) ** (1 / gamma)``: 0 stays 0, ``M = ceiling``
    encodes to 1.0. DiffHDR's own code gives NaN for negatives (a fractional power of a
    negative log) and clamps at the ceiling; here negatives mirror (``-encode(-x)``) so
    they round-trip, and values above the ceiling encode above 1.0 instead of clipping.

    Parameters
    ----------
    x
        Scene-linear value, 1.0 = diffuse white.
    gamma
        Exponent of the curve (DiffHDR: 2.2).
    ceiling
        M, the scene-linear value that encodes to 1.0: 1000 (DiffHDR's implementation
        README, about 10 stops over SDR white) or 65536 (DiffHDR's code).

    Returns
    -------
    Log-gamma code value.

    References
    ----------
    Eyeline Labs DiffHDR (2025), ``utils/color_utils.py``, ``Lin_to_Log``, and its
    implementation README (gamma = 2.2, M = 1000).

    >>> round(loggamma_encode(1.0), 6), round(loggamma_encode(1.0, ceiling=65536.0), 6)
    (0.423613, 0.347777)
    """
    return evaluate(_loggamma_encode, x, gamma, _loggamma_scale(gamma, ceiling))


@array_function
def loggamma_decode(y, gamma: float = LOGGAMMA.gamma, ceiling: float = LOGGAMMA.ceiling):
    """Decode DiffHDR log-gamma code values to scene-linear (mirrored below 0).

    References
    ----------
    Eyeline Labs DiffHDR (2025), ``utils/color_utils.py``, ``Log_to_Lin``.

    >>> round(loggamma_decode(0.423613), 4), round(loggamma_decode(0.347777, ceiling=65536.0), 4)
    (1.0, 1.0)
    """
    return evaluate(_loggamma_decode, y, gamma, _loggamma_scale(gamma, ceiling))


def _mulaw_encode(x, mu, scale):
    return torch.log1p(x.abs() * mu).div(scale).copysign(x)


def _mulaw_decode(y, mu, scale):
    return torch.expm1(y.abs() * scale).div(mu).copysign(y)


@array_function
def mulaw_encode(x, mu: float = 5000.0):
    """Compress with the mu-law: ``sign(x) ln(1 + mu |x|) / ln(1 + mu)``.

    Odd-symmetric as in ITU-T G.711, mapping [-1, 1] onto [-1, 1]. mu = 5000 is the
    HDR-metric convention (mu-PSNR); GMODiff uses mu = 100.

    Parameters
    ----------
    x
        Value normalised so that the brightest value of interest is 1.0.
    mu
        Compression strength.

    Returns
    -------
    Compressed value.

    References
    ----------
    ITU-T G.711 (1988), section 3; Kalantari & Ramamoorthi (2017), "Deep High Dynamic
    Range Imaging of Dynamic Scenes", equation 3.

    >>> round(mulaw_encode(0.5), 6)
    0.918643
    """
    _positive("mu", mu, "the mu-law compression strength, e.g. 5000")
    return evaluate(_mulaw_encode, x, mu, math.log1p(mu))


@array_function
def mulaw_decode(y, mu: float = 5000.0):
    """Expand mu-law values: ``sign(y) ((1 + mu) ** |y| - 1) / mu``.

    References
    ----------
    ITU-T G.711 (1988), section 3.

    >>> round(mulaw_decode(0.918643), 5)
    0.5
    """
    _positive("mu", mu, "the mu-law compression strength, e.g. 5000")
    return evaluate(_mulaw_decode, y, mu, math.log1p(mu))


@dataclass(frozen=True)
class _PU21Constants:
    """Mantiuk & Azimi (2021), Table 1, "banding + glare" row; luminance range 0.005..1e4."""

    p: tuple[float, ...] = (
        0.353487901,
        0.3734658629,
        8.277049286e-05,
        0.9062562627,
        0.09150303166,
        0.9099517204,
        596.3148142,
    )
    min_nits: float = 0.005
    max_nits: float = 10000.0


PU21 = _PU21Constants()


def _pu21_encode(nits):
    p0, p1, p2, p3, p4, p5, p6 = PU21.p
    power = _pow(nits.clamp(PU21.min_nits, PU21.max_nits), p3)
    return (_pow((power * p1 + p0) / (power * p2 + 1), p4) - p5) * p6


def _pu21_decode(pu):
    p0, p1, p2, p3, p4, p5, p6 = PU21.p
    base = _pow((pu / p6 + p5).clamp_min(0), 1 / p4)
    return _pow((base - p0).clamp_min(0) / (p1 - p2 * base), 1 / p3)


@array_function
def pu21_encode(nits):
    """Map absolute luminance to PU21 perceptually uniform units (banding + glare).

    Luminance is clamped to the PU21 range 0.005..10000 nits first, as the reference
    implementations do.

    Parameters
    ----------
    nits
        Absolute luminance in cd/m^2.

    Returns
    -------
    PU21 value: about 0 at 0.005 nits, 256 at 100 nits, 595.4 at 10000 nits.

    References
    ----------
    Mantiuk, R. K. & Azimi, M. (2021), "PU21: A novel perceptually uniform encoding for
    adapting existing quality metrics for HDR", Picture Coding Symposium, equation 2.

    >>> round(pu21_encode(100.0), 3)
    256.384
    """
    return evaluate(_pu21_encode, nits, float64=True)


@array_function
def pu21_decode(pu):
    """Map PU21 units back to absolute luminance in nits.

    References
    ----------
    Mantiuk & Azimi (2021), equation 2 inverted, as in pycvvdp's ``PU.decode``.

    >>> round(pu21_decode(256.384), 2)
    100.0
    """
    return evaluate(_pu21_decode, pu, float64=True)

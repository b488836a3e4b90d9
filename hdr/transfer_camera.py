"""Camera and grading log curves: ARRI LogC3, ARRI LogC4 and ACEScct.

Scene-linear in (0.18 = mid grey, 1.0 = diffuse white), normalised code value out. Each
curve has a linear toe, so negative scene-linear values (sub-black noise, wide-gamut
excursions) pass through the toe and round-trip; nothing is clamped.
"""

from __future__ import annotations

import functools
import math
from dataclasses import astuple, dataclass

import torch

from ._array import array_function
from .transfer_blockwise import evaluate
from .transfer_fused import exp10

LOGC3_EXPOSURE_INDICES = (160, 200, 250, 320, 400, 500, 640, 800, 1000, 1280, 1600)
"""Exposure indices of ARRI's "ALEXA Log C Curve - Usage in VFX" (2011) tables."""


@dataclass(frozen=True)
class LogC3Parameters:
    """One row of ARRI's LogC3 table (SUP 3.x, "linear scene exposure factor").

    ``t = c * log10(a * x + b) + d`` above ``cut``, ``t = e * x + f`` below it.
    """

    cut: float
    a: float
    b: float
    c: float
    d: float
    e: float
    f: float


@functools.cache
def logc3_parameters(exposure_index: int = 800) -> LogC3Parameters:
    """Derive the LogC3 (SUP 3.x) curve parameters for an ALEXA exposure index.

    The derivation is ARRI's own (the ``normalizedLogCToLinear`` formula of ARRI's
    ``v3_IDT_maker.py`` in the ACES repository): 16-bit black at 16/4095, 18% grey at
    sensor signal 0.01 at EI 400, an encoding gain falling by 11% per three stops of EI,
    a log-to-linear splice at 1/9 that is continuous in value and slope, and code 95/1023
    for black, solved by three fixed-point iterations. The results agree with every
    entry of the published table to its 6 decimals.

    Parameters
    ----------
    exposure_index
        Camera EI, one of :data:`LOGC3_EXPOSURE_INDICES`.

    Returns
    -------
    The curve parameters ``cut, a, b, c, d, e, f``.

    References
    ----------
    ARRI (2011), "ALEXA Log C Curve - Usage in VFX", section 4 and table "SUP 3.x".

    >>> round(logc3_parameters(800).d, 6)
    0.385537
    """
    if exposure_index not in LOGC3_EXPOSURE_INDICES:
        raise ValueError(
            f"exposure_index must be one of {LOGC3_EXPOSURE_INDICES} (got {exposure_index!r}); "
            "use the EI the ALEXA footage was shot at"
        )
    splice = 1 / 9
    slope = 1 / (splice * math.log(10))
    offset = math.log10(splice) - slope * splice
    gain = (math.log2(exposure_index / 400) * (0.89 - 1) / 3 + 1) * (500 / 1023 * 0.525)
    encoding_offset = 400 / 1023
    for _ in range(3):
        sensor_black = ((95 / 1023 - encoding_offset) / gain - offset) / slope
        encoding_offset = 400 / 1023 - math.log10(1 + sensor_black) * gain
    return LogC3Parameters(
        cut=0.18 * (splice - sensor_black),
        a=1 / 0.18,
        b=sensor_black,
        c=gain,
        d=encoding_offset,
        e=gain * slope / 0.18,
        f=gain * (slope * sensor_black + offset) + encoding_offset,
    )


def _logc3_encode(x, cut, a, b, c, d, e, f):
    log = torch.log10(x.clamp_min(cut) * a + b) * c + d
    return torch.where(x > cut, log, x * e + f)


def _logc3_decode(y, cut, a, b, c, d, e, f):
    code_cut = e * cut + f
    log = (exp10((y.clamp_min(code_cut) - d) / c) - b) / a
    return torch.where(y > code_cut, log, (y - f) / e)


@array_function
def logc3_encode(x, exposure_index: int = 800):
    """Encode scene-linear as ARRI LogC3 (ALEXA, SUP 3.x) code values.

    Parameters
    ----------
    x
        Scene-linear exposure, 0.18 = mid grey; negatives use the linear toe.
    exposure_index
        Camera EI, one of :data:`LOGC3_EXPOSURE_INDICES`.

    Returns
    -------
    Normalised LogC3 code value (0.391007 for mid grey at EI 800).

    References
    ----------
    ARRI (2011), "ALEXA Log C Curve - Usage in VFX", section 4.

    >>> round(logc3_encode(0.18), 6)
    0.391007
    """
    return evaluate(_logc3_encode, x, *astuple(logc3_parameters(exposure_index)))


@array_function
def logc3_decode(y, exposure_index: int = 800):
    """Decode ARRI LogC3 (ALEXA, SUP 3.x) code values to scene-linear.

    Parameters
    ----------
    y
        Normalised LogC3 code value.
    exposure_index
        Camera EI, one of :data:`LOGC3_EXPOSURE_INDICES`.

    Returns
    -------
    Scene-linear exposure, 0.18 = mid grey.

    References
    ----------
    ARRI (2011), "ALEXA Log C Curve - Usage in VFX", section 4.

    >>> round(logc3_decode(0.391007), 5)
    0.18
    """
    return evaluate(_logc3_decode, y, *astuple(logc3_parameters(exposure_index)))


@dataclass(frozen=True)
class _LogC4Constants:
    """ARRI LogC4 Specification (2022), section 3 ("LogC4 curve")."""

    a: float = (2**18 - 16) / 117.45
    b: float = (1023 - 95) / 1023
    c: float = 95 / 1023

    @property
    def s(self) -> float:
        """Slope of the linear toe: the log curve's derivative at ``t``."""
        return (7 * math.log(2) * 2 ** (7 - 14 * self.c / self.b)) / (self.a * self.b)

    @property
    def t(self) -> float:
        """Scene-linear value at code 0, where the toe joins the log curve."""
        return (2 ** (14 * (-self.c / self.b) + 6) - 64) / self.a


LOGC4 = _LogC4Constants()
_LOGC4_T, _LOGC4_S = LOGC4.t, LOGC4.s


def _log2_1p(v):
    """``log2(1 + v)``, corrected for the rounding of ``1 + v`` (exact to float32 near 0).

    ``(1 - u) + v`` is exactly the rounding error of ``u = 1 + v`` (Fast2Sum; both steps
    are exact for ``-1 <= v < 2**24``, and here v >= -2/3); torch's float32 ``log1p``
    would do the same job but is not vectorised on CPU and is 10x slower.
    """
    u = v + 1
    return torch.log2(u) + ((1 - u) + v) / u * (1 / math.log(2))


def _below(value, limit):
    """``min(value - limit, 0)``, with slope 1 at ``value == limit`` (where torch's
    ``clamp_min`` of the other segment has slope 0), so a C1 seam keeps its gradient."""
    distance = value - limit
    return distance - torch.relu(distance)


def _logc4_encode(x):
    # (log2(a x + 64) - 6) / 14 == log2(1 + a x / 64) / 14. Without branches (a where
    # costs more than the log here): the log segment of max(x, t) is 0 at t, and the toe
    # adds (x - t) / s below t.
    log = _log2_1p(x.clamp_min(_LOGC4_T) * (LOGC4.a / 64)) * (LOGC4.b / 14) + LOGC4.c
    return torch.add(log, _below(x, _LOGC4_T), alpha=1 / _LOGC4_S)


def _logc4_decode(y):
    # Run in float64, where 2**(...) - 64 loses nothing near black. The log segment of
    # max(y, 0) is t at code 0; the toe adds y * s below it.
    log = (torch.exp2((y.clamp_min(0) - LOGC4.c) * (14 / LOGC4.b) + 6) - 64) / LOGC4.a
    return torch.add(log, _below(y, 0.0), alpha=_LOGC4_S)


@array_function
def logc4_encode(x):
    """Encode scene-linear as ARRI LogC4 code values.

    Parameters
    ----------
    x
        Scene-linear exposure, 0.18 = mid grey; values below ``t = -0.018057`` use the
        linear toe and encode below code 0.

    Returns
    -------
    Normalised LogC4 code value: 95/1023 for black, 0.27840 for mid grey, 1.0 at
    scene-linear 469.8.

    References
    ----------
    ARRI (2022), "ARRI LogC4 Logarithmic Color Space Specification", section 3.

    >>> round(logc4_encode(0.18), 5)
    0.2784
    """
    return evaluate(_logc4_encode, x)


@array_function
def logc4_decode(y):
    """Decode ARRI LogC4 code values to scene-linear.

    The branches split at code 0 (scene-linear ``t``), as the specification says, not
    at the black code value ``c``.

    Parameters
    ----------
    y
        Normalised LogC4 code value.

    Returns
    -------
    Scene-linear exposure, 0.18 = mid grey.

    References
    ----------
    ARRI (2022), "ARRI LogC4 Logarithmic Color Space Specification", section 3.

    >>> round(logc4_decode(0.0), 6)
    -0.018057
    """
    return evaluate(_logc4_decode, y, float64=True)


@dataclass(frozen=True)
class _ACEScctConstants:
    """Academy S-2016-001 (ACEScct), section 4.4; the published decimals follow from these."""

    x_break: float = 0.0078125
    log_offset: float = 9.72
    log_scale: float = 17.52

    @property
    def y_break(self) -> float:
        """Code value at the break: the log curve evaluated at ``x_break`` (0.155251...)."""
        return (math.log2(self.x_break) + self.log_offset) / self.log_scale

    @property
    def a(self) -> float:
        """Toe slope, the log curve's derivative at ``x_break`` (10.5402377416545)."""
        return 1 / (self.x_break * math.log(2) * self.log_scale)

    @property
    def b(self) -> float:
        """Toe offset (0.0729055341958355)."""
        return self.y_break - self.a * self.x_break


ACESCCT = _ACEScctConstants()
_CCT_Y_BREAK, _CCT_A, _CCT_B = ACESCCT.y_break, ACESCCT.a, ACESCCT.b


def _acescct_encode(x):
    log = (torch.log2(x.clamp_min(ACESCCT.x_break)) + ACESCCT.log_offset) / ACESCCT.log_scale
    return torch.where(x <= ACESCCT.x_break, x * _CCT_A + _CCT_B, log)


def _acescct_decode(y):
    log = torch.exp2(y.clamp_min(_CCT_Y_BREAK) * ACESCCT.log_scale - ACESCCT.log_offset)
    return torch.where(y <= _CCT_Y_BREAK, (y - _CCT_B) / _CCT_A, log)


@array_function
def acescct_encode(x):
    """Encode scene-linear ACEScg (AP1) values as ACEScct code values.

    Parameters
    ----------
    x
        Scene-linear AP1 value, 0.18 = mid grey; values below 0.0078125 use the toe.

    Returns
    -------
    ACEScct code value (0.4135884 for mid grey).

    References
    ----------
    Academy S-2016-001, "ACEScct - A Quasi-Logarithmic Encoding of ACES Data", 4.4.

    >>> round(acescct_encode(0.18), 7)
    0.4135884
    """
    return evaluate(_acescct_encode, x)


@array_function
def acescct_decode(y):
    """Decode ACEScct code values to scene-linear ACEScg (AP1).

    Unlike the CTL reference this does not clamp the result at 65504 (the half-float
    maximum), so code values above 1.468 keep growing, as in OCIO and colour-science.

    Parameters
    ----------
    y
        ACEScct code value.

    Returns
    -------
    Scene-linear AP1 value.

    References
    ----------
    Academy S-2016-001, "ACEScct - A Quasi-Logarithmic Encoding of ACES Data", 4.5.

    >>> round(acescct_decode(0.4135884), 5)
    0.18
    """
    return evaluate(_acescct_decode, y)

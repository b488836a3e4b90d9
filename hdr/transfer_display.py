"""Display transfer functions: SMPTE ST 2084 (PQ), ITU-R BT.2100 HLG and IEC sRGB.

Each display curve comes twice: the standard's own function on display light (PQ in
absolute nits, the HLG OETF/OOTF/EOTF), and an ``*_encode``/``*_decode`` pair on
scene-linear images where 1.0 is diffuse white shown at ``nits_at_1`` (ITU-R BT.2408's
HDR reference white, 203 nits, by default).

Negative values are data in a scene-linear pipeline, so every curve here extends
odd-symmetrically (``f(-x) = -f(x)``) beyond its standard domain, the way OCIO's
"mirror" transforms and colour-science's HLG do; clamp for display yourself.
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
class _PQConstants:
    """SMPTE ST 2084:2014, section 5.1 (also ITU-R BT.2100-2, Table 4)."""

    m1: float = 2610 / 16384
    m2: float = 2523 / 4096 * 128
    c1: float = 3424 / 4096
    c2: float = 2413 / 4096 * 32
    c3: float = 2392 / 4096 * 32
    peak_nits: float = 10000.0


PQ = _PQConstants()


def _pq_eotf(code):
    power = _pow(code.abs(), 1 / PQ.m2)
    ratio = (power - PQ.c1).clamp_min(0) / (PQ.c2 - PQ.c3 * power)
    return _pow(ratio, 1 / PQ.m1).mul(PQ.peak_nits).copysign(code)


def _pq_inverse_eotf(nits):
    power = _pow(nits.abs() / PQ.peak_nits, PQ.m1)
    return _pow((PQ.c1 + PQ.c2 * power) / (1 + PQ.c3 * power), PQ.m2).copysign(nits)


def _pq_encode(x, nits_at_1):
    return _pq_inverse_eotf(x * nits_at_1)


def _pq_decode(y, nits_at_1):
    return _pq_eotf(y) / nits_at_1


@array_function
def pq_eotf(code):
    """Decode SMPTE ST 2084 (PQ) code values to absolute display luminance in nits.

    Negative code values mirror (``-pq_eotf(-code)``), as OCIO's PQ fixed function does.

    Parameters
    ----------
    code
        Non-linear PQ signal, 0..1.

    Returns
    -------
    Display light in cd/m^2 (nits), 0..10000.

    References
    ----------
    SMPTE ST 2084:2014, section 5.2 (EOTF); ITU-R BT.2100-2, Table 4.

    >>> round(pq_eotf(0.5080784), 3)
    100.0
    """
    return evaluate(_pq_eotf, code, float64=True)


@array_function
def pq_inverse_eotf(nits):
    """Encode absolute display luminance in nits as SMPTE ST 2084 (PQ) code values.

    Zero nits encode to ``c1 ** m2`` (7.3e-7), not exactly 0, as the standard says;
    negative nits mirror.

    Parameters
    ----------
    nits
        Display light in cd/m^2, 0..10000.

    Returns
    -------
    Non-linear PQ signal, 0..1 (1.0 at 10000 nits).

    References
    ----------
    SMPTE ST 2084:2014, section 5.3 (inverse EOTF); ITU-R BT.2100-2, Table 4.

    >>> round(pq_inverse_eotf(100.0), 5)
    0.50808
    """
    return evaluate(_pq_inverse_eotf, nits, float64=True)


@array_function
def pq_encode(x, nits_at_1: float = 203.0):
    """Encode scene-linear as PQ, showing 1.0 (diffuse white) at ``nits_at_1`` nits.

    The default 203 nits is the HDR reference white of ITU-R BT.2408; OCIO's
    "Rec.2100-PQ - Display" colourspace uses 100 nits at 1.0.

    Parameters
    ----------
    x
        Scene-linear value, 1.0 = diffuse white.
    nits_at_1
        Display luminance of scene-linear 1.0, in nits.

    Returns
    -------
    PQ code value (1.0 at 10000 nits, i.e. ``10000 / nits_at_1`` scene-linear).

    References
    ----------
    SMPTE ST 2084:2014, section 5.3; ITU-R BT.2408-7, section 2.2.

    >>> round(pq_encode(1.0), 5)
    0.58069
    """
    _positive("nits_at_1", nits_at_1, "the display luminance of scene-linear 1.0, e.g. 203")
    return evaluate(_pq_encode, x, nits_at_1, float64=True)


@array_function
def pq_decode(y, nits_at_1: float = 203.0):
    """Decode PQ code values to scene-linear with 1.0 (diffuse white) at ``nits_at_1``.

    Parameters
    ----------
    y
        PQ code value.
    nits_at_1
        Display luminance of scene-linear 1.0, in nits (BT.2408: 203).

    Returns
    -------
    Scene-linear value, 1.0 = diffuse white.

    References
    ----------
    SMPTE ST 2084:2014, section 5.2; ITU-R BT.2408-7, section 2.2.

    >>> round(pq_decode(0.58069), 4)
    1.0
    """
    _positive("nits_at_1", nits_at_1, "the display luminance of scene-linear 1.0, e.g. 203")
    return evaluate(_pq_decode, y, nits_at_1, float64=True)


@dataclass(frozen=True)
class _HLGConstants:
    """ITU-R BT.2100-2, Table 5 (HLG): a, and b, c derived from it as the table does."""

    a: float = 0.17883277
    luminance_weights: tuple[float, float, float] = (0.2627, 0.6780, 0.0593)

    @property
    def b(self) -> float:
        """``1 - 4a`` (0.28466892)."""
        return 1 - 4 * self.a

    @property
    def c(self) -> float:
        """``0.5 - a ln(4a)`` (0.55991073)."""
        return 0.5 - self.a * math.log(4 * self.a)


HLG = _HLGConstants()
_HLG_B, _HLG_C = HLG.b, HLG.c


def hlg_system_gamma(peak_nits: float = 1000.0) -> float:
    """HLG system gamma for a display of ``peak_nits`` (BT.2100-2, Table 5, note 5c).

    >>> hlg_system_gamma(1000.0)
    1.2
    """
    _positive("peak_nits", peak_nits, "the display's nominal peak luminance, e.g. 1000")
    return 1.2 + 0.42 * math.log10(peak_nits / 1000)


def _hlg_oetf(scene):
    magnitude = scene.abs()
    log = torch.log(magnitude.clamp_min(1 / 12) * 12 - _HLG_B) * HLG.a + _HLG_C
    return torch.where(magnitude <= 1 / 12, (magnitude * 3).sqrt(), log).copysign(scene)


def _hlg_inverse_oetf(signal):
    magnitude = signal.abs()
    log = (torch.exp((magnitude - _HLG_C) / HLG.a) + _HLG_B) / 12
    return torch.where(magnitude <= 0.5, magnitude.square() / 3, log).copysign(signal)


def _luminance(rgb, weights):
    if rgb.ndim == 0 or rgb.shape[-1] != 3:
        return rgb
    return (rgb * rgb.new_tensor(weights)).sum(-1, keepdim=True)


def _power_of_luminance(luminance, exponent):
    """``|Y| ** exponent``, taken as 0 where Y = 0 (no NaN, in value or gradient)."""
    black = luminance == 0
    return torch.where(black, 0.0, _pow(torch.where(black, 1.0, luminance.abs()), exponent))


def _hlg_ootf(scene, peak_nits, gamma, weights):
    gain = _power_of_luminance(_luminance(scene, weights), gamma - 1)
    return scene * gain * peak_nits


def _hlg_inverse_ootf(nits, peak_nits, gamma, weights):
    gain = _power_of_luminance(_luminance(nits, weights) / peak_nits, (1 - gamma) / gamma)
    return nits * gain / peak_nits


def _black_lift(peak_nits: float, black_nits: float) -> float:
    """BT.2100-2 Table 5: ``beta = sqrt(3 (L_B / L_W) ** (1 / gamma))``."""
    if not 0 <= black_nits < peak_nits:
        raise ValueError(
            f"black_nits must be in [0, peak_nits) (got {black_nits!r} with peak_nits "
            f"{peak_nits!r}); it is the display's black level, e.g. 0 or 0.005"
        )
    return math.sqrt(3 * (black_nits / peak_nits) ** (1 / hlg_system_gamma(peak_nits)))


def _hlg_eotf(signal, peak_nits, gamma, lift, weights):
    return _hlg_ootf(_hlg_inverse_oetf(signal * (1 - lift) + lift), peak_nits, gamma, weights)


def _hlg_inverse_eotf(nits, peak_nits, gamma, lift, weights):
    return (_hlg_oetf(_hlg_inverse_ootf(nits, peak_nits, gamma, weights)) - lift) / (1 - lift)


def _hlg_encode(x, nits_at_1, peak_nits, gamma, weights):
    return _hlg_inverse_eotf(x * nits_at_1, peak_nits, gamma, 0.0, weights)


def _hlg_decode(y, nits_at_1, peak_nits, gamma, weights):
    return _hlg_eotf(y, peak_nits, gamma, 0.0, weights) / nits_at_1


def _group(value) -> int:
    return 3 if value.ndim and value.shape[-1] == 3 else 1


@array_function
def hlg_oetf(scene):
    """Encode normalised scene light with the HLG OETF.

    Below 0 the curve mirrors (``-oetf(-E)``): the standard's ``sqrt(3E)`` is undefined
    there, and the mirror keeps wide-gamut negatives invertible, as colour-science does.

    Parameters
    ----------
    scene
        Scene light E, 0..1 (1.0 = the camera's nominal peak).

    Returns
    -------
    HLG signal E', 0..1 (0.5 at E = 1/12).

    References
    ----------
    ITU-R BT.2100-2, Table 5 (OETF).

    >>> hlg_oetf(1 / 12)
    0.5
    """
    return evaluate(_hlg_oetf, scene)


@array_function
def hlg_inverse_oetf(signal):
    """Decode an HLG signal to normalised scene light (mirrored below 0).

    References
    ----------
    ITU-R BT.2100-2, Table 5 (inverse OETF).

    >>> round(hlg_inverse_oetf(0.5) * 12, 12)
    1.0
    """
    return evaluate(_hlg_inverse_oetf, signal)


@array_function
def hlg_ootf(scene, peak_nits: float = 1000.0, luminance_weights=HLG.luminance_weights):
    """Map normalised HLG scene light to display light in nits (the HLG OOTF).

    ``F_D = L_W * Y_S ** (gamma - 1) * E`` with the system gamma of
    :func:`hlg_system_gamma`. Works on RGB along the last axis (luminance from the
    Rec.2020 weights); an array whose last axis is not 3 is treated as achromatic
    (``Y_S = E``). ``|Y_S|`` is used, so negative luminance mirrors.

    References
    ----------
    ITU-R BT.2100-2, Table 5 (OOTF); colour-science's ``ootf_BT2100_HLG``.

    >>> [round(v, 4) for v in hlg_ootf([0.5, 0.5, 0.5]).tolist()]
    [435.2753, 435.2753, 435.2753]
    """
    gamma = hlg_system_gamma(peak_nits)
    return evaluate(_hlg_ootf, scene, peak_nits, gamma, tuple(luminance_weights),
                    group=_group(scene))


@array_function
def hlg_inverse_ootf(nits, peak_nits: float = 1000.0, luminance_weights=HLG.luminance_weights):
    """Map HLG display light in nits back to normalised scene light (inverse OOTF).

    References
    ----------
    ITU-R BT.2100-2, Table 5 (OOTF); colour-science's ``ootf_inverse_BT2100_HLG``.

    >>> [round(v, 6) for v in hlg_inverse_ootf([1000.0, 1000.0, 1000.0]).tolist()]
    [1.0, 1.0, 1.0]
    """
    gamma = hlg_system_gamma(peak_nits)
    return evaluate(_hlg_inverse_ootf, nits, peak_nits, gamma, tuple(luminance_weights),
                    group=_group(nits))


@array_function
def hlg_eotf(signal, peak_nits: float = 1000.0, black_nits: float = 0.0):
    """Decode an HLG signal to display light in nits (inverse OETF, then OOTF).

    ``F_D = OOTF[OETF^-1[(1 - beta) E' + beta]]``. The standard clamps the lifted signal
    at 0; here it mirrors instead, so sub-black signals decode to negative light and
    round-trip. RGB along the last axis, achromatic otherwise.

    Parameters
    ----------
    signal
        HLG signal E', 0..1.
    peak_nits
        Display nominal peak luminance L_W, in nits.
    black_nits
        Display black level L_B, in nits.

    Returns
    -------
    Display light in nits (``peak_nits`` at signal 1.0).

    References
    ----------
    ITU-R BT.2100-2, Table 5 (EOTF).

    >>> round(hlg_eotf(0.75), 2)
    203.15
    """
    gamma, lift = hlg_system_gamma(peak_nits), _black_lift(peak_nits, black_nits)
    weights = HLG.luminance_weights
    return evaluate(_hlg_eotf, signal, peak_nits, gamma, lift, weights, group=_group(signal))


@array_function
def hlg_inverse_eotf(nits, peak_nits: float = 1000.0, black_nits: float = 0.0):
    """Encode display light in nits as an HLG signal (inverse OOTF, then OETF).

    References
    ----------
    ITU-R BT.2100-2, Table 5 (EOTF, inverted); ITU-R BT.2390-10, section 6.3.

    >>> round(hlg_inverse_eotf(1000.0), 6)
    1.0
    """
    gamma, lift = hlg_system_gamma(peak_nits), _black_lift(peak_nits, black_nits)
    weights = HLG.luminance_weights
    return evaluate(_hlg_inverse_eotf, nits, peak_nits, gamma, lift, weights,
                    group=_group(nits))


@array_function
def hlg_encode(x, nits_at_1: float = 203.0, peak_nits: float = 1000.0):
    """Encode scene-linear as HLG, showing 1.0 (diffuse white) at ``nits_at_1``.

    The image is shown as display light ``x * nits_at_1`` on a ``peak_nits`` display
    and encoded with :func:`hlg_inverse_eotf`; with the defaults, diffuse white lands on
    signal 0.75, as ITU-R BT.2408 recommends.

    References
    ----------
    ITU-R BT.2100-2, Table 5; ITU-R BT.2408-7, section 2.2.

    >>> round(hlg_encode(1.0), 3)
    0.75
    """
    _positive("nits_at_1", nits_at_1, "the display luminance of scene-linear 1.0, e.g. 203")
    gamma, weights = hlg_system_gamma(peak_nits), HLG.luminance_weights
    return evaluate(_hlg_encode, x, nits_at_1, peak_nits, gamma, weights, group=_group(x))


@array_function
def hlg_decode(y, nits_at_1: float = 203.0, peak_nits: float = 1000.0):
    """Decode an HLG signal to scene-linear with 1.0 (diffuse white) at ``nits_at_1``.

    References
    ----------
    ITU-R BT.2100-2, Table 5; ITU-R BT.2408-7, section 2.2.

    >>> round(hlg_decode(1.0), 4)
    4.9261
    """
    _positive("nits_at_1", nits_at_1, "the display luminance of scene-linear 1.0, e.g. 203")
    gamma, weights = hlg_system_gamma(peak_nits), HLG.luminance_weights
    return evaluate(_hlg_decode, y, nits_at_1, peak_nits, gamma, weights, group=_group(y))


@dataclass(frozen=True)
class _SRGBConstants:
    """IEC 61966-2-1:1999, section 5.2 (encoding) and 5.3 (decoding)."""

    linear_break: float = 0.0031308
    code_break: float = 0.04045
    slope: float = 12.92
    offset: float = 0.055
    exponent: float = 2.4


SRGB = _SRGBConstants()


def _srgb_encode(x):
    magnitude = x.abs()
    power = _pow(magnitude.clamp_min(SRGB.linear_break), 1 / SRGB.exponent)
    curve = power * (1 + SRGB.offset) - SRGB.offset
    return torch.where(magnitude <= SRGB.linear_break, magnitude * SRGB.slope, curve).copysign(x)


def _srgb_decode(y):
    magnitude = y.abs()
    base = (magnitude.clamp_min(SRGB.code_break) + SRGB.offset) / (1 + SRGB.offset)
    curve = _pow(base, SRGB.exponent)
    return torch.where(magnitude <= SRGB.code_break, magnitude / SRGB.slope, curve).copysign(y)


@array_function
def srgb_encode(x):
    """Encode linear light with the IEC 61966-2-1 sRGB piecewise curve (inverse EOTF).

    Negative values mirror (``-encode(-x)``), as OCIO's "sRGB - MIRROR NEGS" and ACES
    do; colour-science instead continues the linear segment below 0, which agrees only
    down to -0.0031308.

    References
    ----------
    IEC 61966-2-1:1999, section 5.2.

    >>> round(srgb_encode(0.18), 6)
    0.461356
    """
    return evaluate(_srgb_encode, x)


@array_function
def srgb_decode(y):
    """Decode sRGB code values to linear light (IEC 61966-2-1 EOTF, mirrored below 0).

    References
    ----------
    IEC 61966-2-1:1999, section 5.3.

    >>> round(srgb_decode(0.461356), 5)
    0.18
    """
    return evaluate(_srgb_decode, y)

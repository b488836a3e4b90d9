"""Forward tone mapping: scene-linear or HDR display light down to an SDR display.

Each operator says what it takes and what it returns. The broadcast methods follow their
ITU-R reports exactly (BT.2446 Methods A and C in BT.2020, BT.2390's EETF in the PQ
domain); :data:`TONE_MAPPERS` wraps every operator behind one contract for previews and
pair generation: scene-linear Rec.709 in (1.0 = diffuse white), display-linear Rec.709
out (1.0 = the SDR display's peak, 100 nits).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ._array import array_function, half_in_float32
from .gamut import convert_gamut, luminance
from .transfer import pq_eotf, pq_inverse_eotf, srgb_decode


@dataclass(frozen=True)
class _BT2446AConstants:
    """Report ITU-R BT.2446-1 (03/2021), section 4.1 (Method A, HDR to SDR)."""

    # Rec. ITU-R BT.2020-2, Table 4: luma Y' = 0.2627 R' + 0.6780 G' + 0.0593 B'.
    luma_weights: tuple[float, float, float] = (0.2627, 0.6780, 0.0593)
    gamma: float = 2.4
    # Step 1: rho = 1 + 32 * (L / 10000) ** (1 / 2.4).
    rho_gain: float = 32.0
    rho_reference_nits: float = 10000.0
    # Step 2: the knee in the perceptual domain.
    knee_low: float = 0.7399
    knee_high: float = 0.9909
    linear_slope: float = 1.0770
    quadratic: tuple[float, float, float] = (-1.1510, 2.7811, -0.6302)
    shoulder: tuple[float, float] = (0.5, 0.5)
    # Colour correction: f = Y'_SDR / (1.1 Y'_HDR); Y'_TMO = Y'_SDR - max(0.1 Cr, 0).
    chroma_divisor: float = 1.1
    luma_correction: float = 0.1
    hdr_peak_nits: float = 1000.0
    sdr_peak_nits: float = 100.0

    @property
    def cb_scale(self) -> float:
        """Rec. ITU-R BT.2020-2, Table 4: Cb = (B' - Y') / (2 (1 - K_B)) = / 1.8814."""
        return 2 * (1 - self.luma_weights[2])

    @property
    def cr_scale(self) -> float:
        """Rec. ITU-R BT.2020-2, Table 4: Cr = (R' - Y') / (2 (1 - K_R)) = / 1.4746."""
        return 2 * (1 - self.luma_weights[0])


BT2446A = _BT2446AConstants()


@dataclass(frozen=True)
class _BT2446CConstants:
    """Report ITU-R BT.2446-1 (03/2021), section 6.1 (Method C, HDR to SDR).

    The tone curve is linear (slope k1) below the inflection point Y_HDR,ip = Y_SDR,ip / k1
    and k2 ln(Y / Y_HDR,ip - k3) + k4 above it (section 6.1.4). k2 and k4 are the report's
    tabulated values, which the defining formulas k2 = k1 (1 - k3) Y_HDR,ip and
    k4 = k1 Y_HDR,ip - k2 ln(1 - k3) reproduce for Y_SDR,ip = 58.535; with the stated
    Y_SDR,ip = 58.5 the curve therefore steps up by 0.035 cd/m^2 at the inflection point.
    """

    k1: float = 0.83802
    k2: float = 15.09968
    k3: float = 0.74204
    k4: float = 78.99439
    sdr_inflection_nits: float = 58.5
    # Section 6.1.2: crosstalk alpha, 0 (off) to 0.33; 0.05 desaturates mildly.
    crosstalk: float = 0.05
    sdr_peak_nits: float = 100.0

    @property
    def hdr_inflection_nits(self) -> float:
        return self.sdr_inflection_nits / self.k1


BT2446C = _BT2446CConstants()


@dataclass(frozen=True)
class _BT2390Constants:
    """Report ITU-R BT.2390-7 (07/2019), section 5.4.1 (EETF for PQ displays)."""

    knee_slope: float = 1.5  # KS = 1.5 maxLum - 0.5
    knee_offset: float = 0.5
    black_power: float = 4.0  # E3 = E2 + b (1 - E2) ** 4
    source_peak_nits: float = 1000.0
    target_peak_nits: float = 100.0


BT2390 = _BT2390Constants()


@dataclass(frozen=True)
class _ACES2View:
    """OCIO built-in ACES studio config (OpenColorIO 2.4+, ACES 2.0 output transforms)."""

    config: str = "ocio://studio-config-latest"
    display: str = "sRGB - Display"
    view: str = "ACES 2.0 - SDR 100 nits (Rec.709)"
    scene_colourspace: str = "Linear Rec.709 (sRGB)"


ACES2 = _ACES2View()

# Rec. ITU-R BT.2408-7, section 2.1: HDR Reference White is 203 cd/m^2.
REFERENCE_WHITE_NITS = 203.0


@array_function
def reinhard(x, white: float | None = None):
    """Reinhard's global tone curve, with an optional white point.

    L_d = L (1 + L / white^2) / (1 + L); without ``white`` this is L / (1 + L). Applied to
    each value; wrap it in :func:`max_rgb` to keep hue. Negative values pass through the
    curve's unit slope at 0.

    Parameters
    ----------
    x
        Scene-linear values (1.0 = diffuse white), any shape.
    white
        The smallest value mapped to 1.0; None for the asymptotic curve.

    Returns
    -------
    Display-linear values, in [0, 1) (or reaching 1.0 at ``white``).

    References
    ----------
    Reinhard, Stark, Shirley, Ferwerda, "Photographic Tone Reproduction for Digital
    Images", SIGGRAPH 2002, equations 3 and 4.

    >>> reinhard(1.0), reinhard(4.0, white=4.0)
    (0.5, 1.0)
    """
    if white is not None and not white > 0:
        raise ValueError(f"white must be > 0 (the value mapped to 1.0), got {white}")
    positive = x.clamp_min(0)
    curve = positive / (1 + positive)
    if white is not None:
        curve = curve * (1 + positive / (white * white))
    return torch.where(x >= 0, curve, x)


@array_function
def max_rgb(rgb, curve: Callable):
    """Apply a tone curve to max(R, G, B) and scale RGB by the same ratio (keeps hue).

    Parameters
    ----------
    rgb
        Linear RGB, channels on the last axis.
    curve
        A tensor-to-tensor tone curve, e.g. :func:`reinhard`.

    Returns
    -------
    ``rgb * curve(m) / m`` with m = max(R, G, B); pixels with m <= 0 pass unchanged.

    References
    ----------
    Report ITU-R BT.2390-7 (07/2019), section 5.4.1 (the EETF applied to maxRGB).

    >>> max_rgb(np.array([2.0, 1.0, 0.5]), reinhard).round(4).tolist()
    [0.6667, 0.3333, 0.1667]
    """
    _check_rgb(rgb, "rgb")
    peak = rgb.amax(-1, keepdim=True)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    ratio = torch.where(peak > 0, curve(safe) / safe, torch.ones_like(peak))
    return rgb * ratio


def _check_rgb(rgb: torch.Tensor, name: str) -> None:
    if rgb.ndim == 0 or rgb.shape[-1] != 3:
        raise ValueError(f"{name} must have 3 channels on its last axis, got shape "
                         f"{tuple(rgb.shape)}; pass image[..., :3] to drop alpha")


def _rho(peak_nits: float) -> float:
    return 1 + BT2446A.rho_gain * (peak_nits / BT2446A.rho_reference_nits) ** (1 / BT2446A.gamma)


@array_function
@half_in_float32
def bt2446a(rgb, *, hdr_peak_nits: float = BT2446A.hdr_peak_nits,
            sdr_peak_nits: float = BT2446A.sdr_peak_nits):
    """HDR to SDR conversion, ITU-R BT.2446 Method A (luma tone curve, chroma scaling).

    Parameters
    ----------
    rgb
        BT.2020 linear display light normalised to the HDR peak (1.0 = ``hdr_peak_nits``),
        e.g. a PQ signal decoded with :func:`pq_eotf` and divided by 1000.
    hdr_peak_nits, sdr_peak_nits
        L_HDR and L_SDR of the report (1000 and 100 cd/m^2).

    Returns
    -------
    The SDR BT.2020 R'G'B' signal, gamma-encoded for a BT.1886 (2.4) display, not clipped,
    in ``rgb``'s dtype (bfloat16/float16 are computed in float32).

    References
    ----------
    Report ITU-R BT.2446-1 (03/2021), section 4.1.

    >>> bt2446a(np.array([0.203, 0.203, 0.203])).round(4).tolist()
    [0.6869, 0.6869, 0.6869]
    """
    _check_rgb(rgb, "rgb")
    weights = torch.tensor(BT2446A.luma_weights, dtype=rgb.dtype, device=rgb.device)
    signal = rgb.clamp_min(0).pow(1 / BT2446A.gamma)
    luma = signal @ weights
    rho_hdr, rho_sdr = _rho(hdr_peak_nits), _rho(sdr_peak_nits)
    perceptual = torch.log1p((rho_hdr - 1) * luma) / math.log(rho_hdr)
    a, b, c = BT2446A.quadratic
    slope, offset = BT2446A.shoulder
    knee = torch.where(
        perceptual <= BT2446A.knee_low, BT2446A.linear_slope * perceptual,
        torch.where(perceptual < BT2446A.knee_high, (a * perceptual + b) * perceptual + c,
                    slope * perceptual + offset))
    luma_sdr = (torch.pow(rho_sdr, knee) - 1) / (rho_sdr - 1)
    safe = torch.where(luma > 0, luma, torch.ones_like(luma))
    scale = torch.where(luma > 0, luma_sdr / (BT2446A.chroma_divisor * safe),
                        torch.zeros_like(luma))
    cb = scale * (signal[..., 2] - luma) / BT2446A.cb_scale
    cr = scale * (signal[..., 0] - luma) / BT2446A.cr_scale
    luma_tmo = luma_sdr - (BT2446A.luma_correction * cr).clamp_min(0)
    red = luma_tmo + BT2446A.cr_scale * cr
    blue = luma_tmo + BT2446A.cb_scale * cb
    k_r, k_g, k_b = BT2446A.luma_weights
    green = (luma_tmo - k_r * red - k_b * blue) / k_g
    return torch.stack((red, green, blue), dim=-1)


@array_function
@half_in_float32
def bt2446c_curve(nits):
    """The BT.2446 Method C tone curve: HDR luminance in cd/m^2 to SDR luminance in cd/m^2.

    Parameters
    ----------
    nits
        HDR luminance Y_HDR, cd/m^2.

    Returns
    -------
    Y_SDR in cd/m^2; 1000 cd/m^2 lands at about 118 (the 109 % super-white code value).

    References
    ----------
    Report ITU-R BT.2446-1 (03/2021), section 6.1.4.

    >>> round(float(bt2446c_curve(1000.0)), 4)
    118.3868
    """
    knee = BT2446C.hdr_inflection_nits
    ratio = (nits / knee - BT2446C.k3).clamp_min(torch.finfo(nits.dtype).tiny)
    shoulder = BT2446C.k2 * torch.log(ratio) + BT2446C.k4
    return torch.where(nits < knee, BT2446C.k1 * nits, shoulder)


@array_function
@half_in_float32
def bt2446c(rgb_nits, *, crosstalk: float = BT2446C.crosstalk):
    """HDR to SDR conversion, ITU-R BT.2446 Method C (tone curve on Y, chromaticity kept).

    Crosstalk matrix, the :func:`bt2446c_curve` on luminance Y with x, y kept (here as
    a scale of XYZ, which is the same thing), then the inverse crosstalk. The optional
    chroma correction of section 6.1.8 is not applied.

    Parameters
    ----------
    rgb_nits
        BT.2020 linear display light in cd/m^2.
    crosstalk
        Crosstalk alpha, 0 to 0.33 (section 6.1.2).

    Returns
    -------
    SDR BT.2020 display-linear RGB, 1.0 = 100 cd/m^2 (super-whites above 1.0, not clipped),
    in ``rgb_nits``' dtype: bfloat16/float16 are computed in float32 (the crosstalk matrix
    is inverted, which torch does not do in half precision).

    References
    ----------
    Report ITU-R BT.2446-1 (03/2021), section 6.1.

    >>> bt2446c(np.array([203.0, 203.0, 203.0])).round(4).tolist()
    [0.9066, 0.9066, 0.9066]
    """
    _check_rgb(rgb_nits, "rgb_nits")
    if not 0 <= crosstalk < 1 / 3:
        raise ValueError(f"crosstalk must be in [0, 1/3), got {crosstalk}")
    eye = torch.eye(3, dtype=rgb_nits.dtype, device=rgb_nits.device)
    matrix = (1 - 3 * crosstalk) * eye + crosstalk
    mixed = rgb_nits @ matrix.T
    nits = luminance(mixed, "rec2020")
    safe = torch.where(nits > 0, nits, torch.ones_like(nits))
    scale = torch.where(nits > 0, bt2446c_curve(safe) / safe, torch.full_like(nits, BT2446C.k1))
    sdr = mixed * scale[..., None] / BT2446C.sdr_peak_nits
    return sdr @ torch.linalg.inv(matrix).T


@array_function
@half_in_float32
def bt2390_eetf(code, *, source_peak_nits: float = BT2390.source_peak_nits,
                source_black_nits: float = 0.0,
                target_peak_nits: float = BT2390.target_peak_nits,
                target_black_nits: float = 0.0):
    """ITU-R BT.2390 EETF: map PQ code values of a mastering display to a target display.

    E1 normalises the code to the source black..peak (clipped to [0, 1], content is
    assumed within its mastering range), a Hermite spline rolls off above the knee
    KS = 1.5 maxLum - 0.5, the black level is lifted by b (1 - E2)^4, and the result is
    returned to PQ codes. The spline needs KS > 0, i.e. a target peak above about a third
    of the source peak in PQ.

    Parameters
    ----------
    code
        PQ (SMPTE ST 2084) code values, 0..1; per channel, or of max(R, G, B) / I.
    source_peak_nits, source_black_nits
        The mastering display's white and black (L_W, L_B).
    target_peak_nits, target_black_nits
        The target display's white and black (L_max, L_min).

    Returns
    -------
    PQ code values for the target display, in ``code``'s dtype (bfloat16/float16 are
    computed in float32).

    References
    ----------
    Report ITU-R BT.2390-7 (07/2019), section 5.4.1.

    >>> round(float(pq_eotf(bt2390_eetf(pq_inverse_eotf(1000.0)))), 4)
    100.0
    """
    white, black = pq_inverse_eotf(source_peak_nits), pq_inverse_eotf(source_black_nits)
    if not white > black:
        raise ValueError(f"source_peak_nits ({source_peak_nits}) must exceed "
                         f"source_black_nits ({source_black_nits})")
    span = white - black
    max_lum = (pq_inverse_eotf(target_peak_nits) - black) / span
    min_lum = (pq_inverse_eotf(target_black_nits) - black) / span
    knee = BT2390.knee_slope * max_lum - BT2390.knee_offset
    if not knee > 0:
        raise ValueError(f"target_peak_nits ({target_peak_nits}) is too low for the BT.2390 "
                         f"knee from {source_peak_nits} nits; raise it")
    e1 = ((code - black) / span).clamp(0.0, 1.0)
    if knee >= 1:
        e2 = e1
    else:
        t = (e1 - knee) / (1 - knee)
        t2, t3 = t * t, t * t * t
        spline = ((2 * t3 - 3 * t2 + 1) * knee + (t3 - 2 * t2 + t) * (1 - knee)
                  + (-2 * t3 + 3 * t2) * max_lum)
        e2 = torch.where(e1 < knee, e1, spline)
    e3 = e2 + min_lum * (1 - e2).pow(BT2390.black_power)
    return e3 * span + black


@functools.lru_cache(maxsize=8)
def _aces2_processor(colourspace: str):
    import PyOpenColorIO as ocio

    try:
        config = ocio.Config.CreateFromFile(ACES2.config)
        transform = ocio.DisplayViewTransform(src=colourspace, display=ACES2.display,
                                              view=ACES2.view)
        return config.getProcessor(transform).getDefaultCPUProcessor()
    except ocio.Exception as error:
        raise ValueError(f"colourspace {colourspace!r} is not in {ACES2.config} ({error}); "
                         "use an OCIO name such as 'ACEScg' or 'Linear Rec.709 (sRGB)'") from error


@array_function
def aces2_sdr(rgb, colourspace: str = ACES2.scene_colourspace):
    """ACES 2.0 SDR output transform (100 nits, Rec.709, sRGB display) via OpenColorIO.

    Runs in float32 through OCIO's CPU processor on a copy (``rgb`` is never written), so
    it is not differentiable; the result has ``rgb``'s device and dtype.

    Parameters
    ----------
    rgb
        Scene-linear RGB in ``colourspace`` (1.0 = diffuse white).
    colourspace
        The input's OCIO colour space in the ACES studio config.

    Returns
    -------
    sRGB-encoded display code values in [0, 1] (decode with :func:`srgb_decode`).

    References
    ----------
    Academy ACES 2.0 Output Transforms; OCIO built-in config ``studio-config-latest``,
    display 'sRGB - Display', view 'ACES 2.0 - SDR 100 nits (Rec.709)'.

    >>> aces2_sdr(np.array([0.18, 0.18, 0.18])).round(3).tolist()
    [0.349, 0.349, 0.349]
    """
    _check_rgb(rgb, "rgb")
    # OCIO's applyRGB works in place: it gets its own float32 copy, never a view of rgb.
    pixels = np.array(rgb.detach().to("cpu", torch.float32).numpy().reshape(-1, 3),
                      dtype=np.float32, order="C", copy=True)
    _aces2_processor(colourspace).applyRGB(pixels)
    return torch.from_numpy(pixels).reshape(rgb.shape).to(dtype=rgb.dtype, device=rgb.device)


def _rec2020(rgb):
    return convert_gamut(rgb, "rec709", "rec2020")


def _rec709(rgb):
    return convert_gamut(rgb, "rec2020", "rec709")


def _bt2390_curve(scene):
    code = pq_inverse_eotf(scene.clamp_min(0) * REFERENCE_WHITE_NITS)
    return pq_eotf(bt2390_eetf(code)) / BT2390.target_peak_nits


@array_function
@half_in_float32
def _preview_reinhard(rgb):
    return reinhard(rgb)


@array_function
@half_in_float32
def _preview_reinhard_max_rgb(rgb):
    return max_rgb(rgb, reinhard)


@array_function
@half_in_float32
def _preview_bt2446a(rgb):
    hdr = _rec2020(rgb) * (REFERENCE_WHITE_NITS / BT2446A.hdr_peak_nits)
    return _rec709(bt2446a(hdr).clamp_min(0).pow(BT2446A.gamma))


@array_function
@half_in_float32
def _preview_bt2446c(rgb):
    return _rec709(bt2446c(_rec2020(rgb) * REFERENCE_WHITE_NITS))


@array_function
@half_in_float32
def _preview_bt2390(rgb):
    return _bt2390_curve(rgb)


@array_function
@half_in_float32
def _preview_bt2390_max_rgb(rgb):
    return max_rgb(rgb, _bt2390_curve)


@array_function
@half_in_float32
def _preview_aces2_sdr(rgb):
    return srgb_decode(aces2_sdr(rgb))


# Every entry: scene-linear Rec.709 in (1.0 = diffuse white, placed at 203 nits where a
# method works in absolute light), display-linear Rec.709 out (1.0 = 100-nit SDR peak), in
# the input's dtype; bfloat16/float16 are computed in float32 (203-nit light overflows
# float16 above 322x diffuse white, and BT.2390's spline cancels).
TONE_MAPPERS: dict[str, Callable] = {
    "reinhard": _preview_reinhard,
    "reinhard_max_rgb": _preview_reinhard_max_rgb,
    "bt2446a": _preview_bt2446a,
    "bt2446c": _preview_bt2446c,
    "bt2390": _preview_bt2390,
    "bt2390_max_rgb": _preview_bt2390_max_rgb,
    "aces2_sdr": _preview_aces2_sdr,
}


def get_tone_mapper(name: str) -> Callable:
    """Return the tone mapper registered as ``name`` in :data:`TONE_MAPPERS`.

    Each takes scene-linear Rec.709 RGB (1.0 = diffuse white, 203 nits for the ITU-R
    methods per BT.2408) and returns display-linear Rec.709 (1.0 = 100-nit SDR peak).

    >>> get_tone_mapper("reinhard")(np.array([1.0, 1.0, 1.0])).tolist()
    [0.5, 0.5, 0.5]
    """
    if name not in TONE_MAPPERS:
        raise ValueError(f"tone mapper {name!r} is unknown; use one of: "
                         + ", ".join(TONE_MAPPERS))
    return TONE_MAPPERS[name]

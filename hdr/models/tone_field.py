"""LumaFlux's tone-field head: a per-pixel monotone spline from SDR to HDR in BT.2020 Y'CbCr.

The SDR input (display-referred sRGB code values, 0-1, as ComfyUI's Load Image gives) is
placed in an HDR container the way ITU-R BT.2408 places SDR: sRGB-decoded, converted to
BT.2020 primaries and PQ-encoded with SDR white at 203 nits. Its BT.2020 Y'CbCr (Y' in
[0, 1], Cb and Cr in [-0.5, 0.5], shifted to [0, 1]) then goes through one monotone
rational-quadratic spline per channel and per pixel (:mod:`.rqs`), whose parameters a
zero-initialised linear layer reads from per-pixel features. At initialisation every
spline is the identity, so the head's output is the SDR image as BT.2408 shows it on an
HDR display; training bends the curves to expand highlights.

References
----------
LumaFlux poster: the RQS tone-field head, K = 8 knots, applied in YUV BT.2020.
ITU-R BT.2020-2 (2015), Table 4 (non-constant-luminance Y'CbCr); ITU-R BT.2408-7 (2023),
section 5.1 (203 nits HDR reference white, SDR white mapped to it); SMPTE ST 2084 (PQ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._array import array_function
from ..gamut import convert_gamut
from ..transfer import pq_decode, pq_encode, srgb_decode
from .rqs import KNOTS, rational_quadratic_spline, spline_knots


@dataclass(frozen=True)
class _BT2020YCbCr:
    """ITU-R BT.2020-2 (2015), Table 4, non-constant luminance: Y' = 0.2627 R' + 0.6780 G'
    + 0.0593 B', Cb = (B' - Y') / 1.8814, Cr = (R' - Y') / 1.4746 (1.8814 = 2 (1 - Kb),
    1.4746 = 2 (1 - Kr))."""

    red: float = 0.2627
    blue: float = 0.0593

    @property
    def green(self) -> float:
        return 1 - self.red - self.blue


BT2020_YCBCR = _BT2020YCbCr()

TONE_CURVES = ("monotone", "linear")
"""The tone-field head's curve per pixel and channel: ``monotone``, the RQS of
:mod:`.rqs` (the poster's "RQS monotone" row); ``linear``, an affine ``(1 + a) x + b``
with ``a``, ``b`` unconstrained (our reading of the poster's "RQS linear" ablation row:
the same head without the spline's monotone shape)."""

SDR_WHITE_NITS = 203.0
"""ITU-R BT.2408-7, section 5.1: HDR reference white (and SDR white placed in PQ) = 203 nits."""


def check_sdr(sdr: torch.Tensor, name: str = "sdr") -> None:
    """Refuse an SDR input that is not finite display code values in ``[0, 1]``.

    Raises
    ------
    ValueError
        Naming ``name`` and the fix, for NaN, infinities or values outside ``[0, 1]``.

    >>> check_sdr(torch.tensor([[0.0, 0.5, 1.0]]))
    """
    if not isinstance(sdr, torch.Tensor) or not sdr.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of SDR code values; pass "
                         "the image as float (ComfyUI IMAGE) in [0, 1]")
    if sdr.shape[-1:] != (3,):
        raise ValueError(f"{name} has shape {tuple(sdr.shape)}; pass RGB with the channels "
                         "on the last axis ([B, H, W, 3])")
    bad = ~torch.isfinite(sdr)
    if bad.any():
        raise ValueError(f"{name} contains NaN or infinity at {int(bad.sum())} values; the "
                         "SDR input must be finite display code values in [0, 1] (check the "
                         "decode that produced it)")
    low, high = float(sdr.min()), float(sdr.max())
    if low < 0 or high > 1:
        raise ValueError(f"{name} has values in [{low:.4g}, {high:.4g}], outside [0, 1]; the "
                         "SDR input must be display-referred code values: tone map or clamp "
                         "scene-linear images to SDR first")


@array_function
def rgb_to_ycbcr2020(rgb):
    """Non-constant-luminance BT.2020 Y'CbCr of non-linear R'G'B' (no offset, full range).

    Parameters
    ----------
    rgb
        Non-linear (PQ, HLG or gamma) BT.2020 R'G'B', channels last.

    Returns
    -------
    ``[Y', Cb, Cr]``: Y' in [0, 1] and Cb, Cr in [-0.5, 0.5] for R'G'B' in [0, 1].

    References
    ----------
    ITU-R BT.2020-2 (2015), Table 4.

    >>> [round(v, 4) for v in rgb_to_ycbcr2020([1.0, 1.0, 1.0]).tolist()]
    [1.0, 0.0, 0.0]
    """
    red, green, blue = rgb.unbind(-1)
    luma = BT2020_YCBCR.red * red + BT2020_YCBCR.green * green + BT2020_YCBCR.blue * blue
    return torch.stack([luma, (blue - luma) / (2 * (1 - BT2020_YCBCR.blue)),
                        (red - luma) / (2 * (1 - BT2020_YCBCR.red))], dim=-1)


@array_function
def ycbcr2020_to_rgb(ycbcr):
    """Invert :func:`rgb_to_ycbcr2020`: BT.2020 Y'CbCr back to non-linear R'G'B'.

    References
    ----------
    ITU-R BT.2020-2 (2015), Table 4, solved for R', G', B'.

    >>> [round(v, 4) for v in ycbcr2020_to_rgb([0.5, 0.0, 0.0]).tolist()]
    [0.5, 0.5, 0.5]
    """
    luma, blue_difference, red_difference = ycbcr.unbind(-1)
    red = luma + 2 * (1 - BT2020_YCBCR.red) * red_difference
    blue = luma + 2 * (1 - BT2020_YCBCR.blue) * blue_difference
    green = (luma - BT2020_YCBCR.red * red - BT2020_YCBCR.blue * blue) / BT2020_YCBCR.green
    return torch.stack([red, green, blue], dim=-1)


def sdr_to_pq_ycbcr(sdr: torch.Tensor) -> torch.Tensor:
    """SDR sRGB code values -> BT.2020 PQ Y'CbCr, SDR white at 203 nits (BT.2408).

    >>> [round(v, 4) for v in sdr_to_pq_ycbcr(torch.ones(3)).tolist()]
    [0.5807, 0.0, 0.0]
    """
    check_sdr(sdr)
    linear = convert_gamut(srgb_decode(sdr), "rec709", "rec2020")
    return rgb_to_ycbcr2020(pq_encode(linear, nits_at_1=SDR_WHITE_NITS))


@dataclass(frozen=True)
class ToneFieldOutput:
    """The head's HDR output three ways, and the knot derivatives for ``L_spline``."""

    ycbcr: torch.Tensor
    """BT.2020 PQ Y'CbCr, ``[..., 3]``."""
    pq_rgb: torch.Tensor
    """BT.2020 PQ R'G'B' code values, ``[..., 3]``."""
    linear: torch.Tensor
    """Linear-light BT.2020 RGB after the PQ EOTF, 1.0 = 203 nits, ``[..., 3]``."""
    derivatives: torch.Tensor
    """Knot derivatives ``s``, ``[..., 3, K]``."""


class ToneFieldHead(torch.nn.Module):
    """Per-pixel features -> one monotone spline per Y'CbCr channel -> HDR.

    Parameters
    ----------
    feature_channels
        Channels of the per-pixel features (last axis) the spline parameters are read from.
    knots
        Knots per spline (poster: 8).
    curve
        ``'monotone'`` (the RQS) or ``'linear'`` (an affine map), :data:`TONE_CURVES`.

    The projection starts at zero, so the head is exactly the BT.2408 placement of the SDR
    input until it is trained.
    """

    def __init__(self, feature_channels: int, knots: int = KNOTS, curve: str = "monotone"):
        super().__init__()
        if curve not in TONE_CURVES:
            raise ValueError(f"curve is {curve!r}; pick one of {', '.join(TONE_CURVES)}")
        self.knots, self.curve = knots, curve
        per_curve = 3 * knots - 2 if curve == "monotone" else 2
        self.projection = torch.nn.Linear(feature_channels, 3 * per_curve)
        torch.nn.init.zeros_(self.projection.weight)
        torch.nn.init.zeros_(self.projection.bias)

    def forward(self, sdr: torch.Tensor, features: torch.Tensor) -> ToneFieldOutput:
        """Map ``sdr`` (``[..., 3]`` sRGB code values) through the splines that
        ``features`` (``[..., feature_channels]``) select, pixel by pixel."""
        ycbcr = sdr_to_pq_ycbcr(sdr)
        parameters = self.projection(features.to(self.projection.weight.dtype))
        parameters = parameters.unflatten(-1, (3, -1)).to(ycbcr.dtype)
        chroma_shift = torch.tensor([0.0, 0.5, 0.5], dtype=ycbcr.dtype, device=ycbcr.device)
        if self.curve == "monotone":
            curved = rational_quadratic_spline(ycbcr + chroma_shift, parameters, self.knots)
            derivatives = spline_knots(parameters, self.knots)[2]
        else:  # the slope is the derivative everywhere: L_spline is 0
            slope = 1 + parameters[..., 0]
            curved = (ycbcr + chroma_shift) * slope + parameters[..., 1]
            derivatives = slope[..., None].expand(*slope.shape, self.knots)
        mapped = curved - chroma_shift
        pq_rgb = ycbcr2020_to_rgb(mapped)
        return ToneFieldOutput(mapped, pq_rgb, pq_decode(pq_rgb, nits_at_1=SDR_WHITE_NITS),
                               derivatives)

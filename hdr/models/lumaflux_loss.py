"""LumaFlux's training loss, in linear light after the PQ EOTF.

``L = 1.0 * ||Y_lin - Y*||_1 + 0.5 * ||x_lin - x*||_1 + 0.01 * L_spline``: the L1 error of
the BT.2020 luminance, the L1 error of the linear BT.2020 RGB, and the tone-field spline's
smoothness term (:func:`.rqs.spline_smoothness`). Targets are BT.2020 PQ code values
(0-1 = 0-10,000 nits), as the poster's; both sides are decoded with the PQ EOTF to linear
light with 1.0 = 203 nits (BT.2408 reference white, the tone-field head's scale), so an
error of 1.0 is one reference white.

References
----------
LumaFlux poster, training objective (weights 1.0, 0.5, 0.01; BT.2020 PQ targets); SMPTE
ST 2084 (PQ EOTF); ITU-R BT.2408-7 section 5.1 (203 nits); SMPTE RP 177 (luminance row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..gamut import luminance
from ..transfer import pq_decode
from .rqs import spline_smoothness
from .tone_field import SDR_WHITE_NITS, ToneFieldOutput


@dataclass(frozen=True)
class _LossWeights:
    """LumaFlux poster, training objective: 1.0 luminance L1, 0.5 RGB L1, 0.01 L_spline."""

    luminance: float = 1.0
    rgb: float = 0.5
    spline: float = 0.01


LOSS_WEIGHTS = _LossWeights()


@dataclass(frozen=True)
class LumaFluxLoss:
    """The weighted total and its three unweighted terms (scalars)."""

    total: torch.Tensor
    luminance: torch.Tensor
    rgb: torch.Tensor
    spline: torch.Tensor


def lumaflux_loss(prediction: ToneFieldOutput, target_pq: torch.Tensor) -> LumaFluxLoss:
    """The poster's loss of a tone-field output against BT.2020 PQ targets.

    Parameters
    ----------
    prediction
        The tone-field head's output (its ``linear`` RGB and knot ``derivatives``).
    target_pq
        BT.2020 PQ R'G'B' code values, the shape of ``prediction.linear``.

    Returns
    -------
    :class:`LumaFluxLoss`; ``total`` is what to back-propagate.

    >>> from .tone_field import ToneFieldHead
    >>> sdr = torch.full((1, 2, 2, 3), 0.5)
    >>> output = ToneFieldHead(1)(sdr, torch.zeros(1, 2, 2, 1))
    >>> float(lumaflux_loss(output, output.pq_rgb).total.detach())
    0.0
    """
    if target_pq.shape != prediction.linear.shape:
        raise ValueError(f"target_pq has shape {tuple(target_pq.shape)} but the prediction "
                         f"has {tuple(prediction.linear.shape)}; pass BT.2020 PQ R'G'B' "
                         "targets of the same size as the SDR input")
    if not torch.isfinite(target_pq).all():
        raise ValueError("target_pq contains NaN or infinity; PQ targets must be finite "
                         "code values in [0, 1] (check the HDR decode and PQ encode)")
    target = pq_decode(target_pq.to(prediction.linear.dtype), nits_at_1=SDR_WHITE_NITS)
    luminance_error = (luminance(prediction.linear, "rec2020")
                       - luminance(target, "rec2020")).abs().mean()
    rgb_error = (prediction.linear - target).abs().mean()
    spline = spline_smoothness(prediction.derivatives)
    total = (LOSS_WEIGHTS.luminance * luminance_error + LOSS_WEIGHTS.rgb * rgb_error
             + LOSS_WEIGHTS.spline * spline)
    return LumaFluxLoss(total, luminance_error, rgb_error, spline)

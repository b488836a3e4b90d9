"""GMODiff's gain map (Hu et al. 2025, arXiv:2512.16357, Eq. 1) and its exposure brackets.

GMODiff turns multi-exposure HDR reconstruction into gain-map estimation: an HDR image
``H`` is an LDR base ``L`` and a gain map ``G`` in [0, 1],

    H = (L + alpha) * exp2(1 + G * Q_max)                                    (Eq. 1)

with ``alpha = 1/64`` and ``Q_max`` the largest gain of the data. During training the
paper replaces ``exp2`` by the inverse mu-law ``R(x) = (e^(x log(1 + mu)) - 1) / mu`` with
``mu = 100`` (``form="mulaw"`` here); ``form="exp2"`` is Eq. 1 as written. Each form's
:func:`gmodiff_encode` and :func:`gmodiff_decode` are exact inverses of each other.

Nothing is clipped: ``G`` lies in [0, 1] where ``H`` is at least ``2 (L + alpha)`` (the
"1 +" of Eq. 1) and at most the ``Q_max`` it was encoded with; outside, ``G`` leaves
[0, 1] and still decodes back to ``H``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._array import array_function, half_in_float32, to_tensor

__all__ = ["FORMS", "GMODIFF", "gmodiff_bracket_inputs", "gmodiff_decode", "gmodiff_encode",
           "gmodiff_inverse_mulaw", "gmodiff_mulaw", "gmodiff_q_max"]


@dataclass(frozen=True)
class _GmodiffConstants:
    """Hu et al. (2025), arXiv:2512.16357, Eq. 1: alpha = 1/64 offsets the
    base; mu = 100 is the strength of the inverse mu-law R that replaces exp2 in training."""

    alpha: float = 1 / 64
    mu: float = 100.0


GMODIFF = _GmodiffConstants()
FORMS = ("exp2", "mulaw")
"""``exp2``: Eq. 1 as written; ``mulaw``: Eq. 1 with exp2 replaced by R (training)."""


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)} (got {form!r}): 'exp2' is "
                         "Eq. 1 of GMODiff, 'mulaw' its training form")


def _check_mu(mu: float) -> float:
    if not mu > 0:
        raise ValueError(f"mu must be positive (got {mu!r}); GMODiff uses 100")
    return math.log1p(mu)


@array_function
@half_in_float32
def gmodiff_inverse_mulaw(x, mu: float = GMODIFF.mu):
    """GMODiff's inverse mu-law ``R(x) = (e^(x log(1 + mu)) - 1) / mu``, exp2's stand-in.

    ``R(0) = 0`` and ``R(1) = 1``; it grows as ``(1 + mu) ** x``, so it is defined (and
    increasing) for every real ``x``.

    References
    ----------
    Hu et al., "GMODiff: One-Step Gain Map Refinement with Diffusion Priors for HDR
    Reconstruction", arXiv:2512.16357 (2025), Eq. 1 and the text after it (mu = 100).

    >>> round(float(gmodiff_inverse_mulaw(1.0)), 6), round(float(gmodiff_inverse_mulaw(2.0)), 2)
    (1.0, 102.0)
    """
    return torch.expm1(x * _check_mu(mu)) / mu


@array_function
@half_in_float32
def gmodiff_mulaw(y, mu: float = GMODIFF.mu):
    """The inverse of :func:`gmodiff_inverse_mulaw`: ``log(1 + mu y) / log(1 + mu)``.

    Defined for ``y > -1/mu``; a gain ratio ``H / (L + alpha)`` is never negative.

    References
    ----------
    Hu et al., arXiv:2512.16357 (2025), R of Eq. 1's training form, inverted.

    >>> round(float(gmodiff_mulaw(102.0)), 6)
    2.0
    """
    scale = _check_mu(mu)
    if bool((y <= -1 / mu).any()):
        raise ValueError(f"the gain ratio must be > -1/mu ({-1 / mu:.4g}); an HDR value "
                         "below zero has no mu-law code: clamp negatives first")
    return torch.log1p(y * mu) / scale


def _log_ratio(hdr, ldr, form: str, mu: float, alpha: float):
    """``log(H / (L + alpha))`` in the form's base (exp2: log2; mulaw: R^-1), minus 1."""
    _check_form(form)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive (got {alpha!r}); GMODiff uses 1/64")
    if ldr.shape != hdr.shape:
        raise ValueError(f"ldr_linear has shape {tuple(ldr.shape)} but hdr_linear has "
                         f"{tuple(hdr.shape)}; resize one to match")
    if bool((ldr < 0).any()):
        raise ValueError("ldr_linear has negative values; an LDR base is in [0, 1]: clamp it")
    ratio = hdr / (ldr + alpha)
    if form == "exp2":
        if bool((hdr <= 0).any()):
            raise ValueError("hdr_linear must be > 0 for form='exp2' (Eq. 1's exp2 never "
                             "reaches 0): clamp it to a small positive value or use "
                             "form='mulaw'")
        return torch.log2(ratio) - 1
    return gmodiff_mulaw(ratio, mu) - 1


def _check_q_max(q_max: float, name: str = "q_max") -> float:
    if not (math.isfinite(q_max) and q_max > 0):
        raise ValueError(f"{name} is {q_max!r}; Q_max must be a finite gain > 0: the HDR "
                         "must exceed twice its base (L + alpha) somewhere (Eq. 1's '1 +'), "
                         "or pass the q_max the gain map was encoded with")
    return float(q_max)


@array_function
@half_in_float32
def gmodiff_q_max(hdr_linear, ldr_linear, *, form: str = "mulaw", mu: float = GMODIFF.mu,
                  alpha: float = GMODIFF.alpha):
    """``Q_max`` of GMODiff's Eq. 1 from the data: the largest gain, so that ``G <= 1``.

    ``max(log2(H / (L + alpha)) - 1)`` for ``form="exp2"``, ``max(R^-1(H / (L + alpha))
    - 1)`` for ``form="mulaw"``. Returned as a 0-d tensor of the input's dtype and device;
    a ValueError if it is not positive (the HDR is nowhere twice its base).

    >>> round(float(gmodiff_q_max(np.array([0.18, 1.5]), np.array([0.1, 0.1]), form="exp2")), 4)
    2.6974
    """
    ldr = to_tensor(ldr_linear).to(dtype=hdr_linear.dtype, device=hdr_linear.device)
    q_max = _log_ratio(hdr_linear, ldr, form, mu, alpha).amax()
    _check_q_max(float(q_max), "the data's Q_max (largest gain of hdr_linear over ldr_linear)")
    return q_max


@array_function
@half_in_float32
def gmodiff_encode(hdr_linear, ldr_linear, q_max: float | None = None, *,
                   form: str = "mulaw", mu: float = GMODIFF.mu, alpha: float = GMODIFF.alpha):
    """Gain map ``G`` of GMODiff's Eq. 1 for HDR over its LDR base.

    ``G = (log2(H / (L + alpha)) - 1) / Q_max`` (``form="exp2"``) or
    ``(R^-1(H / (L + alpha)) - 1) / Q_max`` (``form="mulaw"``, the training form), per
    channel, unclipped.

    Parameters
    ----------
    hdr_linear
        Scene-linear HDR ``H`` (1.0 = diffuse white), > 0 for ``exp2``, >= 0 for ``mulaw``.
    ldr_linear
        The linear LDR base ``L`` in [0, 1], same shape.
    q_max
        ``Q_max``; None takes it from the data (:func:`gmodiff_q_max`).
    form, mu, alpha
        Eq. 1 as written (``exp2``) or with the inverse mu-law; mu = 100, alpha = 1/64.

    Returns
    -------
    ``(G, q_max)``; ``q_max`` is a float.

    References
    ----------
    Hu et al., "GMODiff: One-Step Gain Map Refinement with Diffusion Priors for HDR
    Reconstruction", arXiv:2512.16357 (2025), Eq. 1 and the mu-law substitution after it.

    >>> gain, q_max = gmodiff_encode(np.array([0.5, 1.5]), np.array([0.1, 0.1]), form="exp2")
    >>> gain.round(4).tolist(), round(q_max, 4)
    ([0.4124, 1.0], 2.6974)
    """
    ldr = to_tensor(ldr_linear).to(dtype=hdr_linear.dtype, device=hdr_linear.device)
    gain = _log_ratio(hdr_linear, ldr, form, mu, alpha)
    if q_max is None:
        q_max = float(gain.amax())
        _check_q_max(q_max, "the data's Q_max (largest gain of hdr_linear over ldr_linear)")
    return gain / _check_q_max(q_max), float(q_max)


@array_function
@half_in_float32
def gmodiff_decode(gain, ldr_linear, q_max: float, *, form: str = "mulaw",
                   mu: float = GMODIFF.mu, alpha: float = GMODIFF.alpha):
    """HDR from GMODiff's gain map and its LDR base: Eq. 1.

    ``H = (L + alpha) * exp2(1 + G Q_max)`` (``form="exp2"``) or ``(L + alpha) *
    R(1 + G Q_max)`` (``form="mulaw"``); the exact inverse of :func:`gmodiff_encode`.

    References
    ----------
    Hu et al., arXiv:2512.16357 (2025), Eq. 1.

    >>> gmodiff_decode(np.array([1.0]), np.array([0.1]), 2.0, form="exp2").round(4).tolist()
    [0.925]
    """
    _check_form(form)
    ldr = to_tensor(ldr_linear).to(dtype=gain.dtype, device=gain.device)
    if ldr.shape != gain.shape:
        raise ValueError(f"ldr_linear has shape {tuple(ldr.shape)} but gain has "
                         f"{tuple(gain.shape)}; resize one to match")
    exponent = 1 + gain * _check_q_max(q_max)
    boost = torch.exp2(exponent) if form == "exp2" else gmodiff_inverse_mulaw(exponent, mu)
    return (ldr + alpha) * boost


def gmodiff_bracket_inputs(brackets: Sequence[torch.Tensor], exposure_values: Sequence[float],
                           gamma: float = 2.2) -> torch.Tensor:
    """The six-channel inputs ``[L_i, H_i]`` of an exposure stack, ``H_i = L_i ** gamma / t_i``.

    ``t_i = 2 ** EV_i`` is each frame's exposure relative to the reference; every bracket
    is ``[H, W, 3]`` display-referred code values in [0, 1] and all have the same size.

    Returns
    -------
    ``[N, H, W, 6]`` in the first bracket's dtype and device.

    References
    ----------
    Hu et al., arXiv:2512.16357 (2025), DaReg's six-channel inputs; Kalantari &
    Ramamoorthi (2017), "Deep High Dynamic Range Imaging of Dynamic Scenes", section 3.

    >>> stack = [torch.full((2, 2, 3), 0.5, dtype=torch.float64)] * 2
    >>> gmodiff_bracket_inputs(stack, [0.0, 1.0])[:, 0, 0, 3].round(decimals=4).tolist()
    [0.2176, 0.1088]
    """
    if len(brackets) < 1 or len(brackets) != len(exposure_values):
        raise ValueError(f"got {len(brackets)} brackets and {len(exposure_values)} "
                         "exposure_values; give one exposure value (stops) per bracket")
    if not all(math.isfinite(float(ev)) for ev in exposure_values):
        raise ValueError(f"exposure_values must be finite stops (got {list(exposure_values)}); "
                         "read them from the frames' metadata")
    first = brackets[0]
    for index, frame in enumerate(brackets):
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape != first.shape:
            raise ValueError(f"brackets[{index}] has shape {tuple(frame.shape)} but "
                             f"brackets[0] has {tuple(first.shape)}; every bracket must be "
                             "[H, W, 3] of one size: crop or resize them to match")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive (got {gamma!r}); GMODiff uses 2.2")
    frames = torch.stack([frame.to(first) for frame in brackets])
    stops = torch.tensor([float(ev) for ev in exposure_values], dtype=torch.float32,
                         device=first.device).to(first.dtype)
    if bool((frames < 0).any()):
        raise ValueError("brackets have negative values; they are LDR code values in [0, 1] "
                         "(e.g. from Load Image): clamp or re-read them")
    linear = frames.pow(gamma) / torch.exp2(stops)[:, None, None, None]
    return torch.cat([frames, linear], dim=-1)

"""Merge exposure brackets into one scene-linear HDR image.

Each bracket is linearised, divided by its exposure (2 ** EV relative to the middle
bracket) and averaged with weights that trust mid-tones and ignore clipped and crushed
pixels, the classic merge of Debevec and Malik with a known (sRGB or given) response.
Brackets shot hand-held can first be aligned by an integer translation found with Ward's
median threshold bitmaps, by phase correlation or by brute-force search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._array import to_tensor, working_dtype
from .transfer import srgb_decode


@dataclass(frozen=True)
class _MergeDefaults:
    """Merge thresholds and weights (code values, 0..1)."""

    # A pixel with any channel at or above this code value is clipped in that bracket.
    clip: float = 0.98
    # A pixel with every channel at or below this code value is crushed in that bracket.
    crush: float = 0.02
    # Reinhard et al., High Dynamic Range Imaging, 2nd ed. (2010), multiple exposures: the "hat"
    # weight w = 1 - (2 z - 1) ** 12.
    hat_power: int = 12
    # Ward, "Fast, Robust Image Registration for Compositing High Dynamic Range Photographs
    # from Hand-Held Exposures", JGT 8(2), 2003: grey = (54 R + 183 G + 19 B) / 256, and
    # pixels within 4/255 of the median are excluded from the bitmap comparison.
    grey_weights: tuple[float, float, float] = (54 / 256, 183 / 256, 19 / 256)
    exclusion: float = 4 / 255
    search_radius: int = 8


MERGE = _MergeDefaults()


def _hat(code: torch.Tensor) -> torch.Tensor:
    return 1 - (2 * code - 1).pow(MERGE.hat_power)


def _triangle(code: torch.Tensor) -> torch.Tensor:
    """Debevec & Malik, SIGGRAPH 1997, equation 6, on codes normalised to 0..1."""
    return 2 * torch.minimum(code, 1 - code)


WEIGHTINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hat": _hat,
    "triangle": _triangle,
}

_DECODERS: dict[str, Callable] = {"srgb": srgb_decode, "linear": lambda code: code}


def _codes(frame) -> torch.Tensor:
    """A float tensor of code values in 0..1 (8- and 16-bit integers are scaled)."""
    scale = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535,
             torch.uint8: 255, torch.uint16: 65535}.get(getattr(frame, "dtype", None))
    tensor = to_tensor(frame)
    return tensor / scale if scale else tensor


def _stack(brackets) -> torch.Tensor:
    frames = list(brackets) if isinstance(brackets, (list, tuple)) else None
    if frames is not None:
        if not frames:
            raise ValueError("brackets is empty; pass at least one exposure")
        frames = [_codes(frame) for frame in frames]
        if any(frame.shape != frames[0].shape for frame in frames):
            shapes = [tuple(frame.shape) for frame in frames]
            raise ValueError(f"brackets have different shapes {shapes}; crop or resize them "
                             "to one size")
        stack = torch.stack([frame.to(frames[0].dtype) for frame in frames])
    else:
        stack = _codes(brackets)
        if stack.ndim == 3:
            stack = stack[None]
    if stack.ndim != 4 or stack.shape[-1] != 3:
        raise ValueError(f"brackets must be [H, W, 3] frames or a [B, H, W, 3] batch, got "
                         f"shape {tuple(stack.shape)}; pass image[..., :3] to drop alpha")
    return stack


def _bitmaps(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ward's median threshold bitmap and exclusion bitmap of one [H, W, 3] frame."""
    weights = torch.tensor(MERGE.grey_weights, dtype=frame.dtype, device=frame.device)
    grey = frame @ weights
    median = grey.median()
    return grey > median, (grey - median).abs() > MERGE.exclusion


def _phase_correlation(reference: torch.Tensor, moving: torch.Tensor, radius: int):
    centred = [bits.to(torch.float64) - bits.to(torch.float64).mean()
               for bits in (reference, moving)]
    cross = torch.fft.fft2(centred[1]) * torch.fft.fft2(centred[0]).conj()
    surface = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-12)).real
    height, width = surface.shape
    rows = torch.fft.fftfreq(height, 1 / height, device=surface.device).abs() <= radius
    columns = torch.fft.fftfreq(width, 1 / width, device=surface.device).abs() <= radius
    surface = surface.masked_fill(~(rows[:, None] & columns[None, :]), -torch.inf)
    peak = int(surface.argmax())
    dy, dx = divmod(peak, width)
    return (dy - height if dy > height // 2 else dy, dx - width if dx > width // 2 else dx)


def _search(reference, reference_mask, moving, moving_mask, radius: int):
    height, width = reference.shape
    inner = (slice(radius, height - radius), slice(radius, width - radius))
    best, best_cost = (0, 0), None
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = torch.roll(moving, (dy, dx), (0, 1))[inner]
            mask = torch.roll(moving_mask, (dy, dx), (0, 1))[inner] & reference_mask[inner]
            cost = int(((shifted ^ reference[inner]) & mask).sum())
            if best_cost is None or cost < best_cost:
                best, best_cost = (-dy, -dx), cost
    return best


def estimate_translation(reference, moving, *, method: str = "phase",
                         radius: int = MERGE.search_radius) -> tuple[int, int]:
    """Find the integer shift (dy, dx) of ``moving`` relative to ``reference``.

    Both frames become Ward's median threshold bitmaps, which do not depend on exposure,
    so brackets of different EVs compare directly. ``moving`` is about
    ``torch.roll(reference, (dy, dx), (0, 1))``; roll it by ``(-dy, -dx)`` to align it.

    Parameters
    ----------
    reference, moving
        Code-value frames ``[H, W, 3]`` (display-encoded, 0..1 or 8/16-bit integers).
    method
        ``'phase'`` (phase correlation of the bitmaps) or ``'search'`` (every shift within
        ``radius``, minimising Ward's XOR count outside the exclusion bitmaps).
    radius
        Largest shift considered, in pixels, on each axis.

    Returns
    -------
    ``(dy, dx)`` in pixels (rows down, columns right).

    References
    ----------
    Ward, JGT 8(2), 2003 (median threshold bitmaps); Kuglin and Hines, "The Phase
    Correlation Image Alignment Method", IEEE Cybernetics and Society, 1975.

    >>> frame = np.random.default_rng(0).random((32, 32, 3))
    >>> estimate_translation(frame, np.roll(frame, (3, -2), (0, 1)))
    (3, -2)
    """
    frames = _stack([reference, moving])
    if method not in ("phase", "search"):
        raise ValueError(f"method must be 'phase' or 'search', got {method!r}")
    if not isinstance(radius, int) or radius < 0 or 2 * radius >= min(frames.shape[1:3]):
        raise ValueError(f"radius must be an integer from 0 to under half the frame size "
                         f"{tuple(frames.shape[1:3])}, got {radius!r}")
    (reference_bits, reference_mask), (moving_bits, moving_mask) = map(_bitmaps, frames)
    if method == "phase":
        return _phase_correlation(reference_bits, moving_bits, radius)
    return _search(reference_bits, reference_mask, moving_bits, moving_mask, radius)


def _shift(frame: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``frame`` rolled by (dy, dx) and the mask of pixels that did not wrap around."""
    valid = torch.ones(frame.shape[:2], dtype=torch.bool, device=frame.device)
    if dy > 0:
        valid[:dy] = False
    elif dy < 0:
        valid[dy:] = False
    if dx > 0:
        valid[:, :dx] = False
    elif dx < 0:
        valid[:, dx:] = False
    return torch.roll(frame, (dy, dx), (0, 1)), valid


def merge_brackets(brackets, evs: Sequence[float], *, decode: str | Callable = "srgb",
                   weighting: str = "hat", clip: float = MERGE.clip, crush: float = MERGE.crush,
                   align: str | None = None, radius: int = MERGE.search_radius,
                   reference_ev: float | None = None):
    """Merge exposure brackets into scene-linear HDR, in stops relative to the middle one.

    Every bracket is decoded to linear, divided by 2 ** (EV - reference EV) and averaged
    per channel with ``weighting`` of its code values; a pixel's weight is zero in a
    bracket where any channel is at or above ``clip`` or every channel is at or below
    ``crush``. Pixels clipped in every bracket take the darkest bracket's value, pixels
    crushed in every bracket the brightest one's.

    Parameters
    ----------
    brackets
        A list of ``[H, W, 3]`` frames or an IMAGE batch ``[B, H, W, 3]`` of display code
        values (0..1 floats, or 8/16-bit integers).
    evs
        Exposure of each frame in stops (+2 = four times the light of 0).
    decode
        ``'srgb'`` (IEC 61966-2-1), ``'linear'`` (already linear), or a callable from code
        values to linear.
    weighting
        ``'hat'`` (1 - (2z - 1)^12) or ``'triangle'`` (Debevec and Malik).
    clip, crush
        Code-value thresholds for clipped and crushed pixels.
    align
        None, ``'phase'`` or ``'search'``: translate every frame onto the reference frame
        first (see :func:`estimate_translation`); wrapped borders get no weight.
    radius
        Largest alignment shift, in pixels.
    reference_ev
        The EV whose exposure maps to scale 1; defaults to the middle frame's (the lower
        middle for an even count).

    Returns
    -------
    Scene-linear RGB ``[H, W, 3]`` (same array type, device and float dtype as the
    brackets; bfloat16/float16 brackets are merged in float32), 1.0 = a code value
    decoding to 1.0 in the reference exposure.

    References
    ----------
    Debevec and Malik, "Recovering High Dynamic Range Radiance Maps from Photographs",
    SIGGRAPH 1997, equation 6; Reinhard et al., High Dynamic Range Imaging, 2nd ed.
    (2010), the "hat" weight.

    >>> grey = np.full((2, 2, 3), 0.5)
    >>> merge_brackets([grey, grey], [0.0, 1.0], decode="linear")[0, 0].round(4).tolist()
    [0.375, 0.375, 0.375]
    """
    codes = _stack(brackets)
    dtype = codes.dtype
    codes = codes.to(working_dtype(dtype))
    count = codes.shape[0]
    evs = [float(ev) for ev in evs]
    if len(evs) != count:
        raise ValueError(f"evs has {len(evs)} values for {count} brackets; give one EV per "
                         "frame")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    if not 0 <= crush < clip <= 1:
        raise ValueError(f"need 0 <= crush < clip <= 1, got crush={crush}, clip={clip}")
    decoder = _DECODERS.get(decode) if isinstance(decode, str) else decode
    if not callable(decoder):
        raise ValueError(f"decode must be 'srgb', 'linear' or a callable, got {decode!r}")
    order = sorted(range(count), key=evs.__getitem__)
    reference = order[(count - 1) // 2]
    reference_ev = evs[reference] if reference_ev is None else float(reference_ev)

    valid = torch.ones(codes.shape[:3], dtype=torch.bool, device=codes.device)
    if align is not None:
        frames, masks = [], []
        for index in range(count):
            dy, dx = (0, 0) if index == reference else estimate_translation(
                codes[reference], codes[index], method=align, radius=radius)
            frame, mask = _shift(codes[index], -dy, -dx)
            frames.append(frame)
            masks.append(mask)
        codes, valid = torch.stack(frames), torch.stack(masks)

    exposure = torch.exp2(torch.tensor(evs, dtype=codes.dtype, device=codes.device)
                          - reference_ev).reshape(-1, 1, 1, 1)
    radiance = to_tensor(decoder(codes)).to(codes.dtype) / exposure
    peak = codes.amax(-1, keepdim=True)
    usable = valid[..., None] & (peak < clip) & (peak > crush)
    weights = WEIGHTINGS[weighting](codes.clamp(0.0, 1.0)) * usable
    total = weights.sum(0)
    merged = (weights * radiance).sum(0) / total.clamp_min(torch.finfo(codes.dtype).tiny)
    darkest, brightest = order[0], order[-1]
    fallback = torch.where(peak[darkest] >= clip, radiance[darkest], radiance[brightest])
    hdr = torch.where(total > 0, merged, fallback).to(dtype)
    first = brackets[0] if isinstance(brackets, (list, tuple)) else brackets
    return hdr if isinstance(first, torch.Tensor) else hdr.detach().cpu().numpy()

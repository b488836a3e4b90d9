"""Overlapping temporal windows for long clips, blended linearly where they overlap.

DiffHDR samples long videos in windows of 33 frames with a stride of 16 and blends the
overlaps in latent space. For a video VAE with temporal compression ``c`` (Wan: 4), a
window of ``f`` pixel frames is ``(f - 1) // c + 1`` latent frames and a stride of ``s``
pixel frames is ``s // c`` latent frames.
"""

from __future__ import annotations

import torch


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start indices of windows of ``window`` covering ``length`` with step ``stride``; the
    last window is aligned to the end, so every index is covered.

    >>> window_starts(20, 9, 4)
    [0, 4, 8, 11]
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be >= 1")
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def blend_weights(length: int, starts: list[int], window: int,
                  device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Per-window float64 weights [window] that ramp linearly across each overlap and sum
    to 1, on ``device`` (the device of the latents they blend)."""
    raw = []
    for start in starts:
        weight = torch.ones(window, dtype=torch.float64, device=device)
        for other in starts:
            if other == start:
                continue
            overlap_lo, overlap_hi = max(start, other), min(start, other) + window
            if overlap_hi <= overlap_lo:
                continue
            span = overlap_hi - overlap_lo
            ramp = (torch.arange(span, dtype=torch.float64, device=device) + 1) / (span + 1)
            local = slice(overlap_lo - start, overlap_hi - start)
            weight[local] = torch.minimum(weight[local], ramp if other < start else ramp.flip(0))
        raw.append(weight)
    total = torch.zeros(length, dtype=torch.float64, device=device)
    for start, weight in zip(starts, raw, strict=True):
        total[start:start + window] += weight
    return [weight / total[start:start + window] for start, weight in zip(starts, raw,
                                                                           strict=True)]

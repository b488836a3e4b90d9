"""Overlapping temporal windows for long clips, blended linearly where they overlap.

DiffHDR samples long videos in windows of 33 frames overlapping by 8 and blends the
overlaps in latent space. For a video VAE with temporal compression ``c`` (Wan: 4), a
window of ``f`` pixel frames is ``(f - 1) // c + 1`` latent frames and a stride of ``s``
pixel frames is ``s // c`` latent frames. Each latent frame after the first holds ``c``
pixel frames, so an overlap of ``o`` pixel frames is ``ceil(o / c)`` shared latent frames
(:func:`stride_for_overlap`): 33 frames overlapping by 8 are 9 latent frames every 7, a
stride of 28 pixel frames (frames 25-32 of one window are frames 1-8 of the next).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class _DiffHDRWindows:
    """DiffHDR's long-video windows: 33 pixel frames, consecutive windows sharing 8; Wan's
    VAE compresses time by 4 (1 + 4k pixel frames per clip)."""

    frames: int = 33
    overlap: int = 8
    compression: int = 4


DIFFHDR_WINDOWS = _DiffHDRWindows()


def stride_for_overlap(window_frames: int, overlap_frames: int,
                       compression: int = DIFFHDR_WINDOWS.compression) -> int:
    """Pixel-frame stride of windows of ``window_frames`` that share ``overlap_frames``.

    Windows start on latent frames, so the stride is a multiple of ``compression``: the
    overlap is rounded up to whole latent frames of ``compression`` pixel frames each.

    >>> stride_for_overlap(33, 8)
    28
    """
    if window_frames < 1 or (window_frames - 1) % compression:
        raise ValueError(f"window_frames ({window_frames}) must be 1 + {compression}k pixel "
                         f"frames (Wan: 5, 9, ..., 33)")
    latent_window = (window_frames - 1) // compression + 1
    shared = math.ceil(overlap_frames / compression)
    if not 0 <= shared < latent_window:
        raise ValueError(f"overlap_frames ({overlap_frames}) must be at least 0 and shorter "
                         f"than the window ({window_frames} frames)")
    return (latent_window - shared) * compression


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

"""Small proxies of scene-linear frames for the browser's HDR viewer.

The viewer receives the real float values, as IEEE half floats (10-bit mantissa: relative
precision 2**-11, range up to 65504, so a 20-stop sun survives), downsampled by area
averaging so the long edge is at most ``max_edge`` pixels; plus an 8-bit display picture
for its A/B wipe.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .transfer import srgb_encode

HALF_MAX = 65504.0
"""Largest finite IEEE 754 binary16 value; brighter pixels become +Inf in the proxy."""


def proxy_size(height: int, width: int, max_edge: int) -> tuple[int, int]:
    """(height, width) scaled so the long edge is at most ``max_edge`` (aspect kept)."""
    scale = min(1.0, max_edge / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


MAX_PERIOD = 64
"""Largest repeat of the area windows (input pixels) the block-matrix path handles; longer
ones (sizes with a small common divisor) go through ``F.interpolate``."""


def _window_matrix(size: int, out: int, like: torch.Tensor) -> torch.Tensor | None:
    """[q, p] weights of one period of ``F.interpolate(mode="area")``'s windows from ``size``
    to ``out`` (PyTorch's adaptive average pooling: window i is ``[floor(i size / out),
    ceil((i + 1) size / out))``, uniform weights), or None when the period is too long."""
    common = math.gcd(size, out)
    period, outputs = size // common, out // common
    if period > MAX_PERIOD:
        return None
    index = torch.arange(outputs, device=like.device)
    start, end = index * size // out, -(-(index + 1) * size // out)
    inside = torch.arange(period, device=like.device)
    inside = (inside[None] >= start[:, None]) & (inside[None] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def area_downsample(rgb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[H, W, C] -> [height, width, C], equal to ``F.interpolate(mode="area")`` to float32
    rounding, as two small matrix products over the windows' period (a 4K frame to 1024 px
    costs a quarter of ``F.interpolate``'s time on a channels-last image); non-finite input,
    or a long period, goes through ``F.interpolate``."""
    rows_in, columns_in, channels = rgb.shape
    across = _window_matrix(columns_in, width, rgb)
    down = _window_matrix(rows_in, height, rgb)
    if across is not None and down is not None:
        eye = torch.eye(channels, dtype=rgb.dtype, device=rgb.device)
        blocks = rgb.reshape(-1, across.shape[1] * channels) @ torch.kron(across, eye).T
        blocks = blocks.reshape(rows_in // down.shape[1], down.shape[1], width * channels)
        out = torch.matmul(down, blocks).reshape(height, width, channels)
        # 0 x Inf in a block would smear NaN to neighbours; min/max propagate NaN and Inf.
        if bool(torch.stack(torch.aminmax(out)).isfinite().all()):
            return out
    out = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")
    return out[0].permute(1, 2, 0)


def float_proxy(frame: torch.Tensor, max_edge: int = 1024) -> np.ndarray:
    """[H, W, C] float frame -> [h, w, 3] little-endian float16 numpy, area-downsampled.

    NaN and Inf pass through (the viewer shows them); only RGB is kept.
    """
    rgb = frame[..., :3].detach().to(torch.float32)
    height, width = proxy_size(rgb.shape[0], rgb.shape[1], max_edge)
    if (height, width) != tuple(rgb.shape[:2]):
        rgb = area_downsample(rgb, height, width)
    # torch rounds to half as numpy does (nearest even, Inf beyond 65504), several times faster.
    return rgb.to(torch.float16).cpu().numpy().astype("<f2", copy=False)


def sdr_picture(display_referred: torch.Tensor) -> np.ndarray:
    """[H, W, 3] display-referred values in [0, 1] -> uint8, rounded (clipped for display)."""
    clipped = display_referred[..., :3].detach().to(torch.float32).clamp(0.0, 1.0)
    return (clipped * 255.0).round().to(torch.uint8).cpu().numpy()


def srgb_picture(scene_linear: torch.Tensor) -> np.ndarray:
    """The simplest display of scene-linear light: sRGB encoding, clipped at display white."""
    return sdr_picture(srgb_encode(scene_linear[..., :3].clamp(0.0, 1.0)))


@functools.cache
def _half_srgb_table() -> np.ndarray:
    """:func:`srgb_picture` of every float16 bit pattern (65536 entries, built once)."""
    codes = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
    return srgb_picture(torch.from_numpy(np.repeat(codes[:, None], 3, axis=1)))[:, 0]


def srgb_picture_of_proxy(proxy: np.ndarray) -> np.ndarray:
    """:func:`srgb_picture` of a float16 proxy (as :func:`float_proxy` makes it), read from
    a table of all 65536 half values: the same bytes, without evaluating the curve."""
    return _half_srgb_table()[np.ascontiguousarray(proxy[..., :3], dtype="<f2").view(np.uint16)]

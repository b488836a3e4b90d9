"""Small proxies of scene-linear frames for the browser's HDR viewer.

The viewer receives the real float values, as IEEE half floats (10-bit mantissa: relative
precision 2**-11, range up to 65504, so a 20-stop sun survives), downsampled by area
averaging so the long edge is at most ``max_edge`` pixels; plus an 8-bit display picture
for its A/B wipe.
"""

from __future__ import annotations

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


def float_proxy(frame: torch.Tensor, max_edge: int = 1024) -> np.ndarray:
    """[H, W, C] float frame -> [h, w, 3] little-endian float16 numpy, area-downsampled.

    NaN and Inf pass through (the viewer shows them); only RGB is kept.
    """
    rgb = frame[..., :3].detach().to(torch.float32)
    height, width = proxy_size(rgb.shape[0], rgb.shape[1], max_edge)
    if (height, width) != tuple(rgb.shape[:2]):
        rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")
        rgb = rgb[0].permute(1, 2, 0)
    return rgb.cpu().numpy().astype("<f2")


def sdr_picture(display_referred: torch.Tensor) -> np.ndarray:
    """[H, W, 3] display-referred values in [0, 1] -> uint8, rounded (clipped for display)."""
    clipped = display_referred[..., :3].detach().to(torch.float32).clamp(0.0, 1.0)
    return (clipped * 255.0).round().to(torch.uint8).cpu().numpy()


def srgb_picture(scene_linear: torch.Tensor) -> np.ndarray:
    """The simplest display of scene-linear light: sRGB encoding, clipped at display white."""
    return sdr_picture(srgb_encode(scene_linear[..., :3].clamp(0.0, 1.0)))

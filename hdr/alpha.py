"""Alpha: ComfyUI's MASK polarity and premultiplied colour.

ComfyUI core's ``MASK`` is coverage inverted, ``mask = 1 - alpha`` (1 = transparent,
0 = opaque): ``nodes.py`` LoadImage reads a PNG's A as ``1 - A / 255``, and
``comfy_extras/nodes_compositing.py`` (Split/Join Image with Alpha, Porter-Duff Image
Composite) converts with ``1 - mask`` both ways. Core ``IMAGE``\\ s hold straight
(un-premultiplied) colour: Porter-Duff premultiplies, composites, then divides back.

OpenEXR stores colour premultiplied by alpha (OpenEXR Technical Introduction,
"Premultiplied vs. Un-Premultiplied Color Channels"); Nuke, Blender and OIIO read RGBA EXRs
that way, so straight colour must be premultiplied before it is written and may be divided
back after it is read.
"""

from __future__ import annotations

import torch

__all__ = ["alpha_from_mask", "mask_from_alpha", "premultiply", "unpremultiply"]


def _check_range(values: torch.Tensor, name: str) -> None:
    if values.numel() and not bool(((values >= 0) & (values <= 1)).all()):
        low, high = float(values.min()), float(values.max())
        raise ValueError(f"{name} has values from {low:g} to {high:g}, outside 0..1; a MASK "
                         "is coverage (ComfyUI: 0 = opaque, 1 = transparent): clamp or "
                         "normalise it first")


def alpha_from_mask(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Alpha (1 = opaque) of a ComfyUI MASK (1 = transparent): ``1 - mask``.

    Values outside 0..1 raise ``ValueError`` naming ``name``: they would give negative
    alpha or alpha above 1 and flip or brighten the colour they premultiply.

    >>> alpha_from_mask(torch.tensor([0.0, 0.25, 1.0]))
    tensor([1.0000, 0.7500, 0.0000])
    """
    _check_range(mask, name)
    return 1.0 - mask


def mask_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """ComfyUI MASK (1 = transparent) of an alpha channel (1 = opaque): ``1 - alpha``.

    >>> mask_from_alpha(torch.tensor([1.0, 0.0]))
    tensor([0., 1.])
    """
    return 1.0 - alpha


def premultiply(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight ``rgb [..., C]`` times ``alpha [...]``: the colour OpenEXR stores.

    >>> premultiply(torch.tensor([[4.0, 2.0, 1.0]]), torch.tensor([0.5]))
    tensor([[2.0000, 1.0000, 0.5000]])
    """
    return rgb * alpha[..., None].to(rgb.dtype)


def unpremultiply(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Premultiplied ``rgb [..., C]`` divided by ``alpha [...]`` where alpha is not 0.

    Where alpha is 0 the colour is kept as stored (light a premultiplied file adds without
    covering, e.g. a glow), as Nuke's Unpremult does; nothing is divided by zero.

    >>> unpremultiply(torch.tensor([[2.0, 1.0, 0.5], [3.0, 0.0, 0.0]]), torch.tensor([0.5, 0.0]))
    tensor([[4., 2., 1.],
            [3., 0., 0.]])
    """
    alpha = alpha[..., None].to(rgb.dtype)
    covered = alpha != 0
    return torch.where(covered, rgb / torch.where(covered, alpha, torch.ones_like(alpha)), rgb)

"""Context-Focused cross-Attention (CFA): exposure masks route prompts to regions.

DiffHDR's CFA evaluates a block's text attention three times per image token, with the
base prompt, the "recover the over-exposed area" prompt and the "recover the
under-exposed area" prompt, and blends them with the exposure masks resampled to the
model's token grid::

    res = base + a_over * m_over * (over - base) + a_under * m_under * (under - base)

where each mask is first divided by ``max(m_over + m_under, 1)`` so overlapping masks
never push a token past either prompt. Outside both masks a token sees the base prompt
only; with a mask of 1 and a strength of 1 it sees that region's prompt only.

Torch only: the ComfyUI integration (which attention calls are routed, and how) lives in
the node pack, which calls these two functions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._array import half_in_float32

__all__ = ["ALPHA_RANGE", "cfa_combine", "check_alpha", "masks_to_token_grid"]

ALPHA_RANGE = (0.0, 5.0)
"""Allowed region strengths: 0 turns a region's prompt off, 1 replaces the base prompt
there, above 1 pushes past it; DiffHDR's paper tests strengths 1, 3 and 5, so 5 bounds the
overshoot."""


def check_alpha(alpha: float, name: str) -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` naming ``name`` if outside
    :data:`ALPHA_RANGE`.

    >>> check_alpha(1, "alpha_over")
    1.0
    """
    low, high = ALPHA_RANGE
    if not low <= alpha <= high:
        raise ValueError(f"{name} must be in [{low}, {high}] (0 = region prompt off, 1 = "
                         f"region prompt replaces the base prompt), got {alpha}")
    return float(alpha)


def _broadcast_mask(mask: torch.Tensor, base: torch.Tensor, name: str) -> torch.Tensor:
    given = tuple(mask.shape)
    if mask.ndim == base.ndim - 1:
        mask = mask.unsqueeze(-1)
    try:
        torch.broadcast_shapes(mask.shape, base.shape)
    except RuntimeError as error:
        raise ValueError(f"{name} {given} does not match the attention output "
                         f"{tuple(base.shape)}; give one weight per token "
                         "[batch, tokens]") from error
    return mask.to(device=base.device, dtype=base.dtype).clamp(0, 1)


def cfa_combine(
    base: torch.Tensor,
    over: torch.Tensor | None,
    under: torch.Tensor | None,
    m_over: torch.Tensor | None,
    m_under: torch.Tensor | None,
    alpha_over: float,
    alpha_under: float,
) -> torch.Tensor:
    """Blend the attention outputs of the base, over and under prompts per token.

    ``base + a_o * m_o' * (over - base) + a_u * m_u' * (under - base)`` with
    ``m' = clamp(m, 0, 1) / max(m_o + m_u, 1)``.

    Parameters
    ----------
    base, over, under
        Attention outputs ``[batch, tokens, channels]`` for the base, over-exposed and
        under-exposed prompts; ``over``/``under`` may be ``None`` (that branch is off).
        Any affine map applied after the attention (the output projection) commutes
        with the blend, so the outputs may be taken before or after it.
    m_over, m_under
        Token weights ``[batch, tokens]`` (or ``[batch, tokens, 1]``) from
        :func:`masks_to_token_grid`, flattened in the model's token order; ``None`` for
        an absent branch.
    alpha_over, alpha_under
        Region strengths in :data:`ALPHA_RANGE`.

    Returns
    -------
    The blended output, shaped and typed like ``base``; ``base`` itself when no branch
    contributes (both off or both strengths 0).

    References
    ----------
    DiffHDR (Eyeline-Labs), ``diffsynth/models/wan_video_dit.py``, ``DiTBlock.forward``.

    >>> base, over = torch.zeros(1, 2, 1), torch.ones(1, 2, 1)
    >>> cfa_combine(base, over, None, torch.tensor([[1.0, 0.25]]), None, 1.0, 0.0).flatten()
    tensor([1.0000, 0.2500])
    """
    alpha_over = check_alpha(alpha_over, "alpha_over")
    alpha_under = check_alpha(alpha_under, "alpha_under")
    branches = [(output, mask, alpha, name) for output, mask, alpha, name in
                ((over, m_over, alpha_over, "m_over"), (under, m_under, alpha_under, "m_under"))
                if output is not None and alpha > 0]
    if not branches:
        return base
    weights = {}
    for output, mask, _, name in branches:
        if mask is None:
            raise ValueError(f"{name} is missing for a prompt that is given; pass the "
                             "exposure mask of that region")
        if output.shape != base.shape:
            raise ValueError(f"the {name[2:]} attention output {tuple(output.shape)} must "
                             f"match the base output {tuple(base.shape)}")
        weights[name] = _broadcast_mask(mask, base, name)
    total = sum(weights.values())
    normaliser = total.clamp(min=1)
    result = base
    for output, _, alpha, name in branches:
        result = result + alpha * (weights[name] / normaliser) * (output - base)
    return result


def _pixel_grid(masks: torch.Tensor, latent_shape: tuple, temporal_compression: int,
                spatial_compression: int) -> torch.Tensor:
    """Masks as ``[rows, frames, H, W]`` with the latent's frames and pixel size."""
    video = len(latent_shape) == 5
    if video:
        if masks.ndim == 3:
            masks = masks[None]
        if masks.ndim != 4:
            raise ValueError(f"masks for a video latent must be [frames, height, width] or "
                             f"[batch, frames, height, width], got {tuple(masks.shape)}")
        frames, latent_frames = masks.shape[1], latent_shape[2]
        encoded_frames = (frames + temporal_compression - 1) // temporal_compression
        if encoded_frames == latent_frames and frames != latent_frames:
            masks = F.interpolate(masks[:, None], size=(latent_frames, *masks.shape[-2:]),
                                  mode="nearest-exact")[:, 0]
        elif frames != latent_frames:
            raise ValueError(
                f"masks have {frames} frames ({encoded_frames} latent frames at "
                f"{temporal_compression}x temporal compression) but the latent "
                f"{tuple(latent_shape)} has {latent_frames}; compute the masks from the "
                "clip the latent was made from")
    else:
        if masks.ndim != 3:
            raise ValueError(f"masks for an image latent must be [batch, height, width], "
                             f"got {tuple(masks.shape)}")
        masks = masks[:, None]
    height, width = (size * spatial_compression for size in latent_shape[-2:])
    mask_height, mask_width = masks.shape[-2:]
    if (mask_height, mask_width) != (height, width):
        if not math.isclose(mask_height / mask_width, height / width, rel_tol=0.02):
            raise ValueError(
                f"masks are {mask_height}x{mask_width} pixels but the latent "
                f"{tuple(latent_shape)} decodes to {height}x{width} (aspect ratios differ); "
                "compute the masks from frames of the latent's size")
        masks = F.interpolate(masks, size=(height, width), mode="area")
    return masks


@half_in_float32
def masks_to_token_grid(
    masks: torch.Tensor,
    latent_shape: tuple,
    patch_size: int | tuple,
    temporal_compression: int = 4,
    spatial_compression: int = 8,
) -> torch.Tensor:
    """Resample pixel masks to a diffusion transformer's token grid.

    Video latents ``[batch, channels, frames, h, w]`` (Wan): ``F`` mask frames map to
    the latent's ``(F + 3) // 4`` frames by nearest-exact sampling in time, then each
    token averages its ``spatial_compression * patch`` square of pixels (DiffHDR: 8x8
    pixels per latent cell, mean over the 64 cells' pixels, then the 2x2 patchify
    average). Image latents ``[batch, channels, h, w]`` (Flux, Qwen-Image): one mask
    per batch row, averaged over each token's ``8 * 2`` pixel square. Tokens that
    hang over the latent's edge (odd sizes, padded by the model) average the pixels
    they cover.

    Parameters
    ----------
    masks
        0..1 pixel masks: ``[frames, H, W]`` (one clip) or ``[batch, frames, H, W]`` for
        a video latent, ``[batch, H, W]`` for an image latent. Masks of another size
        with the same aspect ratio are area-resampled to the latent's pixel size; masks
        already at the latent frame rate are used as they are.
    latent_shape
        Shape of the latent the model sees.
    patch_size
        The model's patch size: ``(t, h, w)`` (Wan: ``(1, 2, 2)``) or an int (Flux: 2).
    temporal_compression, spatial_compression
        The VAE's compression: Wan 2.1 4x in time and 8x in space; image VAEs 8x (16x
        for the Wan 2.2 VAE).

    Returns
    -------
    Token weights ``[rows, frames', h', w']`` (``frames' = 1`` for image latents), in the
    masks' dtype and device (bfloat16/float16 masks are resampled in float32);
    ``flatten(1)`` gives the model's token order (time, then rows, then columns).

    Raises
    ------
    ValueError
        If the frame count matches neither the latent's frames nor the clip they were
        encoded from, or the aspect ratios differ; the message names both shapes.

    References
    ----------
    DiffHDR (Eyeline-Labs), ``utils/token_utils.py``, ``build_mask_latents`` and
    ``mask_latents_to_gate``.

    >>> masks_to_token_grid(torch.ones(33, 64, 96), (1, 16, 9, 8, 12), (1, 2, 2)).shape
    torch.Size([1, 9, 4, 6])
    """
    if len(latent_shape) not in (4, 5):
        raise ValueError(f"latent_shape must be [batch, channels, (frames,) h, w], got "
                         f"{tuple(latent_shape)}")
    patch = (patch_size,) * 2 if isinstance(patch_size, int) else tuple(patch_size)
    patch_time = patch[0] if len(patch) == 3 else 1
    masks = masks.float() if not masks.is_floating_point() else masks
    grid = _pixel_grid(masks, tuple(latent_shape), temporal_compression, spatial_compression)
    kernel = (patch_time, patch[-2] * spatial_compression, patch[-1] * spatial_compression)
    return F.avg_pool3d(grid[:, None], kernel, stride=kernel, ceil_mode=True)[:, 0]

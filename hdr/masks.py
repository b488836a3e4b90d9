"""Over- and under-exposure masks of a display-referred clip, as DiffHDR defines them.

DiffHDR marks where an LDR (sRGB-encoded, display-referred) frame lost its highlights
(blown out: luminance near peak white, or at least two channels at code value 1.0) and
where it lost its shadows (crushed: luminance near black and every channel at the
bottom code values). Each frame gets soft masks, closed with a 3x3 kernel; the clip is
then steadied with a temporal exponential moving average (EMA), box-blurred, opened and
closed, and binarised. The masks drive the CFA sampler (``hdr.models.cfa``): the
"recover the highlights" prompt acts only under ``over``, the "recover the shadows"
prompt only under ``under``.

Frame borders: morphology ignores pixels outside the frame; the box blur counts them as
zero (unexposed), as DiffHDR's ``avg_pool2d`` does, so a mask touching the border is
softened there before binarisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._array import to_tensor
from .gamut import luminance
from .transfer import srgb_decode

__all__ = ["DIFFHDR_MASKS", "ExposureMasks", "exposure_masks", "soft_exposure_masks",
           "stabilise_mask"]


@dataclass(frozen=True)
class _DiffHDRMaskDefaults:
    """DiffHDR's mask constants (Eyeline-Labs/DiffHDR, ``utils/color_utils.py``
    ``exposure_masks_from_srgb`` and ``stabilize_soft_mask``, called from
    ``infer_video.py``)."""

    over_threshold: float = 0.95
    """sRGB code value of luminance counted as blown out (centre of the soft ramp)."""
    under_threshold: float = 0.01
    """sRGB code value counted as crushed (top of the soft ramp, every channel below)."""
    softness: float = 0.02
    """Half-width of the soft luminance ramps, in sRGB code values."""
    clip_tolerance: float = 0.02
    """A channel at or above ``1 - clip_tolerance`` counts as clipped."""
    luminance_weight: float = 0.7
    """Weight of the luminance ramp in a soft mask."""
    channel_weight: float = 0.3
    """Weight of the per-channel clip/crush test in a soft mask."""
    close_size: int = 3
    """Per-frame closing that fills pinholes in the soft masks."""
    ema_alpha: float = 0.7
    """Weight of the current frame in the temporal EMA."""
    blur_size: int = 9
    """Box blur applied to the EMA before the morphology."""
    open_close_size: int = 9
    """Opening (drops specks) then closing (fills holes) of the blurred EMA."""
    binarise_threshold: float = 0.2
    """Stabilised values above this are in the mask."""


DIFFHDR_MASKS = _DiffHDRMaskDefaults()
"""The DiffHDR defaults every parameter of :func:`exposure_masks` starts from."""


@dataclass(frozen=True)
class ExposureMasks:
    """Binary over/under-exposure masks of a clip, one ``[frames, height, width]`` each.

    1.0 marks pixels to regenerate (``over``: blown highlights, ``under``: crushed
    shadows), 0.0 the rest. Frames follow the IMAGE batch they came from.
    """

    over: torch.Tensor
    under: torch.Tensor

    def __post_init__(self):
        for name in ("over", "under"):
            mask = getattr(self, name)
            if not isinstance(mask, torch.Tensor) or mask.ndim != 3:
                raise ValueError(f"ExposureMasks.{name} must be a [frames, height, width] "
                                 f"tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
        if self.over.shape != self.under.shape:
            raise ValueError(f"ExposureMasks.over {tuple(self.over.shape)} and .under "
                             f"{tuple(self.under.shape)} must have the same shape")


def _check_kernel(size: int, name: str) -> None:
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"{name} must be an odd number of pixels >= 1 (1 turns the step "
                         f"off), got {size}")


def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError("image must be an RGB IMAGE batch [frames, height, width, 3], got "
                         f"shape {tuple(image.shape)}; drop alpha before computing masks")


def _smoothstep(x: torch.Tensor, edge0: float, edge1: float) -> torch.Tensor:
    t = ((x - edge0) / (edge1 - edge0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def _dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Grey dilation of ``[frames, H, W]``; pixels outside the frame never win."""
    return F.max_pool2d(mask[:, None], size, stride=1, padding=size // 2)[:, 0]


def _erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    return -_dilate(-mask, size)


def _close(mask: torch.Tensor, size: int) -> torch.Tensor:
    return _erode(_dilate(mask, size), size)


def _open(mask: torch.Tensor, size: int) -> torch.Tensor:
    return _dilate(_erode(mask, size), size)


def soft_exposure_masks(
    image,
    over_threshold: float = DIFFHDR_MASKS.over_threshold,
    under_threshold: float = DIFFHDR_MASKS.under_threshold,
    softness: float = DIFFHDR_MASKS.softness,
    clip_tolerance: float = DIFFHDR_MASKS.clip_tolerance,
    close_size: int = DIFFHDR_MASKS.close_size,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-frame soft (0..1) over- and under-exposure masks of an sRGB IMAGE batch.

    With ``Y`` the Rec.709 luminance of the decoded (linear-light) frame and ``lin`` the
    sRGB decode of a code value::

        over  = 0.7 * smoothstep(Y; lin(t_o - s), lin(t_o + s)) + 0.3 * [>= 2 channels >= 1 - c]
        under = 0.7 * (1 - smoothstep(Y; lin(max(0, t_u - s)), lin(t_u + s)))
                + 0.3 * [every channel <= t_u]

    each clamped to [0, 1] and closed with a ``close_size`` square.

    Parameters
    ----------
    image
        Display-referred sRGB code values ``[frames, height, width, 3]``; clamped to
        [0, 1] first (an LDR frame holds nothing outside).
    over_threshold, under_threshold, softness, clip_tolerance
        ``t_o``, ``t_u``, ``s`` and ``c`` above, in sRGB code values.
    close_size
        Odd square size of the per-frame closing; 1 turns it off.

    Returns
    -------
    ``(over, under)``, each ``[frames, height, width]`` in [0, 1], in the image's float
    dtype (float32 for half-precision input).

    References
    ----------
    DiffHDR (Eyeline-Labs), ``utils/color_utils.py``, ``exposure_masks_from_srgb``;
    IEC 61966-2-1:1999 (sRGB decode); ITU-R BT.709-6, item 3.2 (luminance).

    >>> frame = torch.tensor([[[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]]])
    >>> over, under = soft_exposure_masks(frame, close_size=1)
    >>> over.tolist(), under.tolist()
    ([[[1.0, 0.0, 0.0]]], [[[0.0, 1.0, 0.0]]])
    """
    image = to_tensor(image)
    _check_image(image)
    _check_kernel(close_size, "close_size")
    if not softness > 0:
        raise ValueError(f"softness must be > 0 (a ramp half-width in code values), got "
                         f"{softness}; use 0.02 for DiffHDR's ramps")
    dtype = image.dtype
    code = image.to(torch.promote_types(dtype, torch.float32)).clamp(0, 1)
    y = luminance(srgb_decode(code), "rec709")
    w_luma, w_channel = DIFFHDR_MASKS.luminance_weight, DIFFHDR_MASKS.channel_weight

    over_luma = _smoothstep(y, srgb_decode(over_threshold - softness),
                            srgb_decode(over_threshold + softness))
    clipped = ((code >= 1 - clip_tolerance).sum(dim=-1) >= 2).to(code.dtype)
    over = (w_luma * over_luma + w_channel * clipped).clamp(0, 1)

    under_luma = 1 - _smoothstep(y, srgb_decode(max(0.0, under_threshold - softness)),
                                 srgb_decode(under_threshold + softness))
    crushed = (code <= under_threshold).all(dim=-1).to(code.dtype)
    under = (w_luma * under_luma + w_channel * crushed).clamp(0, 1)

    result_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    return (_close(over, close_size).clamp(0, 1).to(result_dtype),
            _close(under, close_size).clamp(0, 1).to(result_dtype))


def stabilise_mask(
    soft: torch.Tensor,
    ema_alpha: float = DIFFHDR_MASKS.ema_alpha,
    blur_size: int = DIFFHDR_MASKS.blur_size,
    open_close_size: int = DIFFHDR_MASKS.open_close_size,
    binarise_threshold: float = DIFFHDR_MASKS.binarise_threshold,
) -> torch.Tensor:
    """Steady a soft mask sequence over time and binarise it.

    ``ema[0] = soft[0]``, ``ema[t] = a * soft[t] + (1 - a) * ema[t - 1]``; each EMA frame
    is box-blurred, opened, closed, clamped to [0, 1] and thresholded. A region that
    switches off therefore stays on for ``n - 1`` more frames, where ``n`` is the
    smallest integer with ``(1 - a)**n <= threshold`` (one frame at the defaults).

    Parameters
    ----------
    soft
        Soft masks ``[frames, height, width]`` in [0, 1] (:func:`soft_exposure_masks`).
    ema_alpha
        Weight ``a`` of the current frame, in (0, 1]; 1 turns the EMA off.
    blur_size, open_close_size
        Odd square sizes in pixels; 1 turns the step off.
    binarise_threshold
        Values strictly above it become 1.

    Returns
    -------
    Binary masks (0.0/1.0) of ``soft``'s shape and dtype.

    References
    ----------
    DiffHDR (Eyeline-Labs), ``utils/color_utils.py``, ``stabilize_soft_mask``, and
    ``infer_video.py`` (binarisation at 0.2).

    >>> step = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    >>> stabilise_mask(step, blur_size=1, open_close_size=1).flatten().tolist()
    [1.0, 1.0, 0.0]
    """
    soft = to_tensor(soft)
    if soft.ndim != 3:
        raise ValueError(f"soft must be [frames, height, width], got {tuple(soft.shape)}")
    if not 0 < ema_alpha <= 1:
        raise ValueError(f"ema_alpha must be in (0, 1], got {ema_alpha}; 0.7 is DiffHDR's")
    _check_kernel(blur_size, "blur_size")
    _check_kernel(open_close_size, "open_close_size")
    frames = [soft[0]]
    for current in soft[1:]:
        frames.append(ema_alpha * current + (1 - ema_alpha) * frames[-1])
    ema = torch.stack(frames)
    blurred = F.avg_pool2d(ema[:, None], blur_size, stride=1, padding=blur_size // 2)[:, 0]
    steady = _close(_open(blurred, open_close_size), open_close_size).clamp(0, 1)
    return (steady > binarise_threshold).to(soft.dtype)


def exposure_masks(
    image,
    over_threshold: float = DIFFHDR_MASKS.over_threshold,
    under_threshold: float = DIFFHDR_MASKS.under_threshold,
    softness: float = DIFFHDR_MASKS.softness,
    clip_tolerance: float = DIFFHDR_MASKS.clip_tolerance,
    close_size: int = DIFFHDR_MASKS.close_size,
    ema_alpha: float = DIFFHDR_MASKS.ema_alpha,
    blur_size: int = DIFFHDR_MASKS.blur_size,
    open_close_size: int = DIFFHDR_MASKS.open_close_size,
    binarise_threshold: float = DIFFHDR_MASKS.binarise_threshold,
) -> ExposureMasks:
    """Return DiffHDR's binary over/under-exposure masks of an LDR clip.

    :func:`soft_exposure_masks` per frame, then :func:`stabilise_mask` across the clip
    (frames in batch order). Every parameter defaults to :data:`DIFFHDR_MASKS`.

    Parameters
    ----------
    image
        Display-referred sRGB IMAGE batch ``[frames, height, width, 3]`` in [0, 1].

    Returns
    -------
    :class:`ExposureMasks` with ``over`` and ``under`` ``[frames, height, width]``.

    References
    ----------
    DiffHDR (Eyeline-Labs), ``infer_video.py``, ``prepare_video_and_masks``.

    A blown 24-pixel square on black: both masks reach 3 pixels past its edge (the
    blur and the 0.2 threshold; corners round off), so they overlap in a 6-pixel band.

    >>> clip = torch.zeros(2, 48, 48, 3)
    >>> clip[:, 12:36, 12:36] = 1.0
    >>> masks = exposure_masks(clip)
    >>> int(masks.over[0].sum()), int(masks.under[0].sum()), int(masks.over[0, 24, 9:39].sum())
    (824, 1984, 30)
    """
    over, under = soft_exposure_masks(image, over_threshold, under_threshold, softness,
                                      clip_tolerance, close_size)
    steady = [stabilise_mask(soft, ema_alpha, blur_size, open_close_size, binarise_threshold)
              for soft in (over, under)]
    return ExposureMasks(over=steady[0], under=steady[1])

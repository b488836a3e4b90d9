"""Gain map maths (ISO 21496-1): extract a gain map from an HDR/SDR pair, and apply one.

A gain map stores, per pixel, the log2 ratio between an alternate rendition (HDR) and a
base rendition (SDR), so a viewer can rebuild any rendition in between for the headroom
of its display. The metadata lives in :mod:`.gainmap_metadata`; the Ultra HDR JPEG
container is not handled here. GMODiff's gain map (its Eq. 1) is in
:mod:`.models.gmodiff`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ._array import array_function, to_tensor
from .gainmap_metadata import GainMapMetadata
from .gamut import luminance


@dataclass(frozen=True)
class _GainMapDefaults:
    """Adobe Gain Map specification 1.0, "Computing the gain map": k_sdr = k_hdr = 1/64."""

    offset: float = 1 / 64
    bits: int = 8


GAIN_MAP = _GainMapDefaults()


class GainMap(NamedTuple):
    """A gain map image and the metadata that decodes it."""

    image: Any
    metadata: GainMapMetadata


def _check_rgb(value: torch.Tensor, name: str) -> None:
    if value.ndim < 1 or value.shape[-1] != 3:
        raise ValueError(f"{name} must have 3 channels on its last axis, got shape "
                         f"{tuple(value.shape)}; pass image[..., :3] to drop alpha")


def _second_image(value, like: torch.Tensor, name: str) -> torch.Tensor:
    tensor = to_tensor(value).to(dtype=like.dtype, device=like.device)
    _check_rgb(tensor, name)
    if tensor.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)} but the first image has "
                         f"{tuple(like.shape)}; resize one to match")
    return tensor


def _per_channel_log2(boost, name: str, like: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(boost, dtype=like.dtype, device=like.device).reshape(-1)
    if values.numel() not in (1, like.shape[-1]) or bool((values <= 0).any()):
        raise ValueError(f"{name} must be a linear boost > 0 (4.0 = two stops), one value "
                         f"or one per gain map channel, got {boost!r}")
    return torch.log2(values).expand(like.shape[-1])


@array_function
def _extract(hdr, sdr_base_linear, min_content_boost, max_content_boost, gamma, offset_base,
             offset_alternate, channels, bits, as_uint8, base_hdr_headroom,
             alternate_hdr_headroom, gamut):
    _check_rgb(hdr, "hdr_linear")
    sdr = _second_image(sdr_base_linear, hdr, "sdr_base_linear")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (luminance map) or 3 (RGB map), got {channels}")
    if bits is not None and not (isinstance(bits, int) and 1 <= bits <= 16):
        raise ValueError(f"bits must be None (float map) or an integer 1..16, got {bits!r}")
    if as_uint8 and bits != 8:
        raise ValueError(f"as_uint8 needs bits=8, got bits={bits!r}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if channels == 1:
        hdr, sdr = luminance(hdr, gamut)[..., None], luminance(sdr, gamut)[..., None]
    numerator, denominator = hdr + offset_alternate, sdr + offset_base
    for value, name, offset in ((numerator, "hdr_linear", "offset_alternate"),
                                (denominator, "sdr_base_linear", "offset_base")):
        if bool((value <= 0).any()):
            raise ValueError(f"{name} has values <= -{offset}, so the log2 gain is undefined; "
                             f"clamp negatives (image.clamp_min(0)) or raise {offset}")
    log_gain = torch.log2(numerator / denominator)
    flat = log_gain.detach().reshape(-1, log_gain.shape[-1])
    low = (flat.amin(0) if min_content_boost is None
           else _per_channel_log2(min_content_boost, "min_content_boost", log_gain))
    high = (flat.amax(0) if max_content_boost is None
            else _per_channel_log2(max_content_boost, "max_content_boost", log_gain))
    if bool((low > high).any()):
        raise ValueError(f"min_content_boost ({torch.exp2(low).tolist()}) exceeds "
                         f"max_content_boost ({torch.exp2(high).tolist()}); swap them")
    span = high - low
    normalised = (torch.clamp(log_gain, low, high) - low) / torch.where(span > 0, span, 1.0)
    encoded = normalised.pow(gamma) if gamma != 1.0 else normalised
    if bits is not None:
        levels = 2**bits - 1
        codes = torch.round(encoded * levels)
        encoded = codes.to(torch.uint8) if as_uint8 else codes / levels
    if alternate_hdr_headroom is None:
        alternate_hdr_headroom = max(0.0, float(high.max()))
    metadata = GainMapMetadata(
        gain_map_min=tuple(low.tolist()), gain_map_max=tuple(high.tolist()), gamma=gamma,
        base_offset=offset_base, alternate_offset=offset_alternate,
        base_hdr_headroom=base_hdr_headroom, alternate_hdr_headroom=alternate_hdr_headroom)
    return encoded, metadata


def extract_gain_map(hdr_linear, sdr_base_linear, *, min_content_boost=None,
                     max_content_boost=None, gamma: float = 1.0,
                     offset_base: float = GAIN_MAP.offset,
                     offset_alternate: float = GAIN_MAP.offset, channels: int = 1,
                     bits: int | None = GAIN_MAP.bits, as_uint8: bool = False,
                     base_hdr_headroom: float = 0.0, alternate_hdr_headroom: float | None = None,
                     gamut: str = "rec709") -> GainMap:
    """Compute the gain map that turns ``sdr_base_linear`` into ``hdr_linear``.

    Per pixel G = log2((hdr + k_alternate) / (sdr + k_base)) (on luminance when
    ``channels=1``), clamped to [log2 min_content_boost, log2 max_content_boost] (the
    image's own range by default), normalised to [0, 1], raised to ``gamma`` and quantised
    to ``bits``. Unlike libultrahdr, dark SDR pixels are not limited to 2.3 stops of gain,
    so the round trip stays exact.

    Parameters
    ----------
    hdr_linear, sdr_base_linear
        Linear RGB renditions in the same gamut and scale (1.0 = diffuse white),
        ``[..., H, W, 3]``.
    min_content_boost, max_content_boost
        Linear boosts (4.0 = two stops) the map spans, one or one per channel.
    gamma
        Encoding gamma of the normalised map (ISO 21496-1 gain_map_gamma).
    offset_base, offset_alternate
        k_base and k_alternate, keeping the log ratio finite at black.
    channels
        1 for a luminance map (weights of ``gamut``), 3 for one map per RGB channel.
    bits
        Quantise to ``2**bits - 1`` levels; None keeps the exact float map.
    as_uint8
        Return 8-bit integer codes instead of floats in [0, 1] (needs ``bits=8``).
    base_hdr_headroom, alternate_hdr_headroom
        log2 headrooms of the base and alternate; the alternate defaults to the largest
        gain_map_max (libultrahdr's hdr_capacity_max = max_content_boost).

    Returns
    -------
    ``GainMap(image, metadata)``: the map ``[..., H, W, channels]`` and its metadata.

    References
    ----------
    ISO/TS 21496-1 (gain map computation); Adobe Gain Map specification 1.0, "Computing the
    gain map"; libultrahdr ``gainmapmath.cpp`` (computeGain, affineMapGain).

    >>> hdr = np.array([[[4.0, 4.0, 4.0], [0.18, 0.18, 0.18]]])
    >>> image, metadata = extract_gain_map(hdr, hdr / 4.0, bits=None)
    >>> round(metadata.gain_map_max[0], 4), image[0, :, 0].round(4).tolist()
    (1.9833, [1.0, 0.0])
    """
    image, metadata = _extract(hdr_linear, sdr_base_linear, min_content_boost,
                               max_content_boost, float(gamma), float(offset_base),
                               float(offset_alternate), channels, bits, as_uint8,
                               float(base_hdr_headroom), alternate_hdr_headroom, gamut)
    return GainMap(image, metadata)


def gain_map_weight(metadata: GainMapMetadata, display_hdr_headroom_log2: float) -> float:
    """Return the ISO 21496-1 weight W of the gain map for a display's headroom.

    W = clamp((H_display - H_base) / (H_alternate - H_base), 0, 1): 0 shows the base,
    1 the alternate. Equal headrooms give 0, as libavif does.

    Parameters
    ----------
    metadata
        The gain map metadata.
    display_hdr_headroom_log2
        log2 of the display's peak over its diffuse white (0 for SDR, 2 for 4x).

    Returns
    -------
    W in [0, 1].

    References
    ----------
    ISO/TS 21496-1 (application of the gain map); libavif ``avifGetGainMapWeight``.

    >>> gain_map_weight(GainMapMetadata(2.0, alternate_hdr_headroom=2.0), 1.0)
    0.5
    """
    span = metadata.alternate_hdr_headroom - metadata.base_hdr_headroom
    if span == 0:
        return 0.0
    weight = (float(display_hdr_headroom_log2) - metadata.base_hdr_headroom) / span
    return min(max(weight, 0.0), 1.0)


def _gain_image(gain_map, like: torch.Tensor) -> torch.Tensor:
    tensor = gain_map if isinstance(gain_map, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(gain_map))
    if tensor.dtype == torch.uint8:
        tensor = tensor.to(like.dtype) / 255
    elif not tensor.is_floating_point():
        raise ValueError(f"gain_map must be floats in [0, 1] or uint8 codes, got dtype "
                         f"{tensor.dtype}; divide by 2**bits - 1 first")
    tensor = tensor.to(dtype=like.dtype, device=like.device)
    if tensor.ndim != like.ndim or tensor.shape[-1] not in (1, 3):
        raise ValueError(f"gain_map must be [..., H, W, 1] or [..., H, W, 3] with the base's "
                         f"leading axes, got shape {tuple(tensor.shape)} for a base of "
                         f"{tuple(like.shape)}")
    if tensor.shape[:-3] != like.shape[:-3]:
        raise ValueError(f"gain_map batch axes {tuple(tensor.shape[:-3])} differ from the "
                         f"base's {tuple(like.shape[:-3])}")
    height, width = like.shape[-3:-1]
    if tensor.shape[-3:-1] != (height, width):
        planar = tensor.reshape(-1, *tensor.shape[-3:]).permute(0, 3, 1, 2)
        planar = F.interpolate(planar, size=(height, width), mode="bilinear",
                               align_corners=False)
        tensor = planar.permute(0, 2, 3, 1).reshape(*like.shape[:-1], tensor.shape[-1])
    return tensor


@array_function
def apply_gain_map(sdr_base_linear, gain_map, metadata: GainMapMetadata,
                   display_hdr_headroom_log2: float | None = None):
    """Apply a gain map to the base rendition for a display with the given headroom.

    out = (base + k_base) * 2 ** (W * lerp(gain_map_min, gain_map_max, g ** (1 / gamma)))
    - k_alternate, with W from :func:`gain_map_weight`. A map smaller than the base is
    upsampled bilinearly (libultrahdr uses Shepard's inverse-distance weights).

    Parameters
    ----------
    sdr_base_linear
        Linear base rendition ``[..., H, W, 3]``.
    gain_map
        ``[..., h, w, 1 or 3]`` floats in [0, 1] or uint8 codes.
    metadata
        Its :class:`GainMapMetadata`.
    display_hdr_headroom_log2
        log2 headroom of the target display; None renders the full alternate (W = 1).

    Returns
    -------
    Linear RGB of the rendition for that display, same scale as the base.

    References
    ----------
    ISO/TS 21496-1 (application of the gain map); libultrahdr ``gainmapmath.cpp`` (applyGain).

    >>> base = np.array([[[0.18, 0.18, 0.18]]])
    >>> metadata = GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0)
    >>> apply_gain_map(base, np.array([[[0.5]]]), metadata).round(6).tolist()
    [[[0.375625, 0.375625, 0.375625]]]
    """
    _check_rgb(sdr_base_linear, "sdr_base_linear")
    gain = _gain_image(gain_map, sdr_base_linear)
    weight = 1.0 if display_hdr_headroom_log2 is None else gain_map_weight(
        metadata, display_hdr_headroom_log2)
    low, high, gamma, base_offset, alternate_offset = sdr_base_linear.new_tensor(
        [getattr(metadata, name) for name in ("gain_map_min", "gain_map_max", "gamma",
                                              "base_offset", "alternate_offset")])
    normalised = gain.clamp(0.0, 1.0).pow(1.0 / gamma)
    log_boost = low + (high - low) * normalised
    return (sdr_base_linear + base_offset) * torch.exp2(log_boost * weight) - alternate_offset

"""Gain-map and tone-mapping nodes: "Tone Map", "Gain Map Extract", "Gain Map Merge",
"Merge Exposure Brackets".

SDR images travel as ComfyUI does it: sRGB-encoded display values in [0, 1] (what Load
Image gives and Save Image expects). Gain maps travel as IMAGEs of the normalised map in
[0, 1] (one channel is replicated to three) plus a ``GAINMAP_METADATA`` value holding the
ISO 21496-1 metadata.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..hdr import gainmap, merge, tonemap, transfer
from ..hdr.gainmap_metadata import GainMapMetadata
from ._common import CATEGORY_COLOUR, require_image

CATEGORY_GAINMAP = "HDR/gain map"
GAINMAP_METADATA = "GAINMAP_METADATA"
TONE_MAPPER_NAMES = list(tonemap.TONE_MAPPERS)


def _sdr_linear(sdr: torch.Tensor) -> torch.Tensor:
    return transfer.srgb_decode(sdr[..., :3])


def _tone_mapped_srgb(hdr: torch.Tensor, operator: str) -> torch.Tensor:
    display_linear = tonemap.get_tone_mapper(operator)(hdr[..., :3])
    return transfer.srgb_encode(display_linear.clamp(0.0, 1.0))


class HDRToneMap:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("sdr_image",)
    FUNCTION = "tone_map"
    DESCRIPTION = ("Scene-linear Rec.709 HDR to an SDR picture (sRGB-encoded, 0..1) with a "
                   "chosen operator: Reinhard, ITU-R BT.2446 A/C, BT.2390 EETF, ACES 2.0.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Scene-linear Rec.709 (1.0 = diffuse white)."}),
            "operator": (TONE_MAPPER_NAMES, {"default": "bt2390", "tooltip": (
                "Tone-mapping operator. The ITU-R ones place 1.0 at 203 nits (BT.2408) and map "
                "to a 100-nit SDR display; *_max_rgb variants keep hue.")}),
        }}

    def tone_map(self, image, operator):
        image = require_image(image, "image", "Tone Map")
        return (_tone_mapped_srgb(image, operator),)


class HDRGainMapExtract:
    CATEGORY = CATEGORY_GAINMAP
    RETURN_TYPES = ("IMAGE", "IMAGE", GAINMAP_METADATA)
    RETURN_NAMES = ("sdr_image", "gain_map", "metadata")
    FUNCTION = "extract"
    DESCRIPTION = ("Splits scene-linear HDR into an SDR base (given, or tone-mapped here) and an "
                   "ISO 21496-1 gain map that restores the HDR on HDR displays.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "hdr_image": ("IMAGE", {"tooltip": "Scene-linear Rec.709 HDR."}),
                "tone_mapper": (TONE_MAPPER_NAMES, {"default": "bt2390", "tooltip": (
                    "Makes the SDR base when sdr_image is not connected.")}),
                "channels": ([1, 3], {"default": 1, "tooltip": (
                    "1: one luminance gain map (Ultra HDR's usual); 3: one per RGB channel "
                    "(exact colour, 3x the data).")}),
                "gamma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.05,
                                    "tooltip": "Gain map encoding gamma (ISO 21496-1)."}),
                "offset": ("FLOAT", {"default": 1 / 64, "min": 0.0, "max": 1.0,
                                     "step": 1e-6,  # the frontend rounds to step's decimals
                                     "tooltip": "k_base = k_alternate: keeps the gain finite "
                                                "at black (1/64 is libultrahdr's)."}),
            },
            "optional": {
                "sdr_image": ("IMAGE", {"tooltip": "Your own SDR grade (sRGB-encoded), same "
                                                   "size as the HDR."}),
            },
        }

    def extract(self, hdr_image, tone_mapper, channels, gamma, offset, sdr_image=None):
        hdr = require_image(hdr_image, "hdr_image", "Gain Map Extract")[..., :3]
        if sdr_image is None:
            sdr = _tone_mapped_srgb(hdr, tone_mapper)
        else:
            sdr = require_image(sdr_image, "sdr_image", "Gain Map Extract")[..., :3]
            if sdr.shape != hdr.shape:
                raise ValueError(f"sdr_image {tuple(sdr.shape)} and hdr_image "
                                 f"{tuple(hdr.shape)} differ in size; resize one to match")
        gain_map, metadata = gainmap.extract_gain_map(
            hdr, _sdr_linear(sdr), gamma=gamma, offset_base=offset, offset_alternate=offset,
            channels=int(channels))
        return (sdr, gain_map.expand(*gain_map.shape[:-1], 3).contiguous(), metadata)


class HDRGainMapMerge:
    CATEGORY = CATEGORY_GAINMAP
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("hdr_image",)
    OUTPUT_NODE = True
    FUNCTION = "merge"
    DESCRIPTION = ("SDR base + gain map + metadata -> scene-linear HDR, rendered for a display "
                   "with the given headroom (ISO 21496-1 weighting).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sdr_image": ("IMAGE", {"tooltip": "SDR base (sRGB-encoded)."}),
            "gain_map": ("IMAGE", {"tooltip": "Gain map image in [0, 1] (resampled to the base "
                                              "size if smaller)."}),
            "metadata": (GAINMAP_METADATA, {"tooltip": "The gain map's ISO 21496-1 metadata."}),
            "display_headroom_stops": ("FLOAT", {
                "default": 16.0, "min": 0.0, "max": 16.0, "step": 0.1,
                "tooltip": "Headroom of the target display in stops above SDR white (0 = SDR, "
                           "at or above the alternate headroom = the full HDR).",
            }),
        }}

    def merge(self, sdr_image, gain_map, metadata, display_headroom_stops):
        sdr = require_image(sdr_image, "sdr_image", "Gain Map Merge")[..., :3]
        gain = require_image(gain_map, "gain_map", "Gain Map Merge")
        if not isinstance(metadata, GainMapMetadata):
            raise ValueError("metadata must come from Gain Map Extract or Load Ultra HDR JPEG")
        notes = []
        if gain.shape[1:3] != sdr.shape[1:3]:
            notes.append(f"gain map {gain.shape[2]}x{gain.shape[1]} resampled to the base "
                         f"{sdr.shape[2]}x{sdr.shape[1]}")
            gain = F.interpolate(gain.permute(0, 3, 1, 2), size=sdr.shape[1:3],
                                 mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        gain = gain[..., :1] if metadata.channels == 1 else gain[..., :3]
        hdr = gainmap.apply_gain_map(_sdr_linear(sdr), gain, metadata, display_headroom_stops)
        return {"ui": {"text": notes or ["gain map applied at the base size"]},
                "result": (hdr,)}


class HDRMergeBrackets:
    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("hdr_image",)
    FUNCTION = "merge"
    DESCRIPTION = ("Merges an exposure bracket (an IMAGE batch of LDR frames) into one "
                   "scene-linear HDR frame, in stops relative to the middle exposure.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "brackets": ("IMAGE", {"tooltip": "The bracketed frames as one batch, any order."}),
            "evs": ("STRING", {"default": "-2, 0, 2", "tooltip": (
                "Exposure of each frame in stops, comma-separated, in batch order.")}),
            "encoding": (["srgb", "linear"], {"default": "srgb", "tooltip": (
                "How the frames are encoded: sRGB (JPEG/PNG photos) or already linear.")}),
            "weighting": (["hat", "triangle"], {"default": "hat", "tooltip": (
                "Per-pixel weight: 'hat' (smooth, Reinhard et al.) or 'triangle' (Debevec).")}),
            "align": (["none", "phase", "search"], {"default": "none", "tooltip": (
                "Integer-pixel alignment of hand-held brackets (median threshold bitmaps).")}),
        }}

    def merge(self, brackets, evs, encoding, weighting, align):
        frames = require_image(brackets, "brackets", "Merge Exposure Brackets")[..., :3]
        try:
            stops = [float(value) for value in evs.replace(";", ",").split(",") if value.strip()]
        except ValueError:
            raise ValueError(f"evs {evs!r} must be numbers separated by commas, e.g. "
                             "'-2, 0, 2'") from None
        if len(stops) != frames.shape[0]:
            raise ValueError(f"evs lists {len(stops)} exposures but brackets has "
                             f"{frames.shape[0]} frames; give one EV per frame")
        merged = merge.merge_brackets(frames, stops, decode=encoding, weighting=weighting,
                                      align=None if align == "none" else align)
        return (merged[None],)


NODE_CLASS_MAPPINGS = {
    "HDRToneMap": HDRToneMap,
    "HDRGainMapExtract": HDRGainMapExtract,
    "HDRGainMapMerge": HDRGainMapMerge,
    "HDRMergeBrackets": HDRMergeBrackets,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HDRToneMap": "Tone Map",
    "HDRGainMapExtract": "Gain Map Extract",
    "HDRGainMapMerge": "Gain Map Merge",
    "HDRMergeBrackets": "Merge Exposure Brackets",
}

"""Nodes that measure and change exposure: "Exposure (stops)" and "HDR Stats"."""

from __future__ import annotations

from ..hdr import exposure, gamut
from ._common import CATEGORY_ANALYSIS, CATEGORY_COLOUR, join_alpha, require_image, split_alpha

GAMUT_NAMES = list(gamut.GAMUTS)


class HDRExposure:
    """Scale scene-linear light by a number of stops (x * 2**stops); alpha is untouched."""

    CATEGORY = CATEGORY_COLOUR
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "apply"
    DESCRIPTION = "Multiplies scene-linear RGB by 2^stops. Nothing is clamped."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Scene-linear image (values above 1.0 are kept)."}),
            "stops": ("FLOAT", {
                "default": 0.0, "min": -32.0, "max": 32.0, "step": 0.1,
                "tooltip": "Exposure change in stops: +1 doubles the light, -1 halves it.",
            }),
        }}

    def apply(self, image, stops):
        rgb, alpha = split_alpha(require_image(image, "image", "Exposure (stops)"))
        return (join_alpha(exposure.apply_stops(rgb, stops), alpha),)


class HDRStats:
    """Peak, percentiles, headroom in stops and bad-pixel counts of a scene-linear image."""

    CATEGORY = CATEGORY_ANALYSIS
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("stats",)
    OUTPUT_NODE = True
    FUNCTION = "measure"
    DESCRIPTION = ("Shows the image's peak, percentiles, stops above diffuse white and the share "
                   "of pixels above 1.0 in the node, and outputs the same text. Peak, shares and "
                   "NaN/Inf counts are exact; above 1,048,576 pixels the percentiles come from "
                   "262,144 sampled pixels (rank within 0.49 percentage points at the median, "
                   "0.1 at 1% and 99%, 0.03 at 99.9%; the text says so).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Scene-linear image to measure (NaN/Inf are counted, "
                                           "not an error, here)."}),
            "gamut": (GAMUT_NAMES, {"default": "rec709", "tooltip": "Gamut of the image; sets the "
                                    "luminance weights."}),
            "diffuse_white": ("FLOAT", {
                "default": 1.0, "min": 1e-6, "max": 1e6, "step": 0.01,
                "tooltip": "Scene-linear value of diffuse white (1.0 by our convention); headroom "
                           "is counted in stops above it.",
            }),
        }}

    def measure(self, image, gamut, diffuse_white):
        require_image(image, "image", "HDR Stats", finite=False)
        stats = exposure.hdr_stats(image, gamut=gamut, diffuse_white=diffuse_white)
        text = stats.as_text()
        return {"ui": {"text": [text], "hdr_stats": [stats.as_dict()]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {"HDRExposure": HDRExposure, "HDRStats": HDRStats}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRExposure": "Exposure (stops)", "HDRStats": "HDR Stats"}

"""The "HDR Test Chart" node: a ColorChecker, a stop ramp and a sun, with no files needed."""

from __future__ import annotations

from ..hdr import charts, gamut
from ._common import CATEGORY_CHARTS


class HDRTestChart:
    CATEGORY = CATEGORY_CHARTS
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    DESCRIPTION = ("A deterministic scene-linear test chart: ColorChecker 24, a stepped ramp from "
                   "-10 to +10 stops around 0.18, and a bright sun disk.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 64, "max": 8192, "step": 8,
                              "tooltip": "Chart width in pixels."}),
            "height": ("INT", {"default": 288, "min": 64, "max": 8192, "step": 8,
                               "tooltip": "Chart height in pixels."}),
            "gamut": (list(gamut.GAMUTS), {"default": "rec709", "tooltip": "Gamut the chart's "
                      "scene-linear RGB values are expressed in."}),
            "sun_stops": ("FLOAT", {"default": 10.0, "min": 0.0, "max": 20.0, "step": 0.5,
                                    "tooltip": "Brightness of the sun disk in stops above mid "
                                               "grey 0.18 (10 stops = 184.3)."}),
            "frames": ("INT", {"default": 1, "min": 1, "max": 256,
                               "tooltip": "How many identical frames to output as a batch."}),
        }}

    def generate(self, width, height, gamut, sun_stops, frames):
        chart = charts.test_chart(width=width, height=height, gamut=gamut, sun_stops=sun_stops)
        return (chart.unsqueeze(0).expand(frames, -1, -1, -1).contiguous(),)


NODE_CLASS_MAPPINGS = {"HDRTestChart": HDRTestChart}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRTestChart": "HDR Test Chart"}

"""Built-in scene-linear sources that need no files: "HDR Test Chart" (ColorChecker, stop ramp,
sun) and "Procedural HDR Scene" (sky, sun at 1e3-1e5, emissive and lit spheres)."""

from __future__ import annotations

from ..hdr import charts, gamut, scenes
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


class HDRProceduralScene:
    CATEGORY = CATEGORY_CHARTS
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "render"
    DESCRIPTION = ("A deterministic procedural HDR scene in scene-linear Rec.709: sky gradient, "
                   "a sun disk at 1e3-1e5, emissive spheres and lit surfaces. One scene per "
                   "seed; a batch renders consecutive seeds.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                             "tooltip": "Which scene (the same seed gives the same scene)."}),
            "width": ("INT", {"default": 256, "min": 8, "max": 8192, "step": 8,
                              "tooltip": "Width in pixels."}),
            "height": ("INT", {"default": 256, "min": 8, "max": 8192, "step": 8,
                               "tooltip": "Height in pixels."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 256, "tooltip": (
                "Number of scenes (seeds seed, seed+1, ...).")}),
        }}

    def render(self, seed, width, height, batch_size):
        return (scenes.hdr_scenes(range(seed, seed + batch_size), height, width),)


NODE_CLASS_MAPPINGS = {"HDRTestChart": HDRTestChart, "HDRProceduralScene": HDRProceduralScene}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRTestChart": "HDR Test Chart",
                              "HDRProceduralScene": "Procedural HDR Scene"}

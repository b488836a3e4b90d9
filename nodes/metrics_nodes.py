"""The "HDR Metrics" node: a prediction against its ground truth, in HDR-aware metrics."""

from __future__ import annotations

import json
import math

from ..hdr import metrics
from ._common import CATEGORY_ANALYSIS, require_image


class HDRMetrics:
    CATEGORY = CATEGORY_ANALYSIS
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("metrics_json",)
    OUTPUT_NODE = True
    FUNCTION = "measure"
    DESCRIPTION = ("PU21-PSNR/SSIM, delta E ITP, PSNR in PQ, peak and dynamic range in stops, "
                   "flicker and frame-to-frame PSNR for batches, optional ColorVideoVDP JOD: "
                   "a scene-linear prediction against its ground truth.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The prediction, scene-linear Rec.709 (a batch is "
                                           "a clip)."}),
            "reference": ("IMAGE", {"tooltip": "The ground truth, same size and frame count."}),
            "nits_at_1": ("FLOAT", {"default": 100.0, "min": 1.0, "max": 10000.0, "step": 1.0,
                                    "tooltip": "Display nits of scene-linear 1.0 for the "
                                               "perceptual metrics (PU21, ITP, PQ)."}),
            "jod": ("BOOLEAN", {"default": False, "tooltip": (
                "Also compute ColorVideoVDP's JOD (slow; needs the 'cvvdp' package).")}),
        }}

    def measure(self, image, reference, nits_at_1, jod):
        test = require_image(image, "image", "HDR Metrics")[..., :3]
        truth = require_image(reference, "reference", "HDR Metrics")[..., :3]
        if test.shape != truth.shape:
            raise ValueError(f"image {tuple(test.shape)} and reference {tuple(truth.shape)} "
                             "differ; resize or trim one so they match")
        results = metrics.hdr_metrics(test, truth, nits_at_1=nits_at_1, jod=jod)
        text = "\n".join(f"{name}: {value:.4g}" for name, value in results.items())
        return {"ui": {"text": [text]}, "result": (metrics_json(results),)}


def metrics_json(results: dict) -> str:
    """Strict JSON of the metrics: a value that is not finite (PSNR of identical images,
    flicker of a single frame) is ``null``, as JSON has no NaN or Infinity."""
    return json.dumps({name: value if math.isfinite(value) else None
                       for name, value in results.items()}, allow_nan=False)


NODE_CLASS_MAPPINGS = {"HDRMetrics": HDRMetrics}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRMetrics": "HDR Metrics"}

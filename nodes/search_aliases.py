"""Words artists type into ComfyUI's node search, per node (``SEARCH_ALIASES``).

ComfyUI 0.33 reads a classic node's ``SEARCH_ALIASES`` into ``/object_info`` and the frontend
matches them in the node search box; 0.3.75 ignores the attribute. (The V3 schema's
``search_aliases`` does the same on 0.33 but is a TypeError on 0.3.75's schema: one reason
the pack stays on classic nodes, README "For developers".)
"""

from __future__ import annotations

SEARCH_ALIASES = {
    "HDRTestChart": ["colour chart", "color checker", "macbeth", "grey ramp", "test pattern"],
    "HDRProceduralScene": ["hdri", "sky", "sun", "test scene"],
    "HDRLogEncode": ["logc", "logc3", "logc4", "arri", "acescct", "pq", "hlg", "st 2084",
                     "log curve", "linear to log"],
    "HDRLogDecode": ["logc", "logc3", "logc4", "arri", "acescct", "pq", "hlg", "log to linear",
                     "linearize"],
    "HDRLoraLogDecode": ["lora curve", "log gamma", "diffhdr", "hdr_lora", "log to linear"],
    "HDRConvertGamut": ["color space", "colour space", "rec2020", "p3", "aces", "awg",
                        "primaries", "matrix"],
    "HDROCIODisplayPreview": ["opencolorio", "view transform", "display", "aces 2.0", "lut"],
    "HDROCIOConvert": ["opencolorio", "colorspace", "colour space", "aces"],
    "HDRToneMap": ["tonemap", "tonemapping", "reinhard", "bt.2446", "bt.2390", "aces",
                   "hdr to sdr"],
    "HDRGainMapExtract": ["ultra hdr", "iso 21496", "gainmap"],
    "HDRGainMapMerge": ["ultra hdr", "iso 21496", "gainmap"],
    "HDRMergeBrackets": ["bracketing", "exposure fusion", "debevec", "hdr merge", "ldr to hdr"],
    "HDRExposure": ["stops", "ev", "exposure compensation", "gain"],
    "HDRStats": ["peak", "histogram", "headroom", "nits", "statistics"],
    "HDRMetrics": ["pu21", "psnr", "ssim", "delta e itp", "cvvdp", "jod", "quality"],
    "HDRPreview": ["hdr viewer", "float viewer", "false colour", "false color"],
    "HDRSaveEXR": ["exr", "openexr", "save hdr", "half float", "32-bit", "write exr"],
    "HDRLoadEXR": ["exr", "openexr", "load hdr", "read exr", "image sequence"],
    "HDRSaveFloatArray": ["npy", "numpy", "raw float"],
    "HDRLoadFloatArray": ["npy", "numpy", "raw float"],
    "HDRSaveUltraHDR": ["ultra hdr", "gain map jpeg", "jpegr", "hdr jpeg"],
    "HDRLoadUltraHDR": ["ultra hdr", "gain map jpeg", "jpegr", "hdr jpeg"],
    "HDRVAEDecodeUnclamped": ["vae decode", "no clamp", "log decode", "unclipped"],
    "HDRLoadPromptEmbeddings": ["text embeddings", "conditioning", "precomputed prompt"],
    "HDRInContextReference": ["ic lora", "sdr to hdr", "reference image", "inverse tone map"],
    "HDRExposureMasks": ["overexposed", "underexposed", "clipping mask", "diffhdr"],
    "HDRCFAPatch": ["context focused attention", "diffhdr", "regional prompt"],
    "HDRCFASampler": ["context focused attention", "diffhdr", "long video", "windows"],
    "HDRLoadVAE": ["hdr vae", "32 channel vae", "dual head"],
    "HDRVAEEncode": ["hdr vae", "encode"],
    "HDRVAEDecode": ["hdr vae", "decode", "scene-linear"],
    "HDREmptyLatent": ["32 channel latent", "empty latent"],
    "HDRLoadDiffusionModel": ["widened dit", "32 channel", "unet loader"],
}

"""The "Preview HDR" node: the real float image in the browser's HDR viewer, not a clipped PNG."""

from __future__ import annotations

from ._common import CATEGORY_IO, require_image
from ._preview import hdr_view


class HDRPreview:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "preview"
    DESCRIPTION = ("Shows the scene-linear image in the HDR viewer: exposure in stops, false "
                   "colour, a histogram in stops, clip/NaN markers. Nothing is written to the "
                   "output folder.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Scene-linear image (the first frame of a batch is "
                                           "shown). NaN/Inf are shown, not refused."}),
        }}

    def preview(self, image):
        image = require_image(image, "image", "Preview HDR", finite=False)
        return {"ui": hdr_view(image, label="Preview HDR")}


NODE_CLASS_MAPPINGS = {"HDRPreview": HDRPreview}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRPreview": "Preview HDR"}

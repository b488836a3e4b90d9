"""Ultra HDR JPEG nodes: "Save Ultra HDR JPEG" and "Load Ultra HDR JPEG".

An Ultra HDR JPEG is an SDR JPEG that every viewer shows, plus a gain map and ISO 21496-1 /
hdrgm metadata that HDR-capable viewers (Android, Chrome on an HDR screen, Photos apps)
use to rebuild the highlights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..hdr import transfer, ultrahdr
from ..hdr.gainmap_metadata import GainMapMetadata
from ._common import CATEGORY_IO, output_path_for, require_image
from .gainmap_nodes import GAINMAP_METADATA, TONE_MAPPER_NAMES


def _frame(image: torch.Tensor | None, index: int) -> torch.Tensor | None:
    return None if image is None else image[min(index, image.shape[0] - 1), ..., :3]


class HDRSaveUltraHDR:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    DESCRIPTION = ("Writes Ultra HDR JPEGs (SDR base + gain map + ISO 21496-1 and hdrgm "
                   "metadata), one per frame. Connect hdr_image (the gain map is made here) or "
                   "the three outputs of Gain Map Extract.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "filename_prefix": ("STRING", {"default": "hdr/ultrahdr", "tooltip": (
                    "Name inside ComfyUI's output folder; a counter is added, nothing is "
                    "overwritten.")}),
                "quality": ("INT", {"default": 95, "min": 1, "max": 100,
                                    "tooltip": "JPEG quality of the SDR base."}),
                "gain_map_quality": ("INT", {"default": 85, "min": 1, "max": 100,
                                             "tooltip": "JPEG quality of the gain map."}),
                "tone_mapper": (TONE_MAPPER_NAMES, {"default": "reinhard_max_rgb", "tooltip": (
                    "Makes the SDR base from hdr_image (ignored with a given gain map).")}),
            },
            "optional": {
                "hdr_image": ("IMAGE", {"tooltip": "Scene-linear Rec.709 HDR."}),
                "sdr_image": ("IMAGE", {"tooltip": "SDR base (sRGB-encoded), e.g. from Gain Map "
                                                   "Extract, or your own grade for hdr_image."}),
                "gain_map": ("IMAGE", {"tooltip": "Gain map from Gain Map Extract."}),
                "metadata": (GAINMAP_METADATA, {"tooltip": "Metadata from Gain Map Extract."}),
            },
        }

    def save(self, filename_prefix, quality, gain_map_quality, tone_mapper, hdr_image=None,
             sdr_image=None, gain_map=None, metadata=None):
        node = "Save Ultra HDR JPEG"
        if hdr_image is None and (sdr_image is None or gain_map is None or metadata is None):
            raise ValueError("connect hdr_image, or all of sdr_image, gain_map and metadata "
                             "(the outputs of Gain Map Extract)")
        reference = require_image(hdr_image if hdr_image is not None else sdr_image,
                                  "hdr_image" if hdr_image is not None else "sdr_image", node)
        if hdr_image is None:
            require_image(gain_map, "gain_map", node)
            if not isinstance(metadata, GainMapMetadata):
                raise ValueError("metadata must come from Gain Map Extract")
        folder, stem, counter, subfolder = output_path_for(
            filename_prefix, reference.shape[2], reference.shape[1])
        files = []
        for index in range(reference.shape[0]):
            sdr = _frame(sdr_image, index)
            options = {"quality": quality, "gain_map_quality": gain_map_quality,
                       "sdr_base_linear": None if sdr is None else transfer.srgb_decode(sdr)}
            if hdr_image is None:
                gain = _frame(gain_map, index)
                options.update(gain_map=gain[..., :1] if metadata.channels == 1 else gain,
                               metadata=metadata)
            else:
                options.update(hdr_linear=_frame(hdr_image, index), tone_mapper=tone_mapper)
            name = f"{stem}_{counter + index:05}_.jpg"
            ultrahdr.write_ultrahdr(folder / name, **options)
            files.append({"filename": name, "subfolder": subfolder, "type": "output"})
        return {"ui": {"images": files}}


def _input_jpegs() -> list[str]:
    import folder_paths

    root = Path(folder_paths.get_input_directory())
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.suffix.lower() in {".jpg", ".jpeg"})


class HDRLoadUltraHDR:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE", GAINMAP_METADATA)
    RETURN_NAMES = ("hdr_image", "sdr_image", "gain_map", "metadata")
    FUNCTION = "load"
    DESCRIPTION = ("Reads an Ultra HDR (gain map) JPEG: the rebuilt scene-linear HDR, the SDR "
                   "base, the gain map and its metadata.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": (_input_jpegs(), {"tooltip": "JPEG in ComfyUI's input folder."}),
            "display_headroom_stops": ("FLOAT", {
                "default": 16.0, "min": 0.0, "max": 16.0, "step": 0.1,
                "tooltip": "Render the HDR for a display with this headroom above SDR white "
                           "(16 = the full HDR the gain map holds).",
            }),
            "sdr_only_ok": ("BOOLEAN", {"default": False, "tooltip": (
                "Accept a plain JPEG without a gain map (the HDR output is then the SDR base "
                "in linear light) instead of an error.")}),
        }}

    @classmethod
    def IS_CHANGED(cls, image, display_headroom_stops, sdr_only_ok):
        import folder_paths

        path = Path(folder_paths.get_annotated_filepath(image))
        return path.stat().st_mtime_ns if path.exists() else float("nan")

    def load(self, image, display_headroom_stops, sdr_only_ok):
        import folder_paths

        decoded = ultrahdr.read_ultrahdr(
            folder_paths.get_annotated_filepath(image),
            display_hdr_headroom_log2=display_headroom_stops, allow_sdr_only=sdr_only_ok)
        hdr = torch.from_numpy(decoded.hdr)[None]
        sdr = transfer.srgb_encode(torch.from_numpy(decoded.sdr).clamp(0.0, 1.0))[None]
        if decoded.gain_map is None:
            gain = torch.zeros_like(hdr)
        else:
            gain = torch.as_tensor(decoded.gain_map, dtype=torch.float32)
            gain = (gain / 255.0 if gain.max() > 1.0 else gain)[None]
            gain = gain.expand(*gain.shape[:-1], 3).contiguous()
        return (hdr, sdr, gain, decoded.metadata)


NODE_CLASS_MAPPINGS = {"HDRSaveUltraHDR": HDRSaveUltraHDR, "HDRLoadUltraHDR": HDRLoadUltraHDR}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRSaveUltraHDR": "Save Ultra HDR JPEG",
                              "HDRLoadUltraHDR": "Load Ultra HDR JPEG"}

"""Raw float I/O: "Save Float Array (.npy)" and "Load Float Array (.npy)".

The exact float32 values, for pipelines and tests. Files are NumPy's .npy format, read with
``allow_pickle=False`` (a pickled object array is refused, never executed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..hdr.atomic import atomic_path
from ._common import CATEGORY_IO, output_path_for, require_image


class HDRSaveFloatArray:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    DESCRIPTION = ("Writes the IMAGE batch as one float32 NumPy file [frames, height, width, "
                   "channels] in the output folder: every value exactly (bf16/fp16 IMAGEs "
                   "widened losslessly), nothing clamped.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Scene-linear (or any float) image batch to save."}),
            "filename_prefix": ("STRING", {
                "default": "hdr/raw",
                "tooltip": "Name inside ComfyUI's output folder; subfolders allowed. A counter is "
                           "added so existing files are never overwritten.",
            }),
        }}

    def save(self, image, filename_prefix):
        image = require_image(image, "image", "Save Float Array (.npy)")
        folder, stem, counter, subfolder = output_path_for(
            filename_prefix, image.shape[2], image.shape[1])
        filename = f"{stem}_{counter:05}_.npy"
        with atomic_path(folder / filename) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, image.detach().to("cpu", torch.float32).numpy())
        entry = {"filename": filename, "subfolder": subfolder, "type": "output"}
        return {"ui": {"hdr_arrays": [entry]}}


def _input_arrays() -> list[str]:
    import folder_paths

    root = Path(folder_paths.get_input_directory())
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.npy"))


def load_float_array(path: Path) -> torch.Tensor:
    """A .npy file as an IMAGE batch [B, H, W, C] float32 ([H, W, C] gains a batch axis)."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"array {path.name}: not a plain numeric .npy file ({error}); "
                         "save it with numpy.save from a float array") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"array {path.name} has dtype {array.dtype}; a float array is needed")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"array {path.name} has shape {array.shape}; [frames, height, width, "
                         "channels] or [height, width, channels] is needed")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class HDRLoadFloatArray:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load"
    DESCRIPTION = ("Reads a float .npy file from ComfyUI's input folder as an IMAGE batch, "
                   "values unchanged (no clamp, no gamma).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "array": (_input_arrays(), {"tooltip": ".npy file in ComfyUI's input folder, shaped "
                                                  "[frames, height, width, channels] or "
                                                  "[height, width, channels]."}),
        }}

    @classmethod
    def IS_CHANGED(cls, array):
        import folder_paths

        path = Path(folder_paths.get_annotated_filepath(array))
        return path.stat().st_mtime_ns if path.exists() else float("nan")

    def load(self, array):
        import folder_paths

        return (load_float_array(Path(folder_paths.get_annotated_filepath(array))),)


NODE_CLASS_MAPPINGS = {"HDRSaveFloatArray": HDRSaveFloatArray,
                       "HDRLoadFloatArray": HDRLoadFloatArray}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRSaveFloatArray": "Save Float Array (.npy)",
                              "HDRLoadFloatArray": "Load Float Array (.npy)"}

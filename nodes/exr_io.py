"""EXR nodes: "Save EXR" (layers, sequences, metadata, atomic) and "Load EXR"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from ..hdr import exposure, exr, exr_sequence, gamut, ocio
from ._common import CATEGORY_IO, output_path_for, require_image
from ._preview import core_image_entries, hdr_view
from .ocio_nodes import colourspace_input

COMPRESSIONS = list(exr.COMPRESSIONS)
EXTRA_LAYERS = 3
_SEQUENCE_PATTERN = re.compile(r"%0?\d*d|#+|[*?\[]")


def _metadata_lines(text: str) -> dict[str, str]:
    pairs = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, separator, value = line.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"metadata line {number} ({line!r}) is not 'key=value'; write one "
                             "pair per line, e.g. 'shot=010'")
        pairs[key.strip()] = value.strip()
    return pairs


def _gamut_of(colourspace: str) -> str | None:
    try:
        return gamut.get_gamut(colourspace).name
    except ValueError:
        return None


class HDRSaveEXR:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    DESCRIPTION = ("Writes scene-linear OpenEXR files (half or float, any codec), one per frame, "
                   "with extra layers, alpha, colourspace/chromaticities and the ComfyUI "
                   "workflow in the header. Never clamps; never overwrites unless asked.")

    @classmethod
    def INPUT_TYPES(cls):
        optional = {
            "mask": ("MASK", {"tooltip": "Optional alpha (coverage, 1 = opaque) stored as A."}),
            "layer_name": ("STRING", {"default": "", "tooltip": (
                "Layer name of the main image ('' = the default R,G,B channels; 'linear' "
                "gives linear.R, linear.G, ...).")}),
        }
        for index in range(1, EXTRA_LAYERS + 1):
            optional[f"extra_layer_{index}"] = ("IMAGE", {"tooltip": (
                "Another image of the same size stored as its own layer (e.g. tone-mapped, "
                "a mask, depth).")})
            optional[f"extra_layer_{index}_name"] = ("STRING", {
                "default": ["tonemapped", "layer2", "layer3"][index - 1],
                "tooltip": f"Layer name for extra_layer_{index}."})
        optional.update({
            "multipart": ("BOOLEAN", {"default": False, "tooltip": (
                "Write each layer as its own part (multi-part EXR) instead of one part with "
                "prefixed channels.")}),
            "dwa_level": ("FLOAT", {"default": 45.0, "min": 0.0, "max": 1000.0, "step": 1.0,
                                    "tooltip": "DWAA/DWAB quality level (higher = smaller, "
                                               "lossier; 45 is the OpenEXR default)."}),
            "start_frame": ("INT", {"default": -1, "min": -1, "max": 10**7, "tooltip": (
                "Frame number of the first image; -1 continues after the files already "
                "there (ComfyUI's counter rule).")}),
            "padding": ("INT", {"default": 5, "min": 1, "max": 10,
                                "tooltip": "Digits in the frame number (5 -> 00001)."}),
            "metadata": ("STRING", {"default": "", "multiline": True, "tooltip": (
                "Extra header attributes, one 'key=value' per line (e.g. shot=010).")}),
        })
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Scene-linear image batch (a batch is a frame "
                                                "sequence)."}),
                "filename_prefix": ("STRING", {"default": "hdr/ComfyUI", "tooltip": (
                    "Name inside ComfyUI's output folder (subfolders allowed); frames are "
                    "named <prefix>_00001_.exr.")}),
                "pixel_type": (["half", "float"], {"default": "half", "tooltip": (
                    "half: 16-bit float (max 65504, the VFX norm); float: 32-bit.")}),
                "compression": (COMPRESSIONS, {"default": "zip", "tooltip": (
                    "EXR codec: zip/piz/zips/rle/none are lossless; dwaa/dwab/b44/pxr24 lossy.")}),
                "colourspace": colourspace_input(
                    "OCIO colourspace of the images, written into the header (with its "
                    "chromaticities when it is a known scene-linear gamut)."),
                "overwrite": ("BOOLEAN", {"default": False, "tooltip": (
                    "Allow replacing existing files (only matters with a fixed start_frame).")}),
            },
            "optional": optional,
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, filename_prefix, pixel_type, compression, colourspace, overwrite,
             mask=None, layer_name="", multipart=False, dwa_level=45.0, start_frame=-1,
             padding=5, metadata="", prompt=None, extra_pnginfo=None, **extra):
        images = require_image(images, "images", "Save EXR")
        layers = {layer_name.strip(): images}
        if mask is not None:
            if tuple(mask.shape) != tuple(images.shape[:3]):
                raise ValueError(f"mask has shape {tuple(mask.shape)} but images are "
                                 f"{tuple(images.shape[:3])}; resize the mask to match")
            layers[layer_name.strip()] = torch.cat([images[..., :3], mask[..., None]], dim=-1)
        for index in range(1, EXTRA_LAYERS + 1):
            layer = extra.get(f"extra_layer_{index}")
            if layer is None:
                continue
            name = extra.get(f"extra_layer_{index}_name", f"layer{index}").strip()
            layer = require_image(layer, f"extra_layer_{index}", "Save EXR")
            if layer.shape[:3] != images.shape[:3] or name in layers:
                raise ValueError(f"extra_layer_{index} ({name!r}, shape {tuple(layer.shape)}) "
                                 f"must match images {tuple(images.shape)} and have a unique "
                                 "name")
            layers[name] = layer
        attributes = _metadata_lines(metadata)
        if prompt is not None:
            attributes["comfyui:prompt"] = json.dumps(prompt)
        for key, value in (extra_pnginfo or {}).items():
            attributes[f"comfyui:{key}"] = json.dumps(value)
        folder, stem, _, subfolder = output_path_for(filename_prefix, images.shape[2],
                                                     images.shape[1])
        paths = exr_sequence.write_exr_sequence(
            folder, stem, {name: layer.cpu().numpy() for name, layer in layers.items()},
            start_frame=None if start_frame < 0 else start_frame, padding=padding,
            pixel_type=pixel_type, compression=compression,
            dwa_level=dwa_level if compression.startswith("dwa") else None,
            metadata=attributes, colourspace=colourspace, gamut=_gamut_of(colourspace),
            interop_id=_interop_id(colourspace),
            multipart=multipart, overwrite=overwrite)
        files = [{"filename": path.name, "subfolder": subfolder, "type": "output"}
                 for path in paths]
        stats = exposure.hdr_stats(images, gamut=_gamut_of(colourspace) or "rec709")
        text = f"wrote {len(paths)} EXR: {paths[0].name}" + (
            f" .. {paths[-1].name}" if len(paths) > 1 else "") + "\n" + stats.as_text()
        return {"ui": {**core_image_entries(files), "exr_files": files, "text": [text],
                       **hdr_view(images, colourspace=colourspace, label="Save EXR")}}


def _interop_id(colourspace: str) -> str | None:
    try:
        return ocio.interop_id(colourspace)
    except ValueError:  # a name only a user config has: the header keeps the name alone
        return None


def _input_exr_files() -> list[str]:
    import folder_paths

    root = Path(folder_paths.get_input_directory())
    return [""] + sorted(str(path.relative_to(root)) for path in root.rglob("*.exr"))


def _to_image(pixels: np.ndarray, channels: tuple[str, ...], source: str) -> torch.Tensor:
    """[B, H, W, C] pixels as a 3-channel IMAGE (grey replicated); other counts refused."""
    count = pixels.shape[-1]
    if count == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    elif count != 3:
        raise ValueError(f"{source} has channels {', '.join(channels)} in this layer; an IMAGE "
                         "needs 1 or 3 colour channels: pick a layer with the 'layer' input")
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))


class HDRLoadEXR:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ("IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("image", "alpha", "header")
    FUNCTION = "load"
    DESCRIPTION = ("Reads an OpenEXR file or sequence as scene-linear IMAGE (values unchanged), "
                   "its alpha as MASK (1 = opaque) and its header as text.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "file": (_input_exr_files(), {"default": "", "tooltip": (
                    ".exr file in ComfyUI's input folder (ignored when 'path' is set).")}),
            },
            "optional": {
                "path": ("STRING", {"default": "", "tooltip": (
                    "A file or sequence pattern, relative to ComfyUI's input folder or an "
                    "absolute path you name yourself: plates/shot_%05d.exr, shot_#####.exr "
                    "or a glob like shot_*.exr.")}),
                "layer": ("STRING", {"default": "", "tooltip": (
                    "Layer to read ('' = the default RGB layer, else e.g. 'tonemapped'); an "
                    "unknown name lists the file's layers.")}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, file, path="", layer=""):
        target = cls._target(file, path)
        pattern = str(target)
        return pattern if _SEQUENCE_PATTERN.search(Path(pattern).name) else (
            target.stat().st_mtime_ns if target.exists() else pattern)

    @staticmethod
    def _target(file: str, path: str) -> Path:
        import folder_paths

        if path.strip():
            named = Path(path.strip()).expanduser()
            return named if named.is_absolute() else \
                Path(folder_paths.get_input_directory()) / named
        if not file:
            raise ValueError("file is empty and no path is given; put an .exr in ComfyUI's "
                             "input folder or type a path")
        return Path(folder_paths.get_annotated_filepath(file))

    def load(self, file, path="", layer=""):
        target = self._target(file, path)
        layer_name = layer.strip() or None
        if _SEQUENCE_PATTERN.search(target.name):
            sequence = exr_sequence.read_exr_sequence(target, layer=layer_name)
            pixels, alpha, channels = sequence.pixels, sequence.alpha, sequence.channels
            header = {"frames": list(sequence.frames), "missing": list(sequence.missing)}
        else:
            if not target.is_file():
                raise ValueError(f"path {target} does not exist; check the name or use a "
                                 "pattern like shot_%05d.exr for a sequence")
            image = exr.read_exr(target, layer=layer_name)
            pixels, alpha, channels = image.pixels[None], image.alpha, image.channels
            alpha = None if alpha is None else alpha[None]
            header = {"header": image.header, "colourspace": image.colourspace,
                      "notes": list(image.notes)}
        rgb = _to_image(pixels, channels, target.name)
        mask = (torch.ones(rgb.shape[:3]) if alpha is None
                else torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32)))
        return (rgb, mask, json.dumps(header, indent=1, default=str))


NODE_CLASS_MAPPINGS = {"HDRSaveEXR": HDRSaveEXR, "HDRLoadEXR": HDRLoadEXR}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRSaveEXR": "Save EXR", "HDRLoadEXR": "Load EXR"}

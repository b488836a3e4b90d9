"""EXR nodes: "Save EXR" (layers, sequences, metadata, atomic) and "Load EXR"."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..hdr import alpha as alpha_ops
from ..hdr import exposure, exr, exr_sequence, gamut, ocio
from ._common import CATEGORY_IO, output_path_for, require_image
from ._input_paths import ALLOW_LIST_KEY, allowed_roots, confine, fingerprint, unreadable
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
                   "with extra layers, premultiplied alpha, colourspace/chromaticities and the "
                   "ComfyUI workflow in the header. Never clamps: a value the file could not "
                   "hold (NaN/Inf, beyond half's 65504, or changed by a lossy codec beyond "
                   "its quantisation) stops the save with the fix; never overwrites unless "
                   "asked.")

    @classmethod
    def INPUT_TYPES(cls):
        optional = {
            "mask": ("MASK", {"tooltip": (
                "Optional coverage as a ComfyUI MASK, core's polarity: 1 = transparent, "
                "0 = opaque (Load Image's MASK, Join Image with Alpha). Stored as "
                "A = 1 - mask.")}),
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
            "premultiply": ("BOOLEAN", {"default": True, "tooltip": (
                "On: R, G, B are multiplied by alpha before writing, because EXR stores "
                "premultiplied colour (Nuke, Blender, OIIO read it so) and ComfyUI images are "
                "straight. Off: the images are already premultiplied. Only matters for a "
                "layer with alpha (the mask, or a 4th channel).")}),
        })
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Scene-linear image batch (a batch is a frame "
                                                "sequence)."}),
                "filename_prefix": ("STRING", {"default": "hdr/ComfyUI", "tooltip": (
                    "Name inside ComfyUI's output folder (subfolders allowed); frames are "
                    "named <prefix>_00001_.exr.")}),
                "pixel_type": (["half", "float"], {"default": "half", "tooltip": (
                    "half: 16-bit float (largest 65504, the VFX norm); float: 32-bit. Values "
                    "half cannot hold are refused with their count, never clipped.")}),
                "compression": (COMPRESSIONS, {"default": "zip", "tooltip": (
                    "EXR codec: zip/piz/zips/rle/zstd/htj2k/none are lossless; dwaa/dwab/b44/"
                    "b44a/pxr24/lj2k lossy. A lossy file is decoded before it is kept: a value "
                    "turned NaN/Inf or a channel peak moved by over half a stop is refused "
                    "with the fix (DWA codes R, G, B as half even at float: values above "
                    "65504 would come back as 65248); normal quantisation passes.")}),
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
             padding=5, metadata="", premultiply=True, prompt=None, extra_pnginfo=None,
             **extra):
        images = require_image(images, "images", "Save EXR")
        layers = {layer_name.strip(): _with_alpha(images, mask, premultiply, "images")}
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
            layers[name] = _with_alpha(layer, None, premultiply, f"extra_layer_{index}")
        attributes = _metadata_lines(metadata)
        if prompt is not None:
            attributes["comfyui:prompt"] = json.dumps(prompt)
        for key, value in (extra_pnginfo or {}).items():
            attributes[f"comfyui:{key}"] = json.dumps(value)
        folder, stem, _, subfolder = output_path_for(filename_prefix, images.shape[2],
                                                     images.shape[1])
        # Statistics and the viewer's proxy are computed while OpenEXR writes (its write
        # releases the GIL), so the node costs about what the write costs.
        with ThreadPoolExecutor(max_workers=1) as worker:
            report = worker.submit(_report, images, colourspace, torch.is_inference_mode_enabled())
            paths = exr_sequence.write_exr_sequence(
                folder, stem, layers, start_frame=None if start_frame < 0 else start_frame,
                padding=padding, pixel_type=pixel_type, compression=compression,
                dwa_level=dwa_level if compression.startswith("dwa") else None,
                metadata=attributes, colourspace=colourspace, gamut=_gamut_of(colourspace),
                interop_id=_interop_id(colourspace),
                multipart=multipart, overwrite=overwrite)
            stats, view = report.result()
        files = [{"filename": path.name, "subfolder": subfolder, "type": "output"}
                 for path in paths]
        text = f"wrote {len(paths)} EXR: {paths[0].name}" + (
            f" .. {paths[-1].name}" if len(paths) > 1 else "") + "\n" + stats.as_text()
        return {"ui": {**core_image_entries(files), "exr_files": files, "text": [text],
                       **view}}


def _with_alpha(image: torch.Tensor, mask: torch.Tensor | None, premultiply: bool,
                label: str) -> exr.Layer:
    """An IMAGE (and core-polarity MASK) as the layer to write: RGB, or RGBA with colour
    premultiplied by alpha when asked. Alpha is the mask if given, else a 4th channel."""
    if mask is not None:
        coverage = alpha_ops.alpha_from_mask(_fit_mask(mask, image).to(image.dtype), "mask")
        label = f"{label} + mask"
    elif image.shape[-1] == 4:
        coverage = image[..., 3]
    else:
        return exr.Layer(_float_pixels(image), label=label)
    rgb = alpha_ops.premultiply(image[..., :3], coverage) if premultiply else image[..., :3]
    return exr.Layer(_float_pixels(torch.cat([rgb, coverage[..., None]], dim=-1)), label=label)


def _fit_mask(mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``mask`` as [B, H, W] of ``image``: a single mask serves every frame, and a constant
    one any size (Load Image gives a 64x64 zero mask for a picture without alpha)."""
    mask = mask[None] if mask.ndim == 2 else mask
    if mask.ndim == 3 and mask.shape[1:] != image.shape[1:3] and mask.numel() and bool(
            (mask == mask.flatten()[0]).all()):
        mask = mask.flatten()[0].expand(mask.shape[0], *image.shape[1:3])
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask.expand(image.shape[0], -1, -1)
    if tuple(mask.shape) != tuple(image.shape[:3]):
        raise ValueError(f"mask has shape {tuple(mask.shape)} but images are "
                         f"{tuple(image.shape[:3])}; resize the mask to match (a single mask, "
                         "or a constant one, is used for every frame)")
    return mask.to(image.device)


def _report(images: torch.Tensor, colourspace: str, inference: bool) -> tuple:
    """The node's statistics and the viewer's message (run beside the write)."""
    with torch.inference_mode(inference):
        stats = exposure.hdr_stats(images, gamut=_gamut_of(colourspace) or "rec709")
        return stats, hdr_view(images, colourspace=colourspace, label="Save EXR")


def _float_pixels(layer: torch.Tensor) -> np.ndarray:
    """A layer as float32 numpy (bf16 has no numpy type; half and float files take it
    exactly: every bf16/fp16 value is a float32 value)."""
    return layer.detach().to("cpu", torch.float32).numpy()


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


def _matched_files(target: Path) -> list[Path]:
    """The files a confined name stands for; FileNotFoundError when there are none."""
    if _SEQUENCE_PATTERN.search(target.name):
        try:
            return [path for _, path in exr_sequence.match_sequence(target)]
        except ValueError:
            raise FileNotFoundError(target) from None
    if not target.is_file():
        raise FileNotFoundError(target)
    return [target]


class HDRLoadEXR:
    CATEGORY = CATEGORY_IO
    RETURN_TYPES = ("IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("image", "mask", "header")
    OUTPUT_TOOLTIPS = (
        "Scene-linear RGB, values as stored (divided by alpha with 'unpremultiply').",
        "Coverage as a ComfyUI MASK, core's polarity: 1 - alpha (0 = opaque); all zeros "
        "(opaque) when the file has no alpha.",
        "The header as JSON: attributes, colourspace (the file's, or the one its "
        "chromaticities name) and notes.")
    FUNCTION = "load"
    DESCRIPTION = ("Reads an OpenEXR file or sequence from ComfyUI's input folder (or a folder "
                   f"listed under '{ALLOW_LIST_KEY}' in extra_model_paths.yaml) as a "
                   "scene-linear IMAGE, its alpha as a core-polarity MASK (1 - alpha) and its "
                   "header as text.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "file": (_input_exr_files(), {"default": "", "tooltip": (
                    ".exr file in ComfyUI's input folder (ignored when 'path' is set).")}),
            },
            "optional": {
                "path": ("STRING", {"default": "", "tooltip": (
                    "A file or sequence pattern relative to ComfyUI's input folder "
                    "(plates/shot_%05d.exr, shot_#####.exr or a glob like shot_*.exr), or an "
                    f"absolute path inside a folder listed under '{ALLOW_LIST_KEY}' in "
                    "extra_model_paths.yaml; '..' and other folders are refused.")}),
                "layer": ("STRING", {"default": "", "tooltip": (
                    "Layer to read ('' = the default RGB layer, else e.g. 'tonemapped'); an "
                    "unknown name lists the file's layers.")}),
                "unpremultiply": ("BOOLEAN", {"default": True, "tooltip": (
                    "On: R, G, B are divided by alpha where alpha > 0, since EXR stores "
                    "premultiplied colour and ComfyUI images are straight (Save EXR "
                    "premultiplies again); pixels with alpha 0 keep their colour. Off: values "
                    "exactly as stored. Files without alpha are unchanged either way.")}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, file, path="", layer="", unpremultiply=True):
        try:  # names, sizes and times of every matched file: re-rendered frames are re-read
            return fingerprint(_matched_files(cls._target(file, path)))
        except (OSError, ValueError):
            return float("nan")  # never equal: load runs and reports the problem

    @staticmethod
    def _target(file: str, path: str) -> Path:
        if path.strip():
            return confine(path, allowed_roots(), "path")
        if not file:
            raise ValueError("file is empty and no path is given; put an .exr in ComfyUI's "
                             "input folder or type a path")
        return confine(file, allowed_roots()[:1], "file")

    def load(self, file, path="", layer="", unpremultiply=True):
        target = self._target(file, path)
        shown = path.strip() or file
        try:
            for found in _matched_files(target):
                exr.list_layers(found)
        except (OSError, exr.UnreadableExrError):
            raise unreadable(shown) from None
        layer_name = layer.strip() or None
        if _SEQUENCE_PATTERN.search(target.name):
            image = exr_sequence.read_exr_sequence(target, layer=layer_name)
            pixels, alpha = image.pixels, image.alpha
            header = {"frames": list(image.frames), "missing": list(image.missing)}
        else:
            image = exr.read_exr(target, layer=layer_name)
            pixels = image.pixels[None]
            alpha = None if image.alpha is None else image.alpha[None]
            header = {"header": image.header}
        header.update(colourspace=image.colourspace, notes=list(image.notes))
        rgb = _to_image(pixels, image.channels, target.name)
        if alpha is None:
            return (rgb, torch.zeros(rgb.shape[:3]), json.dumps(header, indent=1, default=str))
        coverage = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))
        if unpremultiply:
            rgb = alpha_ops.unpremultiply(rgb, coverage)
        return (rgb, alpha_ops.mask_from_alpha(coverage),
                json.dumps(header, indent=1, default=str))


NODE_CLASS_MAPPINGS = {"HDRSaveEXR": HDRSaveEXR, "HDRLoadEXR": HDRLoadEXR}
NODE_DISPLAY_NAME_MAPPINGS = {"HDRSaveEXR": "Save EXR", "HDRLoadEXR": "Load EXR"}

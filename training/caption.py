"""``python -m comfyui_hdr.training caption``: DiffHDR's ``caption.txt`` for every folder of
training data, written by a local vision-language model (Qwen2.5-VL, Qwen3-VL or any
``transformers`` image-text-to-text model with a chat template).

    python -m comfyui_hdr.training caption --data shots/ --captioner Qwen2.5-VL-7B-Instruct

A DiffHDR caption says what an LDR picture loses: ``[Overexposed: what is in the blown-out
highlights]; [Underexposed: what is in the crushed shadows]`` (:class:`~.data.Caption`).
For each folder the middle picture (in name order) is exposed as an LDR frame would be
(``--exposure`` stops, clipped at 1.0, sRGB), DiffHDR's exposure masks
(:func:`~..hdr.masks.exposure_masks`) find the two regions, and the model is shown each
region's bounding box cut from the *HDR* picture at an exposure that shows its detail
(highlights brought down so their 99th-percentile luminance is 1.0, shadows brought up so
their median is mid grey), with a question about that region only
(:func:`exposure_regions`). A region under ``--min-share`` of the frame gets no part;
a folder with neither gets no file. Generation is greedy (deterministic).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..hdr.atomic import atomic_path
from ..hdr.gamut import luminance
from ..hdr.masks import exposure_masks
from ..hdr.transfer import srgb_encode
from .data import CAPTION_FILE, HDR_IMAGE_SUFFIXES, Caption, read_hdr_image
from .text_encoders import DTYPES, check_model_folder, resolve_device

__all__ = ["QUESTIONS", "Captioner", "RegionView", "caption_picture", "exposure_regions",
           "main"]

QUESTIONS = {
    "over": "This is a crop of the brightest part of a photo, shown darker than normal so that "
            "the detail a normal exposure blows out to white is visible. In a short phrase, "
            "what is in it? Answer with the phrase only.",
    "under": "This is a crop of the darkest part of a photo, shown brighter than normal so that "
             "the detail a normal exposure crushes to black is visible. In a short phrase, "
             "what is in it? Answer with the phrase only.",
}
"""What the model is asked about each region (its answer becomes that part of the caption)."""
MID_GREY = 0.18
"""Scene-linear mid grey: where a shadow region's median luminance is put."""
MAX_SHADOW_GAIN_STOPS = 16.0
"""The most a shadow region is brightened (a region of true black stays black)."""


@dataclass(frozen=True)
class RegionView:
    """What the captioner is shown of one exposure region.

    ``box`` is ``(top, left, height, width)`` in the frame; ``gain`` the linear factor
    applied to the (already ``--exposure``-scaled) scene-linear picture; ``image`` the
    crop as sRGB code values ``[height, width, 3]`` in [0, 1]; ``share`` the fraction of
    the frame the region's mask covers.
    """

    box: tuple[int, int, int, int]
    gain: float
    image: torch.Tensor
    share: float


def _span(first: int, last: int, size: int, margin: int, min_side: int) -> tuple[int, int]:
    """``[first, last)`` grown by ``margin`` and, centred, to ``min_side``, within ``size``."""
    start, stop = max(0, first - margin), min(size, last + margin)
    need = min(size, min_side)
    if stop - start < need:
        start = min(max(0, (start + stop - need) // 2), size - need)
        stop = start + need
    return start, stop


def _box(mask: torch.Tensor, margin: int, min_side: int) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the mask's bounding box, grown (:func:`_span`)."""
    rows, columns = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    top, bottom = _span(int(rows[0]), int(rows[-1]) + 1, mask.shape[0], margin, min_side)
    left, right = _span(int(columns[0]), int(columns[-1]) + 1, mask.shape[1], margin, min_side)
    return top, left, bottom - top, right - left


def exposure_regions(hdr: torch.Tensor, exposure_stops: float = 0.0, min_share: float = 0.005,
                     margin: int = 8, min_side: int = 64) -> dict[str, RegionView | None]:
    """The over- and under-exposed regions of a scene-linear picture, as shown to the model.

    Parameters
    ----------
    hdr
        Scene-linear Rec.709 ``[height, width, 3]`` (1.0 = diffuse white).
    exposure_stops
        Exposure of the LDR frame whose losses are captioned (it is
        ``srgb_encode(clip(hdr * 2**stops, 0, 1))``).
    min_share
        Regions covering less of the frame get None.
    margin, min_side
        Pixels added around a region's bounding box, and the smallest side of a crop.

    Returns
    -------
    ``{"over": RegionView | None, "under": RegionView | None}``.

    References
    ----------
    DiffHDR (Eyeline-Labs): masks and caption format (``utils/color_utils.py``); IEC
    61966-2-1 (sRGB); ITU-R BT.709-6 item 3.2 (luminance).
    """
    if hdr.ndim != 3 or hdr.shape[-1] != 3:
        raise ValueError(f"hdr must be [height, width, 3] scene-linear RGB, got {tuple(hdr.shape)}")
    exposed = hdr.float() * 2.0 ** exposure_stops
    masks = exposure_masks(srgb_encode(exposed.clamp(0, 1))[None])
    light = luminance(exposed, "rec709")
    views: dict[str, RegionView | None] = {}
    for name, mask in (("over", masks.over[0] > 0.5), ("under", masks.under[0] > 0.5)):
        share = int(mask.sum()) / mask.numel()
        if share == 0 or share < min_share:
            views[name] = None
            continue
        inside = light[mask]
        if name == "over":
            gain = 1.0 / max(float(torch.quantile(inside, 0.99)), 1.0)
        else:
            floor = MID_GREY * 2.0 ** -MAX_SHADOW_GAIN_STOPS
            gain = MID_GREY / max(float(inside.median()), floor)
        top, left, height, width = _box(mask, margin, min_side)
        crop = exposed[top:top + height, left:left + width] * gain
        views[name] = RegionView((top, left, height, width), gain,
                                 srgb_encode(crop.clamp(0, 1)), share)
    return views


def _phrase(text: str) -> str:
    """A model's answer made safe inside ``[...: ...]``: printable (no U+FFFD from a cut
    UTF-8 sequence), no brackets or semicolons, one line, no trailing full stop."""
    text = "".join(character if character.isprintable() and character != "\ufffd" else " "
                   for character in text)
    return " ".join(re.sub(r"[\[\];]", " ", text).split()).strip(" .,:")


def caption_picture(hdr: torch.Tensor, describe: Callable[[torch.Tensor, str], str],
                    exposure_stops: float = 0.0,
                    min_share: float = 0.005) -> tuple[Caption | None, dict]:
    """The DiffHDR caption of one picture: ``describe(region image, question)`` for each
    region of :func:`exposure_regions`; returns ``(Caption or None, the region views)``."""
    views = exposure_regions(hdr, exposure_stops, min_share)
    parts = {}
    for name, view in views.items():
        parts[name] = _phrase(describe(view.image, QUESTIONS[name])) if view else ""
    if not any(parts.values()):
        return None, views
    return Caption(parts["over"] or None, parts["under"] or None), views


class Captioner:
    """A local vision-language model answering one question about one picture (greedy)."""

    def __init__(self, folder: Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 max_new_tokens: int = 40):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        )

        if not folder.is_dir():
            raise ValueError(f"--captioner {folder} is not a folder; point it at a local "
                             "vision-language model, e.g. Qwen2.5-VL-7B-Instruct")
        check_model_folder(folder, "--captioner", tuple(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES),
                           "vision-language model", "point --captioner at a Qwen2.5-VL or "
                           "Qwen3-VL (-Instruct) folder", accepted="an image-text-to-text type "
                           "such as 'qwen2_5_vl' or 'qwen3_vl'")
        if max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
        self.processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        if getattr(self.processor, "chat_template", None) is None:
            raise ValueError(f"--captioner {folder} has no chat template; use the -Instruct "
                             "model's folder (with chat_template.jinja)")
        self.model = AutoModelForImageTextToText.from_pretrained(
            str(folder), dtype=dtype, device_map=device, local_files_only=True).eval()
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, question: str) -> str:
        """The model's answer to ``question`` about ``image`` (sRGB ``[H, W, 3]`` in [0, 1])."""
        from PIL import Image

        picture = Image.fromarray((image.cpu().numpy() * 255).round().astype(np.uint8))
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": question}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=[picture], return_tensors="pt")
        inputs = inputs.to(self.model.device)
        output = self.model.generate(**inputs, do_sample=False, num_beams=1,
                                     max_new_tokens=self.max_new_tokens)
        return self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:],
                                           skip_special_tokens=True)[0]


def _picture_folders(root: Path) -> list[tuple[Path, list[str]]]:
    folders = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        names = sorted(name for name in files if name.lower().endswith(HDR_IMAGE_SUFFIXES))
        if names:
            folders.append((Path(folder), names))
    return folders


def caption_folders(root: Path, describe: Callable[[torch.Tensor, str], str],
                    exposure_stops: float = 0.0, min_share: float = 0.005,
                    overwrite: bool = False) -> dict[Path, str]:
    """Write ``caption.txt`` into every folder of pictures under ``root``; returns each
    folder's outcome (``written``, ``kept`` (a caption was there), ``no regions``,
    ``non-finite``)."""
    if not root.is_dir():
        raise ValueError(f"--data {root} is not a folder; point it at the training data")
    outcomes = {}
    for folder, names in _picture_folders(root):
        path = folder / CAPTION_FILE
        if path.exists() and not overwrite:
            outcomes[folder] = "kept"
            continue
        picture = folder / names[len(names) // 2]
        pixels = torch.from_numpy(read_hdr_image(picture)[..., :3].copy())
        if not bool(torch.isfinite(pixels).all()):
            warnings.warn(f"{picture} has NaN/Inf pixels; no caption for {folder} (fix the "
                          "render)", stacklevel=2)
            outcomes[folder] = "non-finite"
            continue
        caption, _ = caption_picture(pixels, describe, exposure_stops, min_share)
        if caption is None:
            outcomes[folder] = "no regions"
            continue
        with atomic_path(path, overwrite=overwrite) as temporary:
            temporary.write_text(caption.prompt + "\n", encoding="utf-8")
        outcomes[folder] = "written"
    if not outcomes:
        raise ValueError(f"no .exr or .hdr files under --data {root}; check the folder")
    return outcomes


def build_parser() -> argparse.ArgumentParser:
    """The ``caption`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training caption",
        description="Write DiffHDR's caption.txt ('[Overexposed: ...]; [Underexposed: ...]') "
                    "in every folder of HDR pictures, describing the regions an LDR "
                    "exposure blows out and crushes, with a local vision-language model.")
    parser.add_argument("--data", required=True, type=Path, help="training data folder")
    parser.add_argument("--captioner", required=True, type=Path,
                        help="local vision-language model folder (Qwen2.5-VL / Qwen3-VL "
                             "-Instruct, transformers format)")
    parser.add_argument("--exposure", type=float, default=0.0,
                        help="stops applied before the LDR clip whose losses are captioned "
                             "(default 0: scene-linear 1.0 clips)")
    parser.add_argument("--min-share", type=float, default=0.005,
                        help="smallest share of the frame a region needs to be captioned "
                             "(default 0.005)")
    parser.add_argument("--max-new-tokens", type=int, default=40,
                        help="longest answer per region, in tokens (default 40)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing caption.txt files (default: keep them)")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                        help="model precision (default auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--device", default="auto",
                        help="torch device (default auto: cuda if available, else cpu)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``caption`` CLI; return the exit code (0, or 2 on bad input)."""
    arguments = build_parser().parse_args(argv)
    device, dtype = resolve_device(arguments.device, arguments.dtype)
    try:
        if not arguments.data.is_dir():
            raise ValueError(f"--data {arguments.data} is not a folder; point it at the "
                             "training data")
        captioner = Captioner(arguments.captioner, device, dtype, arguments.max_new_tokens)
        outcomes = caption_folders(arguments.data, captioner, arguments.exposure,
                                   arguments.min_share, arguments.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"caption: error: {error}", file=sys.stderr)
        return 2
    for folder, outcome in outcomes.items():
        print(f"{folder}: {outcome}")
    counts = {outcome: list(outcomes.values()).count(outcome) for outcome in set(outcomes.values())}
    print("caption: " + ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
          + (" (--overwrite replaces kept captions)" if "kept" in counts else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Render the template-browser thumbnail of every shipped workflow from a real run.

    .venv/bin/python scripts/make_templates.py

ComfyUI serves a custom node pack's ``example_workflows/`` folder as templates (0.33 still
takes ``workflows/`` and others, noting them at DEBUG level): ``GET /api/workflow_templates``
lists its ``*.json`` files, the frontend titles each card with the file name and shows
``<name>.jpg`` from the same folder as the card's picture (``app/custom_node_manager.py``;
frontends 1.32 to 1.58 give custom-node templates ``mediaSubtype: 'jpg'``). The JSON files are
the shipped workflows themselves; this script only writes the pictures.

It starts ComfyUI with its folders in a temp dir, queues each UI workflow through
:func:`comfyui_hdr.harness.queue.queue_workflow`, and draws its brightest scene-linear output
(EXR or .npy) twice: as exposed, and pulled down until the peak sits at display white, so
the card shows the highlights the file keeps. A workflow without a float output shows its
first picture output (PNG/JPEG) as saved.
"""

from __future__ import annotations

import io
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from comfyui_hdr.harness import comfyui
from comfyui_hdr.harness.example_inputs import prepare_server
from comfyui_hdr.harness.mcp_server import read_scene_linear
from comfyui_hdr.harness.queue import queue_workflow
from comfyui_hdr.harness.workflow import SHIPPED_WORKFLOWS, shipped_workflows
from comfyui_hdr.hdr import exposure, transfer

WIDTH = 384
GAP = 4
LABEL = 20
JPEG_QUALITY = 85
CARD_BYTES = 60 * 1024  # noisy pictures drop quality in steps of 10 until they fit
BACKGROUND = (24, 24, 24)


def display_srgb(scene_linear: np.ndarray) -> Image.Image:
    """8-bit sRGB of scene-linear light, clipped at display white (for pictures only)."""
    code = transfer.srgb_encode(np.clip(scene_linear, 0.0, 1.0))
    return Image.fromarray(np.round(code * 255.0).astype(np.uint8))


def _panel(picture: Image.Image, label: str) -> Image.Image:
    height = round(picture.height * WIDTH / picture.width)
    panel = Image.new("RGB", (WIDTH, height + LABEL), BACKGROUND)
    panel.paste(picture.resize((WIDTH, height), Image.BOX), (0, LABEL))
    ImageDraw.Draw(panel).text((6, 4), label, fill=(235, 235, 235))
    return panel


def _stack(panels: list[Image.Image]) -> Image.Image:
    height = sum(panel.height for panel in panels) + GAP * (len(panels) - 1)
    sheet = Image.new("RGB", (WIDTH, height), BACKGROUND)
    top = 0
    for panel in panels:
        sheet.paste(panel, (0, top))
        top += panel.height + GAP
    return sheet


def _first_frame(path: Path) -> np.ndarray:
    pixels, _ = read_scene_linear(path)
    return pixels.reshape((-1,) + pixels.shape[-3:])[0]


def thumbnail(files: list[Path]) -> Image.Image:
    """The card picture for a run's downloaded files."""
    floats = [path for path in files if path.suffix.lower() in (".exr", ".npy")]
    if not floats:
        pictures = [path for path in files if path.suffix.lower() in (".png", ".jpg", ".jpeg")]
        if not pictures:
            raise RuntimeError(f"the run saved no picture to show: {files}")
        return _panel(Image.open(pictures[0]).convert("RGB"), pictures[0].stem)
    frames = [_first_frame(path) for path in floats]
    peaks = [exposure.hdr_stats(frame).peak_channel for frame in frames]
    brightest = frames[int(np.argmax(peaks))][..., :3]
    pull = -math.ceil(math.log2(max(max(peaks), 1.0)))
    panels = [_panel(display_srgb(brightest), "as exposed")]
    if pull < 0:
        panels.append(_panel(display_srgb(exposure.apply_stops(brightest, pull)),
                             f"{pull:+d} stops: peak {max(peaks):.4g} at display white"))
    return _stack(panels)


def card_jpeg(picture: Image.Image) -> bytes:
    """The card as JPEG at :data:`JPEG_QUALITY`, or lower until it fits :data:`CARD_BYTES`."""
    for quality in range(JPEG_QUALITY, 0, -10):
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality, optimize=True)
        if buffer.tell() <= CARD_BYTES:
            break
    return buffer.getvalue()


def main() -> int:
    with tempfile.TemporaryDirectory() as base:
        server = comfyui.start(Path(base))
        try:
            prepare_server(server.input_dir, server.models_dir)
            for name, paths in shipped_workflows().items():
                if not paths["ui"].exists():
                    print(f"skipped {name}: no UI file (run scripts/export_ui_workflows.py)")
                    continue
                result = queue_workflow(paths["ui"], server.url, out_dir=Path(base) / name)
                target = paths["thumbnail"]
                target.write_bytes(card_jpeg(thumbnail(result.files)))
                print(f"wrote {target.relative_to(SHIPPED_WORKFLOWS.parent)} "
                      f"({target.stat().st_size // 1024} KB)")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

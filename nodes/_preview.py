"""The ``hdr_view`` UI message the browser's HDR viewer (js/hdr_viewer.js) reads.

For the first :data:`MAX_FRAMES` frames of a batch the node writes, into ComfyUI's temp
folder, a float16 ``.npy`` proxy of the scene-linear values (``[h, w, 3]`` for one frame,
``[frames, h, w, 3]`` for several) and an 8-bit PNG of a display rendering (the frames
stacked top to bottom), and returns their names for ``/view``:

    {"hdr_view": [{"float": {"filename", "subfolder", "type": "temp"},
                   "sdr": {...same...}, "width", "height", "frames", "shown_frames",
                   "dtype": "float16", "colourspace", "label"}]}
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import torch

from ..hdr.preview import float_proxy, sdr_picture, srgb_picture_of_proxy

MAX_EDGE = 1024
"""Long edge of a single frame's proxy (pixels)."""
MAX_FRAMES = 48
"""Frames of a batch the viewer can step through (the first ones)."""
CLIP_EDGE = 512
"""Long edge of each frame's proxy when more than :data:`FULL_EDGE_FRAMES` are sent (48
frames of 512 x 288 half floats: 42 MB)."""
FULL_EDGE_FRAMES = 4
"""Up to this many frames keep the single-frame :data:`MAX_EDGE`."""


def _temp_entry(suffix: str) -> tuple[Path, dict]:
    import folder_paths

    folder = Path(folder_paths.get_temp_directory()) / "hdr_view"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"hdr_view_{uuid.uuid4().hex[:16]}{suffix}"
    return folder / name, {"filename": name, "subfolder": "hdr_view", "type": "temp"}


def hdr_view(scene_linear: torch.Tensor, display: torch.Tensor | None = None, *,
             colourspace: str = "Linear Rec.709 (sRGB)", label: str = "") -> dict:
    """UI message for the viewer: scene-linear batch [B,H,W,C] (+ its display rendering)."""
    from PIL import Image

    shown = min(int(scene_linear.shape[0]), MAX_FRAMES)
    edge = MAX_EDGE if shown <= FULL_EDGE_FRAMES else CLIP_EDGE
    proxies = np.stack([float_proxy(frame, edge) for frame in scene_linear[:shown]])
    float_path, float_entry = _temp_entry(".npy")
    np.save(float_path, proxies[0] if shown == 1 else proxies)

    height, width = proxies.shape[1:3]
    pictures = []
    for index, proxy in enumerate(proxies):
        if display is None:
            picture = srgb_picture_of_proxy(proxy)
        else:
            picture = sdr_picture(display[index])
            if picture.shape[:2] != (height, width):
                picture = np.asarray(Image.fromarray(picture).resize((width, height),
                                                                     Image.BOX))
        pictures.append(picture)
    sdr_path, sdr_entry = _temp_entry(".png")
    Image.fromarray(np.concatenate(pictures)).save(sdr_path, compress_level=1)
    return {"hdr_view": [{
        "float": float_entry, "sdr": sdr_entry, "width": width, "height": height,
        "source_width": int(scene_linear.shape[2]), "source_height": int(scene_linear.shape[1]),
        "frames": int(scene_linear.shape[0]), "shown_frames": shown, "dtype": "float16",
        "colourspace": colourspace, "label": label,
    }]}


CORE_EXR_NODE = "SaveImageAdvanced"
"""ComfyUI's own node that writes EXRs and reports them under ``images`` (ComfyUI 0.33's
comfy_extras/nodes_images.py, "Save Image (Advanced)")."""


def core_image_entries(files: list[dict]) -> dict:
    """``{"images": files}`` where the running ComfyUI's own nodes report EXRs that way, else
    ``{}``.

    Frontends 1.45+ list an ``images`` entry named ``.exr`` in Media Assets and open it in
    their HDR viewer ("Open in HDR Viewer"). Older ones (1.32.9, ComfyUI 0.3.75's) try to
    decode it as a picture: "Image failed to load" in the queue panel. The server cannot
    see the browser's frontend, but a release whose core writes EXRs under ``images`` ships
    a frontend that shows them, so the pack's EXRs are reported exactly where core's are.
    """
    comfy_nodes = sys.modules.get("nodes")  # ComfyUI's node registry, present in the server
    core = getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {})
    return {"images": files} if CORE_EXR_NODE in core else {}

"""The ``hdr_view`` UI message the browser's HDR viewer (js/hdr_viewer.js) reads.

For the first frame of a batch the node writes, into ComfyUI's temp folder, a float16
``.npy`` proxy of the scene-linear values and an 8-bit PNG of a display rendering, and
returns their names for ``/view``:

    {"hdr_view": [{"float": {"filename", "subfolder", "type": "temp"},
                   "sdr": {...same...}, "width", "height", "frames", "dtype": "float16",
                   "colourspace", "label"}]}
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import torch

from ..hdr.preview import float_proxy, sdr_picture, srgb_picture

MAX_EDGE = 1024


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

    frame = scene_linear[0]
    proxy = float_proxy(frame, MAX_EDGE)
    float_path, float_entry = _temp_entry(".npy")
    np.save(float_path, proxy)

    height, width = proxy.shape[:2]
    if display is None:
        picture = srgb_picture(torch.from_numpy(proxy.astype(np.float32)))
    else:
        picture = sdr_picture(display[0])
        if picture.shape[:2] != (height, width):
            picture = np.asarray(Image.fromarray(picture).resize((width, height), Image.BOX))
    sdr_path, sdr_entry = _temp_entry(".png")
    Image.fromarray(picture).save(sdr_path, compress_level=1)
    return {"hdr_view": [{
        "float": float_entry, "sdr": sdr_entry, "width": width, "height": height,
        "source_width": int(frame.shape[1]), "source_height": int(frame.shape[0]),
        "frames": int(scene_linear.shape[0]), "dtype": "float16",
        "colourspace": colourspace, "label": label,
    }]}

"""Input checks and ComfyUI plumbing shared by the node classes.

Errors are ``ValueError``s that name the node input and the fix; ComfyUI shows them on the
node. ComfyUI modules (``folder_paths``) are imported inside functions, so importing the
pack never needs ComfyUI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

CATEGORY_COLOUR = "HDR/colour"
CATEGORY_ANALYSIS = "HDR/analysis"
CATEGORY_IO = "HDR/io"
CATEGORY_CHARTS = "HDR/charts"


def require_image(image, input_name: str = "image", node: str = "", *,
                  finite: bool = True) -> torch.Tensor:
    """Check a ComfyUI IMAGE: [B, H, W, C] float, B >= 1, C 3 or 4, finite. Returns it.

    ``finite=False`` lets NaN/Inf through for nodes that report them rather than refuse.
    """
    where = f"{node}: " if node else ""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{where}{input_name} must be an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4:
        raise ValueError(f"{where}{input_name} must be an IMAGE [batch, height, width, channels], "
                         f"got shape {tuple(image.shape)}")
    if image.shape[0] == 0:
        raise ValueError(f"{where}{input_name} is an empty batch (0 frames); "
                         "connect a node that outputs at least one image")
    if image.shape[-1] not in (3, 4):
        raise ValueError(f"{where}{input_name} has {image.shape[-1]} channels; RGB (3) or RGBA (4) "
                         "is needed: split other layers off before this node")
    if not image.is_floating_point():
        raise ValueError(f"{where}{input_name} has dtype {image.dtype}; a float IMAGE is needed")
    # min and max propagate NaN and hold any Inf: one pass, no mask, for the common case.
    if finite and image.numel() and not bool(torch.stack(torch.aminmax(image.detach()))
                                             .isfinite().all()):
        bad = ~torch.isfinite(image)
        nan = int(torch.isnan(image).sum())
        inf = int(bad.sum()) - nan
        raise ValueError(
            f"{where}{input_name} contains NaN at {nan} and Inf at {inf} values; check the "
            "upstream decode precision (run the VAE in float32) or the curve settings"
        )
    return image


def split_alpha(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RGB and (optional) alpha of an IMAGE; colour maths touches RGB only."""
    if image.shape[-1] == 4:
        return image[..., :3], image[..., 3:]
    return image, None


def join_alpha(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    return rgb if alpha is None else torch.cat([rgb, alpha.to(rgb.dtype)], dim=-1)


_DRIVE = re.compile(r"^[A-Za-z]:")


def output_path_for(filename_prefix: str, width: int, height: int) -> tuple[Path, str, int, str]:
    """Folder, file stem, next free counter and subfolder for ``filename_prefix``.

    Follows ComfyUI's SaveImage counter rule (``prefix_00001_``); refuses prefixes that leave
    the output folder (``..``, absolute paths, drive letters).
    """
    import folder_paths

    prefix = filename_prefix.strip()
    if not prefix:
        raise ValueError("filename_prefix is empty; give a name such as 'hdr/shot010'")
    if os.path.isabs(prefix) or _DRIVE.match(prefix) or ".." in Path(prefix).parts \
            or ".." in prefix.replace("\\", "/").split("/"):
        raise ValueError(
            f"filename_prefix {filename_prefix!r} points outside ComfyUI's output folder; "
            "use a relative name like 'hdr/shot010' (subfolders are allowed, '..' and absolute "
            "paths are not)"
        )
    output_dir = folder_paths.get_output_directory()
    folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, output_dir, width, height
    )
    folder_path = Path(folder)
    if Path(os.path.commonpath([folder_path.resolve(), Path(output_dir).resolve()])) \
            != Path(output_dir).resolve():
        raise ValueError(f"filename_prefix {filename_prefix!r} resolves outside the output folder")
    folder_path.mkdir(parents=True, exist_ok=True)
    return folder_path, stem, counter, subfolder

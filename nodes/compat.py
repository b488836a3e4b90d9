"""Refuse, at load time, a ComfyUI the pack has not been proven on.

Inside ComfyUI the pack checks the server's release (``comfyui_version.__version__``) and the
ComfyUI APIs its nodes call. An older release, or one where a needed API is gone, stops the
pack from loading with a message naming the version and what to upgrade: ComfyUI then lists
the pack under "import failed" with that text instead of running nodes that could write wrong
HDR. Outside ComfyUI (the training CLI, the tests' unit layer) nothing is checked.
"""

from __future__ import annotations

import importlib
import re
import sys

# The oldest release the test suite runs (harness/benches.py, OLDEST_COMFYUI).
OLDEST_SUPPORTED = (0, 3, 75)
# Every ComfyUI module attribute the nodes call (grep nodes/ for comfy.* and folder_paths.*).
NEEDED_APIS = {
    "comfy.sd": ("VAE", "load_diffusion_model"),
    "comfy.model_management": ("get_torch_device", "load_models_gpu"),
    "comfy.model_patcher": ("ModelPatcher",),
    "comfy.patcher_extension": ("WrappersMP",),
    "comfy.sample": ("sample", "prepare_noise", "fix_empty_latent_channels"),
    "comfy.samplers": ("KSampler",),
    "comfy.supported_models": ("QwenImage",),
    "comfy.utils": ("ProgressBar", "load_torch_file", "state_dict_prefix_replace",
                    "calculate_parameters", "weight_dtype"),
    "folder_paths": ("add_model_folder_path", "folder_names_and_paths", "get_annotated_filepath",
                     "get_filename_list", "get_folder_paths", "get_full_path",
                     "get_full_path_or_raise", "get_input_directory", "get_output_directory",
                     "get_save_image_path", "get_temp_directory"),
}


class UnsupportedComfyUI(RuntimeError):
    """The running ComfyUI is older than the pack supports, or lacks an API it needs."""


def parse_version(text: str) -> tuple[int, ...]:
    """'0.33.0' -> (0, 33, 0); suffixes such as '+cu128' or 'rc1' are ignored."""
    parts = []
    for piece in text.split("+", 1)[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):  # '0rc1': the release number ends here
            break
    return tuple(parts)


def running_release() -> str | None:
    """The running ComfyUI's release, or None outside ComfyUI."""
    module = sys.modules.get("comfyui_version")
    if module is None and "comfy" in sys.modules:
        try:
            module = importlib.import_module("comfyui_version")
        except ImportError:
            return "unknown (no comfyui_version.py)"
    return getattr(module, "__version__", None) if module else None


def check(release: str | None = None) -> str | None:
    """Raise :class:`UnsupportedComfyUI` unless the running ComfyUI is supported; returns its
    release (None outside ComfyUI)."""
    release = release if release is not None else running_release()
    if release is None:
        return None
    oldest = ".".join(map(str, OLDEST_SUPPORTED))
    if parse_version(release) < OLDEST_SUPPORTED:
        raise UnsupportedComfyUI(
            f"ComfyUI-HDR needs ComfyUI {oldest} or newer; this is ComfyUI {release}. "
            "Update ComfyUI (git pull, or ComfyUI-Manager > Update ComfyUI) and restart.")
    missing = []
    for module_name, names in NEEDED_APIS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    if missing:
        raise UnsupportedComfyUI(
            f"ComfyUI {release} lacks what ComfyUI-HDR calls: {', '.join(missing)}. The pack is "
            f"tested on ComfyUI {oldest} to 0.33.0; update ComfyUI-HDR (git pull in "
            "custom_nodes/comfyui_hdr) or use a tested ComfyUI release.")
    return release

"""ComfyUI-HDR: scene-referred HDR for ComfyUI.

This folder is both a ComfyUI custom-node folder (ComfyUI imports this file by path) and
the installed package ``comfyui_hdr``. Importing it never imports ComfyUI: the node
classes use ComfyUI's classic node style, which needs no ComfyUI module at import time.
"""

from .nodes.compat import check as _check_comfyui

_check_comfyui()  # inside an unsupported ComfyUI: stop here with what to upgrade

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
from .nodes.routes import register_routes  # noqa: E402

WEB_DIRECTORY = "./js"

register_routes()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

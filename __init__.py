"""ComfyUI-HDR: scene-referred HDR for ComfyUI.

This folder is both a ComfyUI custom-node folder (ComfyUI imports this file by path) and
the installed package ``comfyui_hdr``. Importing it never imports ComfyUI: the node
classes use ComfyUI's classic node style, which needs no ComfyUI module at import time.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.routes import register_routes

WEB_DIRECTORY = "./js"

register_routes()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

"""HTTP routes the pack's frontend code uses; registered only inside a running ComfyUI.

``GET /comfyui_hdr/ocio?config=<menu entry>`` -> the config's colourspaces, displays, views
per display and looks, so js/ocio_widgets.js can narrow the widget menus to that config.
"""

from __future__ import annotations

import sys


def register_routes() -> bool:
    """Add the routes to ComfyUI's server; a no-op (False) outside ComfyUI."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    from aiohttp import web

    from .ocio_nodes import config_names

    @instance.routes.get("/comfyui_hdr/ocio")
    async def ocio_names(request):
        choice = request.query.get("config", "")
        try:
            return web.json_response(config_names(choice))
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)

    return True

"""Write the UI-format twin of every ``workflows/api/*.json`` through the real frontend.

The frontend's own ``app.loadApiJson`` builds the graph and ``app.graph.serialize()``
writes it, so the UI files are exactly what an artist's ComfyUI would save.

    .venv/bin/python scripts/export_ui_workflows.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from comfyui_hdr.harness import comfyui
from comfyui_hdr.harness.browser import comfy_page
from comfyui_hdr.harness.example_inputs import prepare_server
from comfyui_hdr.harness.workflow import shipped_workflows

WORKFLOWS = Path(__file__).resolve().parent.parent / "example_workflows"

# Nodes that grow after loading or running get that height reserved before the layout, so
# they never cover the node below: the HDR viewer (js/hdr_viewer.js) and Load Image's
# picture preview.
VIEWER_HEIGHT = 460
GROWING_NODES = {"HDRPreview": VIEWER_HEIGHT, "HDRSaveEXR": VIEWER_HEIGHT,
                 "HDROCIODisplayPreview": VIEWER_HEIGHT, "HDRVAEDecode": VIEWER_HEIGHT,
                 "LoadImage": 256}

SERIALIZE_JS = """
async ([api, name, growing]) => {
  await app.loadApiJson(api, name);
  for (const node of app.graph.nodes) node.size[1] += growing[node.type] ?? 0;
  app.graph.arrange?.(80);
  // Through JSON so undefined fields are dropped (the frontend's schema refuses nulls).
  return JSON.parse(JSON.stringify(app.graph.serialize()));
}
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as base:
        server = comfyui.start(Path(base))
        prepare_server(server.input_dir, server.models_dir)  # the menus hold the names
        try:
            with comfy_page(server.url) as page:
                for name, paths in shipped_workflows().items():
                    api_file = paths["api"]
                    graph = page.evaluate(SERIALIZE_JS, [json.loads(api_file.read_text()), name,
                                                         GROWING_NODES])
                    paths["ui"].write_text(json.dumps(graph, indent=1) + "\n")
                    print(f"wrote {paths['ui'].relative_to(WORKFLOWS.parent)}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

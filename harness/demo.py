"""The README's demo: a real ComfyUI server runs a shipped HDR workflow over its HTTP API.

    bash scripts/demo.sh            (sets up the venv and ComfyUI, then runs this)
    python -m comfyui_hdr.harness.demo [--keep-server] [--workflow NAME]

It starts ComfyUI on a free loopback port with its folders under ``demo-output/``, queues
``workflows/api/<NAME>.json``, follows progress over the websocket, reads back every float
array the graph saved, prints its peak and headroom, and stops the server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..hdr import exposure
from . import comfyui
from .client import ComfyClient
from .workflow import load_workflow

WORKFLOWS = comfyui.PACK_ROOT / "workflows"
DEFAULT_BASE = comfyui.PACK_ROOT / "demo-output"


def run(workflow: str, base: Path, keep_server: bool) -> int:
    prompt = load_workflow(workflow)
    print(f"starting ComfyUI {comfyui.COMFYUI_VERSION} (CPU) with its folders in {base} ...")
    server = comfyui.start(base)
    try:
        client = ComfyClient(server.url)
        print(f"queueing workflows/api/{workflow}.json on {server.url}")
        result = client.run(prompt)
        executed = [e for e in result.events if e["type"] == "executed"]
        print(f"done: {len(executed)} output nodes ran")
        for node_id, output in sorted(result.outputs.items()):
            for entry in output.get("hdr_arrays", []):
                path = server.output_dir / entry["subfolder"] / entry["filename"]
                stats = exposure.hdr_stats(np.load(path))
                title = prompt[node_id].get("_meta", {}).get("title", node_id)
                print(f"\n{title}: {path}\n  " + stats.as_text().replace("\n", "\n  "))
        if keep_server:
            print(f"\nserver left running at {server.url} (pid {server.process.pid}); open it and "
                  f"drag workflows/{workflow}.json onto the canvas; stop it with: "
                  f"python -m comfyui_hdr.harness stop {server.process.pid}")
            return 0
    except BaseException:
        print(server.log()[-3000:], file=sys.stderr)
        server.stop()
        raise
    server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", default="logc4_round_trip")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE)
    parser.add_argument("--keep-server", action="store_true",
                        help="leave the server running to open it in a browser")
    args = parser.parse_args(argv)
    return run(args.workflow, args.base, args.keep_server)


if __name__ == "__main__":
    sys.exit(main())

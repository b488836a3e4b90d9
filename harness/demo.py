"""The README's demo: a diffusion sampler inside a real ComfyUI writes a scene-linear EXR.

    bash scripts/demo.sh            (sets up the venv and ComfyUI, then runs this)
    python -m comfyui_hdr.harness.demo [--keep-server] [--base DIR]

On first run it builds the demo's models under ``<base>/models`` (a tiny HDR VAE trained
for a few CPU seconds on procedural HDR scenes, and the tiny widened DiT; see
:mod:`.demo_models`); a second run reuses them. It then starts ComfyUI on a free loopback
port, queues ``workflows/api/demo_hdr_scene.json`` (Procedural HDR Scene -> HDR VAE Encode
-> KSampler -> HDR VAE Decode -> Save EXR + Save Ultra HDR JPEG + HDR Stats) with a
progress bar, prints the output paths, the peak and the stops above diffuse white, and
the URL of the same workflow in the browser, then stops the server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..hdr import exposure, exr
from . import comfyui
from .benches import NEWEST
from .client import ComfyClient
from .demo_models import build_demo_models
from .workflow import load_workflow

DEMO_WORKFLOW = "demo_hdr_scene"
DEFAULT_BASE = comfyui.PACK_ROOT / "demo-output"


def _progress(event: dict) -> None:
    if event["type"] == "progress":
        data = event["data"]
        done = int(30 * data["value"] / max(1, data["max"]))
        print(f"\r  sampling [{'#' * done}{'.' * (30 - done)}] {data['value']}/{data['max']}",
              end="", flush=True)
    elif event["type"] == "executing" and event["data"].get("node") is None:
        print()


def run_demo(client: ComfyClient, output_dir: Path) -> dict:
    """Queue the demo workflow on a running server whose models folder holds the demo
    models; returns ``{"exr": path, "ultrahdr": path, "stats": HDRStats}``."""
    result = client.run(load_workflow(DEMO_WORKFLOW), on_event=_progress)
    outputs = result.outputs

    def saved(node: str, key: str) -> Path:
        (entry,) = outputs[node][key]
        return output_dir / entry["subfolder"] / entry["filename"]

    exr_path = saved("9", "exr_files")
    stats = exposure.hdr_stats(exr.read_exr(exr_path).pixels)
    return {"exr": exr_path, "ultrahdr": saved("10", "images"), "stats": stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE,
                        help="folder for ComfyUI's models/input/output of the demo")
    parser.add_argument("--keep-server", action="store_true",
                        help="leave the server running to open it in a browser")
    args = parser.parse_args(argv)
    models = args.base / "models"
    print(f"building the demo models in {models} (first run only) ...")
    build_demo_models(models)
    print(f"starting {NEWEST.label} (CPU) with its folders in {args.base}")
    server = comfyui.start(args.base, bench=NEWEST)
    try:
        print(f"queueing workflows/api/{DEMO_WORKFLOW}.json on {server.url}")
        demo = run_demo(ComfyClient(server.url), server.output_dir)
        stats = demo["stats"]
        print(f"\nscene-linear EXR: {demo['exr']}\nUltra HDR JPEG:   {demo['ultrahdr']}")
        print(f"peak {stats.peak_luminance:.1f} = +{stats.peak_stops:.1f} stops over diffuse "
              "white (1.0)\n  " + stats.as_text().replace("\n", "\n  "))
        print(f"\nthe same graph in the browser: open {server.url} and drag "
              f"workflows/{DEMO_WORKFLOW}.json onto the canvas (or Templates > comfyui_hdr)")
        if args.keep_server:
            print(f"server left running (pid {server.process.pid}); stop it with: "
                  f"python -m comfyui_hdr.harness stop {server.process.pid}")
            return 0
    except BaseException:
        print(server.log()[-3000:], file=sys.stderr)
        server.stop()
        raise
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

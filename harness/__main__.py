"""Command line for the ComfyUI harness.

    python -m comfyui_hdr.harness install [--home DIR] [--comfyui 0.33.0|0.3.75|all]
                                          [--frontend VERSION ...] [--source TARBALL_OR_DIR]
    python -m comfyui_hdr.harness start BASE_DIR [--port N] [--comfyui V] [--frontend V]
    python -m comfyui_hdr.harness stop PID

``install`` with no --comfyui installs every tested bench (benches.TESTED).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import comfyui
from .benches import TESTED, Bench, bench, default_frontend


def _benches(release: str | None, frontends: list[str] | None) -> list[Bench]:
    if release in (None, "all"):
        return list(TESTED)
    return [Bench(release, frontend) for frontend in frontends or [default_frontend(release)]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyui_hdr.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install ComfyUI releases and frontends")
    install.add_argument("--home", type=Path, default=comfyui.DEFAULT_HOME)
    install.add_argument("--venv", type=Path, default=None,
                         help="venv to install into (default: the one running this command)")
    install.add_argument("--comfyui", default=None,
                         help="release to install (default: every tested bench)")
    install.add_argument("--frontend", action="append", default=None,
                         help="frontend version(s) for that release (repeatable)")
    install.add_argument("--source", type=Path, default=None,
                         help="ComfyUI 0.33.0 source tarball or folder "
                              "(default: ../shared/comfyui/ComfyUI-0.33.0.tar.gz)")
    start = commands.add_parser("start", help="start a server with its folders under BASE_DIR")
    start.add_argument("base", type=Path)
    start.add_argument("--home", type=Path, default=comfyui.DEFAULT_HOME)
    start.add_argument("--port", type=int, default=None)
    start.add_argument("--comfyui", default=None, help="release (default: the newest)")
    start.add_argument("--frontend", default=None, help="frontend version")
    stop = commands.add_parser("stop", help="stop a server by PID")
    stop.add_argument("pid", type=int)
    args = parser.parse_args(argv)

    if args.command == "install":
        python = str(args.venv / "bin" / "python") if args.venv else sys.executable
        source = args.source or (Path(os.environ["COMFYUI_HDR_SOURCE"])
                                 if os.environ.get("COMFYUI_HDR_SOURCE") else None)
        for each in _benches(args.comfyui, args.frontend):
            folder = comfyui.install(args.home, python, each.comfyui, (each.frontend,), source)
            print(f"{folder} ({each.label})")
    elif args.command == "start":
        chosen = bench(args.comfyui, args.frontend)
        server = comfyui.start(args.base, args.home, port=args.port, bench=chosen)
        print(f"{server.url} pid={server.process.pid} ({chosen.label})", flush=True)
    else:
        comfyui.stop_pid(args.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line for the ComfyUI harness.

    python -m comfyui_hdr.harness install [--home DIR]
    python -m comfyui_hdr.harness start BASE_DIR [--port N]   # prints URL and PID
    python -m comfyui_hdr.harness stop PID
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import comfyui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyui_hdr.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install ComfyUI 0.3.75 into this venv")
    install.add_argument("--home", type=Path, default=comfyui.DEFAULT_HOME)
    install.add_argument("--venv", type=Path, default=None,
                         help="venv to install into (default: the one running this command)")
    start = commands.add_parser("start", help="start a server with its folders under BASE_DIR")
    start.add_argument("base", type=Path)
    start.add_argument("--home", type=Path, default=comfyui.DEFAULT_HOME)
    start.add_argument("--port", type=int, default=None)
    stop = commands.add_parser("stop", help="stop a server by PID")
    stop.add_argument("pid", type=int)
    args = parser.parse_args(argv)

    if args.command == "install":
        python = str(args.venv / "bin" / "python") if args.venv else sys.executable
        print(comfyui.install(args.home, python))
    elif args.command == "start":
        server = comfyui.start(args.base, args.home, port=args.port)
        print(f"{server.url} pid={server.process.pid}", flush=True)
    else:
        comfyui.stop_pid(args.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())

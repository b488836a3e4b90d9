"""``comfyui-hdr``: drive a running ComfyUI headless, or serve the pack to coding agents.

    comfyui-hdr queue WORKFLOW.json [--set NODE.INPUT=VALUE ...] [--server URL] [--out DIR]
                      [--batch overrides.csv] [--previews] [--timeout SECONDS]
    comfyui-hdr mcp [--server URL] [--out DIR] [--timeout SECONDS]

``queue`` accepts UI- or API-format workflows (or a shipped workflow's name), sets inputs
(``--set 1.sun_stops=12`` or by title: ``--set "HDR Test Chart.sun_stops=12"``), follows the
run on stderr, downloads every output file into ``--out`` and prints their paths on stdout.
A batch CSV has ``NODE.INPUT`` columns; each row is one run into ``<out>/row_0001``...

Exit status: 0 done; 1 ComfyUI refused, failed or interrupted the run, or its prompt was
deleted from the queue (the reason is printed); 2 bad workflow, override, timeout, batch
file or output folder; 3 no ComfyUI answers at ``--server``; 4 the run took longer than
``--timeout`` (it is cancelled on the server); 5 ComfyUI went away during the run (stopped
or crashed); 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .client import ComfyDisconnected, ComfyError, ComfyTimeout, ComfyUnreachable
from .queue import DEFAULT_OUT, queue_batch, queue_workflow, read_batch
from .workflow import WorkflowError, parse_override

DEFAULT_SERVER = os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188")
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_TIMEOUT, EXIT_DISCONNECTED = 1, 2, 3, 4, 5
EXIT_STATUS = ((WorkflowError, EXIT_BAD_INPUT), (ComfyTimeout, EXIT_TIMEOUT),
               (ComfyDisconnected, EXIT_DISCONNECTED), (ComfyUnreachable, EXIT_UNREACHABLE),
               (ComfyError, EXIT_FAILED))
"""The exit status of each kind of failure, most specific first (ComfyInterrupted is a
ComfyError: 1)."""


class ProgressLine:
    """A compact progress line on stderr: ``[3/7] Log Decode (to scene-linear) 40%``.

    On a terminal the line is rewritten in place; otherwise one line per node is printed.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.titles: dict[str, str] = {}
        self.executed = self.cached = 0
        self.current: str | None = None

    def _show(self, text: str) -> None:
        if self.live:
            self.stream.write(f"\r\033[K{text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: dict) -> None:
        kind, data = event["type"], event.get("data", {})
        if kind == "prompt":
            self.titles = {node_id: node.get("_meta", {}).get("title", node["class_type"])
                           for node_id, node in data["prompt"].items()}
            self.executed = self.cached = 0
            self.current = None
        total = len(self.titles)
        if kind == "execution_start":
            self._show(f"queued {data.get('prompt_id', '')[:8]}: {total} nodes")
        elif kind == "execution_cached":
            self.cached = len(data.get("nodes", []))
        elif kind == "executing" and data.get("node") is not None:
            self.current = data["node"]
            self.executed += 1
            self._show(f"[{self.cached + self.executed}/{total}] "
                       f"{self.titles.get(self.current, self.current)}")
        elif kind == "progress" and self.live:
            node = data.get("node", self.current)
            percent = 100 * data.get("value", 0) // max(data.get("max", 1), 1)
            self._show(f"[{self.cached + self.executed}/{total}] "
                       f"{self.titles.get(node, node)} {percent}%")
        elif kind == "execution_success":
            self._show(f"done: {self.executed} nodes ran, {self.cached} from cache")
            if self.live:
                self.stream.write("\n")


def _queue(args: argparse.Namespace) -> int:
    overrides = dict(parse_override(text) for text in args.set)
    options = {"previews": args.previews, "on_event": ProgressLine(), "timeout": args.timeout}
    if args.batch:
        rows = [{**row, **overrides} for row in read_batch(args.batch)]
        results = queue_batch(args.workflow, args.server, rows, args.out, **options)
    else:
        results = [queue_workflow(args.workflow, args.server, overrides, args.out, **options)]
    for result in results:
        for path in result.files:
            print(path)
    return 0


def _mcp(args: argparse.Namespace) -> int:
    try:
        from .mcp_server import serve
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] == "mcp":
            raise WorkflowError("the MCP server needs the mcp package (version 2): "
                                "pip install 'comfyui-hdr[mcp]'") from None
        raise
    serve(args.server, args.out, args.timeout)
    return 0


def _seconds(text: str) -> float:
    """An argparse type: a time limit in seconds, > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def _timeout_option(parser: argparse.ArgumentParser, what: str, then: str) -> None:
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help=f"longest {what} may take, from queueing to its end; past it the "
                             f"prompt is cancelled on the server and {then} (default: no limit)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfyui-hdr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    queue = commands.add_parser("queue", help="queue a workflow and download its outputs")
    queue.add_argument("workflow", help="UI- or API-format workflow JSON, or a shipped "
                                        "workflow's name (e.g. logc4_round_trip)")
    queue.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                       help="set an input; NODE is a node id or title (repeatable)")
    queue.add_argument("--server", default=DEFAULT_SERVER,
                       help="ComfyUI URL (default $COMFYUI_URL or %(default)s)")
    queue.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help="folder for downloaded outputs (default ./%(default)s)")
    queue.add_argument("--batch", type=Path, metavar="CSV",
                       help="one run per row; the header names NODE.INPUT columns")
    queue.add_argument("--previews", action="store_true",
                       help="also download temp previews (into OUT/previews)")
    _timeout_option(queue, "a run (each row of a batch)", "the exit status is 4")
    queue.set_defaults(handler=_queue)
    mcp = commands.add_parser("mcp", help="serve list_workflows, generate_hdr, hdr_stats and "
                                          "convert to an MCP client over stdio")
    mcp.add_argument("--server", default=DEFAULT_SERVER,
                     help="ComfyUI URL (default $COMFYUI_URL or %(default)s)")
    mcp.add_argument("--out", type=Path, default=DEFAULT_OUT,
                     help="folder for downloaded outputs (default ./%(default)s)")
    _timeout_option(mcp, "a generate_hdr run", "the tool returns an error")
    mcp.set_defaults(handler=_mcp)
    return parser


def _report(command: str, error: BaseException | str) -> None:
    """One line on stderr (after any progress line left open on a terminal)."""
    start = "\n" if sys.stderr.isatty() else ""
    print(f"{start}comfyui-hdr {command}: error: {' '.join(str(error).split())}",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (WorkflowError, ComfyError) as error:
        _report(args.command, error)
        return next(code for kind, code in EXIT_STATUS if isinstance(error, kind))
    except KeyboardInterrupt:
        _report(args.command, "interrupted (the server may still run the queued prompt)")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""An MCP server (stdio) that lets a coding agent make and inspect scene-linear HDR images.

    comfyui-hdr mcp --server http://127.0.0.1:8188 [--out DIR] [--timeout SECONDS]

Tools: ``list_workflows`` (the shipped graphs), ``generate_hdr`` (queue one on the running
ComfyUI through :func:`.queue.queue_workflow`, return the downloaded files with their HDR
statistics), ``hdr_stats`` (statistics of an EXR or ``.npy``) and ``convert`` (a transfer
curve and/or a gamut conversion, written to a new EXR beside the source). Images never pass
through the protocol: tools exchange file paths and numbers. A run that fails, is
interrupted, times out or loses its server comes back as a tool error with the reason.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..hdr import exposure, exr, exr_sequence, transfer
from ..hdr.gamut import GAMUTS, convert_gamut
from .client import ComfyError
from .queue import queue_workflow
from .workflow import describe_workflow, load_workflow, shipped_workflows

HDR_SUFFIXES = (".exr", ".npy")
CONVERT_DESCRIPTION = (
    "Encode scene-linear to a curve's code values (direction 'encode') or decode them back "
    "('decode'), and/or convert the gamut (from_gamut and to_gamut), writing a new float EXR "
    f"beside the source; returns its path. Curves: {', '.join(transfer.CURVES)}. "
    f"Gamuts: {', '.join(GAMUTS)}."
)
INSTRUCTIONS = (
    "ComfyUI-HDR makes scene-linear HDR images (1.0 = diffuse white, highlights far above "
    "1.0) in a running ComfyUI. Call list_workflows, then generate_hdr with a workflow name "
    "and overrides such as {'HDR Test Chart.sun_stops': 12}; it returns EXR/.npy paths and "
    "their peak, percentiles and stops above diffuse white. hdr_stats measures any EXR or "
    ".npy; convert applies a log/PQ/HLG curve or a gamut change and writes a new EXR."
)


def _anticipated(tool: Callable) -> Callable:
    """Report bad arguments and server failures to the agent as readable tool errors."""

    @functools.wraps(tool)
    def wrapper(*args, **kwargs):
        try:
            return tool(*args, **kwargs)
        except (ValueError, ComfyError, OSError) as error:
            raise ToolError(" ".join(str(error).split())) from error

    return wrapper


def read_scene_linear(path: str | Path, layer: str | None = None) -> tuple[np.ndarray, str]:
    """Pixels ``[..., H, W, C]`` of an EXR layer or a ``.npy`` array, and the layer read."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False), ""
    if path.suffix.lower() == ".exr":
        image = exr.read_exr(path, layer=layer)
        return image.pixels, image.layer
    raise ValueError(f"path must be an .exr or .npy file, got {path}")


def file_stats(path: str | Path, layer: str | None = None, gamut_name: str = "rec709",
               diffuse_white: float = 1.0) -> dict:
    """:func:`hdr.exposure.hdr_stats` of a file, JSON-ready, with a one-paragraph summary."""
    pixels, read_layer = read_scene_linear(path, layer)
    stats = exposure.hdr_stats(pixels, gamut=gamut_name, diffuse_white=diffuse_white)
    return {**stats.as_dict(), "shape": list(stats.shape), "layer": read_layer,
            "summary": stats.as_text()}


def _free_stem(folder: Path, stem: str) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... so no file (or frame of a sequence) is replaced."""
    candidate, number = stem, 1
    while any(folder.glob(f"{candidate}.exr")) or any(folder.glob(f"{candidate}_*_.exr")):
        number += 1
        candidate = f"{stem}_{number}"
    return candidate


def convert_file(path: str | Path, curve: str | None = None,
                 direction: Literal["encode", "decode"] = "encode",
                 from_gamut: str | None = None, to_gamut: str | None = None,
                 layer: str | None = None) -> list[Path]:
    """Apply a transfer curve and/or a gamut conversion; write float EXR(s) beside ``path``.

    Encoding converts the gamut first, then applies the curve to scene-linear light;
    decoding inverts the curve first, then converts the gamut. The new file is named after
    the source and the operation (``plate_logc4_encode.exr``) and never replaces a file.
    """
    if curve is None and to_gamut is None:
        raise ValueError("convert needs curve (e.g. 'logc4') and/or to_gamut (e.g. 'rec2020')")
    if direction not in ("encode", "decode"):
        raise ValueError(f"direction must be 'encode' or 'decode', got {direction!r}")
    if (from_gamut is None) != (to_gamut is None):
        raise ValueError("give both from_gamut and to_gamut (e.g. 'rec709' and 'rec2020')")
    path = Path(path).resolve()
    pixels, _ = read_scene_linear(path, layer)
    coding = transfer.get_curve(curve) if curve else None
    steps: list[tuple[str, Callable]] = []
    if to_gamut is not None:
        steps.append((f"{from_gamut}_to_{to_gamut}",
                      lambda rgb: convert_gamut(rgb, from_gamut, to_gamut)))
    if coding is not None:
        code = (f"{coding.name}_{direction}", getattr(coding, direction))
        steps.insert(len(steps) if direction == "encode" else 0, code)
    result = pixels[..., :3].astype(np.float32)
    for _, step in steps:
        result = np.asarray(step(result), dtype=np.float32)
    stem = _free_stem(path.parent, f"{path.stem}_" + "_".join(name for name, _ in steps))
    options = {"pixel_type": "float", "gamut": to_gamut, "metadata": {"comfyui_hdr:convert": (
        json.dumps({"source": path.name, "steps": [name for name, _ in steps]}))}}
    if result.ndim == 4 and len(result) > 1:
        return exr_sequence.write_exr_sequence(path.parent, stem, result, start_frame=1, **options)
    frame = result.reshape(result.shape[-3:])
    return [exr.write_exr(path.parent / f"{stem}.exr", frame, **options)]


def build_server(server: str, out_dir: str | Path, timeout: float | None = None) -> MCPServer:
    """The MCP server, its tools bound to the ComfyUI at ``server`` and the folder ``out_dir``;
    ``timeout`` is generate_hdr's default time limit in seconds (None: no limit)."""
    app = MCPServer("comfyui-hdr", instructions=INSTRUCTIONS)
    out_dir = Path(out_dir).resolve()

    @app.tool()
    @_anticipated
    def list_workflows() -> list[dict[str, str]]:
        """The workflows shipped with ComfyUI-HDR: name, template title, what it is for, its
        graph in one line, and its files."""
        return [{"name": name, "title": paths["title"], "description": paths["description"],
                 "graph": describe_workflow(load_workflow(paths["api"])),
                 "ui_file": str(paths["ui"]), "api_file": str(paths["api"])}
                for name, paths in shipped_workflows().items()]

    @app.tool()
    @_anticipated
    def generate_hdr(workflow: str, overrides: dict[str, Any] | None = None,
                     timeout_seconds: float | None = None) -> dict[str, Any]:
        """Run a workflow (a shipped name or a UI/API JSON path) on ComfyUI and return every
        downloaded file, with HDR statistics (peak, stops above diffuse white...) for EXR and
        .npy outputs. overrides: {"NODE.INPUT": value}, NODE a node id or title.
        timeout_seconds: the longest the run may take (it is cancelled past it); default the
        server's --timeout."""
        limit = timeout if timeout_seconds is None else timeout_seconds
        result = queue_workflow(workflow, server, overrides or {}, out_dir, timeout=limit)
        files = [{"path": str(path.resolve()),
                  **({"stats": file_stats(path)} if path.suffix.lower() in HDR_SUFFIXES
                     else {})} for path in result.files]
        return {"prompt_id": result.prompt_id, "files": files}

    @app.tool()
    @_anticipated
    def hdr_stats(path: str, layer: str | None = None, gamut: str = "rec709",
                  diffuse_white: float = 1.0) -> dict[str, Any]:
        """Peak, percentiles, headroom in stops and NaN/Inf counts of a scene-linear EXR layer
        or .npy array (luminance in the given gamut; 1.0 = diffuse white by default)."""
        return file_stats(path, layer, gamut, diffuse_white)

    @app.tool(description=CONVERT_DESCRIPTION)
    @_anticipated
    def convert(path: str, curve: str | None = None,
                direction: Literal["encode", "decode"] = "encode",
                from_gamut: str | None = None, to_gamut: str | None = None,
                layer: str | None = None) -> dict[str, list[str]]:
        paths = convert_file(path, curve, direction, from_gamut, to_gamut, layer)
        return {"paths": [str(written) for written in paths]}

    return app


def serve(server: str, out_dir: str | Path, timeout: float | None = None) -> None:
    """Serve the tools over stdio until the client closes the connection."""
    build_server(server, out_dir, timeout).run("stdio")

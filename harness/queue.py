"""Queue a workflow on a running ComfyUI, follow it, and download what it saved.

The Python API behind ``comfyui-hdr queue`` and the MCP server (it needs a running server):

    result = queue_workflow("workflows/logc4_round_trip.json", "http://127.0.0.1:8188",
                            overrides={"HDR Test Chart.sun_stops": 12})
    result.files  # [Path('comfyui-hdr-out/hdr/logc4_round_trip/chart_00001_.npy'), ...]

UI-format workflows are converted through the server's ``/object_info`` (see
:mod:`.workflow`) and queued with the workflow attached, as the browser does, so saved files
embed it. Every file an output node reports (any ``{"filename", "subfolder", "type"}`` entry
of its UI message: ``images``, ``exr_files``, ``hdr_arrays``...) is fetched through ``/view``;
the output folder mirrors the server's (``<out>/<subfolder>/<filename>``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..hdr.atomic import atomic_path
from .client import ComfyClient
from .workflow import (
    WorkflowError,
    apply_overrides,
    check_node_types,
    is_ui_format,
    load_workflow,
    ui_to_api,
)

DEFAULT_OUT = Path("comfyui-hdr-out")
PREVIEW_FOLDER = "previews"


@dataclasses.dataclass
class QueueResult:
    """One finished run: what was queued, what the server reported, what was downloaded."""

    prompt_id: str
    prompt: dict
    outputs: dict
    files: list[Path]
    events: list[dict]


def output_entries(outputs: Mapping) -> Iterator[dict]:
    """Every file entry (a dict with ``filename`` and ``type``) in a history's outputs, each
    file once (Save EXR reports its files under ``images`` and ``exr_files``)."""

    def walk(value: Any) -> Iterator[dict]:
        if isinstance(value, Mapping):
            if isinstance(value.get("filename"), str) and "type" in value:
                yield dict(value)
                return
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    seen = set()
    for node_output in outputs.values():
        for entry in walk(node_output):
            key = (entry["type"], entry.get("subfolder") or "", entry["filename"])
            if key not in seen:
                seen.add(key)
                yield entry


def check_writable(folder: Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (WorkflowError if not)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise WorkflowError(f"cannot write outputs to {folder}: {error.strerror or error}; "
                            "choose a writable folder with --out") from None
    return folder


def _local_path(out_dir: Path, entry: Mapping) -> Path:
    parts = [PREVIEW_FOLDER] if entry.get("type") != "output" else []
    parts += [part for part in Path(entry.get("subfolder") or "").parts if part not in ("..", "/")]
    return out_dir.joinpath(*parts, Path(entry["filename"]).name)


def download_outputs(client: ComfyClient, outputs: Mapping, out_dir: Path,
                     previews: bool = False) -> list[Path]:
    """Fetch every output file of a run into ``out_dir`` (temp previews too if ``previews``)."""
    paths = []
    for entry in output_entries(outputs):
        if entry["type"] != "output" and not previews:
            continue
        path = _local_path(Path(out_dir), entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = client.view(entry["filename"], entry.get("subfolder", ""), entry["type"])
        with atomic_path(path, overwrite=True) as temporary:
            temporary.write_bytes(data)
        paths.append(path)
    return paths


def prepare_prompt(workflow: str | os.PathLike | Mapping, object_info: Mapping,
                   overrides: Mapping[str, Any] | None = None) -> tuple[dict, dict | None]:
    """The API prompt to queue (converted if needed, overrides applied) and its extra_data."""
    graph = load_workflow(workflow)
    if is_ui_format(graph):
        prompt, extra = ui_to_api(graph, object_info), {"extra_pnginfo": {"workflow": graph}}
    else:
        check_node_types({node_id: node["class_type"] for node_id, node in graph.items()},
                         object_info)
        prompt, extra = graph, None
    return apply_overrides(prompt, overrides or {}, object_info), extra


def queue_workflow(workflow: str | os.PathLike | Mapping, server: str,
                   overrides: Mapping[str, Any] | None = None,
                   out_dir: str | os.PathLike = DEFAULT_OUT, *, previews: bool = False,
                   on_event: Callable[[dict], None] | None = None,
                   timeout: float | None = None) -> QueueResult:
    """Queue a workflow on the ComfyUI at ``server``, wait for it, download its outputs.

    Parameters
    ----------
    workflow
        A UI- or API-format workflow: a dict, a JSON path, or a shipped workflow's name.
    server
        The server's URL, e.g. ``http://127.0.0.1:8188``.
    overrides
        ``{"NODE.INPUT": value}``; NODE is a node id or its title. String values are parsed
        by the input's type (``"12"`` sets a number, text inputs keep the text).
    out_dir
        Local folder for the downloaded files (created; must be writable).
    previews
        Also download temp previews (into ``<out>/previews``).
    on_event
        Called first with ``{"type": "prompt", "data": {"prompt": <the API prompt>}}``, then
        with each websocket event of the run (for a progress display).
    timeout
        Seconds the run may take from queueing to its end (None: no limit); past it the
        prompt is cancelled on the server and ComfyTimeout raised.

    Returns
    -------
    QueueResult
        Raises WorkflowError for a bad workflow, override or folder, ComfyUnreachable when no
        server answers, ComfyError with the server's text when it refuses or fails,
        ComfyInterrupted when the run is interrupted or deleted from the queue, ComfyTimeout
        past ``timeout`` and ComfyDisconnected when the server goes away mid-run.
    """
    out_dir = check_writable(Path(out_dir))
    client = ComfyClient(server)
    prompt, extra = prepare_prompt(workflow, client.object_info(), overrides)
    if on_event is not None:
        on_event({"type": "prompt", "data": {"prompt": prompt}})
    run = client.run(prompt, extra, on_event, timeout=timeout)
    files = download_outputs(client, run.outputs, out_dir, previews)
    return QueueResult(run.prompt_id, prompt, run.outputs, files, run.events)


def read_batch(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a batch CSV: the header names ``NODE.INPUT`` columns; an empty cell is unset."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise WorkflowError(f"cannot read batch file {path}: {error.strerror}") from None
    columns = list(rows[0]) if rows else []
    bad = [column for column in columns if column is None or "." not in column]
    if not rows or bad:
        raise WorkflowError(f"batch file {path} needs a header of NODE.INPUT columns and at "
                            f"least one row (got columns {columns})")
    for number, row in enumerate(rows, start=1):
        if None in row:
            raise WorkflowError(f"batch file {path}, row {number}: more cells than header "
                                "columns; quote values that contain commas")
    return [{key: value for key, value in row.items() if value not in (None, "")}
            for row in rows]


def queue_batch(workflow: str | os.PathLike | Mapping, server: str,
                rows: list[Mapping[str, Any]], out_dir: str | os.PathLike = DEFAULT_OUT,
                **options: Any) -> list[QueueResult]:
    """One run per row of overrides, each downloaded into ``<out>/row_0001`` and so on.

    Every row is checked against the workflow before the first is queued.
    """
    out_dir = check_writable(Path(out_dir))
    client = ComfyClient(server)
    object_info = client.object_info()
    for number, row in enumerate(rows, start=1):
        try:
            prepare_prompt(workflow, object_info, row)
        except WorkflowError as error:
            raise WorkflowError(f"batch row {number}: {error}") from None
    return [queue_workflow(workflow, server, row, out_dir / f"row_{number:04d}", **options)
            for number, row in enumerate(rows, start=1)]

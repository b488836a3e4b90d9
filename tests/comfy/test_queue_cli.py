"""``comfyui-hdr queue`` against the real server: every shipped workflow, both formats,
overrides, batch CSV, and one clear line with a non-zero exit for each kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_hdr.harness import comfyui
from comfyui_hdr.harness.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNREACHABLE, main
from comfyui_hdr.harness.queue import queue_workflow
from comfyui_hdr.harness.workflow import shipped_workflows, ui_to_api
from comfyui_hdr.hdr import exr

pytestmark = pytest.mark.comfy

SHIPPED = shipped_workflows()
WITH_UI = sorted(name for name, paths in SHIPPED.items() if paths["ui"].exists())
# Attributes that embed the queued prompt and the UI graph: they differ by construction
# between a UI-format and an API-format run, every other header field must not.
EMBEDS_THE_GRAPH = {"comfyui:prompt", "comfyui:workflow"}


def _queue(*args: str) -> tuple[int, list[Path]]:
    """Run ``comfyui-hdr queue`` in this process; the exit code and the printed paths."""
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["queue", *args])
    return code, [Path(line) for line in stdout.getvalue().splitlines()]


def _pixels(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".exr":
        return {layer: exr.read_exr(path, layer=layer, dtype=None).pixels
                for layer in exr.list_layers(path)}
    if path.suffix == ".npy":
        return {"": np.load(path)}
    return {"": np.asarray(Image.open(path))}


def _header(path: Path) -> dict:
    if path.suffix != ".exr":
        return {}
    header = exr.read_exr(path).header
    return {key: value for key, value in header.items() if key not in EMBEDS_THE_GRAPH}


def _prefixes(name: str, folder: str) -> list[str]:
    """--set arguments sending every save node of a workflow into ``folder/``."""
    prompt = json.loads(SHIPPED[name]["api"].read_text())
    return [f"--set={node_id}.filename_prefix={folder}/{node['inputs']['filename_prefix']}"
            for node_id, node in prompt.items() if "filename_prefix" in node["inputs"]]


@pytest.mark.parametrize("name", WITH_UI)
def test_ui_workflow_converts_to_exactly_its_api_twin(object_info, name):
    ui_graph = json.loads(SHIPPED[name]["ui"].read_text())
    api_graph = json.loads(SHIPPED[name]["api"].read_text())
    assert ui_to_api(ui_graph, object_info) == api_graph


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_queue_runs_each_workflow_in_both_formats_with_identical_outputs(
        comfy_server, workflow_inputs, tmp_path, name):
    formats = {"api": SHIPPED[name]["api"]}
    if SHIPPED[name]["ui"].exists():
        formats["ui"] = SHIPPED[name]["ui"]
    downloaded = {}
    for fmt, path in formats.items():
        code, files = _queue(str(path), "--server", comfy_server.url,
                             "--out", str(tmp_path / fmt), *_prefixes(name, f"cli_{fmt}"))
        assert code == 0 and files, (fmt, files)
        for file in files:  # the download is the server's file, byte for byte
            relative = file.relative_to(tmp_path / fmt)
            assert file.read_bytes() == (comfy_server.output_dir / relative).read_bytes()
        downloaded[fmt] = {file.relative_to(tmp_path / fmt / f"cli_{fmt}"): file
                           for file in files}

    if "ui" in downloaded:
        assert sorted(downloaded["ui"]) == sorted(downloaded["api"])
        for relative, api_file in downloaded["api"].items():
            ui_file = downloaded["ui"][relative]
            ui_pixels, api_pixels = _pixels(ui_file), _pixels(api_file)
            assert ui_pixels.keys() == api_pixels.keys()
            for layer in api_pixels:  # same graph, same inputs: bit-identical pixels
                np.testing.assert_array_equal(ui_pixels[layer], api_pixels[layer])
            assert _header(ui_file) == _header(api_file)
        if any(file.suffix == ".exr" for file in downloaded["ui"].values()):
            first = next(f for f in downloaded["ui"].values() if f.suffix == ".exr")
            # Queued like the browser does: the EXR carries the UI graph it came from.
            assert "comfyui:workflow" in exr.read_exr(first).header


def test_set_by_title_parses_numbers_and_reaches_the_pixels(comfy_server, tmp_path):
    code, files = _queue("logc4_round_trip", "--server", comfy_server.url, "--out",
                         str(tmp_path), "--set", "HDR Test Chart.sun_stops=12.5",
                         "--set", "6.filename_prefix=cli_title/chart")
    (chart,) = [file for file in files if "cli_title" in str(file)]
    assert code == 0
    # The chart's sun is 0.18 * 2**sun_stops, stored as float32.
    assert np.load(chart).max() == np.float32(0.18 * 2**12.5)


def test_batch_csv_queues_one_run_per_row_into_its_own_folder(comfy_server, tmp_path):
    batch = tmp_path / "sweep.csv"
    batch.write_text("HDR Test Chart.sun_stops,6.filename_prefix\n"
                     "11,cli_batch/sun11\n"
                     "13.5,cli_batch/sun13_5\n")
    code, files = _queue("logc4_round_trip", "--server", comfy_server.url, "--out",
                         str(tmp_path / "out"), "--batch", str(batch))
    assert code == 0
    for row, stops in (("row_0001", 11.0), ("row_0002", 13.5)):
        (chart,) = [file for file in files if row in file.parts and "cli_batch" in file.parts]
        assert np.load(chart).max() == np.float32(0.18 * 2**stops)


def test_python_api_takes_a_dict_and_returns_prompt_and_paths(comfy_server, tmp_path):
    graph = json.loads(SHIPPED["logc4_round_trip"]["api"].read_text())
    events = []
    result = queue_workflow(graph, comfy_server.url, {"1.sun_stops": 9, "1.width": 128},
                            tmp_path, on_event=events.append)
    assert result.prompt["1"]["inputs"]["sun_stops"] == 9
    assert graph["1"]["inputs"]["sun_stops"] == 10.0  # the caller's dict is left alone
    assert [event["type"] for event in events][0] == "prompt"
    assert "execution_success" in [event["type"] for event in events]
    assert len(result.files) == 3 and all(path.exists() for path in result.files)
    assert all(np.load(path).shape[2] == 128 for path in result.files)


def _bad_graph(tmp_path: Path) -> Path:
    graph = json.loads(SHIPPED["logc4_round_trip"]["api"].read_text())
    graph["8"] = {"class_type": "HDRNotANode", "inputs": {}}
    graph["9"] = {"class_type": "FancyUpscaler", "inputs": {}}
    path = tmp_path / "needs_packs.json"
    path.write_text(json.dumps(graph))
    return path


@pytest.mark.parametrize(("case", "code", "expected"), [
    ("missing node types", EXIT_BAD_INPUT,
     ["'HDRNotANode' (node 8) from ComfyUI-HDR (this pack",
      "'FancyUpscaler' (node 9) from a custom node pack that provides FancyUpscaler"]),
    ("unknown node", EXIT_BAD_INPUT,
     ["no node 'Tone Curve'", "1 'HDR Test Chart' (HDRTestChart)", "7 'Save LogC4 code values'"]),
    ("unknown input", EXIT_BAD_INPUT,
     ["node 1 'HDR Test Chart' (HDRTestChart) has no input 'sun'",
      "width, height, gamut, sun_stops, frames"]),
    ("output folder is a file", EXIT_BAD_INPUT, ["cannot write outputs to", "Not a directory"]),
    ("refused by the server", EXIT_FAILED,
     ["ComfyUI refused the prompt", "HDRTestChart (node 1): Value 99999 bigger than max"]),
    ("failed on the server", EXIT_FAILED, ["HDRLoadEXR (node 1)", "missing_%05d_.exr"]),
])
def test_bad_input_gives_one_clear_line_and_a_non_zero_exit(
        comfy_server, tmp_path, capsys, case, code, expected):
    workflow, extra = "logc4_round_trip", []
    if case == "missing node types":
        workflow = str(_bad_graph(tmp_path))
    elif case == "unknown node":
        extra = ["--set", "Tone Curve.gamma=2"]
    elif case == "unknown input":
        extra = ["--set", "1.sun=12"]
    elif case == "output folder is a file":
        (tmp_path / "a_file").write_text("")
        extra = ["--out", str(tmp_path / "a_file" / "out")]
    elif case == "refused by the server":
        extra = ["--set", "1.width=99999"]
    else:
        workflow, extra = "exr_sequence_exposure_layers", ["--set",
                                                           "1.path=plates/missing_%05d_.exr"]
    extra = extra if "--out" in extra else [*extra, "--out", str(tmp_path / "out")]

    assert main(["queue", workflow, "--server", comfy_server.url, *extra]) == code
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("comfyui-hdr queue: error: ")
    for text in expected:
        assert text in message, message


def test_unreachable_server_names_the_url_without_a_traceback(tmp_path):
    url = f"http://127.0.0.1:{comfyui.free_port()}"  # a free port: nothing listens there
    process = subprocess.run(
        [sys.executable, "-m", "comfyui_hdr.harness.cli", "queue", "logc4_round_trip",
         "--server", url, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert process.returncode == EXIT_UNREACHABLE
    assert process.stderr.strip() == (
        f"comfyui-hdr queue: error: cannot reach ComfyUI at {url}: [Errno 111] Connection "
        "refused; start it, or pass the URL it prints (e.g. --server http://127.0.0.1:8188)")
    assert process.stdout == ""

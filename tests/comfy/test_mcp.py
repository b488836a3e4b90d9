"""``comfyui-hdr mcp`` through the ``mcp`` package's own stdio client, against the real server."""

from __future__ import annotations

import sys

import anyio
import numpy as np
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from comfyui_hdr.harness.workflow import shipped_workflows
from comfyui_hdr.hdr import exposure, exr, transfer

pytestmark = pytest.mark.comfy

SUN_STOPS = 12.5


async def _exercise(url: str, out_dir: str) -> dict:
    """Start the MCP server as a subprocess and call each tool the way an agent would."""
    server = StdioServerParameters(command=sys.executable, args=[
        "-m", "comfyui_hdr.harness.cli", "mcp", "--server", url, "--out", out_dir])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        answers = {"tools": [tool.name for tool in (await session.list_tools()).tools]}
        answers["list_workflows"] = await session.call_tool("list_workflows", {})
        answers["generate_hdr"] = generated = await session.call_tool("generate_hdr", {
            "workflow": "chart_ocio_preview_save_exr",
            "overrides": {"HDR Test Chart.sun_stops": SUN_STOPS,
                          "3.filename_prefix": "mcp/test_chart"}})
        assert not generated.is_error, generated.content
        answers["exr"] = next(f["path"] for f in generated.structured_content["files"]
                              if f["path"].endswith(".exr"))
        answers["convert"] = [await session.call_tool("convert", {"path": answers["exr"],
                                                                  "curve": "logc4"})
                              for _ in range(2)]
        answers["stats_of_nothing"] = await session.call_tool(
            "hdr_stats", {"path": f"{out_dir}/not_there.exr"})
    return answers


@pytest.fixture(scope="module")
def answers(comfy_server, tmp_path_factory) -> dict:
    return anyio.run(_exercise, comfy_server.url, str(tmp_path_factory.mktemp("mcp_out")))


def test_client_lists_the_four_tools(answers):
    assert sorted(answers["tools"]) == ["convert", "generate_hdr", "hdr_stats", "list_workflows"]


def test_list_workflows_names_every_shipped_workflow_with_a_description(answers):
    listed = answers["list_workflows"].structured_content["result"]
    assert [entry["name"] for entry in listed] == list(shipped_workflows())
    chart = next(entry for entry in listed if entry["name"] == "chart_ocio_preview_save_exr")
    assert chart["title"] == "HDR chart - OCIO display preview and EXR"
    assert chart["description"] == shipped_workflows()[chart["name"]]["description"]
    assert chart["graph"] == ("HDR Test Chart -> OCIO Display Preview (ACES 2.0 SDR) "
                              "-> Save EXR")


def test_generate_hdr_returns_an_exr_whose_stats_match_the_library(answers):
    (exr_file,) = [f for f in answers["generate_hdr"].structured_content["files"]
                   if f["path"].endswith(".exr")]
    expected = exposure.hdr_stats(exr.read_exr(exr_file["path"]).pixels).as_dict()
    reported = exr_file["stats"]
    assert {key: reported[key] for key in expected if key != "shape"} == \
        {key: value for key, value in expected.items() if key != "shape"}
    assert reported["shape"] == [288, 512, 3]
    # The sun is 0.18 * 2**12.5 = 1042.6, stored as half (the workflow's pixel type).
    assert reported["peak_channel"] == float(np.float16(0.18 * 2**SUN_STOPS))
    assert reported["peak_stops"] > 10


def test_convert_writes_a_new_logc4_exr_beside_the_source_each_time(answers):
    (first,), (second,) = [call.structured_content["paths"] for call in answers["convert"]]
    assert first.endswith("test_chart_00001__logc4_encode.exr")
    assert second.endswith("test_chart_00001__logc4_encode_2.exr")  # never overwritten
    scene_linear = exr.read_exr(answers["exr"]).pixels
    # Float EXR of the library's own encode: identical to the last bit.
    np.testing.assert_array_equal(exr.read_exr(first).pixels,
                                  transfer.logc4_encode(scene_linear))


def test_a_bad_path_comes_back_as_a_readable_tool_error(answers):
    result = answers["stats_of_nothing"]
    assert result.is_error
    assert "not_there.exr" in result.content[0].text

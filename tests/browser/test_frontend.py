"""The pack in the real ComfyUI frontend, driven by headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import comfyui_hdr
from comfyui_hdr.harness.browser import WAIT_FOR_RUN_JS, comfy_page, graph_to_api_prompt
from comfyui_hdr.harness.workflow import load_workflow, shipped_workflows

pytestmark = pytest.mark.browser

SHIPPED = shipped_workflows()
WORKFLOWS = Path(comfyui_hdr.__file__).parent / "example_workflows"


@pytest.fixture(scope="module")
def page(comfy_server, node_mode):
    with comfy_page(comfy_server.url, node_mode=node_mode) as page:
        yield page


def _inputs_without_links(prompt: dict) -> dict:
    return {node_id: (node["class_type"], node["inputs"]) for node_id, node in prompt.items()}


def test_frontend_registers_every_node_of_the_pack(page):
    registered = page.evaluate("Object.keys(LiteGraph.registered_node_types)")
    missing = set(comfyui_hdr.NODE_CLASS_MAPPINGS) - set(registered)
    assert not missing


def test_frontend_loads_our_extension_script(page):
    extensions = page.evaluate("app.extensions.map((e) => e.name)")
    assert "comfyui_hdr.text_output" in extensions


WORKFLOW_NAMES = sorted(shipped_workflows())


def test_every_shipped_workflow_has_both_formats():
    # The template browser shows every UI file; the catalogue names each one's API twin.
    ui_files = set(WORKFLOWS.glob("*.json"))
    assert ui_files == {SHIPPED[name]["ui"] for name in WORKFLOW_NAMES}
    assert all(SHIPPED[name]["api"].is_file() and SHIPPED[name]["thumbnail"].is_file()
               for name in WORKFLOW_NAMES)


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_ui_workflow_is_the_twin_of_its_api_file_and_runs(page, artifacts_dir, workflow_inputs,
                                                          name):
    ui_graph = json.loads(SHIPPED[name]["ui"].read_text())
    api_graph = load_workflow(name)
    page.evaluate("async (graph) => { await app.loadGraphData(graph); }", ui_graph)
    assert "Invalid workflow" not in page.inner_text("body")

    assert _inputs_without_links(graph_to_api_prompt(page)) == _inputs_without_links(api_graph)

    outcome = page.evaluate(WAIT_FOR_RUN_JS)
    assert outcome["type"] == "execution_success", outcome
    page.evaluate("app.canvas.setDirty(true, true)")
    page.screenshot(path=str(artifacts_dir / f"browser-{name}.png"))


# A sun this many stops over 0.18 is the chart's peak; one value per mode, so the second
# mode's run is not served from the server's cache.
SUN_STOPS = {"classic": 12, "vue": 11}


@pytest.mark.smoke
def test_stats_node_shows_its_text_after_a_run(page, node_mode):
    graph = json.loads(SHIPPED["logc4_round_trip"]["ui"].read_text())
    page.evaluate("async (graph) => { await app.loadGraphData(graph); }", graph)
    # Change one widget so the server really executes (an identical prompt is cached).
    stops = SUN_STOPS[node_mode]
    page.evaluate("""(stops) => {
        const chart = app.graph.nodes.find((n) => n.type === 'HDRTestChart');
        chart.widgets.find((w) => w.name === 'sun_stops').value = stops;
    }""", stops)
    assert page.evaluate(WAIT_FOR_RUN_JS)["type"] == "execution_success"
    # 0.18 * 2**12 = 737.28, 0.18 * 2**11 = 368.64.
    peak = f"peak {0.18 * 2**stops:.2f}"
    page.wait_for_function("""(peak) => {
        const stats = app.graph.nodes.find((n) => n.type === 'HDRStats');
        const text = stats?.widgets?.find((w) => w.name === 'hdr_text');
        return text && String(text.value).includes(peak);
    }""", arg=peak, timeout=30_000)
    # Shown, not only stored: a read-only text box in the node with every line visible.
    shown = page.evaluate("""() => {
        const stats = app.graph.nodes.find((n) => n.type === 'HDRStats');
        const box = stats.widgets.find((w) => w.name === 'hdr_text').element;
        return {readOnly: box.readOnly, value: box.value, rows: box.rows,
                height: box.clientHeight, lineHeight: parseFloat(getComputedStyle(box).lineHeight),
                visible: box.getClientRects().length > 0};
    }""")
    assert shown["readOnly"] and shown["visible"] and peak in shown["value"]
    assert shown["rows"] == min(12, len(shown["value"].split("\n")))
    assert shown["height"] >= shown["rows"] * shown["lineHeight"]


def test_ocio_menus_follow_the_chosen_config(page):
    graph = json.loads(SHIPPED["chart_ocio_preview_save_exr"]["ui"].read_text())
    page.evaluate("async (graph) => { await app.loadGraphData(graph); }", graph)
    options = """async (config) => {
        const node = app.graph.nodes.find((n) => n.type === 'HDROCIODisplayPreview');
        await node.hdrOcioReady;
        const w = (name) => node.widgets.find((x) => x.name === name);
        if (config) { w('config').value = config; await w('config').callback(config); }
        await node.hdrOcioReady;  // the menus' refresh for this config has finished
        return { colourspaces: w('colourspace').options.values, view: w('view').value };
    }"""
    studio = page.evaluate(options, None)
    assert "ARRI LogC4" in studio["colourspaces"]
    cg = page.evaluate(options, "ocio://cg-config-latest")
    assert "ARRI LogC4" not in cg["colourspaces"]  # the CG config has no camera spaces
    assert "Linear Rec.709 (sRGB)" in cg["colourspaces"]
    assert cg["view"] == "ACES 2.0 - SDR 100 nits (Rec.709)"

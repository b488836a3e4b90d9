"""The queue CLI's UI-to-API conversion against its oracle: the frontend's own graphToPrompt."""

from __future__ import annotations

import pytest

from comfyui_hdr.harness.browser import comfy_page
from comfyui_hdr.harness.workflow import ui_to_api

pytestmark = pytest.mark.browser

# A graph with every case the conversion must follow: a PrimitiveNode driving a widget, a
# Reroute, a bypassed node between two of ours, a muted node and a muted source, a seed with
# its value-control widget (KSampler), a combo with an upload button (LoadImage), a Note.
BUILD_GRAPH_JS = """
async () => {
  const graph = app.graph;
  graph.clear();
  const add = (type, x, y) => {
    const node = LiteGraph.createNode(type); node.pos = [x, y]; graph.add(node); return node;
  };
  const slot = (node, name) => node.inputs.findIndex((input) => input.name === name);
  const widget = (node, name) => node.widgets.find((w) => w.name === name);

  const chart = add('HDRTestChart', 0, 0);
  const primitive = add('PrimitiveNode', -300, 0);
  primitive.connect(0, chart, slot(chart, 'sun_stops'));
  primitive.widgets[0].value = 13.5;
  const reroute = add('Reroute', 320, 0);
  chart.connect(0, reroute, 0);
  const bypassed = add('HDRExposure', 480, 0);
  reroute.connect(0, bypassed, slot(bypassed, 'image'));
  bypassed.mode = 4;
  const encode = add('HDRLogEncode', 800, 0);
  bypassed.connect(0, encode, slot(encode, 'image'));
  widget(encode, 'curve').value = 'pq';
  const save = add('HDRSaveFloatArray', 1150, 0);
  encode.connect(0, save, slot(save, 'image'));
  const muted = add('HDRStats', 800, 320);
  chart.connect(0, muted, slot(muted, 'image'));
  muted.mode = 2;
  const mutedSource = add('HDRTestChart', 0, 420);
  mutedSource.mode = 2;
  const orphan = add('HDRSaveFloatArray', 320, 420);
  mutedSource.connect(0, orphan, slot(orphan, 'image'));
  const sampler = add('KSampler', 0, 760);
  widget(sampler, 'seed').value = 1234;
  widget(sampler, 'steps').value = 7;
  add('LoadImage', 420, 760);
  add('Note', 820, 760).widgets[0].value = 'a note for the artist';

  const { workflow, output } = await app.graphToPrompt();
  return { saved: JSON.parse(JSON.stringify(workflow)),
           serialized: JSON.parse(JSON.stringify(graph.serialize())), output };
}
"""


@pytest.fixture(scope="module")
def frontend_conversion(comfy_server, workflow_inputs) -> dict:
    with comfy_page(comfy_server.url) as page:
        return page.evaluate(BUILD_GRAPH_JS)


def test_the_oracle_graph_exercises_every_case(frontend_conversion):
    output = frontend_conversion["output"]
    types = sorted(node["class_type"] for node in output.values())
    # Muted, bypassed and browser-only nodes are not queued.
    assert types == ["HDRLogEncode", "HDRSaveFloatArray", "HDRSaveFloatArray", "HDRTestChart",
                     "KSampler", "LoadImage"]
    chart_id = next(i for i, node in output.items() if node["class_type"] == "HDRTestChart")
    encode = next(node for node in output.values() if node["class_type"] == "HDRLogEncode")
    assert encode["inputs"]["image"] == [chart_id, 0]  # through the Reroute and the bypass
    assert output[chart_id]["inputs"]["sun_stops"] == 13.5  # from the PrimitiveNode
    assert "control_after_generate" not in next(
        node for node in output.values() if node["class_type"] == "KSampler")["inputs"]


@pytest.mark.parametrize("form", ["saved", "serialized"])
def test_ui_to_api_matches_the_frontends_graph_to_prompt(frontend_conversion, object_info,
                                                         form):
    """Both the saved form (compressed widget slots) and the raw graph convert identically."""
    assert ui_to_api(frontend_conversion[form], object_info) == frontend_conversion["output"]

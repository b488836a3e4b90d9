"""Save EXR in the real frontend, in both node modes: its files in the frontend's own HDR
features, and the pack's widgets restored with the node outputs the frontend keeps.

- Core's HDR viewer ("Open in HDR Viewer", frontend 1.45+ with ComfyUI 0.33) opens the file and
  Media Assets lists it; the pack's viewer still shows; no node shows a broken picture for the
  .exr. Vue mode opens core's viewer from the node's "Open in HDR Viewer" placeholder, classic
  mode (whose canvas shows nothing for an EXR) from the file's Media Assets card. The oracle is
  the test chart as half floats, which is what the file stores.
- A workflow-tab switch rebuilds the graph's nodes; the frontend then hands the kept outputs to
  ``onNodeOutputsUpdated`` (js/hdr_outputs.js), as it does for core's own previews. A page
  reload keeps no outputs in frontend 1.58.1 (measured: ``app.nodeOutputs`` is empty and core's
  Preview Image is blank too); ComfyUI's history keeps them, and reopening a run loads its
  workflow and sets ``app.nodeOutputs``.

Every test runs the graph itself (served from the server's cache after the first time, the
outputs sent again all the same), so none depends on another.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from comfyui_hdr.harness.browser import WAIT_FOR_RUN_JS, comfy_page, switch_workflow_tab
from comfyui_hdr.hdr import charts

pytestmark = pytest.mark.browser

TAB = "save_exr_test"
SAVE = 2
CHART = {"class_type": "HDRTestChart",
         "inputs": {"width": 512, "height": 288, "gamut": "rec709", "sun_stops": 10.0,
                    "frames": 1}}


def graph(node_mode: str) -> dict:
    return {"1": CHART, str(SAVE): {"class_type": "HDRSaveEXR", "inputs": {
        "images": ["1", 0], "filename_prefix": f"frontend/save_exr_{node_mode}",
        "pixel_type": "half", "compression": "zip", "colourspace": "Linear Rec.709 (sRGB)",
        "overwrite": False}}}


# What the pack's widgets show: the entry, the measured peak, the canvas' pixel grid, a pixel,
# the text. Equal before and after = restored, not only present.
SHOWN_JS = f"""() => {{
    const node = app.graph.getNodeById({SAVE}), v = node.hdrViewer;
    const canvas = v.element.querySelector('.hdrv-image');
    return {{float: v.entry.float.filename, peak: v.stats.peak,
             grid: [canvas.width, canvas.height, canvas.clientWidth, canvas.clientHeight],
             sun: v.readPixel(440, 40), text: node.widgets.find((w) => w.name === 'hdr_text').value,
             viewers: document.querySelectorAll('.hdrv').length}};
}}"""
VIEWER_READY_JS = (f"() => {{ const v = app.graph.getNodeById({SAVE})?.hdrViewer; "
                   "return !!v?.stats && v.fitted; }")


@pytest.fixture(scope="module")
def page(comfy_server, node_mode):
    with comfy_page(comfy_server.url, node_mode=node_mode) as page:
        yield page


def run_graph(page, node_mode: str) -> dict:
    """Show the graph in tab TAB and run it; returns the execution_success detail."""
    page.evaluate("([g, name]) => app.loadApiJson(g, name)", [graph(node_mode), TAB])
    outcome = page.evaluate(WAIT_FOR_RUN_JS)
    assert outcome["type"] == "execution_success", outcome
    page.wait_for_function(VIEWER_READY_JS, timeout=90_000)  # loaded CI machines
    return outcome["detail"]


def stored_chart() -> np.ndarray:
    chart = charts.test_chart(width=512, height=288, gamut="rec709", sun_stops=10.0).numpy()
    return chart.astype(np.float16).astype(np.float64)


def pan_to(page, locator) -> None:
    """Pan the canvas so the element (inside a node) sits in the middle of the window."""
    box = locator.bounding_box()
    page.evaluate("""([x, y]) => {
        const ds = app.canvas.ds;
        ds.offset[0] += (innerWidth / 2 - x) / ds.scale;
        ds.offset[1] += (innerHeight / 2 - y) / ds.scale;
        app.canvas.setDirty(true, true);
    }""", [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => "
                  "requestAnimationFrame(done)))")


def sidebar_value(text: str, label: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[lines.index(label) + 1]

def test_core_hdr_viewer_opens_the_save_exr_file_and_reads_its_max(page, node_mode,
                                                                    artifacts_dir):
    run_graph(page, node_mode)
    (entry,) = page.evaluate(f"app.nodeOutputs['{SAVE}'].images")
    assert entry["filename"].endswith(".exr") and entry["type"] == "output"
    if node_mode == "vue":
        button = page.locator(f'[data-node-id="{SAVE}"] [data-testid=hdr-open-button]')
        pan_to(page, button)
        button.click()
    else:
        page.locator("[data-testid=assets-tab-button]").click()
        card = page.locator("[data-asset-id]", has_text=entry["filename"].removesuffix(".exr"))
        card.first.dblclick()
    sidebar = page.locator("[data-testid=hdr-viewer-sidebar]")
    title = page.get_by_role("dialog").get_by_text(entry["filename"])
    title.wait_for(timeout=30_000)
    page.wait_for_function("() => /Max\\s+-?[0-9]/.test(document.querySelector("
                           "'[data-testid=hdr-viewer-sidebar]')?.innerText ?? '')",
                           timeout=60_000)
    text = sidebar.inner_text()
    # The core viewer prints 4 decimals (three.js EXRLoader reads the half floats exactly):
    # the sun, 0.18 * 2**10 = 184.32, stored as half 184.375; the darkest channel -0.0439.
    stored = stored_chart()
    assert sidebar_value(text, "Max") == f"{stored.max():.4f}" == "184.3750"
    assert sidebar_value(text, "Min") == f"{stored.min():.4f}"
    assert sidebar_value(text, "Resolution").replace("\u00d7", "x") == "512 x 288"
    page.screenshot(path=str(artifacts_dir / f"core-hdr-viewer-{node_mode}.png"))
    page.keyboard.press("Escape")
    sidebar.wait_for(state="detached", timeout=30_000)


def test_the_pack_viewer_still_shows_and_no_picture_of_the_exr_is_broken(page, node_mode):
    run_graph(page, node_mode)
    shown = page.evaluate(f"""() => {{
        const node = app.graph.getNodeById({SAVE}), v = node.hdrViewer;
        const canvas = v.element.querySelector('.hdrv-image');
        const broken = [...document.querySelectorAll('img')].filter(
            (img) => img.complete && img.naturalWidth === 0 && img.src.includes('.exr')
                     && img.closest('[data-node-id="{SAVE}"]'));
        return {{float: v.entry.float.filename, grid: [canvas.width, canvas.height,
                 canvas.clientWidth, canvas.clientHeight], canvasImages: node.imgs?.length ?? 0,
                 brokenInNode: broken.length,
                 placeholder: !!document.querySelector(
                     '[data-node-id="{SAVE}"] [data-testid=hdr-open-button]')}};
    }}""")
    assert shown["float"].endswith(".npy") and shown["grid"] == [512, 288, 512, 288]
    assert shown["brokenInNode"] == 0
    # Classic mode: the canvas draws no picture for it (the frontend drops what it cannot
    # decode); Vue mode: core's "Open in HDR Viewer" placeholder instead of a picture.
    assert shown["canvasImages"] == 0
    assert shown["placeholder"] == (node_mode == "vue")


@pytest.mark.smoke
def test_viewer_and_text_come_back_after_a_workflow_tab_switch(page, node_mode):
    run_graph(page, node_mode)
    before = page.evaluate(SHOWN_JS)
    assert before["grid"] == [512, 288, 512, 288] and before["viewers"] == 1
    assert before["text"].startswith("wrote 1 EXR") and before["peak"] > 184

    page.evaluate("app.extensionManager.command.execute('Comfy.NewBlankWorkflow')")
    page.wait_for_function(f"app.extensionManager.workflow.activeWorkflow?.filename !== "
                           f"'{TAB}'", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('.hdrv').length === 0", timeout=30_000)
    switch_workflow_tab(page, TAB)
    page.wait_for_function(VIEWER_READY_JS, timeout=90_000)  # loaded CI machines
    assert page.evaluate(SHOWN_JS) == before


def test_viewer_and_text_come_back_from_the_history_after_a_reload(page, node_mode,
                                                                     comfy_server):
    prompt_id = run_graph(page, node_mode)["prompt_id"]
    before = page.evaluate(SHOWN_JS)
    with urllib.request.urlopen(f"{comfy_server.url}/history/{prompt_id}", timeout=30) as reply:
        kept = json.loads(reply.read())[prompt_id]

    page.reload(wait_until="domcontentloaded")
    page.wait_for_function("window.app && window.app.graph && window.LiteGraph",
                           timeout=120_000)
    # Reopen the run as the frontend's queue does: its workflow, then its outputs.
    page.evaluate("""async ([workflow, outputs]) => {
        await app.loadGraphData(workflow, true, false);
        app.nodeOutputs = outputs;
    }""", [kept["prompt"][3]["extra_pnginfo"]["workflow"], kept["outputs"]])
    page.wait_for_function(VIEWER_READY_JS, timeout=90_000)  # loaded CI machines
    assert page.evaluate(SHOWN_JS) == before

"""Drive the real ComfyUI frontend in headless Debian Chromium (Playwright, no browser download).

Used by the browser tests and by ``scripts/export_ui_workflows.py``; the recipe (flags,
tutorial setting, readiness checks) is the measured one in shared/COMFYUI_HARNESS.md.

A page shows the graph in one of two node modes: ``"classic"`` (LiteGraph draws the nodes on
its canvas) or ``"vue"`` (frontend "Nodes 2.0": nodes are Vue components, setting
``Comfy.VueNodes.Enabled``; the default of new desktop and cloud installs).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

NODE_MODES = ("classic", "vue")
# Frontend 1.32.9's Vue nodes (a beta) lay out no DOM widget: no viewer, no text. The pack
# supports Vue node mode from frontend 1.49 on, the frontends artists run it with.
VUE_NODES_SINCE = (1, 49)

# Resolves when the queued prompt ends: the last event's type and its data, or
# {type: 'timeout'} after RUN_TIMEOUT_MS so a lost event never hangs a test.
RUN_TIMEOUT_MS = 240_000
WAIT_FOR_RUN_JS = """
async () => {
  const { api } = await import('/scripts/api.js');
  return await new Promise((resolve) => {
    const done = (type) => (event) => resolve({ type, detail: event.detail ?? null });
    api.addEventListener('execution_success', done('execution_success'), { once: true });
    api.addEventListener('execution_error', done('execution_error'), { once: true });
    setTimeout(() => resolve({ type: 'timeout', detail: null }), RUN_TIMEOUT_MS);
    app.queuePrompt(0, 1);
  });
}
""".replace("RUN_TIMEOUT_MS", str(RUN_TIMEOUT_MS))


def chromium_path() -> str:
    path = shutil.which("chromium")
    if not path:
        raise RuntimeError("Debian's chromium is not installed: apt-get install -y chromium")
    return path


def node_modes(frontend: str) -> tuple[str, ...]:
    """The node modes the pack supports (and tests) on frontend version ``frontend``."""
    version = tuple(int(part) for part in frontend.split(".")[:2])
    return NODE_MODES if version >= VUE_NODES_SINCE else ("classic",)


def _set_setting(url: str, name: str, value) -> None:
    request = urllib.request.Request(
        f"{url}/api/settings/{name}", data=json.dumps(value).encode(),
        method="POST", headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).read()


@contextlib.contextmanager
def comfy_page(url: str, *, node_mode: str = "classic", width: int = 1600,
               height: int = 1000) -> Iterator:
    """A Playwright page with the ComfyUI frontend loaded and ready (``window.app.graph``),
    its nodes in ``node_mode`` (one of :data:`NODE_MODES`; a server-side setting, so one mode
    at a time per server)."""
    from playwright.sync_api import sync_playwright

    if node_mode not in NODE_MODES:
        raise ValueError(f"node_mode must be one of {NODE_MODES}, got {node_mode!r}")
    _set_setting(url, "Comfy.TutorialCompleted", True)
    _set_setting(url, "Comfy.VueNodes.Enabled", node_mode == "vue")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, \
            sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true');")
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_selector("canvas#graph-canvas", timeout=120_000)
            page.wait_for_function("window.app && window.app.graph && window.LiteGraph",
                                   timeout=120_000)
            # Events go to the websocket's client id: queue only once it has one.
            page.wait_for_function("window.comfyAPI?.api?.api?.socket?.readyState === 1 "
                                   "&& !!window.comfyAPI.api.api.clientId", timeout=60_000)
            vue = page.evaluate("app.extensionManager.setting.get('Comfy.VueNodes.Enabled')")
            if bool(vue) != (node_mode == "vue"):
                raise RuntimeError(f"the frontend did not take node mode {node_mode!r} "
                                   f"(Comfy.VueNodes.Enabled is {vue!r})")
            yield page
        finally:
            context.close()


def graph_to_api_prompt(page) -> dict:
    """The API-format prompt the frontend would queue for the graph it shows."""
    return page.evaluate("async () => (await app.graphToPrompt()).output")


def switch_workflow_tab(page, name: str) -> None:
    """Click the workflow tab named ``name`` in the top bar (frontends 1.32-1.58) and wait
    until it is the active workflow."""
    # 1.49+: data-testid; 1.32: the class alone.
    page.locator("[data-testid=workflow-tab], .workflow-tab", has_text=name).first.click()
    page.wait_for_function("(name) => app.extensionManager.workflow.activeWorkflow?.filename "
                           "=== name", arg=name, timeout=30_000)

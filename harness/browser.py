"""Drive the real ComfyUI frontend in headless Debian Chromium (Playwright, no browser download).

Used by the browser tests and by ``scripts/export_ui_workflows.py``; the recipe (flags,
tutorial setting, readiness checks) is the measured one in shared/COMFYUI_HARNESS.md.
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


def _prepare_server(url: str) -> None:
    request = urllib.request.Request(
        f"{url}/api/settings/Comfy.TutorialCompleted", data=json.dumps(True).encode(),
        method="POST", headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).read()


@contextlib.contextmanager
def comfy_page(url: str, *, width: int = 1600, height: int = 1000) -> Iterator:
    """A Playwright page with the ComfyUI frontend loaded and ready (``window.app.graph``)."""
    from playwright.sync_api import sync_playwright

    _prepare_server(url)
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
            yield page
        finally:
            context.close()


def graph_to_api_prompt(page) -> dict:
    """The API-format prompt the frontend would queue for the graph it shows."""
    return page.evaluate("async () => (await app.graphToPrompt()).output")

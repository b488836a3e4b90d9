"""Shared fixtures: one real ComfyUI server per test run, an API client, headless Chromium.

The server is installed by ``python -m comfyui_hdr.harness install`` (``scripts/setup_env.sh``
does it); a missing install is a test error with that command in it, never a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from comfyui_hdr.harness import comfyui
from comfyui_hdr.harness.client import ComfyClient

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("COMFYUI_HDR_ARTIFACTS", REPO / "test-artifacts"))
COMFYUI_HOME = Path(os.environ.get("COMFYUI_HDR_HOME", comfyui.DEFAULT_HOME))


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A real ComfyUI 0.3.75 (CPU) with this pack, its folders in a fresh temp dir."""
    base = tmp_path_factory.mktemp("comfyui")
    server = comfyui.start(base, COMFYUI_HOME)
    try:
        yield server
    finally:
        server.stop()
        if ARTIFACTS.exists() or os.environ.get("CI"):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(server.log_path, ARTIFACTS / "comfyui-server.log")


@pytest.fixture(scope="session")
def comfy_client(comfy_server) -> ComfyClient:
    return ComfyClient(comfy_server.url)


@pytest.fixture(scope="session")
def object_info(comfy_client) -> dict:
    return comfy_client.object_info()


@pytest.fixture(scope="session")
def workflow_inputs(comfy_server) -> dict:
    """Files the shipped workflows read from the server's input folder (harness.example_inputs)."""
    from comfyui_hdr.harness.example_inputs import write_example_inputs

    return write_example_inputs(comfy_server.input_dir)


@pytest.fixture(scope="session")
def chart_plates(workflow_inputs):
    """The frames of plates/chart_0000N_.exr (see ``workflow_inputs``)."""
    return workflow_inputs["plates"]


@pytest.fixture(scope="session")
def tiny_wan_models(comfy_server) -> dict:
    """The tiny Wan 2.1 set (model, VAE, prompt embeddings) in the server's models folder,
    as workflows/cfa_ldr_video* names them."""
    from comfyui_hdr.harness.tiny_models import write_tiny_wan_set

    return write_tiny_wan_set(comfy_server.models_dir)

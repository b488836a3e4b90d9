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
from comfyui_hdr.harness.benches import selected
from comfyui_hdr.harness.client import ComfyClient

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("COMFYUI_HDR_ARTIFACTS", REPO / "test-artifacts"))
COMFYUI_HOME = Path(os.environ.get("COMFYUI_HDR_HOME", comfyui.DEFAULT_HOME))
BENCH = selected()


def pytest_report_header(config):
    return f"bench: {BENCH.label} (COMFYUI_HDR_COMFYUI / COMFYUI_HDR_FRONTEND)"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A real ComfyUI (CPU) of the bench under test with this pack, its folders in a fresh
    temp dir."""
    base = tmp_path_factory.mktemp("comfyui")
    server = comfyui.start(base, COMFYUI_HOME, bench=BENCH)
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
    """Everything the shipped workflows read (harness.example_inputs.prepare_server): the
    example inputs in the input folder and the tiny Wan and HDR model sets in models/."""
    from comfyui_hdr.harness.example_inputs import prepare_server

    return prepare_server(comfy_server.input_dir, comfy_server.models_dir)


@pytest.fixture(scope="session")
def chart_plates(workflow_inputs):
    """The frames of plates/chart_0000N_.exr."""
    return workflow_inputs["plates"]


@pytest.fixture(scope="session")
def tiny_wan_models(workflow_inputs) -> dict:
    """The tiny Wan 2.1 set (model, VAE, prompt embeddings) as workflows/cfa_ldr_video uses."""
    return workflow_inputs["wan"]


@pytest.fixture(scope="session")
def tiny_hdr_models(workflow_inputs) -> dict:
    """The tiny HDR set (dual-head HDR VAE, widened Qwen-Image DiT + model card, prompt
    embeddings) as workflows/hdr_vae_widened_dit uses."""
    return workflow_inputs["hdr"]


# --- Devices (tests/_devices.py): the ``device`` fixture the hdr/ and model tests take. ---
from _devices import device  # noqa: E402,F401  (a fixture, used by name)

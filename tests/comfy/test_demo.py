"""README command one's path: a real sampler run in the server writes HDR with the sun."""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_hdr.harness.demo import run_demo
from comfyui_hdr.hdr import exr, ultrahdr

pytestmark = pytest.mark.comfy


def test_demo_samples_and_writes_an_exr_whose_peak_is_the_procedural_sun(
        comfy_server, comfy_client, workflow_inputs):
    demo = run_demo(comfy_client, comfy_server.output_dir)
    # The procedural sun is 1e3-1e5; through the tiny trained HDR VAE and a light re-noise
    # by the (untrained) widened DiT it must still stand far above diffuse white.
    assert demo["stats"].peak_luminance > 10
    assert demo["stats"].peak_stops > np.log2(10)
    layers = exr.list_layers(demo["exr"])
    assert set(layers) == {"", "display"}
    display = exr.read_exr(demo["exr"], layer="display").pixels
    assert 0.0 <= display.min() and display.max() <= 1.0  # display head: clipped only there
    decoded = ultrahdr.read_ultrahdr(demo["ultrahdr"])
    assert decoded.hdr.max() > 4.0  # the JPEG's gain map restores highlights above SDR white

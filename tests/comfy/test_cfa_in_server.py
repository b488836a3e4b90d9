"""The CFA workflow through the real server: tiny Wan 2.1 loaded by ComfyUI's UNETLoader."""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.hdr import exr

pytestmark = pytest.mark.comfy



def _api() -> dict:
    return load_workflow("cfa_ldr_video")


def _frames(comfy_server, result) -> np.ndarray:
    return np.stack([exr.read_exr(comfy_server.output_dir / e["subfolder"] / e["filename"])
                     .pixels for e in result.outputs["15"]["exr_files"]])


def test_cfa_workflow_writes_a_scene_linear_clip_and_the_routing_changes_it(
        comfy_server, comfy_client, tiny_wan_models):
    routed = comfy_client.run(_api())
    assert routed.outputs["12"]["text"] == ["over- and under-exposed branches on"]
    frames = _frames(comfy_server, routed)
    assert frames.shape == (9, 64, 64, 3)  # 9 frames in, 3 latent frames, 2 windows, 9 out
    assert np.isfinite(frames).all() and frames.max() > 1.0  # log-gamma decode: HDR range

    prompt = _api()
    prompt["12"]["inputs"].update(alpha_over=0.0, alpha_under=0.0)
    prompt["15"]["inputs"]["filename_prefix"] = "test/cfa_off"
    off = comfy_client.run(prompt)
    assert off.outputs["12"]["text"] == ["over-exposed branch off: strength 0",
                                         "under-exposed branch off: strength 0"]
    unrouted = _frames(comfy_server, off)
    # Strength 0 is the plain model; strength 1 routes the over/under prompts somewhere.
    assert np.abs(frames - unrouted).max() > 1e-3


def test_cfa_sampler_refuses_a_structured_prompt_without_a_text_encoder(comfy_client,
                                                                        tiny_wan_models):
    prompt = _api()
    prompt["12"]["inputs"]["structured_prompt"] = "[Overexposed: sky]; [Underexposed: doors]"
    prompt["15"]["inputs"]["filename_prefix"] = "test/cfa_no_clip"
    with pytest.raises(Exception, match="structured_prompt needs a clip"):
        comfy_client.run(prompt)

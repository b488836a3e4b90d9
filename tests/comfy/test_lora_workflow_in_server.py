"""The text-to-HDR LogC4 LoRA workflow through the real server: ComfyUI's UNETLoader and
LoraLoaderModelOnly load the tiny Wan 2.1 base and its ``train-lora`` export
(``harness.lora_example``), KSampler samples one frame, and the unclamped decode plus the
LogC4 decode write scene-linear float EXR."""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.hdr import exr
from comfyui_hdr.hdr.transfer import get_curve

pytestmark = pytest.mark.comfy

SAVE, LORA, DECODE = "10", "2", "8"


def _api(prefix: str, strength: float = 1.0) -> dict:
    prompt = load_workflow("text_to_hdr_logc4_lora")
    prompt[LORA]["inputs"]["strength_model"] = strength
    prompt[SAVE]["inputs"]["filename_prefix"] = f"test/{prefix}"
    return prompt


def _pixels(comfy_server, result, node: str) -> np.ndarray:
    files = result.outputs[node]["exr_files"]
    return np.stack([exr.read_exr(comfy_server.output_dir / f["subfolder"] / f["filename"])
                     .pixels for f in files])


def test_the_lora_workflow_writes_a_scene_linear_exr_and_the_lora_changes_it(
        comfy_server, comfy_client, workflow_inputs):
    assert workflow_inputs["lora"]["lora"] == load_workflow(
        "text_to_hdr_logc4_lora")[LORA]["inputs"]["lora_name"]
    with_lora = _pixels(comfy_server, comfy_client.run(_api("lora_on")), SAVE)
    assert with_lora.shape == (1, 64, 64, 3)  # 1 frame, 64 x 64 (EmptyHunyuanLatentVideo)
    assert np.isfinite(with_lora).all()
    without = _pixels(comfy_server, comfy_client.run(_api("lora_off", strength=0.0)), SAVE)
    # Strength 0 is the base model; the LoRA (learning rate 0.05) moves the picture by up to
    # 641 scene-linear (measured; LogC4 decodes small code differences near 1.0 to hundreds),
    # far above float32 rounding.
    assert np.abs(with_lora - without).max() > 1e-2


def test_the_log_decode_keeps_code_values_outside_zero_to_one(comfy_server, comfy_client,
                                                              workflow_inputs):
    prompt = _api("lora_decoded")
    prompt["11"] = {"class_type": "HDRSaveEXR", "inputs": {
        **prompt[SAVE]["inputs"], "images": [DECODE, 0], "filename_prefix": "test/lora_codes"}}
    result = comfy_client.run(prompt)
    codes, linear = _pixels(comfy_server, result, "11"), _pixels(comfy_server, result, SAVE)
    outside = (codes < 0.0) | (codes > 1.0)
    # With the LoRA the decode reaches past code 1.0 (measured: up to 690 scene-linear, above
    # LogC4's 469.8 at 1.0); an unclamped pipeline keeps it.
    assert outside.any()
    expected = get_curve("logc4").decode(codes)
    # Both are float32 LogC4 decodes of the same float32 code values (the node in torch,
    # this in numpy through the same function; measured identical): at most a few ulp.
    np.testing.assert_allclose(linear, expected, rtol=1e-5, atol=1e-7)
    assert (linear[codes > 1.0] > get_curve("logc4").linear_max).all()
    assert (linear[codes < 0.0] < 0.0).all()

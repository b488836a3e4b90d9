"""The two log-space LoRA workflows through the real server. ComfyUI's UNETLoader and
LoraLoaderModelOnly load the tiny Wan 2.1 base and a ``train-lora`` export
(``harness.lora_example``), KSampler samples one frame, and the unclamped decode plus the
log decode write scene-linear float EXR:

- ``text_to_hdr_logc4_lora``: text-to-HDR, LogC4;
- ``sdr_to_hdr_logc3_ic_lora``: Load Image (SDR) -> "HDR Reference (in-context)" -> the
  in-context LoRA, LogC3 (EI 800).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from comfyui_hdr.harness.lora_example import SDR_EXAMPLE
from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.hdr import exr
from comfyui_hdr.hdr.transfer import get_curve

pytestmark = pytest.mark.comfy

SAVE, LORA = "10", "2"


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
    # 6e5 scene-linear (measured; LogC4 decodes small code differences near its 1.5 peak
    # code to huge ones), far above float32 rounding.
    assert np.abs(with_lora - without).max() > 1e-2


def _decoded_codes(comfy_server, comfy_client, prompt: dict, sampler: str, decode: str,
                   save: str, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``prompt`` with a stock VAE Decode of the same latent beside the unclamped one;
    return the unclamped code values, the stock decode's, and the log decode's
    scene-linear values."""
    prompt["91"] = {"class_type": "VAEDecode", "inputs": {
        "samples": [sampler, 0], "vae": prompt[decode]["inputs"]["vae"]}}
    for node, images in (("92", [decode, 0]), ("93", ["91", 0])):
        prompt[node] = {"class_type": "HDRSaveEXR", "inputs": {
            **prompt[save]["inputs"], "images": images, "filename_prefix": f"test/{prefix}{node}"}}
    result = comfy_client.run(prompt)
    return (_pixels(comfy_server, result, "92"), _pixels(comfy_server, result, "93"),
            _pixels(comfy_server, result, save))


@pytest.mark.parametrize("workflow, curve, nodes", [
    ("text_to_hdr_logc4_lora", "logc4", ("6", "8", "10")),
    ("sdr_to_hdr_logc3_ic_lora", "logc3", ("8", "9", "11")),
])
def test_the_log_decode_keeps_code_values_outside_zero_to_one(
        comfy_server, comfy_client, workflow_inputs, workflow, curve, nodes):
    codes, stock, linear = _decoded_codes(comfy_server, comfy_client, load_workflow(workflow),
                                          *nodes, prefix=f"{curve}_codes")
    # The tiny VAE (harness.lora_example) decodes codes -1.1..1.5 (measured: 10% of the
    # values outside [0, 1]) as a real VAE reaches past a log curve's toe and code 1.0.
    outside = (codes < 0.0) | (codes > 1.0)
    assert outside.mean() > 0.01
    # The stock VAE Decode clips the same decode to [0, 1]; inside it the two agree.
    np.testing.assert_allclose(stock, np.clip(codes, 0.0, 1.0), atol=1e-6)
    # Both are float32 decodes of the same float32 code values (the node in torch, this in
    # numpy through the same function; measured identical): at most a few ulp.
    np.testing.assert_allclose(linear, get_curve(curve).decode(codes), rtol=1e-5, atol=1e-7)
    assert (linear[codes > 1.0] > get_curve(curve).linear_max).all()
    assert (linear[codes < 0.0] < get_curve(curve).linear_min).all()


IC_SAVE, IC_LORA, IC_IMAGE = "11", "2", "5"


def _ic_api(prefix: str, strength: float = 1.0, image: str = SDR_EXAMPLE) -> dict:
    prompt = load_workflow("sdr_to_hdr_logc3_ic_lora")
    prompt[IC_LORA]["inputs"]["strength_model"] = strength
    prompt[IC_IMAGE]["inputs"]["image"] = image
    prompt[IC_SAVE]["inputs"]["filename_prefix"] = f"test/{prefix}"
    return prompt


def test_the_sdr_to_hdr_workflow_is_conditioned_on_the_sdr_picture_and_the_lora(
        comfy_server, comfy_client, workflow_inputs):
    prompt = load_workflow("sdr_to_hdr_logc3_ic_lora")
    assert prompt[IC_LORA]["inputs"]["lora_name"] == workflow_inputs["lora"]["ic_lora"]
    assert prompt[IC_IMAGE]["inputs"]["image"] == workflow_inputs["sdr"].name
    result = comfy_client.run(_ic_api("ic_on"))
    hdr = _pixels(comfy_server, result, IC_SAVE)
    assert hdr.shape == (1, 64, 64, 3)  # the SDR picture's size: the node's empty latent
    assert np.isfinite(hdr).all()
    # Another SDR picture (the example mirrored) changes the result: the reference's latent
    # frames take part in the model's attention.
    mirrored = np.asarray(Image.open(workflow_inputs["sdr"]))[:, ::-1]
    Image.fromarray(np.ascontiguousarray(mirrored)).save(comfy_server.input_dir /
                                                         "sdr_mirrored.png")
    other = _pixels(comfy_server, comfy_client.run(_ic_api("ic_mirrored",
                                                           image="sdr_mirrored.png")), IC_SAVE)
    without_lora = _pixels(comfy_server, comfy_client.run(_ic_api("ic_off", strength=0.0)),
                           IC_SAVE)
    # Measured: 21 (mirrored picture) and 1.8e4 (no LoRA) scene-linear at most, far above
    # float32 rounding (LogC3 decodes small code steps near 1.5 to large linear ones).
    assert np.abs(hdr - other).max() > 1e-2
    assert np.abs(hdr - without_lora).max() > 1e-2

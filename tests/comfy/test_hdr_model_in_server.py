"""The HDR model stack through the real server: a tiny widened Qwen-Image DiT sampled by the
stock KSampler in the 32-channel latent, decoded by the dual-head HDR VAE, saved as EXR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.hdr import charts, exr
from comfyui_hdr.hdr.models.hdr_vae import load_hdr_vae

pytestmark = [pytest.mark.comfy, pytest.mark.smoke]

SAVE_EXR, DECODE, SAMPLER = "8", "7", "6"


def _with_saved_latent(prompt: dict, prefix: str) -> dict:
    """The workflow plus ComfyUI's own SaveLatent on the sampler's output, sampled with its
    own seed: ComfyUI caches a node whose inputs it has seen, and a cached node's UI message
    (the decoder's viewer entry) is not sent again, whichever test ran the workflow first."""
    prompt[SAMPLER]["inputs"]["seed"] += 1
    prompt["20"] = {"class_type": "SaveLatent",
                    "inputs": {"samples": [SAMPLER, 0], "filename_prefix": prefix}}
    return prompt


def _exr(comfy_server, result) -> np.ndarray:
    (entry,) = result.outputs[SAVE_EXR]["exr_files"]
    return exr.read_exr(comfy_server.output_dir / entry["subfolder"] / entry["filename"]).pixels


def _decode_only(latent: dict, vae_inputs: dict | None = None) -> dict:
    """A graph that decodes ``latent``'s node output with the tiny HDR VAE and previews it."""
    return {
        "1": {"class_type": "HDRLoadVAE",
              "inputs": vae_inputs or {"vae_name": "tiny_hdr_vae", "path": ""}},
        "2": latent,
        "3": {"class_type": "HDRVAEDecode",
              "inputs": {"samples": ["2", 0], "hdr_vae": ["1", 0], "tile_size": 0}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 1]}},
    }


def test_workflow_samples_the_32_channel_latent_and_writes_the_linear_head_above_1(
        comfy_server, comfy_client, tiny_hdr_models):
    result = comfy_client.run(_with_saved_latent(load_workflow("hdr_vae_widened_dit"),
                                                 "test/hdr_dit_latent"))
    pixels = _exr(comfy_server, result)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.float32
    assert np.isfinite(pixels).all() and pixels.max() > 1.0  # unclamped scene-linear head

    (entry,) = result.outputs["20"]["latents"]
    latent = load_file(str(comfy_server.output_dir / entry["subfolder"] / entry["filename"]))[
        "latent_tensor"]
    # Qwen-Image latents are video-shaped ([B, C, T, H, W]); 32 channels: the model's latent
    # format is the HDR VAE's, not the 16-channel Wan 2.1 format ComfyUI would detect.
    assert tuple(latent.shape) == (1, 32, 1, 8, 8)
    vae = load_hdr_vae(comfy_server.models_dir / "vae_hdr" / tiny_hdr_models["vae"])
    with torch.no_grad():
        expected = vae.decode(latent[:, :, 0].float()).linear[0].movedim(0, -1).numpy()
    # Same weights, same latent, same float32 code in another process (measured: 0.0); a
    # different CPU thread split could only change float32 rounding.
    np.testing.assert_allclose(pixels, expected, rtol=1e-5, atol=1e-6)
    assert result.outputs["9"]["images"], "the display head reaches PreviewImage"
    assert result.outputs[DECODE]["hdr_view"][0]["width"] == 64  # the HDR viewer's message


def test_tiled_decode_in_the_server_equals_the_whole_frame_and_reports_progress(
        comfy_server, comfy_client, tiny_hdr_models):
    whole = _exr(comfy_server, comfy_client.run(load_workflow("hdr_vae_widened_dit")))
    prompt = load_workflow("hdr_vae_widened_dit")
    prompt[DECODE]["inputs"]["tile_size"] = 32  # 4 latent pixels: 2 x 2 tiles of 32 px
    prompt[SAVE_EXR]["inputs"]["filename_prefix"] = "test/hdr_dit_tiled"
    result = comfy_client.run(prompt)
    # Frame-synchronous tiles (hdr/models/tiling.py) equal the whole-frame decode to float32
    # rounding: GroupNorm statistics from var_mean instead of the fused kernel, ~1e-7 in code
    # values, times ~8 through the tiny VAE's exp2 mapping (11 stops per code unit).
    # Measured: 3.0e-5 on values up to 9.2 (3e-6 relative).
    np.testing.assert_allclose(_exr(comfy_server, result), whole, rtol=1e-5, atol=1e-6)
    steps = [event["data"] for event in result.events
             if event["type"] == "progress" and event["data"].get("node") == DECODE]
    # The bar starts before the last tile and ends full. ComfyUI 0.3.75 sends every tile; from
    # 0.33 comfy.utils.ProgressBar throttles to one update per 100 ms (first and final always
    # sent), so how many intermediate updates arrive depends on the machine's speed.
    values = [step["value"] for step in steps]
    assert {step["max"] for step in steps} == {steps[0]["max"]}
    assert steps[0]["value"] < steps[0]["max"] and values[-1] == steps[-1]["max"]
    assert values == sorted(values)
    if comfy_server.bench.comfyui == "0.3.75":
        assert len(steps) > 4


def test_encode_then_decode_in_the_server_equals_the_library_on_the_same_chart(
        comfy_server, comfy_client, tiny_hdr_models):
    chart = {"class_type": "HDRTestChart", "inputs": {"width": 128, "height": 64, "gamut": "rec709",
                                                      "sun_stops": 10.0, "frames": 1}}
    prompt = _decode_only({"class_type": "HDRVAEEncode",
                           "inputs": {"image": ["5", 0], "hdr_vae": ["1", 0]}})
    prompt["5"] = chart
    prompt["6"] = {"class_type": "HDRSaveEXR", "inputs": {
        "images": ["3", 0], "filename_prefix": "test/hdr_vae_round_trip", "pixel_type": "float",
        "compression": "zip", "colourspace": "Linear Rec.709 (sRGB)", "overwrite": False}}
    result = comfy_client.run(prompt)
    (entry,) = result.outputs["6"]["exr_files"]
    pixels = exr.read_exr(comfy_server.output_dir / entry["subfolder"] / entry["filename"]).pixels

    vae = load_hdr_vae(comfy_server.models_dir / "vae_hdr" / tiny_hdr_models["vae"])
    scene = charts.test_chart(width=128, height=64, gamut="rec709", sun_stops=10.0)
    with torch.no_grad():  # the posterior's mode: HDR VAE Encode adds no sampling noise
        latent = vae.encode(scene.movedim(-1, 0)[None]).mode()
        expected = vae.decode(latent).linear[0].movedim(0, -1).numpy()
    # float32 rounding across processes, as above.
    np.testing.assert_allclose(pixels, expected, rtol=1e-5, atol=1e-6)


def test_a_16_channel_latent_into_hdr_vae_decode_names_the_32_channel_latent_it_needs(
        comfy_client, tiny_hdr_models):
    sd3_latent = {"class_type": "EmptySD3LatentImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    with pytest.raises(Exception, match="needs a 32-channel HDR-VAE latent"):
        comfy_client.run(_decode_only(sd3_latent))


@pytest.mark.parametrize(("files", "message"), [
    ({"diffusion_pytorch_model.safetensors": "weights"}, "config.json is missing"),
    ({"config.json": '{"_class_name": "HDRAutoencoder"}', "diffusion_pytorch_model.bin": ""},
     r"only a pickle checkpoint \(diffusion_pytorch_model.bin\)"),
])
def test_a_vae_folder_without_config_json_or_with_pickles_only_is_refused(
        comfy_server, comfy_client, tiny_hdr_models, files, message):
    folder = comfy_server.models_dir / "vae_hdr" / f"broken_{len(message)}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if name.endswith(".safetensors"):
            save_file({"weight": torch.zeros(1)}, str(folder / name))
        else:
            (folder / name).write_text(text)
    empty = {"class_type": "HDREmptyLatent",
             "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    with pytest.raises(Exception, match=message):
        comfy_client.run(_decode_only(empty, {"vae_name": "tiny_hdr_vae",
                                              "path": folder.name}))

"""A ``train-dit`` ComfyUI LoRA on "Load HDR Diffusion Model"'s widened base, in ComfyUI.

The tiny widened Qwen-Image DiT (2 heads x 32, text width 32, 1 block, 32 latent channels)
is trained for a few steps on the tiny HDR VAE's latents. Its widened base, saved as the
ComfyUI checkpoint + model card the loader reads (ComfyUI keeps diffusers' Qwen-Image
parameter names), is loaded by the node's own function (``load_hdr_diffusion_model``);
``comfy.sd.load_lora_for_models`` (LoraLoaderModelOnly) applies ``comfyui_lora.safetensors``:
the LoRA pairs and the trained projections as full-weight ``diff`` patches. diffusers
predicts through peft with the adapter folder (LoRA + projections), as the log-LoRA test
(test_qwen_image_lora_in_comfyui.py) compares them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging

import comfy.sd
import pytest
import torch
from _flow import comfy_velocity
from diffusers import QwenImageTransformer2DModel
from peft import PeftModel
from safetensors.torch import load_file, save_file

from comfyui_hdr.harness.tiny_models import TINY_QWEN_IMAGE, hdr_model_card, write_tiny_hdr_vae
from comfyui_hdr.nodes._hdr_model import load_hdr_diffusion_model
from comfyui_hdr.training.dit import main
from comfyui_hdr.training.lora import PromptEmbeddings
from comfyui_hdr.training.lora_models import predict_velocity
from comfyui_hdr.training.widen_cli import widen_diffusers_dir

SIGMA = 0.7
SAME_AS_DIFFUSERS = 1e-4
"""The issue's bound on |ComfyUI - diffusers| velocities (as for the log LoRA)."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dit_lora")
    torch.manual_seed(0)
    QwenImageTransformer2DModel(**TINY_QWEN_IMAGE).save_pretrained(folder / "qwen16")
    widen_diffusers_dir(folder / "qwen16", folder / "qwen32")
    write_tiny_hdr_vae(folder / "vae")
    PromptEmbeddings.random([""], 8, 32).save(folder / "text.safetensors")
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--model", str(folder / "qwen32"), "--vae", str(folder / "vae"),
                     "--prompt-embeddings", str(folder / "text.safetensors"),
                     "--output", str(folder / "dit"), "--scenes", "4", "--size", "64",
                     "--rank", "4", "--steps", "3", "--learning-rate", "0.05",
                     "--max-trainable-share", "100"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def comfy_base(trained):
    """The widened base as "Load HDR Diffusion Model" reads it: checkpoint + model card."""
    path = trained / "diffusion_models" / "hdr_qwen_image.safetensors"
    path.parent.mkdir()
    state = QwenImageTransformer2DModel.from_pretrained(trained / "qwen32").state_dict()
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    card = hdr_model_card("qwen_image", axes_dims_rope=list(TINY_QWEN_IMAGE["axes_dims_rope"]))
    path.with_suffix(".json").write_text(json.dumps(card))
    return load_hdr_diffusion_model(path, torch.float32)


def test_comfyui_applies_the_dit_lora_and_projections_as_diffusers_predicts(
        trained, comfy_base, caplog):
    generator = torch.Generator().manual_seed(3)
    noisy = torch.randn(1, 32, 1, 8, 8, generator=generator)  # a 64 x 64 picture
    text = PromptEmbeddings.load(trained / "text.safetensors").prompt_embeds[:1]
    without_lora = comfy_velocity(comfy_base, noisy, [[text, {}]], SIGMA)
    lora = load_file(str(trained / "dit" / "comfyui_lora.safetensors"))
    assert {key for key in lora if ".diff" in key} == {
        "transformer.img_in.diff", "transformer.img_in.diff_b",
        "transformer.proj_out.diff", "transformer.proj_out.diff_b"}
    with caplog.at_level(logging.WARNING):
        with_lora, _ = comfy.sd.load_lora_for_models(comfy_base, None, lora, 1.0, 0.0)
    assert not [record for record in caplog.records if "lora key not loaded" in
                record.getMessage() or "NOT LOADED" in record.getMessage()]
    # Q/K/V of both streams (6 LoRA layers) + img_in and proj_out weight and bias.
    assert len(with_lora.patches) == 10
    in_comfyui = comfy_velocity(with_lora, noisy, [[text, {}]], SIGMA)

    peft = PeftModel.from_pretrained(
        QwenImageTransformer2DModel.from_pretrained(trained / "qwen32"), str(trained / "dit"))
    with torch.no_grad():
        in_diffusers = predict_velocity(peft, "qwen_image", noisy, torch.tensor([SIGMA]), text)
    assert in_comfyui.shape == noisy.shape
    # Measured 7.2e-7 (float32 rounding); the LoRA and the projections move ComfyUI's
    # velocity by 4.0 (measured), far beyond the bound: they are really applied.
    assert (in_comfyui - in_diffusers).abs().max() <= SAME_AS_DIFFUSERS
    assert (in_comfyui - without_lora).abs().max() > 100 * SAME_AS_DIFFUSERS

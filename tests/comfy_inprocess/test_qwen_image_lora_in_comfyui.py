"""A Qwen-Image ``train-lora`` LoRA (in-context reference, downscale 2) in ComfyUI.

ComfyUI's smallest detectable Qwen-Image is 3072 wide, so the tiny diffusers
``QwenImageTransformer2DModel`` (2 heads x 32, text width 32, 1 block) is built as
``comfy.sd.load_diffusion_model_state_dict`` builds a detected one (the stock
``supported_models.QwenImage`` config; ComfyUI keeps diffusers' parameter names) and
wrapped in a ModelPatcher. ``comfy.sd.load_lora_for_models`` (LoraLoaderModelOnly) applies
the exported ``comfyui_lora.safetensors``; the reference latent reaches the model as the
"HDR Reference (in-context)" node gives it (``reference_latents``, method ``index``) through
``extra_conds``. diffusers predicts through peft and ``predict_velocity(reference=...)``.
"""

from __future__ import annotations

import contextlib
import io
import logging

import comfy.latent_formats
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
import pytest
import torch
from _flow import comfy_velocity
from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
from safetensors.torch import load_file

from comfyui_hdr.harness.tiny_models import TINY_QWEN_IMAGE
from comfyui_hdr.nodes.sampling_io import reference_conditioning
from comfyui_hdr.training.lora import PromptEmbeddings, load_adapter, main
from comfyui_hdr.training.lora_models import predict_velocity

SIGMA = 0.7
SAME_AS_DIFFUSERS = 1e-4
"""The issue's bound on |ComfyUI - peft| velocities."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen_image_lora")
    torch.manual_seed(0)
    QwenImageTransformer2DModel(**TINY_QWEN_IMAGE).save_pretrained(folder / "qwen")
    AutoencoderKLQwenImage(base_dim=8, num_res_blocks=1).save_pretrained(folder / "vae")
    PromptEmbeddings.random([""], 8, 32).save(folder / "text.safetensors")
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--model", str(folder / "qwen"), "--vae", str(folder / "vae"),
                     "--prompt-embeddings", str(folder / "text.safetensors"),
                     "--output", str(folder / "lora"), "--mode", "reference",
                     "--reference-downscale-factor", "2", "--curve", "logc3",
                     "--scenes", "4", "--size", "128", "--rank", "4", "--steps", "3",
                     "--learning-rate", "0.05"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def comfy_qwen(trained):
    state = QwenImageTransformer2DModel.from_pretrained(trained / "qwen").state_dict()
    config = comfy.supported_models.QwenImage({"image_model": "qwen_image", **TINY_QWEN_IMAGE})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(state, "").load_model_weights(dict(state), "")
    device = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def test_comfyui_applies_the_qwen_image_ic_lora_with_its_reference_as_peft_does(
        trained, comfy_qwen, caplog):
    lora = load_file(str(trained / "lora" / "comfyui_lora.safetensors"))
    with caplog.at_level(logging.WARNING):
        with_lora, _ = comfy.sd.load_lora_for_models(comfy_qwen, None, lora, 1.0, 0.0)
    assert not [record for record in caplog.records if "lora key not loaded" in
                record.getMessage() or "NOT LOADED" in record.getMessage()]
    assert len(with_lora.patches) == 8  # q, k, v, out of the image and the text stream

    generator = torch.Generator().manual_seed(3)
    noisy = torch.randn(1, 16, 1, 16, 16, generator=generator)  # a 128 x 128 picture
    reference = torch.randn(1, 16, 1, 8, 8, generator=generator)  # downscaled 2x, normalised
    text = PromptEmbeddings.load(trained / "text.safetensors").prompt_embeds[:1]
    # The node hands ComfyUI the VAE's raw latent; extra_conds normalises it (Wan 2.1's
    # statistics, as Qwen-Image's pipeline does).
    raw = comfy.latent_formats.Wan21().process_out(reference)
    positive, _ = reference_conditioning([[text, {}]], [[text, {}]], raw,
                                         "qwen-image: tokens as image 1")
    in_comfyui = comfy_velocity(with_lora, noisy, positive, SIGMA)

    peft = load_adapter(QwenImageTransformer2DModel.from_pretrained(trained / "qwen"),
                        trained / "lora")
    sigma = torch.tensor([SIGMA])
    with torch.no_grad():
        in_diffusers = predict_velocity(peft, "qwen_image", noisy, sigma, text,
                                        reference=reference)
        with peft.disable_adapter():
            base = predict_velocity(peft, "qwen_image", noisy, sigma, text,
                                    reference=reference)
        without_reference = predict_velocity(peft, "qwen_image", noisy, sigma, text)
    assert in_comfyui.shape == noisy.shape
    # Measured 4.8e-7 (float32 rounding); the LoRA moves the velocity by 0.50 and the
    # reference by 0.060 (measured), both far beyond the bound.
    assert (in_comfyui - in_diffusers).abs().max() <= SAME_AS_DIFFUSERS
    assert (in_diffusers - base).abs().max() > 100 * SAME_AS_DIFFUSERS
    assert (in_diffusers - without_reference).abs().max() > 100 * SAME_AS_DIFFUSERS

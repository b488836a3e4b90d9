"""``embed-prompts`` output in the real server: "Load Prompt Embeddings" hands KSampler the
tensor ``train-lora`` trains with.

A tiny random UMT5 (4096 wide, the text width ComfyUI's Wan 2.1 detection requires; from
``harness.tiny_text_encoders``) encodes a DiffHDR caption through the command line into
``models/prompt_embeddings``. The train-time tensor is what ``train-lora`` looks up for that
caption (``PromptEmbeddings.lookup``), written alone as ``prompt_embeds``. The text-to-HDR
LoRA workflow (tiny Wan 2.1 + LogC4 LoRA) runs one Euler step with each file as its
positive prompt: the two latents must be identical, bit for bit, and equal the step
diffusers takes with the train-time tensor through the same peft LoRA within float32 model
noise (measured 2.5e-6); another caption's embedding must move the latent.

Wan's file carries no padding mask on purpose: WanPipeline and ComfyUI's own UMT5 hand the
model all 512 tokens with the padding zeroed, and a mask would make the node drop the
padding (measured: the step then moves by 1.1).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_hdr.harness.lora_example import DIFFUSERS_TWINS
from comfyui_hdr.harness.tiny_text_encoders import write_tiny_umt5
from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.training.embed_prompts import main
from comfyui_hdr.training.prompt_embeddings import PromptEmbeddings

pytestmark = pytest.mark.comfy

CAPTION = "[Overexposed: the sun and bright clouds]; [Underexposed: tree bark in the shade]"
OTHER = "[Overexposed: a street lamp]"
POSITIVE, SAMPLER = "3", "6"


def _one_step(comfy_server, comfy_client, embeddings: str) -> torch.Tensor:
    prompt = load_workflow("text_to_hdr_logc4_lora")
    prompt[POSITIVE]["inputs"]["embeddings"] = embeddings
    prompt[SAMPLER]["inputs"].update(steps=1, sampler_name="euler", scheduler="simple",
                                     cfg=1.0, denoise=1.0)
    prompt["95"] = {"class_type": "SaveLatent", "inputs": {
        "samples": [SAMPLER, 0], "filename_prefix": f"test/embedded_{embeddings[:-12]}"}}
    (entry,) = comfy_client.run(prompt).outputs["95"]["latents"]
    return load_file(str(comfy_server.output_dir / entry["subfolder"] /
                         entry["filename"]))["latent_tensor"]


def test_embedded_caption_drives_ksampler_exactly_as_train_lora_reads_it(
        comfy_server, comfy_client, workflow_inputs, tmp_path):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from comfyui_hdr.training.lora import load_adapter
    from comfyui_hdr.training.lora_models import predict_velocity

    folder = comfy_server.models_dir / "prompt_embeddings"
    encoder = write_tiny_umt5(tmp_path / "umt5", width=4096)
    for name, text in (("embedded", CAPTION), ("other", OTHER)):
        assert main(["--family", "wan", "--model", str(encoder), "--prompt", text,
                     "--output", str(folder / f"{name}.safetensors"),
                     "--device", "cpu", "--dtype", "fp32"]) == 0
    train_time, _ = PromptEmbeddings.load(folder / "embedded.safetensors").lookup([CAPTION])
    assert train_time.shape == (1, 512, 4096)
    save_file({"prompt_embeds": train_time.contiguous()}, str(folder / "train_time.safetensors"))

    embedded = _one_step(comfy_server, comfy_client, "embedded.safetensors")
    reference = _one_step(comfy_server, comfy_client, "train_time.safetensors")
    other = _one_step(comfy_server, comfy_client, "other.safetensors")
    assert torch.equal(embedded, reference)  # the same conditioning tensor, bit for bit
    # Another caption moves the latent far above float32 rounding (measured 0.13).
    assert (embedded - other).abs().max() > 1e-2

    # The same step in diffusers with the train-time tensor (as the LoRA workflow test:
    # KSampler from sigma 1 returns noise - v(noise, 1); compared in the normalised latent
    # space; bound 1e-4, float32 ComfyUI-vs-diffusers model noise).
    twins = comfy_server.models_dir / DIFFUSERS_TWINS
    vae = AutoencoderKLWan.from_pretrained(twins / "vae")
    mean, std = (torch.tensor(values).view(1, -1, 1, 1, 1)
                 for values in (vae.config.latents_mean, vae.config.latents_std))
    seed = load_workflow("text_to_hdr_logc4_lora")[SAMPLER]["inputs"]["seed"]
    noise = torch.randn(embedded.shape, generator=torch.manual_seed(seed))
    peft = load_adapter(WanTransformer3DModel.from_pretrained(twins / "wan"), twins / "lora")
    with torch.no_grad():
        velocity = predict_velocity(peft, "wan", noise, torch.tensor([1.0]), train_time)
    assert ((embedded - mean) / std - (noise - velocity)).abs().max() <= 1e-4

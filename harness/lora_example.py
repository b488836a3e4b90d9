"""The LoRAs the two log-space HDR LoRA workflows load, trained here.

No weights can be downloaded, so the examples train their own: the tiny diffusers Wan 2.1
transformer of the LoRA tests (1 head x 128, text width 4096, 1 block), a tiny diffusers
Wan 2.1 VAE (base width 8, the layout ComfyUI loads) and one seeded prompt embedding,
then ``train-lora`` (:mod:`..training.lora`) for a few CPU seconds on procedural scenes:

- ``text_to_hdr_logc4_lora``: text-to-HDR, targets encoded with LogC4;
- ``sdr_to_hdr_logc3_ic_lora``: SDR->HDR in-context LoRA, targets encoded with LogC3
  (EI 800), conditioned on a degraded SDR reference whose latent frames follow the
  target's (the "HDR Reference (in-context)" node puts them there in ComfyUI).

ComfyUI's UNETLoader reads the transformer's ComfyUI-format twin
(:func:`~..training.lora_export.wan_diffusers_to_comfyui`), VAELoader the VAE's
(:func:`~.tiny_models.wan_vae_comfyui_state_dict`: the very VAE the LoRAs were trained
with) and LoraLoaderModelOnly the exported ``comfyui_lora.safetensors``. With real weights
the workflows run unchanged: pick a Wan 2.1 checkpoint, its VAE and a ``train-lora`` export.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

LORA_BASE = "tiny_wan21_lora_base.safetensors"
LORA_VAE = "tiny_wan21_lora_vae.safetensors"
LORA = "tiny_wan21_logc4_lora.safetensors"
IC_LORA = "tiny_wan21_logc3_ic_lora.safetensors"
LORA_PROMPT = "tiny_wan_lora_prompt.safetensors"
SDR_EXAMPLE = "sdr_example.png"
TINY_WAN_TRANSFORMER = {"patch_size": (1, 2, 2), "num_attention_heads": 1,
                        "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
                        "text_dim": 4096, "freq_dim": 256, "ffn_dim": 256, "num_layers": 1}
"""The smallest diffusers Wan 2.1 transformer ComfyUI detects (as the LoRA tests use)."""
TINY_WAN_VAE = {"base_dim": 8, "z_dim": 16, "num_res_blocks": 2}
"""A diffusers Wan 2.1 VAE at base width 8 in the layout ComfyUI's VAELoader builds."""
TINY_WAN_VAE_OUTPUT_GAIN = 4.0
"""Scale of the random VAE's last convolution: at initialisation its pictures stay within
codes 0.11-0.88 (measured), a real VAE's reach past 0 and 1 (a log curve's toe and the
highlights above code 1.0), which the workflows' unclamped decode must show."""
_COMMON = ["--scenes", "4", "--size", "64", "--rank", "4", "--steps", "3",
           "--learning-rate", "0.05", "--seed", "0", "--still-frames", "1"]
"""The example workflows make single frames, so the LoRAs train on single frames (not
train-lora's default for Wan stills, 9-frame clips)."""
LORA_TRAINING = ["--curve", "logc4", "--mode", "text", *_COMMON]
"""Three steps at a high learning rate: seconds on a CPU, and a LoRA far from zero."""
IC_LORA_TRAINING = ["--curve", "logc3", "--mode", "reference", *_COMMON]
"""The same budget for the SDR->HDR in-context LoRA (default degradations)."""
DIFFUSERS_TWINS = "train_lora"
"""Folder (in the models folder) with what the LoRAs were trained from and as: ``wan/`` and
``vae/`` (diffusers) and the peft adapters ``lora/`` and ``ic_lora/``, so tests can hold
ComfyUI's sampling against peft's."""
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "hdr_lora.json")
SDR_EXAMPLE_SCENE = (7, 64)
"""Seed and size of the procedural scene whose degraded SDR rendition is the example (a sky
over a checkered ground with a sphere, no clipped area)."""


def tiny_wan_vae():
    """The tiny diffusers Wan 2.1 VAE of the examples (:data:`TINY_WAN_VAE`, random from
    torch's generator, last convolution scaled by :data:`TINY_WAN_VAE_OUTPUT_GAIN`)."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan(**TINY_WAN_VAE)
    with torch.no_grad():
        for parameter in vae.decoder.conv_out.parameters():
            parameter.mul_(TINY_WAN_VAE_OUTPUT_GAIN)
    return vae


def _train(work: Path, name: str, arguments: list[str]) -> Path:
    from ..training.lora import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--model", str(work / "wan"), "--vae", str(work / "vae"),
                     "--prompt-embeddings", str(work / "prompt.safetensors"),
                     "--output", str(work / name), *arguments])
    if code != 0:
        raise RuntimeError(f"train-lora {' '.join(arguments)} failed with exit code {code}")
    return work / name / "comfyui_lora.safetensors"


def write_tiny_loras(models_dir: str | Path) -> dict[str, str]:
    """Write the tiny Wan 2.1 base (``diffusion_models``), its VAE (``vae``), the LogC4
    text-to-HDR LoRA and the LogC3 in-context LoRA (``loras``), the prompt embedding
    they were trained on (``prompt_embeddings``) and their diffusers twins
    (:data:`DIFFUSERS_TWINS`) into a ComfyUI models folder, unless they are there; returns
    the names the workflows use (``model``, ``vae``, ``lora``, ``ic_lora``, ``positive``)."""
    from diffusers import WanTransformer3DModel

    from ..training.lora import PromptEmbeddings
    from ..training.lora_export import wan_diffusers_to_comfyui
    from .tiny_models import wan_vae_comfyui_state_dict

    models_dir = Path(models_dir)
    names = {"model": LORA_BASE, "vae": LORA_VAE, "lora": LORA, "ic_lora": IC_LORA,
             "positive": LORA_PROMPT}
    folders = {"model": "diffusion_models", "vae": "vae", "lora": "loras",
               "ic_lora": "loras", "positive": "prompt_embeddings"}
    paths = {role: models_dir / folders[role] / name for role, name in names.items()}
    twins = models_dir / DIFFUSERS_TWINS
    if all(path.exists() for path in paths.values()) and twins.is_dir():
        return names
    with tempfile.TemporaryDirectory(prefix="train-lora-") as work, torch.random.fork_rng():
        work = Path(work)
        torch.manual_seed(0)
        transformer = WanTransformer3DModel(**TINY_WAN_TRANSFORMER)
        transformer.save_pretrained(work / "wan")
        vae = tiny_wan_vae()
        vae.save_pretrained(work / "vae")
        PromptEmbeddings.random([""], 8, TINY_WAN_TRANSFORMER["text_dim"],
                                seed=1).save(work / "prompt.safetensors")
        trained = {"lora": _train(work, "lora", LORA_TRAINING),
                   "ic_lora": _train(work, "ic_lora", IC_LORA_TRAINING)}
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        save_file({wan_diffusers_to_comfyui(key): value.contiguous()
                   for key, value in transformer.state_dict().items()}, str(paths["model"]))
        save_file(wan_vae_comfyui_state_dict(vae), str(paths["vae"]))
        for role, path in trained.items():
            shutil.copy2(path, paths[role])
        shutil.copy2(work / "prompt.safetensors", paths["positive"])
        shutil.rmtree(twins, ignore_errors=True)
        for part in ("wan", "vae"):
            shutil.copytree(work / part, twins / part)
        for role in trained:
            (twins / role).mkdir(parents=True)
            for name in _ADAPTER_FILES:
                shutil.copy2(work / role / name, twins / role / name)
    return names


def sdr_example() -> np.ndarray:
    """The example SDR picture: a procedural HDR scene through the training's SDR
    degradations (:func:`~..hdr.degrade.degrade_pair`, default config), 8-bit ``[H, W, 3]``."""
    from ..hdr.degrade import degrade_pair
    from ..hdr.scenes import hdr_scene

    seed, size = SDR_EXAMPLE_SCENE
    codes = degrade_pair(hdr_scene(seed, size), seed=seed).sdr_reference
    return np.round(codes.clamp(0, 1).numpy() * 255).astype(np.uint8)


def write_sdr_example(input_dir: str | Path) -> Path:
    """Write :func:`sdr_example` as ``sdr_example.png`` into a ComfyUI input folder (kept if
    it is there), for the SDR->HDR workflow's Load Image."""
    from PIL import Image

    from ..hdr.atomic import atomic_path

    path = Path(input_dir) / SDR_EXAMPLE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            Image.fromarray(sdr_example()).save(temporary, format="PNG")
    return path

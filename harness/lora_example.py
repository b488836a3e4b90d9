"""The text-to-HDR LoRA the ``text_to_hdr_logc4_lora`` workflow loads, trained here.

No weights can be downloaded, so the example trains its own: the tiny diffusers Wan 2.1
transformer of the LoRA tests (1 head x 128, text width 4096, 1 block), a tiny diffusers
Wan VAE and one seeded prompt embedding, then ``train-lora`` (:mod:`..training.lora`)
for a few CPU seconds on procedural scenes encoded with LogC4. ComfyUI's UNETLoader reads
the transformer's ComfyUI-format twin (:func:`~..training.lora_export.wan_diffusers_to_comfyui`)
and LoraLoaderModelOnly the exported ``comfyui_lora.safetensors``. With real weights the
workflow runs unchanged: pick a Wan 2.1 checkpoint and a ``train-lora`` export.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

LORA_BASE = "tiny_wan21_lora_base.safetensors"
LORA = "tiny_wan21_logc4_lora.safetensors"
LORA_PROMPT = "tiny_wan_lora_prompt.safetensors"
TINY_WAN_TRANSFORMER = {"patch_size": (1, 2, 2), "num_attention_heads": 1,
                        "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
                        "text_dim": 4096, "freq_dim": 256, "ffn_dim": 256, "num_layers": 1}
"""The smallest diffusers Wan 2.1 transformer ComfyUI detects (as the LoRA tests use)."""
LORA_TRAINING = ["--curve", "logc4", "--mode", "text", "--scenes", "4", "--size", "64",
                 "--rank", "4", "--steps", "3", "--learning-rate", "0.05", "--seed", "0"]
"""Three steps at a high learning rate: seconds on a CPU, and a LoRA far from zero."""


def write_tiny_logc4_lora(models_dir: str | Path) -> dict[str, str]:
    """Write the tiny Wan 2.1 base (``diffusion_models``), its LogC4 text-to-HDR LoRA
    (``loras``) and the prompt embedding it was trained on (``prompt_embeddings``) into a
    ComfyUI models folder, unless they are there; returns the names a workflow uses
    (``model``, ``lora``, ``positive``)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from ..training.lora import PromptEmbeddings, main
    from ..training.lora_export import wan_diffusers_to_comfyui

    models_dir = Path(models_dir)
    names = {"model": LORA_BASE, "lora": LORA, "positive": LORA_PROMPT}
    paths = {"model": models_dir / "diffusion_models" / LORA_BASE,
             "lora": models_dir / "loras" / LORA,
             "positive": models_dir / "prompt_embeddings" / LORA_PROMPT}
    if all(path.exists() for path in paths.values()):
        return names
    with tempfile.TemporaryDirectory(prefix="train-lora-") as work, torch.random.fork_rng():
        work = Path(work)
        torch.manual_seed(0)
        transformer = WanTransformer3DModel(**TINY_WAN_TRANSFORMER)
        transformer.save_pretrained(work / "wan")
        AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).save_pretrained(work / "vae")
        PromptEmbeddings.random([""], 8, TINY_WAN_TRANSFORMER["text_dim"],
                                seed=1).save(work / "prompt.safetensors")
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["--model", str(work / "wan"), "--vae", str(work / "vae"),
                         "--prompt-embeddings", str(work / "prompt.safetensors"),
                         "--output", str(work / "lora"), *LORA_TRAINING])
        if code != 0:
            raise RuntimeError(f"train-lora failed with exit code {code}")
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        save_file({wan_diffusers_to_comfyui(key): value.contiguous()
                   for key, value in transformer.state_dict().items()}, str(paths["model"]))
        shutil.copy2(work / "lora" / "comfyui_lora.safetensors", paths["lora"])
        shutil.copy2(work / "prompt.safetensors", paths["positive"])
    return names

"""``python -m comfyui_hdr.training COMMAND ...``: the training command lines in one place.

    python -m comfyui_hdr.training train-vae --output DIR --procedural 512 --crop 128
    python -m comfyui_hdr.training latent-stats --vae VAE_DIR --data EXR_FOLDER
    python -m comfyui_hdr.training widen MODEL_DIR WIDENED_DIR --mode copy
    python -m comfyui_hdr.training evaluate --pred DIR --gt DIR --out DIR
    python -m comfyui_hdr.training train-lora --model DIR --vae DIR --prompt-embeddings F ...
    python -m comfyui_hdr.training train-dit --model WIDENED --vae HDR_VAE --prompt-embeddings F ...
    python -m comfyui_hdr.training transform-analysis --vae DIR [--data EXR_FOLDER]
    python -m comfyui_hdr.training embed-prompts --family wan --model DIR --data DIR --output F
    python -m comfyui_hdr.training caption --data DIR --captioner VLM_DIR
    python -m comfyui_hdr.training render-hdri-clips MAP.exr --output DIR --clips 4
    python -m comfyui_hdr.training train-lumaflux --model DIR --siglip DIR --output DIR ...
    accelerate launch -m comfyui_hdr.training train-vae ...

``COMMAND --help`` describes each; a command's module is imported only when it runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

COMMANDS = {
    "train-vae": ("train_vae", "train the dual-head 32-channel HDR VAE"),
    "latent-stats": ("latent_stats", "measure an HDR VAE's per-channel latent mean/std"),
    "widen": ("widen_cli", "widen a DiT's latent input and prediction 16 -> 32 channels"),
    "evaluate": ("evaluate", "measure HDR predictions against ground truth"),
    "train-lora": ("lora", "train a log-space HDR LoRA (text-to-HDR or SDR-reference)"),
    "train-dit": ("dit", "train a widened DiT on the HDR VAE's latent (native linear)"),
    "transform-analysis": ("transform_analysis",
                           "compare log curves for a frozen VAE (LumiVid Table 1)"),
    "embed-prompts": ("embed_prompts", "encode prompts with a family's real text encoder(s)"),
    "caption": ("caption", "write DiffHDR's caption.txt with a local vision-language model"),
    "render-hdri-clips": ("hdri_clips", "render camera pans through equirectangular HDR maps "
                          "as EXR clips"),
    "train-lumaflux": ("lumaflux_cli", "train LumaFlux SDR->HDR adapters on a frozen Flux"),
}


def _usage() -> str:
    lines = ["usage: python -m comfyui_hdr.training COMMAND [options]", "", "commands:"]
    lines += [f"  {name:18s} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a command's ``main``; return its exit code (2 for an unknown command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(_usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"{_usage()}\n\nerror: {given}; pick one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f".{COMMANDS[argv[0]][0]}", __package__)
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

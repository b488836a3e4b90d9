"""``python -m comfyui_hdr.training embed-prompts``: a family's text conditioning of a set of
prompts, computed by its real text encoder(s) from local folders, written as the
safetensors file ``train-lora --prompt-embeddings`` and "Load Prompt Embeddings" read.

    python -m comfyui_hdr.training embed-prompts --family wan --model Wan2.1-T2V-1.3B-Diffusers \\
        --data shots/ --output prompts.safetensors
    python -m comfyui_hdr.training embed-prompts --family qwen_image --model Qwen-Image \\
        --prompt "[Overexposed: the sun]" --output models/prompt_embeddings/sun.safetensors

``--model`` is a diffusers pipeline folder (``text_encoder/`` + ``tokenizer/``, Flux also
``text_encoder_2/`` + ``tokenizer_2/``); ``--text-encoder`` etc. point at the parts one by
one. How each family's conditioning is computed: :mod:`.text_encoders`. Wan's 512 tokens
are stored with their zeroed padding and no mask (WanPipeline and ComfyUI's UMT5 both hand
the model all 512); Qwen-Image's real tokens with ``prompt_embeds_mask``; Flux's T5 tokens
unmasked with CLIP's ``pooled_prompt_embeds``. A file of one prompt also loads in "Load
Prompt Embeddings" (ComfyUI); train-lora reads files of many.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .data import CAPTION_FILE, HDR_IMAGE_SUFFIXES, parse_caption
from .text_encoders import (
    DEFAULT_MAX_TOKENS,
    DTYPES,
    FAMILY_ENCODERS,
    load_text_encoders,
    resolve_device,
)

__all__ = ["build_parser", "dataset_prompts", "main"]

def dataset_prompts(root: str | os.PathLike) -> list[str]:
    """The prompts ``train-lora`` looks up for the dataset under ``root``: the
    ``caption.txt`` of every folder holding EXR/Radiance files, as parsed
    (:func:`~.data.parse_caption`), then ``''`` (uncaptioned data, procedural scenes).
    An unparseable caption warns and is left out, as the dataset leaves it out."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root} is not a folder; point it at the training data")
    prompts = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        caption = Path(folder) / CAPTION_FILE
        if caption.is_file() and any(name.lower().endswith(HDR_IMAGE_SUFFIXES) for name in files):
            try:
                prompts.append(parse_caption(caption.read_text(encoding="utf-8")).prompt)
            except (ValueError, UnicodeDecodeError) as error:
                warnings.warn(f"{caption}: {error}; train-lora uses no caption there either",
                              stacklevel=2)
    return [*prompts, ""]


def _prompts(arguments) -> list[str]:
    prompts = list(arguments.prompt or [])
    if arguments.prompts_file is not None:
        if not arguments.prompts_file.is_file():
            raise ValueError(f"--prompts-file {arguments.prompts_file} does not exist; give a "
                             "text file with one prompt per line")
        lines = arguments.prompts_file.read_text(encoding="utf-8").splitlines()
        prompts += [line.strip() for line in lines if line.strip()]
    if arguments.data is not None:
        prompts += dataset_prompts(arguments.data)
    if not prompts:
        raise ValueError("no prompts: give --prompt TEXT (repeatable), --prompts-file FILE or "
                         "--data FOLDER (its caption.txt files)")
    return list(dict.fromkeys(prompts))


def _folders(arguments) -> list[tuple[Path, Path]]:
    if arguments.family != "flux" and (arguments.text_encoder_2 or arguments.tokenizer_2):
        raise ValueError("--text-encoder-2 / --tokenizer-2 are Flux's T5; leave them out for "
                         f"--family {arguments.family}")
    folders = []
    for spec in FAMILY_ENCODERS[arguments.family]:
        pair = []
        for flag, subfolder in ((spec.flag, spec.subfolder),
                                (spec.tokenizer_flag, spec.tokenizer_subfolder)):
            given = getattr(arguments, flag[2:].replace("-", "_"))
            if given is None and arguments.model is None:
                raise ValueError(f"give --model (the {arguments.family} diffusers pipeline "
                                 f"folder) or {flag}")
            path = given if given is not None else arguments.model / subfolder
            if not path.is_dir():
                source = flag if given is not None else f"--model's {subfolder}/"
                raise ValueError(f"{source} {path} is not a folder; point {flag} at the "
                                 f"{spec.description} or --model at the pipeline folder")
            pair.append(path)
        folders.append(tuple(pair))
    return folders


def build_parser() -> argparse.ArgumentParser:
    """The ``embed-prompts`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training embed-prompts",
        description="Encode prompts with a model family's real text encoder(s) (local "
                    "folders, nothing downloaded) into the safetensors file train-lora "
                    "--prompt-embeddings and 'Load Prompt Embeddings' read.")
    parser.add_argument("--family", required=True, choices=list(FAMILY_ENCODERS),
                        help="the base model's family: wan (UMT5), qwen_image (Qwen2.5-VL), "
                             "flux (CLIP + T5)")
    parser.add_argument("--model", type=Path,
                        help="diffusers pipeline folder (text_encoder/, tokenizer/; Flux also "
                             "text_encoder_2/, tokenizer_2/)")
    for flag, what in (("--text-encoder", "text encoder folder (default MODEL/text_encoder)"),
                       ("--tokenizer", "tokenizer folder (default MODEL/tokenizer)"),
                       ("--text-encoder-2", "Flux's T5 folder (default MODEL/text_encoder_2)"),
                       ("--tokenizer-2", "Flux's T5 tokenizer (default MODEL/tokenizer_2)")):
        parser.add_argument(flag, type=Path, help=what)
    parser.add_argument("--prompt", action="append",
                        help="a prompt to encode (repeatable; '' is the empty prompt)")
    parser.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    parser.add_argument("--data", type=Path,
                        help="training data folder: encode every caption.txt there, and ''")
    parser.add_argument("--output", required=True, type=Path, help="safetensors file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                        help="text encoder precision (default auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--device", default="auto",
                        help="torch device (default auto: cuda if available, else cpu)")
    parser.add_argument("--max-sequence-length", type=int,
                        help="tokens per prompt (default: the pipeline's, "
                             + ", ".join(f"{family} {length}" for family, length in
                                         DEFAULT_MAX_TOKENS.items()) + ")")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``embed-prompts`` CLI; return the exit code (0, or 2 on bad input)."""
    arguments = build_parser().parse_args(argv)
    device, dtype = resolve_device(arguments.device, arguments.dtype)
    try:
        if arguments.output.exists() and not arguments.overwrite:
            raise ValueError(f"--output {arguments.output} exists; pass --overwrite or pick "
                             "another name")
        prompts = _prompts(arguments)
        encoders = load_text_encoders(arguments.family, _folders(arguments), dtype, device,
                                      arguments.max_sequence_length)
        embeddings = encoders.embed(prompts)
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        embeddings.save(arguments.output, overwrite=arguments.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"embed-prompts: error: {error}", file=sys.stderr)
        return 2
    shapes = ", ".join(f"{name} {list(tensor.shape)}" for name, tensor in (
        ("prompt_embeds", embeddings.prompt_embeds),
        ("pooled_prompt_embeds", embeddings.pooled_prompt_embeds),
        ("prompt_embeds_mask", embeddings.prompt_embeds_mask)) if tensor is not None)
    print(f"embed-prompts: {len(prompts)} prompt(s) through the {arguments.family} encoder(s): "
          f"{shapes}; wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The text conditioning each model family needs, computed with ``transformers`` from local
folders exactly as the family's diffusers pipeline computes it at inference.

=============  ==========================  =================================================
family         encoder(s) (``model_type``)  conditioning (diffusers pipeline)
=============  ==========================  =================================================
``wan``        UMT5-XXL (``umt5``)          last hidden state, 512 tokens, padding zeroed
                                            (``WanPipeline._get_t5_prompt_embeds``)
``qwen_image`` Qwen2.5-VL (``qwen2_5_vl``)  last layer's hidden states of the prompt in the
                                            pipeline's chat template, the template's 34-token
                                            prefix dropped, real tokens only (+ mask)
                                            (``QwenImagePipeline._get_qwen_prompt_embeds``)
``flux``       CLIP-L (``clip_text_model``) CLIP's pooled output (77 tokens) and T5's last
               + T5-XXL (``t5``)            hidden state, 512 tokens, unmasked
                                            (``FluxPipeline.encode_prompt``)
=============  ==========================  =================================================

Each prompt is encoded alone (a batch of one, as a pipeline encodes one prompt at
inference), so its embedding never depends on which prompts it was run beside. Folders are
checked from their ``config.json`` (``model_type``) before any weight is read; nothing is
ever downloaded (``local_files_only``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .prompt_embeddings import PromptEmbeddings

__all__ = ["DTYPES", "FAMILY_ENCODERS", "QWEN_IMAGE_TEMPLATE", "EncoderSpec", "TextEncoders",
           "check_model_folder", "load_text_encoders", "resolve_device"]

QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
"""diffusers ``QwenImagePipeline.prompt_template_encode`` (pipeline_qwenimage.py)."""
QWEN_IMAGE_DROP = 34
"""``QwenImagePipeline.prompt_template_encode_start_idx``: the template's prefix (system turn
and ``<|im_start|>user\\n``) is 34 Qwen2.5-VL tokens, dropped from the embedding."""
QWEN_IMAGE_TOKENIZER_MAX = 1024
"""``QwenImagePipeline.tokenizer_max_length`` (tokens after the prefix)."""
DEFAULT_MAX_TOKENS = {"wan": 512, "qwen_image": 1024, "flux": 512}
"""Each pipeline's ``max_sequence_length`` default in ``__call__`` (WanPipeline 512,
QwenImagePipeline 1024 through ``encode_prompt``, FluxPipeline 512)."""


@dataclass(frozen=True)
class EncoderSpec:
    """One text encoder of a family: its diffusers subfolders, the ``model_type`` its
    ``config.json`` must name, the command-line flags that point at it, and what it is."""

    subfolder: str
    tokenizer_subfolder: str
    model_types: tuple[str, ...]
    flag: str
    tokenizer_flag: str
    description: str


FAMILY_ENCODERS = {
    "wan": (EncoderSpec("text_encoder", "tokenizer", ("umt5",), "--text-encoder", "--tokenizer",
                        "UMT5-XXL encoder (UMT5EncoderModel, Wan 2.1/2.2 diffusers "
                        "text_encoder/)"),),
    "qwen_image": (EncoderSpec("text_encoder", "tokenizer", ("qwen2_5_vl",), "--text-encoder",
                               "--tokenizer", "Qwen2.5-VL-7B-Instruct (Qwen-Image diffusers "
                               "text_encoder/)"),),
    "flux": (EncoderSpec("text_encoder", "tokenizer", ("clip_text_model",), "--text-encoder",
                         "--tokenizer", "CLIP ViT-L/14 text model (CLIPTextModel, Flux "
                         "diffusers text_encoder/)"),
             EncoderSpec("text_encoder_2", "tokenizer_2", ("t5",), "--text-encoder-2",
                         "--tokenizer-2", "T5-XXL encoder (T5EncoderModel, Flux diffusers "
                         "text_encoder_2/)")),
}
"""The encoders of each family, in the order :func:`load_text_encoders` returns them."""
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``--dtype`` choices besides ``auto``."""
_WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def _owner(model_type: str) -> str | None:
    for family, specs in FAMILY_ENCODERS.items():
        for spec in specs:
            if model_type in spec.model_types:
                return f"{family}'s {spec.flag}"
    return None


def resolve_device(device: str, dtype: str) -> tuple[str, torch.dtype]:
    """``--device`` / ``--dtype`` with ``auto`` resolved: CUDA if present, bf16 there and
    float32 on the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    default = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return device, DTYPES.get(dtype, default)


def check_model_folder(folder: Path, flag: str, model_types: Sequence[str], wanted: str,
                       fix: str, accepted: str | None = None) -> dict:
    """Read ``folder/config.json`` and check its ``model_type`` is one of ``model_types`` and
    that weights are there; a ValueError names ``flag``, what was found, ``wanted``,
    ``accepted`` (default: the listed types) and ``fix``. Returns the config. Reads no
    weights."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{flag} {folder}: no config.json there; {flag} needs the folder of "
                         f"the {wanted} ({fix})")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in model_types:
        architectures = ", ".join(config.get("architectures") or []) or "no architectures"
        owner = _owner(str(model_type))
        hint = f" (that is {owner})" if owner else ""
        accepted = accepted or " or ".join(repr(name) for name in model_types)
        raise ValueError(f"{flag} {folder} holds a '{model_type}' model ({architectures})"
                         f"{hint}; {flag} needs the {wanted} (model_type {accepted}): {fix}")
    if not any(next(folder.glob(pattern), None) for pattern in _WEIGHTS):
        raise ValueError(f"{flag} {folder} has a config.json but no weights (*.safetensors); "
                         f"copy the whole {wanted} folder")
    return config


def _check_tokenizer(folder: Path, flag: str, wanted: str) -> None:
    names = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json")
    if not folder.is_dir() or not any((folder / name).is_file() for name in names):
        raise ValueError(f"{flag} {folder} holds no tokenizer (tokenizer.json or "
                         f"tokenizer_config.json); point {flag} at the tokenizer folder of "
                         f"the {wanted}")


@dataclass
class TextEncoders:
    """A family's loaded tokenizers and encoders (see :func:`load_text_encoders`)."""

    family: str
    tokenizers: tuple
    encoders: tuple
    max_tokens: int

    @torch.no_grad()
    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(prompt_embeds [1, tokens, width], pooled [1, width2] or None, mask [1, tokens]
        or None)`` of one prompt, as the family's diffusers pipeline computes them."""
        if self.family == "wan":
            return _wan(self.tokenizers[0], self.encoders[0], prompt, self.max_tokens), None, None
        if self.family == "qwen_image":
            embeds = _qwen_image(self.tokenizers[0], self.encoders[0], prompt, self.max_tokens)
            return embeds, None, torch.ones(embeds.shape[:2], dtype=torch.long)
        return _flux(*self.tokenizers, *self.encoders, prompt, self.max_tokens)

    def embed(self, prompts: Sequence[str]) -> PromptEmbeddings:
        """Every prompt's conditioning as :class:`PromptEmbeddings` (rows zero-padded to the
        longest; the mask, where the family has one, marks the real tokens; ``encoder``
        records the family, dtype, length and encoder types). Each row moves to the CPU as
        soon as it is computed."""
        rows = [tuple(None if tensor is None else tensor.cpu() for tensor in self.encode(prompt))
                for prompt in tqdm(prompts, desc="embed-prompts", disable=len(prompts) < 8)]
        for prompt, (embeds, pooled, _) in zip(prompts, rows, strict=True):
            for tensor in (embeds, pooled):
                if tensor is not None and not bool(torch.isfinite(tensor).all()):
                    raise ValueError(f"the text encoder gave NaN/Inf for {prompt[:60]!r} in "
                                     f"{tensor.dtype}; use --dtype bf16 or fp32 (T5 overflows "
                                     "in fp16)")
        length = max(embeds.shape[1] for embeds, _, _ in rows)
        embeds = torch.cat([torch.nn.functional.pad(row[0], (0, 0, 0, length - row[0].shape[1]))
                            for row in rows])
        pooled = torch.cat([row[1] for row in rows]) if rows[0][1] is not None else None
        mask = (torch.cat([torch.nn.functional.pad(row[2], (0, length - row[2].shape[1]))
                           for row in rows]) if rows[0][2] is not None else None)
        encoder = {"family": self.family, "dtype": str(embeds.dtype).removeprefix("torch."),
                   "max_sequence_length": str(self.max_tokens),
                   "model_types": ",".join(model.config.model_type for model in self.encoders)}
        return PromptEmbeddings(tuple(prompts), embeds, pooled, mask, encoder)


def _device(module) -> torch.device:
    return next(module.parameters()).device


def _wan(tokenizer, encoder, prompt: str, max_tokens: int) -> torch.Tensor:
    """``WanPipeline._get_t5_prompt_embeds``: cleaned prompt, padded to ``max_tokens``, the
    encoder run with the mask, padding positions set to zero."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    inputs = tokenizer([prompt_clean(prompt)], padding="max_length", max_length=max_tokens,
                       truncation=True, add_special_tokens=True, return_attention_mask=True,
                       return_tensors="pt")
    real = int(inputs.attention_mask.gt(0).sum())
    device = _device(encoder)
    hidden = encoder(inputs.input_ids.to(device),
                     inputs.attention_mask.to(device)).last_hidden_state
    embeds = torch.zeros_like(hidden)
    embeds[:, :real] = hidden[:, :real]
    return embeds


def _qwen_image(tokenizer, encoder, prompt: str, max_tokens: int) -> torch.Tensor:
    """``QwenImagePipeline._get_qwen_prompt_embeds`` + ``encode_prompt``: the prompt in the
    template, the last layer's hidden states of the real tokens after the prefix, at most
    ``max_tokens`` of them."""
    inputs = tokenizer([QWEN_IMAGE_TEMPLATE.format(prompt)],
                       max_length=QWEN_IMAGE_TOKENIZER_MAX + QWEN_IMAGE_DROP, padding=True,
                       truncation=True, return_tensors="pt")
    device = _device(encoder)
    output = encoder(input_ids=inputs.input_ids.to(device),
                     attention_mask=inputs.attention_mask.to(device), output_hidden_states=True)
    hidden = output.hidden_states[-1][0]
    return hidden[inputs.attention_mask[0].bool().to(device)][QWEN_IMAGE_DROP:][None, :max_tokens]


def _flux(clip_tokenizer, t5_tokenizer, clip, t5, prompt: str,
          max_tokens: int) -> tuple[torch.Tensor, torch.Tensor, None]:
    """``FluxPipeline.encode_prompt``: CLIP's pooled output of the prompt padded to the CLIP
    tokenizer's length, T5's last hidden state of it padded to ``max_tokens`` (no mask)."""
    clip_inputs = clip_tokenizer([prompt], padding="max_length",
                                 max_length=clip_tokenizer.model_max_length, truncation=True,
                                 return_tensors="pt")
    pooled = clip(clip_inputs.input_ids.to(_device(clip)), output_hidden_states=False).pooler_output
    t5_inputs = t5_tokenizer([prompt], padding="max_length", max_length=max_tokens,
                             truncation=True, return_tensors="pt")
    embeds = t5(t5_inputs.input_ids.to(_device(t5)), output_hidden_states=False)[0]
    return embeds, pooled, None


def _encoder_class(family: str, index: int):
    import transformers

    names = {"wan": ("UMT5EncoderModel",), "qwen_image": ("Qwen2_5_VLForConditionalGeneration",),
             "flux": ("CLIPTextModel", "T5EncoderModel")}
    return getattr(transformers, names[family][index])


def load_text_encoders(family: str, folders: Sequence[tuple[Path, Path]],
                       dtype: torch.dtype = torch.float32, device: str = "cpu",
                       max_tokens: int | None = None) -> TextEncoders:
    """Check then load a family's ``(encoder folder, tokenizer folder)`` pairs (in
    :data:`FAMILY_ENCODERS` order) with ``transformers``, offline.

    Every folder is checked (config ``model_type``, weights and tokenizer files present)
    before any weight is read; a ValueError names the flag of the folder at fault.
    """
    from transformers import AutoTokenizer

    specs = FAMILY_ENCODERS[family]
    if len(folders) != len(specs):
        raise ValueError(f"--family {family} needs {len(specs)} text encoder folder(s): "
                         f"{', '.join(spec.flag for spec in specs)}")
    max_tokens = DEFAULT_MAX_TOKENS[family] if max_tokens is None else max_tokens
    if max_tokens < 1:
        raise ValueError(f"--max-sequence-length must be >= 1, got {max_tokens}")
    fix = f"give the {{}} of the {family} pipeline folder, or pick the --family of this encoder"
    for spec, (encoder, tokenizer) in zip(specs, folders, strict=True):
        check_model_folder(encoder, spec.flag, spec.model_types, spec.description,
                           fix.format(spec.subfolder + "/"))
        _check_tokenizer(tokenizer, spec.tokenizer_flag, spec.description)
    tokenizers = tuple(AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
                       for _, tokenizer in folders)
    if family == "qwen_image":
        prefix = len(tokenizers[0](QWEN_IMAGE_TEMPLATE.split("{}")[0]).input_ids)
        if prefix != QWEN_IMAGE_DROP:
            raise ValueError(f"--tokenizer {folders[0][1]} splits Qwen-Image's prompt template "
                             f"prefix into {prefix} tokens, not Qwen2.5-VL's {QWEN_IMAGE_DROP}; "
                             "point --tokenizer at the Qwen-Image pipeline's tokenizer/ folder")
    encoders = tuple(
        _encoder_class(family, index).from_pretrained(
            str(encoder), dtype=dtype, device_map=device, local_files_only=True).eval()
        for index, (encoder, _) in enumerate(folders))
    return TextEncoders(family, tokenizers, encoders, max_tokens)

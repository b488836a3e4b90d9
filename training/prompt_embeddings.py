"""Precomputed text conditioning for the trainers: a TD runs the base model's text encoder
once per caption and stores the embeddings as safetensors (:class:`PromptEmbeddings`), the
same file "Load Prompt Embeddings" reads in ComfyUI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..hdr.atomic import atomic_path

__all__ = ["PromptEmbeddings"]


@dataclass(frozen=True)
class PromptEmbeddings:
    """Precomputed text conditioning: one row per prompt.

    Stored as safetensors: ``prompt_embeds`` ``[N, tokens, width]`` (the text encoder's
    output, zero-padded to one length as diffusers pipelines pad), optional
    ``prompt_embeds_mask`` ``[N, tokens]`` (1 for a real token, 0 for padding, as
    Qwen-Image's pipeline returns it; Qwen-Image training attends to real tokens only),
    optional ``pooled_prompt_embeds`` ``[N, width2]`` (Flux's CLIP vector), the
    prompts in the metadata ``prompts`` (a JSON list) and, from ``embed-prompts``, what
    made them in the metadata ``encoder`` (a JSON object: family, encoder, dtype, length).
    """

    prompts: tuple[str, ...]
    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    prompt_embeds_mask: torch.Tensor | None = None
    encoder: dict[str, str] | None = None

    def __post_init__(self):
        mask = self.prompt_embeds_mask
        if mask is not None and tuple(mask.shape) != tuple(self.prompt_embeds.shape[:2]):
            raise ValueError(f"prompt_embeds_mask is {tuple(mask.shape)} but prompt_embeds "
                             f"{tuple(self.prompt_embeds.shape)}; it needs [N, tokens]")

    @classmethod
    def random(cls, prompts: Sequence[str], tokens: int, width: int,
               pooled_width: int = 0, seed: int = 0) -> PromptEmbeddings:
        """Seeded N(0, 1) stand-ins for a text encoder's output (tests, tiny models)."""
        generator = torch.Generator().manual_seed(seed)
        embeds = torch.randn((len(prompts), tokens, width), generator=generator)
        pooled = (torch.randn((len(prompts), pooled_width), generator=generator)
                  if pooled_width else None)
        return cls(tuple(prompts), embeds, pooled)

    @classmethod
    def load(cls, path: str | Path) -> PromptEmbeddings:
        """Read a file written by :meth:`save`."""
        with safe_open(str(path), framework="pt") as stored:
            metadata = stored.metadata() or {}
            if "prompts" not in metadata or "prompt_embeds" not in stored.keys():
                raise ValueError(f"--prompt-embeddings {path} needs 'prompt_embeds' and the "
                                 "metadata 'prompts'; write it with PromptEmbeddings.save")
            optional = {name: stored.get_tensor(name) if name in stored.keys() else None
                        for name in ("pooled_prompt_embeds", "prompt_embeds_mask")}
            encoder = json.loads(metadata["encoder"]) if "encoder" in metadata else None
            return cls(tuple(json.loads(metadata["prompts"])),
                       stored.get_tensor("prompt_embeds"), **optional, encoder=encoder)

    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the embeddings as safetensors, atomically (an existing file is replaced
        only with ``overwrite``)."""
        tensors = {name: value.contiguous() for name, value in (
            ("prompt_embeds", self.prompt_embeds),
            ("pooled_prompt_embeds", self.pooled_prompt_embeds),
            ("prompt_embeds_mask", self.prompt_embeds_mask)) if value is not None}
        metadata = {"prompts": json.dumps(self.prompts)}
        if self.encoder is not None:
            metadata["encoder"] = json.dumps(self.encoder)
        with atomic_path(path, overwrite=overwrite) as temporary:
            save_file(tensors, temporary, metadata=metadata)
        return Path(path)

    def _rows(self, prompts: Sequence[str]) -> torch.Tensor:
        rows = {prompt: row for row, prompt in enumerate(self.prompts)}
        unknown = sorted({prompt for prompt in prompts if prompt not in rows})
        if unknown:
            raise ValueError(f"--prompt-embeddings has no embedding for {unknown[:4]}; "
                             "encode every caption (and '' for uncaptioned data)")
        return torch.tensor([rows[prompt] for prompt in prompts])

    def lookup(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows of ``prompts``: ``[B, tokens, width]`` and ``[B, width2]`` (or None)."""
        index = self._rows(prompts)
        pooled = self.pooled_prompt_embeds
        return self.prompt_embeds[index], None if pooled is None else pooled[index]

    def mask(self, prompts: Sequence[str]) -> torch.Tensor | None:
        """The padding masks ``[B, tokens]`` of ``prompts``, or None if none was stored."""
        mask = self.prompt_embeds_mask
        return None if mask is None else mask[self._rows(prompts)]

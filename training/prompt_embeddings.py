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
    ``pooled_prompt_embeds`` ``[N, width2]`` (Flux's CLIP vector) and the prompts in the
    metadata ``prompts`` (a JSON list).
    """

    prompts: tuple[str, ...]
    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None

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
            pooled = (stored.get_tensor("pooled_prompt_embeds")
                      if "pooled_prompt_embeds" in stored.keys() else None)
            return cls(tuple(json.loads(metadata["prompts"])),
                       stored.get_tensor("prompt_embeds"), pooled)

    def save(self, path: str | Path) -> Path:
        """Write the embeddings as safetensors, atomically."""
        tensors = {"prompt_embeds": self.prompt_embeds.contiguous()}
        if self.pooled_prompt_embeds is not None:
            tensors["pooled_prompt_embeds"] = self.pooled_prompt_embeds.contiguous()
        with atomic_path(path, overwrite=True) as temporary:
            save_file(tensors, temporary, metadata={"prompts": json.dumps(self.prompts)})
        return Path(path)

    def lookup(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows of ``prompts``: ``[B, tokens, width]`` and ``[B, width2]`` (or None)."""
        rows = {prompt: row for row, prompt in enumerate(self.prompts)}
        unknown = sorted({prompt for prompt in prompts if prompt not in rows})
        if unknown:
            raise ValueError(f"--prompt-embeddings has no embedding for {unknown[:4]}; "
                             "encode every caption (and '' for uncaptioned data)")
        index = torch.tensor([rows[prompt] for prompt in prompts])
        pooled = self.pooled_prompt_embeds
        return self.prompt_embeds[index], None if pooled is None else pooled[index]

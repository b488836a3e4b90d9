"""A peft LoRA adapter <-> the key format ComfyUI's stock LoRA loaders apply.

``train-lora`` saves adapters as peft does (``adapter_model.safetensors`` with keys
``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight``, the scale
``lora_alpha / r`` in ``adapter_config.json``). ComfyUI's LoraLoader and
LoraLoaderModelOnly (``comfy.sd.load_lora_for_models`` -> ``comfy.lora.model_lora_keys_unet``
and ``comfy.lora.load_lora``, ComfyUI 0.3.75) find a LoRA by the name of the weight it
patches, read ``<name>.lora_B.weight`` as "up" and ``<name>.lora_A.weight`` as "down", and
scale by ``<name>.alpha / rank`` (by 1.0 when ``alpha`` is absent, so it is always
written). The name each family needs:

- Flux: ``transformer.<diffusers module>``; ComfyUI maps it through
  ``comfy.utils.flux_to_diffusers`` (``to_q``/``to_k``/``to_v`` patch slices of the fused
  ``img_attn.qkv``, ``add_*_proj`` of ``txt_attn.qkv``, single blocks of ``linear1``).
- Qwen-Image: ``transformer.<diffusers module>`` (ComfyUI keeps diffusers' names).
- Wan: ComfyUI has no diffusers map for Wan, so modules are renamed to ComfyUI's own
  (``comfy/ldm/wan/model.py``) with the generic ``diffusion_model.`` prefix:
  ``blocks.0.attn1.to_q`` -> ``diffusion_model.blocks.0.self_attn.q``.

The file keeps the adapter's safetensors metadata (``hdr_transform``,
``reference_downscale_factor``, ...). :func:`check_lora_against` refuses a LoRA made for
another base model, listing the keys that do not fit.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..hdr.atomic import atomic_path

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "COLOUR_MAPPING",
    "COMFYUI_LORA",
    "FAMILIES",
    "check_lora_against",
    "comfyui_lora_state_dict",
    "comfyui_module_name",
    "export_comfyui_lora",
    "peft_state_dict_from_comfyui",
    "wan_diffusers_to_comfyui",
]

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
COLOUR_MAPPING = "hdr_lora.json"
COMFYUI_LORA = "comfyui_lora.safetensors"

FAMILIES = {"FluxTransformer2DModel": "flux", "QwenImageTransformer2DModel": "qwen_image",
            "WanTransformer3DModel": "wan"}
"""The diffusers transformer classes ``train-lora`` supports, by family name."""

_PEFT_PREFIX = "base_model.model."
_PREFIXES = {"flux": "transformer.", "qwen_image": "transformer.", "wan": "diffusion_model."}
_PAIR = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_down\.weight"
                   r"|lora_up\.weight|alpha)$")

# diffusers -> ComfyUI names for Wan 2.1, the inverse of diffusers'
# scripts/convert_wan_to_diffusers.py TRANSFORMER_KEYS_RENAME_DICT (COMFYUI_HARNESS.md,
# "Tiny models through ComfyUI's own loaders"). Applied in order to "<key>." so every
# pattern sees whole dot-separated words.
_WAN_RENAMES = (
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.proj.0."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.proj.1."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.proj.3."),
    (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.proj.4."),
    (r"^condition_embedder\.image_embedder\.pos_embed\.", "img_emb.emb_pos."),
    (r"^scale_shift_table\.", "head.modulation."),
    (r"^proj_out\.", "head.head."),
    (r"^(blocks\.\d+)\.scale_shift_table\.", r"\1.modulation."),
    (r"^(blocks\.\d+)\.attn1\.", r"\1.self_attn."),
    (r"^(blocks\.\d+)\.attn2\.", r"\1.cross_attn."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.ffn\.net\.0\.proj\.", r"\1.ffn.0."),
    (r"^(blocks\.\d+)\.ffn\.net\.2\.", r"\1.ffn.2."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.add_k_proj\.", ".k_img."),
    (r"\.add_v_proj\.", ".v_img."),
    (r"\.norm_added_k\.", ".norm_k_img."),
)


def wan_diffusers_to_comfyui(name: str) -> str:
    """Rename a diffusers Wan 2.1 state-dict key or module name to ComfyUI's.

    >>> wan_diffusers_to_comfyui("blocks.0.attn1.to_out.0.weight")
    'blocks.0.self_attn.o.weight'
    >>> wan_diffusers_to_comfyui("condition_embedder.time_proj")
    'time_projection.1'
    """
    renamed = name + "."
    for pattern, replacement in _WAN_RENAMES:
        renamed = re.sub(pattern, replacement, renamed)
    return renamed[:-1]


def comfyui_module_name(module: str, family: str) -> str:
    """The name ComfyUI's LoRA loader knows a diffusers layer by (module docstring).

    >>> comfyui_module_name("base_model.model.proj_out", "wan")
    'diffusion_model.head.head'
    """
    name = module.removeprefix(_PEFT_PREFIX)
    return _PREFIXES[family] + (wan_diffusers_to_comfyui(name) if family == "wan" else name)


def _modules(lora: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """LoRA tensors grouped by module name (prefixes kept): ``{module: {part: tensor}}``."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in lora.items():
        match = _PAIR.match(key)
        if match is None:
            raise ValueError(f"LoRA key {key!r} is not a LoRA down/up weight or alpha; only "
                             "plain LoRA (no DoRA, biases or LoKr) is supported")
        part = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}.get(
            match["part"], match["part"])
        modules.setdefault(match["module"], {})[part] = tensor
    return modules


def _scale(config: Mapping) -> float:
    """peft's per-layer scale ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA)."""
    unsupported = [name for name in ("rank_pattern", "alpha_pattern") if config.get(name)]
    unsupported += [name for name in ("use_dora", "lora_bias") if config.get(name)]
    if unsupported or config.get("bias", "none") != "none":
        raise ValueError(f"adapter_config uses {unsupported or ['bias']}; ComfyUI export "
                         "supports plain LoRA with one rank and alpha")
    rank = config["r"]
    return config["lora_alpha"] / (rank ** 0.5 if config.get("use_rslora") else rank)


def comfyui_lora_state_dict(adapter: Mapping[str, torch.Tensor], family: str,
                            adapter_config: Mapping) -> dict[str, torch.Tensor]:
    """Rename a peft adapter state dict to ComfyUI's keys and add each layer's alpha.

    Parameters
    ----------
    adapter
        peft's ``get_peft_model_state_dict`` output (``base_model.model.`` prefix optional).
    family
        ``"flux"``, ``"qwen_image"`` or ``"wan"`` (see :data:`FAMILIES`).
    adapter_config
        peft's ``LoraConfig`` as a dict (``r``, ``lora_alpha``, ``use_rslora``).

    Returns
    -------
    ``{prefix + name + ".lora_A.weight" | ".lora_B.weight" | ".alpha": tensor}`` where
    ``alpha = scale * rank``, so ComfyUI's ``alpha / rank`` equals peft's scale.
    """
    if family not in _PREFIXES:
        raise ValueError(f"family must be one of {', '.join(_PREFIXES)}, got {family!r}")
    scale = _scale(adapter_config)
    exported = {}
    for module, parts in _modules(adapter).items():
        name = comfyui_module_name(module, family)
        for part in ("lora_A.weight", "lora_B.weight"):
            if part not in parts:
                raise ValueError(f"adapter holds {module} without its {part}")
            exported[f"{name}.{part}"] = parts[part].contiguous()
        rank = parts["lora_A.weight"].shape[0]
        exported[f"{name}.alpha"] = torch.tensor(scale * rank)
    return exported


def _wan_diffusers_module(name: str) -> str:
    """The diffusers name of a ComfyUI Wan layer a LoRA may target (the inverse of
    :func:`wan_diffusers_to_comfyui` on Linear layers)."""
    projections = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0",
                   "k_img": "add_k_proj", "v_img": "add_v_proj"}
    if match := re.fullmatch(r"(blocks\.\d+)\.(self_attn|cross_attn)\.(\w+)", name):
        block, attention, projection = match.groups()
        diffusers = (f"{block}.{'attn1' if attention == 'self_attn' else 'attn2'}."
                     f"{projections.get(projection, projection)}")
    elif match := re.fullmatch(r"(blocks\.\d+)\.ffn\.(\d)", name):
        diffusers = f"{match[1]}.ffn.net.{'0.proj' if match[2] == '0' else match[2]}"
    else:
        diffusers = {"time_embedding.0": "condition_embedder.time_embedder.linear_1",
                     "time_embedding.2": "condition_embedder.time_embedder.linear_2",
                     "time_projection.1": "condition_embedder.time_proj",
                     "text_embedding.0": "condition_embedder.text_embedder.linear_1",
                     "text_embedding.2": "condition_embedder.text_embedder.linear_2",
                     "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
                     "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
                     "head.head": "proj_out"}.get(name, name)
    if wan_diffusers_to_comfyui(diffusers) != name:
        raise ValueError(f"LoRA layer {name} is not a Wan attention, feed-forward, "
                         "embedding or head layer")
    return diffusers


def peft_state_dict_from_comfyui(lora: Mapping[str, torch.Tensor], family: str,
                                 adapter_config: Mapping) -> dict[str, torch.Tensor]:
    """Invert :func:`comfyui_lora_state_dict`: ComfyUI keys back to peft's (with the
    ``base_model.model.`` prefix). Each layer's ``alpha / rank`` must equal the config's
    scale, as peft applies one scale to every layer."""
    if family not in _PREFIXES:
        raise ValueError(f"family must be one of {', '.join(_PREFIXES)}, got {family!r}")
    scale = _scale(adapter_config)
    state = {}
    for module, parts in _modules(lora).items():
        name = module.removeprefix(_PREFIXES[family])
        name = _wan_diffusers_module(name) if family == "wan" else name
        rank = parts["lora_A.weight"].shape[0]
        alpha = float(parts["alpha"]) if "alpha" in parts else 1.0 * rank
        if abs(alpha / rank - scale) > 1e-6 * scale:
            raise ValueError(f"{module}: alpha/rank = {alpha / rank} but adapter_config's "
                             f"scale is {scale}; write the matching lora_alpha")
        for part in ("lora_A.weight", "lora_B.weight"):
            state[f"{_PEFT_PREFIX}{name}.{part}"] = parts[part]
    return state


def check_lora_against(lora: Mapping[str, torch.Tensor],
                       model_state: Mapping[str, torch.Tensor] | Iterable[str]) -> list[str]:
    """Check that a LoRA fits a model; return the model weights it patches.

    ``lora`` is in peft's or ComfyUI's format; ``model_state`` is the model's state dict
    (or only its keys: then shapes are not checked) in the LoRA's naming: a ComfyUI
    ``diffusion_model.*`` state dict for a Wan export, the diffusers transformer's for
    peft adapters and Flux/Qwen-Image exports. Prefixes (``diffusion_model.``,
    ``transformer.``, ``base_model.model.``) are ignored on both sides.

    Raises ``ValueError`` listing the LoRA layers the model lacks (unexpected keys), the
    halves missing from incomplete pairs (missing keys) and shape mismatches: the sign
    of a LoRA trained for another base model.
    """
    def bare(name: str) -> str:
        for prefix in ("diffusion_model.", "transformer.", _PEFT_PREFIX):
            name = name.removeprefix(prefix)
        return name

    shapes = ({bare(key): tuple(tensor.shape) for key, tensor in model_state.items()}
              if isinstance(model_state, Mapping) else dict.fromkeys(map(bare, model_state)))
    unexpected, missing, mismatched, patched = [], [], [], []
    for module, parts in _modules(lora).items():
        weight = f"{bare(module)}.weight"
        missing += [f"{module}.{part}" for part in ("lora_A.weight", "lora_B.weight")
                    if part not in parts]
        if weight not in shapes:
            unexpected.append(f"{module}.lora_A.weight")
            continue
        patched.append(weight)
        shape = shapes[weight]
        if shape is not None and "lora_A.weight" in parts and "lora_B.weight" in parts:
            low_rank = (parts["lora_B.weight"].shape[0], parts["lora_A.weight"].shape[1])
            if low_rank != shape[:2]:
                mismatched.append(f"{module}: LoRA {low_rank[0]}x{low_rank[1]}, model "
                                  f"{weight} {shape[0]}x{shape[1]}")
    problems = []
    for label, names in (("unexpected (the model has no such layer)", unexpected),
                         ("missing (incomplete down/up pairs)", missing),
                         ("shape mismatches", mismatched)):
        if names:
            problems.append(f"{len(names)} {label}: {', '.join(names[:8])}"
                            + (" ..." if len(names) > 8 else ""))
    if problems:
        raise ValueError("LoRA does not fit this model (was it trained for another base "
                         "model? its hdr_lora.json names the base): " + "; ".join(problems))
    return patched


def _read_adapter(folder: Path) -> tuple[dict[str, torch.Tensor], dict, dict, dict]:
    weights, config_path = folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG
    mapping_path = folder / COLOUR_MAPPING
    for path in (weights, config_path, mapping_path):
        if not path.is_file():
            raise ValueError(f"adapter folder {folder} lacks {path.name}; point it at a "
                             "train-lora output or checkpoint folder")
    with safe_open(weights, framework="pt") as stored:
        tensors = {key: stored.get_tensor(key) for key in stored.keys()}
        metadata = dict(stored.metadata() or {})
    return (tensors, json.loads(config_path.read_text(encoding="utf-8")),
            json.loads(mapping_path.read_text(encoding="utf-8")), metadata)


def export_comfyui_lora(adapter_folder: str | os.PathLike, output: str | os.PathLike,
                        overwrite: bool = False) -> Path:
    """Write the adapter in ``adapter_folder`` as a LoRA file ComfyUI's loaders apply.

    The family comes from the folder's ``hdr_lora.json`` (``base_model.family``); the
    adapter's safetensors metadata is copied. Written atomically; an existing ``output``
    is replaced only with ``overwrite``.
    """
    tensors, config, mapping, metadata = _read_adapter(Path(adapter_folder))
    exported = comfyui_lora_state_dict(tensors, mapping["base_model"]["family"], config)
    output = Path(output)
    with atomic_path(output, overwrite=overwrite) as temporary:
        save_file(exported, temporary, metadata=metadata)
    return output

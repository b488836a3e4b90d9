"""A trained LumaFlux adapter set as a folder: ``lumaflux.json`` + ``lumaflux.safetensors``.

The JSON names what the weights only make sense with: the base transformer (its diffusers
class and :func:`.checkpoint_dir.config_sha256` of its config), the switches the
adapters were trained with (:class:`.lumaflux.LumaFluxSwitches`), PGA's LoRA rank, the
SigLIP encoder (class and hidden size), the tone-field head's knots ``K`` and feature
channels, the pixel patch the transformer read, and the colour encoding of input and
output. The safetensors hold the adapters' and the head's weights and the prompt
embeddings the adapters were trained under (the forward depends on them).

A folder appears whole or not at all: it is written under a hidden name beside its final
one (each file through :func:`..atomic.atomic_path`) and renamed into place; an existing
folder is replaced only with ``overwrite=True``. Loading checks the base model's class and
config hash before any weight is read, and refuses another base naming both models.

References
----------
LumaFlux poster (PGA, PCM, TLAM, coupler, the K = 8 RQS tone-field head, BT.2020 PQ
output); diffusers' ``save_pretrained`` layout (config JSON beside safetensors);
ITU-R BT.2408-7 section 5.1 (203 nits reference white, the head's linear scale).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import _file_mode, atomic_path
from .checkpoint_dir import config_sha256
from .lumaflux import LumaFluxAdapters, LumaFluxSwitches
from .tone_field import SDR_WHITE_NITS, ToneFieldHead

FORMAT = "comfyui-hdr/lumaflux-adapters"
"""The ``format`` entry of ``lumaflux.json`` (version :data:`VERSION`)."""
VERSION = 1
METADATA_FILE = "lumaflux.json"
WEIGHTS_FILE = "lumaflux.safetensors"

COLOUR = {"input": "sRGB code values in [0, 1] (Rec.709 primaries), as ComfyUI IMAGE",
          "output": f"linear BT.2020 RGB, 1.0 = {SDR_WHITE_NITS:g} nits (ITU-R BT.2408 "
                    "reference white); PQ code values of BT.2020 with SDR white at 203 nits"}
"""The colour encoding the adapters were trained in (:mod:`.tone_field`)."""


@dataclass
class LumaFluxAdapterSet:
    """A loaded (or to-be-saved) adapter set: what runs on top of the frozen transformer."""

    adapters: LumaFluxAdapters
    head: ToneFieldHead
    prompt: torch.Tensor
    """T5 prompt embeddings ``[B, L, joint_attention_dim]`` the adapters were trained under."""
    pooled_prompt: torch.Tensor
    """CLIP pooled embeddings ``[B, pooled_projection_dim]``."""
    patch: int
    """Pixels per token side: the transformer read the SDR image in ``patch x patch``."""
    siglip_class: str = "SiglipVisionModel"


def _base_identity(transformer) -> dict:
    """``class_name`` and ``config_sha256`` of a diffusers transformer."""
    return {"class_name": type(transformer).__name__,
            "config_sha256": config_sha256(transformer)}


def _metadata(transformer, adapter_set: LumaFluxAdapterSet) -> dict:
    adapters, head = adapter_set.adapters, adapter_set.head
    return {
        "format": FORMAT, "version": VERSION,
        "base_model": _base_identity(transformer),
        "switches": dataclasses.asdict(adapters.switches),
        "rank": adapters.value_lora[0].down.out_features,
        "siglip": {"class_name": adapter_set.siglip_class,
                   "hidden_size": adapters.film[0].key.in_features},
        "tone_field": {"knots": head.knots, "curve": head.curve,
                       "feature_channels": head.projection.in_features},
        "patch": adapter_set.patch,
        "colour": COLOUR,
    }


def _tensors(adapter_set: LumaFluxAdapterSet) -> dict[str, torch.Tensor]:
    tensors = {f"adapters.{key}": value for key, value in
               adapter_set.adapters.state_dict().items()}
    tensors |= {f"head.{key}": value for key, value in adapter_set.head.state_dict().items()}
    tensors |= {"conditioning.prompt": adapter_set.prompt,
                "conditioning.pooled_prompt": adapter_set.pooled_prompt}
    return {key: value.detach().cpu().contiguous() for key, value in tensors.items()}


def save_lumaflux(folder: str | os.PathLike, transformer,
                  adapter_set: LumaFluxAdapterSet, *, overwrite: bool = False) -> Path:
    """Write ``adapter_set``, trained on ``transformer``, as the folder ``folder``.

    Raises
    ------
    FileExistsError
        If ``folder`` exists and ``overwrite`` is False (nothing is written).
    """
    final = Path(folder)
    if final.exists() and not overwrite:
        raise FileExistsError(f"adapter folder {final} already exists; pick another name or "
                              "pass overwrite=True (--overwrite) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial",
                                    dir=final.parent))
    try:
        with atomic_path(partial / WEIGHTS_FILE) as temporary:
            save_file(_tensors(adapter_set), str(temporary), metadata={"format": FORMAT})
        with atomic_path(partial / METADATA_FILE) as temporary:
            temporary.write_text(json.dumps(_metadata(transformer, adapter_set), indent=2)
                                 + "\n", encoding="utf-8")
        mode = _file_mode()
        os.chmod(partial, mode | (mode & 0o444) >> 2)  # a folder: x wherever r
        _move_into_place(partial, final, overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _move_into_place(partial: Path, final: Path, overwrite: bool) -> None:
    if not (overwrite and final.exists()):
        if final.exists():  # rename would silently replace an empty folder
            raise FileExistsError(f"adapter folder {final} appeared while writing; pick "
                                  "another name or pass overwrite=True")
        partial.rename(final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
    final.rename(old / final.name)
    partial.rename(final)
    shutil.rmtree(old)


def _read_metadata(folder: str | os.PathLike) -> dict:
    """The checked ``lumaflux.json`` of an adapter folder.

    Raises
    ------
    ValueError
        Naming the folder and the fix when it is missing, incomplete or of another format.
    """
    folder = Path(folder)
    fix = "point it at a folder written by save_lumaflux (train-lumaflux --output)"
    if not folder.is_dir():
        raise ValueError(f"adapter folder {folder} is not a folder; {fix}")
    missing = [name for name in (METADATA_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"adapter folder {folder} has no {' or '.join(missing)}; {fix}")
    metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise ValueError(f"adapter folder {folder}: {METADATA_FILE} is format "
                         f"{metadata.get('format')!r} version {metadata.get('version')!r}, "
                         f"not {FORMAT!r} version {VERSION}; {fix}")
    return metadata


def _check_base(folder: str | os.PathLike, metadata: dict, transformer) -> None:
    """Refuse a base transformer other than the one the folder's adapters were trained on.

    Raises
    ------
    ValueError
        Naming the folder, both models (class and config hash) and the fix.
    """
    saved, given = metadata["base_model"], _base_identity(transformer)
    if saved != given:
        raise ValueError(
            f"adapter folder {folder} was trained on a {saved['class_name']} with config "
            f"sha256 {saved['config_sha256'][:16]}..., but the model given is a "
            f"{given['class_name']} with config sha256 {given['config_sha256'][:16]}...; "
            "load the base model the adapters were trained on, or train adapters for this "
            "model (train-lumaflux --model)")


def _check_siglip(folder: Path, metadata: dict, encoder) -> None:
    saved = metadata["siglip"]
    given = {"class_name": type(encoder).__name__,
             "hidden_size": encoder.config.hidden_size}
    if saved != given:
        raise ValueError(
            f"adapter folder {folder} was trained with a {saved['class_name']} of hidden "
            f"size {saved['hidden_size']}, but the SigLIP encoder given is a "
            f"{given['class_name']} of hidden size {given['hidden_size']}; load the SigLIP "
            "folder the adapters were trained with (lumaflux_parts.load_siglip)")


def load_lumaflux(folder: str | os.PathLike, transformer, encoder=None
                  ) -> LumaFluxAdapterSet:
    """Load an adapter folder for ``transformer`` (checked, not attached).

    The modules come in float32 on the transformer's device (the precision they trained
    in); call ``adapter_set.adapters.attach(transformer)`` to hook them in. ``encoder``,
    the SigLIP model when given, is checked against the one recorded.

    Raises
    ------
    ValueError
        For a folder that is not an adapter folder, another base model or SigLIP encoder,
        or weights that do not fit the recorded shapes.
    """
    folder = Path(folder)
    metadata = _read_metadata(folder)
    _check_base(folder, metadata, transformer)
    if encoder is not None:
        _check_siglip(folder, metadata, encoder)
    device = next(transformer.parameters()).device
    adapters = LumaFluxAdapters(transformer, metadata["siglip"]["hidden_size"],
                                metadata["rank"], LumaFluxSwitches(**metadata["switches"]))
    head = ToneFieldHead(metadata["tone_field"]["feature_channels"],
                         metadata["tone_field"]["knots"], metadata["tone_field"]["curve"])
    tensors = load_file(str(folder / WEIGHTS_FILE))
    try:
        for prefix, module in (("adapters.", adapters), ("head.", head)):
            module.load_state_dict({key[len(prefix):]: value for key, value in tensors.items()
                                    if key.startswith(prefix)}, strict=True)
        # cloned into their own allocations: safetensors' tensors can sit at offsets of one
        # buffer, and BLAS kernels on unaligned data round differently (not bit-exact)
        prompt = tensors["conditioning.prompt"].clone()
        pooled_prompt = tensors["conditioning.pooled_prompt"].clone()
    except (RuntimeError, KeyError) as error:
        raise ValueError(f"adapter folder {folder}: {WEIGHTS_FILE} does not fit "
                         f"{METADATA_FILE} ({error}); re-save the adapters with "
                         "save_lumaflux") from None
    return LumaFluxAdapterSet(adapters.to(device), head.to(device), prompt.to(device),
                              pooled_prompt.to(device), metadata["patch"],
                              metadata["siglip"]["class_name"])

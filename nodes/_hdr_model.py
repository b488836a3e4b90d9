"""Widened (32-channel) DiTs as first-class ComfyUI models, built from explicit dimensions.

ComfyUI's own loader (``comfy.sd.load_diffusion_model``) detects an architecture from key
names and a few shapes and fills the rest from fixed defaults (comfy/model_detection.py):
a widened Wan 2.1 loads as ``WAN21_T2V`` with the 16-channel ``Wan21`` latent format, a
widened Qwen-Image or Flux is built with 16 output channels and fails to load, and any
Qwen-Image or Flux narrower than the released width (3072) is refused. Here the model is
built the way that loader builds it, with three changes:

- the ``unet_config`` ComfyUI detected is completed from the checkpoint's own shapes
  (latent channels in and out, head width and count, text width) and the model card;
- the model config class is a subclass of ComfyUI's (``comfy.supported_models.QwenImage``,
  ``WAN21_T2V`` or ``Flux``) whose ``latent_format`` has 32 channels and normalises each
  channel with the HDR VAE's measured statistics, ``(z - mean) / std`` in and its inverse
  out (``hdr/models/latent_stats.py``), so samplers, empty-latent resizing and the model's
  ``process_latent_in`` treat the latent as the HDR VAE's and the DiT sees unit variance;
- a missing or unexpected weight is an error, not a log line.

The model card is an optional JSON beside the checkpoint (``<name>.json``)::

    {"family": "qwen_image" | "wan" | "flux", "in_channels": 32, "out_channels": 32,
     "latent_format": {"channels": 32, "vae": "my_hdr_vae", "mean": [...], "std": [...]},
     "colour_encoding": "HDR VAE latent (scene-linear, dual-head)", "widen_mode": "copy",
     "model": {"axes_dims_rope": [4, 14, 14]}}

``model`` holds dimensions the weights do not record: Qwen-Image ``axes_dims_rope``,
Flux ``axes_dim`` and ``num_heads``, Wan ``num_heads`` (defaults: heads of width 128 as
released, rotary axes split 1/8 time, the rest halved between height and width).

``latent_format.vae`` names the HDR VAE whose latent the DiT was trained on (a folder
under ``models/vae_hdr``, beside the checkpoint, or absolute): its ``latent_stats.json``
is then required and used, and must equal ``mean``/``std`` when the card records them
too. A card with ``mean``/``std`` only uses those; a card with neither (a widened DiT never
trained on an HDR latent) keeps ``scaling_factor``/``shift_factor`` (default 1 and 0).
ComfyUI modules are imported inside the functions.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

HDR_LATENT_CHANNELS = 32
# ComfyUI's image_model -> the widening family (hdr/models/widen.py COMFY_LAYOUTS).
FAMILIES = {"qwen_image": "qwen_image", "wan2.1": "wan", "flux": "flux"}
_CONFIG_CLASSES = {"qwen_image": "QwenImage", "wan": "WAN21_T2V", "flux": "Flux"}
_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8,
          "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
WEIGHT_DTYPES = {"default": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelCard:
    """The JSON beside a widened checkpoint (all fields optional in the file)."""

    family: str | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    channels: int = HDR_LATENT_CHANNELS
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    colour_encoding: str = ""
    model: dict = field(default_factory=dict)
    vae: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def read_model_card(checkpoint: Path) -> ModelCard:
    """The model card ``<name>.json`` beside ``checkpoint``, or the defaults without one."""
    path = Path(checkpoint).with_suffix(".json")
    if not path.is_file():
        return ModelCard()
    try:
        card = json.loads(path.read_text())
        latent = card.get("latent_format", {})
        return ModelCard(family=card.get("family"), in_channels=card.get("in_channels"),
                         out_channels=card.get("out_channels"),
                         channels=int(latent.get("channels", HDR_LATENT_CHANNELS)),
                         scaling_factor=float(latent.get("scaling_factor", 1.0)),
                         shift_factor=float(latent.get("shift_factor", 0.0)),
                         colour_encoding=str(card.get("colour_encoding", "")),
                         model=dict(card.get("model", {})),
                         vae=None if latent.get("vae") is None else str(latent["vae"]),
                         mean=_floats(latent.get("mean")), std=_floats(latent.get("std")))
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"model card {path.name} is not valid: {error}; it is JSON like "
                         '{"family": "qwen_image", "in_channels": 32, "out_channels": 32, '
                         '"latent_format": {"channels": 32}}') from None


def _floats(values) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(value) for value in values)


def rope_axes(head_width: int) -> list[int]:
    """Rotary axes (time, height, width) for a head width: (16, 56, 56) at 128 as released.

    >>> rope_axes(128), rope_axes(32)
    ([16, 56, 56], [4, 14, 14])
    """
    time = 2 * (head_width // 16)
    height = 2 * ((head_width - time) // 4)
    return [time, height, head_width - time - height]


def _qwen_image(config: dict, sd: dict, model: dict) -> tuple[int, int]:
    head = sd["transformer_blocks.0.attn.norm_q.weight"].shape[0]
    config.update(in_channels=sd["img_in.weight"].shape[1],
                  out_channels=sd["proj_out.weight"].shape[0] // 4, attention_head_dim=head,
                  num_attention_heads=sd["img_in.weight"].shape[0] // head,
                  joint_attention_dim=sd["txt_in.weight"].shape[1],
                  axes_dims_rope=tuple(model.get("axes_dims_rope", rope_axes(head))))
    return config["in_channels"] // 4, config["out_channels"]


def _wan(config: dict, sd: dict, model: dict) -> tuple[int, int]:
    if config.get("model_type") != "t2v":
        raise ValueError(f"this Wan checkpoint is a {config.get('model_type')!r} model; only "
                         "text-to-video Wan 2.1 models are widened and loaded here")
    config.update(num_heads=int(model.get("num_heads", config["dim"] // 128)),
                  text_dim=sd["text_embedding.0.weight"].shape[1],
                  freq_dim=sd["time_embedding.0.weight"].shape[1])
    return config["in_dim"], config["out_dim"]


def _flux(config: dict, sd: dict, model: dict) -> tuple[int, int]:
    patch, hidden = config["patch_size"], config["hidden_size"]
    heads = int(model.get("num_heads", hidden // 128))
    config.update(out_channels=sd["final_layer.linear.weight"].shape[0] // patch**2,
                  num_heads=heads, axes_dim=list(model.get("axes_dim", rope_axes(hidden // heads))),
                  mlp_ratio=sd["double_blocks.0.img_mlp.0.weight"].shape[0] / hidden)
    return config["in_channels"], config["out_channels"]


_COMPLETE = {"qwen_image": _qwen_image, "wan": _wan, "flux": _flux}


@functools.cache
def latent_format_class(channels: int, dimensions: int):
    """A ComfyUI ``LatentFormat`` for the HDR VAE's latent (``dimensions`` 3: video-shaped)."""
    from comfy import latent_formats

    class HDRVAELatent(latent_formats.LatentFormat):
        """The dual-head HDR VAE's latent: ``(z - shift) * scale`` in, its inverse out."""

        latent_channels = channels
        latent_dimensions = dimensions
        shift_factor = 0.0
        latent_stats = None  # a LatentStatistics: per-channel (z - mean) / std instead

        def process_in(self, latent):
            if self.latent_stats is not None:
                return self.latent_stats.process_in(latent)
            return (latent - self.shift_factor) * self.scale_factor

        def process_out(self, latent):
            if self.latent_stats is not None:
                return self.latent_stats.process_out(latent)
            return latent / self.scale_factor + self.shift_factor

    HDRVAELatent.__name__ = HDRVAELatent.__qualname__ = f"HDRVAE{channels}"
    return HDRVAELatent


@functools.cache
def model_config_class(family: str, channels: int):
    """``comfy.supported_models.<QwenImage|WAN21_T2V|Flux>`` with the HDR latent format."""
    import comfy.supported_models

    base = getattr(comfy.supported_models, _CONFIG_CLASSES[family])
    latent = latent_format_class(channels, base.latent_format.latent_dimensions)
    return type(f"HDR{base.__name__}", (base,), {"latent_format": latent, "__doc__": (
        f"{base.__name__} denoising the {channels}-channel HDR VAE latent.")})


def hdr_model_config(sd: dict, card: ModelCard, name: str, stats=None):
    """ComfyUI model config for a widened checkpoint's state dict (keys without prefix);
    ``stats`` (:func:`card_latent_stats`) normalise its latent per channel."""
    from comfy import model_detection

    unet_config = model_detection.detect_unet_config(sd, "")
    image_model = (unet_config or {}).get("image_model")
    if image_model not in FAMILIES:
        raise ValueError(f"{name} is not a Qwen-Image, Flux.1 or Wan 2.1 diffusion model in "
                         f"ComfyUI's format (detected: {image_model}); widen one of those")
    family = FAMILIES[image_model]
    if card.family not in (None, family):
        raise ValueError(f"{name}: its model card says family {card.family!r} but the "
                         f"weights are a {family} model; fix the JSON beside it")
    try:
        latent_in, latent_out = _COMPLETE[family](unet_config, sd, card.model)
    except KeyError as error:
        raise ValueError(f"{name} lacks the weight {error} that every {family} model has; is "
                         "the file complete?") from None
    for label, found, wanted in (("in", latent_in, card.in_channels),
                                 ("out", latent_out, card.out_channels)):
        if found != (wanted or card.channels):
            raise ValueError(
                f"{name} takes {latent_in} latent channels in and {latent_out} out, but the "
                f"HDR latent has {wanted or card.channels} ({label}); widen a 16-channel model "
                "with `widen` (32 channels), or load a stock model with Load Diffusion Model")
    config = model_config_class(family, card.channels)(unet_config)
    config.latent_format.scale_factor = card.scaling_factor
    config.latent_format.shift_factor = card.shift_factor
    if stats is not None and stats.channels != card.channels:
        raise ValueError(f"{name} denoises {card.channels}-channel latents but its VAE's "
                         f"statistics have {stats.channels} channels; point its model card's "
                         "latent_format.vae at the HDR VAE it was trained with")
    config.latent_format.latent_stats = stats
    return config


def _vae_folder(name: str, checkpoint: Path) -> Path | None:
    """The folder ``name`` (a card's ``latent_format.vae``): absolute, beside the
    checkpoint, or under ComfyUI's ``vae_hdr`` folders; None if none exists."""
    named = Path(name).expanduser()
    candidates = [named] if named.is_absolute() else [checkpoint.parent / named]
    if not named.is_absolute():
        import folder_paths

        from .hdr_vae_nodes import FOLDER, register_folder

        register_folder()
        candidates += [Path(base) / named for base in folder_paths.get_folder_paths(FOLDER)]
    return next((folder for folder in candidates if folder.is_dir()), None)


def card_latent_stats(card: ModelCard, checkpoint: Path):
    """The latent statistics a DiT's card asks for (see the module), or None for none."""
    from ..hdr.models.latent_stats import (
        LATENT_STATS_FILE,
        STATS_FIX,
        LatentStatistics,
        read_latent_stats,
    )

    card_path = checkpoint.with_suffix(".json")
    recorded = None
    if card.mean is not None or card.std is not None:
        if card.mean is None or card.std is None:
            raise ValueError(f"{card_path.name}: latent_format has only one of mean and std; "
                             "record both (one value per latent channel)")
        recorded = LatentStatistics(mean=card.mean, std=card.std, count=0)
    if card.vae is None:
        return recorded
    folder = _vae_folder(card.vae, checkpoint)
    if folder is None:
        raise ValueError(f"{card_path.name} names the HDR VAE {card.vae!r} (latent_format.vae) "
                         "but no such folder is beside the checkpoint or in models/vae_hdr; "
                         "put the VAE the DiT was trained with there, or fix the name")
    stats = read_latent_stats(folder)
    if stats is None:
        raise ValueError(f"{card_path.name} needs the latent statistics of the HDR VAE "
                         f"{folder}, but {folder / LATENT_STATS_FILE} is missing; "
                         + STATS_FIX.format(vae=folder))
    if recorded is not None and not recorded.matches(stats):
        raise ValueError(f"{card_path.name} was trained on latents normalised with other "
                         f"statistics than {folder / LATENT_STATS_FILE}: the DiT and this VAE "
                         "are for different latents; point latent_format.vae at the VAE the "
                         "DiT was trained with, or train the DiT on this VAE's latents")
    return stats


def tensor_sizes(path: Path) -> tuple[int, int]:
    """(parameters, bytes) of a safetensors file, read from its header only."""
    from safetensors import safe_open

    parameters = size = 0
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            piece = handle.get_slice(key)
            count = 1
            for extent in piece.get_shape():
                count *= extent
            parameters += count
            size += count * _BYTES.get(piece.get_dtype(), 4)
    return parameters, size


def check_memory(path: Path, dtype: torch.dtype | None) -> None:
    """Refuse early, with the estimate, a model that would not fit in free RAM.

    Loading holds the file's tensors and the built model at once: about
    ``file bytes + parameters x bytes per weight`` (float32 when ComfyUI picks the type).
    """
    import psutil

    parameters, size = tensor_sizes(path)
    per_weight = torch.finfo(dtype or torch.float32).bits // 8
    needed = size + parameters * per_weight
    available = psutil.virtual_memory().available
    if needed > available:
        raise ValueError(
            f"{path.name} needs about {_size(needed)} of RAM to load ({parameters / 1e6:.1f} M "
            f"parameters: {_size(size)} of tensors in the file + "
            f"{_size(parameters * per_weight)} for the model) but {_size(available)} is free; "
            "free memory (unload other models) or set weight_dtype to bfloat16")


def _size(count: int) -> str:
    """Bytes in GB, or in MB below 1 GB."""
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.1f} MB"


def load_hdr_diffusion_model(path: Path, dtype: torch.dtype | None = None):
    """A ``comfy.model_patcher.ModelPatcher`` for a widened checkpoint (safetensors only)."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils
    from comfy import model_detection

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"{path.name} is not a .safetensors file; pickle checkpoints (.ckpt, "
                         ".pt, .bin) are refused because loading them can run code: convert it "
                         "to safetensors")
    check_memory(path, dtype)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    sd = comfy.utils.state_dict_prefix_replace(
        sd, {model_detection.unet_prefix_from_state_dict(sd): ""}, filter_keys=True) or sd
    card = read_model_card(path)
    model_config = hdr_model_config(sd, card, path.name, card_latent_stats(card, path))

    load_device = mm.get_torch_device()
    supported = list(model_config.supported_inference_dtypes)
    unet_dtype = dtype or mm.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                                        supported_dtypes=supported,
                                        weight_dtype=comfy.utils.weight_dtype(sd))
    model_config.set_inference_dtype(unet_dtype,
                                     mm.unet_manual_cast(unet_dtype, load_device, supported))
    model = model_config.get_model(sd, "").to(mm.unet_offload_device())
    expected, found = set(model.diffusion_model.state_dict()), set(
        model_config.process_unet_state_dict(dict(sd)))
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise ValueError(f"{path.name} does not match the model built from its shapes: missing "
                         f"{missing[:4]}, unexpected {unexpected[:4]}; is it a complete "
                         f"{model_config.unet_config['image_model']} checkpoint?")
    model.load_model_weights(sd, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device,
                                            offload_device=mm.unet_offload_device())

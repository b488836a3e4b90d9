"""``train-dit``: teach a widened DiT to denoise the dual-head HDR VAE's scene-linear latent.

    python -m comfyui_hdr.training train-dit --model WIDENED_DIR --vae HDR_VAE_DIR \\
        --prompt-embeddings FILE --output DIR [--data procedural|EXR_FOLDER] [--rank 64]
    accelerate launch -m comfyui_hdr.training train-dit ...      (several GPUs)

Phase two of the HDR Qwen-Image recipe (native linear generation): the DiT, widened to the
HDR VAE's latent channels by ``widen``, learns rectified flow on that latent, so a prompt
gives scene-linear light with no log curve at inference. It runs ``train-lora``'s loop
(:func:`~.lora.train_lora`: data, latent cache, resume, accelerate, held-out loss, memory
options ``--weight-dtype``, ``--gradient-checkpointing``, ``--blocks-to-swap``,
``--optimizer``) as a :class:`~.lora.TrainingMethod` that changes:

- the latents: scene-linear frames through the HDR VAE (:mod:`.dit_latents`), normalised by
  :func:`~.dit_latents.latent_statistics` / :func:`~.dit_latents.normalise_latents`;
- the loss: the flow loss of :func:`~.lora_step.flow_loss` (``x_t = (1 - t) x0 + t noise``,
  target ``noise - x0``) weighted per latent pixel by ``1 + w * log2(1 + Y / diffuse
  white)`` (:func:`~.dit_latents.highlight_weights`; the loss is taken on the unpacked
  latent, so a latent pixel's weight covers its feature in whichever 2x2 token packs it);
- the flow times: logit-normal with Qwen-Image's resolution-dependent shift
  (:mod:`.dit_options`);
- what trains: a LoRA (rank 64 on Q/K/V of both streams by default) and, in full and in
  float32, the widened input and output projections (:data:`FULL_MODULES`);
- the outputs: ``adapter_model.safetensors`` + ``adapter_config.json`` (peft; the
  projections ride along as ``base_model.model.<layer>.weight``/``.bias``, which peft's
  loader puts into the base: ``PeftModel.from_pretrained(widened_base, output)`` gives the
  trained model), ``hdr_dit.json`` (the VAE it was trained with, its latent channels and
  statistics, the base model, the recipe) and ``comfyui_lora.safetensors``: the LoRA in
  ComfyUI's keys plus each projection's change from the widened base as ComfyUI's
  full-weight ``<layer>.diff`` / ``.diff_b`` patches (comfy/lora.py ``load_lora``), so
  "Load HDR Diffusion Model" (the widened base) + LoraLoaderModelOnly is the trained model.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..hdr.atomic import atomic_path
from ..hdr.models.widen import DIFFUSERS_LAYOUTS
from .common import write_json
from .dit_latents import DitLatents, HdrVae, latent_statistics, vae_latent_channels
from .dit_options import DitTrainingOptions, dynamic_shift_mu, parse_args
from .lora import RUN_FILES, TrainingMethod, TrainingResult, train_lora, write_adapter
from .lora_export import (
    ADAPTER_WEIGHTS,
    COMFYUI_LORA,
    comfyui_lora_state_dict,
    comfyui_module_name,
)
from .lora_memory import model_folder
from .lora_models import config_sha256

__all__ = ["DIT_MAPPING", "FULL_MODULES", "MODEL_CARD", "NATIVE_LINEAR", "DitTrainingOptions",
           "main", "model_card", "parse_args", "train_dit"]

DIT_MAPPING = "hdr_dit.json"
MODEL_CARD = "model_card.json"
"""The card for the widened base's checkpoint (:func:`model_card`)."""
FULL_MODULES = {layout.family: (layout.input, layout.output)
                for layout in DIFFUSERS_LAYOUTS.values()}
"""The widened layers trained in full, per family (:mod:`~comfyui_hdr.hdr.models.widen`)."""
_PEFT_PREFIX = "base_model.model."


def _model_channels(transformer, family: str) -> tuple[int, int]:
    """Latent channels the transformer takes and predicts (2x2 patches: 4 features or
    output rows per channel in every family, Wan's Conv3d patch (1, 2, 2) included)."""
    first, last = FULL_MODULES[family]
    weight = transformer.get_submodule(first).weight
    channels_in = weight.shape[1] // (4 if weight.ndim == 2 else 1)
    return channels_in, transformer.get_submodule(last).weight.shape[0] // 4


def _check(options: DitTrainingOptions, transformer, family: str, vae: HdrVae) -> None:
    """Refuse a DiT whose latent channels are not the HDR VAE's, naming both and the fix."""
    latent = vae_latent_channels(vae.folder)
    channels_in, channels_out = _model_channels(transformer, family)
    if channels_in == channels_out == latent:
        return
    model, vae_folder = model_folder(options.model, "transformer"), vae.folder
    if channels_in < latent and channels_in == channels_out:
        raise ValueError(f"--model {model} takes {channels_in} latent channels but --vae "
                         f"{vae_folder} encodes {latent}: the DiT was not widened; widen it "
                         f"first: python -m comfyui_hdr.training widen {model} WIDENED_DIR "
                         f"--channels {latent}, then pass --model WIDENED_DIR")
    raise ValueError(f"--model {model} takes {channels_in} latent channels and predicts "
                     f"{channels_out}, but --vae {vae_folder} encodes {latent}: they were made "
                     "for different latents; pass the HDR VAE this DiT was widened for, or "
                     f"widen the 16-channel base model again with --channels {latent}")


def _time_shift(options: DitTrainingOptions, item_shape: torch.Size) -> float:
    """``--time-shift-mu``, or with ``--dynamic-shift`` Qwen-Image's mu for the crop's
    ``H/16 * W/16`` tokens."""
    if not options.dynamic_shift:
        return options.time_shift_mu
    height, width = (options.crop, options.crop) if options.crop else item_shape[1:3]
    return dynamic_shift_mu((height // 16) * (width // 16))


def _mapping(options: DitTrainingOptions, family: str, transformer, vae: HdrVae,
             targets: list[str], step: int) -> dict:
    mean, std = latent_statistics(vae.folder)
    identity = vae.identity()
    return {
        "format": "comfyui-hdr-dit", "version": 1, "step": step,
        "hdr_transform": "scene-linear (HDR VAE latent)", "reference_downscale_factor": 1,
        "gamut": options.gamut, "scene_linear_diffuse_white": 1.0,
        "base_model": {"family": family, "class_name": type(transformer).__name__,
                       "id": options.model, "config_sha256": config_sha256(transformer),
                       "latent_channels": _model_channels(transformer, family)[0]},
        "vae": {"class_name": identity["class_name"], "id": options.vae,
                "config_sha256": identity["config_sha256"],
                "weights_sha256": identity["weights_sha256"],
                "latent_channels": vae_latent_channels(vae.folder),
                "latent_statistics": {"mean": mean.tolist(), "std": std.tolist()}},
        "lora": {"rank": options.rank, "alpha": options.alpha or options.rank,
                 "targets": targets},
        "full_modules": list(FULL_MODULES[family]),
        "flow": {"logit_mean": options.logit_mean, "logit_std": options.logit_std,
                 "time_shift_mu": options.time_shift_mu},
        "highlight_weight": {"formula": "1 + weight * log2(1 + Y / diffuse_white)",
                             "weight": options.highlight_weight,
                             "diffuse_white": options.highlight_threshold},
    }


def _base_tensors(options: DitTrainingOptions, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The widened base's own tensors ``names`` (float32), read from ``--model``'s files."""
    found = {}
    for path in sorted(model_folder(options.model, "transformer").glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as stored:
            found |= {key: stored.get_tensor(key).float() for key in stored.keys()
                      if key in names}
    return found


def comfyui_dit_lora(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor],
                     family: str, adapter_config: dict) -> dict[str, torch.Tensor]:
    """The ComfyUI LoRA of a ``train-dit`` adapter state: the LoRA pairs renamed
    (:func:`~.lora_export.comfyui_lora_state_dict`) and each full-trained tensor's change
    from ``base`` (diffusers names) as ``<layer>.diff`` (weight) / ``<layer>.diff_b`` (bias),
    the full-weight patches ComfyUI's ``comfy.lora.load_lora`` adds to the loaded model."""
    pairs = {key: value for key, value in state.items() if ".lora_" in key}
    exported = comfyui_lora_state_dict(pairs, family, adapter_config)
    for key, trained in state.items():
        if key in pairs:
            continue
        module, _, parameter = key.removeprefix(_PEFT_PREFIX).rpartition(".")
        name = comfyui_module_name(module, family)
        suffix = {"weight": "diff", "bias": "diff_b"}[parameter]
        change = trained.float() - base[f"{module}.{parameter}"]
        exported[f"{name}.{suffix}"] = change.contiguous()
    return exported


def _write(folder: Path, peft_model, run: dict) -> None:
    """The adapter with the projections, ``hdr_dit.json`` and the ComfyUI LoRA."""
    from peft import get_peft_model_state_dict

    options, family = run["options"], run["family"]
    base_model = peft_model.get_base_model()
    state = dict(get_peft_model_state_dict(peft_model))
    for module in FULL_MODULES[family]:
        for parameter, tensor in base_model.get_submodule(module).named_parameters():
            state[f"{_PEFT_PREFIX}{module}.{parameter}"] = tensor.detach().float().cpu()
    mapping = _mapping(options, family, run["transformer"], run["vae"], run["targets"],
                       run["step"])
    write_adapter(folder, peft_model, mapping, DIT_MAPPING, state)
    base = _base_tensors(options, [key.removeprefix(_PEFT_PREFIX) for key in state
                                   if ".lora_" not in key])
    exported = comfyui_dit_lora(state, base, family, peft_model.peft_config["default"].to_dict())
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as stored:
        metadata = dict(stored.metadata() or {})
    with atomic_path(folder / COMFYUI_LORA, overwrite=True) as temporary:
        save_file(exported, temporary, metadata=metadata)
    write_json(folder / MODEL_CARD, model_card(family, options.vae))


def model_card(family: str, vae_folder: str | Path) -> dict:
    """The model card to put beside the widened base's ComfyUI checkpoint (as
    ``<checkpoint name>.json``): "Load HDR Diffusion Model" then finds the HDR VAE by its
    folder name (in ``models/vae_hdr``, or beside the checkpoint) and samples in the latent
    this DiT learnt, ``(z - mean) / std`` with the VAE's statistics, refusing another VAE."""
    channels = vae_latent_channels(vae_folder)
    mean, std = latent_statistics(vae_folder)
    return {"family": family, "in_channels": channels, "out_channels": channels,
            "latent_format": {"channels": channels, "vae": Path(vae_folder).name,
                              "mean": mean.tolist(), "std": std.tolist()},
            "colour_encoding": "HDR VAE latent (scene-linear, dual-head)"}


NATIVE_LINEAR = TrainingMethod(
    name="train-dit", vae=lambda options: HdrVae(options.vae, options.latent_cache or None),
    latents=DitLatents, check=_check, write=_write,
    full_modules=lambda family: FULL_MODULES[family], time_shift=_time_shift,
    files=(*(DIT_MAPPING if name == "hdr_lora.json" else name for name in RUN_FILES),
           MODEL_CARD))
"""``train-dit`` as a :class:`~.lora.TrainingMethod` of ``train-lora``'s loop."""


def train_dit(options: DitTrainingOptions) -> TrainingResult:
    """Run ``train-dit`` (see the module docstring); returns the :class:`~.lora.TrainingResult`."""
    return train_lora(options, NATIVE_LINEAR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``train-dit`` CLI; return the exit code (0, or 2 on bad input)."""
    options = parse_args(argv)
    try:
        result = train_dit(options)
    except (ValueError, FileExistsError) as error:
        print(f"train-dit: error: {error}", file=sys.stderr)
        return 2
    if result.heldout:  # the main process (it alone measures the held-out loss)
        print(f"train-dit: {len(result.losses)} steps, held-out loss "
              f"{result.heldout[0][1]:.5f} -> {result.heldout[-1][1]:.5f}; wrote "
              f"{result.output / COMFYUI_LORA}, the peft adapter and {DIT_MAPPING}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

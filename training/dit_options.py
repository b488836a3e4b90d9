"""``train-dit``'s options: ``train-lora``'s (:class:`~.lora_options.LoraTrainingOptions`)
with the native-linear defaults, and :func:`parse_args`.

Defaults and their sources:

- LoRA rank 64 on Q/K/V of the image stream (``to_q/k/v``) and the text stream
  (``add_q/k/v_proj``), as the HDR Qwen-Image write-up trains it; the widened input and
  output projections train in full (:data:`~.dit.FULL_MODULES`).
- Flow times: logit-normal ``sigmoid(N(0, 1))`` (diffusers'
  ``examples/dreambooth/train_dreambooth_lora_qwen_image.py``,
  ``--weighting_scheme logit_normal``, ``logit_mean 0``, ``logit_std 1``), shifted as
  Qwen-Image's scheduler shifts its sampling sigmas (``--dynamic-shift``, on by default:
  ``Qwen/Qwen-Image`` ``scheduler/scheduler_config.json``: ``use_dynamic_shifting``,
  ``time_shift_type "exponential"``, ``base_shift 0.5`` at ``base_image_seq_len 256``
  tokens to ``max_shift 0.9`` at ``max_image_seq_len 8192``; the mu of
  ``pipeline_qwenimage.calculate_shift``, as musubi-tuner's ``--timestep_sampling
  qwen_shift`` draws training times).
- Highlight weight 1: the loss weight ``1 + log2(1 + Y / diffuse_white)``
  (:func:`~.dit_latents.highlight_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass

from .lora_options import LoraTrainingOptions, _option
from .lora_options import parse_args as parse_trainer_args

__all__ = ["DIT_TARGETS", "QWEN_IMAGE_SHIFT", "DitTrainingOptions", "dynamic_shift_mu",
           "parse_args"]

DIT_TARGETS = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")
"""Q/K/V of the image (``to_*``) and text (``add_*``) streams (Wan: of both attentions)."""

QWEN_IMAGE_SHIFT = {"base_image_seq_len": 256, "max_image_seq_len": 8192, "base_shift": 0.5,
                    "max_shift": 0.9}
"""Qwen/Qwen-Image ``scheduler/scheduler_config.json`` (dynamic exponential shifting)."""

# Options of train-lora that do not apply to a native-linear DiT (no log curve, no SDR
# reference): not flags of train-dit, kept at train-lora's defaults.
HIDDEN = ("curve", "mode", "reference_downscale_factor", "degradations")


def dynamic_shift_mu(tokens: int) -> float:
    """Qwen-Image's shift ``mu`` for an image of ``tokens`` 2x2 latent patches: linear from
    ``base_shift`` at 256 tokens to ``max_shift`` at 8192 (``calculate_shift`` of diffusers'
    ``pipeline_qwenimage.py`` with :data:`QWEN_IMAGE_SHIFT`).

    >>> dynamic_shift_mu(256), dynamic_shift_mu(8192)
    (0.5, 0.9)
    """
    config = QWEN_IMAGE_SHIFT
    slope = ((config["max_shift"] - config["base_shift"])
             / (config["max_image_seq_len"] - config["base_image_seq_len"]))
    return round(config["base_shift"] + slope * (tokens - config["base_image_seq_len"]), 12)


@dataclass
class DitTrainingOptions(LoraTrainingOptions):
    """Every ``train-dit`` option (the CLI flags are these names with dashes)."""

    model: str = _option(MISSING, "widened diffusers transformer folder (`widen` output, or a "
                         "pipeline folder with transformer/): Qwen-Image, Flux or Wan 2.1 "
                         "with as many latent channels as --vae")
    vae: str = _option(MISSING, "dual-head HDR VAE folder (train-vae output)")
    output: str = _option(MISSING, "output folder (checkpoints, adapter with the projections, "
                          "ComfyUI LoRA, hdr_dit.json, plots)")
    rank: int = _option(64, "LoRA rank")
    targets: str = _option(",".join(DIT_TARGETS), "comma-separated layer-name endings to adapt")
    highlight_weight: float = _option(1.0, "loss weight 1 + w * log2(1 + Y / diffuse white) "
                                      "per latent pixel (0: plain MSE)")
    highlight_threshold: float = _option(1.0, "scene-linear luminance of diffuse white in the "
                                         "highlight weight")
    dynamic_shift: bool = _option(True, "set --time-shift-mu from the image's token count "
                                  "as Qwen-Image's scheduler does (base 0.5 at 256 tokens, "
                                  "max 0.9 at 8192)")


def parse_args(argv: Sequence[str] | None = None) -> DitTrainingOptions:
    """Parse ``train-dit``'s command line into :class:`DitTrainingOptions`."""
    return parse_trainer_args(
        argv, DitTrainingOptions, "train-dit",
        "Train a widened DiT to denoise the HDR VAE's scene-linear latent (rectified flow, "
        "LoRA + full input/output projections); writes the peft adapter with the "
        "projections, a ComfyUI LoRA and hdr_dit.json.", HIDDEN)

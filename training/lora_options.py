"""``train-lora``'s options: :class:`LoraTrainingOptions` (the CLI flags are its field
names with dashes) and :func:`parse_args`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields

from ..hdr.transfer import CURVES, LOGGAMMA
from .lora_models import DEFAULT_TARGETS
from .memory import OPTIMIZERS, WEIGHT_DTYPES

__all__ = ["LoraTrainingOptions", "parse_args"]


def _option(default, help: str, **argparse_options):
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class LoraTrainingOptions:
    """Every ``train-lora`` option (the CLI flags are these names with dashes)."""

    model: str = _option(MISSING, "diffusers transformer folder (or a pipeline folder with "
                         "transformer/): Flux, Wan 2.1 or Qwen-Image")
    vae: str = _option(MISSING, "diffusers VAE folder (or a pipeline folder with vae/)")
    prompt_embeddings: str = _option(MISSING, "safetensors of precomputed prompt embeddings "
                                     "(see PromptEmbeddings); must hold every caption, and "
                                     "'' for uncaptioned data")
    output: str = _option(MISSING, "output folder (checkpoints, adapter, ComfyUI LoRA, plots)")
    data: str = _option("procedural", "'procedural' scenes or a folder of EXRs")
    scenes: int = _option(64, "number of procedural scenes")
    size: int = _option(64, "procedural scene size in pixels")
    crop: int = _option(0, "square crop side in pixels (0: full frame)")
    centre_crop: bool = _option(False, "crop at the centre instead of at random")
    frames: int = _option(1, "frames per clip (Wan: 1 + 4k)")
    still_frames: int = _option(9, "video families (Wan): a still (a procedural scene, or "
                                "an item of --frames 1) trains as this many identical frames "
                                "(1 + 4k; 9 as LumiVid runs images; 1 keeps one frame)")
    gamut: str = _option("rec709", "gamut of the EXRs' linear RGB")
    nan_frames: str = _option("skip", "frames holding NaN/Inf", choices=("skip", "error"))
    holdout: int = _option(2, "items kept out of training for the held-out loss (the last)")
    all_starts: bool = _option(False, "train on a clip at every start frame of each EXR "
                               "sequence (DiffHDR's cache of every temporal offset), "
                               "leaving out those sharing a frame with the held-out clips")
    flip: bool = _option(False, "also train on every item mirrored left to right")
    mode: str = _option("text", "text-to-HDR or SDR-reference-conditioned",
                        choices=("text", "reference"))
    reference_downscale_factor: int = _option(1, "reference mode: SDR reference downscale")
    degradations: str = _option("default", "SDR reference degradations",
                                choices=("default", "clean"))
    curve: str = _option("logc4", f"log curve of the targets: one of {', '.join(CURVES)}, "
                         "optionally with its parameters after a colon, e.g. "
                         "loggamma:gamma=2.2,ceiling=65536 (log-gamma's M is 'ceiling': "
                         f"{LOGGAMMA.ceiling:g} by default as in DiffHDR's implementation "
                         f"README, {LOGGAMMA.upstream_ceiling:g} in DiffHDR's code); "
                         "hdr_lora.json records the parameters")
    rank: int = _option(16, "LoRA rank")
    alpha: float = _option(0.0, "LoRA alpha (0: equal to the rank, scale 1)")
    targets: str = _option(",".join(DEFAULT_TARGETS), "comma-separated layer-name endings "
                           "to adapt")
    max_trainable_share: float = _option(5.0, "refuse a LoRA training more than this "
                                         "percentage of the model's parameters")
    steps: int = _option(1000, "optimizer steps in total (a resume continues to this)")
    batch_size: int = _option(1, "items per process and micro-batch")
    gradient_accumulation: int = _option(1, "micro-batches per optimizer step")
    learning_rate: float = _option(1e-4, "AdamW learning rate")
    weight_decay: float = _option(0.0, "AdamW weight decay")
    max_grad_norm: float = _option(1.0, "gradient clipping norm (0: off)")
    logit_mean: float = _option(0.0, "mean of the logit-normal t")
    logit_std: float = _option(1.0, "standard deviation of the logit-normal t")
    time_shift_mu: float = _option(0.0, "exponential time shift of t: e^mu / (e^mu + 1/t - 1) "
                                   "(0: none; diffusers' FlowMatchEulerDiscreteScheduler)")
    highlight_weight: float = _option(0.0, "extra loss weight on latent pixels above "
                                      "--highlight-threshold (0: plain MSE)")
    highlight_threshold: float = _option(1.0, "scene-linear luminance of a highlight "
                                         "(1.0 = diffuse white)")
    guidance: float = _option(1.0, "Flux guidance value, for guidance-distilled models")
    latent_cache: str = _option("", "folder caching VAE latents (crops and degradations are "
                                "then drawn once per item, not per epoch)")
    num_workers: int = _option(0, "DataLoader worker processes (without the cache)")
    seed: int = _option(0, "seed of data order, crops, degradations, noise and t")
    checkpoint_every: int = _option(100, "steps between checkpoints")
    eval_every: int = _option(50, "steps between held-out losses")
    resume: str = _option("", "'latest' or a checkpoint-<step> folder to continue from")
    overwrite: bool = _option(False, "start a new run in a non-empty --output (the old "
                              "run's adapter, LoRA, logs and checkpoints are removed first)")
    mixed_precision: str = _option("no", "accelerate mixed precision",
                                   choices=("no", "fp16", "bf16"))
    weight_dtype: str = _option("auto", "storage of the frozen base: fp8 is weight-only "
                                "(block Linears in float8 with per-channel scales, computed "
                                "in bf16); auto: bf16 on CUDA, fp32 elsewhere",
                                choices=("auto", *WEIGHT_DTYPES))
    gradient_checkpointing: bool = _option(True, "recompute each transformer block's "
                                           "activations in backward instead of keeping them")
    blocks_to_swap: int = _option(0, "keep this many transformer blocks' frozen weights on "
                                  "the CPU, each copied to the device only while it runs")
    optimizer: str = _option("adamw", "adamw, or adamw8bit (torchao: 8-bit moments)",
                             choices=OPTIMIZERS)
    max_memory: float = _option(0.0, "GiB the run may use on its device; a run estimated "
                                "above it is refused (0: the free memory of a CUDA device, "
                                "no limit elsewhere)")


def parse_args(argv: Sequence[str] | None = None, options_class: type = LoraTrainingOptions,
               command: str = "train-lora",
               description: str = "Train a log-space HDR LoRA (rectified flow, peft) on EXRs "
               "or procedural scenes; writes a peft adapter and a ComfyUI LoRA.",
               hidden: Sequence[str] = ()):
    """Parse a trainer's command line into ``options_class`` (:class:`LoraTrainingOptions`
    or a subclass); the fields in ``hidden`` are not flags and keep their defaults."""
    parser = argparse.ArgumentParser(prog=f"python -m comfyui_hdr.training {command}",
                                     description=description)
    for option in fields(options_class):
        if option.name in hidden:
            continue
        flag = "--" + option.name.replace("_", "-")
        extra = {key: value for key, value in option.metadata.items() if key != "help"}
        if option.default is MISSING:
            parser.add_argument(flag, required=True, help=option.metadata["help"], **extra)
        elif isinstance(option.default, bool):
            parser.add_argument(flag, help=option.metadata["help"], action=(
                argparse.BooleanOptionalAction if option.default else "store_true"),
                default=option.default)
        else:
            parser.add_argument(flag, type=type(option.default), default=option.default,
                                help=f"{option.metadata['help']} (default {option.default})",
                                **extra)
    return options_class(**vars(parser.parse_args(argv)))

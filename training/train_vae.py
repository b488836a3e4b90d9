"""``train-vae``: train the dual-head HDR VAE on scene-linear EXRs or procedural scenes.

    python -m comfyui_hdr.training train-vae --output DIR --procedural 512 --crop 128
    python -m comfyui_hdr.training train-vae --output DIR --data EXR_DIR --init-from VAE_DIR
    accelerate launch -m comfyui_hdr.training train-vae ...      (same flags, any GPU count)

(Several CPU processes: ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
--num_processes N -m ...``; plain ``accelerate launch --cpu`` starts only one.)

The model is :class:`~comfyui_hdr.hdr.models.hdr_vae.HDRAutoencoder`, new (layout flags) or
warm-started from a diffusers ``AutoencoderKL`` folder (``--init-from``: FLUX.1, SD3,
SD/SDXL VAEs), or :class:`~comfyui_hdr.hdr.models.qwen_hdr_vae.QwenHDRAutoencoder`
warm-started from Qwen-Image's ``AutoencoderKLQwenImage`` folder, and trains in float32
only with AdamW on
:func:`~comfyui_hdr.hdr.models.hdr_vae.vae_loss`: L1 in log2 stops for the scene-linear
head (values below ``--floor`` count as the floor), L1 against ``--display-tone-mapper``
for the display head, KL, and an optional extra weight on highlights. Each step's batch
and posterior noise depend only on ``--seed`` and the step, so ``--resume`` continues the
loss curve of an uninterrupted run exactly.

``--output`` receives ``checkpoint-<step>/`` every ``--checkpoint-every`` steps and at the
last step (so ``--resume latest --steps MORE`` extends a finished run),
``loss.csv`` and ``loss.png``, and at the end the model as a diffusers directory
(``config.json`` + ``diffusion_pytorch_model.safetensors``, what "Load HDR VAE" reads)
with ``latent_stats.json`` (the latent's per-channel mean and std over the training set,
see ``latent-stats``) and ``hdr_vae.json``: the colour encoding, the training data and the
held-out numbers printed at the end (mean |log2 error| of the scene-linear head before and
after, and how many stops the highlights, pixels brighter than diffuse white, are off).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..hdr.gamut import luminance
from ..hdr.models.hdr_vae import (
    HDRAutoencoder,
    display_target,
    load_hdr_vae,
    vae_loss,
)
from ..hdr.models.latent_stats import LATENT_STATS_FILE, LatentStatistics, write_latent_stats
from ..hdr.models.qwen_hdr_vae import QwenHDRAutoencoder
from ..hdr.tonemap import TONE_MAPPERS
from .common import (
    EpochItems,
    LossLog,
    StepBatchSampler,
    check_safetensors_dir,
    make_accelerator,
    prepare_output,
    progress_bar,
    restore_checkpoint,
    save_checkpoint,
    step_generator,
    write_json,
)
from .data import ExrFolderDataset, ProceduralScenes, collate
from .latent_stats import dataset_latent_stats
from .memory import OPTIMIZERS, WEIGHT_DTYPES, make_optimizer
from .memory_estimate import format_bytes

__all__ = ["TrainedVAE", "build_parser", "heldout_errors", "main", "scene_log2_range",
           "train_vae"]

RUN_FILES = ("config.json", "diffusion_pytorch_model.safetensors", "hdr_vae.json", "loss.csv",
             "loss.png", LATENT_STATS_FILE)
"""What a run writes into ``--output`` besides its checkpoints (``--overwrite`` removes them)."""

LOSS_TERMS = ("total", "linear", "display", "kl")
HELDOUT_SEED = 1_000_000
"""First seed of the held-out procedural scenes; training seeds must stay below it."""
RANGE_ITEMS = 64
"""Training items read to measure the scene-linear range the normalisation starts from."""
DEFAULT_LAYOUT = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                      norm_num_groups=32, mid_block_attention=True)
"""AutoencoderKL's layout (SD, SDXL, FLUX.1 VAEs): 8x spatial compression."""
# Arguments that decide which batches a step sees: a resume with other values warns.
_SCHEDULE = ("data", "procedural", "size", "crop", "gamut", "batch_size", "seed")


@dataclass
class TrainedVAE:
    """What :func:`train_vae` returns: the model (eval mode), ``hdr_vae.json``, the loss log."""

    model: HDRAutoencoder
    description: dict
    losses: LossLog


def _channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of block "
                                         "widths, e.g. 128,256,512,512") from None
    if not channels or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"block widths must be positive, got {text!r}")
    return channels


def build_parser() -> argparse.ArgumentParser:
    """The ``train-vae`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training train-vae",
        description="Train the dual-head 32-channel HDR VAE (scene-linear and display heads).")
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder of scene-linear EXR images/sequences")
    source.add_argument("--procedural", type=int, metavar="N",
                        help="train on N procedural HDR scenes instead (no download)")
    data.add_argument("--size", type=int, default=256,
                      help="render size of procedural scenes in pixels (default 256)")
    data.add_argument("--crop", type=int, default=256,
                      help="training crop side in pixels, a multiple of the model's "
                           "compression (default 256)")
    data.add_argument("--gamut", default="rec709",
                      help="gamut of the EXRs' linear RGB, converted to Rec.709 (default rec709)")
    data.add_argument("--heldout", type=int, default=8, metavar="K",
                      help="held-out procedural scenes measured before and after (default 8)")
    data.add_argument("--heldout-data", type=Path,
                      help="measure on this EXR folder (centre crops) instead")
    data.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")

    model = parser.add_argument_group("model")
    model.add_argument("--init-from", type=Path,
                       help="diffusers AutoencoderKL or AutoencoderKLQwenImage folder to "
                            "warm-start from (its layout and blocks)")
    model.add_argument("--latent-channels", type=int, default=32)
    model.add_argument("--block-out-channels", type=_channels,
                       help="encoder/decoder block widths (default 128,256,512,512)")
    model.add_argument("--layers-per-block", type=int, help="resnets per block (default 2)")
    model.add_argument("--norm-num-groups", type=int, help="GroupNorm groups (default 32)")
    model.add_argument("--mid-block-attention", action=argparse.BooleanOptionalAction,
                       default=None, help="self-attention in the mid block (default on)")
    model.add_argument("--scene-log2-min", type=float,
                       help="darkest stop the normalisation starts from (default: measured "
                            "on the training data, its 0.1th percentile)")
    model.add_argument("--scene-log2-max", type=float,
                       help="brightest stop (default: measured, the data's maximum)")
    model.add_argument("--display-tone-mapper", default="reinhard", choices=list(TONE_MAPPERS),
                       help="tone mapper the display head learns (default reinhard)")
    model.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                       default=True, help="recompute the encoder's and decoder's block "
                       "activations in backward instead of keeping them (default on)")

    loss = parser.add_argument_group("loss")
    loss.add_argument("--floor", type=float, default=2.0**-12,
                      help="scene-linear floor of the log2 loss (default 2^-12)")
    loss.add_argument("--display-weight", type=float, default=1.0)
    loss.add_argument("--kl-weight", type=float, default=1e-6)
    loss.add_argument("--highlight-weight", type=float, default=0.0,
                      help="extra log2-loss weight on pixels above --highlight-threshold")
    loss.add_argument("--highlight-threshold", type=float, default=1.0,
                      help="luminance counted as highlight (default 1.0 = diffuse white)")

    run = parser.add_argument_group("run")
    run.add_argument("--output", type=Path, required=True,
                     help="folder for checkpoints, loss.csv/png and the final model")
    run.add_argument("--steps", type=int, default=10_000, help="optimizer steps (total)")
    run.add_argument("--batch-size", type=int, default=4, help="per process")
    run.add_argument("--learning-rate", type=float, default=1e-4)
    run.add_argument("--weight-decay", type=float, default=1e-2)
    run.add_argument("--checkpoint-every", type=int, default=500)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--latent-stats-items", type=int, metavar="N",
                     help="measure the latent's per-channel mean/std (latent_stats.json) on "
                          "the first N training items (default: all of them)")
    run.add_argument("--resume", metavar="latest|PATH",
                     help="continue from the newest checkpoint in --output, or from PATH")
    run.add_argument("--overwrite", action="store_true",
                     help="start over in a non-empty --output (the old run's model, logs "
                          "and checkpoints are removed first)")
    run.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16", "fp8"],
                     help="refused unless 'no': the HDR VAE trains in float32")
    run.add_argument("--weight-dtype", default="auto", choices=["auto", *WEIGHT_DTYPES],
                     help="refused unless fp32 or auto: every weight of the HDR VAE trains, "
                          "in float32 (there is no frozen base to store in less)")
    run.add_argument("--optimizer", default="adamw", choices=list(OPTIMIZERS),
                     help="adamw, or adamw8bit (torchao: AdamW's moments in 8 bits)")
    return parser


def _check(arguments: argparse.Namespace) -> None:
    for name in ("steps", "batch_size", "checkpoint_every", "crop", "size", "heldout",
                 "latent_channels"):
        if getattr(arguments, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if arguments.procedural is not None:
        if arguments.procedural < 1:
            raise ValueError("--procedural must be at least 1 scene")
        if arguments.seed + arguments.procedural > HELDOUT_SEED:
            raise ValueError(f"--seed + --procedural must stay below {HELDOUT_SEED}, where "
                             "the held-out scenes start")
    if arguments.weight_dtype not in ("auto", "fp32"):
        raise ValueError(f"--weight-dtype is {arguments.weight_dtype}, but every weight of the "
                         "HDR VAE trains, in float32 (fp16/bf16 band smooth HDR gradients); "
                         "use --weight-dtype fp32")
    layout = ("block_out_channels", "layers_per_block", "norm_num_groups",
              "mid_block_attention")
    if arguments.init_from and any(getattr(arguments, name) is not None for name in layout):
        raise ValueError("--init-from takes the source VAE's layout; drop --block-out-channels, "
                         "--layers-per-block, --norm-num-groups and --mid-block-attention")


def _datasets(arguments: argparse.Namespace):
    """The training dataset, the held-out scenes ``[K, 3, H, W]`` and summaries of both."""
    crop = arguments.crop
    if arguments.procedural is not None:
        train = ProceduralScenes(arguments.procedural, arguments.size, arguments.seed, crop=crop)
        summary = {"kind": "procedural", "scenes": arguments.procedural,
                   "size": arguments.size, "crop": crop,
                   "seeds": [arguments.seed, arguments.seed + arguments.procedural - 1]}
    else:
        train = ExrFolderDataset(arguments.data, crop=crop, seed=arguments.seed,
                                 gamut=arguments.gamut)
        summary = {"kind": "exr", "root": str(arguments.data), "sources": len(train.sources),
                   "frames": len(train), "crop": crop, "gamut": arguments.gamut}
    if arguments.heldout_data is not None:
        heldout = ExrFolderDataset(arguments.heldout_data, crop=crop, random_crop=False,
                                   gamut=arguments.gamut)
        heldout_summary = {"kind": "exr", "root": str(arguments.heldout_data),
                           "frames": min(len(heldout), arguments.heldout), "crop": crop}
    else:
        heldout = ProceduralScenes(arguments.heldout, arguments.size, HELDOUT_SEED, crop=crop,
                                   random_crop=False)
        heldout_summary = {"kind": "procedural", "scenes": arguments.heldout,
                           "size": arguments.size, "crop": crop,
                           "seeds": [HELDOUT_SEED, HELDOUT_SEED + arguments.heldout - 1]}
    count = min(len(heldout), arguments.heldout)
    scenes = torch.stack([heldout[index]["hdr"][0] for index in range(count)])
    return train, scenes.permute(0, 3, 1, 2).contiguous(), summary, heldout_summary


def scene_log2_range(dataset: torch.utils.data.Dataset,
                     items: int = RANGE_ITEMS) -> tuple[float, float]:
    """Whole stops spanning a dataset's scene-linear values: ``(floor(log2 p0.1), ceil(log2 max))``.

    ``p0.1`` is the 0.1th percentile of the positive values in the first ``items`` items
    (``item["hdr"]``), so a few near-black pixels do not stretch the range.

    >>> scene_log2_range(ProceduralScenes(4, 32))
    (-4.0, 16.0)
    """
    values = torch.cat([dataset[index]["hdr"].flatten()
                        for index in range(min(items, len(dataset)))]).numpy()
    positive = values[values > 0]
    if positive.size == 0:
        raise ValueError("the training data holds no positive scene-linear values; check "
                         "its exposure and gamut")
    stride = max(1, positive.size // 1_000_000)
    low = math.floor(math.log2(float(np.quantile(positive[::stride], 0.001))))
    high = math.ceil(math.log2(float(positive.max())))
    return float(low), float(max(high, low + 1))


def _new_model(arguments: argparse.Namespace, train) -> HDRAutoencoder:
    low, high = arguments.scene_log2_min, arguments.scene_log2_max
    if low is None or high is None:
        measured = scene_log2_range(train)
        low, high = (measured[0] if low is None else low), (measured[1] if high is None else high)
    hdr = dict(scene_log2_min=low, scene_log2_max=high,
               display_tone_mapper=arguments.display_tone_mapper)
    if arguments.init_from is not None:
        import diffusers

        config = check_safetensors_dir(arguments.init_from, "--init-from")
        warm_starts = {"AutoencoderKL": HDRAutoencoder.from_autoencoder_kl,
                       "AutoencoderKLQwenImage": QwenHDRAutoencoder.from_qwen_image}
        class_name = config.get("_class_name")
        if class_name not in warm_starts:
            raise ValueError(f"--init-from {arguments.init_from} holds a {class_name}; warm "
                             "starts need a diffusers AutoencoderKL (FLUX.1, SD3, SD/SDXL VAE "
                             "folder) or AutoencoderKLQwenImage (Qwen-Image's VAE folder)")
        source = getattr(diffusers, class_name).from_pretrained(
            arguments.init_from, use_safetensors=True, torch_dtype=torch.float32)
        return warm_starts[class_name](source, latent_channels=arguments.latent_channels, **hdr)
    layout = {name: default if getattr(arguments, name) is None else getattr(arguments, name)
              for name, default in DEFAULT_LAYOUT.items()}
    blocks = layout["block_out_channels"]
    return HDRAutoencoder(latent_channels=arguments.latent_channels,
                          down_block_types=("DownEncoderBlock2D",) * len(blocks),
                          up_block_types=("UpDecoderBlock2D",) * len(blocks),
                          block_out_channels=blocks,
                          layers_per_block=layout["layers_per_block"],
                          norm_num_groups=layout["norm_num_groups"],
                          mid_block_add_attention=layout["mid_block_attention"], **hdr)


@torch.no_grad()
def heldout_errors(model: HDRAutoencoder, scenes: torch.Tensor, floor: float = 2.0**-12,
                   batch: int = 4) -> dict:
    """How far the scene-linear head lands from ``scenes`` ``[K, 3, H, W]``, in stops.

    Returns ``linear_stops``: mean ``|log2 max(decoded, floor) - log2 max(scene, floor)|``
    over every pixel and channel (the posterior's mode is decoded); ``highlight_stops``
    and ``highlight_bias_stops``: the mean absolute and signed error over the highlights,
    pixels whose luminance exceeds 1.0 (diffuse white), None if there are none; and
    ``highlight_fraction``.
    """
    total, count, highlight, signed, bright_count = 0.0, 0, 0.0, 0.0, 0
    for chunk in scenes.split(batch):
        chunk = chunk.to(model.device)
        decoded = model(chunk).linear
        error = torch.log2(decoded.clamp_min(floor)) - torch.log2(chunk.clamp_min(floor))
        bright = (luminance(chunk.movedim(1, -1)) > 1.0).unsqueeze(1).expand_as(error)
        total += float(error.abs().sum())
        count += error.numel()
        highlight += float(error[bright].abs().sum())
        signed += float(error[bright].sum())
        bright_count += int(bright.sum())
    return {"linear_stops": total / count,
            "highlight_stops": highlight / bright_count if bright_count else None,
            "highlight_bias_stops": signed / bright_count if bright_count else None,
            "highlight_fraction": bright_count / count}


def _arguments_record(arguments: argparse.Namespace) -> dict:
    return {name: str(value) if isinstance(value, Path) else value
            for name, value in vars(arguments).items()}


def _describe(model: HDRAutoencoder, arguments, processes: int, data: dict, heldout: dict,
              before: dict, after: dict) -> dict:
    """The ``hdr_vae.json`` beside the weights."""
    config = model.config
    return {
        "format": "comfyui-hdr/hdr-vae",
        "version": 1,
        "colour_encoding": {
            "input": "scene-linear Rec.709 (linear light, Rec.709/sRGB primaries)",
            "linear_head": "scene-linear Rec.709, unclamped",
            "diffuse_white": 1.0,
            "normalisation_log2_range": [config.scene_log2_min, config.scene_log2_max],
            "display_tone_mapper": config.display_tone_mapper,
            "display_head": "tone-mapped, sRGB-encoded, [-1, 1] = black to the SDR peak",
        },
        "latent_channels": config.latent_channels,
        "spatial_compression": model.spatial_compression_ratio,
        "dtype": "float32",
        "training": {
            "data": data,
            "init_from": None if arguments.init_from is None else str(arguments.init_from),
            "steps": arguments.steps,
            "batch_size": arguments.batch_size,
            "processes": processes,
            "learning_rate": arguments.learning_rate,
            "weight_decay": arguments.weight_decay,
            "seed": arguments.seed,
            "loss": {name: getattr(arguments, name) for name in (
                "floor", "display_weight", "kl_weight", "highlight_weight",
                "highlight_threshold")},
            "heldout": {"data": heldout, "before": before, "after": after},
        },
    }


def _write_model(model: HDRAutoencoder, output: Path, description: dict,
                 stats: LatentStatistics, data: dict) -> None:
    """``save_pretrained`` into a hidden folder, then move the files in, config.json last;
    the latent statistics and ``hdr_vae.json`` after it."""
    partial = output / ".model.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    for path in sorted(partial.iterdir(), key=lambda path: path.name == "config.json"):
        path.replace(output / path.name)
    partial.rmdir()
    write_latent_stats(output, stats, {**data, "measured_by": "train-vae"})
    write_json(output / "hdr_vae.json", description)


def _report(heldout: dict, before: dict, after: dict) -> str:
    drop = 1 - after["linear_stops"] / before["linear_stops"]
    where = (f"{heldout['scenes']} procedural scenes" if heldout["kind"] == "procedural"
             else f"{heldout['frames']} frames of {heldout['root']}")
    lines = [f"held-out ({where}, {heldout['crop']} px): scene-linear head mean |log2 error| "
             f"{before['linear_stops']:.3f} -> {after['linear_stops']:.3f} stops "
             f"({100 * drop:.0f}% lower)"]
    if after["highlight_stops"] is not None:
        lines.append(f"highlights (luminance > 1, {100 * after['highlight_fraction']:.0f}% of "
                     f"pixels): {before['highlight_stops']:.3f} -> "
                     f"{after['highlight_stops']:.3f} stops off (mean signed "
                     f"{after['highlight_bias_stops']:+.3f})")
    return "\n".join(lines)


def train_vae(arguments: argparse.Namespace) -> TrainedVAE:
    """Run ``train-vae`` with parsed ``arguments`` (see :func:`build_parser`)."""
    _check(arguments)
    accelerator = make_accelerator(arguments.mixed_precision,
                                   full_precision_only="the HDR VAE")
    output = arguments.output
    checkpoint = prepare_output(arguments.output, arguments.resume, arguments.overwrite,
                                accelerator, RUN_FILES)
    torch.manual_seed(arguments.seed)
    train, heldout, data, heldout_data = _datasets(arguments)
    model = (load_hdr_vae(checkpoint / "model") if checkpoint is not None
             else _new_model(arguments, train))
    factor = model.spatial_compression_ratio
    if arguments.crop % factor:
        raise ValueError(f"--crop {arguments.crop} is not a multiple of {factor}, the model's "
                         "spatial compression; pick a multiple")
    if arguments.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    parameters = sum(parameter.numel() for parameter in model.parameters())
    state = parameters * (4 + 4 + (8 if arguments.optimizer == "adamw" else 2))
    accelerator.print(f"train-vae: {parameters:,} parameters, all trainable (float32); "
                      f"weights, gradients and {arguments.optimizer} state "
                      f"{format_bytes(state)}, activations on top (gradient checkpointing "
                      f"{'on' if arguments.gradient_checkpointing else 'off'})")
    optimizer = make_optimizer(arguments.optimizer, model.parameters(),
                               arguments.learning_rate, arguments.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    vae = accelerator.unwrap_model(model)
    if checkpoint is not None:
        state, losses = restore_checkpoint(checkpoint, accelerator, optimizer)
        differing = [name for name in _SCHEDULE
                     if state["arguments"].get(name) != _arguments_record(arguments)[name]]
        if differing:
            warnings.warn(f"resuming with other {', '.join(differing)} than {checkpoint}: "
                          "the loss curve will not match an uninterrupted run", stacklevel=2)
        start, before = state["step"], state["heldout_before"]
    else:
        start, losses = 0, LossLog()
        before = heldout_errors(vae, heldout, arguments.floor)
    trainer_state = {"heldout_before": before, "arguments": _arguments_record(arguments)}
    sampler = StepBatchSampler(len(train), arguments.batch_size, arguments.seed, start,
                               arguments.steps, accelerator.process_index,
                               accelerator.num_processes)
    loader = torch.utils.data.DataLoader(EpochItems(train), batch_sampler=sampler,
                                         collate_fn=collate, num_workers=arguments.workers)
    bar = progress_bar(accelerator, arguments.steps, start, "train-vae")
    for step, batch in enumerate(loader, start=start + 1):
        scene = batch["hdr"][:, 0].permute(0, 3, 1, 2).contiguous().to(accelerator.device)
        generator = step_generator(arguments.seed, step, accelerator.process_index,
                                   accelerator.device)
        decoded = model(scene, sample_posterior=True, generator=generator)
        loss = vae_loss(decoded, scene, display_target(scene, vae.config.display_tone_mapper),
                        decoded.latent_dist, floor=arguments.floor,
                        display_weight=arguments.display_weight, kl_weight=arguments.kl_weight,
                        highlight_weight=arguments.highlight_weight,
                        highlight_threshold=arguments.highlight_threshold)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss.total)
        optimizer.step()
        terms = accelerator.reduce(torch.stack([getattr(loss, name).detach()
                                                for name in LOSS_TERMS]), "mean")
        losses.append(step, **dict(zip(LOSS_TERMS, terms.tolist(), strict=True)))
        bar.update(1)
        bar.set_postfix(loss=f"{losses.rows[-1]['total']:.4f}")
        if step % arguments.checkpoint_every == 0 or step == arguments.steps:
            save_checkpoint(output, step, accelerator, model, optimizer, trainer_state, losses)
            if accelerator.is_main_process:
                losses.write_csv(output / "loss.csv")
                losses.write_plot(output / "loss.png", "train-vae loss")
    bar.close()
    vae.eval()
    after = heldout_errors(vae, heldout, arguments.floor)
    stats = dataset_latent_stats(vae, train, arguments.batch_size, arguments.latent_stats_items)
    vae.latent_stats = stats
    description = _describe(vae, arguments, accelerator.num_processes, data, heldout_data,
                            before, after)
    if accelerator.is_main_process:
        _write_model(vae, output, description, stats, data)
        losses.write_csv(output / "loss.csv")
        losses.write_plot(output / "loss.png", "train-vae loss")
    accelerator.wait_for_everyone()
    accelerator.print(_report(heldout_data, before, after))
    accelerator.print(f"wrote the HDR VAE to {output}")
    return TrainedVAE(vae, description, losses)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``train-vae`` CLI; return the exit code (0, or 2 on bad input)."""
    arguments = build_parser().parse_args(argv)
    try:
        train_vae(arguments)
    except (ValueError, FileExistsError) as error:
        print(f"train-vae: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

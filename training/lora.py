"""``train-lora``: fit a LoRA that makes a diffusion transformer generate log-encoded HDR.

    python -m comfyui_hdr.training.lora --model DIR --vae DIR --prompt-embeddings FILE \\
        --output DIR [--data procedural|EXR_FOLDER] [--curve logc4] [--mode text|reference]
    accelerate launch -m comfyui_hdr.training.lora ...      (several GPUs, same arguments)

The recipe of seeds 001 (LumiVid) and 004 (DiffHDR): scene-linear HDR is encoded with a
camera log curve (:func:`~comfyui_hdr.hdr.transfer.get_curve`, LogC4 by default) into an
ordinary-looking [0, 1] image (code values above 1.0 are kept, not clipped), the frozen
VAE encodes it (latent mean, normalised as the model's pipeline does) to ``x0``, and a
LoRA on the frozen transformer learns rectified flow: ``x_t = (1 - t) x0 + t noise``, the
target velocity ``noise - x0``, ``t`` logit-normal. Two modes:

- ``text``: text-to-HDR; the prompt's embedding conditions the model.
- ``reference``: SDR->HDR; a degraded SDR reference (:func:`~comfyui_hdr.hdr.degrade.
  degrade_pair`), downscaled by ``--reference-downscale-factor``, is VAE-encoded and its
  clean latent tokens are appended to the noisy ones along the sequence (in-context, as
  LumiVid's IC-LoRA does); the loss covers the noisy tokens only. How each family lays
  the reference out (Flux: tokens as image 1, as Kontext; Wan: latent frames after the
  target's, factor 1; Qwen-Image: a second image, as Qwen-Image-Edit) is in
  :mod:`.lora_models`; the "HDR Reference (in-context)" node feeds ComfyUI the same.

Models: ``FluxTransformer2DModel``, ``WanTransformer3DModel`` (Wan 2.1) and
``QwenImageTransformer2DModel`` with their diffusers VAEs. Wan 2.1 is the video model (a
still trains as ``--still-frames`` identical frames, 9 by default, as LumiVid runs images);
LTX-Video is not trained here (its ComfyUI IC-LoRAs go through LTX's own guide nodes, but
the adapter metadata keys ``hdr_transform`` and ``reference_downscale_factor`` are LTX's).

Text conditioning is precomputed (:class:`PromptEmbeddings`, a safetensors file with
diffusers pipelines' ``prompt_embeds`` / ``pooled_prompt_embeds`` per prompt): a TD runs
the base model's text encoder once per caption. LoRA targets are discovered at run time:
every attention projection of both streams, the image-conditioning branch excluded.
Checkpoints and the final folder hold peft's ``adapter_model.safetensors`` (metadata
``hdr_transform`` and ``reference_downscale_factor``, read by LTX's HDR pipeline) and
``adapter_config.json``, the colour mapping ``hdr_lora.json`` (the curve with its parameters:
``--curve loggamma`` is DiffHDR's log-gamma with gamma 2.2 and M 1000, ``--curve
loggamma:ceiling=65536`` DiffHDR code's M) and the ComfyUI export
``comfyui_lora.safetensors`` (:mod:`.lora_export`).

Memory: ``--weight-dtype`` (frozen base in fp32, bf16, fp16 or weight-only fp8; bf16 by
default on CUDA), gradient checkpointing (on by default), ``--blocks-to-swap``,
``--optimizer adamw8bit`` (:mod:`.memory`, :mod:`.block_swap`); the run's cost is printed
and checked against the GPU before any weight is loaded (:mod:`.lora_memory`). The VAE is
loaded only to encode, and not at all when every latent is cached (:mod:`.lora_vae`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..hdr.atomic import atomic_path
from ..hdr.transfer import parse_curve
from .common import (
    LossLog,
    StepBatchSampler,
    make_accelerator,
    prepare_output,
    progress_bar,
    restore_checkpoint,
    save_checkpoint,
    step_generator,
    write_json,
)
from .lora_export import (
    ADAPTER_WEIGHTS,
    COLOUR_MAPPING,
    COMFYUI_LORA,
    check_lora_against,
    export_comfyui_lora,
)
from .lora_latents import LoraLatents, lora_dataset
from .lora_memory import plan_memory
from .lora_models import (
    DEFAULT_TARGETS,
    FAMILY_LAYOUTS,
    config_sha256,
    discover_targets,
    load_model,
    model_family,
    predict_velocity,
)
from .lora_options import LoraTrainingOptions, parse_args
from .lora_step import flow_loss, flow_times, prepare_lora_model, train_step
from .lora_vae import FrozenVae
from .memory import safe_attention_kernels, storage_dtype
from .prompt_embeddings import PromptEmbeddings

__all__ = ["DEFAULT_TARGETS", "LOG_LORA", "LoraTrainingOptions", "PromptEmbeddings",
           "TrainingMethod", "TrainingResult", "discover_targets", "load_adapter", "main",
           "parse_args", "predict_velocity", "train_lora", "write_adapter"]

RUN_FILES = (ADAPTER_WEIGHTS, "adapter_config.json", COLOUR_MAPPING, COMFYUI_LORA, "loss.csv",
             "loss.png", "heldout_loss.csv", "heldout_loss.png")
"""What a run writes into ``--output`` besides its checkpoints (``--overwrite`` removes them)."""
HELDOUT_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Quantiles of the logit-normal ``t`` at which the held-out loss is measured."""
_SEEDED_NOISE = 2**31 - 1  # step index of the held-out noise (never a training step)


# Options that may change between a run and its resume.
_RESUMABLE = ("steps", "checkpoint_every", "eval_every", "num_workers", "resume", "output",
              "overwrite", "gradient_checkpointing", "blocks_to_swap", "max_memory")


@dataclass(frozen=True)
class TrainingResult:
    """What a run did: the per-step training losses (from step 1, resumed history
    included), the held-out losses ``(step, loss)``, parameter counts and the seconds this
    run spent in training steps (data, encoding, forward, backward, optimizer; not in
    held-out evaluations or checkpoints)."""

    output: Path
    losses: list[float]
    heldout: list[tuple[int, float]]
    trainable: int
    total: int
    seconds: float


def _colour_mapping(options, family: str, transformer, vae, targets: list[str],
                    step: int) -> dict:
    curve = parse_curve(options.curve)
    return {
        "format": "comfyui-hdr-lora", "version": 1, "mode": options.mode, "step": step,
        "hdr_transform": curve.name,
        "curve": {"name": curve.name, "label": curve.label,
                  "parameters": dict(curve.parameters), "linear_min": curve.linear_min,
                  "linear_max": curve.linear_max, "reference": curve.reference},
        "gamut": options.gamut, "scene_linear_diffuse_white": 1.0,
        "reference_downscale_factor": options.reference_downscale_factor,
        "base_model": {"family": family, "class_name": type(transformer).__name__,
                       "id": options.model, "config_sha256": config_sha256(transformer)},
        "vae": {"class_name": vae.identity()["class_name"], "id": options.vae,
                "config_sha256": vae.identity()["config_sha256"]},
        "lora": {"rank": options.rank, "alpha": options.alpha or options.rank,
                 "targets": targets},
    }


def write_adapter(folder: Path, peft_model, mapping: dict, mapping_file: str = COLOUR_MAPPING,
                  state: dict | None = None) -> None:
    """peft's adapter files (``state``, or the model's peft state dict) with the HDR
    metadata, and the JSON ``mapping`` as ``mapping_file``."""
    from peft import get_peft_model_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in (
        get_peft_model_state_dict(peft_model) if state is None else state).items()}
    metadata = {"format": "pt", "hdr_transform": mapping["hdr_transform"],
                "reference_downscale_factor": str(mapping["reference_downscale_factor"]),
                mapping_file.removesuffix(".json"): json.dumps(mapping)}
    with atomic_path(folder / ADAPTER_WEIGHTS, overwrite=True) as temporary:
        save_file(state, temporary, metadata=metadata)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".adapter-config-") as staging:
        peft_model.peft_config["default"].save_pretrained(staging)
        os.replace(Path(staging) / "adapter_config.json", folder / "adapter_config.json")
    write_json(folder / mapping_file, mapping)


def _write_log_lora(folder: Path, peft_model, run: dict) -> None:
    """The adapter, ``hdr_lora.json`` and the ComfyUI LoRA of a ``train-lora`` run."""
    write_adapter(folder, peft_model, _colour_mapping(**run))
    export_comfyui_lora(folder, folder / COMFYUI_LORA, overwrite=True)


def load_adapter(transformer: torch.nn.Module, folder: str | Path):
    """Load a ``train-lora`` adapter onto a diffusers transformer (a peft ``PeftModel``),
    after :func:`~.lora_export.check_lora_against` confirms it fits the model."""
    from peft import PeftModel

    check_lora_against(load_file(str(Path(folder) / ADAPTER_WEIGHTS)), transformer.state_dict())
    return PeftModel.from_pretrained(transformer, str(folder))


@dataclass(frozen=True)
class TrainingMethod:
    """What a trainer built on this loop adds (ARCHITECTURE.md: each method adds only its
    model and its loss): ``name`` (log prefix), ``vae(options)`` (a
    :class:`~.lora_vae.FrozenVae`-like loader), ``latents(dataset, vae, family, options,
    device)`` (a :class:`~.lora_latents.LoraLatents`), ``check(options, transformer,
    family, vae)`` (refuses bad input), ``full_modules(family)`` (layers trained in full
    beside the LoRA, peft ``modules_to_save``), ``time_shift(options, item_shape)`` (the
    run's ``time_shift_mu``) and ``write(folder, peft_model, run)`` (the output files;
    ``run`` holds ``options``, ``family``, ``transformer``, ``vae``, ``targets``, ``step``)."""

    name: str
    vae: Callable
    latents: Callable
    check: Callable
    write: Callable
    full_modules: Callable = lambda family: ()
    time_shift: Callable = lambda options, item_shape: options.time_shift_mu
    files: tuple[str, ...] = RUN_FILES


def _check_options(options: LoraTrainingOptions) -> None:
    try:
        parse_curve(options.curve)
    except ValueError as error:
        raise ValueError(f"--curve {options.curve}: {error}") from None
    positive = ("scenes", "size", "frames", "still_frames", "rank", "steps", "batch_size",
                "gradient_accumulation", "checkpoint_every", "eval_every",
                "reference_downscale_factor")
    for name in positive:
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if options.holdout < 1:
        raise ValueError("--holdout must be at least 1: the held-out loss needs an item")
    if options.learning_rate <= 0 or options.highlight_weight < 0 or options.alpha < 0:
        raise ValueError("--learning-rate must be > 0, --highlight-weight and --alpha >= 0")


def _check_inputs(options: LoraTrainingOptions, transformer, family: str,
                  embeddings: PromptEmbeddings) -> None:
    """Refuse prompt embeddings and options that do not fit the model's family."""
    layout = FAMILY_LAYOUTS[family]
    width = getattr(transformer.config, layout.text_width)
    if embeddings.prompt_embeds.shape[-1] != width:
        raise ValueError(f"--prompt-embeddings are {embeddings.prompt_embeds.shape[-1]} wide "
                         f"but the model's text input is {width}; encode the prompts with "
                         "this model's text encoder")
    if layout.pooled and embeddings.pooled_prompt_embeds is None:
        raise ValueError("--prompt-embeddings lacks pooled_prompt_embeds, which Flux needs")
    if not layout.any_downscale and options.reference_downscale_factor != 1:
        raise ValueError("--reference-downscale-factor must be 1 for Wan: its reference "
                         "frames share the target's rotary grid")
    if layout.clips and (options.still_frames - 1) % 4:
        raise ValueError(f"--still-frames {options.still_frames}: {family} clips have 1 + 4k "
                         "frames; use 9 (LumiVid's) or 1")
    if options.data == "procedural" and options.frames != 1:
        raise ValueError("--frames applies to EXR sequences; procedural scenes are single "
                         "frames (use 1)")


def _log_lora_check(options, transformer, family: str, vae) -> None:
    """``train-lora`` takes a stock VAE's latents (no check beyond the prompt embeddings)."""


LOG_LORA = TrainingMethod(
    name="train-lora", vae=lambda options: FrozenVae(options.vae, options.latent_cache or None),
    latents=lambda dataset, vae, family, options, device: LoraLatents(
        dataset, vae, family, parse_curve(options.curve), options, device),
    check=_log_lora_check, write=_write_log_lora)
"""``train-lora``: log-encoded targets through a stock VAE, LoRA only."""


def train_lora(options: LoraTrainingOptions,
               method: TrainingMethod = LOG_LORA) -> TrainingResult:
    """Run ``train-lora`` (see the module docstring), or another :class:`TrainingMethod`
    on the same loop; returns the :class:`TrainingResult`."""
    from peft import set_peft_model_state_dict

    _check_options(options)
    name = method.name
    accelerator = make_accelerator(options.mixed_precision)
    attention_note = safe_attention_kernels(accelerator.device)
    if attention_note:
        accelerator.print(f"{name}: {attention_note}")
    output = Path(options.output)
    embeddings = PromptEmbeddings.load(options.prompt_embeddings)
    vae = method.vae(options)
    dataset = lora_dataset(options)
    if len(dataset) <= options.holdout:
        raise ValueError(f"the data has {len(dataset)} items; --holdout {options.holdout} "
                         "leaves none to train on")
    train_count = len(dataset) - options.holdout
    options = replace(options, time_shift_mu=method.time_shift(options, dataset[0]["hdr"].shape))
    weight_dtype = plan_memory(options, accelerator, dataset[0]["hdr"].shape,
                               embeddings.prompt_embeds.shape[1], name)
    transformer = load_model(options.model, "transformer", "--model",
                             storage_dtype(weight_dtype))
    family = model_family(transformer)
    _check_inputs(options, transformer, family, embeddings)
    method.check(options, transformer, family, vae)
    targets = discover_targets(transformer, family, options.targets.split(","))
    full = list(method.full_modules(family))
    lora = prepare_lora_model(transformer, targets, options, weight_dtype, accelerator.device,
                              full)
    peft_model = lora.model
    peft_model.peft_config["default"].base_model_name_or_path = options.model
    trainable, total = peft_model.get_nb_trainable_parameters()
    share = 100.0 * trainable / total
    accelerator.print(f"{name}: {type(transformer).__name__} ({family}), {len(targets)} "
                      f"LoRA layers, rank {options.rank}"
                      + (f", {', '.join(full)} in full" if full else "")
                      + f": {trainable:,} trainable of "
                      f"{total:,} parameters ({share:.3f}%)")
    if not 0 < share < options.max_trainable_share:
        raise ValueError(f"the LoRA trains {share:.2f}% of the model (limit "
                         f"{options.max_trainable_share}%); lower --rank, narrow --targets "
                         "or raise --max-trainable-share")
    run = {key: value for key, value in asdict(options).items() if key not in _RESUMABLE}
    checkpoint = prepare_output(output, options.resume, options.overwrite, accelerator,
                                method.files)
    if checkpoint is not None:
        saved = json.loads((checkpoint / "trainer_state.json").read_text())["run"]
        # An option newer than the checkpoint ran at its default value there.
        defaults = {option.name: option.default for option in fields(options)}
        changed = sorted(key for key in run if saved.get(key, defaults[key]) != run[key])
        if changed:
            raise ValueError(f"--resume {checkpoint}: options changed since it was written "
                             f"({', '.join(changed)}); resume with the same options")
        set_peft_model_state_dict(peft_model, load_file(str(checkpoint / "model" /
                                                            ADAPTER_WEIGHTS)))
    model, optimizer = accelerator.prepare(peft_model, lora.optimizer,
                                           device_placement=[False, True])
    start, log, heldout_log = 0, LossLog(), LossLog()
    if checkpoint is not None:
        state, log = restore_checkpoint(checkpoint, accelerator, optimizer)
        start, heldout_log = state["step"], LossLog(state["heldout"])
    latents = method.latents(dataset, vae, family, options, accelerator.device)
    guidance = options.guidance if transformer.config.get("guidance_embeds") else None
    heldout = latents.batch(range(train_count, len(dataset)))
    latents.release_vae_if_cached(range(train_count))

    def heldout_loss() -> float:
        bare = accelerator.unwrap_model(model)
        target = heldout["target"]
        generator = step_generator(options.seed, _SEEDED_NOISE, 0)
        noise = torch.randn(target.shape, generator=generator)
        quantiles = torch.special.ndtri(torch.tensor(HELDOUT_QUANTILES))
        losses = []
        with torch.no_grad():
            for value in flow_times(quantiles, options):
                sigma = torch.full((target.shape[0],), float(value))
                moved = {k: v.to(accelerator.device) if torch.is_tensor(v) else v
                         for k, v in heldout.items()}
                losses.append(float(flow_loss(bare, family, moved, embeddings,
                                              sigma.to(accelerator.device),
                                              noise.to(accelerator.device), options,
                                              guidance, lora.dtype)))
        return sum(losses) / len(losses)

    def save(step: int, folder: Path) -> None:
        if accelerator.is_main_process:
            method.write(folder, accelerator.unwrap_model(model),
                         {"options": options, "family": family, "transformer": transformer,
                          "vae": vae, "targets": targets, "step": step})
            log.write_csv(output / "loss.csv")
            log.write_plot(output / "loss.png", f"{name} ({family})")
            heldout_log.write_csv(output / "heldout_loss.csv")
            heldout_log.write_plot(output / "heldout_loss.png", "held-out flow-matching loss")

    if start == 0 and accelerator.is_main_process:
        heldout_log.append(0, heldout=heldout_loss())
    accumulation = options.gradient_accumulation
    sampler = StepBatchSampler(train_count, options.batch_size, options.seed,
                               start * accumulation, options.steps * accumulation,
                               accelerator.process_index, accelerator.num_processes)
    micro_batches = latents.batches(sampler)
    bar = progress_bar(accelerator, options.steps, start, name)
    seconds = 0.0
    model.train()
    for step in range(start + 1, options.steps + 1):
        began = time.perf_counter()
        total_loss = train_step(accelerator, lora, model, optimizer, micro_batches, step,
                                options, family, embeddings, guidance)
        log.append(step, total=float(accelerator.reduce(total_loss, "mean")))
        seconds += time.perf_counter() - began
        bar.update(1)
        bar.set_postfix(loss=f"{log.rows[-1]['total']:.4f}")
        if (step % options.eval_every == 0 or step == options.steps) and (
                accelerator.is_main_process):
            heldout_log.append(step, heldout=heldout_loss())
            model.train()
        if step % options.checkpoint_every == 0 or step == options.steps:
            save_checkpoint(output, step, accelerator, model, optimizer,
                            {"run": run, "heldout": heldout_log.rows}, log,
                            finish=lambda folder, step=step: save(step, folder / "model"))
    bar.close()
    save(options.steps, output)
    return TrainingResult(output, [row["total"] for row in log.rows],
                          [(row["step"], row["heldout"]) for row in heldout_log.rows],
                          trainable, total, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``train-lora`` CLI; return the exit code (0, or 2 on bad input)."""
    options = parse_args(argv)
    try:
        result = train_lora(options)
    except (ValueError, FileExistsError) as error:
        print(f"train-lora: error: {error}", file=sys.stderr)
        return 2
    if result.heldout:  # the main process (it alone measures the held-out loss)
        print(f"train-lora: {len(result.losses)} steps, held-out loss "
              f"{result.heldout[0][1]:.5f} -> {result.heldout[-1][1]:.5f}; wrote "
              f"{result.output / COMFYUI_LORA} and the peft adapter")
    return 0


if __name__ == "__main__":
    sys.exit(main())

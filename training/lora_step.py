"""One ``train-lora`` optimizer step and the model it trains: the LoRA on the frozen base
with the run's memory options (:mod:`.memory`, :mod:`.block_swap`), the rectified-flow
loss, the per-item noise and flow times. ``train-lora`` and the memory benchmark
(``tests/bench/bench_train_memory.py``) both run these."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .block_swap import BlockSwap
from .common import step_generator
from .lora_models import predict_velocity
from .memory import (
    compute_dtype,
    enable_gradient_checkpointing,
    make_optimizer,
    prepare_frozen_base,
    repeated_blocks,
)
from .prompt_embeddings import PromptEmbeddings

__all__ = ["LoraModel", "flow_loss", "flow_times", "item_draws", "logit_normal",
           "place_on_device", "prepare_lora_model", "time_shift", "train_step"]


@dataclass
class LoraModel:
    """The peft model with its optimizer, block swap (or None) and compute dtype."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    swap: BlockSwap | None
    dtype: torch.dtype


def place_on_device(model: torch.nn.Module, device: torch.device,
                    swap: BlockSwap | None) -> None:
    """Move every tensor of ``model`` to ``device``, except those ``swap`` manages."""
    kept = swap.swapped_tensors() if swap is not None else set()
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for tensor in tensors.values():
                if tensor is not None and id(tensor) not in kept:
                    tensor.data = tensor.data.to(device)


def _compute_in_float32(module: torch.nn.Module) -> None:
    """Run a float32 (trained) layer inside a base of another compute dtype: its input is
    cast up to float32 and its output back to the input's dtype (STYLE.md: half inputs
    computed in fp32 where precision needs it, and cast back)."""
    seen: dict[str, torch.dtype] = {}

    def before(_, args):
        seen["dtype"] = args[0].dtype
        return (args[0].float(), *args[1:])

    module.register_forward_pre_hook(before)
    module.register_forward_hook(lambda _, args, output: output.to(seen["dtype"]))


def prepare_lora_model(transformer: torch.nn.Module, targets: list[str], options,
                       weight_dtype: str, device: torch.device,
                       full_modules: Sequence[str] = ()) -> LoraModel:
    """Add the LoRA to ``transformer`` (frozen, loaded on the CPU) and apply the memory
    options of ``options`` (a :class:`~.lora.LoraTrainingOptions`); ``weight_dtype`` is
    the resolved ``--weight-dtype``. The LoRA A matrices' Kaiming init is drawn from
    ``--seed``; LoRA parameters train in float32, and so do the ``full_modules`` (names of
    the base model's top-level layers, trained in full: plain ``requires_grad``, because
    peft's ``modules_to_save`` matches name endings and would also catch Flux's
    single-block ``proj_out``)."""
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        peft_model = get_peft_model(transformer, LoraConfig(
            r=options.rank, lora_alpha=options.alpha or options.rank, target_modules=targets))
    for name in full_modules:
        _compute_in_float32(peft_model.get_base_model().get_submodule(name).requires_grad_(True))
    prepare_frozen_base(peft_model, weight_dtype)
    if options.gradient_checkpointing:
        enable_gradient_checkpointing(peft_model)
    swap = None
    if options.blocks_to_swap:
        blocks = [block for _, block in repeated_blocks(peft_model)]
        swap = BlockSwap(blocks[len(blocks) - options.blocks_to_swap:], device)
        swap.offload()
        swapped = swap.swapped_tensors()  # frozen and identical on every process: DDP skips
        peft_model._ddp_params_and_buffers_to_ignore = [  # broadcasting them at start
            name for name, tensor in [*peft_model.named_parameters(),
                                      *peft_model.named_buffers()] if id(tensor) in swapped]
    place_on_device(peft_model, device, swap)
    optimizer = make_optimizer(options.optimizer,
                               [p for p in peft_model.parameters() if p.requires_grad],
                               options.learning_rate, options.weight_decay)
    return LoraModel(peft_model, optimizer, swap, compute_dtype(weight_dtype))


def time_shift(t: torch.Tensor, mu: float) -> torch.Tensor:
    """The exponential time shift ``e^mu / (e^mu + 1/t - 1)`` (diffusers
    ``FlowMatchEulerDiscreteScheduler._time_shift_exponential`` at sigma 1; ``mu = 0`` is
    the identity, ``mu > 0`` moves ``t`` toward noise, as large images need).

    >>> round(float(time_shift(torch.tensor(0.5), 0.5)), 4)
    0.6225
    """
    if not mu:
        return t
    return math.exp(mu) / (math.exp(mu) + 1 / t - 1)


def flow_times(normal: torch.Tensor, options) -> torch.Tensor:
    """Flow times of standard-normal draws ``normal``: ``sigmoid(--logit-mean +
    --logit-std * normal)``, then :func:`time_shift` by ``--time-shift-mu``."""
    return time_shift(torch.sigmoid(options.logit_mean + options.logit_std * normal),
                      options.time_shift_mu)


def logit_normal(count: int, generator: torch.Generator, options) -> torch.Tensor:
    """``count`` logit-normal flow times (:func:`flow_times` of ``N(0, 1)`` draws)."""
    return flow_times(torch.randn(count, generator=generator), options)


def item_draws(options, first: int, shape: torch.Size,
               process_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow time ``t`` and noise for the items ``first, first + 1, ...`` of a run (counted
    over micro-batches), each from its own generator: a step sees the same draws whether
    its items come as one batch or as accumulated micro-batches, and a resume too."""
    sigmas, noises = [], []
    for item in range(first, first + shape[0]):
        generator = step_generator(options.seed, item, process_index)
        sigmas.append(logit_normal(1, generator, options))
        noises.append(torch.randn(shape[1:], generator=generator))
    return torch.cat(sigmas), torch.stack(noises)


def flow_loss(model, family: str, latents: dict, embeddings: PromptEmbeddings,
              sigma: torch.Tensor, noise: torch.Tensor, options, guidance: float | None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rectified-flow loss: ``x_t = (1 - t) x0 + t noise``, target ``noise - x0``; the model
    sees its inputs in ``dtype`` (the base's compute dtype), the loss is float32."""
    x0 = latents["target"]
    t = sigma.view(-1, *(1,) * (x0.ndim - 1))
    text, pooled = embeddings.lookup(latents["prompts"])
    device = x0.device
    reference = latents.get("reference")
    predicted = predict_velocity(
        model, family, ((1 - t) * x0 + t * noise).to(dtype), sigma, text.to(device, dtype),
        None if pooled is None else pooled.to(device, dtype),
        None if reference is None else reference.to(dtype),
        guidance=guidance, text_mask=embeddings.mask(latents["prompts"]))
    error = (predicted.float() - (noise - x0).float()) ** 2
    if "highlights" not in latents:
        return error.mean()
    weight = (1 + options.highlight_weight * latents["highlights"]).expand_as(error)
    return (weight * error).sum() / weight.sum()


def train_step(accelerator, lora: LoraModel, model, optimizer, micro_batches, step: int,
               options, family: str, embeddings: PromptEmbeddings,
               guidance: float | None) -> torch.Tensor:
    """Optimizer step ``step`` (from 1) over ``--gradient-accumulation`` micro-batches of
    ``micro_batches``; ``model``/``optimizer`` are ``lora``'s as ``accelerator.prepare``
    returned them. Returns the step's mean loss (a 0-d tensor on the device)."""
    accumulation = options.gradient_accumulation
    total = torch.zeros((), device=accelerator.device)
    for micro in range(accumulation):
        index = (step - 1) * accumulation + micro
        batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v
                 for k, v in next(micro_batches).items()}
        sigma, noise = item_draws(options, index * options.batch_size,
                                  batch["target"].shape, accelerator.process_index)
        syncing = micro == accumulation - 1
        with nullcontext() if syncing else accelerator.no_sync(model):
            loss = flow_loss(model, family, batch, embeddings, sigma.to(accelerator.device),
                             noise.to(accelerator.device), options, guidance, lora.dtype)
            accelerator.backward(loss / accumulation)
        if lora.swap is not None:
            lora.swap.release_all()
        total += loss.detach() / accumulation
    if options.max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), options.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad()
    return total

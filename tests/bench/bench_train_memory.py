"""Benchmark ``train-lora``'s memory options: peak memory and seconds per step.

    .venv/bin/python tests/bench/bench_train_memory.py              # tiny model on the CPU
    python3 tests/bench/bench_train_memory.py --config wan-1.3b      # real size, CUDA
    python3 tests/bench/bench_train_memory.py --all-gpu              # every config, ~8 min

Each row trains a rank-16 LoRA on a transformer with random weights through train-lora's
own step code (:mod:`comfyui_hdr.training.lora_step`: the LoRA, weight dtype, gradient
checkpointing, block swapping, optimizer, flow-matching loss and optimizer step), fed
synthetic cached latents and prompt embeddings of the model's shapes (no VAE or text
encoder is needed), batch 1: 2 warm-up steps, then the mean of 3 timed steps.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` over the steps (reset once the
model is built; a real-size model is built directly on the GPU in its storage dtype, and
a swapped block leaves the GPU before the steps). On the CPU each row runs in its own
process and reports its peak resident set (``ru_maxrss``) above the resident set it had
before building the model: weights, optimizer state and activations, allocator slack
included. ``estimate`` is what train-lora prints before a run (:mod:`.memory_estimate`).

Real-size configs: :data:`comfyui_hdr.training.model_configs.REAL_MODELS`. The issue's
recipe numbers (H200, bf16 base, gradient checkpointing, fp32 LoRA) and targets are
printed beside the rows; nothing is asserted. The training modules are imported without
the node pack (``comfyui_hdr/__init__.py`` registers ComfyUI nodes and needs OpenEXR and
OpenColorIO, which a bare GPU machine lacks): only torch, peft, accelerate, safetensors,
diffusers (and torchao for the 8-bit optimizer) are needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if "comfyui_hdr" not in sys.modules:  # the training package without the node pack
    package = types.ModuleType("comfyui_hdr")
    package.__path__ = [str(REPO)]
    sys.modules["comfyui_hdr"] = package

import torch  # noqa: E402

from comfyui_hdr.training.common import make_accelerator  # noqa: E402
from comfyui_hdr.training.lora_models import discover_targets  # noqa: E402
from comfyui_hdr.training.lora_options import parse_args  # noqa: E402
from comfyui_hdr.training.lora_step import prepare_lora_model, train_step  # noqa: E402
from comfyui_hdr.training.memory import storage_dtype  # noqa: E402
from comfyui_hdr.training.memory_estimate import (  # noqa: E402
    GIB,
    MemoryPlan,
    base_weights,
    estimate_memory,
)
from comfyui_hdr.training.model_configs import REAL_MODELS, RealModel  # noqa: E402
from comfyui_hdr.training.prompt_embeddings import PromptEmbeddings  # noqa: E402

TINY = RealModel("tiny Wan (4 blocks of 2 x 64, 1.2 M parameters)", "wan",
                 "WanTransformer3DModel",
                 {"attention_head_dim": 64, "num_attention_heads": 2, "ffn_dim": 512,
                  "freq_dim": 256, "in_channels": 16, "out_channels": 16, "num_layers": 4,
                  "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads",
                  "text_dim": 256, "cross_attn_norm": True},
                 frames=1, height=256, width=256, text_tokens=64, text_width=256)
ROWS = {  # name: (weight dtype, gradient checkpointing, blocks to swap as a share, optimizer)
    "bf16+ckpt": ("bf16", True, 0.0, "adamw"),
    "fp8+ckpt": ("fp8", True, 0.0, "adamw"),
    "fp8+ckpt+swap": ("fp8", True, 0.5, "adamw"),
    "bf16+ckpt+8bit": ("bf16", True, 0.0, "adamw8bit"),
    "fp32": ("fp32", False, 0.0, "adamw"),
    "bf16": ("bf16", False, 0.0, "adamw"),
}
SMALL_ONLY = ("fp32", "bf16")
"""Rows without checkpointing: run on Wan 1.3B and the tiny model (larger ones OOM)."""
RECIPE = {"wan-1.3b": "recipe 4.4 GiB, 0.44-0.58 s; shipped fp32 29.6 GB; target <= 5 GiB, "
                      "<= 0.64 s (1.1 x 0.58)",
          "wan-14b": "recipe 37.3 GiB, 4.0 s; target <= 40 GiB bf16, <= 24 GiB fp8+swap",
          "qwen-image": "recipe 40.8 GiB, 1.0-1.3 s; target <= 41 GiB bf16, <= 32 GiB fp8",
          "flux": "no recipe number"}
WARM_UP, TIMED, RANK = 2, 3, 16


def build(model: RealModel, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """The transformer with random weights, built on ``device`` in ``dtype``."""
    import diffusers

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            return getattr(diffusers, model.class_name)(**model.config).requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)


def run_row(model: RealModel, row: str, device: torch.device) -> dict:
    """Build, prepare and train one row; returns seconds/step, peak bytes and estimate."""
    weight_dtype, checkpointing, share, optimizer = ROWS[row]
    transformer = build(model, storage_dtype(weight_dtype), device)
    blocks = transformer.config.num_layers + transformer.config.get("num_single_layers", 0)
    swapped = int(blocks * share)
    options = parse_args(["--model", "-", "--vae", "-", "--prompt-embeddings", "-",
                          "--output", "-", "--rank", str(RANK), "--weight-dtype", weight_dtype,
                          "--blocks-to-swap", str(swapped), "--optimizer", optimizer,
                          "--gradient-checkpointing" if checkpointing
                          else "--no-gradient-checkpointing"])
    base = base_weights({name: tensor.shape for name, tensor in
                         transformer.state_dict().items()},
                        type(transformer)._keep_in_fp32_modules or ())
    targets = discover_targets(transformer, model.family)
    lora = prepare_lora_model(transformer, targets, options, weight_dtype, device)
    trainable = sum(p.numel() for p in lora.model.parameters() if p.requires_grad)
    accelerator = make_accelerator()
    prepared, optimizer_ = accelerator.prepare(lora.model, lora.optimizer,
                                               device_placement=[False, True])
    latent_shape = model.latent_shape()
    tokens = math.prod(latent_shape[2:]) // 4 + (model.text_tokens
                                                 if model.family != "wan" else 0)
    hidden = model.config["num_attention_heads"] * model.config["attention_head_dim"]
    plan = MemoryPlan(weight_dtype, checkpointing, swapped, optimizer)
    estimate = estimate_memory(base, plan, trainable, tokens, hidden,
                               model.config.get("ffn_dim") or 4 * hidden, device)
    embeddings = PromptEmbeddings.random([""], model.text_tokens, model.text_width,
                                         model.pooled_width)
    batches = iter([{"target": torch.randn(latent_shape), "prompts": [""]}] * (WARM_UP + TIMED))
    guidance = 1.0 if model.config.get("guidance_embeds") else None
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(1, WARM_UP + TIMED + 1):
        began = time.perf_counter()
        loss = train_step(accelerator, lora, prepared, optimizer_, batches, step, options,
                          model.family, embeddings, guidance)
        losses.append(float(loss))  # waits for the device
        times.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return {"seconds": sum(times[WARM_UP:]) / TIMED, "peak": peak, "estimate": estimate.total,
            "swapped": swapped, "finite": all(map(math.isfinite, losses))}


def cpu_row(row: str) -> dict:
    """One tiny row in a child process: its peak resident set above its baseline."""
    command = [sys.executable, __file__, "--child-row", row]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if finished.returncode:
        return {"error": finished.stderr.strip().splitlines()[-1]}
    return json.loads(finished.stdout.strip().splitlines()[-1])


def child_row(row: str) -> None:
    import diffusers
    import peft  # noqa: F401  (imported before the baseline, as the model class is)

    getattr(diffusers, TINY.class_name)
    if ROWS[row][3] == "adamw8bit":
        import torchao.optim  # noqa: F401
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = run_row(TINY, row, torch.device("cpu"))
    result["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    print(json.dumps(result))


def print_row(config: str, row: str, result: dict, unit: int = GIB) -> None:
    if "error" in result:
        print(f"{config:10s} {row:15s} {result['error']}", flush=True)
        return
    swap = f"{result['swapped']:3d}" if result["swapped"] else "  -"
    print(f"{config:10s} {row:15s} {swap} {result['peak'] / unit:9.2f} "
          f"{result['estimate'] / unit:9.2f} {result['seconds']:8.3f}  "
          f"{'finite' if result['finite'] else 'NON-FINITE'}", flush=True)


def header(title: str, unit: str = "GiB") -> None:
    print(title)
    print(f"{'config':10s} {'option':15s} swp  peak {unit}  est. {unit}   s/step  losses")


def gpu_config(config: str, rows, deadline: float) -> None:
    model = REAL_MODELS[config]
    print(f"# {config}: {model.name}, {model.frames} frames x {model.height}x{model.width}, "
          f"rank {RANK}; {RECIPE[config]}", flush=True)
    for row in rows:
        if row in SMALL_ONLY and config != "wan-1.3b":
            continue
        if time.perf_counter() > deadline:
            print_row(config, row, {"error": "skipped: the time budget is spent"})
            continue
        try:
            result = run_row(model, row, torch.device("cuda"))
        except torch.cuda.OutOfMemoryError:
            result = {"error": "out of memory"}
        except Exception as error:  # reported in its row; the other rows still run
            result = {"error": f"{type(error).__name__}: {error}"[:300]}
        print_row(config, row, result)
        gc.collect()
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny", choices=["tiny", *REAL_MODELS])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated options")
    parser.add_argument("--all-gpu", action="store_true", help="every real config in turn")
    parser.add_argument("--configs", default=",".join(REAL_MODELS),
                        help="with --all-gpu: the configs to run, comma-separated")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds after which --all-gpu skips the remaining rows")
    parser.add_argument("--child-row", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child_row:
        child_row(arguments.child_row)
        return
    rows = arguments.rows.split(",")
    if arguments.config == "tiny" and not arguments.all_gpu:
        header(f"{TINY.name}, {TINY.height}x{TINY.width}, rank {RANK}, CPU; peak = resident "
               "set above the process's baseline", "MiB")
        for row in rows:
            print_row("tiny", row, cpu_row(row), 2**20)
        return
    # cuDNN's attention kernel fails on Flux's 4608-token bf16 step (torch 2.11 + CUDA 13
    # on an H200: "mha_graph.execute(...).is_good()", then an illegal memory access); the
    # flash and memory-efficient kernels run every config.
    torch.backends.cuda.enable_cudnn_sdp(False)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN attention off; "
          "peak = max_memory_allocated over the steps")
    header("")
    deadline = time.perf_counter() + arguments.budget
    for config in (arguments.configs.split(",") if arguments.all_gpu else [arguments.config]):
        gpu_config(config, rows, deadline)


if __name__ == "__main__":
    main()

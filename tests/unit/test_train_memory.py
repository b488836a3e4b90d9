"""Trainer memory options on tiny random Wan 2.1 transformers (CPU): weight dtypes (bf16,
weight-only fp8), gradient checkpointing, block swapping, the 8-bit optimizer, the cost
printed before a run and the bad input refused before any weight is loaded.

Models: ``WanTransformer3DModel`` 1 head x 128, text width 4096 (``tiny_wan`` of the
train-lora tests), with 1 block (0.9 M parameters) for command-line runs and 3 blocks for
the step-level comparisons. Oracles: the run without the option (checkpointing, block
swapping), float32 AdamW (8-bit moments), the float8 E4M3 rounding bound, the model's
own tensors (the header-based weight count).
"""

import contextlib
import io
import math

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from peft import get_peft_model_state_dict
from safetensors.torch import load_file

from comfyui_hdr.training import lora
from comfyui_hdr.training.block_swap import check_blocks_to_swap
from comfyui_hdr.training.common import LossLog, make_accelerator
from comfyui_hdr.training.lora import PromptEmbeddings, discover_targets, parse_args
from comfyui_hdr.training.lora_step import flow_loss, prepare_lora_model, train_step
from comfyui_hdr.training.memory import (
    FP8_E4M3_MAX,
    Fp8Linear,
    check_weight_dtype,
    make_optimizer,
    quantize_fp8,
    safe_attention_kernels,
)
from comfyui_hdr.training.memory_estimate import (
    BaseWeights,
    MemoryPlan,
    check_fits,
    estimate_memory,
    read_base_weights,
)

RELATIVE = 1e-5
"""Gradient checkpointing recomputes the same float32 operations: loss and LoRA gradients
agree to rounding (the issue's bound)."""


def wan(blocks: int) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=128, in_channels=16,
        out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=256, num_layers=blocks)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    wan(1).save_pretrained(folder / "wan")
    AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).save_pretrained(folder / "wan_vae")
    PromptEmbeddings.random([""], 8, 4096).save(folder / "wan_text.safetensors")
    return folder


def arguments(models, output, *extra):
    return ["--model", str(models / "wan"), "--vae", str(models / "wan_vae"),
            "--prompt-embeddings", str(models / "wan_text.safetensors"), "--output",
            str(output), "--scenes", "4", "--size", "64", "--rank", "4", "--batch-size", "2",
            "--learning-rate", "1e-2", "--steps", "2", "--eval-every", "2",
            "--checkpoint-every", "2", *extra]


def run(argv) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = lora.main(argv)
    return code, printed.getvalue()


def losses(output) -> list[float]:
    return [row["total"] for row in LossLog.read_csv(output / "loss.csv").rows]


@pytest.mark.parametrize("weight_dtype", ["bf16", "fp8"])
def test_half_and_fp8_bases_train_with_finite_losses(models, tmp_path, weight_dtype):
    code, printed = run(arguments(models, tmp_path, "--weight-dtype", weight_dtype))
    assert code == 0
    assert f"memory plan --weight-dtype {weight_dtype} --blocks-to-swap 0" in printed
    assert len(losses(tmp_path)) == 2 and all(map(math.isfinite, losses(tmp_path)))
    adapter = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {tensor.dtype for tensor in adapter.values()} == {torch.float32}  # LoRA in fp32
    assert any(tensor.abs().max() > 0 for name, tensor in adapter.items() if "lora_B" in name)


def options(*extra):
    return parse_args(["--model", "m", "--vae", "v", "--prompt-embeddings", "p", "--output",
                       "o", "--rank", "4", "--learning-rate", "1e-2", *extra])


def test_fp8_stores_block_linears_in_8_bits_and_keeps_norms_and_embeddings():
    torch.manual_seed(0)
    transformer = wan(1).requires_grad_(False)
    model = prepare_lora_model(transformer, discover_targets(transformer, "wan"),
                               options("--weight-dtype", "fp8"), "fp8", torch.device("cpu"))
    block = transformer.blocks[0]
    assert type(block.ffn.net[2]) is Fp8Linear
    assert block.ffn.net[2].weight.dtype == torch.float8_e4m3fn
    assert block.attn1.to_q.base_layer.weight.dtype == torch.float8_e4m3fn  # under the LoRA
    assert block.attn1.to_q.lora_A["default"].weight.dtype == torch.float32
    # diffusers' _keep_in_fp32_modules stay float32, embeddings and the head bf16.
    assert block.scale_shift_table.dtype == block.norm2.weight.dtype == torch.float32
    assert transformer.condition_embedder.text_embedder.linear_1.weight.dtype == torch.bfloat16
    assert transformer.proj_out.weight.dtype == torch.bfloat16
    assert model.dtype == torch.bfloat16


def test_fp8_codes_round_each_weight_within_half_an_e4m3_step():
    weight = torch.randn(64, 96, generator=torch.Generator().manual_seed(1))
    weight[3] = 0.0
    codes, scale = quantize_fp8(weight)
    restored = codes.float() * scale
    # E4M3 keeps 3 mantissa bits: rounding to nearest is off by <= 2**-4 of the value for
    # normal numbers; below the smallest normal (2**-6 of the scale) by <= half of 2**-9.
    bound = torch.maximum(weight.abs() * 2**-4, scale * 2**-10)
    assert ((restored - weight).abs() <= bound + 1e-12).all()
    assert torch.equal(restored.abs().amax(1)[:3], weight.abs().amax(1)[:3])  # max exact
    assert codes.float().abs().max() == FP8_E4M3_MAX and (restored[3] == 0).all()


def step_inputs(seed: int = 2):
    generator = torch.Generator().manual_seed(seed)
    return ({"target": torch.randn(2, 16, 1, 8, 8, generator=generator), "prompts": ["", ""]},
            torch.rand(2, generator=generator),
            torch.randn(2, 16, 1, 8, 8, generator=generator))


def counted_forwards(model) -> list[int]:
    calls = [0]
    for block in model.blocks:
        block.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_gradient_checkpointing_gives_the_same_loss_and_lora_gradients():
    embeddings = PromptEmbeddings.random([""], 8, 4096)
    results = []
    for flag in ("--gradient-checkpointing", "--no-gradient-checkpointing"):
        torch.manual_seed(0)
        transformer = wan(3).requires_grad_(False)
        model = prepare_lora_model(transformer, discover_targets(transformer, "wan"),
                                   options(flag), "fp32", torch.device("cpu"))
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():  # a trained-looking LoRA, so that A's gradients are not zero
            for name, parameter in model.model.named_parameters():
                if "lora_B" in name:
                    parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        calls = counted_forwards(transformer)
        batch, sigma, noise = step_inputs()
        loss = flow_loss(model.model, "wan", batch, embeddings, sigma, noise, options(), None)
        loss.backward()
        gradients = {name: parameter.grad.clone()
                     for name, parameter in model.model.named_parameters()
                     if parameter.requires_grad}
        results.append((loss.item(), gradients, calls[0]))
    (loss, gradients, calls), (plain_loss, plain_gradients, plain_calls) = results
    assert (calls, plain_calls) == (6, 3)  # each block recomputed once in backward
    assert abs(loss - plain_loss) <= RELATIVE * abs(plain_loss)
    assert len(gradients) == 48  # 3 blocks x 8 projections x (A, B)
    for name, gradient in plain_gradients.items():
        assert gradient.norm() > 0
        assert (gradients[name] - gradient).norm() <= RELATIVE * gradient.norm()


def test_block_swapping_gives_the_same_lora_after_three_steps():
    embeddings = PromptEmbeddings.random([""], 8, 4096)
    accelerator = make_accelerator()
    trained = []
    for swapped in (0, 2):
        torch.manual_seed(0)
        transformer = wan(3).requires_grad_(False)
        run_options = options("--blocks-to-swap", str(swapped), "--batch-size", "2")
        model = prepare_lora_model(transformer, discover_targets(transformer, "wan"),
                                   run_options, "fp32", torch.device("cpu"))
        prepared, optimizer = accelerator.prepare(model.model, model.optimizer,
                                                  device_placement=[False, True])
        batches = iter([step_inputs(seed)[0] for seed in range(3)])
        for step in (1, 2, 3):
            train_step(accelerator, model, prepared, optimizer, batches, step, run_options,
                       "wan", embeddings, None)
            if swapped:  # between steps the swapped blocks hold only their NaN placeholder
                assert torch.isnan(transformer.blocks[2].ffn.net[2].weight).all()
                assert not torch.isnan(transformer.blocks[0].ffn.net[2].weight).any()
        if swapped:
            # 2 blocks x 3 steps x (forward, backward with its recomputation)
            assert model.swap.copies == 12
            model.swap.remove()
        trained.append(get_peft_model_state_dict(model.model))
    assert trained[0].keys() == trained[1].keys()
    assert all(torch.equal(trained[0][key], trained[1][key]) for key in trained[0])


def test_adamw8bit_keeps_8_bit_moments_and_follows_adamw():
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(16, 512, generator=generator)
    target = torch.randn(16, 512, generator=generator)
    parameters = [torch.nn.Parameter(start.clone()) for _ in range(2)]
    optimizers = [make_optimizer(name, [parameter], 1e-2, 0.0)
                  for name, parameter in zip(("adamw8bit", "adamw"), parameters, strict=True)]
    for _ in range(20):
        for parameter, optimizer in zip(parameters, optimizers, strict=True):
            ((parameter - target) ** 2).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    moment = optimizers[0].state[parameters[0]]["exp_avg"]
    assert moment.codes.dtype == torch.uint8 and moment.codes.shape == start.shape
    # 20 steps of lr 1e-2 move each value by up to 0.2; with 8-bit moments the parameters
    # end 3.2 % (RMS, measured) of that path away from float32 AdamW's; a broken
    # quantization (or none at all: 0 %) is caught by the bounds.
    path = (parameters[1] - start).norm()
    assert 1e-3 * path <= (parameters[0] - parameters[1]).norm() <= 0.06 * path


def test_adamw8bit_run_resumes_its_quantized_moments(models, tmp_path):
    wide = ["--optimizer", "adamw8bit", "--rank", "32", "--max-trainable-share", "10",
            "--checkpoint-every", "1"]  # rank 32 x 128 = 4096 values: 8-bit moments
    assert run(arguments(models, tmp_path / "whole", *wide))[0] == 0
    assert run(arguments(models, tmp_path / "split", *wide, "--steps", "1"))[0] == 0
    assert run(arguments(models, tmp_path / "split", *wide, "--resume", "latest"))[0] == 0
    whole, split = losses(tmp_path / "whole"), losses(tmp_path / "split")
    assert len(whole) == len(split) == 2
    assert max(abs(a - b) for a, b in zip(whole, split, strict=True)) <= 1e-6
    first = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    second = load_file(str(tmp_path / "split" / "adapter_model.safetensors"))
    assert all(torch.equal(first[key], value) for key, value in second.items())


def test_header_weight_count_matches_the_prepared_fp8_model(models):
    base = read_base_weights(models / "wan", WanTransformer3DModel._keep_in_fp32_modules)
    transformer = WanTransformer3DModel.from_pretrained(models / "wan").requires_grad_(False)
    assert base.total == sum(tensor.numel() for tensor in transformer.state_dict().values())
    assert len(base.blocks) == 1
    prepare_lora_model(transformer, discover_targets(transformer, "wan"),
                       options("--weight-dtype", "fp8"), "fp8", torch.device("cpu"))
    frozen = [tensor for name, tensor in [*transformer.named_parameters(),
                                          *transformer.named_buffers()]
              if not tensor.requires_grad and "rope" not in name]
    assert base.bytes("fp8") == sum(tensor.numel() * tensor.element_size() for tensor in frozen)


def test_too_many_blocks_to_swap_are_refused_before_loading(models, tmp_path, capsys,
                                                            monkeypatch):
    loaded = []
    monkeypatch.setattr(lora, "load_model", lambda *args: loaded.append(args))
    assert run(arguments(models, tmp_path, "--blocks-to-swap", "1"))[0] == 2
    assert ("--blocks-to-swap 1: the model has 1 transformer blocks and at least one must stay "
            "on the device; use at most 0") in capsys.readouterr().err
    assert run(arguments(models, tmp_path, "--weight-dtype", "fp8",
                         "--max-memory", "0.0001"))[0] == 2
    assert "needs about" in capsys.readouterr().err and not loaded


def test_a_run_over_the_memory_limit_names_the_flag_that_makes_it_fit():
    plans = {}

    def estimate(plan):
        plans[plan] = estimate_memory(base, plan, 10_000, 4096, 1024, 4096,
                                      torch.device("cuda"))
        return plans[plan]

    base = BaseWeights(total=10**9, fp8=9 * 10**8, fp8_rows=10**5, fp32=10**6,
                       blocks=(2 * 10**7,) * 48, fp8_blocks=(18 * 10**6,) * 48)
    plan = MemoryPlan("bf16", False, 0, "adamw")
    limit = estimate(MemoryPlan("bf16", True, 0, "adamw")).total + 1
    with pytest.raises(ValueError, match="it fits with --weight-dtype bf16 --blocks-to-swap 0"):
        check_fits(estimate, plan, 48, limit)
    limit = estimate(MemoryPlan("fp8", True, 0, "adamw")).total + 1
    with pytest.raises(ValueError, match="fits with --weight-dtype fp8 --blocks-to-swap 0"):
        check_fits(estimate, plan, 48, limit)
    limit = estimate(MemoryPlan("fp8", True, 20, "adamw")).total + 1  # fewest blocks swapped
    with pytest.raises(ValueError, match="fits with --weight-dtype fp8 --blocks-to-swap 20 "):
        check_fits(estimate, MemoryPlan("fp8", True, 0, "adamw"), 48, limit)
    with pytest.raises(ValueError, match="even --weight-dtype fp8 --blocks-to-swap 47"):
        check_fits(estimate, plan, 48, 10**6)
    check_fits(estimate, plan, 48, None)  # no limit on the CPU


def test_weight_dtypes_a_device_cannot_run_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla V100")
    with pytest.raises(ValueError, match=r"--weight-dtype bf16 is bfloat16, which this GPU "
                                         r"\(Tesla V100\) cannot run; use --weight-dtype fp16"):
        check_weight_dtype("bf16", torch.device("cuda"))
    with pytest.raises(ValueError, match="--weight-dtype fp8 computes in bfloat16"):
        check_weight_dtype("fp8", torch.device("cuda"))
    check_weight_dtype("fp16", torch.device("cuda"))
    with pytest.raises(ValueError, match="--weight-dtype fp8 needs float8 tensors, which mps"):
        check_weight_dtype("fp8", torch.device("mps"))


def test_block_swapping_without_gradient_checkpointing_is_refused():
    with pytest.raises(ValueError, match="drop --no-gradient-checkpointing"):
        check_blocks_to_swap(2, 3, gradient_checkpointing=False)
    check_blocks_to_swap(2, 3, gradient_checkpointing=True)


def test_a_run_whose_latents_are_all_cached_never_loads_the_vae(models, tmp_path, monkeypatch):
    cache = ["--latent-cache", str(tmp_path / "cache")]
    assert run(arguments(models, tmp_path / "first", *cache))[0] == 0
    from comfyui_hdr.training import lora_vae

    def refuse(*args, **kwargs):
        raise AssertionError("the VAE was loaded although every latent is cached")

    monkeypatch.setattr(lora_vae, "load_model", refuse)
    assert run(arguments(models, tmp_path / "second", *cache))[0] == 0
    assert losses(tmp_path / "second") == losses(tmp_path / "first")
    mapping = (tmp_path / "second" / "hdr_lora.json").read_text()
    assert '"class_name": "AutoencoderKLWan"' in mapping  # the remembered identity


def test_train_vae_takes_the_8_bit_optimizer_and_refuses_a_half_weight_dtype(tmp_path, capsys):
    from comfyui_hdr.training.train_vae import main as train_vae_main

    tiny = ["--procedural", "8", "--size", "32", "--crop", "32", "--heldout", "2",
            "--block-out-channels", "32,64", "--layers-per-block", "1",
            "--no-mid-block-attention", "--batch-size", "4", "--steps", "2"]
    assert train_vae_main([*tiny, "--output", str(tmp_path / "a"), "--weight-dtype",
                           "bf16"]) == 2
    assert ("--weight-dtype is bf16, but every weight of the HDR VAE trains, in float32"
            in capsys.readouterr().err)
    assert train_vae_main([*tiny, "--output", str(tmp_path / "b"), "--optimizer",
                           "adamw8bit"]) == 0
    printed = capsys.readouterr().out
    assert "all trainable (float32); weights, gradients and adamw8bit state" in printed
    assert "gradient checkpointing on" in printed
    assert all(map(math.isfinite, losses(tmp_path / "b")))
    state = load_file(str(tmp_path / "b" / "checkpoint-2" / "optimizer.safetensors"))
    assert any(name.endswith("exp_avg.codes") and tensor.dtype == torch.uint8
               for name, tensor in state.items())  # 8-bit moments, stored by their parts


def test_the_trainers_turn_cudnn_attention_off_on_cuda_only():
    enabled = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        assert safe_attention_kernels(torch.device("cpu")) is None
        assert torch.backends.cuda.cudnn_sdp_enabled()
        # The switch is a flag: it can be set (and is checked) on a machine without CUDA.
        assert "cuDNN attention off" in safe_attention_kernels(torch.device("cuda", 0))
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(enabled)

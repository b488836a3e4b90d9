"""``train-lora`` on tiny, randomly initialised diffusers models and procedural HDR scenes.

- Flux: ``FluxTransformer2DModel`` 2 heads x 64 (width 128), 1 double + 1 single block,
  0.98 M parameters; rank-4 LoRA on its 11 attention projections trains 1.15 % of them.
  VAE: ``AutoencoderKL`` with 16 latent channels and 8x downsampling (4 blocks of width
  8-16), Flux's scaling and shift factors.
- Wan: ``WanTransformer3DModel`` 1 head x 128, text width 4096, 1 block (0.91 M, the
  smallest ComfyUI detects); ``AutoencoderKLWan`` of base width 8.
- Qwen-Image: ``QwenImageTransformer2DModel`` 2 heads x 32, text width 32, 1 block;
  ``AutoencoderKLQwenImage`` of base width 8 (one-frame Wan-style latents).
- Text: one fixed random embedding for the empty prompt (procedural scenes have no
  caption), :meth:`PromptEmbeddings.random`.

Scenes are 64x64 (8x8 latents, 16 tokens). Oracles: the held-out loss before training,
the uninterrupted run (for resume), peft's own loader (for the saved adapter).
"""

import contextlib
import io
import json
import shutil

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLQwenImage,
    AutoencoderKLWan,
    FluxTransformer2DModel,
    QwenImageTransformer2DModel,
    WanTransformer3DModel,
)
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file

from comfyui_hdr.training.common import LossLog
from comfyui_hdr.training.lora import (
    PromptEmbeddings,
    discover_targets,
    load_adapter,
    main,
    predict_velocity,
)
from comfyui_hdr.training.lora_export import (
    check_lora_against,
    comfyui_lora_state_dict,
    peft_state_dict_from_comfyui,
    wan_diffusers_to_comfyui,
)

STEPS, HALF = 20, 10
RESUME_TOLERANCE = 1e-5
"""Max |loss difference| between a resumed and an uninterrupted run (the issue's bound):
the same batches, noise and optimizer state give the same float32 arithmetic."""


def tiny_flux():
    return FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=64,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(16, 24, 24))


def tiny_flux_vae():
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), latent_channels=16, norm_num_groups=8,
        scaling_factor=0.3611, shift_factor=0.1159, mid_block_add_attention=False)


def tiny_wan():
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=128, in_channels=16,
        out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=256, num_layers=1)


TINY_QWEN_IMAGE = {"num_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2,
                   "joint_attention_dim": 32, "axes_dims_rope": (4, 14, 14), "in_channels": 64,
                   "out_channels": 16}


def tiny_qwen_image():
    return QwenImageTransformer2DModel(**TINY_QWEN_IMAGE)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tiny_flux().save_pretrained(folder / "flux")
    tiny_flux_vae().save_pretrained(folder / "flux_vae")
    tiny_wan().save_pretrained(folder / "wan")
    AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).save_pretrained(folder / "wan_vae")
    PromptEmbeddings.random([""], 8, 32, pooled_width=32).save(folder / "flux_text.safetensors")
    PromptEmbeddings.random([""], 8, 4096).save(folder / "wan_text.safetensors")
    tiny_qwen_image().save_pretrained(folder / "qwen_image")
    AutoencoderKLQwenImage(base_dim=8, num_res_blocks=1).save_pretrained(folder / "qwen_image_vae")
    PromptEmbeddings.random([""], 8, 32).save(folder / "qwen_image_text.safetensors")
    return folder


def arguments(models, family, output, *extra):
    return ["--model", str(models / family), "--vae", str(models / f"{family}_vae"),
            "--prompt-embeddings", str(models / f"{family}_text.safetensors"),
            "--output", str(output), "--scenes", "12", "--size", "64", "--rank", "4",
            "--batch-size", "2", "--learning-rate", "1e-2", "--eval-every", str(HALF),
            "--checkpoint-every", str(HALF), *extra]


def run(argv) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return code, printed.getvalue()


@pytest.fixture(scope="module")
def uninterrupted(models, tmp_path_factory):
    output = tmp_path_factory.mktemp("uninterrupted")
    code, printed = run(arguments(models, "flux", output, "--steps", str(STEPS)))
    assert code == 0
    return output, printed


def losses(output, name="loss.csv", term="total"):
    return {row["step"]: row[term] for row in LossLog.read_csv(output / name).rows}


def test_training_lowers_the_held_out_flow_matching_loss(uninterrupted):
    output, _ = uninterrupted
    heldout = losses(output, "heldout_loss.csv", "heldout")
    assert sorted(heldout) == [0, HALF, STEPS]
    # Measured: 1.31 before, 1.11 after 20 steps (-15 %); a LoRA that learnt nothing stays
    # within the noise of the fixed held-out draw (the same noise and t every time: 0 %).
    assert heldout[STEPS] < 0.92 * heldout[0]
    assert len(losses(output)) == STEPS


def test_startup_prints_the_trainable_share(uninterrupted):
    _, printed = uninterrupted
    # 11 projections x rank 4 x (128 + 128) = 11,264 of 976,448 parameters.
    assert ("FluxTransformer2DModel (flux), 11 LoRA layers, rank 4: 11,264 trainable of "
            "976,448 parameters (1.154%)") in printed


def test_resume_reproduces_the_uninterrupted_loss_curve(uninterrupted, models, tmp_path):
    # The interrupted run also caches latents: with uncropped scenes its items equal the
    # uninterrupted run's, so the curve must match across the cache too.
    cache = ["--latent-cache", str(tmp_path / "cache")]
    interrupted = tmp_path / "run"
    assert run(arguments(models, "flux", interrupted, "--steps", str(HALF), *cache))[0] == 0
    assert run(arguments(models, "flux", interrupted, "--steps", str(STEPS), "--resume",
                         "latest", *cache))[0] == 0
    expected, resumed = losses(uninterrupted[0]), losses(interrupted)
    assert sorted(resumed) == sorted(expected)
    assert max(abs(resumed[step] - expected[step]) for step in expected) <= RESUME_TOLERANCE
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 12


def test_resume_with_changed_options_is_refused(uninterrupted, models, tmp_path, capsys):
    shutil.copytree(uninterrupted[0] / f"checkpoint-{HALF}", tmp_path / f"checkpoint-{HALF}")
    code = run(arguments(models, "flux", tmp_path, "--steps", str(STEPS), "--resume",
                         "latest", "--rank", "8"))[0]
    assert code == 2
    assert "options changed since it was written (rank)" in capsys.readouterr().err


def test_saved_adapter_reloads_bit_exact_into_diffusers(uninterrupted, models):
    output, _ = uninterrupted
    stored = load_file(str(output / "adapter_model.safetensors"))
    reloaded = load_adapter(FluxTransformer2DModel.from_pretrained(models / "flux"), output)
    assert stored.keys() == get_peft_model_state_dict(reloaded).keys()
    assert all(torch.equal(stored[key], tensor)
               for key, tensor in get_peft_model_state_dict(reloaded).items())
    # The same through peft's state-dict helper on a freshly injected model.
    base = FluxTransformer2DModel.from_pretrained(models / "flux")
    config = json.loads((output / "adapter_config.json").read_text())
    injected = get_peft_model(base, LoraConfig(r=config["r"], lora_alpha=config["lora_alpha"],
                                               target_modules=config["target_modules"]))
    set_peft_model_state_dict(injected, stored)
    assert all(torch.equal(stored[key], tensor)
               for key, tensor in get_peft_model_state_dict(injected).items())
    latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    text = PromptEmbeddings.load(models / "flux_text.safetensors")
    with torch.no_grad():
        outputs = [predict_velocity(model, "flux", latent, torch.tensor([0.5]),
                                    text.prompt_embeds, text.pooled_prompt_embeds)
                   for model in (reloaded, injected)]
        with reloaded.disable_adapter():
            untouched = predict_velocity(reloaded, "flux", latent, torch.tensor([0.5]),
                                         text.prompt_embeds, text.pooled_prompt_embeds)
    assert torch.equal(outputs[0], outputs[1])
    assert (outputs[0] - untouched).abs().mean() > 1e-3  # the trained LoRA acts


def test_adapter_and_comfyui_lora_carry_the_hdr_metadata(uninterrupted, models):
    output, _ = uninterrupted
    for name in ("adapter_model.safetensors", "comfyui_lora.safetensors"):
        with safe_open(str(output / name), framework="pt") as stored:
            metadata = stored.metadata()
        assert metadata["hdr_transform"] == "logc4"
        assert metadata["reference_downscale_factor"] == "1"
    mapping = json.loads((output / "hdr_lora.json").read_text())
    assert mapping["curve"]["name"] == "logc4" and mapping["mode"] == "text"
    assert mapping["curve"]["linear_max"] == pytest.approx(469.8, abs=0.05)  # ARRI: 469.8
    assert mapping["base_model"]["family"] == "flux"
    assert len(mapping["base_model"]["config_sha256"]) == 64
    for checkpoint in (HALF, STEPS):
        assert (output / f"checkpoint-{checkpoint}" / "model" / "hdr_lora.json").is_file()


@pytest.mark.parametrize("family, extra", [
    ("flux", ["--size", "128", "--reference-downscale-factor", "2"]),
    ("wan", ["--highlight-weight", "4"]),
    ("qwen_image", ["--size", "128", "--reference-downscale-factor", "2"]),
])
def test_reference_conditioned_mode_trains_a_few_steps(models, tmp_path, family, extra):
    code, _ = run(arguments(models, family, tmp_path, "--steps", "2", "--mode", "reference",
                            "--degradations", "clean", "--scenes", "4", *extra))
    assert code == 0
    assert all(torch.isfinite(torch.tensor(list(losses(tmp_path).values()))))
    with safe_open(str(tmp_path / "comfyui_lora.safetensors"), framework="pt") as stored:
        assert stored.metadata()["reference_downscale_factor"] == ("1" if family == "wan"
                                                                   else "2")
    assert json.loads((tmp_path / "hdr_lora.json").read_text())["mode"] == "reference"


def test_qwen_image_refuses_odd_token_grids_where_comfyui_places_tokens_otherwise(
        models, tmp_path, capsys):
    # 48 px = 3 x 3 tokens: ComfyUI's and diffusers' centred positions differ by one there.
    code, _ = run(arguments(models, "qwen_image", tmp_path, "--steps", "1", "--size", "48",
                            "--scenes", "4"))
    assert code == 2
    assert "3x3 Qwen-Image tokens; both sides must be even" in capsys.readouterr().err


def test_qwen_image_text_mode_lowers_the_held_out_loss_and_exports_for_comfyui(models,
                                                                               tmp_path):
    code, printed = run(arguments(models, "qwen_image", tmp_path, "--steps", "6",
                                  "--eval-every", "6", "--learning-rate", "2e-2"))
    assert code == 0
    assert "QwenImageTransformer2DModel (qwen_image)" in printed
    heldout = losses(tmp_path, "heldout_loss.csv", "heldout")
    # Measured: 1.53 before, 1.43 after 6 steps (-7 %); the held-out draw is fixed, so a
    # LoRA that learnt nothing stays at 0 %.
    assert heldout[6] < 0.97 * heldout[0]
    mapping = json.loads((tmp_path / "hdr_lora.json").read_text())
    assert mapping["base_model"]["family"] == "qwen_image"
    # ComfyUI keeps diffusers' Qwen-Image names: every exported layer fits the model.
    lora = load_file(str(tmp_path / "comfyui_lora.safetensors"))
    model_state = {f"diffusion_model.{key}": value for key, value in
                   QwenImageTransformer2DModel.from_pretrained(models / "qwen_image")
                   .state_dict().items()}
    assert len(check_lora_against(lora, model_state)) == len(mapping["lora"]["targets"]) == 8


def test_reference_tokens_condition_the_prediction_without_changing_its_shape():
    torch.manual_seed(0)
    model = tiny_flux().eval()
    generator = torch.Generator().manual_seed(2)
    latent, text, pooled = (torch.randn(1, 16, 8, 8, generator=generator),
                            torch.randn(1, 8, 32, generator=generator),
                            torch.randn(1, 32, generator=generator))
    references = torch.randn(2, 1, 16, 4, 4, generator=generator)
    with torch.no_grad():
        alone = predict_velocity(model, "flux", latent, torch.tensor([0.5]), text, pooled)
        conditioned = [predict_velocity(model, "flux", latent, torch.tensor([0.5]), text,
                                        pooled, reference)
                       for reference in references]
    assert conditioned[0].shape == alone.shape == latent.shape
    assert (conditioned[0] - alone).abs().mean() > 1e-3
    assert (conditioned[0] - conditioned[1]).abs().mean() > 1e-3


def test_targets_are_the_attention_projections_of_both_streams():
    flux = discover_targets(tiny_flux(), "flux")
    assert [name for name in flux if name.startswith("transformer_blocks.0.")] == [
        f"transformer_blocks.0.attn.{name}" for name in
        ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj",
         "to_add_out")]
    assert [name for name in flux if name.startswith("single")] == [
        f"single_transformer_blocks.0.attn.{name}" for name in ("to_q", "to_k", "to_v")]
    image_to_video = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=32, text_dim=32,
        freq_dim=32, ffn_dim=32, num_layers=1, image_dim=16, added_kv_proj_dim=32)
    wan = discover_targets(image_to_video, "wan")
    assert len(wan) == 8 and not [name for name in wan if "add_" in name]  # image branch out


def test_a_lora_over_the_trainable_limit_is_refused(models, tmp_path, capsys):
    code = run(arguments(models, "flux", tmp_path, "--steps", "1", "--rank", "64"))[0]
    assert code == 2
    # 11 x 64 x 256 = 180,224 of 1,145,408 parameters.
    assert "the LoRA trains 15.73% of the model (limit 5.0%)" in capsys.readouterr().err


def test_a_lora_for_another_base_model_fails_listing_its_keys(uninterrupted, models):
    with pytest.raises(ValueError, match=r"11 unexpected .*transformer_blocks\.0\.attn\.to_q"):
        load_adapter(WanTransformer3DModel.from_pretrained(models / "wan"), uninterrupted[0])
    wider = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1,
                                   num_single_layers=1, attention_head_dim=64,
                                   num_attention_heads=3, joint_attention_dim=32,
                                   pooled_projection_dim=32, axes_dims_rope=(16, 24, 24))
    with pytest.raises(ValueError, match=r"11 shape mismatches: .*attn\.to_k: LoRA 128x128, "
                                         r"model transformer_blocks\.0\.attn\.to_k\.weight "
                                         r"192x192"):
        load_adapter(wider, uninterrupted[0])


def test_wan_layers_get_comfyui_names():
    # COMFYUI_HARNESS.md's list (the inverse of diffusers' convert_wan_to_diffusers).
    assert {name: wan_diffusers_to_comfyui(name) for name in (
        "blocks.3.attn1.to_q.weight", "blocks.3.attn2.to_out.0.bias", "blocks.3.norm2.weight",
        "blocks.3.ffn.net.0.proj.weight", "blocks.3.ffn.net.2.bias",
        "blocks.3.scale_shift_table", "scale_shift_table", "proj_out.weight",
        "condition_embedder.time_proj.weight", "condition_embedder.text_embedder.linear_2.bias",
        "blocks.3.attn2.add_k_proj.weight")} == {
        "blocks.3.attn1.to_q.weight": "blocks.3.self_attn.q.weight",
        "blocks.3.attn2.to_out.0.bias": "blocks.3.cross_attn.o.bias",
        "blocks.3.norm2.weight": "blocks.3.norm3.weight",
        "blocks.3.ffn.net.0.proj.weight": "blocks.3.ffn.0.weight",
        "blocks.3.ffn.net.2.bias": "blocks.3.ffn.2.bias",
        "blocks.3.scale_shift_table": "blocks.3.modulation",
        "scale_shift_table": "head.modulation",
        "proj_out.weight": "head.head.weight",
        "condition_embedder.time_proj.weight": "time_projection.1.weight",
        "condition_embedder.text_embedder.linear_2.bias": "text_embedding.2.bias",
        "blocks.3.attn2.add_k_proj.weight": "blocks.3.cross_attn.k_img.weight"}


@pytest.mark.parametrize("family, build", [("wan", tiny_wan), ("flux", tiny_flux)])
def test_comfyui_export_round_trips_to_the_peft_state_dict(family, build):
    model = get_peft_model(build(), LoraConfig(r=4, lora_alpha=2.0, target_modules=(
        discover_targets(build(), family) + ["proj_out"])))
    state = get_peft_model_state_dict(model)
    config = model.peft_config["default"].to_dict()
    exported = comfyui_lora_state_dict(state, family, config)
    prefix = "diffusion_model.blocks.0.self_attn.q" if family == "wan" else (
        "transformer.transformer_blocks.0.attn.to_q")
    assert float(exported[f"{prefix}.alpha"]) == 2.0  # ComfyUI's alpha / rank = peft's 2 / 4
    back = peft_state_dict_from_comfyui(exported, family, config)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[key], state[key]) for key in state)


def test_incomplete_pairs_are_reported_as_missing_keys():
    lora = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 128)}
    with pytest.raises(ValueError, match=r"1 missing .*self_attn\.q\.lora_B\.weight"):
        check_lora_against(lora, ["diffusion_model.blocks.0.self_attn.q.weight"])


def test_prompt_embeddings_of_another_text_encoder_are_refused(models, tmp_path, capsys):
    argv = arguments(models, "flux", tmp_path, "--steps", "1")
    argv[argv.index("--prompt-embeddings") + 1] = str(models / "wan_text.safetensors")
    assert run(argv)[0] == 2
    assert ("--prompt-embeddings are 4096 wide but the model's text input is 32"
            in capsys.readouterr().err)


def test_a_finished_run_is_kept_unless_overwrite_is_asked(models, tmp_path, capsys):
    short = ["--steps", "2", "--checkpoint-every", "1", "--scenes", "4"]
    assert run(arguments(models, "flux", tmp_path, *short))[0] == 0
    # Every checkpoint is complete: the adapter, its colour mapping and the ComfyUI LoRA.
    for step in (1, 2):
        model = tmp_path / f"checkpoint-{step}" / "model"
        assert {"adapter_config.json", "adapter_model.safetensors", "hdr_lora.json",
                "comfyui_lora.safetensors"} <= {path.name for path in model.iterdir()}
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert (tmp_path / "heldout_loss.png").stat().st_size > 0
    before = (tmp_path / "comfyui_lora.safetensors").read_bytes()
    assert run(arguments(models, "flux", tmp_path, *short, "--seed", "5"))[0] == 2
    assert "is not empty; pass --resume latest" in capsys.readouterr().err
    assert (tmp_path / "comfyui_lora.safetensors").read_bytes() == before
    # Resuming an earlier checkpoint would rewrite checkpoint-2: refused, nothing touched.
    assert run(arguments(models, "flux", tmp_path, *short, "--resume",
                         str(tmp_path / "checkpoint-1")))[0] == 2
    assert "already holds later checkpoints (checkpoint-2)" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("the artist's own file stays")
    assert run(arguments(models, "flux", tmp_path, *short, "--seed", "5",
                         "--overwrite"))[0] == 0
    assert (tmp_path / "notes.txt").is_file()
    assert (tmp_path / "comfyui_lora.safetensors").read_bytes() != before
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2"]
    assert not list(tmp_path.glob(".*"))  # no staging folders left behind


def test_the_latent_cache_misses_when_only_the_vae_config_changes(models, tmp_path):
    # Same weights, another scaling factor: the normalised latents differ, so must the keys.
    shutil.copytree(models / "flux_vae", tmp_path / "vae")
    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    (tmp_path / "vae" / "config.json").write_text(json.dumps(config | {"scaling_factor": 0.5}))
    cache = ["--latent-cache", str(tmp_path / "cache"), "--steps", "1", "--scenes", "4"]
    assert run(arguments(models, "flux", tmp_path / "a", *cache))[0] == 0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 4
    argv = arguments(models, "flux", tmp_path / "b", *cache)
    argv[argv.index("--vae") + 1] = str(tmp_path / "vae")
    assert run(argv)[0] == 0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 8


def test_gradient_accumulation_equals_the_whole_batch(models, tmp_path):
    # Each item draws its own t and noise, so two micro-batches of 1 see what one batch of
    # 2 sees: the same gradients, the same updates, the same loss curve.
    short = ["--steps", "3", "--scenes", "6", "--checkpoint-every", "3"]
    assert run(arguments(models, "flux", tmp_path / "whole", *short))[0] == 0
    assert run(arguments(models, "flux", tmp_path / "micro", *short, "--batch-size", "1",
                         "--gradient-accumulation", "2"))[0] == 0
    whole, micro = losses(tmp_path / "whole"), losses(tmp_path / "micro")
    assert sorted(whole) == sorted(micro) == [1, 2, 3]
    # float32: batched and unbatched attention round differently (measured 1.2e-7).
    assert max(abs(whole[step] - micro[step]) for step in whole) <= RESUME_TOLERANCE


def test_highlight_weights_are_the_share_of_highlight_pixels_under_each_latent_pixel():
    from comfyui_hdr.training.lora_latents import highlight_share

    # Flux-style image latents: a 16 x 16 frame, 8x downsampling -> 2 x 2 latent pixels.
    hdr = torch.full((1, 1, 16, 16, 3), 0.5)
    hdr[0, 0, :8, :8] = 2.0  # luminance 2 > 1: the top-left latent pixel is all highlight
    hdr[0, 0, 8:, 8:12] = 4.0  # half of the bottom-right one
    share = highlight_share(hdr, 1.0, torch.zeros(1, 16, 2, 2))
    assert share.shape == (1, 1, 2, 2)
    assert share[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.5]]
    # Wan-style video latents: frame 0 alone, then frames 1-4 averaged into latent frame 1.
    clip = torch.full((1, 5, 16, 16, 3), 0.5)
    clip[0, 0] = 2.0
    clip[0, 1:3, :8, :8] = 2.0  # two of the four frames
    share = highlight_share(clip, 1.0, torch.zeros(1, 16, 2, 2, 2))
    assert share.shape == (1, 1, 2, 2, 2)
    assert share[0, 0, 0].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert share[0, 0, 1].tolist() == [[0.5, 0.0], [0.0, 0.0]]


def test_accelerate_launch_trains_with_two_processes(models, tmp_path):
    """Two CPU processes (gloo) through the real launcher: ``--multi_gpu`` with
    ACCELERATE_USE_CPU, as accelerate runs multi-process training without GPUs."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "-m", "comfyui_hdr.training", "train-lora",
               *arguments(models, "flux", tmp_path, "--steps", "2", "--batch-size", "1",
                          "--checkpoint-every", "2", "--scenes", "6")]
    environment = os.environ | {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, env=environment, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.count("train-lora: FluxTransformer2DModel (flux)") == 1  # main only
    checkpoint = tmp_path / "checkpoint-2"
    assert {"rng-0.safetensors", "rng-1.safetensors"} <= {p.name for p in checkpoint.iterdir()}
    assert sorted(losses(tmp_path)) == [1, 2]
    assert (tmp_path / "comfyui_lora.safetensors").is_file()


def test_overwrite_removes_the_old_runs_outputs_before_the_new_run_starts(tmp_path):
    from comfyui_hdr.training.common import make_accelerator, prepare_output
    from comfyui_hdr.training.lora import RUN_FILES

    (tmp_path / "checkpoint-3" / "model").mkdir(parents=True)
    for name in RUN_FILES + ("notes.txt",):
        (tmp_path / name).write_text("old run")
    # A new run that failed after this point must not leave the old LoRA beside its files.
    assert prepare_output(tmp_path, "", True, make_accelerator(), RUN_FILES) is None
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_qwen_image_ignores_padding_its_stored_mask_marks(tmp_path):
    from comfyui_hdr.training.lora_models import predict_velocity as velocity

    torch.manual_seed(0)
    model = tiny_qwen_image().eval()
    generator = torch.Generator().manual_seed(4)
    text = torch.randn(1, 5, 32, generator=generator)
    padded = torch.cat([text, 7 * torch.randn(1, 3, 32, generator=generator)], 1)
    mask = torch.tensor([[1] * 5 + [0] * 3])
    stored = PromptEmbeddings(("a prompt",), padded, prompt_embeds_mask=mask)
    reloaded = PromptEmbeddings.load(stored.save(tmp_path / "padded.safetensors"))
    assert torch.equal(reloaded.mask(["a prompt"]), mask)
    noisy = torch.randn(1, 16, 1, 8, 8, generator=generator)
    sigma = torch.tensor([0.6])
    with torch.no_grad():
        unpadded = velocity(model, "qwen_image", noisy, sigma, text)
        masked = velocity(model, "qwen_image", noisy, sigma, padded,
                          text_mask=reloaded.mask(["a prompt"]))
        attended = velocity(model, "qwen_image", noisy, sigma, padded)
    # The padding is ignored (what ComfyUI, fed the unpadded prompt, computes; measured
    # 1.8e-7) ...
    assert (masked - unpadded).abs().max() <= 1e-5
    # ... and would matter if it were attended to (measured 0.017).
    assert (attended - unpadded).abs().max() > 1e-3
    # "Load Prompt Embeddings" hands ComfyUI the real tokens only.
    from comfyui_hdr.nodes.sampling_io import load_prompt_embeddings

    ((embeds, options),) = load_prompt_embeddings(tmp_path / "padded.safetensors")
    assert torch.equal(embeds, text) and options == {}
    with pytest.raises(ValueError, match=r"prompt_embeds_mask is \(1, 4\)"):
        PromptEmbeddings(("a prompt",), padded, prompt_embeds_mask=mask[:, :4])


def test_flip_caches_a_mirrored_latent_per_training_item(models, tmp_path):
    cache = ["--latent-cache", str(tmp_path / "cache"), "--steps", "2", "--scenes", "4"]
    code, printed = run(arguments(models, "flux", tmp_path / "a", *cache, "--flip"))
    assert code == 0
    # 4 scenes, 2 held out: 2 training scenes + their 2 mirrors + the 2 held-out ones.
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 6
    code, _ = run(arguments(models, "flux", tmp_path / "b", *cache))
    assert code == 0  # the unmirrored items' keys are those of a run without --flip
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 6


def test_a_checkpoint_older_than_an_option_resumes_at_its_default(uninterrupted, models,
                                                                   tmp_path):
    checkpoint = tmp_path / f"checkpoint-{HALF}"
    shutil.copytree(uninterrupted[0] / f"checkpoint-{HALF}", checkpoint)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    for newer in ("all_starts", "flip"):
        del state["run"][newer]
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    assert run(arguments(models, "flux", tmp_path, "--steps", str(HALF + 1), "--resume",
                         "latest"))[0] == 0


def test_log_gamma_m_is_a_curve_parameter_from_the_cli_to_hdr_lora_json(models, tmp_path,
                                                                        monkeypatch):
    import comfyui_hdr.training.lora_latents as lora_latents
    from comfyui_hdr.hdr.transfer import lora_curve
    from comfyui_hdr.hdr.transfer_learning import loggamma_encode

    seen = []
    original_encode, original_latents = lora_latents.LoraLatents.encode, lora_latents.encode_latents

    def encode(self, batch):
        seen.append({"hdr": batch["hdr"]})
        return original_encode(self, batch)

    def encode_latents(vae, codes, video):
        seen[-1].setdefault("codes", codes)
        return original_latents(vae, codes, video)

    monkeypatch.setattr(lora_latents.LoraLatents, "encode", encode)
    monkeypatch.setattr(lora_latents, "encode_latents", encode_latents)
    code, _ = run(arguments(models, "flux", tmp_path, "--steps", "1", "--scenes", "4",
                            "--curve", "loggamma:ceiling=65536"))
    assert code == 0
    # The targets are log-gamma with M = 65536 (float32: the same call, bit for bit).
    torch.testing.assert_close(seen[0]["codes"], loggamma_encode(seen[0]["hdr"],
                                                                 ceiling=65536.0),
                               rtol=0.0, atol=0.0)
    mapping = json.loads((tmp_path / "hdr_lora.json").read_text())
    assert mapping["curve"]["name"] == mapping["hdr_transform"] == "loggamma"
    assert mapping["curve"]["parameters"] == {"gamma": 2.2, "ceiling": 65536.0}
    assert mapping["curve"]["linear_max"] == pytest.approx(65536.0, rel=1e-12)
    with safe_open(str(tmp_path / "comfyui_lora.safetensors"), framework="pt") as stored:
        embedded = json.loads(stored.metadata()["hdr_lora"])
    assert lora_curve(embedded).parameters["ceiling"] == 65536.0
    code, _ = run(arguments(models, "flux", tmp_path / "default", "--steps", "1",
                            "--scenes", "4", "--curve", "loggamma"))
    assert code == 0
    mapping = json.loads((tmp_path / "default" / "hdr_lora.json").read_text())
    assert mapping["curve"]["parameters"] == {"gamma": 2.2, "ceiling": 1000.0}


def test_a_curve_spec_that_is_not_parameter_equals_number_exits_2(models, tmp_path, capsys):
    code, _ = run(arguments(models, "flux", tmp_path, "--steps", "1",
                            "--curve", "loggamma:ceiling"))
    assert code == 2
    assert "--curve loggamma:ceiling: curve 'loggamma:ceiling'" in capsys.readouterr().err

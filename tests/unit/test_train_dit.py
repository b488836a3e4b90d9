"""``train-dit`` on a tiny widened Qwen-Image DiT and the tiny dual-head HDR VAE.

- DiT: ``QwenImageTransformer2DModel`` 2 heads x 32, text width 32, 1 block
  (``harness.tiny_models.TINY_QWEN_IMAGE``), widened 16 -> 32 latent channels by
  ``widen`` (copy mode); rank-4 LoRA on Q/K/V of both streams plus ``img_in`` and
  ``proj_out`` in full.
- VAE: ``harness.tiny_models.write_tiny_hdr_vae`` (32 latent channels, 8x compression).
- Flux (2 heads x 64, 1 + 1 blocks) and Wan 2.1 (1 head x 128, 1 block), widened the same
  way, for a few steps each (the family table of ``train-lora``).
- Data: 64x64 procedural scenes (8x8 latents, 16 tokens); the studio HDRIs of Debian's
  blender-data (``/usr/share/blender/datafiles/studiolights/world``) as 64x64 crops.

Oracles: the untrained model's held-out loss (same noise and flow times), the
uninterrupted run (for resume), diffusers' Qwen-Image scheduler (for the time shift).
"""

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    QwenImageTransformer2DModel,
    WanTransformer3DModel,
)
from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift
from peft import PeftModel
from safetensors import safe_open
from safetensors.torch import load_file

from comfyui_hdr.harness.tiny_models import TINY_HDR_VAE, TINY_QWEN_IMAGE, write_tiny_hdr_vae
from comfyui_hdr.hdr.models.hdr_vae import HDRAutoencoder
from comfyui_hdr.hdr.models.latent_stats import read_latent_stats
from comfyui_hdr.training.common import LossLog
from comfyui_hdr.training.dit import main
from comfyui_hdr.training.dit_latents import highlight_weights, normalise_latents
from comfyui_hdr.training.dit_options import QWEN_IMAGE_SHIFT, dynamic_shift_mu
from comfyui_hdr.training.lora import PromptEmbeddings
from comfyui_hdr.training.lora_step import time_shift
from comfyui_hdr.training.widen_cli import widen_diffusers_dir

STEPS, HALF = 20, 10
RESUME_TOLERANCE = 1e-5
"""Max |loss difference| between a resumed and an uninterrupted run: the same batches,
noise, flow times and optimizer state give the same float32 arithmetic."""
STUDIO_HDRIS = Path("/usr/share/blender/datafiles/studiolights/world")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dit_models")
    torch.manual_seed(0)
    QwenImageTransformer2DModel(**TINY_QWEN_IMAGE).save_pretrained(folder / "qwen16")
    widen_diffusers_dir(folder / "qwen16", folder / "qwen32")
    write_tiny_hdr_vae(folder / "vae")
    PromptEmbeddings.random([""], 8, 32).save(folder / "text.safetensors")
    return folder


def arguments(models, output, *extra, model="qwen32", vae="vae"):
    return ["--model", str(models / model), "--vae", str(models / vae),
            "--prompt-embeddings", str(models / "text.safetensors"), "--output", str(output),
            "--scenes", "12", "--size", "64", "--rank", "4", "--batch-size", "2",
            "--learning-rate", "1e-2", "--eval-every", str(HALF), "--checkpoint-every",
            str(HALF), "--max-trainable-share", "100", *extra]


def run(argv) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return code, printed.getvalue()


def losses(output, name="loss.csv", term="total"):
    return {row["step"]: row[term] for row in LossLog.read_csv(output / name).rows}


@pytest.fixture(scope="module")
def uninterrupted(models, tmp_path_factory):
    output = tmp_path_factory.mktemp("dit_uninterrupted")
    code, printed = run(arguments(models, output, "--steps", str(STEPS)))
    assert code == 0
    return output, printed


def test_training_beats_the_untrained_dit_on_held_out_denoising(uninterrupted):
    output, printed = uninterrupted
    train = losses(output)
    assert len(train) == STEPS and all(math.isfinite(value) for value in train.values())
    heldout = losses(output, "heldout_loss.csv", "heldout")
    assert sorted(heldout) == [0, HALF, STEPS]
    # Measured on latents normalised by the VAE's latent_stats.json (unit variance): 2.54
    # untrained (step 0), 2.18 after 20 steps (-14 %); the held-out noise and flow times are
    # fixed, so a model that learnt nothing stays at 0 %.
    assert heldout[STEPS] < 0.92 * heldout[0]
    # 6 LoRA layers x rank 4 x (64 + 64) = 3,072, img_in 128 x 64 + 64 and proj_out
    # 64 x 128 + 128 = 16,576 in full.
    assert ("6 LoRA layers, rank 4, img_in, proj_out in full: 19,648 trainable" in printed)


def test_resume_reproduces_the_uninterrupted_loss_curve(uninterrupted, models, tmp_path):
    interrupted = tmp_path / "run"
    assert run(arguments(models, interrupted, "--steps", str(HALF)))[0] == 0
    assert run(arguments(models, interrupted, "--steps", str(STEPS), "--resume",
                         "latest"))[0] == 0
    expected, resumed = losses(uninterrupted[0]), losses(interrupted)
    assert sorted(resumed) == sorted(expected)
    assert max(abs(resumed[step] - expected[step]) for step in expected) <= RESUME_TOLERANCE


def test_the_adapter_restores_the_trained_projections_and_names_the_vae(uninterrupted,
                                                                          models):
    output, _ = uninterrupted
    base = QwenImageTransformer2DModel.from_pretrained(models / "qwen32")
    widened_img_in = base.img_in.weight.detach().clone()
    trained = PeftModel.from_pretrained(base, str(output))
    # The projections trained in full: peft's loader writes them into the base.
    change = (trained.get_base_model().img_in.weight - widened_img_in).abs().max()
    assert change > 1e-3
    mapping = json.loads((output / "hdr_dit.json").read_text())
    assert mapping["vae"]["id"] == str(models / "vae")
    assert mapping["vae"]["latent_channels"] == mapping["base_model"]["latent_channels"] == 32
    stored = read_latent_stats(models / "vae")  # the VAE folder's latent_stats.json
    recorded = mapping["vae"]["latent_statistics"]  # float32 copies of the stored values
    assert recorded["mean"] == pytest.approx(list(stored.mean), rel=1e-6)
    assert recorded["std"] == pytest.approx(list(stored.std), rel=1e-6)
    # The card for the widened base's ComfyUI checkpoint names the VAE and its statistics.
    card = json.loads((output / "model_card.json").read_text())
    assert card["latent_format"]["vae"] == "vae" and card["in_channels"] == 32
    assert card["latent_format"]["mean"] == pytest.approx(list(stored.mean), rel=1e-6)
    assert mapping["full_modules"] == ["img_in", "proj_out"]
    # 64x64 pictures are 16 tokens: Qwen-Image's mu at 16 tokens (below its 256 base).
    assert mapping["flow"]["time_shift_mu"] == pytest.approx(
        calculate_shift(16, 256, 8192, 0.5, 0.9), abs=1e-12)


def test_studio_hdri_crops_train_finite_and_beat_the_untrained_dit(models, tmp_path):
    data = tmp_path / "hdris"
    data.mkdir()
    for path in sorted(STUDIO_HDRIS.glob("*.exr"))[:6]:
        (data / path.name).symlink_to(path)
    code, _ = run(arguments(models, tmp_path / "run", "--data", str(data), "--crop", "64",
                            "--holdout", "2", "--steps", "10", "--eval-every", "10",
                            "--latent-cache", str(tmp_path / "cache")))
    assert code == 0
    assert all(math.isfinite(value) for value in losses(tmp_path / "run").values())
    heldout = losses(tmp_path / "run", "heldout_loss.csv", "heldout")
    # Measured: 1.41 untrained, 0.87 after 10 steps (-38 %); crops of captured interiors
    # and skies, with lamps and windows far above diffuse white.
    assert heldout[10] < 0.9 * heldout[0]


def test_a_dit_that_was_not_widened_is_refused_naming_both_folders(models, tmp_path, capsys):
    assert run(arguments(models, tmp_path, "--steps", "1", model="qwen16"))[0] == 2
    error = capsys.readouterr().err
    assert str(models / "qwen16") in error and str(models / "vae") in error
    assert "takes 16 latent channels" in error and "encodes 32" in error
    assert "widen" in error and "--channels 32" in error


def test_a_vae_of_another_latent_width_is_refused_naming_both_folders(models, tmp_path,
                                                                      capsys):
    HDRAutoencoder(**TINY_HDR_VAE, latent_channels=16).save_pretrained(tmp_path / "vae16")
    argv = arguments(models, tmp_path / "run", "--steps", "1", vae="vae16")
    argv[argv.index("--vae") + 1] = str(tmp_path / "vae16")
    assert run(argv)[0] == 2
    error = capsys.readouterr().err
    assert str(models / "qwen32") in error and str(tmp_path / "vae16") in error
    assert "takes 32 latent channels and predicts 32" in error and "encodes 16" in error


def test_highlight_weights_are_stops_above_diffuse_white_averaged_under_each_latent_pixel():
    hdr = torch.zeros(1, 1, 16, 16, 3)
    hdr[:, :, :8, :8] = 15.0  # 4 stops above diffuse white: log2(1 + 15) = 4
    hdr[:, :, 8:, 8:] = 1.0   # diffuse white: log2(2) = 1
    hdr[0, 0, 0, 8] = -2.0    # negative luminance weighs 0, not NaN
    weights = highlight_weights(hdr, 1.0, torch.zeros(1, 32, 1, 2, 2))
    expected = torch.tensor([[4.0, 0.0], [0.0, 1.0]]).view(1, 1, 1, 2, 2)
    assert torch.allclose(weights, expected, atol=1e-6)
    # Diffuse white at 3: Y = 15 is log2(1 + 5) stops above it.
    assert float(highlight_weights(hdr, 3.0, torch.zeros(1, 32, 2, 2))[0, 0, 0, 0]) == (
        pytest.approx(math.log2(6.0), abs=1e-5))  # float32 luminance and log2


def test_normalise_latents_is_per_channel():
    latents = torch.arange(8.0).view(1, 2, 2, 2)
    out = normalise_latents(latents, torch.tensor([1.0, 4.0]), torch.tensor([2.0, 0.5]))
    assert torch.equal(out[0, 0], (latents[0, 0] - 1) / 2)
    assert torch.equal(out[0, 1], (latents[0, 1] - 4) / 0.5)


@pytest.mark.parametrize("tokens", [16, 256, 1024, 4096, 8192])
def test_the_time_shift_is_qwen_images_scheduler_shift(tokens):
    mu = dynamic_shift_mu(tokens)
    assert mu == pytest.approx(calculate_shift(tokens, 256, 8192, 0.5, 0.9), abs=1e-12)
    scheduler = FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SHIFT, use_dynamic_shifting=True,
                                                time_shift_type="exponential")
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    assert torch.allclose(time_shift(t, mu), scheduler.time_shift(mu, 1.0, t), atol=1e-12)


def tiny_flux():
    return FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=64,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(16, 24, 24))


def tiny_wan():
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=128, in_channels=16,
        out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=256, num_layers=1)


@pytest.mark.parametrize("family, build, text, projections", [
    ("flux", tiny_flux, {"width": 32, "pooled_width": 32},
     ("transformer.x_embedder", "transformer.proj_out")),
    ("wan", tiny_wan, {"width": 4096},
     ("diffusion_model.patch_embedding", "diffusion_model.head.head")),
])
def test_flux_and_wan_train_through_the_same_family_table(models, tmp_path, family, build,
                                                          text, projections):
    torch.manual_seed(0)
    build().save_pretrained(tmp_path / "base")
    # widen keeps Wan's top-level scale_shift_table (a key without a dot) as it is.
    assert widen_diffusers_dir(tmp_path / "base", tmp_path / "widened") == family
    width = text.pop("width")
    PromptEmbeddings.random([""], 8, width, **text).save(tmp_path / "text.safetensors")
    argv = arguments(models, tmp_path / "run", "--steps", "2", "--eval-every", "2",
                     "--scenes", "6")
    argv[argv.index("--model") + 1] = str(tmp_path / "widened")
    argv[argv.index("--prompt-embeddings") + 1] = str(tmp_path / "text.safetensors")
    assert run(argv)[0] == 0
    heldout = losses(tmp_path / "run", "heldout_loss.csv", "heldout")
    # Measured after 4 steps in a trial: flux 1.39 -> 1.02, wan 1.44 -> 1.05.
    assert heldout[2] < heldout[0] and all(map(math.isfinite, heldout.values()))
    lora = load_file(str(tmp_path / "run" / "comfyui_lora.safetensors"))
    # ComfyUI's names of the two projections (comfy.utils.flux_to_diffusers, Wan's own).
    assert {key for key in lora if key.endswith((".diff", ".diff_b"))} == {
        f"{name}.{suffix}" for name in projections for suffix in ("diff", "diff_b")}


@pytest.mark.parametrize("weight_dtype", ["bf16", "fp8"])
def test_the_projections_train_in_float32_inside_a_low_precision_base(models, tmp_path,
                                                                      weight_dtype):
    code, printed = run(arguments(models, tmp_path, "--steps", "2", "--eval-every", "2",
                                  "--weight-dtype", weight_dtype))
    assert code == 0 and f"--weight-dtype {weight_dtype}" in printed
    heldout = losses(tmp_path, "heldout_loss.csv", "heldout")
    assert heldout[2] < heldout[0] and all(map(math.isfinite, heldout.values()))
    with safe_open(str(tmp_path / "adapter_model.safetensors"), framework="pt") as stored:
        for key in ("img_in.weight", "img_in.bias", "proj_out.weight", "proj_out.bias"):
            assert stored.get_tensor(f"base_model.model.{key}").dtype == torch.float32

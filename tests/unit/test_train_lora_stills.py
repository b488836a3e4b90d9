"""``train-lora`` runs a still as a 9-frame clip where the family is a video model (Wan), as
LumiVid runs images (seed 001); image families (Flux) keep one frame. Tiny models from
test_train_lora's ``models`` fixture."""

from __future__ import annotations

import test_train_lora
import torch
from test_train_lora import arguments, run

from comfyui_hdr.hdr.transfer import get_curve
from comfyui_hdr.training.data import collate
from comfyui_hdr.training.lora_latents import LoraLatents, lora_dataset, still_as_clip
from comfyui_hdr.training.lora_models import encode_latents
from comfyui_hdr.training.lora_options import parse_args
from comfyui_hdr.training.lora_vae import FrozenVae

models = test_train_lora.models  # the tiny Flux and Wan models (a module-scoped fixture)


def _latents(models, tmp_path, family: str, *extra: str):
    options = parse_args(arguments(models, family, tmp_path, "--scenes", "3", *extra))
    curve = get_curve(options.curve)
    dataset = lora_dataset(options)
    return LoraLatents(dataset, FrozenVae(options.vae), family, curve, options), dataset, curve


def test_a_wan_still_is_encoded_as_nine_identical_frames(models, tmp_path):
    latents, dataset, curve = _latents(models, tmp_path, "wan")
    target = latents.batch([0])["target"]
    assert target.shape == (1, 16, 3, 8, 8)  # 9 frames -> 1 + 8/4 latent frames of 64/8
    still = dataset[0]["hdr"]  # [1, 64, 64, 3]
    clip = still[None].repeat(1, 9, 1, 1, 1)
    expected = encode_latents(latents.vae.model, curve.encode(clip), True)
    torch.testing.assert_close(target, expected, rtol=0, atol=0)
    one, _, _ = _latents(models, tmp_path, "wan", "--still-frames", "1")
    assert one.batch([0])["target"].shape == (1, 16, 1, 8, 8)


def test_an_image_family_keeps_one_frame(models, tmp_path):
    latents, _, _ = _latents(models, tmp_path, "flux")
    assert latents.batch([0])["target"].shape == (1, 16, 8, 8)


def test_still_as_clip_repeats_hdr_and_reference_and_leaves_clips_alone():
    hdr, sdr = torch.rand(2, 1, 4, 6, 3), torch.rand(2, 1, 4, 6, 3)
    batch = still_as_clip({"hdr": hdr, "sdr_reference": sdr, "prompt": ["", ""]}, 9)
    assert batch["hdr"].shape == (2, 9, 4, 6, 3) and batch["prompt"] == ["", ""]
    assert torch.equal(batch["hdr"][:, 8], hdr[:, 0]) and torch.equal(batch["sdr_reference"][:, 4],
                                                                       sdr[:, 0])
    clip = collate([{"hdr": torch.rand(5, 4, 6, 3)}])
    assert still_as_clip(clip, 9) is clip


def test_the_memory_plan_counts_the_still_as_a_clip_and_bad_counts_are_refused(models,
                                                                              tmp_path):
    code, printed = run(arguments(models, "wan", tmp_path / "nine", "--steps", "1",
                                  "--scenes", "4", "--eval-every", "1",
                                  "--checkpoint-every", "1"))
    # 3 latent frames x (64 / 16)^2 tokens x batch 2
    assert code == 0 and "96 tokens a micro-batch" in printed
    code, printed = run(arguments(models, "wan", tmp_path / "one", "--steps", "1",
                                  "--scenes", "4", "--eval-every", "1",
                                  "--checkpoint-every", "1", "--still-frames", "1"))
    assert code == 0 and "32 tokens a micro-batch" in printed


def test_a_still_frame_count_wan_cannot_take_is_refused(models, tmp_path, capsys):
    code, _ = run(arguments(models, "wan", tmp_path, "--steps", "1", "--still-frames", "8"))
    assert code == 2
    assert "--still-frames 8: wan clips have 1 + 4k frames" in capsys.readouterr().err

"""The HDR VAE's latent statistics in ComfyUI: Load HDR Diffusion Model normalises the DiT's
latent with them, Empty HDR Latent starts at the DiT's zero, and a DiT and VAE that do not
belong together are refused naming both files.

Oracles: :class:`~comfyui_hdr.hdr.models.latent_stats.LatentStatistics` itself (the library)
and the HDR VAE's own ``decode``.
"""

from __future__ import annotations

import json
import shutil

import comfy.model_management  # noqa: F401  (after conftest set args.cpu)
import pytest
import torch

from comfyui_hdr.harness.tiny_models import (
    TINY_QWEN_IMAGE,
    tiny_qwen_image_state_dict,
    write_tiny_hdr_vae,
    write_widened_model,
)
from comfyui_hdr.hdr.models.hdr_vae import load_hdr_vae
from comfyui_hdr.hdr.models.latent_stats import (
    LATENT_STATS_FILE,
    LatentStatistics,
    read_latent_stats,
    write_latent_stats,
)
from comfyui_hdr.nodes._hdr_model import load_hdr_diffusion_model
from comfyui_hdr.nodes._hdr_vae_memory import ManagedHDRVAE
from comfyui_hdr.nodes.hdr_vae_nodes import HDREmptyLatent, HDRVAEDecode


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny HDR VAE (with the statistics the harness measures) and a widened DiT."""
    root = tmp_path_factory.mktemp("models")
    write_tiny_hdr_vae(root / "tiny_vae")
    write_widened_model(root / "dit.safetensors", tiny_qwen_image_state_dict(), "qwen_image",
                        axes_dims_rope=list(TINY_QWEN_IMAGE["axes_dims_rope"]))
    return root


def _dit(folder, name: str, **latent_format):
    """A copy of the widened DiT whose card's latent_format has ``latent_format`` added."""
    checkpoint = folder / f"{name}.safetensors"
    shutil.copyfile(folder / "dit.safetensors", checkpoint)
    card = json.loads((folder / "dit.json").read_text())
    card["latent_format"].update(latent_format)
    checkpoint.with_suffix(".json").write_text(json.dumps(card))
    return checkpoint


def test_the_tiny_vae_carries_measured_statistics_of_its_32_channels(folder):
    stats = read_latent_stats(folder / "tiny_vae")
    assert stats.channels == 32 and stats.count == 8 * 8 * 8  # 8 scenes of 64 px at 8x
    assert 0 < min(stats.std) and max(stats.std) < 10


@pytest.mark.parametrize("vae", ["absolute", "tiny_vae"])
def test_a_dit_card_naming_its_vae_normalises_the_sampler_s_latent_with_its_statistics(
        folder, vae):
    name = str(folder / "tiny_vae") if vae == "absolute" else vae  # beside the checkpoint
    model = load_hdr_diffusion_model(_dit(folder, f"named_{vae}", vae=name)).model
    stats = read_latent_stats(folder / "tiny_vae")
    latent = torch.randn(2, 32, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    # What KSampler calls on the latent image before sampling and on the result after.
    normalised = model.process_latent_in(latent)
    assert torch.equal(normalised, stats.process_in(latent))
    assert torch.allclose(model.process_latent_out(normalised), latent, rtol=0, atol=1e-5)
    mean = torch.tensor(stats.mean).view(1, 32, 1, 1, 1)
    assert torch.allclose(model.process_latent_in(mean.expand_as(latent)),
                          torch.zeros_like(latent), atol=1e-6)


def test_a_card_without_a_vae_keeps_the_identity_format_and_recorded_statistics_apply(folder):
    plain = load_hdr_diffusion_model(folder / "dit.safetensors").model
    latent = torch.randn(1, 32, 1, 2, 2)
    assert torch.equal(plain.process_latent_in(latent), latent)
    stats = read_latent_stats(folder / "tiny_vae")
    recorded = load_hdr_diffusion_model(_dit(folder, "recorded", mean=list(stats.mean),
                                             std=list(stats.std))).model
    assert torch.equal(recorded.process_latent_in(latent), stats.process_in(latent))


def test_a_vae_folder_without_statistics_is_refused_naming_both_files_and_the_command(
        folder):
    bare = folder / "bare_vae"
    shutil.copytree(folder / "tiny_vae", bare)
    (bare / LATENT_STATS_FILE).unlink()
    with pytest.raises(ValueError, match=(
            r"bare\.json needs the latent statistics of the HDR VAE .*bare_vae, but "
            r".*bare_vae/latent_stats\.json is missing; measure them with `python -m "
            r"comfyui_hdr\.training latent-stats --vae .*bare_vae")):
        load_hdr_diffusion_model(_dit(folder, "bare", vae=str(bare)))
    with pytest.raises(ValueError, match=r"missing\.json names the HDR VAE 'nowhere'"):
        load_hdr_diffusion_model(_dit(folder, "missing", vae="nowhere"))


def test_a_dit_trained_on_other_statistics_or_channels_is_refused_naming_both(folder):
    stats = read_latent_stats(folder / "tiny_vae")
    with pytest.raises(ValueError, match=(
            r"other\.json was trained on latents normalised with other statistics than "
            r".*tiny_vae/latent_stats\.json: the DiT and this VAE are for different latents")):
        load_hdr_diffusion_model(_dit(folder, "other", vae=str(folder / "tiny_vae"),
                                      mean=[m + 0.1 for m in stats.mean], std=list(stats.std)))
    narrow = folder / "narrow_vae"
    shutil.copytree(folder / "tiny_vae", narrow)
    write_latent_stats(narrow, LatentStatistics(mean=(0.0,) * 16, std=(1.0,) * 16, count=1))
    with pytest.raises(ValueError, match=(
            r"narrow\.safetensors denoises 32-channel latents but its VAE's statistics have "
            r"16 channels")):
        load_hdr_diffusion_model(_dit(folder, "narrow", vae=str(narrow)))


def test_empty_hdr_latent_is_the_vae_s_mean_and_decodes_as_the_library_predicts(folder):
    vae = load_hdr_vae(folder / "tiny_vae")
    managed = ManagedHDRVAE(vae)
    (empty,) = HDREmptyLatent().generate(width=32, height=16, batch_size=2, hdr_vae=managed)
    expected = vae.latent_stats.process_out(torch.zeros(2, 32, 2, 4))
    assert torch.equal(empty["samples"], expected)
    decoded = HDRVAEDecode().decode(empty, managed, tile_size=0)["result"]
    with torch.no_grad():
        oracle = vae.decode(expected)
    assert torch.allclose(decoded[0], oracle.linear.movedim(1, -1), rtol=1e-6, atol=0)
    # Without statistics the empty latent stays all zero (as before).
    bare = ManagedHDRVAE(load_hdr_vae(folder / "tiny_vae"))
    bare.vae.latent_stats = None
    (zeros,) = HDREmptyLatent().generate(width=32, height=16, batch_size=1, hdr_vae=bare)
    assert not zeros["samples"].any()


def test_the_qwen_image_block_vae_loads_encodes_and_decodes_through_the_same_nodes(tmp_path):
    from diffusers import AutoencoderKLQwenImage

    from comfyui_hdr.hdr.models.qwen_hdr_vae import QwenHDRAutoencoder
    from comfyui_hdr.nodes.hdr_vae_nodes import HDRLoadVAE, HDRVAEEncode

    torch.manual_seed(8)
    source = AutoencoderKLQwenImage(base_dim=8, num_res_blocks=1)
    QwenHDRAutoencoder.from_qwen_image(source).save_pretrained(tmp_path / "qwen_hdr")
    (managed,) = HDRLoadVAE().load("", path=str(tmp_path / "qwen_hdr"))
    assert type(managed.vae) is QwenHDRAutoencoder
    image = torch.rand((1, 16, 24, 3), generator=torch.Generator().manual_seed(9)) * 8
    (latent,) = HDRVAEEncode().encode(image, managed)
    assert tuple(latent["samples"].shape) == (1, 32, 2, 3)
    linear, display = HDRVAEDecode().decode(latent, managed, tile_size=0)["result"]
    with torch.no_grad():
        oracle = managed.vae.decode(managed.vae.encode(image.movedim(-1, 1)).mode())
    assert torch.equal(linear, oracle.linear.movedim(1, -1))
    assert torch.equal(display, ((oracle.display.movedim(1, -1) + 1) / 2).clamp(0, 1))

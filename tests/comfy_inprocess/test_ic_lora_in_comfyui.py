"""SDR->HDR in-context LoRA: ComfyUI sees the reference exactly as ``train-lora`` trained it.

A tiny diffusers Wan 2.1 transformer and a tiny diffusers Wan 2.1 VAE (base width 8, the
layout ComfyUI loads) train a reference-mode LogC3 LoRA (``harness.lora_example``'s
recipe). In ComfyUI the VAE is the same VAE (its weights renamed to ComfyUI's keys), the
"HDR Reference (in-context)" node encodes the SDR picture and puts its latent on the
conditioning (``time_dim_concat``), WAN21's ``extra_conds`` normalises it, and the model
predicts the velocity of a noisy latent; diffusers does the same through peft and
``predict_velocity(reference=...)``. The two must agree to the LoRA bound of the issue.
"""

from __future__ import annotations

import contextlib
import io

import comfy.model_management
import comfy.sd
import pytest
import torch
from _flow import comfy_velocity
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import load_file, save_file

from comfyui_hdr.harness.lora_example import (
    IC_LORA_TRAINING,
    TINY_WAN_TRANSFORMER,
    sdr_example,
    tiny_wan_vae,
)
from comfyui_hdr.harness.tiny_models import wan_vae_comfyui_state_dict
from comfyui_hdr.nodes.sampling_io import HDRInContextReference
from comfyui_hdr.training.lora import PromptEmbeddings, load_adapter, main
from comfyui_hdr.training.lora_export import wan_diffusers_to_comfyui
from comfyui_hdr.training.lora_models import encode_latents, predict_velocity

SIGMA = 0.7
SAME_AS_DIFFUSERS = 1e-4
"""The issue's bound on |ComfyUI - peft| velocities (float32
rounding of two attention implementations; measured 3.2e-6)."""
WAN = "wan: frames after the target"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan_ic_lora")
    torch.manual_seed(0)
    WanTransformer3DModel(**TINY_WAN_TRANSFORMER).save_pretrained(folder / "wan")
    tiny_wan_vae().save_pretrained(folder / "vae")
    PromptEmbeddings.random([""], 8, 4096).save(folder / "text.safetensors")
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--model", str(folder / "wan"), "--vae", str(folder / "vae"),
                     "--prompt-embeddings", str(folder / "text.safetensors"),
                     "--output", str(folder / "lora"), *IC_LORA_TRAINING])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def diffusers_vae(trained):
    return AutoencoderKLWan.from_pretrained(trained / "vae").eval()


@pytest.fixture(scope="module")
def comfy_vae(diffusers_vae):
    return comfy.sd.VAE(sd=wan_vae_comfyui_state_dict(diffusers_vae))


@pytest.fixture(scope="module")
def comfy_wan_with_lora(trained):
    state = WanTransformer3DModel.from_pretrained(trained / "wan").state_dict()
    path = trained / "base_comfyui.safetensors"
    save_file({wan_diffusers_to_comfyui(key): value for key, value in state.items()}, str(path))
    base = comfy.sd.load_diffusion_model(str(path))
    lora = load_file(str(trained / "lora" / "comfyui_lora.safetensors"))
    with_lora, _ = comfy.sd.load_lora_for_models(base, None, lora, 1.0, 0.0)
    return with_lora


@pytest.fixture(scope="module")
def sdr():
    return torch.from_numpy(sdr_example()).float()[None] / 255  # [1, 64, 64, 3], Load Image


def test_comfyuis_vae_twin_is_the_vae_the_lora_was_trained_with(diffusers_vae, comfy_vae, sdr):
    with torch.no_grad():
        expected = diffusers_vae.encode(sdr.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean
        decoded = diffusers_vae.decode(expected).sample
    latent = comfy_vae.encode(sdr)
    assert latent.shape == expected.shape == (1, 16, 1, 8, 8)
    # Same weights, same convolutions in float32: measured 9e-8 (latent) and 9e-7 (pixels).
    assert (latent - expected).abs().max() <= 1e-5
    pixels = comfy_vae.decode(latent)[0, 0]
    reference = ((decoded[0, :, 0].permute(1, 2, 0) + 1) / 2).clamp(0, 1)  # stock clamp
    assert (pixels - reference).abs().max() <= 1e-5


def test_the_tiny_vae_normalises_latents_as_comfyuis_wan21_format(diffusers_vae):
    import comfy.latent_formats

    wan21 = comfy.latent_formats.Wan21()
    config = diffusers_vae.config
    assert torch.equal(wan21.latents_mean.flatten(), torch.tensor(config.latents_mean))
    assert torch.equal(wan21.latents_std.flatten(), torch.tensor(config.latents_std))


def test_the_node_gives_comfyui_the_reference_as_train_lora_does(
        trained, diffusers_vae, comfy_vae, comfy_wan_with_lora, sdr):
    text = PromptEmbeddings.load(trained / "text.safetensors").prompt_embeds[:1]
    positive, negative, empty = HDRInContextReference().apply(
        [[text, {}]], [[text, {}]], comfy_vae, sdr, WAN)
    assert empty["samples"].shape == (1, 16, 1, 8, 8) and not empty["samples"].any()
    assert negative[0][1]["time_dim_concat"] is positive[0][1]["time_dim_concat"]
    noisy = torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    in_comfyui = comfy_velocity(comfy_wan_with_lora, noisy, positive, SIGMA)

    peft = load_adapter(WanTransformer3DModel.from_pretrained(trained / "wan"), trained / "lora")
    reference = encode_latents(diffusers_vae, sdr[None], video=True)  # [B, T, H, W, 3] codes
    with torch.no_grad():
        in_diffusers = predict_velocity(peft, "wan", noisy, torch.tensor([SIGMA]), text,
                                        reference=reference)
        without_reference = predict_velocity(peft, "wan", noisy, torch.tensor([SIGMA]), text)
    assert in_comfyui.shape == noisy.shape
    assert (in_comfyui - in_diffusers).abs().max() <= SAME_AS_DIFFUSERS
    # The reference's tokens take part in self-attention: without them the velocity moves
    # far beyond the agreement bound.
    assert (in_diffusers - without_reference).abs().max() > 100 * SAME_AS_DIFFUSERS


def test_the_node_refuses_hdr_odd_sizes_and_the_wrong_vae(comfy_vae, sdr):
    node, conditioning = HDRInContextReference(), [[torch.zeros(1, 8, 4096), {}]]
    with pytest.raises(ValueError, match=r"reference spans .*Tone Map"):
        node.apply(conditioning, conditioning, comfy_vae, sdr * 4, WAN)
    with pytest.raises(ValueError, match=r"reference is 56x64; .*multiples of 16"):
        node.apply(conditioning, conditioning, comfy_vae, sdr[:, :, :56], WAN)
    with pytest.raises(ValueError, match=r"needs an image \(Flux\) VAE"):
        node.apply(conditioning, conditioning, comfy_vae, sdr, "flux: tokens as image 1")


TINY_FLUX = {"patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 1,
             "attention_head_dim": 64, "num_attention_heads": 2, "joint_attention_dim": 32,
             "pooled_projection_dim": 32, "axes_dims_rope": (16, 24, 24)}


@pytest.mark.parametrize("reference_side", [8, 4])  # downscale factor 1 and 2
def test_flux_reference_tokens_get_the_positions_train_lora_gives_them(reference_side):
    """ComfyUI's smallest detectable Flux is 0.56 G parameters, so its Flux module is built
    directly at width 128 with the diffusers model's weights; the node's conditioning keys
    (``reference_latents`` + method ``index``) reach it as WAN21's did, via ``extra_conds``."""
    import comfy.ldm.flux.model
    import comfy.ops
    from diffusers import FluxTransformer2DModel

    from comfyui_hdr.harness import tiny_models
    from comfyui_hdr.harness.tiny_models import flux_comfyui_state_dict
    from comfyui_hdr.nodes.sampling_io import reference_conditioning

    torch.manual_seed(0)
    flux = FluxTransformer2DModel(**TINY_FLUX).eval()
    comfy_flux = tiny_models.comfy_flux(
        in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32, hidden_size=128,
        mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=[16, 24, 24],
        theta=10000, patch_size=2, qkv_bias=True, guidance_embed=False,
        operations=comfy.ops.disable_weight_init).eval()
    comfy_flux.load_state_dict(flux_comfyui_state_dict(flux.state_dict(), 1, 1, 128),
                               strict=True)
    generator = torch.Generator().manual_seed(5)
    noisy = torch.randn(1, 16, 8, 8, generator=generator)
    reference = torch.randn(1, 16, reference_side, reference_side, generator=generator)
    text, pooled = torch.randn(1, 8, 32, generator=generator), torch.randn(1, 32,
                                                                          generator=generator)
    positive, _ = reference_conditioning([[text, {}]], [[text, {}]], reference,
                                         "flux: tokens as image 1")
    options = positive[0][1]
    assert options["reference_latents_method"] == "index"
    sigma = torch.tensor([SIGMA])
    with torch.no_grad():
        in_comfyui = comfy_flux(noisy, sigma, context=text, y=pooled,
                                ref_latents=options["reference_latents"],
                                ref_latents_method=options["reference_latents_method"])
        in_diffusers = predict_velocity(flux, "flux", noisy, sigma, text, pooled,
                                        reference=reference)
        without_reference = predict_velocity(flux, "flux", noisy, sigma, text, pooled)
    # Same weights and positions; float32 rounding of two attention implementations
    # (measured 6e-7). Without the reference the velocity moves by 0.026 (measured).
    assert (in_comfyui - in_diffusers).abs().max() <= SAME_AS_DIFFUSERS
    assert (in_diffusers - without_reference).abs().max() > 100 * SAME_AS_DIFFUSERS


def test_a_downscaled_reference_is_shrunk_as_in_training_and_the_latent_stays_full_size(
        comfy_vae, sdr):
    """Qwen-Image's VAE is a Wan 2.1 VAE, so the tiny one stands in for it here."""
    from comfyui_hdr.hdr.degrade import downscale_reference

    node, conditioning = HDRInContextReference(), [[torch.zeros(1, 8, 32), {}]]
    positive, negative, empty = node.apply(conditioning, conditioning, comfy_vae, sdr,
                                           "qwen-image: tokens as image 1", 2)
    reference = positive[0][1]["reference_latents"]
    assert len(reference) == 1 and reference[0].shape == (1, 16, 1, 4, 4)  # 32 px / 8
    assert positive[0][1]["reference_latents_method"] == "index"
    # The same box filter train-lora applies (downscale_reference), then the same VAE.
    assert torch.equal(reference[0], comfy_vae.encode(downscale_reference(sdr, 2)))
    assert empty["samples"].shape == (1, 16, 1, 8, 8) and not empty["samples"].any()
    with pytest.raises(ValueError, match="reference_downscale_factor must be 1 for Wan"):
        node.apply(conditioning, conditioning, comfy_vae, sdr, WAN, 2)
    # Qwen-Image needs an even token grid (32 px; x2 here): at odd grids ComfyUI's and
    # diffusers' centred rotary positions differ by one (measured 3e-3 to 4e-3).
    with pytest.raises(ValueError, match=r"reference is 96x96; .*multiples of 64 \(32 for "
                                         r"qwen-image"):
        node.apply(conditioning, conditioning, comfy_vae, torch.zeros(1, 96, 96, 3),
                   "qwen-image: tokens as image 1", 2)
    with pytest.raises(ValueError, match=r"Wan clips have 1 \+ 4k frames"):
        node.apply(conditioning, conditioning, comfy_vae, sdr.expand(2, -1, -1, -1), WAN)
    with pytest.raises(ValueError, match="already carries a reference .*remove the other"):
        node.apply(positive, positive, comfy_vae, sdr, "qwen-image: tokens as image 1", 2)


class _ImageVAE:
    """A stand-in for an image (Flux-style) ComfyUI VAE: latent_dim 2, encode records its
    input and returns 16 channels at 1/8 size."""

    latent_dim = 2

    def __init__(self):
        self.seen = []

    def encode(self, pixels):
        self.seen.append(pixels)
        planes = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8)
        return planes.repeat(1, 6, 1, 1)[:, :16]


def test_the_flux_arrangement_encodes_each_picture_shrunk_and_appends_reference_latents(sdr):
    from comfyui_hdr.hdr.degrade import downscale_reference

    vae, conditioning = _ImageVAE(), [[torch.zeros(1, 8, 32), {"reference_latents": []}]]
    pictures = torch.cat([sdr, sdr.flip(2)])  # a batch of two different pictures
    positive, negative, empty = HDRInContextReference().apply(
        conditioning, conditioning, vae, pictures, "flux: tokens as image 1", 2)
    assert [picture.shape for picture in vae.seen] == [(1, 32, 32, 3)] * 2  # one by one
    assert torch.equal(torch.cat(vae.seen), downscale_reference(pictures, 2))
    for options in (positive[0][1], negative[0][1]):
        (reference,) = options["reference_latents"]  # the one reference (an empty list before)
        assert reference.shape == (2, 16, 4, 4)
        assert options["reference_latents_method"] == "index"
    assert empty["samples"].shape == (2, 16, 8, 8)
    with pytest.raises(ValueError, match=r"needs a video \(Wan-style\) VAE"):
        HDRInContextReference().apply(conditioning, conditioning, vae, sdr, WAN)

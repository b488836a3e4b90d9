"""The dual-head HDR VAE on Qwen-Image's VAE blocks: the step-0 warm start reproduces the
source ``AutoencoderKLQwenImage``, the one loader reads it back, and ``train-vae
--init-from`` trains it.

Oracle: the tiny random ``AutoencoderKLQwenImage`` itself (diffusers' encode and decode,
the original's first-frame path), weights perturbed from their init so that no copied
tensor is trivially ones or zeros.
"""

import contextlib
import io

import pytest
import torch
from diffusers import AutoencoderKLQwenImage

from comfyui_hdr.hdr.models.hdr_vae import load_hdr_vae
from comfyui_hdr.hdr.models.latent_stats import read_latent_stats
from comfyui_hdr.hdr.models.qwen_hdr_vae import QwenHDRAutoencoder
from comfyui_hdr.training.train_vae import build_parser, train_vae

SOURCE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
              temperal_downsample=[False, True, True])
"""Qwen-Image's layout (8x compression, 16 channels) at width 8 and one resnet per block."""
WARM_START = 1e-5
"""Step 0 against the source: the only difference is the input normalisation's forward of
its own inverse (float32 rounding of code values in [-1, 1], 2.7e-7 measured on the
latent) carried through the decoder: 1.4e-6 measured on the display head."""


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(4)
    vae = AutoencoderKLQwenImage(**SOURCE).eval()
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return vae


def test_step_0_reproduces_the_source_vae_s_sdr_reconstruction_on_the_display_head(source):
    model = QwenHDRAutoencoder.from_qwen_image(source, scene_log2_min=-8.0,
                                               scene_log2_max=10.0).eval()
    sdr = torch.rand((2, 3, 32, 48), generator=torch.Generator().manual_seed(5)) * 2 - 1
    scene_linear = model.input_normalisation.inverse(sdr)  # code values = the SDR picture
    with torch.no_grad():
        source_latent = source.encode(sdr[:, :, None]).latent_dist.mode()[:, :, 0]
        reconstruction = source.decode(source_latent[:, :, None]).sample[:, :, 0]
        latent = model.encode(scene_linear).mode()
        decoded = model.decode(latent)
    assert tuple(latent.shape) == (2, 32, 4, 6)
    assert (latent[:, :16] - source_latent).abs().max().item() <= WARM_START
    assert not latent[:, 16:].any()  # the new channels' means start at exactly zero
    # diffusers clamps its decode to [-1, 1]; the display head's output is clamped by the
    # nodes ((display + 1) / 2 in [0, 1]), so compare the clamped values.
    assert (decoded.display.clamp(-1, 1) - reconstruction).abs().max().item() <= WARM_START
    assert reconstruction.abs().max().item() > 0.3  # a real picture, not a flat zero
    # Both heads are the source decoder at step 0: the scene-linear head is the display
    # picture through the inverse normalisation, pixel-aligned with it by construction.
    code = model.output_normalisation(decoded.linear)
    assert (code - decoded.display).abs().max().item() <= WARM_START
    # The display head ignores the new channels at step 0.
    noisy = torch.cat([latent[:, :16], torch.randn_like(latent[:, 16:])], dim=1)
    with torch.no_grad():
        assert torch.equal(model.decode(noisy).display, decoded.display)


def test_save_and_load_round_trip_through_the_one_loader(source, tmp_path):
    model = QwenHDRAutoencoder.from_qwen_image(source).eval()
    model.save_pretrained(tmp_path / "qwen_hdr", safe_serialization=True)
    loaded = load_hdr_vae(tmp_path / "qwen_hdr")
    assert type(loaded) is QwenHDRAutoencoder and loaded.spatial_compression_ratio == 8
    assert loaded.config.base_dim == 8 and list(loaded.config.dim_mult) == [1, 2, 4, 4]
    state = model.state_dict()
    assert all(torch.equal(tensor, state[name]) for name, tensor in loaded.state_dict().items())
    z = torch.randn(1, 32, 2, 3, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(loaded.decode(z).linear, model.decode(z).linear)
        # The tiled entry points run the whole frame: the same pixels.
        assert torch.equal(loaded.decode_tiled(z, 1).display, loaded.decode(z).display)


def test_bad_layouts_and_the_wrong_warm_start_are_refused():
    with pytest.raises(ValueError, match="one entry per downsampling block"):
        QwenHDRAutoencoder(base_dim=8, dim_mult=(1, 2), temperal_downsample=(False, True))
    with pytest.raises(ValueError, match="use QwenHDRAutoencoder.from_qwen_image"):
        QwenHDRAutoencoder.from_autoencoder_kl(torch.nn.Linear(1, 1))


def test_train_vae_init_from_a_qwen_image_vae_folder_trains_with_finite_loss(source,
                                                                             tmp_path):
    source.save_pretrained(tmp_path / "qwen", safe_serialization=True)
    with contextlib.redirect_stdout(io.StringIO()):
        result = train_vae(build_parser().parse_args([
            "--procedural", "4", "--size", "32", "--crop", "32", "--heldout", "2",
            "--init-from", str(tmp_path / "qwen"), "--batch-size", "2", "--steps", "2",
            "--learning-rate", "1e-4", "--output", str(tmp_path / "hdr")]))
    assert [row["step"] for row in result.losses.rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(list(row.values()))).all()
               for row in result.losses.rows)
    loaded = load_hdr_vae(tmp_path / "hdr")
    assert type(loaded) is QwenHDRAutoencoder
    assert result.description["training"]["init_from"] == str(tmp_path / "qwen")
    assert read_latent_stats(tmp_path / "hdr").channels == 32


def test_gradient_checkpointing_gives_the_same_gradients(source):
    scene = torch.rand((1, 3, 16, 16), generator=torch.Generator().manual_seed(7)) * 4
    gradients = []
    for checkpointing in (False, True):
        model = QwenHDRAutoencoder.from_qwen_image(source).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        decoded = model(scene)
        (decoded.linear.mean() + decoded.display.mean()).backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()
                                    if p.grad is not None]))
    assert model.encoder.gradient_checkpointing and model.linear_head.decoder.gradient_checkpointing
    # Recomputation runs the same float32 kernels on the same inputs: equal to rounding.
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-5, atol=1e-7)

"""The dual-head HDR VAE: round trips, warm start, tiling, alignment, loss and bad input.

Every model here is tiny (block widths 32/64, one layer per block: 2x compression) and
seeded, so the whole file runs in seconds on a shared CPU. Oracles: bit equality where
the maths is the same computation (round trips, warm start, zero-weight channels),
colour-science for the display target's sRGB encoding, closed forms written out in the
tests for the normalisation and the loss, and a float64 copy of the model for strict
float32 (TF32 off). Tests taking ``device`` run on every available device.
"""

import contextlib
import copy
import math

import colour
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors.torch import save_file

from comfyui_hdr.hdr.models.hdr_vae import (
    HDRAutoencoder,
    HDRDecoderOutput,
    SceneLinearNormalisation,
    display_target,
    load_hdr_vae,
    vae_loss,
)
from comfyui_hdr.hdr.models.precision import FP32_PRECISION_FLAGS, strict_fp32
from comfyui_hdr.hdr.scenes import hdr_scene, hdr_scenes

TINY = dict(block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
FLOOR = 2.0**-12


def tiny_vae(seed: int = 0, **config) -> HDRAutoencoder:
    torch.manual_seed(seed)
    return HDRAutoencoder(**TINY, **config).eval()


def tiny_kl(latent_channels: int, seed: int = 1) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(latent_channels=latent_channels, **TINY).eval()


def scenes(count: int = 2, size: int = 32) -> torch.Tensor:
    return hdr_scenes(range(count), size).permute(0, 3, 1, 2).contiguous()


def stops(scene_linear: torch.Tensor) -> torch.Tensor:
    return torch.log2(scene_linear.clamp_min(FLOOR))


@pytest.fixture
def vae(device) -> HDRAutoencoder:
    return tiny_vae().to(device)


def test_one_32_channel_gaussian_latent_decodes_through_both_heads_at_full_size(vae, device):
    with torch.no_grad():
        output = vae(scenes().to(device))
    assert output.display.device.type == output.latent_dist.mean.device.type == device.type
    assert output.latent_dist.mean.shape == (2, 32, 16, 16)
    assert output.latent_dist.logvar.shape == (2, 32, 16, 16)
    assert output.display.shape == output.linear.shape == (2, 3, 32, 32)
    assert output.display.dtype == output.linear.dtype == torch.float32


def test_normalisation_starts_as_the_log2_mapping_of_the_training_range():
    norm = SceneLinearNormalisation(3, -12.0, 17.0)
    # Closed form: code = (2 log2(x) - (max + min)) / (max - min); the asinh toe differs
    # from log2 by 1/(4 ln2) (x/floor)^-2 stops, below 3e-7 stops at 0.18 with a 2^-12 floor.
    scene = torch.tensor([0.18, 1.0, 1e4]).reshape(1, 3, 1, 1)
    expected = [(2 * math.log2(value) - 5.0) / 29.0 for value in (0.18, 1.0, 1e4)]
    np.testing.assert_allclose(norm(scene).flatten().tolist(), expected, atol=1e-6)
    # The range's ends map onto the network's [-1, 1].
    ends = torch.tensor([2.0**17, 2.0**17, 2.0**17]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(norm(ends).flatten().tolist(), [1.0] * 3, atol=1e-6)


def test_normalisation_is_invertible_from_1e_minus_4_to_1e5_and_keeps_negatives():
    norm = SceneLinearNormalisation(1, -12.0, 17.0)
    values = torch.tensor([-1e-3, -1e-4, 1e-4, 1e-2, 0.18, 1.0, 1e3, 1e5]).reshape(1, 1, 1, -1)
    # float32: sinh(asinh(x)) through a 29-stop affine map keeps ~1e-6 relative.
    np.testing.assert_allclose(norm.inverse(norm(values)).detach().flatten().numpy(),
                               values.flatten().numpy(), rtol=2e-5)


def test_linear_head_is_never_clamped(device):
    # Push the linear head's output code to +1.5: 2^(1.5 * 14.5 + 2.5) = 2^24.25 scene-linear,
    # far above any clamp (diffusers' Qwen-Image _decode clamps to [-1, 1]).
    head = tiny_vae(seed=3).to(device)
    with torch.no_grad():
        head.linear_head.decoder.conv_out.weight.zero_()
        head.linear_head.decoder.conv_out.bias.fill_(1.5)
        decoded = head.decode(torch.zeros(1, 32, 8, 8, device=device))
    np.testing.assert_allclose(decoded.linear.cpu().numpy(), 2.0**24.25, rtol=1e-5)


def test_load_hdr_vae_round_trips_bit_exactly(tmp_path):
    vae = tiny_vae()
    vae.save_pretrained(tmp_path)
    loaded = load_hdr_vae(tmp_path)
    for name, tensor in vae.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    # Same weights, same memory layout: the forward pass is the same computation. (With
    # diffusers' default mmap loading the tensors are equal too, but their alignment can
    # change the CPU kernels' summation order: a tiny Qwen-Image DiT then differs by
    # 2.4e-7; load_hdr_vae passes disable_mmap=True.)
    x = scenes()
    with torch.no_grad():
        before, after = vae(x), loaded(x)
    assert torch.equal(before.display, after.display)
    assert torch.equal(before.linear, after.linear)
    assert loaded.dtype == torch.float32 and not loaded.training


@pytest.mark.parametrize("source_channels", [16, 4])
def test_warm_started_display_head_equals_the_source_decoder_exactly(source_channels, device):
    source = tiny_kl(source_channels).to(device)
    model = HDRAutoencoder.from_autoencoder_kl(source).eval()
    torch.manual_seed(5)
    z = torch.randn(2, source_channels, 16, 16).to(device)
    extra = torch.randn(2, 32 - source_channels, 16, 16).to(device)
    with torch.no_grad(), strict_fp32():
        expected = source.decode(z).sample
        display = model.decode(torch.cat([z, extra], dim=1)).display
    # Zero weights on the new channels add exact zeros: the difference is 0.0, not ~1e-7
    # (on CUDA too, with both decodes in strict float32: same kernels, same sums).
    assert (display - expected).abs().max().item() == 0.0


def test_warm_start_puts_the_new_channels_at_the_prior_and_lets_gradients_reach_them():
    model = HDRAutoencoder.from_autoencoder_kl(tiny_kl(16)).train()
    x = scenes()
    output = model(x, sample_posterior=True, generator=torch.Generator().manual_seed(0))
    # New channels: mean 0 and log-variance 0, i.e. N(0, 1), whose KL term is exactly 0.
    assert output.latent_dist.mean[:, 16:].abs().max().item() == 0.0
    assert output.latent_dist.logvar[:, 16:].abs().max().item() == 0.0
    vae_loss(output, x, display_target(x), output.latent_dist).total.backward()
    # Training samples the posterior, so the new channels carry N(0, 1) noise, and the
    # identity on their post_quant_conv diagonal passes it on: their zero columns in the
    # decoder get a gradient (with zeros in post_quant_conv too they never would).
    new_columns = model.display_head.decoder.conv_in.weight.grad[:, 16:]
    assert new_columns.abs().max().item() > 0.0


def test_tiled_decode_equals_the_whole_frame_decode_and_shows_no_seam(vae, device):
    frame = hdr_scene(3, 64, 64).permute(2, 0, 1)[None].to(device)
    with torch.no_grad():
        z = vae.encode(frame).mode()
        whole = vae.decode(z)
    calls = []
    tiled = vae.decode_tiled(z, tile_latent=8, progress=lambda done, total: calls.append(
        (done, total)))
    error = (stops(tiled.linear) - stops(whole.linear)).abs()[0].amax(0)
    # Issue 6: within 1e-3 in log2 (measured ~1e-4: float32 rounding, largest where the
    # untrained head sits near the 2^-12 floor).
    assert error.max().item() <= 1e-3
    assert (tiled.display - whole.display).abs().max().item() <= 1e-4
    # No seam: the error within 2 pixels of a tile edge (every 16 pixels) is no more than
    # twice the interior's.
    position = torch.arange(64, device=device) % 16
    near_edge = (position <= 1) | (position >= 14)
    border = near_edge[:, None] | near_edge[None, :]
    assert error[border].max() <= 2 * error[~border].max()
    assert calls[-1][0] == calls[-1][1] and [done for done, _ in calls] == list(
        range(1, len(calls) + 1))


@pytest.mark.parametrize("tile_latent", [5, 8, 32])
def test_tiled_encode_equals_the_whole_frame_encode(vae, device, tile_latent):
    # 64 x 48 pixels = 32 x 24 latent pixels: tiles of 5 leave ragged edge tiles, 32 is one
    # tile. The encoder's GroupNorms take whole-frame statistics and every convolution (the
    # stride-2 downsampling included) reads its true neighbours, so only float32 rounding
    # differs. Oracle: the same model in float64. Measured on CPU: the tiled encode is
    # 3.9e-6 from it, the whole-frame float32 encode 9.4e-5 (its GroupNorm sums a whole
    # frame in float32), so they agree to 9.6e-5 (means up to 2.7).
    frame = hdr_scene(5, 48, 64).permute(2, 0, 1)[None].to(device)
    calls = []
    with torch.no_grad():
        whole = vae.encode(frame)
        tiled = vae.encode_tiled(frame, tile_latent, lambda done, total: calls.append(
            (done, total)))
        oracle = copy.deepcopy(vae).cpu().double()
        moments = oracle.quant_conv(oracle.encoder(oracle.input_normalisation(
            frame.cpu().double())))
    assert tiled.mean.shape == whole.mean.shape == (1, 32, 24, 32)
    for name, expected in (("mean", moments[:, :32]), ("logvar", moments[:, 32:])):
        got, reference = getattr(tiled, name), getattr(whole, name)
        assert (got.cpu().double() - expected).abs().max().item() <= 2e-5
        assert (got - reference).abs().max().item() <= 2e-4
    tiles = math.ceil(24 / tile_latent) * math.ceil(32 / tile_latent)
    # conv_in, then per down block 2 convolutions x 1 resnet (+ the first block's
    # downsampling): 1 + 3 + 2 = 6 stages, each over every tile.
    assert calls[-1] == (6 * tiles, 6 * tiles)


def test_tiled_encode_refuses_a_tile_under_one_latent_pixel(vae):
    with pytest.raises(ValueError, match="tile_latent must be at least 1"):
        vae.encode_tiled(torch.ones(1, 3, 16, 16), 0)


def _tf32_settings() -> dict:
    return {(backend, operation): getattr(getattr(torch.backends, backend),
                                          operation).fp32_precision
            for backend, operation in FP32_PRECISION_FLAGS}


@contextlib.contextmanager
def _tf32_everywhere():
    """What a caller may have set (and torch's default for cuDNN convolutions is): TF32 on
    every backend; the test's own settings come back afterwards."""
    before = _tf32_settings()
    try:
        for backend, operation in FP32_PRECISION_FLAGS:
            getattr(getattr(torch.backends, backend), operation).fp32_precision = "tf32"
        yield
    finally:
        for (backend, operation), value in before.items():
            getattr(getattr(torch.backends, backend), operation).fp32_precision = value


def test_strict_fp32_turns_tf32_off_inside_and_restores_the_callers_settings_after_errors():
    before = _tf32_settings()
    with _tf32_everywhere():
        with strict_fp32():
            assert set(_tf32_settings().values()) == {"ieee"}
        assert set(_tf32_settings().values()) == {"tf32"}
        with pytest.raises(RuntimeError, match="inside"), strict_fp32():
            raise RuntimeError("inside")
        assert set(_tf32_settings().values()) == {"tf32"}
    assert _tf32_settings() == before
    # The legacy flags ComfyUI reads (k_diffusion's tf32_mode) stay readable after a round.
    assert isinstance(torch.backends.cudnn.allow_tf32, bool)


def test_encode_and_decode_run_their_convolutions_with_tf32_off(vae, device):
    seen = []
    hooks = [module.register_forward_pre_hook(
        lambda module, args: seen.append(torch.backends.cudnn.conv.fp32_precision))
        for module in (vae.encoder.conv_in, vae.display_head.decoder.conv_out,
                       vae.linear_head.decoder.conv_out)]
    frame = scenes(1, 16).to(device)
    try:
        with _tf32_everywhere(), torch.no_grad():
            z = vae.encode(frame).mode()
            vae.decode(z)
            vae.decode_tiled(z, 3)
            vae.encode_tiled(frame, 3)
            assert set(_tf32_settings().values()) == {"tf32"}
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) >= 7 and set(seen) == {"ieee"}


def test_the_decode_is_float32_exact_even_where_tf32_is_enabled(vae, device):
    # Oracle: the same heads in float64. float32 convolutions stay within ~1e-6 of it;
    # TF32 (10-bit mantissa products) would be ~1e-3 off on these 64-channel layers.
    generator = torch.Generator().manual_seed(4)
    z = torch.randn((1, 32, 8, 8), generator=generator)
    reference = copy.deepcopy(vae).cpu().double()
    with torch.no_grad():
        expected = reference.display_head(z.double())
        with _tf32_everywhere():
            decoded = vae.decode(z.to(device)).display
    error = (decoded.cpu().double() - expected).abs().max().item()
    assert error <= 1e-5 * expected.abs().max().item()


def edge_frame(position: float, width: int = 64) -> torch.Tensor:
    """A vertical edge from 0.05 to 8.0 (scene-linear) at ``position``, anti-aliased."""
    centres = torch.arange(width, dtype=torch.float32) + 0.5
    coverage = (centres - position + 0.5).clamp(0.0, 1.0)
    return (0.05 + (8.0 - 0.05) * coverage).expand(1, 3, 32, width).contiguous()


def edge_centroid(profile: torch.Tensor) -> float:
    """Sub-pixel edge position: the centroid of |d/dx| of a row-averaged profile."""
    gradient = (profile[1:] - profile[:-1]).abs()
    return float((gradient * torch.arange(1, len(profile))).sum() / gradient.sum())


@pytest.mark.parametrize("shift", [0.0, 0.25, 0.5, 1.0, 2.0, 3.0])
def test_both_heads_place_a_shifted_edge_at_the_same_sub_pixel(shift):
    # Alignment by construction, made measurable: untrained heads are unrelated random
    # decoders (their edges sit up to ~1 px apart, and 100 training steps still leave
    # 0.8-1.1 px), so both heads start here from the same source decoder, as a warm start
    # does. The edge is compared in one domain, the linear head's output mapped back to
    # code values; any crop, pad, shift or latent mix-up between the heads would show.
    model = HDRAutoencoder.from_autoencoder_kl(tiny_kl(16)).eval()
    with torch.no_grad():
        decoded = model(edge_frame(30.0 + shift))
        linear_code = model.output_normalisation(decoded.linear)
    display = edge_centroid(decoded.display[0].mean((0, 1)))
    linear = edge_centroid(linear_code[0].mean((0, 1)))
    assert abs(display - linear) <= 0.05


def test_vae_loss_matches_its_closed_form():
    target = torch.tensor([0.5, 2.0, 0.0, 8.0]).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    predicted = torch.tensor([1.0, 2.0, 1e-9, 2.0]).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    display = torch.zeros(1, 3, 2, 2)
    display_goal = torch.full((1, 3, 2, 2), 0.25)
    mean = torch.tensor([1.0, -1.0]).reshape(1, 2, 1, 1)
    logvar = torch.tensor([0.0, math.log(2.0)]).reshape(1, 2, 1, 1)
    posterior = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
    loss = vae_loss(HDRDecoderOutput(display=display, linear=predicted), target, display_goal,
                    posterior, floor=FLOOR, kl_weight=0.1, highlight_weight=3.0)
    # |log2| errors per pixel: 1 stop, 0, both at the floor (0), 2 stops; pixels above
    # diffuse white (2.0 and 8.0) weigh 1 + 3 = 4: mean(1, 0, 0, 8) = 2.25.
    assert loss.linear.item() == pytest.approx(9 / 4, rel=1e-6)
    assert loss.display.item() == pytest.approx(0.25, rel=1e-6)
    # KL of N(1, 1) and N(-1, 2) from N(0, 1): 0.5 (1 + 1 - 1 - 0) + 0.5 (1 + 2 - 1 - ln 2).
    kl = 0.5 * 1.0 + 0.5 * (2.0 - math.log(2.0))
    assert loss.kl.item() == pytest.approx(kl, rel=1e-6)
    assert loss.total.item() == pytest.approx(9 / 4 + 0.25 + 0.1 * kl, rel=1e-6)


def test_display_target_is_the_tone_mapper_sRGB_encoded_in_diffusers_range(device):
    scene = torch.tensor([0.0, 0.18, 1.0, 16.0, 1e4]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    reinhard = scene[0, 0, 0].numpy() / (1 + scene[0, 0, 0].numpy())
    expected = colour.models.eotf_inverse_sRGB(reinhard) * 2 - 1
    np.testing.assert_allclose(display_target(scene.to(device))[0, 0, 0].cpu().numpy(),
                               expected, atol=1e-6)


def test_a_16_channel_latent_is_refused_naming_the_vae_it_needs(vae, device):
    with pytest.raises(ValueError, match="32-channel HDR-VAE latent"):
        vae.decode(torch.zeros(1, 16, 8, 8, device=device))


def test_other_dtypes_are_refused_naming_fp32(vae, device):
    with pytest.raises(ValueError, match=r"float32 \(fp32\)"):
        vae.decode(torch.zeros(1, 32, 8, 8, dtype=torch.float16, device=device))
    with pytest.raises(ValueError, match=r"float32 \(fp32\)"):
        vae.encode(scenes().double().to(device))
    with pytest.raises(ValueError, match=r"float32 \(fp32\)"):
        tiny_vae().to(device, torch.bfloat16).decode(torch.zeros(1, 32, 8, 8, device=device))


def test_nan_in_the_decode_is_an_error_naming_fp32(vae):
    latent = torch.zeros(1, 32, 8, 8)
    latent[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf at 1 values.*fp32"):
        vae.decode(latent)
    broken = tiny_vae()
    with torch.no_grad():
        broken.display_head.decoder.conv_out.bias[0] = float("nan")
    with pytest.raises(ValueError, match=r"decoded display picture.*fp32"):
        broken.decode(torch.zeros(1, 32, 8, 8))


def test_unsupported_blocks_and_tone_mappers_are_refused_at_construction():
    with pytest.raises(ValueError, match="up_block_types must all be 'UpDecoderBlock2D'"):
        HDRAutoencoder(**{**TINY, "up_block_types": ("AttnUpDecoderBlock2D",) * 2})
    with pytest.raises(ValueError, match="display_tone_mapper 'filmic' is unknown.*reinhard"):
        HDRAutoencoder(**TINY, display_tone_mapper="filmic")


def test_frames_off_the_latent_grid_are_refused_naming_the_multiple(vae):
    with pytest.raises(ValueError, match="multiples of 2"):
        vae.encode(torch.ones(1, 3, 31, 32))


def test_a_directory_without_config_json_is_refused(tmp_path):
    with pytest.raises(ValueError, match="config.json is missing"):
        load_hdr_vae(tmp_path)


@pytest.mark.parametrize("checkpoint", ["diffusion_pytorch_model.bin", "model.pt", "vae.ckpt"])
def test_a_pickle_checkpoint_is_refused_naming_safetensors(vae, tmp_path, checkpoint):
    vae.save_config(tmp_path)
    torch.save(vae.state_dict(), tmp_path / checkpoint)
    with pytest.raises(ValueError, match=f"only a pickle checkpoint \\({checkpoint}\\).*safet"):
        load_hdr_vae(tmp_path)


def test_a_standard_autoencoder_kl_directory_is_refused_naming_the_warm_start(tmp_path):
    source = tiny_kl(16)
    source.save_config(tmp_path)
    save_file(source.state_dict(), tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match="AutoencoderKL.*from_autoencoder_kl"):
        load_hdr_vae(tmp_path)

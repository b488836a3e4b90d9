"""VAE Decode (unclamped) on ComfyUI's own VAEs, on the bench under test (0.33.0 and 0.3.75
run it: scripts/test.sh).

ComfyUI 0.33 discards ``process_output``'s return value (it works in place); 0.3.75 uses it.
The node must land on the stock decode bit for bit inside [0, 1] and keep every value outside,
under both conventions, for both VAE families the shipped workflows use: the image VAE
(Flux/SD layout) and the Wan 2.1 video VAE; also on the tiled fallback after an out-of-memory.
"""

from __future__ import annotations

import pytest
import torch

from comfyui_hdr.harness.tiny_models import tiny_wan_vae_state_dict
from comfyui_hdr.nodes.sampling_io import HDRVAEDecodeUnclamped, decode_unclamped

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def image_vae():
    """A Flux-layout image VAE (16 latent channels, SD widths) with random weights, loaded by
    ComfyUI from diffusers' format as VAELoader would."""
    import comfy.sd
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    weights = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            latent_channels=16, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4).state_dict()
    return comfy.sd.VAE(sd=weights)


@pytest.fixture(scope="module")
def wan_vae():
    import comfy.sd

    return comfy.sd.VAE(sd=tiny_wan_vae_state_dict())


def _latent(vae, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 16, 2, 8, 8) if vae.latent_dim == 3 else (1, 16, 8, 8)
    # Three times the unit-variance latent: the random decoder then reaches well outside
    # [-1, 1], as a real VAE does past a log curve's toe and code 1.0.
    return torch.randn(shape, generator=generator) * 3.0


def _check_against_stock(stock: torch.Tensor, unclamped: torch.Tensor) -> None:
    outside = (unclamped < 0.0) | (unclamped > 1.0)
    assert outside.float().mean() > 0.01  # the test reaches past both ends
    assert (unclamped < 0.0).any() and (unclamped > 1.0).any()
    assert torch.equal(unclamped.clamp(0.0, 1.0), stock)  # bit for bit inside [0, 1]


@pytest.mark.parametrize("family", ["image_vae", "wan_vae"])
def test_unclamped_decode_is_the_stock_decode_without_its_clamp(request, family):
    vae = request.getfixturevalue(family)
    latent = _latent(vae, seed=3)
    with torch.inference_mode():
        stock = vae.decode(latent)
        unclamped = decode_unclamped(vae, latent)
    _check_against_stock(stock, unclamped)


def test_the_node_returns_frames_as_the_batch_and_keeps_values(wan_vae):
    latent = _latent(wan_vae, seed=4)
    with torch.inference_mode():
        stock = wan_vae.decode(latent)
        (images,) = HDRVAEDecodeUnclamped().decode({"samples": latent}, wan_vae)
    assert images.shape == (stock.shape[0] * stock.shape[1], *stock.shape[2:])
    _check_against_stock(stock.reshape(images.shape), images)


def test_the_tiled_fallback_after_out_of_memory_keeps_values_too(image_vae, monkeypatch):
    """ComfyUI retries a decode that ran out of memory tile by tile; the mapping is applied
    there through another code path (decode_tiled_), which must be unclamped as well."""
    model = image_vae.first_stage_model
    plain_decode = model.decode
    calls = []

    def out_of_memory_on_the_first_try(z, **kwargs):
        calls.append(tuple(z.shape))
        if len(calls) == 1:  # the batch decode; the tiled retry's decodes succeed
            raise torch.OutOfMemoryError("simulated")
        return plain_decode(z, **kwargs)

    latent = _latent(image_vae, seed=5)
    monkeypatch.setattr(model, "decode", out_of_memory_on_the_first_try)
    with torch.inference_mode():
        stock = image_vae.decode(latent)
        stock_calls, calls[:] = len(calls), []
        unclamped = decode_unclamped(image_vae, latent)
    assert stock_calls > 1 and len(calls) == stock_calls  # both went through the fallback
    _check_against_stock(stock, unclamped)


def test_an_unknown_output_mapping_is_refused_not_guessed(image_vae):
    import copy

    odd = copy.copy(image_vae)
    odd.process_output = lambda image: image.mul_(0.5)
    with pytest.raises(ValueError, match="output mapping"):
        decode_unclamped(odd, _latent(image_vae, seed=6))

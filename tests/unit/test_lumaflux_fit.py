"""LumaFlux's loss (hdr/models/lumaflux_loss.py) and the standalone training loop
(training/lumaflux_fit.py) on a tiny random Flux with every adapter and the head."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxTransformer2DModel
from transformers import SiglipVisionConfig, SiglipVisionModel

from comfyui_hdr.hdr.gamut import convert_gamut
from comfyui_hdr.hdr.models import lumaflux, lumaflux_loss, lumaflux_parts, tone_field
from comfyui_hdr.hdr.transfer import pq_encode, srgb_decode
from comfyui_hdr.training import lumaflux_fit

PATCH = 2  # 8 x 8 SDR images -> a 4 x 4 grid of 12-channel tokens


def test_loss_is_the_posters_weighted_sum_in_linear_light():
    prediction = tone_field.ToneFieldOutput(
        ycbcr=torch.zeros(1, 2, 2, 3), pq_rgb=torch.zeros(1, 2, 2, 3),
        linear=torch.ones(1, 2, 2, 3), derivatives=torch.tensor([1.0, 2.0]).expand(1, 2, 2, 3, 2))
    # target: 2 x reference white (406 nits) in PQ -> linear 2.0 after the EOTF
    target = pq_encode(torch.full((1, 2, 2, 3), 2.0, dtype=torch.float64), nits_at_1=203.0)
    loss = lumaflux_loss.lumaflux_loss(prediction, target.float())
    # |Y 1 - Y 2| = 1 (BT.2020 luminance weights sum to 1), |x 1 - x 2| = 1,
    # L_spline = (2 - 1)^2 / (K - 1 = 1) = 1: total 1.0 * 1 + 0.5 * 1 + 0.01 * 1 = 1.51
    # (float32 PQ round trip of 406 nits: within 1e-5)
    assert float(loss.luminance) == pytest.approx(1.0, abs=1e-5)
    assert float(loss.rgb) == pytest.approx(1.0, abs=1e-5)
    assert float(loss.spline) == 1.0
    assert float(loss.total) == pytest.approx(1.51, abs=2e-5)


def test_loss_refuses_mismatched_or_nan_targets():
    output = tone_field.ToneFieldHead(1)(torch.full((1, 2, 2, 3), 0.5), torch.zeros(1, 2, 2, 1))
    with pytest.raises(ValueError, match=r"target_pq has shape \(1, 4, 4, 3\) .* same size"):
        lumaflux_loss.lumaflux_loss(output, torch.zeros(1, 4, 4, 3))
    with pytest.raises(ValueError, match="target_pq contains NaN"):
        lumaflux_loss.lumaflux_loss(output, torch.full((1, 2, 2, 3), float("nan")))


def test_pixels_pack_into_tokens_and_back():
    image = torch.rand(2, 8, 6, 3, generator=torch.Generator().manual_seed(1))
    tokens = lumaflux_fit.pack_pixels(image, 2)
    assert tokens.shape == (2, 12, 12)
    # features (c, py, px), as diffusers' Flux pipeline packs: token (0, 1)'s first pixel
    # is pixel (0, 2), its channels 4 features apart
    assert torch.equal(tokens[0, 1, ::4], image[0, 0, 2])
    assert torch.equal(lumaflux_fit.unpack_pixels(tokens, 8, 6, 2), image)
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        lumaflux_fit.pack_pixels(image, 4)


def test_schedule_warms_up_then_decays_to_zero_on_a_cosine():
    factors = [lumaflux_fit.cosine_with_warmup(step, 20, 4) for step in range(21)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[12] == pytest.approx(0.5)  # halfway through the 16 decay steps
    assert factors[20] == pytest.approx(0.0, abs=1e-12)


def _pipeline():
    torch.manual_seed(0)
    flux = FluxTransformer2DModel(
        patch_size=1, in_channels=3 * PATCH * PATCH, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
        pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
    encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8)).eval()
    adapters = lumaflux.LumaFluxAdapters(flux, 16).attach(flux)
    generator = torch.Generator().manual_seed(1)
    pipeline = lumaflux_fit.LumaFluxPipeline(
        flux, adapters, tone_field.ToneFieldHead(3), torch.randn(2, 4, 32, generator=generator),
        torch.randn(2, 32, generator=generator), PATCH)
    return pipeline, encoder


def test_tiny_flux_with_every_adapter_trains_20_steps_with_finite_falling_loss():
    pipeline, encoder = _pipeline()
    sdr = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(2))
    # target: the SDR image 2 stops brighter in BT.2020, PQ-encoded (a global expansion)
    target = pq_encode(convert_gamut(srgb_decode(sdr), "rec709", "rec2020") * 4, 203.0)
    frozen = {key: value.clone() for key, value in pipeline.transformer.state_dict().items()}
    tokens = lumaflux_parts.siglip_tokens(encoder, sdr)
    # 1e-3, not the poster's 1e-4: 20 steps on a random tiny model must show the fall
    losses = lumaflux_fit.fit(pipeline, sdr, tokens, target,
                              lumaflux_fit.FitOptions(steps=20, learning_rate=1e-3))
    assert len(losses) == 20 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.95 * losses[0]
    assert sum(losses[-5:]) < sum(losses[:5])
    assert all(torch.equal(frozen[key], value)
               for key, value in pipeline.transformer.state_dict().items())
    assert pipeline.head.projection.weight.abs().max() > 0  # the head left its identity
    assert max(float(lora.up.weight.detach().abs().max())
               for lora in pipeline.adapters.value_lora) > 0  # PGA trained

"""LumaFlux adapters on a tiny random diffusers Flux (hdr/models/lumaflux*.py).

Oracle: the frozen model itself. Attached at their initial values (zero LoRA up, FiLM at
gamma = 1 and zeta = 0, zero coupler) the adapters must leave every output bit unchanged,
whatever the other (random) weights; moved off those values they must change it, and
detaching must restore the frozen output bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxTransformer2DModel
from transformers import SiglipVisionConfig, SiglipVisionModel

from comfyui_hdr.hdr.models import lumaflux
from comfyui_hdr.hdr.models import lumaflux_parts as parts

TOKENS_SIDE = 4  # a 4 x 4 grid of image tokens


def tiny_flux(device) -> FluxTransformer2DModel:
    """Flux with 2 heads x 16, 1 double- and 1 single-stream block (tests/unit/test_widen)."""
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6)).eval().to(device)


def tiny_siglip_config() -> SiglipVisionConfig:
    return SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, image_size=32, patch_size=8)


def flux_inputs(device, batch: int = 2) -> dict:
    generator = torch.Generator().manual_seed(1)
    tokens = TOKENS_SIDE * TOKENS_SIDE
    return dict(hidden_states=torch.randn(batch, tokens, 16, generator=generator).to(device),
                encoder_hidden_states=torch.randn(batch, 4, 32, generator=generator).to(device),
                pooled_projections=torch.randn(batch, 32, generator=generator).to(device),
                timestep=torch.tensor([0.3, 0.8][:batch], device=device),
                img_ids=torch.zeros(tokens, 3, device=device),
                txt_ids=torch.zeros(4, 3, device=device))


def sdr_images(device, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 16, 16, 3, generator=torch.Generator().manual_seed(2)).to(device)


def siglip_tokens(device, sdr) -> torch.Tensor:
    torch.manual_seed(3)
    encoder = SiglipVisionModel(tiny_siglip_config()).eval().to(device)
    return parts.siglip_tokens(encoder, sdr)


def _run(flux, adapters, inputs, sdr, tokens) -> torch.Tensor:
    with torch.no_grad(), adapters.conditioned(sdr, inputs["timestep"], tokens):
        return flux(**inputs).sample


SWITCHES = {
    "pga": lumaflux.LumaFluxSwitches(pcm=False, coupler=False),
    "pga_without_spectral": lumaflux.LumaFluxSwitches(spectral=False, pcm=False, coupler=False),
    "pcm": lumaflux.LumaFluxSwitches(pga=False, coupler=False),
    "coupler": lumaflux.LumaFluxSwitches(pga=False, pcm=False),
    "all": lumaflux.LumaFluxSwitches(),
}


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_adapters_at_init_equal_the_frozen_flux_bit_for_bit(name, device):
    flux, inputs, sdr = tiny_flux(device), flux_inputs(device), sdr_images(device)
    tokens = siglip_tokens(device, sdr)
    with torch.no_grad():
        frozen = flux(**inputs).sample
    torch.manual_seed(4)
    adapters = lumaflux.LumaFluxAdapters(flux, 16, switches=SWITCHES[name]).to(device)
    with torch.no_grad():  # random TLAM and gate weights: the zero parts alone keep identity
        for parameter in (*adapters.tlam.parameters(),
                          *(lora.gate.weight for lora in adapters.value_lora)):
            parameter.normal_()
    adapters.attach(flux)
    assert torch.equal(_run(flux, adapters, inputs, sdr, tokens), frozen)

    with torch.no_grad():
        for parameter in adapters.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    moved = _run(flux, adapters, inputs, sdr, tokens)
    assert (moved - frozen).abs().max() > 1e-3  # the hooks do reach the output
    adapters.detach()
    with torch.no_grad():
        assert torch.equal(flux(**inputs).sample, frozen)


def test_each_hook_point_is_wired_to_its_own_adapter(device):
    """Moving one part's weights changes the output only when that part is switched on."""
    flux, inputs, sdr = tiny_flux(device), flux_inputs(device), sdr_images(device)
    tokens = siglip_tokens(device, sdr)
    with torch.no_grad():
        frozen = flux(**inputs).sample
    parts_of = {"value_lora": "pga", "context_value_lora": "pga", "film": "pcm",
                "coupler": "coupler"}
    for attribute, switch in parts_of.items():
        for on in (True, False):
            switches = lumaflux.LumaFluxSwitches(**{switch: on})
            adapters = lumaflux.LumaFluxAdapters(flux, 16, switches=switches).to(device)
            with torch.no_grad():
                for parameter in getattr(adapters, attribute).parameters():
                    parameter.add_(0.1)
            adapters.attach(flux)
            changed = not torch.equal(_run(flux, adapters, inputs, sdr, tokens), frozen)
            adapters.detach()
            assert changed == on, f"{attribute} with {switch}={on}"


def test_tlam_gives_six_scalars_per_timestep_and_layer(device):
    flux = tiny_flux(device)
    adapters = lumaflux.LumaFluxAdapters(flux, 16).to(device)
    timesteps = torch.tensor([0.0, 0.25, 1.0], device=device)
    layers = len(flux.transformer_blocks) + len(flux.single_transformer_blocks)
    assert adapters.tlam.layer_embedding.num_embeddings == layers == 2
    for layer in range(layers):
        scalars = adapters.tlam(timesteps, layer)
        assert scalars.shape == (3, len(parts.TLAM_SCALARS)) == (3, 6)
        # at init: alpha 1, beta 0, spectral logit 0, lambda 1 for every (t, l)
        assert torch.equal(scalars, torch.tensor([parts.TLAM_START] * 3, device=device))
    with torch.no_grad():
        adapters.tlam.mlp[2].weight.normal_()
    by_layer = torch.stack([adapters.tlam(timesteps, layer) for layer in range(layers)])
    assert by_layer.shape == (layers, 3, 6)
    assert not torch.equal(by_layer[0], by_layer[1])  # layers differ
    assert not torch.equal(by_layer[0, 0], by_layer[0, 1])  # timesteps differ
    with pytest.raises(ValueError, match="layer is 2; TLAM was built for 2 layers"):
        adapters.tlam(timesteps, 2)


def test_physical_features_match_hand_computed_values():
    stripes = torch.zeros(1, 8, 8, 3)
    stripes[:, :, ::2] = 1.0  # vertical white/black stripes at Nyquist, grey = no chroma
    features = parts.physical_features(stripes)[0].tolist()
    # luma mean 0.5 and std 0.5; |d luma/dx| = 1 except the padded last column (7/8);
    # saturation 0 (grey); all energy at fx = 0.5 cycles/pixel: the high band
    assert features == pytest.approx([0.5, 0.5, 7 / 8, 0.0, 0.0, 1.0], abs=1e-6)
    red = parts.physical_features(torch.tensor([1.0, 0.0, 0.0]).expand(1, 4, 4, 3))[0]
    assert red.tolist() == pytest.approx([0.2126, 0.0, 0.0, 1.0, 0.0, 0.0], abs=1e-4)


def test_siglip_folder_missing_or_of_the_wrong_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"SigLIP folder .*nowhere has no config.json .*"
                                         r"SiglipVisionModel saved with save_pretrained"):
        parts.load_siglip(tmp_path / "nowhere")
    torch.manual_seed(5)
    flux = tiny_flux("cpu")
    flux.save_pretrained(tmp_path / "flux")
    with pytest.raises(ValueError, match=r"SigLIP folder .*flux holds a None model, not a "
                                         r"SigLIP vision tower; pass the folder"):
        parts.load_siglip(tmp_path / "flux")
    SiglipVisionModel(tiny_siglip_config()).save_pretrained(tmp_path / "siglip")
    encoder = parts.load_siglip(tmp_path / "siglip")
    assert not encoder.training
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    tokens = parts.siglip_tokens(encoder, sdr_images("cpu"))
    assert tokens.shape == (2, 16, 16)  # (32 / 8)^2 patches x hidden 16


def test_running_outside_conditioned_or_without_tokens_says_what_to_do():
    flux, inputs = tiny_flux("cpu"), flux_inputs("cpu")
    adapters = lumaflux.LumaFluxAdapters(flux, 16).attach(flux)
    with pytest.raises(ValueError, match=r"before any LumaFluxAdapters.conditioned"):
        flux(**inputs)
    with pytest.raises(ValueError, match=r"siglip_tokens is None but PCM or the coupler"):
        with adapters.conditioned(sdr_images("cpu"), inputs["timestep"]):
            pass
    with pytest.raises(ValueError, match=r"sdr has values in .* outside \[0, 1\]"):
        with adapters.conditioned(sdr_images("cpu") * 2, inputs["timestep"], torch.zeros(2)):
            pass
    with pytest.raises(ValueError, match="attached already"):
        adapters.attach(flux)


def test_gradient_checkpointing_gives_the_same_adapter_gradients():
    """Checkpointed blocks re-run (with their hooks) during backward, after the
    conditioned block has exited: the gradients must equal the plain ones."""
    sdr = sdr_images("cpu")
    tokens = siglip_tokens("cpu", sdr)
    gradients = []
    for checkpointing in (False, True):
        flux, inputs = tiny_flux("cpu"), flux_inputs("cpu")
        flux.requires_grad_(False)
        if checkpointing:
            flux.enable_gradient_checkpointing()
            flux.train()
        torch.manual_seed(6)
        adapters = lumaflux.LumaFluxAdapters(flux, 16).attach(flux)
        with adapters.conditioned(sdr, inputs["timestep"], tokens):
            output = flux(**inputs).sample
        output.square().mean().backward()
        gradients.append(torch.cat([parameter.grad.flatten() for parameter in
                                    adapters.parameters() if parameter.grad is not None]))
    assert gradients[0].abs().max() > 0
    # the same float32 operations recomputed: equal up to summation order (1e-6 relative)
    assert torch.allclose(gradients[1], gradients[0], rtol=1e-5, atol=1e-8)


def test_ungated_value_lora_is_a_plain_lora_whatever_the_physical_features():
    torch.manual_seed(30)
    lora = parts.GatedValueLoRA(32, 2, 16, rank=8, gated=False)
    torch.nn.init.normal_(lora.up.weight)
    generator = torch.Generator().manual_seed(31)
    x = torch.randn(2, 5, 32, generator=generator)
    scalars = torch.randn(2, 6, generator=generator)
    plain = x @ lora.down.weight.T @ lora.up.weight.T  # Hu et al. (2022): x A^T B^T
    for physical in (torch.zeros(2, 6), torch.rand(2, 6, generator=generator)):
        torch.testing.assert_close(lora(x, physical, scalars), plain, rtol=0, atol=1e-6)
    gated = parts.GatedValueLoRA(32, 2, 16, rank=8)
    gated.load_state_dict(lora.state_dict())
    assert not torch.allclose(gated(x, torch.rand(2, 6, generator=generator), scalars), plain)

"""Call recipes for ``hdr/models/``: the HDR VAE, its tiling, warm start, widening and CFA.

The HDR VAE runs in float32 only (bf16 and fp16 band smooth HDR gradients), so its
entry points *refuse* half inputs with an error that names the input and the fix
(``pass x_linear.float()``); its building blocks (normalisation, decoder heads, the tiled
decode, the loss) are float32 modules below that check, called only through it or by the
trainer in float32, and take no half inputs (``half="none"``).
"""

from __future__ import annotations

import functools

import torch
from _contract import call, codes, expect, scene
from diffusers import AutoencoderKL, FluxTransformer2DModel, QwenImageTransformer2DModel
from transformers import SiglipVisionConfig, SiglipVisionModel

from comfyui_hdr.hdr.models import (
    cfa,
    checkpoint_dir,
    gmodiff,
    hdr_vae,
    latent_stats,
    lumaflux,
    lumaflux_folder,
    lumaflux_loss,
    lumaflux_parts,
    precision,
    qwen_hdr_vae,
    rqs,
    tiling,
    tone_field,
    warm_start,
    widen,
)

TINY_VAE = dict(block_out_channels=(32, 64), layers_per_block=1,
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2)


def tiny_vae(device, seed: int = 0) -> hdr_vae.HDRAutoencoder:
    torch.manual_seed(seed)
    return hdr_vae.HDRAutoencoder(**TINY_VAE).eval().to(device)


@functools.cache
def _saved_vae(folder) -> str:
    tiny_vae("cpu").save_pretrained(folder)
    return folder


def _planar(device, seed: int = 0) -> torch.Tensor:
    return scene(device, (1, 16, 16, 3), seed=seed).movedim(-1, 1).contiguous()


def _latent(device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(9)
    return torch.randn((1, 32, 8, 8), generator=generator).to(device)


@torch.no_grad()
def _autoencoder(vae, x_linear):
    latent = vae.encode(x_linear).mode()
    return latent, vae.decode(latent), vae.decode_tiled(latent, 3), vae(x_linear)


@torch.no_grad()
def _normalisation(module, scene_linear):
    code = module(scene_linear)
    return code, module.inverse(code)


@torch.no_grad()
def _head(head, latent):
    return head(latent)


@torch.no_grad()
def _decode_tiled(vae, latent):
    return tiling.decode_tiled((vae.display_head, vae.linear_head), latent, 3)


@torch.no_grad()
def _encode_tiled(vae, image):
    return tiling.encode_tiled(vae.input_normalisation, vae.encoder, image, 3)


def _strict_convolution(image, weight):
    with precision.strict_fp32():
        return torch.nn.functional.conv2d(image, weight)


def _loss_inputs(device):
    vae = tiny_vae(device)
    x_linear = _planar(device)
    with torch.no_grad():
        posterior = vae.encode(x_linear)
        output = vae.decode(posterior.mode())
    return output, x_linear, hdr_vae.display_target(x_linear), posterior


def _tiny_qwen(device) -> QwenImageTransformer2DModel:
    torch.manual_seed(0)
    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(4, 6, 6)).to(device)


def _tiny_kl(device) -> AutoencoderKL:
    torch.manual_seed(1)
    return AutoencoderKL(latent_channels=16, **TINY_VAE).eval().to(device)


def _comfy_state_dict(device) -> dict:
    generator = torch.Generator().manual_seed(2)
    weights = {"model.diffusion_model.img_in.weight": (24, 64),
               "model.diffusion_model.img_in.bias": (24,),
               "model.diffusion_model.proj_out.weight": (64, 24),
               "model.diffusion_model.proj_out.bias": (64,)}
    return {key: torch.randn(shape, generator=generator).to(device)
            for key, shape in weights.items()}


def _cfa_inputs(device):
    generator = torch.Generator().manual_seed(0)
    base, over, under = (torch.randn((2, 12, 8), generator=generator).to(device)
                         for _ in range(3))
    m_over, m_under = (torch.rand((2, 12), generator=generator).to(device) for _ in range(2))
    return base, over, under, m_over, m_under, 0.8, 1.2


def tiny_qwen_vae(device, seed: int = 0) -> qwen_hdr_vae.QwenHDRAutoencoder:
    torch.manual_seed(seed)
    return qwen_hdr_vae.QwenHDRAutoencoder(base_dim=8, dim_mult=(1, 2), num_res_blocks=1,
                                           temperal_downsample=(False,)).eval().to(device)


def _stats(device) -> latent_stats.LatentStatistics:
    return latent_stats.latent_statistics([codes(device, (2, 4, 3, 3), seed=7)])


def _latent_format(stats, latent):
    normalised = stats.process_in(latent)
    return normalised, stats.process_out(normalised)


def _stats_values(stats) -> torch.Tensor:
    """Statistics are float64 Python floats: compare them as one tensor."""
    return torch.tensor(stats.mean + stats.std, dtype=torch.float64)


def _accumulate(latent):
    accumulator = latent_stats.LatentStatsAccumulator()
    accumulator.update(latent)
    return accumulator.result()


RECIPES = {
    "models.cfa.check_alpha": lambda d, t: expect(call(cfa.check_alpha, 1.0, "alpha_over"),
                                                  half="none"),
    "models.cfa.cfa_combine": lambda d, t: call(cfa.cfa_combine, *_cfa_inputs(d)),
    "models.cfa.masks_to_token_grid": lambda d, t: call(
        cfa.masks_to_token_grid, codes(d, (5, 32, 32)), (1, 16, 2, 4, 4), (1, 2, 2)),
    "models.gmodiff.gmodiff_inverse_mulaw": lambda d, t: call(
        gmodiff.gmodiff_inverse_mulaw, codes(d) * 2),
    "models.gmodiff.gmodiff_mulaw": lambda d, t: call(gmodiff.gmodiff_mulaw, scene(d)),
    "models.gmodiff.gmodiff_q_max": lambda d, t: call(
        gmodiff.gmodiff_q_max, scene(d, low=-2, high=6), codes(d, seed=2)),
    "models.gmodiff.gmodiff_encode": lambda d, t: call(
        gmodiff.gmodiff_encode, scene(d, low=-2, high=6), codes(d, seed=2), form="exp2"),
    "models.gmodiff.gmodiff_decode": lambda d, t: call(
        gmodiff.gmodiff_decode, codes(d), codes(d, seed=8), 4.0),
    "models.gmodiff.gmodiff_bracket_inputs": lambda d, t: call(
        gmodiff.gmodiff_bracket_inputs, [codes(d, (8, 8, 3)), codes(d, (8, 8, 3), seed=3)],
        [0.0, 2.0]),
    "models.checkpoint_dir.config_sha256": lambda d, t: expect(
        call(checkpoint_dir.config_sha256, _tiny_flux(d)), half="none"),
    "models.checkpoint_dir.check_safetensors_dir": lambda d, t: expect(
        call(checkpoint_dir.check_safetensors_dir, _saved_vae(t / "vae")), half="none"),
    "models.hdr_vae.SceneLinearNormalisation": lambda d, t: expect(
        call(_normalisation, hdr_vae.SceneLinearNormalisation(3, -12.0, 17.0).to(d),
             _planar(d)), half="none"),
    "models.hdr_vae.DecoderHead": lambda d, t: expect(
        call(_head, tiny_vae(d).display_head, _latent(d)), half="none"),
    "models.hdr_vae.HDRAutoencoder": lambda d, t: expect(
        call(_autoencoder, tiny_vae(d), x_linear=_planar(d)), half="refuses",
        refuses=r"x_linear is torch\.(bfloat16|float16); .* pass x_linear\.float\(\)"),
    "models.hdr_vae.display_target": lambda d, t: call(hdr_vae.display_target, _planar(d)),
    "models.hdr_vae.vae_loss": lambda d, t: expect(call(hdr_vae.vae_loss, *_loss_inputs(d)),
                                                   half="none"),
    "models.hdr_vae.load_hdr_vae": lambda d, t: expect(
        call(hdr_vae.load_hdr_vae, _saved_vae(t / "vae")), half="none"),
    "models.latent_stats.LatentStatistics": lambda d, t: call(
        _latent_format, _stats(d), codes(d, (2, 4, 1, 3, 3), seed=8)),
    "models.latent_stats.LatentStatsAccumulator": lambda d, t: expect(
        call(_accumulate, codes(d, (2, 4, 3, 3), seed=9)), compare=_stats_values),
    "models.latent_stats.latent_statistics": lambda d, t: expect(
        call(latent_stats.latent_statistics, [codes(d, (2, 4, 3, 3)), codes(d, (1, 4, 3, 3), 2)]),
        compare=_stats_values),
    "models.latent_stats.measure_latent_stats": lambda d, t: expect(
        call(latent_stats.measure_latent_stats, tiny_vae(d), [_planar(d)]), half="none"),
    "models.qwen_hdr_vae.QwenHDRAutoencoder": lambda d, t: expect(
        call(_autoencoder, tiny_qwen_vae(d), x_linear=_planar(d)), half="refuses",
        refuses=r"x_linear is torch\.(bfloat16|float16); .* pass x_linear\.float\(\)"),
    "models.qwen_hdr_vae.QwenDecoderHead": lambda d, t: expect(
        call(_head, tiny_qwen_vae(d).display_head, _latent(d)), half="none"),
    "models.precision.strict_fp32": lambda d, t: expect(
        call(_strict_convolution, _planar(d), codes(d, (4, 3, 3, 3))), half="none"),
    "models.tiling.encode_tiled": lambda d, t: expect(
        call(_encode_tiled, tiny_vae(d), _planar(d)), half="none"),
    "models.tiling.decode_tiled": lambda d, t: expect(
        call(_decode_tiled, tiny_vae(d), _latent(d)), half="none"),
    "models.warm_start.copy_autoencoder_kl": lambda d, t: expect(
        call(warm_start.copy_autoencoder_kl, _tiny_kl(d), tiny_vae(d)), half="none",
        mutates=("arg1",)),
    "models.widen.widen_columns": lambda d, t: call(
        widen.widen_columns, codes(d, (24, 64)), 16, 4, 32, "copy"),
    "models.widen.widen_rows": lambda d, t: call(
        widen.widen_rows, codes(d, (64, 24)), 16, 4, 32, "copy", True),
    "models.widen.widen_input_projection": lambda d, t: expect(
        call(widen.widen_input_projection, _tiny_qwen(d)), half="none", mutates=("arg0",)),
    "models.widen.widen_state_dict": lambda d, t: call(
        widen.widen_state_dict, _comfy_state_dict(d), "qwen_image"),
}


# --- LumaFlux (hdr/models/rqs.py, tone_field.py, lumaflux_parts.py, lumaflux.py) ----------

def _spline_parameters(device, shape=(2, 16, 16)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return torch.randn((*shape, rqs.PARAMETERS_PER_CURVE), generator=generator).to(device)


def _tone_field(device):
    torch.manual_seed(12)
    head = tone_field.ToneFieldHead(feature_channels=4).to(device)
    torch.nn.init.normal_(head.projection.weight)
    generator = torch.Generator().manual_seed(13)
    return head, torch.randn((1, 8, 8, 4), generator=generator).to(device)


@torch.no_grad()
def _tone_field_output(head, sdr, features):
    return head(sdr, features)


def _tiny_flux(device):
    torch.manual_seed(14)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6)).eval().to(device)


def _tiny_siglip(device):
    torch.manual_seed(15)
    return SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8)).eval().to(device)


@functools.cache
def _saved_siglip(folder) -> str:
    _tiny_siglip("cpu").save_pretrained(folder)
    return folder


@torch.no_grad()
def _flux_with_adapters(flux, adapters, sdr, tokens):
    """The adapters attached, run once conditioned, then detached (the model unchanged)."""
    generator = torch.Generator().manual_seed(16)
    device = sdr.device
    inputs = dict(hidden_states=torch.randn((1, 16, 16), generator=generator).to(device),
                  encoder_hidden_states=torch.randn((1, 4, 32), generator=generator).to(device),
                  pooled_projections=torch.randn((1, 32), generator=generator).to(device),
                  timestep=torch.tensor([0.5], device=device),
                  img_ids=torch.zeros(16, 3, device=device),
                  txt_ids=torch.zeros(4, 3, device=device))
    adapters.attach(flux)
    try:
        with adapters.conditioned(sdr, inputs["timestep"], tokens):
            return flux(**inputs).sample
    finally:
        adapters.detach()


def _moved(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every weight moved off its identity initialisation."""
    torch.manual_seed(17)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return module


def _lumaflux_case(device):
    flux = _tiny_flux(device)
    adapters = _moved(lumaflux.LumaFluxAdapters(flux, 16)).to(device)
    sdr = codes(device, (1, 16, 16, 3))
    return flux, adapters, sdr, lumaflux_parts.siglip_tokens(_tiny_siglip(device), sdr)


def _tokens(device, shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)


@torch.no_grad()
def _tlam(module, timestep):
    return module(timestep, 1)


@torch.no_grad()
def _module_call(module, *inputs):
    return module(*inputs)


def _loss_case(device):
    head, features = _tone_field(device)
    with torch.no_grad():
        prediction = head(codes(device, (1, 8, 8, 3)), features)
    return prediction, codes(device, (1, 8, 8, 3), seed=26)


RECIPES.update({
    # half PQ targets: the loss is computed in the prediction's dtype (float32 here), as
    # the trainer's LoRA/head parameters are (STYLE.md: they train in fp32)
    "models.lumaflux_loss.lumaflux_loss": lambda d, t: expect(
        call(lumaflux_loss.lumaflux_loss, *_loss_case(d)), half_args=("arg1",), dtype="any"),
    "models.rqs.spline_knots": lambda d, t: call(rqs.spline_knots, _spline_parameters(d)),
    "models.rqs.rational_quadratic_spline": lambda d, t: call(
        rqs.rational_quadratic_spline, codes(d, (2, 16, 16)), _spline_parameters(d)),
    "models.rqs.spline_smoothness": lambda d, t: call(
        rqs.spline_smoothness, _spline_parameters(d)[..., :rqs.KNOTS]),
    "models.tone_field.check_sdr": lambda d, t: call(tone_field.check_sdr, codes(d)),
    "models.tone_field.rgb_to_ycbcr2020": lambda d, t: call(tone_field.rgb_to_ycbcr2020,
                                                            codes(d)),
    "models.tone_field.ycbcr2020_to_rgb": lambda d, t: call(
        tone_field.ycbcr2020_to_rgb, tone_field.rgb_to_ycbcr2020(codes(d))),
    "models.tone_field.sdr_to_pq_ycbcr": lambda d, t: call(tone_field.sdr_to_pq_ycbcr,
                                                           codes(d)),
    "models.tone_field.ToneFieldHead": lambda d, t: expect(
        call(_tone_field_output, *_tone_field(d)[:1], codes(d, (1, 8, 8, 3)),
             _tone_field(d)[1]), half="none"),
    "models.lumaflux_parts.physical_features": lambda d, t: call(
        lumaflux_parts.physical_features, codes(d)),
    "models.lumaflux_parts.TimestepLayerModulation": lambda d, t: expect(call(
        _tlam, _moved(lumaflux_parts.TimestepLayerModulation(2)).to(d),
        torch.tensor([0.2, 0.9], device=d)), half="none"),
    "models.lumaflux_parts.GatedValueLoRA": lambda d, t: expect(call(
        _module_call, _moved(lumaflux_parts.GatedValueLoRA(32, 2, 16, 4)).to(d),
        _tokens(d, (2, 5, 32), 18), codes(d, (2, 6)), _tokens(d, (2, 6), 19)), half="none"),
    "models.lumaflux_parts.PerceptualFiLM": lambda d, t: expect(call(
        _module_call, _moved(lumaflux_parts.PerceptualFiLM(32, 16)).to(d),
        _tokens(d, (2, 5, 32), 20), _tokens(d, (2, 3, 16), 21), _tokens(d, (2, 6), 22)),
        half="none"),
    "models.lumaflux_parts.PhysicalPerceptualCoupler": lambda d, t: expect(call(
        _module_call,
        _moved(lumaflux_parts.PhysicalPerceptualCoupler(32, 16)).to(d),
        _tokens(d, (2, 5, 32), 23), codes(d, (2, 6)), _tokens(d, (2, 3, 16), 24),
        _tokens(d, (2, 6), 25)),
        half="none"),
    "models.lumaflux_parts.load_siglip": lambda d, t: expect(
        call(lumaflux_parts.load_siglip, _saved_siglip(t / "siglip")), half="none"),
    "models.lumaflux_parts.siglip_tokens": lambda d, t: expect(
        call(lumaflux_parts.siglip_tokens, _tiny_siglip(d), codes(d, (1, 16, 16, 3))),
        half="none"),
    "models.lumaflux.LumaFluxAdapters": lambda d, t: expect(
        call(_flux_with_adapters, *_lumaflux_case(d)), half="none"),
    "models.lumaflux_folder.save_lumaflux": lambda d, t: expect(
        call(lumaflux_folder.save_lumaflux, t / "lumaflux_saved", *_adapter_set_case(d),
             overwrite=True), half="none"),
    "models.lumaflux_folder.load_lumaflux": lambda d, t: expect(
        call(lumaflux_folder.load_lumaflux, _saved_lumaflux(t / "lumaflux"), _tiny_flux(d),
             _tiny_siglip(d)), half="none"),
})


def _adapter_set_case(device):
    """A tiny Flux and an adapter set with every weight off its identity, on ``device``."""
    flux = _tiny_flux(device)
    adapter_set = lumaflux_folder.LumaFluxAdapterSet(
        _moved(lumaflux.LumaFluxAdapters(flux, 16)).to(device),
        _moved(tone_field.ToneFieldHead(16)).to(device), _tokens(device, (1, 4, 32), 27),
        _tokens(device, (1, 32), 28), patch=2)
    return flux, adapter_set


@functools.cache
def _saved_lumaflux(folder) -> str:
    lumaflux_folder.save_lumaflux(folder, *_adapter_set_case("cpu"))
    return folder

"""CFA Patch on real ComfyUI models: tiny Wan 2.1 t2v and tiny Flux.1 schnell, in-process.

Both models are written as safetensors in ComfyUI's key format (the state dict of
ComfyUI's own ``WanModel`` / ``Flux`` classes, seeded random weights) and loaded with
``comfy.sd.load_diffusion_model``, which is what the UNETLoader node calls, so model
detection, the ModelPatcher and the sampler are ComfyUI's. Every output is one Euler step
of ``comfy.sample.sample_custom`` from sigma 0.9 to 0 (the denoised prediction), cfg 1.

- Wan (ComfyUI detects 1 head x 128 from the weights): dim 128, text width 4096, ffn 256,
  1 block; 0.9 M parameters. Latent [1, 16, 2, 8, 8] = 5 frames of 64x64 pixels,
  2 x 4 x 4 tokens.
- Flux: ComfyUI's detection fixes 24 heads x 128 (width 3072) and MLP ratio 4, so the
  smallest Flux it loads has 1 double and 1 single block: 0.56 G parameters, stored in
  float16 (1.1 GB, computed in float32). Text width 64 and pooled width 32 are read
  from the weights. Latent [1, 16, 8, 8] = 64x64 pixels, 4 x 4 tokens.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import comfy.model_management  # noqa: F401  (after conftest set args.cpu)
import comfy.ops
import comfy.sample
import comfy.samplers
import comfy.sd
import pytest
import torch
from comfy.ldm.wan.model import WanModel
from safetensors.torch import save_file

from comfyui_hdr.harness.tiny_models import comfy_flux
from comfyui_hdr.hdr.masks import ExposureMasks
from comfyui_hdr.nodes._cfa_patch import CFA_KEY, apply_cfa_patch

SIGMA = 0.9
PIXELS = 64
WAN_FRAMES = 5
WAN_LATENT = (1, 16, 2, 8, 8)
FLUX_LATENT = (1, 16, 8, 8)
EQUAL_TO_PROMPT = 1e-5
"""Max abs difference allowed between "full mask, strength 1" and the region prompt's own
run: base + 1 * 1 * (over - base) rounds in float32, outputs are O(1)."""


def _seeded_state_dict(model: torch.nn.Module, seed: int, dtype: torch.dtype) -> dict:
    """Random weights for every tensor of a meta-device model: weights N(0, 1/fan_in),
    biases N(0, 0.02^2), norm scales 1."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, meta in model.state_dict().items():
        if name.endswith(".bias"):
            value = 0.02 * torch.randn(meta.shape, generator=generator)
        elif meta.ndim == 1:
            value = torch.ones(meta.shape)
        else:
            value = torch.randn(meta.shape, generator=generator) / math.sqrt(meta[0].numel())
        tensors[name] = value.to(dtype)
    return tensors


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    skeleton = WanModel(model_type="t2v", dim=128, ffn_dim=256, num_heads=1, num_layers=1,
                        in_dim=16, out_dim=16, text_dim=4096, device="meta",
                        operations=comfy.ops.disable_weight_init)
    path = tmp_path_factory.mktemp("wan") / "tiny_wan21_t2v.safetensors"
    save_file(_seeded_state_dict(skeleton, 21, torch.float32), str(path))
    return comfy.sd.load_diffusion_model(str(path))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    skeleton = comfy_flux(device="meta", operations=comfy.ops.disable_weight_init,
                          in_channels=16,
                    out_channels=16, vec_in_dim=32, context_in_dim=64, hidden_size=3072,
                    mlp_ratio=4.0, num_heads=24, depth=1, depth_single_blocks=1,
                    axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True,
                    guidance_embed=False)
    path = tmp_path_factory.mktemp("flux") / "tiny_flux1_schnell.safetensors"
    save_file(_seeded_state_dict(skeleton, 1, torch.float16), str(path))
    return comfy.sd.load_diffusion_model(str(path))


def _prompt(seed: int, tokens: int, width: int, pooled: torch.Tensor | None = None) -> list:
    embedding = torch.randn((1, tokens, width), generator=torch.Generator().manual_seed(seed))
    extras = {} if pooled is None else {"pooled_output": pooled}
    return [[embedding, extras]]


def _denoise(model, positive: list, latent_shape: tuple) -> torch.Tensor:
    noise = torch.randn(latent_shape, generator=torch.Generator().manual_seed(7))
    sampler = comfy.samplers.sampler_object("euler")
    return comfy.sample.sample_custom(model, noise, 1.0, sampler, torch.tensor([SIGMA, 0.0]),
                                      positive, positive, torch.zeros(latent_shape),
                                      disable_pbar=True, seed=7)


def _masks(frames: int, over: tuple | None, under: tuple | None = None) -> ExposureMasks:
    """Pixel masks with ones in ``[rows, columns]`` slices (None: empty)."""
    planes = []
    for region in (over, under):
        plane = torch.zeros(frames, PIXELS, PIXELS)
        if region is not None:
            plane[:, region[0], region[1]] = 1.0
        planes.append(plane)
    return ExposureMasks(over=planes[0], under=planes[1])


EVERYWHERE = (slice(None), slice(None))
LEFT_HALF = (slice(None), slice(0, PIXELS // 2))
BOTTOM_RIGHT = (slice(PIXELS // 2, None), slice(PIXELS // 2, None))


def _latent_region(output: torch.Tensor, region: tuple) -> torch.Tensor:
    """The latent pixels (8x fewer than image pixels) under a pixel-mask region."""
    rows, columns = (slice(None if s.start is None else s.start // 8,
                           None if s.stop is None else s.stop // 8) for s in region)
    return output[..., rows, columns]


@pytest.fixture(scope="module")
def wan_prompts():
    # Wan cross-attention takes prompts of any length: 6, 5 and 7 tokens.
    return {"base": _prompt(1, 6, 4096), "over": _prompt(2, 5, 4096),
            "under": _prompt(3, 7, 4096)}


@pytest.fixture(scope="module")
def wan_runs(wan, wan_prompts):
    return {name: _denoise(wan, prompt, WAN_LATENT) for name, prompt in wan_prompts.items()}


def _wan_cfa(wan, prompts, masks, alpha_over=1.0, alpha_under=1.0):
    patched = apply_cfa_patch(wan, prompts["over"], prompts["under"], masks, alpha_over,
                              alpha_under)
    return _denoise(patched, prompts["base"], WAN_LATENT)


def test_wan_strength_zero_or_empty_masks_sample_bit_for_bit_like_the_unpatched_model(
        wan, wan_prompts, wan_runs):
    half = _masks(WAN_FRAMES, LEFT_HALF, BOTTOM_RIGHT)
    assert torch.equal(_wan_cfa(wan, wan_prompts, half, 0.0, 0.0), wan_runs["base"])
    assert torch.equal(_wan_cfa(wan, wan_prompts, _masks(WAN_FRAMES, None)), wan_runs["base"])


def test_wan_full_over_mask_at_strength_1_equals_the_over_prompt(wan, wan_prompts, wan_runs):
    routed = _wan_cfa(wan, wan_prompts, _masks(WAN_FRAMES, EVERYWHERE), 1.0, 0.0)
    assert (routed - wan_runs["over"]).abs().max() <= EQUAL_TO_PROMPT
    # The prompts really differ: the over prompt moves the output by O(0.1).
    assert (wan_runs["over"] - wan_runs["base"]).abs().mean() > 0.05


def test_wan_routes_each_prompt_to_its_own_region_only(wan, wan_prompts, wan_runs):
    masks = _masks(WAN_FRAMES, LEFT_HALF, BOTTOM_RIGHT)
    routed = _wan_cfa(wan, wan_prompts, masks)
    # One Wan block: self-attention runs before the routed cross-attention and the rest is
    # per token, so every token sees exactly its region's prompt.
    for region, prompt in ((LEFT_HALF, "over"), (BOTTOM_RIGHT, "under")):
        inside = _latent_region(routed, region) - _latent_region(wan_runs[prompt], region)
        assert inside.abs().max() <= EQUAL_TO_PROMPT
    outside = routed[..., :4, 4:]  # top-right latent quadrant: in neither mask
    assert torch.equal(outside, wan_runs["base"][..., :4, 4:])
    moved_inside = (_latent_region(routed, LEFT_HALF)
                    - _latent_region(wan_runs["base"], LEFT_HALF)).abs().mean()
    assert moved_inside > 0.05


@pytest.mark.parametrize("alpha", [3.0, 5.0])
def test_wan_strengths_up_to_5_leave_tokens_outside_the_masks_untouched(wan, wan_prompts,
                                                                        wan_runs, alpha):
    # DiffHDR's paper tests strengths 1, 3 and 5.
    masks = _masks(WAN_FRAMES, LEFT_HALF, BOTTOM_RIGHT)
    routed = _wan_cfa(wan, wan_prompts, masks, alpha, alpha)
    assert torch.isfinite(routed).all()
    outside = routed[..., :4, 4:]  # top-right latent quadrant: in neither mask
    assert torch.equal(outside, wan_runs["base"][..., :4, 4:])
    # Inside, the strength pushes past the region's prompt: further from it than strength 1.
    at_1 = _wan_cfa(wan, wan_prompts, masks)
    for region, prompt in ((LEFT_HALF, "over"), (BOTTOM_RIGHT, "under")):
        pushed = (_latent_region(routed, region) - _latent_region(wan_runs[prompt], region))
        assert pushed.abs().mean() > 0.05
        assert (_latent_region(routed, region) - _latent_region(at_1, region)).abs().mean() \
            > 0.05


def test_wan_overlapping_masks_split_the_token_between_both_prompts(wan, wan_prompts):
    overlapping = _wan_cfa(wan, wan_prompts, _masks(WAN_FRAMES, EVERYWHERE, EVERYWHERE))
    # Each mask is divided by max(m_over + m_under, 1) = 2: the same as two half masks.
    halves = ExposureMasks(over=torch.full((WAN_FRAMES, PIXELS, PIXELS), 0.5),
                           under=torch.full((WAN_FRAMES, PIXELS, PIXELS), 0.5))
    assert (overlapping - _wan_cfa(wan, wan_prompts, halves)).abs().max() <= EQUAL_TO_PROMPT


def test_wan_cfa_stacks_on_a_lora_loaded_by_comfyui(wan, wan_prompts, wan_runs):
    generator = torch.Generator().manual_seed(5)
    lora = {"diffusion_model.blocks.0.cross_attn.k.lora_up.weight":
            torch.randn((128, 4), generator=generator),
            "diffusion_model.blocks.0.cross_attn.k.lora_down.weight":
            torch.randn((4, 128), generator=generator) / 4}
    with_lora, _ = comfy.sd.load_lora_for_models(wan, None, lora, 1.0, 0.0)
    lora_over = _denoise(with_lora, wan_prompts["over"], WAN_LATENT)
    assert (lora_over - wan_runs["over"]).abs().mean() > 0.01  # the LoRA acts
    routed = _wan_cfa(with_lora, wan_prompts, _masks(WAN_FRAMES, EVERYWHERE), 1.0, 0.0)
    assert (routed - lora_over).abs().max() <= EQUAL_TO_PROMPT


def test_wan_routes_the_target_beside_a_reference_clip_concatenated_in_time(
        wan, wan_prompts, wan_runs):
    # In-context conditioning ("HDR Reference (in-context)", train-lora's reference mode):
    # WAN21 hands ``time_dim_concat`` to the model, whose tokens follow the target's.
    reference = torch.randn((1, 16, 1, 8, 8), generator=torch.Generator().manual_seed(4))
    with_reference = {name: [[prompt[0][0], {"time_dim_concat": reference}]]
                      for name, prompt in wan_prompts.items()}
    runs = {name: _denoise(wan, prompt, WAN_LATENT) for name, prompt in with_reference.items()}
    assert (runs["base"] - wan_runs["base"]).abs().mean() > 0.01  # the reference acts
    masks = _masks(WAN_FRAMES, LEFT_HALF, BOTTOM_RIGHT)
    patched = apply_cfa_patch(wan, with_reference["over"], with_reference["under"], masks,
                              1.0, 1.0)
    routed = _denoise(patched, with_reference["base"], WAN_LATENT)
    assert torch.equal(routed[..., :4, 4:], runs["base"][..., :4, 4:])  # in neither mask
    for region, prompt in ((LEFT_HALF, "over"), (BOTTOM_RIGHT, "under")):
        inside = _latent_region(routed, region) - _latent_region(runs[prompt], region)
        assert inside.abs().max() <= EQUAL_TO_PROMPT
    full = apply_cfa_patch(wan, with_reference["over"], None, _masks(WAN_FRAMES, EVERYWHERE),
                           1.0, 0.0)
    assert (_denoise(full, with_reference["base"], WAN_LATENT)
            - runs["over"]).abs().max() <= EQUAL_TO_PROMPT


def test_wan_patch_installs_comfyui_object_patches_and_a_wrapper(wan, wan_prompts):
    patched = apply_cfa_patch(wan, wan_prompts["over"], None, _masks(WAN_FRAMES, LEFT_HALF),
                              1.0, 0.0)
    assert list(patched.object_patches) == ["diffusion_model.blocks.0.cross_attn.forward"]
    assert CFA_KEY in patched.wrappers["diffusion_model"]
    assert wan.object_patches == {} and wan.wrappers == {}  # the input model is untouched
    again = apply_cfa_patch(patched, wan_prompts["over"], None, _masks(WAN_FRAMES, LEFT_HALF),
                            1.0, 0.0)
    assert len(again.wrappers["diffusion_model"][CFA_KEY]) == 1  # replaced, not stacked
    assert torch.equal(_denoise(again, wan_prompts["base"], WAN_LATENT),
                       _denoise(patched, wan_prompts["base"], WAN_LATENT))


def test_wan_masks_of_another_clip_length_fail_naming_both_shapes(wan, wan_prompts):
    patched = apply_cfa_patch(wan, wan_prompts["over"], None, _masks(9, LEFT_HALF), 1.0, 0.0)
    with pytest.raises(ValueError, match=r"9 frames \(3 latent frames.*\(1, 16, 2, 8, 8\)"):
        _denoise(patched, wan_prompts["base"], WAN_LATENT)


def test_bad_patch_inputs_raise_value_errors_naming_the_input(wan, wan_prompts):
    masks = _masks(WAN_FRAMES, LEFT_HALF)
    with pytest.raises(ValueError, match="alpha_over must be in"):
        apply_cfa_patch(wan, wan_prompts["over"], None, masks, 5.5, 0.0)
    with pytest.raises(ValueError, match="alpha_under must be in"):
        apply_cfa_patch(wan, wan_prompts["over"], None, masks, 1.0, -0.1)
    with pytest.raises(ValueError, match="over_cond has 768-wide text tokens"):
        apply_cfa_patch(wan, _prompt(2, 5, 768), None, masks, 1.0, 0.0)
    with pytest.raises(ValueError, match="under_cond holds 2 conditionings"):
        apply_cfa_patch(wan, None, wan_prompts["under"] * 2, masks, 1.0, 1.0)
    with pytest.raises(ValueError, match="masks must be EXPOSURE_MASKS"):
        apply_cfa_patch(wan, wan_prompts["over"], None, masks.over, 1.0, 0.0)
    other = SimpleNamespace(model=SimpleNamespace(diffusion_model=torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"supports Wan 2\.1.* and Flux\.1.*Linear"):
        apply_cfa_patch(other, wan_prompts["over"], None, masks, 1.0, 0.0)


@pytest.fixture(scope="module")
def flux_prompts():
    pooled = torch.randn((1, 32), generator=torch.Generator().manual_seed(9))
    return {name: _prompt(seed, 8, 64, pooled) for name, seed in
            (("base", 11), ("over", 12), ("under", 13))}


@pytest.fixture(scope="module")
def flux_runs(flux, flux_prompts):
    return {name: _denoise(flux, flux_prompts[name], FLUX_LATENT) for name in ("base", "over")}


def _flux_cfa(flux, prompts, masks, alpha_over=1.0, alpha_under=0.0):
    patched = apply_cfa_patch(flux, prompts["over"], prompts["under"], masks, alpha_over,
                              alpha_under)
    return _denoise(patched, prompts["base"], FLUX_LATENT)


def test_flux_strength_zero_or_empty_masks_sample_bit_for_bit_like_the_unpatched_model(
        flux, flux_prompts, flux_runs):
    assert torch.equal(_flux_cfa(flux, flux_prompts, _masks(1, LEFT_HALF), 0.0),
                       flux_runs["base"])
    assert torch.equal(_flux_cfa(flux, flux_prompts, _masks(1, None)), flux_runs["base"])


def test_flux_full_over_mask_at_strength_1_equals_the_over_prompt(flux, flux_prompts,
                                                                  flux_runs):
    # The over prompt shares the base prompt's pooled vector: only text tokens are routed.
    routed = _flux_cfa(flux, flux_prompts, _masks(1, EVERYWHERE))
    assert (routed - flux_runs["over"]).abs().max() <= EQUAL_TO_PROMPT
    assert (flux_runs["over"] - flux_runs["base"]).abs().mean() > 0.01


def test_flux_over_prompt_moves_the_masked_half_ten_times_more_than_the_rest(
        flux, flux_prompts, flux_runs):
    routed = _flux_cfa(flux, flux_prompts, _masks(1, LEFT_HALF))
    moved = (routed - flux_runs["base"]).abs()
    inside, outside = moved[..., :4].mean(), moved[..., 4:].mean()
    # Outside tokens change only through the single block's joint attention to the
    # routed image tokens (second order); inside tokens carry the routed text directly.
    assert inside >= 10 * outside
    towards = (routed - flux_runs["over"])[..., :4].abs().mean()
    assert towards <= 0.1 * (flux_runs["over"] - flux_runs["base"])[..., :4].abs().mean()


def test_flux_chains_an_existing_attention_override(flux, flux_prompts, flux_runs):
    calls = []

    def counting_override(func, *args, **kwargs):
        calls.append(args[0].shape[0])
        return func(*args, **kwargs)

    with_override = flux.clone()
    with_override.model_options["transformer_options"]["optimized_attention_override"] = (
        counting_override)
    routed = _flux_cfa(with_override, flux_prompts, _masks(1, EVERYWHERE))
    assert calls == [2, 2]  # one double and one single block, base and over copies stacked
    assert (routed - flux_runs["over"]).abs().max() <= EQUAL_TO_PROMPT


def test_flux_prompts_of_different_token_counts_fail_naming_both(flux, flux_prompts):
    short_over = _prompt(12, 5, 64, flux_prompts["over"][0][1]["pooled_output"])
    patched = apply_cfa_patch(flux, short_over, None, _masks(1, LEFT_HALF), 1.0, 0.0)
    with pytest.raises(ValueError, match="over prompt has 5 text tokens and the base prompt 8"):
        _denoise(patched, flux_prompts["base"], FLUX_LATENT)

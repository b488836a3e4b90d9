"""A ``train-lora`` LoRA applied by ComfyUI's own loader changes the output as peft does.

Wan: a tiny diffusers ``WanTransformer3DModel`` (1 head x 128, text width 4096, ffn 256,
1 block: the smallest ComfyUI detects, 0.9 M parameters) gets a rank-4 LoRA from
``train-lora`` (3 steps on procedural scenes, learning rate 0.05 so the LoRA is far from
zero). Its state dict, renamed to ComfyUI's keys (COMFYUI_HARNESS.md's list), is loaded
with ``comfy.sd.load_diffusion_model`` (what UNETLoader calls; ComfyUI detects WAN21),
and the exported ``comfyui_lora.safetensors`` with ``comfy.sd.load_lora_for_models``
(what LoraLoaderModelOnly calls). Both frameworks then predict the velocity of one latent:
ComfyUI through ``apply_model`` at sigma (its Wan model sampling feeds the transformer
``sigma * 1000``; the denoised output ``x - sigma * v`` gives back ``v``), diffusers
through peft's ``PeftModel`` at timestep ``sigma * 1000``.

Flux: ComfyUI's smallest detectable Flux is 0.56 G parameters, so the Flux export is
checked against ComfyUI's own key map (``comfy.utils.flux_to_diffusers``, as
``model_lora_keys_unet`` builds it) and patch maths (``comfy.lora.load_lora`` +
``comfy.lora.calculate_weight``) on the fused weights of a width-128 Flux instead.
"""

from __future__ import annotations

import contextlib
import io
import logging

import comfy.lora
import comfy.model_management
import comfy.sd
import comfy.utils
import pytest
import torch
from diffusers import AutoencoderKLWan, FluxTransformer2DModel, WanTransformer3DModel
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from comfyui_hdr.harness.tiny_models import flux_comfyui_state_dict
from comfyui_hdr.training.lora import (
    PromptEmbeddings,
    discover_targets,
    load_adapter,
    main,
    predict_velocity,
)
from comfyui_hdr.training.lora_export import (
    check_lora_against,
    comfyui_lora_state_dict,
    wan_diffusers_to_comfyui,
)

SIGMA = 0.7
SAME_AS_DIFFUSERS = 1e-4
"""Max |velocity difference| between ComfyUI and diffusers (the issue's bound). Measured
3.2e-6 with and without the LoRA: float32 rounding of two attention implementations on
O(1) outputs."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan_lora")
    torch.manual_seed(0)
    WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=128,
                          in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
                          ffn_dim=256, num_layers=1).save_pretrained(folder / "wan")
    AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).save_pretrained(folder / "vae")
    PromptEmbeddings.random([""], 8, 4096).save(folder / "text.safetensors")
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--model", str(folder / "wan"), "--vae", str(folder / "vae"),
                     "--prompt-embeddings", str(folder / "text.safetensors"),
                     "--output", str(folder / "lora"), "--scenes", "4", "--size", "64",
                     "--rank", "4", "--steps", "3", "--learning-rate", "0.05"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def comfy_wan(trained):
    diffusers_state = WanTransformer3DModel.from_pretrained(trained / "wan").state_dict()
    path = trained / "tiny_wan21_t2v_comfyui.safetensors"
    save_file({wan_diffusers_to_comfyui(key): value for key, value in diffusers_state.items()},
              str(path))
    return comfy.sd.load_diffusion_model(str(path))


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(3)
    return (torch.randn(1, 16, 1, 8, 8, generator=generator),
            torch.randn(1, 8, 4096, generator=generator))


def comfy_velocity(patcher, latent, text):
    comfy.model_management.load_models_gpu([patcher])
    with torch.no_grad():
        denoised = patcher.model.apply_model(latent, torch.tensor([SIGMA]), c_crossattn=text)
    return (latent - denoised) / SIGMA


def diffusers_velocity(model, latent, text):
    with torch.no_grad():
        return predict_velocity(model, "wan", latent, torch.tensor([SIGMA]), text)


def test_the_base_model_predicts_the_same_velocity_in_both(trained, comfy_wan, inputs):
    assert type(comfy_wan.model).__name__ == "WAN21"
    base = WanTransformer3DModel.from_pretrained(trained / "wan")
    difference = comfy_velocity(comfy_wan, *inputs) - diffusers_velocity(base, *inputs)
    assert difference.abs().max() <= SAME_AS_DIFFUSERS


def test_comfyui_applies_the_exported_lora_as_peft_does(trained, comfy_wan, inputs, caplog):
    lora = load_file(str(trained / "lora" / "comfyui_lora.safetensors"))
    with caplog.at_level(logging.WARNING):
        with_lora, _ = comfy.sd.load_lora_for_models(comfy_wan, None, lora, 1.0, 0.0)
    assert not [record for record in caplog.records if "lora key not loaded" in
                record.getMessage() or "NOT LOADED" in record.getMessage()]
    assert len(with_lora.patches) == 8  # q, k, v, o of self- and cross-attention
    peft = load_adapter(WanTransformer3DModel.from_pretrained(trained / "wan"),
                        trained / "lora")
    in_comfyui, in_diffusers = comfy_velocity(with_lora, *inputs), diffusers_velocity(peft,
                                                                                      *inputs)
    assert (in_comfyui - in_diffusers).abs().max() <= SAME_AS_DIFFUSERS
    with peft.disable_adapter():
        base = diffusers_velocity(peft, *inputs)
    assert (in_diffusers - base).abs().mean() > 100 * SAME_AS_DIFFUSERS  # the LoRA acts


@pytest.mark.parametrize("weight_dtype", ["bf16", "fp8"])
def test_a_lora_trained_on_a_bf16_or_fp8_base_loads_in_comfyui(trained, comfy_wan, inputs,
                                                               weight_dtype, caplog):
    # The base is stored in bf16 / float8 while training; the LoRA itself trains in fp32 and
    # is exported the same way, so ComfyUI applies it to the fp32 base as peft does.
    output = trained / f"lora_{weight_dtype}"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["--model", str(trained / "wan"), "--vae", str(trained / "vae"),
                     "--prompt-embeddings", str(trained / "text.safetensors"),
                     "--output", str(output), "--scenes", "4", "--size", "64", "--rank", "4",
                     "--steps", "3", "--learning-rate", "0.05", "--weight-dtype", weight_dtype])
    assert code == 0
    lora = load_file(str(output / "comfyui_lora.safetensors"))
    assert {tensor.dtype for tensor in lora.values()} == {torch.float32}
    with caplog.at_level(logging.WARNING):
        with_lora, _ = comfy.sd.load_lora_for_models(comfy_wan, None, lora, 1.0, 0.0)
    assert not [record for record in caplog.records if "lora key not loaded" in
                record.getMessage() or "NOT LOADED" in record.getMessage()]
    assert len(with_lora.patches) == 8
    peft = load_adapter(WanTransformer3DModel.from_pretrained(trained / "wan"), output)
    in_comfyui, in_diffusers = comfy_velocity(with_lora, *inputs), diffusers_velocity(peft,
                                                                                      *inputs)
    assert (in_comfyui - in_diffusers).abs().max() <= SAME_AS_DIFFUSERS
    with peft.disable_adapter():
        base = diffusers_velocity(peft, *inputs)
    assert (in_diffusers - base).abs().mean() > 100 * SAME_AS_DIFFUSERS  # the LoRA acts


def test_the_lora_fits_the_comfyui_state_dict_and_a_flux_lora_does_not(trained, comfy_wan):
    lora = load_file(str(trained / "lora" / "comfyui_lora.safetensors"))
    model_state = comfy_wan.model.state_dict()  # keys "diffusion_model.blocks.0..."
    patched = check_lora_against(lora, model_state)
    assert sorted(patched) == sorted(f"blocks.0.{attention}.{projection}.weight"
                                     for attention in ("self_attn", "cross_attn")
                                     for projection in "qkvo")
    flux_lora = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 128),
                 "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(128, 4)}
    with pytest.raises(ValueError, match=r"1 unexpected .*transformer_blocks\.0\.attn\.to_q"):
        check_lora_against(flux_lora, model_state)


def flux_comfyui_weights(state: dict, config: dict) -> dict:
    return flux_comfyui_state_dict(state, **config)


def test_flux_export_patches_comfyuis_fused_weights_as_peft_merges_them():
    torch.manual_seed(0)
    flux = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1,
                                  num_single_layers=1, attention_head_dim=64,
                                  num_attention_heads=2, joint_attention_dim=32,
                                  pooled_projection_dim=32, axes_dims_rope=(16, 24, 24))
    base_state = {key: value.clone() for key, value in flux.state_dict().items()}
    peft = get_peft_model(flux, LoraConfig(r=4, lora_alpha=8,
                                           target_modules=discover_targets(flux, "flux")))
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    lora = comfyui_lora_state_dict(get_peft_model_state_dict(peft), "flux",
                                   peft.peft_config["default"].to_dict())
    merged_state = peft.merge_and_unload().state_dict()
    config = {"depth": 1, "depth_single_blocks": 1, "hidden_size": 128}
    # comfy.lora.model_lora_keys_unet's Flux branch: "transformer.<diffusers name>".
    key_map = {f"transformer.{key[:-len('.weight')]}": target for key, target in
               comfy.utils.flux_to_diffusers(config, output_prefix="diffusion_model.").items()
               if key.endswith(".weight")}
    patches = comfy.lora.load_lora(lora, key_map)
    assert len(patches) == 11  # every LoRA layer found a ComfyUI weight
    patched = flux_comfyui_weights(base_state, config)
    for target, adapter in patches.items():
        key, offset = target if isinstance(target, tuple) else (target, None)
        name = key.removeprefix("diffusion_model.")
        patched[name] = comfy.lora.calculate_weight([(1.0, adapter, 1.0, offset, None)],
                                                    patched[name], name)
    expected, base = (flux_comfyui_weights(state, config) for state in (merged_state,
                                                                         base_state))
    # Both add scale * (B @ A) in float32 to O(0.1) weights: rounding, at most a few ulp.
    assert max((patched[key] - expected[key]).abs().max() for key in expected) <= 1e-6
    assert max((patched[key] - base[key]).abs().max() for key in expected) > 1e-2

"""Load HDR Diffusion Model in-process: widened DiTs become first-class 32-channel ComfyUI models.

The oracle is the 16-channel original in ComfyUI's own hands. Tiny Wan 2.1 (1 head x 128,
0.9 M parameters) is small enough for ComfyUI's detection, so its original is loaded by
``comfy.sd.load_diffusion_model`` (what UNETLoader calls). ComfyUI's detection fixes the
width of Qwen-Image and Flux at 3072, so their tiny originals (2 heads x 32) are built the
way that loader builds a detected model: ComfyUI's stock config class (``QwenImage``,
``Flux``) with the dimensions written out, ``get_model`` and ``load_model_weights``.
Copy-mode widening must reproduce the original's prediction on ``[z, z]``.
"""

from __future__ import annotations

import json

import comfy.model_management  # noqa: F401  (after conftest set args.cpu)
import comfy.ops
import comfy.sample
import comfy.sd
import comfy.supported_models
import pytest
import torch
from comfy import model_detection
from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
from safetensors.torch import save_file

from comfyui_hdr.harness.tiny_models import (
    TINY_QWEN_IMAGE,
    comfy_flux,
    flux_params,
    seeded_state_dict,
    tiny_qwen_image_state_dict,
    tiny_wan_state_dict,
    write_widened_model,
)
from comfyui_hdr.nodes import _hdr_model
from comfyui_hdr.nodes._hdr_model import ModelCard, hdr_model_config, load_hdr_diffusion_model

SIGMA = torch.tensor([0.6])
EQUAL_AT_INIT = 1e-5
"""Copy mode halves the duplicated input columns: the same products summed in another
order, float32 rounding on O(1) outputs (the unit tests measure <= 6e-7 in diffusers)."""
TINY_FLUX = {"in_channels": 16, "out_channels": 16, "vec_in_dim": 32, "context_in_dim": 32,
             "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 1,
             "depth_single_blocks": 1, "axes_dim": [4, 14, 14], "theta": 10000,
             "patch_size": 2, "qkv_bias": True, "guidance_embed": False}


def _noise(*shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _stock(config_class, unet_config: dict, state_dict: dict):
    """A model built as comfy.sd.load_diffusion_model_state_dict builds a detected one."""
    config = config_class(unet_config)
    config.set_inference_dtype(torch.float32, None)
    return config.get_model(state_dict, "").load_model_weights(dict(state_dict), "")


def _tiny_flux_state_dict(seed: int = 41) -> dict:
    skeleton = comfy_flux(device="meta", operations=comfy.ops.disable_weight_init, **TINY_FLUX)
    return seeded_state_dict(skeleton, seed, torch.float32)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """Per family: (16-channel original model, widened model loaded by our loader, latent
    shape of the original, extra conditioning)."""
    folder = tmp_path_factory.mktemp("diffusion_models")
    wan = tiny_wan_state_dict()
    save_file(wan, str(folder / "wan16.safetensors"))
    qwen, flux = tiny_qwen_image_state_dict(), _tiny_flux_state_dict()
    write_widened_model(folder / "wan32.safetensors", wan, "wan")
    write_widened_model(folder / "qwen32.safetensors", qwen, "qwen_image",
                        axes_dims_rope=list(TINY_QWEN_IMAGE["axes_dims_rope"]))
    write_widened_model(folder / "flux32.safetensors", flux, "flux", num_heads=2,
                        axes_dim=TINY_FLUX["axes_dim"])
    return {
        "wan": (comfy.sd.load_diffusion_model(str(folder / "wan16.safetensors")).model,
                load_hdr_diffusion_model(folder / "wan32.safetensors").model,
                (1, 16, 1, 8, 8), {"c_crossattn": _noise(1, 6, 4096, seed=1)}),
        "qwen_image": (_stock(comfy.supported_models.QwenImage,
                              {"image_model": "qwen_image", **TINY_QWEN_IMAGE}, qwen),
                       load_hdr_diffusion_model(folder / "qwen32.safetensors").model,
                       (1, 16, 1, 8, 8), {"c_crossattn": _noise(1, 6, 32, seed=2)}),
        "flux": (_stock(comfy.supported_models.FluxSchnell,
                        flux_params(image_model="flux", **TINY_FLUX), flux),
                 load_hdr_diffusion_model(folder / "flux32.safetensors").model,
                 (1, 16, 8, 8), {"c_crossattn": _noise(1, 6, 32, seed=3),
                                 "y": _noise(1, 32, seed=4)}),
        "folder": folder,
    }


@pytest.mark.parametrize("family", ["wan", "qwen_image", "flux"])
def test_widened_model_fed_z_z_predicts_what_the_16_channel_original_predicts(families,
                                                                              family):
    original, widened, shape, conditioning = families[family]
    z = _noise(*shape, seed=5)
    with torch.no_grad():
        expected = original.apply_model(z, SIGMA, **conditioning)
        predicted = widened.apply_model(torch.cat([z, z], dim=1), SIGMA, **conditioning)
    assert predicted.shape[1] == 32 and widened.get_dtype() == torch.float32
    assert (predicted[:, :16] - expected).abs().max().item() <= EQUAL_AT_INIT
    # The copied output rows predict the same for the mirrored channels.
    assert (predicted[:, 16:] - predicted[:, :16]).abs().max().item() <= EQUAL_AT_INIT


class _Patcher:
    """The one ModelPatcher method ``comfy.sample.fix_empty_latent_channels`` calls."""

    def __init__(self, model):
        self.model = model

    def get_model_object(self, name):
        return getattr(self.model, name)


@pytest.mark.parametrize(("family", "stock", "dimensions"), [
    ("wan", comfy.supported_models.WAN21_T2V, 3),
    ("qwen_image", comfy.supported_models.QwenImage, 3),
    ("flux", comfy.supported_models.Flux, 2),
])
def test_widened_model_is_comfyui_s_own_config_class_with_a_32_channel_latent_format(
        families, family, stock, dimensions):
    _, widened, _, _ = families[family]
    assert isinstance(widened.model_config, stock)
    assert type(widened.model_config).__name__ == f"HDR{stock.__name__}"
    latent = widened.latent_format
    assert (type(latent).__name__, latent.latent_channels, latent.latent_dimensions) == (
        "HDRVAE32", 32, dimensions)
    assert (latent.scale_factor, latent.shift_factor) == (1.0, 0.0)
    # The sampler widens an all-zero 4-channel empty latent (stock Empty Latent Image) to
    # the model's 32 channels, video-shaped where the family is.
    empty = comfy.sample.fix_empty_latent_channels(_Patcher(widened), torch.zeros(1, 4, 8, 8))
    assert empty.shape[1] == 32 and empty.ndim == 2 + dimensions


def test_comfyui_detection_takes_a_widened_wan_for_a_16_channel_model(families):
    # What the stock Load Diffusion Model does with the same file: WAN21_T2V with the
    # 16-channel Wan 2.1 latent format, so samplers and VAEs would expect 16 channels.
    from comfy.utils import load_torch_file

    state_dict = load_torch_file(str(families["folder"] / "wan32.safetensors"))
    detected = model_detection.model_config_from_unet(state_dict, "")
    assert type(detected) is comfy.supported_models.WAN21_T2V
    assert detected.latent_format.latent_channels == 16
    ours = hdr_model_config(state_dict, ModelCard(), "wan32.safetensors")
    assert ours.latent_format.latent_channels == 32
    assert (ours.unet_config["in_dim"], ours.unet_config["out_dim"]) == (32, 32)


def test_shapes_read_back_the_released_qwen_image_configuration():
    # A released-size Qwen-Image (2 of its 60 blocks) as meta tensors: our explicit config
    # equals ComfyUI's detection completed by the class's own defaults.
    skeleton = QwenImageTransformer2DModel(num_layers=2, device="meta",
                                           operations=comfy.ops.disable_weight_init)
    state_dict = skeleton.state_dict()
    config = hdr_model_config(state_dict, ModelCard(channels=16), "qwen_image_2_blocks")
    assert config.unet_config == {
        "image_model": "qwen_image", "in_channels": 64, "num_layers": 2, "out_channels": 16,
        "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 3584,
        "axes_dims_rope": (16, 56, 56)}
    assert model_detection.detect_unet_config(state_dict, "").items() <= \
        config.unet_config.items()


def test_a_stock_16_channel_checkpoint_is_refused_naming_the_stock_loader(families):
    with pytest.raises(ValueError, match="takes 16 latent channels.*Load Diffusion Model"):
        load_hdr_diffusion_model(families["folder"] / "wan16.safetensors")


def test_a_model_card_for_another_family_is_refused(families, tmp_path):
    folder = families["folder"]
    target = tmp_path / "wan32.safetensors"
    target.write_bytes((folder / "wan32.safetensors").read_bytes())
    target.with_suffix(".json").write_text(json.dumps({"family": "flux"}))
    with pytest.raises(ValueError, match="card says family 'flux'.*wan model"):
        load_hdr_diffusion_model(target)


def test_pickle_checkpoints_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pickle checkpoints .* are refused"):
        load_hdr_diffusion_model(tmp_path / "widened.ckpt")


def test_a_model_too_large_for_free_memory_fails_early_with_the_estimate(families,
                                                                           monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: type("Memory", (), {"available": 2**20})())
    # Tiny Wan widened: 0.9 M float32 parameters -> 3.7 MB in the file + 3.7 MB built.
    with pytest.raises(ValueError, match=r"needs about 7\.\d MB of RAM.*1\.0 MB is free"):
        _hdr_model.load_hdr_diffusion_model(families["folder"] / "wan32.safetensors")

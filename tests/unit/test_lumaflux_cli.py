"""``train-lumaflux`` (training/lumaflux_cli.py) on a tiny Flux and SigLIP: the SDR/target
synthesis against colour-science, each ablation row wired into the adapter folder, the
folder loading back, and bad input refused with exit code 2 and nothing written."""

from __future__ import annotations

import dataclasses
import json

import colour
import numpy as np
import pytest
import torch
from diffusers import FluxTransformer2DModel
from transformers import SiglipVisionConfig, SiglipVisionModel

from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.hdr.models import lumaflux, lumaflux_folder, tone_field
from comfyui_hdr.hdr.scenes import hdr_scene
from comfyui_hdr.training.__main__ import main as training_main
from comfyui_hdr.training.lumaflux_cli import ABLATIONS, synthesise_pair


def _flux(in_channels: int = 12):
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=in_channels, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
        pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("lumaflux_cli")
    _flux().save_pretrained(root / "flux")
    _flux(16).save_pretrained(root / "flux16")
    SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8)).save_pretrained(root / "siglip")
    return root


def run(models, output, *extra, model="flux", data=("--procedural", "2")):
    return training_main(["train-lumaflux", "--model", str(models / model), "--siglip",
                          str(models / "siglip"), "--output", str(output), *data,
                          "--crop", "16", "--steps", "3", "--learning-rate", "1e-3", *extra])


def test_sdr_and_target_are_the_tone_mapped_srgb_and_bt2020_pq_of_the_hdr():
    hdr = torch.exp2(torch.linspace(-6, 8, 3 * 40, dtype=torch.float64)).reshape(40, 3)
    sdr, target = synthesise_pair(hdr, "reinhard")
    reinhard = hdr.numpy() / (1 + hdr.numpy())  # Reinhard et al. (2002), eq. 3
    expected_sdr = colour.cctf_encoding(reinhard, function="sRGB")
    expected_target = colour.models.eotf_inverse_ST2084(colour.RGB_to_RGB(
        hdr.numpy(), "ITU-R BT.709", "ITU-R BT.2020") * 203)
    np.testing.assert_allclose(sdr.numpy(), expected_sdr, atol=1e-12)
    np.testing.assert_allclose(target.numpy(), expected_target, atol=1e-9)


@pytest.mark.parametrize("ablation", ["lora", "pga-no-spectral", "pcm", "rqs-linear"])
def test_each_ablation_row_trains_and_writes_a_folder_that_loads(models, tmp_path, ablation,
                                                                 capsys):
    output = tmp_path / "adapters"
    assert run(models, output, "--ablation", ablation, "--warmup-steps", "1") == 0
    printed = capsys.readouterr().out
    assert "trainable parameters" in printed and f"wrote {output}" in printed
    metadata = json.loads((output / "lumaflux.json").read_text())
    assert metadata["switches"] == dataclasses.asdict(ABLATIONS[ablation])
    base = FluxTransformer2DModel.from_pretrained(models / "flux")
    loaded = lumaflux_folder.load_lumaflux(output, base)
    assert loaded.patch == 2 and loaded.prompt.shape == (1, 1, 32)
    curve = "linear" if ablation == "rqs-linear" else "monotone"
    assert metadata["tone_field"]["curve"] == loaded.head.curve == curve
    assert float(loaded.head.projection.weight.detach().abs().max()) > 0  # the head trained
    assert float(loaded.adapters.value_lora[0].up.weight.detach().abs().max()) > 0  # PGA trained
    film = float(loaded.adapters.film[0].gamma.weight.detach().abs().max())
    assert (film > 0) == ABLATIONS[ablation].pcm  # PCM trains only where switched on
    # the printed trainable count is what training moved off the (seeded) initial weights
    # (every switched-on part trains: no zero-gradient saddle such as a FiLM shift at beta 0)
    torch.manual_seed(0)
    initial = {**{f"adapters.{key}": value for key, value in lumaflux.LumaFluxAdapters(
        base, 16, 8, ABLATIONS[ablation]).state_dict().items()},
        **{f"head.{key}": value for key, value in tone_field.ToneFieldHead(
            3, curve=loaded.head.curve).state_dict().items()}}
    trained = {**{f"adapters.{key}": value for key, value in loaded.adapters.state_dict().items()},
               **{f"head.{key}": value for key, value in loaded.head.state_dict().items()}}
    moved = sum(value.numel() for key, value in trained.items()
                if not torch.equal(value, initial[key]))
    assert f"{moved:,} trainable parameters" in printed


@pytest.mark.parametrize("extra, model, message", [
    ((), "flux16", "in_channels 16"),
    (("--tone-mappers", "hable"), "flux", "tone mapper 'hable' is unknown"),
])
def test_bad_input_exits_2_naming_the_flag_and_writes_nothing(models, tmp_path, capsys,
                                                              extra, model, message):
    assert run(models, tmp_path / "adapters", *extra, model=model) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_exr_folder_data_trains_the_pga_row(models, tmp_path):
    (tmp_path / "data").mkdir()
    write_exr(tmp_path / "data" / "scene.exr", hdr_scene(5, 24, 20).numpy(),
              pixel_type="float")
    assert run(models, tmp_path / "adapters", "--ablation", "pga",
               data=("--data", str(tmp_path / "data"))) == 0
    metadata = json.loads((tmp_path / "adapters" / "lumaflux.json").read_text())
    assert metadata["switches"] == {"pga": True, "gates": True, "spectral": True,
                                    "pcm": False, "coupler": False}


def test_existing_output_needs_overwrite(models, tmp_path, capsys):
    (tmp_path / "adapters").mkdir()
    assert run(models, tmp_path / "adapters") == 2
    assert "pass --overwrite" in capsys.readouterr().err
